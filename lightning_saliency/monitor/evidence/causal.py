"""Causal confirmation of shortcut suspects: does removing the token flip predictions, and does
inserting it flip other examples toward its class, more often than random words do?

For each suspect (a word, or a pair of words) on a validation slice larger than the probe set:

* **deletion**: in the examples that contain it, every occurrence becomes the baseline token; the
  flip rate of the prediction and the mean drop of the predicted class's probability;
* **insertion**: inserted at a random word boundary into examples predicted as another class than
  the one it is associated with; the rate at which they flip to that class;
* **control**: both again with words drawn from the probe vocabulary and matched in frequency.

Rates come with 95% Wilson intervals; a suspect is *confirmed* when the lower bound of its deletion
or insertion rate is above the upper bound of the same test on the control, or when its edits move
its class's probability further than the control's do (a rank test at the same strength of
evidence, :mod:`~lightning_saliency.monitor.metrics.rank_test`: it sees a shortcut being learned
before any prediction depends on it). With answer classes (a label-like completion or target) the
prompt is edited and every answer scored after it; the likeliest is the prediction. Forward passes
only, under the run's token budget and precision context, sharded across DDP ranks like attribution.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Callable, Optional, Sequence

import torch

from lightning_saliency.attribution import AttributionConfig
from lightning_saliency.attribution.context import AttributionContext
from lightning_saliency.attribution.isolation import isolated_eval
from lightning_saliency.attribution.targets import TargetSpec
from lightning_saliency.schema.records import scalar_name
from lightning_saliency.monitor.distributed import Ranks
from lightning_saliency.monitor.features import feature_of
from lightning_saliency.monitor.features.edits import (
    ConfirmationView, Edit, Sequence_, edit_rng, frequency_matched, sequences_of,
)
from lightning_saliency.monitor.metrics.intervals import wilson_interval
from lightning_saliency.monitor.metrics.rank_test import MIN_EFFECT, SHIFT_Z, rank_comparison
from lightning_saliency.probes import ProbeSet
from lightning_saliency.probes.answers import prompt_part
from lightning_saliency.schema.findings import ANY_CLASS, KINDS, CausalCheck, FlipTest, ShiftTest, kind_of

CONTROL_WORDS = 3  # frequency-matched control words (or pairs) per suspect, pooled
# Trials per test at most: 128 bound a 95% Wilson interval to about +-9 points at any rate, and
# keep a check's forward rows to the slice plus 4 x 128 (measured on MiniLM: 1,128 rows, 10.3 s,
# with control insertions uncapped at 621).
MAX_TRIALS = 128
PREDICT_GROUP = 256  # rows per attribution context: bounds the embeddings held at once


@dataclass(frozen=True)
class CausalCandidate:
    """A suspect to check: its name, its words, and the class it is associated with."""

    token: str
    members: tuple[str, ...]
    label: int


def flip_test(outcomes: Sequence[bool]) -> FlipTest:
    """The flip rate of ``outcomes`` with its 95% Wilson interval."""
    flips, trials = int(sum(outcomes)), len(outcomes)
    low, high = wilson_interval(flips, trials)
    return FlipTest(flips, trials, flips / trials if trials else None, low, high)


def shift_test(shifts: Sequence[float], control: Sequence[float]) -> ShiftTest:
    """The suspect's probability shifts against the control words' (one-sided rank test), and the
    effect: the suspect's mean shift beyond the control's."""
    compared = rank_comparison(shifts, control)
    mean = lambda values: sum(values) / len(values) if values else None  # noqa: E731
    effect = mean(shifts) - mean(control) if shifts and control else None
    return ShiftTest(len(shifts), mean(shifts), len(control), mean(control), compared.auc, compared.z,
                     bool(shifts) and bool(control) and compared.z >= SHIFT_Z, effect)


def _matters(shift: ShiftTest, min_effect: float) -> bool:
    """The edit moved the class probability by ``min_effect`` beyond random words (no floor: always)."""
    return min_effect <= 0 or (shift.effect is not None and shift.effect >= min_effect)


def confirmations(check: CausalCheck) -> list[str]:
    """The tests that confirm ``check``: a flip rate beyond its control's (both 95% intervals
    apart: the predictions themselves change, which is an effect of its own), or a probability
    shift larger than the control's (rank test at the same strength of evidence) *and* at least
    ``check.min_effect`` beyond the control's mean. Strength alone is not enough for a shift: on a
    model whose output barely moves, a consistent shift of 3e-5 ranks perfectly (z 10) yet means
    nothing, and no prediction changes."""
    found = []
    if check.deletion.trials > 0 and check.deletion.low > check.control_deletion.high:
        found.append("removal flips")
    if check.insertion.trials > 0 and check.insertion.low > check.control_insertion.high:
        found.append("insertion flips")
    if check.deletion_shift.significant and _matters(check.deletion_shift, check.min_effect):
        found.append("removal shift")
    if check.insertion_shift.significant and _matters(check.insertion_shift, check.min_effect):
        found.append("insertion shift")
    return found


def judged(check: CausalCheck) -> CausalCheck:
    """``check`` with its verdict: the tests that confirm it (:func:`confirmations`) and whether any does."""
    confirmed_by = confirmations(check)
    return replace(check, confirmed_by=confirmed_by, confirmed=bool(confirmed_by))


def is_confirmed(check: CausalCheck) -> bool:
    """Any of :func:`confirmations`."""
    return bool(confirmations(check))


@dataclass
class _Plan:
    candidate: CausalCandidate
    controls: list[tuple[str, ...]]
    edits: dict[str, list[Edit]]


def _pair_order(view: ConfirmationView, members: tuple[str, ...], predicted: Sequence[int], label: int) -> tuple[str, ...]:
    """A pair is inserted in the order it shows most in examples predicted as its class (an ordered
    pair's order is the shortcut)."""
    if len(members) != 2:
        return members
    first, second = members
    votes = 0
    for row in view.containing(members):
        if predicted[row] == label:
            words = [w for w, _ in view.spans[row]]
            votes += 1 if words.index(first) < words.index(second) else -1
    return members if votes >= 0 else (second, first)


def plan_check(
    view: ConfirmationView, candidate: CausalCandidate, predicted: Sequence[int], vocabulary: Sequence[str],
    lookup: Callable[[str], Optional[tuple[int, ...]]], replacement: int, seed: int, max_length: int,
    neutral: Optional[Sequence[str]] = None,
) -> _Plan:
    """Every edit of one suspect's check and of its controls (pure: no model); a feature that is
    not a word plans its own (:meth:`~lightning_saliency.monitor.features.Feature.edits`)."""
    if kind_of(candidate.token) not in ("word", "pair"):
        feature, variant = feature_of(candidate.token)
        # A feature's edits pad with words that go with no class (``neutral``), so that padding
        # changes the length and not the meaning.
        padding = vocabulary if neutral is None else neutral
        edits = feature.edits(variant, view, candidate.label, predicted, padding, lookup, seed, max_length)
        return _Plan(candidate, [(feature.control,)], edits)
    members = candidate.members
    pieces = [lookup(w) for w in _pair_order(view, members, predicted, candidate.label)]
    inserts = tuple(t for p in pieces for t in p) if all(pieces) else ()
    # Insertion targets: predicted as another class and without the whole suspect (a pair's member
    # alone may be there: in a conditional pattern it is what the other class looks like).
    targets = [r for r in range(len(view)) if predicted[r] != candidate.label and not set(members) <= view.words[r]]
    used, matched = set(members), []
    for word in members:  # one control word per member, matched to it, no word twice
        matched.append(frequency_matched(view, word, [v for v in vocabulary if v not in used], CONTROL_WORDS, seed))
        used.update(matched[-1])
    controls = list(zip(*matched))

    def deletions(words: tuple[str, ...], every: bool) -> list[Edit]:
        return [e for r in view.containing(words, every) if (e := view.deleted(r, words, replacement)) is not None]

    def insertions(words: tuple[str, ...], ids: tuple[int, ...]) -> list[Edit]:
        if not ids:
            return []
        edits = (view.inserted(r, ids, edit_rng(seed, "insert", *words, view.indices[r]), max_length) for r in targets)
        return [e for e in edits if e is not None]

    edits = {
        "deletion": deletions(members, True),
        "insertion": insertions(members, inserts),
        "control_deletion": [e for unit in controls for e in deletions(unit, False)],
        "control_insertion": [e for unit in controls
                              for e in insertions(unit, tuple(t for w in unit for t in view.word_ids(w) or ()))],
    }
    for kind, found in edits.items():  # a seeded sample, in slice order, when there are more
        if len(found) > MAX_TRIALS:
            keep = sorted(edit_rng(seed, "sample", kind, candidate.token).sample(range(len(found)), MAX_TRIALS))
            edits[kind] = [found[k] for k in keep]
    return _Plan(candidate, controls, edits)


def _with_answers(sequences: Sequence[Sequence_], answers: Sequence[tuple[int, ...]], aligned: bool,
                  pad_id: int) -> dict[str, torch.Tensor]:
    """Each prompt once per answer: the answer after the prompt with ``labels`` on it (a completion,
    ``aligned``), or the prompt alone with the answer as its ``labels`` (a seq2seq target)."""
    rows = [(s, a) for s in sequences for a in answers]
    if aligned:
        inputs = _collate([Sequence_(s.ids + a) for s, a in rows], pad_id)
        labels = torch.full_like(inputs["input_ids"], -100)
        for row, (s, a) in enumerate(rows):
            labels[row, len(s.ids): len(s.ids) + len(a)] = torch.tensor(a)
    else:
        inputs = _collate([s for s, _ in rows], pad_id)
        labels = torch.full((len(rows), max(len(a) for a in answers)), -100, dtype=torch.long)
        for row, (_, a) in enumerate(rows):
            labels[row, : len(a)] = torch.tensor(a)
    return {**inputs, "labels": labels}


def _collate(sequences: Sequence[Sequence_], pad_id: int) -> dict[str, torch.Tensor]:
    width = max(len(s.ids) for s in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    types = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, s in enumerate(sequences):
        ids[row, : len(s.ids)] = torch.tensor(s.ids)
        mask[row, : len(s.ids)] = 1
        if s.types is not None:
            types[row, : len(s.ids)] = torch.tensor(s.types)
    inputs = {"input_ids": ids, "attention_mask": mask}
    if sequences[0].types is not None:
        inputs["token_type_ids"] = types
    return inputs


@dataclass(frozen=True)
class AnswerClasses:
    """Classes that are answers (a label-like completion or seq2seq target): each class's answer
    as token ids, scored after every prompt; ``aligned``: the answer follows the prompt in the same
    row (a causal LM), else it is the row's separate target (an encoder-decoder)."""

    answers: tuple[tuple[int, ...], ...]
    aligned: bool

    def longest(self) -> int:
        return max(len(a) for a in self.answers)


def predict(access: Any, sequences: Sequence[Sequence_], config: AttributionConfig, task: str,
            advance: Callable[[int], None], stand_in: Optional[Sequence_] = None,
            answers: Optional[AnswerClasses] = None) -> Optional[torch.Tensor]:
    """Class probabilities ``(rows, classes)`` of ``sequences``: forward passes only, chunked by
    ``config.max_tokens`` in the model's precision context, on the model in isolated eval mode.
    With ``answers``, a row's classes are its answers: each is scored as a sequence after the
    prompt, and their log-probabilities' softmax is the answers' probability (the model's answer
    is the likeliest of them). With sharded parameters (``access.lockstep``) the ranks agree on the
    number of groups, and a rank with fewer predicts ``stand_in`` for the rest (kept nowhere);
    ``None`` for no sequences."""
    size = PREDICT_GROUP if answers is None else max(PREDICT_GROUP // len(answers.answers), 1)
    groups = [sequences[start: start + size] for start in range(0, len(sequences), size)]
    total = len(groups) if access.lockstep is None else access.lockstep.agree(len(groups), False)[0]
    parts = []
    for k in range(total):
        group = groups[k] if k < len(groups) else [stand_in]
        pad_id = access.special_tokens.pad_id
        inputs = (_collate(group, pad_id) if answers is None
                  else _with_answers(group, answers.answers, answers.aligned, pad_id))
        with isolated_eval(access.module):
            ctx = AttributionContext(
                access.module, inputs, config=config, spec=TargetSpec(task=task), tokenizer=access.tokenizer,
                special_tokens=access.special_tokens, embedding_layer=access.embedding_layer,
                forward_fn=access.forward_fn, forward_context=access.forward_context, progress=advance,
                lockstep=access.lockstep,
            )
            ctx.resolve(None, with_baseline=False)
            if k < len(groups):
                scores = torch.stack(ctx.head_at_input).float()
                if answers is not None:  # one log-prob per (prompt, answer): the answers are the classes
                    scores = scores.reshape(len(group), len(answers.answers))
                parts.append(scores.softmax(dim=-1).cpu())
    return torch.cat(parts) if parts else None


def predict_sharded(access: Any, sequences: Sequence[Sequence_], config: AttributionConfig, task: str,
                    ranks: Ranks, advance: Callable[[int], None],
                    answers: Optional[AnswerClasses] = None) -> torch.Tensor:
    """:func:`predict` with the rows shared among the ranks (balanced by tokens) and gathered, so
    every rank holds every row's probabilities (:meth:`Ranks.sharded`: one gather on every rank)."""
    stand_in = sequences[0] if sequences else None
    parts = ranks.sharded(
        lambda rows: predict(access, [sequences[r] for r in rows], config, task, advance, stand_in, answers),
        [len(s.ids) for s in sequences])
    if not parts:
        return torch.zeros(len(sequences), 0)
    result = torch.zeros(len(sequences), parts[0][1].shape[-1])
    for part_rows, probabilities in parts:
        result[part_rows] = probabilities
    return result


def answer_probabilities(access: Any, examples: ProbeSet, config: AttributionConfig, task: str,
                         answers: AnswerClasses, ranks: Ranks) -> torch.Tensor:
    """``(examples, answers)``: each answer's probability after each example's prompt, among the
    answers (the model's answer is the likeliest), on every rank alike (one gather)."""
    sequences = ranks.attempt(lambda: sequences_of(prompt_part(examples, answers.aligned)))
    return predict_sharded(access, sequences or [], config, task, ranks, lambda rows: None, answers)


@dataclass(frozen=True)
class CausalSettings:
    config: AttributionConfig
    task: str
    seed: int
    max_length: int
    label_names: Optional[Sequence[str]] = None
    answers: Optional[AnswerClasses] = None
    min_effect: float = MIN_EFFECT


def confirm_suspects(
    access: Any,
    examples: Callable[[], ProbeSet],
    probe: ProbeSet,
    candidates: Sequence[CausalCandidate],
    vocabulary: Sequence[str],
    settings: CausalSettings,
    ranks: Optional[Ranks] = None,
    advance: Callable[[int], None] = lambda rows: None,
    neutral: Optional[Sequence[str]] = None,
) -> list[CausalCheck]:
    """The causal check of every candidate, on every rank alike. ``examples`` builds the
    confirmation set; ``probe`` supplies a suspect's token ids when the set lacks it; ``vocabulary``
    holds the words the controls are drawn from; ``neutral``: those of them that go with no class,
    what a feature's edits pad with (``None``: the vocabulary). Two gathers when there are
    candidates, none without."""
    if not candidates:
        return []
    ranks = ranks or Ranks()
    answers = settings.answers
    # With answer classes, prompts are edited and each answer scored after them (it must still fit).
    prompts = (lambda p: p) if answers is None else (lambda p: prompt_part(p, answers.aligned))  # noqa: E731
    max_length = settings.max_length - (answers.longest() if answers is not None and answers.aligned else 0)
    replacement = access.special_tokens.replacement_id(settings.config.baseline)
    view = ranks.attempt(lambda: ConfirmationView(prompts(examples()), access.special_tokens))
    originals = predict_sharded(access, view.sequences if view else [], settings.config, settings.task, ranks, advance,
                                answers)
    predicted = originals.argmax(dim=-1).tolist()

    def plans_of() -> list[_Plan]:
        probe_view = ConfirmationView(prompts(probe), access.special_tokens)
        lookup = lambda word: view.word_ids(word) or probe_view.word_ids(word)  # noqa: E731
        return [plan_check(view, c, predicted, vocabulary, lookup, replacement, settings.seed, max_length, neutral)
                for c in candidates]

    plans: list[_Plan] = ranks.attempt(plans_of) or []  # a local failure still joins the second gather
    edits = [e for plan in plans for kind in KINDS for e in plan.edits[kind]]
    edited = predict_sharded(access, [e.sequence for e in edits], settings.config, settings.task, ranks, advance,
                             answers)
    checks, position = [], 0
    for plan in plans:
        outcomes: dict[str, list[bool]] = {}
        shifts: dict[str, list[float]] = {}
        drops = []
        label, names = plan.candidate.label, settings.label_names
        free = label == ANY_CLASS  # a feature that decides any class: each example's own prediction counts
        for kind in KINDS:
            flags, moved = [], []
            for edit in plan.edits[kind]:
                after = edited[position]
                position += 1
                before = predicted[edit.row]
                target = before if free else label
                # The suspect's class probability: down on deletion, up on insertion, if it is relied on.
                change = float(after[target] - originals[edit.row, target]) if 0 <= target < after.numel() else 0.0
                if kind.endswith("deletion") or free:
                    flags.append(int(after.argmax()) != before)
                    moved.append(-change)
                    if kind == "deletion":
                        drops.append(float(originals[edit.row, before] - after[before]))
                else:
                    flags.append(int(after.argmax()) == label)
                    moved.append(change)
            outcomes[kind], shifts[kind] = flags, moved
        check = CausalCheck(
            token=plan.candidate.token, members=list(plan.candidate.members), label=None if free else label,
            label_name=names[label] if names is not None and 0 <= label < len(names) else None, examples=len(view),
            probability_change=sum(drops) / len(drops) if drops else None,
            control_tokens=[" + ".join(unit) for unit in plan.controls],
            deletion_shift=shift_test(shifts["deletion"], shifts["control_deletion"]),
            insertion_shift=shift_test(shifts["insertion"], shifts["control_insertion"]),
            min_effect=settings.min_effect, **{kind: flip_test(outcomes[kind]) for kind in KINDS},
        )
        checks.append(judged(check))
    return checks


def causal_scalars(checks: list) -> dict[str, float]:
    """Flip rates and class-probability shifts (the rank test's z) per checked suspect, and how many
    the run confirmed."""
    scalars = {"saliency/causal/confirmed": float(sum(c.confirmed for c in checks))} if checks else {}
    for check in checks:
        for kind in KINDS:
            test = getattr(check, kind)
            if test.rate is not None:
                scalars[f"saliency/causal/{scalar_name(check.token)}/{kind}_flip_rate"] = test.rate
        for kind in ("deletion", "insertion"):
            shift = getattr(check, f"{kind}_shift")
            if shift.trials and shift.control_trials:
                scalars[f"saliency/causal/{scalar_name(check.token)}/{kind}_shift_z"] = shift.z
    return scalars
