"""The analysis of one run: pure ``(record, previous, reference, settings) -> RunMetrics``.

No model, logger or file is touched here: the numbers come from the record's attributions and the
earlier records it is compared with, so every rule can be unit-tested on hand-made records.
"""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, replace
from typing import Mapping, Optional

from lightning_saliency.monitor.metrics import (
    DRIFT_METRICS,
    AttributedExamples,
    ShortcutRules,
    concentration,
    drift,
    find_suspects,
    summarize,
)
from lightning_saliency.monitor.features.readings import feature_readings, feature_suspects
from lightning_saliency.monitor.metrics.artifacts import ArtifactTable, cross
from lightning_saliency.monitor.state import REFERENCE_LABEL
from lightning_saliency.monitor.metrics.shortcut import TrainingAssociation, mean_shares
from lightning_saliency.schema.records import (
    ClassSummary,
    ConcentrationSummary,
    DriftBlock,
    FaithfulnessSummary,
    RunMetrics,
    RunRecord,
    ShortcutFindings,
    scalar_name,
)
from lightning_saliency.presentation.render import top_tokens
from lightning_saliency.presentation.verdicts import is_at_chance

TOKEN_TABLE_ROWS = 10


@dataclass(frozen=True)
class AnalysisSettings:
    """``rules.ignore``: words the user judged genuine: never suspects, alone or in a pair."""

    top_k: int = 5
    rules: ShortcutRules = ShortcutRules()


def analyse(
    record: RunRecord,
    previous: Optional[RunRecord],
    reference: Optional[RunRecord],
    settings: AnalysisSettings,
    faithfulness: Optional[Mapping[str, FaithfulnessSummary]] = None,
    artifacts: Optional[ArtifactTable] = None,
) -> RunMetrics:
    """Concentration, drift against the previous and the reference run, shortcut suspects,
    per-class summaries, training-set artifacts against reliance (``artifacts``), faithfulness
    scalars and probe accuracy of ``record``."""
    metrics = RunMetrics()
    # The training set's artifacts: an association source for the suspects besides the validation
    # labels and the predictions (validation data often does not carry the training set's artifact).
    training = ({row.token: TrainingAssociation(row.z, row.label) for row in artifacts.rows}
                if artifacts is not None else {})
    _features(record, reference, artifacts, metrics)
    for method in record.methods:
        _convergence(record, method, metrics)
        _concentration(record, method, metrics)
        for name, other in (("previous", previous), ("start", reference)):
            block = drift_block(record, other, method, settings.top_k) if other is not None else None
            if block is None:
                continue
            metrics.drift.setdefault(method, {})[name] = block
            for metric, summary in block.summary.items():
                metrics.scalars[f"saliency/{method}/drift_{name}/{metric}_mean"] = summary["mean"]
                metrics.scalars[f"saliency/{method}/drift_{name}/{metric}_p10"] = summary["p10"]
        view = attributed_examples(record, method)
        stats = _shortcuts(record, view, reference, method, settings, metrics, training)
        _per_class(record, view, method, settings.top_k, metrics)
        if artifacts is not None:
            metrics.artifacts[method] = cross(artifacts, stats, settings.rules, len(record.examples))
    for method, summary in (faithfulness or {}).items():
        metrics.faithfulness[method] = summary
        for key in ("comprehensiveness_aopc", "sufficiency_aopc"):
            metrics.scalars[f"saliency/{method}/faithfulness/{key}"] = getattr(summary, key)
    accuracy, majority = probe_accuracy(record)
    if accuracy is not None:
        metrics.scalars["saliency/probe/accuracy"] = accuracy
        metrics.scalars["saliency/probe/majority_rate"] = majority
        if is_at_chance(accuracy, majority):  # what the suspects say is about a model that has not learned yet
            for findings in metrics.shortcut.values():
                findings.suspects = [replace(s, at_chance=True) for s in findings.suspects]
    return metrics


def probe_accuracy(record: RunRecord) -> tuple[Optional[float], Optional[float]]:
    """The probe accuracy of ``record`` and the rate of its most frequent true label (what always
    answering that class would score); ``(None, None)`` without labels."""
    labels = [e.label for e in record.examples if e.label is not None]
    if not labels:
        return None, None
    right = sum(e.predicted == e.label for e in record.examples if e.label is not None)
    return right / len(labels), max(Counter(labels).values()) / len(labels)


def _convergence(record: RunRecord, method: str, metrics: RunMetrics) -> None:
    deltas = [abs(e.delta[method]) for e in record.examples if method in e.delta]
    if deltas:
        metrics.scalars[f"saliency/{method}/delta_mean"] = sum(deltas) / len(deltas)
        metrics.scalars[f"saliency/{method}/delta_max"] = max(deltas)


def _concentration(record: RunRecord, method: str, metrics: RunMetrics) -> None:
    per_example = [concentration(e.attributions[method], e.special) for e in record.examples]
    if not per_example:
        return
    means = {key: summarize([c[key] for c in per_example])["mean"] for key in per_example[0]}
    metrics.concentration[method] = ConcentrationSummary(per_example, means)
    for key, value in means.items():
        metrics.scalars[f"saliency/{method}/concentration/{key}"] = value


def drift_block(record: RunRecord, other: RunRecord, method: str, k: int) -> Optional[DriftBlock]:
    """Drift against ``other`` over the examples both runs attributed (all of them unless a compute
    budget shortened one run: then a prefix of the same probe order)."""
    if method not in other.methods:
        return None
    before = {e.key: e for e in other.examples}
    positions = [p for p, e in enumerate(record.examples) if e.key in before]
    if not positions:
        return None
    pairs = [(record.examples[p], before[record.examples[p].key]) for p in positions]
    per_example = [drift(old.regular_scores(method), new.regular_scores(method), k) for new, old in pairs]
    return DriftBlock(
        against=other.label,
        positions=positions,
        per_example=per_example,
        summary={m: summarize([d[m] for d in per_example]) for m in DRIFT_METRICS},
        before_top=[top_tokens(old.tokens, old.attributions[method], old.special, k) for _, old in pairs],
    )


def attributed_examples(record: RunRecord, method: str) -> AttributedExamples:
    """One method's view of the examples at word level (a planted word split into pieces is judged
    as the word), with the labels the association is measured against: the true labels, or the
    predicted classes where the data has none."""
    examples = record.examples
    known = all(e.label is not None for e in examples)
    labels = [e.label if known else e.predicted for e in examples]
    words = [e.words(method) for e in examples]
    roles = [e.word_roles for e in examples] if any(e.roles is not None for e in examples) else None
    return AttributedExamples([w[0] for w in words], [w[1] for w in words], [w[2] for w in words], labels,
                              [e.predicted for e in examples], roles)


def _shortcuts(
    record: RunRecord, view: AttributedExamples, reference: Optional[RunRecord], method: str,
    settings: AnalysisSettings, metrics: RunMetrics, training: Optional[Mapping[str, TrainingAssociation]] = None,
) -> dict:
    rules = settings.rules
    usable_reference = reference is not None and method in reference.methods
    before = None
    if usable_reference:  # over the same examples (a compute budget may have attributed only a prefix)
        before = attributed_examples(reference.restricted_to([e.key for e in record.examples]), method)
    suspects, stats = find_suspects(view, before, rules, training)
    suspects = suspects + feature_suspects(metrics.features, method, len(record.examples))
    # The reference run is what later runs are compared with; it cannot show a rise itself.
    if record.label == REFERENCE_LABEL:
        suspects = []
    ignored = {w.lower() for w in settings.rules.ignore}
    suspects = [s for s in suspects if not ignored & {m.lower() for m in s.members}]
    top = sorted(stats.values(), key=lambda s: -s.mean_share * s.top1_rate)[:TOKEN_TABLE_ROWS]
    metrics.shortcut[method] = ShortcutFindings(suspects, top, reference.label if usable_reference else None)
    metrics.scalars[f"saliency/{method}/shortcut/suspects"] = float(len(suspects))
    metrics.scalars[f"saliency/{method}/shortcut/top_share"] = suspects[0].mean_share if suspects else 0.0
    return stats


def _features(record: RunRecord, reference: Optional[RunRecord], artifacts: Optional[ArtifactTable],
              metrics: RunMetrics) -> None:
    """The shortcuts that are not words: association (training sample, probe labels) and reliance,
    with their scalars (``saliency/feature/<kind>_<variant>/training_z`` and ``.../validation_z``,
    ``saliency/<method>/feature/<kind>_<variant>/share``)."""
    views = {m: attributed_examples(record, m) for m in record.methods}
    keys = [e.key for e in record.examples]
    before = {m: attributed_examples(reference.restricted_to(keys), m)
              for m in record.methods if reference is not None and m in reference.methods}
    metrics.features = feature_readings(views, before, artifacts.features if artifacts is not None else None)
    for reading in metrics.features:
        name = scalar_name(reading.token)
        for where, association in (("training", reading.training), ("validation", reading.validation)):
            if association is not None:
                metrics.scalars[f"saliency/feature/{name}/{where}_z"] = association.z
        for method, (share, _) in reading.reliance.items():
            metrics.scalars[f"saliency/{method}/feature/{name}/share"] = share


def _per_class(record: RunRecord, view: AttributedExamples, method: str, k: int, metrics: RunMetrics) -> None:
    """Top words and drift against ``start`` per class: a shortcut often belongs to one class."""
    block = metrics.drift.get(method, {}).get("start")
    drift_at = dict(zip(block.positions, block.per_example)) if block is not None else {}
    summaries = []
    for label in sorted({y for y in view.labels if y is not None}):
        rows = [i for i, y in enumerate(view.labels) if y == label]
        shares = mean_shares(*(
            [part[i] for i in rows] for part in (view.tokens, view.scores, view.special)))
        top = sorted(shares.items(), key=lambda item: (-item[1], item[0]))[:k]
        drifts = [drift_at[i] for i in rows if i in drift_at]
        means = {m: summarize([d[m] for d in drifts])["mean"] for m in DRIFT_METRICS} if drifts else {}
        means = {m: value for m, value in means.items() if not math.isnan(value)}
        example = record.examples[rows[0]]
        name = example.label_name if example.label is not None else example.predicted_name
        summaries.append(ClassSummary(label, name, len(rows), top, means))
        tag = scalar_name(name if name is not None else str(label))
        for metric, value in means.items():
            metrics.scalars[f"saliency/{method}/class/{tag}/drift_start/{metric}_mean"] = value
    metrics.per_class[method] = summaries


__all__ = ["AnalysisSettings", "analyse", "attributed_examples", "drift_block"]
