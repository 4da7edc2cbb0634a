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

from typing import Optional

from lightning_saliency.schema.findings import CausalCheck, FlipTest, ShiftTest
from lightning_saliency.schema.records import RunRecord

CASES = ("removal_flips", "insertion_flips", "shift_only", "below_floor", "no_evidence", "no_trials")


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


def _shift_clause(shift: ShiftTest, removal: bool, cls: str) -> Optional[str]:
    """The suspect's class-probability change as the drop or rise it is, against random words'."""
    change, control = signed_change(shift, removal), signed_control_change(shift, removal)
    if change is None or control is None:
        return None
    edit = "removing" if removal else "inserting"
    return (f"{edit} it {'lowers' if change < 0 else 'raises'} P({cls}) by {abs(change):.3f} on average over "
            f"{shift.trials} examples (random words: {control:+.3f}; z {shift.z:.1f})")


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
    word, cls, which = f"'{check.token}'", check.class_name, case(check)
    if which == "removal_flips":
        text = (f"{word} drives {cls}: removing it changes {_rate(check.deletion)} predictions "
                f"(random words: {_rate(check.control_deletion)}).")
    elif which == "insertion_flips":
        text = (f"{word} drives {cls}: inserting it turns {_rate(check.insertion)} other predictions to {cls} "
                f"(random words: {_rate(check.control_insertion)}).")
    elif which == "shift_only":
        removal = "removal shift" in check.confirmed_by
        shift = check.deletion_shift if removal else check.insertion_shift
        text = f"{word} pushes predictions toward {cls} before any flips: {_shift_clause(shift, removal, cls)}."
    elif which == "below_floor":
        removal = check.deletion_shift.effect is not None and (
            check.insertion_shift.effect is None or abs(check.deletion_shift.effect) >= abs(check.insertion_shift.effect))
        shift = check.deletion_shift if removal else check.insertion_shift
        clause = _shift_clause(shift, removal, cls) or "its edits move nothing"
        text = (f"{word} is suspected, not confirmed: {clause}, an effect below the {check.min_effect:.3f} that "
                f"counts (evidence.min_effect).")
    elif which == "no_evidence":
        text = (f"{word} is suspected, not confirmed: its edits change predictions no more than random words' do "
                f"(removal {_rate(check.deletion)} against {_rate(check.control_deletion)}; insertion "
                f"{_rate(check.insertion)} against {_rate(check.control_insertion)}).")
    else:
        text = (f"{word} is suspected, not confirmed: no validation example could be edited (none contains it, and "
                f"none is predicted as another class than {cls}).")
    if at_chance:
        text = f"{not_learned(accuracy, majority)}: {text}"
    return text


def details(check: CausalCheck) -> str:
    """The evidence behind the headline: both flip tests with their 95% intervals, both shifts, the
    floor, and what could not be tested."""
    cls = check.class_name
    parts = [f"Removal: flips {_interval(check.deletion)} examples that contain it (random words: "
             f"{_interval(check.control_deletion)})"]
    shift = _shift_clause(check.deletion_shift, True, cls)
    if shift:
        parts[-1] += f"; {shift}"
    if check.insertion.trials:
        parts.append(f"Insertion: turns {_interval(check.insertion)} other examples to {cls} (random words: "
                     f"{_interval(check.control_insertion)})")
        shift = _shift_clause(check.insertion_shift, False, cls)
        if shift:
            parts[-1] += f"; {shift}"
    else:
        parts.append(f"Insertion: nothing to test, every example is predicted {cls} already or contains it")
    parts.append(f"An effect counts from {check.min_effect:.3f} beyond random words (evidence.min_effect)")
    return ". ".join(parts) + "."


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
