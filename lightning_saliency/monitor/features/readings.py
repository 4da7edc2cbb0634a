"""One run's reading of every feature that is not a word, and the suspects it raises.

A feature is suspected at a run after ``start`` when it goes with a class (its z passes the
Bonferroni-corrected 1% line over the features tested: in the training set's sample, else in the
probe's labels) and, where attributions can measure it, a method's share of |attribution| on its
words has risen since ``start``. The causal check then says whether the model relies on it.
"""
from __future__ import annotations

from typing import Callable, Mapping, Optional, Sequence

from lightning_saliency.monitor.features.base import FEATURES, feature_of
from lightning_saliency.monitor.metrics.artifacts import bonferroni_z
from lightning_saliency.monitor.metrics.shortcut import AttributedExamples
from lightning_saliency.schema.findings import FeatureAssociation, FeatureReading, Suspect
from lightning_saliency.schema.words import segment_numbers


def _regular_words(view: AttributedExamples, row: int) -> list[str]:
    return [w for w, special in zip(view.tokens[row], view.special[row]) if not special]


def _regular_roles(view: AttributedExamples, row: int) -> Optional[list[Optional[str]]]:
    if view.roles is None or view.roles[row] is None:
        return None
    return [r for r, special in zip(view.roles[row], view.special[row]) if not special]


Marked = Callable[[Sequence[str], Sequence[int], Optional[Sequence[Optional[str]]]], list[bool]]


def reliance_share(view: AttributedExamples, marked: Marked) -> Optional[float]:
    """Mean over the examples that hold any marked word of their share of |attribution| on those
    words (``marked(words, segments, roles)`` flags each word); ``None`` when no example holds one."""
    shares = []
    for row in range(len(view.tokens)):
        words = _regular_words(view, row)
        scores = [abs(s) for s, special in zip(view.scores[row], view.special[row]) if not special]
        flags = marked(words, segment_numbers(view.special[row]), _regular_roles(view, row))
        total = sum(scores)
        if any(flags) and total > 0:
            shares.append(sum(s for s, f in zip(scores, flags) if f) / total)
    return sum(shares) / len(shares) if shares else None


def feature_readings(views: Mapping[str, AttributedExamples], before: Mapping[str, Optional[AttributedExamples]],
                     training: Optional[Mapping[str, FeatureAssociation]]) -> list[FeatureReading]:
    """Every registered feature's association (training sample, probe labels) and, per method
    where attributions measure it, its reliance now and at ``start`` (``before``, per method)."""
    if not views:
        return []
    view = next(iter(views.values()))  # the words and labels are the same for every method
    labelled = [row for row, label in enumerate(view.labels) if label is not None]
    word_lists = [_regular_words(view, row) for row in labelled]
    segments = [segment_numbers(view.special[row]) for row in labelled]
    roles = [_regular_roles(view, row) for row in labelled] if view.roles is not None else None
    labels = [int(view.labels[row]) for row in labelled]
    readings = []
    for feature in FEATURES.values():
        for variant in feature.variants:
            name = feature.name(variant)
            validation = (feature.association(variant, word_lists, labels, segments, roles)
                          if len(set(labels)) > 1 else None)
            reliance = {}
            if feature.measured_by_attribution:
                marked = lambda words, segments, roles: feature.marked(variant, words, segments, roles)  # noqa: E731
                for method, current in views.items():
                    now = reliance_share(current, marked)
                    if now is not None:
                        previous = before.get(method)
                        reliance[method] = (now, None if previous is None else reliance_share(previous, marked))
            readings.append(FeatureReading(name, (training or {}).get(name), validation, reliance))
    return readings


def feature_suspects(readings: Sequence[FeatureReading], method: str, probe_size: int) -> list[Suspect]:
    """The features ``method``'s run suspects (see the module docstring), strongest first."""
    # The features tested: those these examples can carry (no segment feature on single texts).
    line = bonferroni_z(sum(1 for r in readings if any(a is not None and a.examples for a in (r.training, r.validation))))
    suspects = []
    for reading in readings:
        association = reading.training or reading.validation
        if association is None or association.label is None or association.z < line:
            continue
        feature, _ = feature_of(reading.token)
        share, before = reading.reliance.get(method, (0.0, None))
        if feature.measured_by_attribution and (before is None or share <= before):
            continue  # measurable, and not relied on more than at start
        rise = share - (before or 0.0)
        suspects.append(Suspect(reading.token, probe_size, share, before or 0.0, rise, 0.0, association.z,
                                association.label, association=("training" if reading.training else "validation",)))
    return sorted(suspects, key=lambda s: -s.z)
