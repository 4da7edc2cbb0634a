"""Length: long texts go with one class (Gururangan et al. 2018: hypothesis length in NLI).

Association is a rank test of the examples' word counts, one class against the rest; an example
carries the feature when it is longer than the median. Attributions cannot show reliance on a
length, so the counterfactual decides: cutting ``d`` words (the gap between the classes' median
lengths, as the model predicts them) from examples of the class, and padding examples of other
classes with ``d`` words of the probe's own vocabulary, against control edits that replace ``d``
words instead, which change as much of the text but not its length.
"""
from __future__ import annotations

from statistics import median
from typing import Optional, Sequence

from lightning_saliency.monitor.features.base import (
    Feature, no_edits, Lookup, Roles, Segments, filler_pieces, filler_pool, register_feature, sampled,
)
from lightning_saliency.monitor.features.edits import ConfirmationView, Edit, edit_rng
from lightning_saliency.monitor.metrics.rank_test import rank_comparison
from lightning_saliency.schema.findings import FeatureAssociation


@register_feature
class Length(Feature):
    kind = "length"
    variants = ("long",)
    control = "replace as many words as the edit cuts or adds"

    def association(self, variant: str, word_lists: Sequence[Sequence[str]],
                    labels: Sequence[int], segments: Segments = None,
                    roles: Roles = None) -> FeatureAssociation:
        lengths = [len(words) for words in word_lists]
        z, label = 0.0, None
        for y in sorted(set(labels)):
            inside = [n for n, l in zip(lengths, labels) if l == y]
            outside = [n for n, l in zip(lengths, labels) if l != y]
            value = rank_comparison(inside, outside).z
            if value > z:
                z, label = value, y
        threshold = float(median(lengths)) if lengths else 0.0
        carried = [n > threshold for n in lengths]
        shares = {y: sum(c for c, l in zip(carried, labels) if l == y) / labels.count(y) for y in set(labels)}
        return FeatureAssociation(self.name(variant), z, label, len(lengths), sum(carried), shares, threshold)

    def carries(self, variant: str, words: Sequence[str], reference: FeatureAssociation,
                segments: Optional[Sequence[int]] = None, roles: Optional[Sequence[Optional[str]]] = None) -> bool:
        return len(words) > (reference.threshold or 0.0)

    def edits(self, variant: str, view: ConfirmationView, label: int, predicted: Sequence[int],
              vocabulary: Sequence[str], lookup: Lookup, seed: int, max_length: int) -> dict[str, list[Edit]]:
        counts = [len(spans) for spans in view.spans]
        inside = [r for r in range(len(view)) if predicted[r] == label]
        outside = [r for r in range(len(view)) if predicted[r] != label]
        if not inside or not outside:
            return no_edits()
        gap = round(median(counts[r] for r in inside) - median(counts[r] for r in outside))
        cut = max(gap, 1)
        found = no_edits()
        pool = filler_pool(view, vocabulary)
        for row in range(len(view)):
            words = counts[row]
            if words <= cut:
                continue
            rng = edit_rng(seed, self.kind, view.indices[row])
            chosen = set(rng.sample(range(words), cut))
            fillers = filler_pieces(pool, rng, cut)
            if len(fillers) < cut:
                continue
            replaced = iter(fillers)
            control = view.rebuilt(row, [next(replaced) if k in chosen else None for k in range(words)],
                                   max_length=max_length)
            if row in inside:
                edit = view.rebuilt(row, [() if k in chosen else None for k in range(words)], max_length=max_length)
                kinds = ("deletion", "control_deletion")
            else:
                slots = [rng.randrange(words + 1) for _ in range(cut)]
                edit = view.rebuilt(row, [None] * words, list(zip(slots, fillers)), max_length=max_length)
                kinds = ("insertion", "control_insertion")
            if edit is not None and control is not None:
                found[kinds[0]].append(edit)
                found[kinds[1]].append(control)
        return {kind: sampled(edits, seed, self.kind, kind) for kind, edits in found.items()}
