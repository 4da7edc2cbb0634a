"""What a causal check found, in words: one sentence that carries the claim and its evidence, then
the details.

The alert, the TensorBoard text, the report and the W&B/MLflow tables all state a check through
:func:`verdict`, so a user reads the same words everywhere. The sentence depends on one case, picked
by :func:`case` from a fixed table (each case is unit-tested in ``tests/test_verdicts.py``):

=====================  ==========================================================================
case                   the first sentence says
=====================  ==========================================================================
``removal_flips``      the word drives the class: removing it changes N% of M predictions
``insertion_flips``    the word drives the class: inserting it turns N% of M others to the class
``shift_only``         the word pushes toward the class before predictions flip (a drop or a rise)
``below_floor``        suspected, not confirmed: the shift is strong but smaller than the floor
``no_evidence``        suspected, not confirmed: edits change predictions no more than random words
``no_trials``          suspected, not confirmed: no validation example could be edited
=====================  ==========================================================================

A suspect raised while the model is at chance (probe accuracy not above the majority rate) says so
first: the user reads "the model has not learned yet", not an unqualified shortcut.
"""
from __future__ import annotations

from typing import NamedTuple, Optional

from lightning_saliency.schema.findings import FEATURE_SEPARATOR, CausalCheck, FlipTest, ShiftTest
from lightning_saliency.schema.records import RunRecord

CASES = ("removal_flips", "insertion_flips", "shift_only", "below_floor", "no_evidence", "no_trials")


class Wording(NamedTuple):
    """How a kind of shortcut is named and edited in words: ``subject`` (``{variant}`` filled in),
    what removing and inserting it are, and what the control edits are."""

    subject: str
    removing: str
    inserting: str
    control: str
    holding: str = "carry it"
    # why a check may have no insertion test ({cls}: the class)
    no_insertion: str = "every example is predicted {cls} already or contains it"


WORDINGS = {
    "length": Wording("text length ({variant} texts)", "cutting words", "padding with words",
                      "replacing as many words"),
    "token_class": Wording("{variant} tokens", "stripping them", "adding one", "other words"),
    "position": Wording("the {variant} word's place", "moving that word elsewhere", "moving another word there",
                        "moving other words"),
    "segment": Wording("the {variant} segment alone", "swapping it for that of an example predicted otherwise", "",
                       "swapping the first segment instead", "are pairs",
                       "the swap removes one example's segment and inserts another's"),
    "template": Wording("the {variant} turn alone", "swapping it for that of an example predicted otherwise", "",
                        "swapping the user turn instead", "are conversations",
                        "the swap removes one example's turn and inserts another's"),
}
WORDS = Wording("'{token}'", "removing it", "inserting it", "random words", "contain it")


def wording(check: CausalCheck) -> Wording:
    """The words for ``check``'s kind, with its subject filled in."""
    found = WORDINGS.get(check.kind, WORDS)
    variant = check.token.split(FEATURE_SEPARATOR, 1)[-1]
    return found._replace(subject=found.subject.format(token=check.token, variant=variant.replace("_", " ")))


def case(check: CausalCheck) -> str:
    """The row of the table above that states ``check``."""
    if check.confirmed:
        if "removal flips" in check.confirmed_by:
            return "removal_flips"
        if "insertion flips" in check.confirmed_by:
            return "insertion_flips"
        return "shift_only"
    if not check.deletion.trials and not check.insertion.trials:
        return "no_trials"
    strong = check.deletion_shift.significant or check.insertion_shift.significant
    return "below_floor" if strong else "no_evidence"


def _rate(test: FlipTest) -> str:
    return f"{test.rate:.0%} of {test.trials}" if test.trials else "none tested"


def _interval(test: FlipTest) -> str:
    return f"{test.rate:.0%} ({test.low:.0%}-{test.high:.0%}) of {test.trials}" if test.trials else "none tested"


def _shift_clause(shift: ShiftTest, removal: bool, cls: str, words: Wording = WORDS) -> Optional[str]:
    """The suspect's class-probability change as the drop or rise it is, against the control's."""
    change, control = signed_change(shift, removal), signed_control_change(shift, removal)
    if change is None or control is None:
        return None
    edit = words.removing if removal else words.inserting
    return (f"{edit} {'lowers' if change < 0 else 'raises'} P({cls}) by {abs(change):.3f} on average over "
            f"{shift.trials} examples ({words.control}: {control:+.3f}; z {shift.z:.1f})")


def not_learned(accuracy: Optional[float], majority: Optional[float]) -> str:
    """The words for a model at chance, with its probe accuracy and the majority class's rate."""
    scores = (f" (probe accuracy {accuracy:.2f}, majority class {majority:.2f})"
              if accuracy is not None and majority is not None else "")
    return f"The model has not learned yet{scores}"


def headline(check: CausalCheck, at_chance: bool = False, accuracy: Optional[float] = None,
             majority: Optional[float] = None) -> str:
    """The one sentence that carries the claim and its evidence.

    Args:
        check: the causal check.
        at_chance: the suspect was raised while the model's probe accuracy was not above the
            majority rate.
        accuracy: the probe accuracy, for the at-chance wording.
        majority: the majority class's rate among the probe labels.

    Returns:
        A sentence, e.g. ``'zorbly' drives positive: removing it changes 91% of 68 predictions
        (random words: 0% of 128).``
    """
    words = wording(check)
    word, cls, which = words.subject, check.class_name, case(check)
    if which == "removal_flips":
        text = (f"{word} drives {cls}: {words.removing} changes {_rate(check.deletion)} predictions "
                f"({words.control}: {_rate(check.control_deletion)}).")
    elif which == "insertion_flips" and check.label is None:  # a feature that decides any class
        text = (f"{word} drives {cls}: {words.inserting} changes {_rate(check.insertion)} predictions "
                f"({words.control}: {_rate(check.control_insertion)}).")
    elif which == "insertion_flips":
        text = (f"{word} drives {cls}: {words.inserting} turns {_rate(check.insertion)} other predictions to {cls} "
                f"({words.control}: {_rate(check.control_insertion)}).")
    elif which == "shift_only":
        removal = "removal shift" in check.confirmed_by
        shift = check.deletion_shift if removal else check.insertion_shift
        text = (f"{word} pushes predictions toward {cls} before any flips: "
                f"{_shift_clause(shift, removal, cls, words)}.")
    elif which == "below_floor":
        removal = check.deletion_shift.effect is not None and (
            check.insertion_shift.effect is None or abs(check.deletion_shift.effect) >= abs(check.insertion_shift.effect))
        shift = check.deletion_shift if removal else check.insertion_shift
        clause = _shift_clause(shift, removal, cls, words) or "its edits move nothing"
        text = (f"{word} is suspected, not confirmed: {clause}, an effect below the {check.min_effect:.3f} that "
                f"counts (evidence.min_effect).")
    elif which == "no_evidence":
        text = (f"{word} is suspected, not confirmed: its edits change predictions no more than {words.control}' do "
                f"(removal {_rate(check.deletion)} against {_rate(check.control_deletion)}; "
                f"insertion {_rate(check.insertion)} against {_rate(check.control_insertion)}).")
    else:
        text = (f"{word} is suspected, not confirmed: no validation example could be edited (none contains it, and "
                f"none is predicted as another class than {cls}).")
    if at_chance:
        text = f"{not_learned(accuracy, majority)}: {text}"
    return text


def details(check: CausalCheck) -> str:
    """The evidence behind the headline: both flip tests with their 95% intervals, both shifts, the
    floor, and what could not be tested."""
    cls, words = check.class_name, wording(check)
    parts = [f"Removal: flips {_interval(check.deletion)} examples that {words.holding} ({words.control}: "
             f"{_interval(check.control_deletion)})"]
    shift = _shift_clause(check.deletion_shift, True, cls, words)
    if shift:
        parts[-1] += f"; {shift}"
    if check.insertion.trials:
        parts.append(f"Insertion: turns {_interval(check.insertion)} other examples to {cls} ({words.control}: "
                     f"{_interval(check.control_insertion)})")
        shift = _shift_clause(check.insertion_shift, False, cls, words)
        if shift:
            parts[-1] += f"; {shift}"
    else:
        parts.append(f"Insertion: nothing to test, {words.no_insertion.format(cls=cls)}")
    parts.append(f"An effect counts from {check.min_effect:.3f} beyond {words.control} (evidence.min_effect)")
    if check.carriers is not None:
        parts.append(carriers_sentence(check))
    return ". ".join(parts) + "."


def carriers_sentence(check: CausalCheck) -> str:
    """How many training examples carry a confirmed shortcut, overall and per class, and where they
    are listed (from alarm to action)."""
    c = check.carriers
    read = f"{c.examples} read" if c.dataset_size in (None, c.examples) else f"{c.examples} read of {c.dataset_size}"
    by_class = ", ".join(f"{_class(check, label)} {share:.0%}" for label, share in sorted(c.shares.items()))
    where = f", listed in {c.path}" if c.path else ""
    return (f"{c.count} training examples carry it ({c.share:.0%} of the {read}; by class: {by_class}){where}; "
            "lightning_saliency.action.rebalance_indices gives the indices to keep")


def _class(check: CausalCheck, label: int) -> str:
    return check.label_name if label == check.label and check.label_name is not None else f"class {label}"


def verdict(check: CausalCheck, at_chance: bool = False, accuracy: Optional[float] = None,
            majority: Optional[float] = None) -> str:
    """:func:`headline`, then :func:`details`."""
    return f"{headline(check, at_chance, accuracy, majority)} {details(check)}"


def signed_change(shift: ShiftTest, removal: bool) -> Optional[float]:
    """The suspect's mean class-probability change as it happened (negative: a drop). The stored
    mean is signed toward reliance (a drop on removal, a rise on insertion), so it is read back here."""
    if not shift.trials or shift.mean is None:
        return None
    return -shift.mean if removal else shift.mean


def signed_control_change(shift: ShiftTest, removal: bool) -> Optional[float]:
    """The random words' mean class-probability change as it happened."""
    if not shift.control_trials or shift.control_mean is None:
        return None
    return -shift.control_mean if removal else shift.control_mean


def is_at_chance(accuracy: Optional[float], majority: Optional[float]) -> bool:
    """Whether a probe accuracy is no better than always answering the majority class. A probe
    whose rows hold one class alone (majority 1.0) cannot tell, so it never counts as at chance."""
    return accuracy is not None and majority is not None and majority < 1.0 and accuracy <= majority


def chance_of(record: RunRecord) -> tuple[bool, Optional[float], Optional[float]]:
    """Whether ``record``'s model was at chance (:func:`is_at_chance`), with both numbers: the
    arguments :func:`verdict` takes after the check."""
    accuracy = record.metrics.scalars.get("saliency/probe/accuracy")
    majority = record.metrics.scalars.get("saliency/probe/majority_rate")
    return is_at_chance(accuracy, majority), accuracy, majority
