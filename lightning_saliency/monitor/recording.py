"""Building a :class:`~lightning_saliency.schema.records.RunRecord` from a run's probe set and
attributions (torch tensors). The record types, the reader and the writer live in the torch-free
:mod:`lightning_saliency.schema.records`, their one import path."""
from __future__ import annotations

from typing import Any, Optional, Sequence

from lightning_saliency.attribution import Attributions
from lightning_saliency.probes import ProbeSet
from lightning_saliency.schema.records import ExampleRecord, RunRecord, SkippedExample, class_name


def build_record(
    *,
    label: str,
    stage: str,
    epoch: Optional[int],
    global_step: int,
    settings: dict[str, Any],
    probe: ProbeSet,
    result: Attributions,
    label_names: Optional[Sequence[str]] = None,
    skipped: Sequence[SkippedExample] = (),
    run_id: Optional[str] = None,
    step_run: bool = False,
    answer_probabilities: Optional[Any] = None,
) -> RunRecord:
    """Per-example tokens, prediction and per-method token attributions (padding removed).
    ``answer_probabilities``: with answer classes, each row's answers' probabilities; the likeliest
    is the row's prediction (the attributed score stays the scored completion's)."""
    examples = []
    if answer_probabilities is not None:
        label_names = probe.label_names
    for i in range(len(probe)):
        valid = result.attention_mask[i].bool()
        true_label = int(probe.labels[i]) if probe.labels is not None else None
        predicted = int(result.predicted[i] if answer_probabilities is None else answer_probabilities[i].argmax())
        examples.append(ExampleRecord(
            index=int(probe.indices[i]), text=probe.texts[i], tokens=list(probe.tokens[i]),
            word_ids=list(probe.word_ids[i]), special=result.special_mask[i][valid].tolist(),
            label=true_label, label_name=class_name(true_label, probe.label_names or label_names),
            predicted=predicted, predicted_name=class_name(predicted, label_names),
            probability=float(result.probability[i]), target=int(result.target[i]),
            target_score=float(result.target_score[i]),
            baseline_score=float(result.baseline_score[i]) if result.baseline_score is not None else None,
            attributions={m: r.scores[i][valid].tolist() for m, r in result.methods.items()},
            delta={m: float(r.delta[i]) for m, r in result.methods.items() if r.delta is not None},
            steps={m: int(r.steps[i]) for m, r in result.methods.items() if r.steps is not None},
            truncated=bool(probe.truncated[i]), roles=probe.roles[i] if probe.roles is not None else None,
            span=probe.spans[i] if probe.spans is not None else None,
            completion=probe.completions[i] if probe.completions is not None else None,
        ))
    return RunRecord(label=label, stage=stage, epoch=epoch, global_step=global_step, settings=settings,
                     methods=list(result.methods), examples=examples, skipped=list(skipped), run_id=run_id,
                     step_run=step_run)


