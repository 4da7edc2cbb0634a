"""Segment: in a pair input, the last segment alone decides the class (Poliak et al. 2018's
hypothesis-only bias in NLI; Gururangan et al. 2018's hypothesis artifacts).

Association: how well the last segment's words alone predict the label; reliance: the share of
|attribution| on the last segment; the counterfactual swaps the last segment for that of an
example predicted otherwise, against swapping the first segment instead (:mod:`.parts`, shared
with the ``template`` kind). Single-segment inputs carry nothing of this kind and are left out, and
so are conversations (their turns are the ``template`` kind's) and inputs whose first segment is
mostly the same text (:data:`SHARED_FIRST`), where the last segment deciding alone is the task.
"""
from __future__ import annotations

from collections import Counter
from typing import Optional, Sequence

from lightning_saliency.monitor.features.base import Feature, Lookup, Roles, Segments, register_feature
from lightning_saliency.monitor.features.edits import ConfirmationView, Edit
from lightning_saliency.monitor.features.parts import part_association, part_swaps
from lightning_saliency.schema.findings import FeatureAssociation


# The kind reads nothing when this share of the examples or more have the same first segment: the
# last segment deciding alone is then the task, not a bias (a shared instruction before the input).
SHARED_FIRST = 0.5


def _first_segment(words: Sequence[str], segments: Sequence[int]) -> tuple[str, ...]:
    return tuple(w for w, s in zip(words, segments) if s == 0)


def _last_segment(words: Sequence[str], segments: Optional[Sequence[int]],
                  roles: Optional[Sequence[Optional[str]]] = None) -> Optional[list[str]]:
    """The words of the last segment, or ``None`` for a single-segment example or a conversation."""
    if not segments or len(segments) != len(words) or segments[-1] == 0 or (roles and any(roles)):
        return None
    return [w for w, s in zip(words, segments) if s == segments[-1]]


@register_feature
class Segment(Feature):
    kind = "segment"
    variants = ("last",)
    measured_by_attribution = True
    control = "swap the first segment for that of an example predicted otherwise"

    def association(self, variant: str, word_lists: Sequence[Sequence[str]],
                    labels: Sequence[int], segments: Segments = None,
                    roles: Roles = None) -> FeatureAssociation:
        rows = [] if segments is None else [
            k for k, words in enumerate(word_lists) if _last_segment(words, segments[k], roles and roles[k])]
        firsts = Counter(_first_segment(word_lists[k], segments[k]) for k in rows) if rows else Counter()
        if rows and firsts.most_common(1)[0][1] >= SHARED_FIRST * len(rows):
            rows = []
        documents = [_last_segment(word_lists[k], segments[k]) for k in rows]  # rows hold pairs only
        return part_association(self.name(variant), documents, [labels[k] for k in rows])

    def carries(self, variant: str, words: Sequence[str], reference: FeatureAssociation,
                segments: Optional[Sequence[int]] = None, roles: Optional[Sequence[Optional[str]]] = None) -> bool:
        last = _last_segment(words, segments, roles)
        return bool(last) and any(w in reference.words for w in last)

    def marked(self, variant: str, words: Sequence[str], segments: Optional[Sequence[int]] = None,
               roles: Optional[Sequence[Optional[str]]] = None) -> list[bool]:
        if _last_segment(words, segments, roles) is None:
            return [False] * len(words)
        return [s == segments[-1] for s in segments]

    def edits(self, variant: str, view: ConfirmationView, label: int, predicted: Sequence[int],
              vocabulary: Sequence[str], lookup: Lookup, seed: int, max_length: int) -> dict[str, list[Edit]]:
        def parts_of(row: int) -> Optional[tuple[list[int], list[int]]]:
            segments = view.segments[row]
            if not segments or segments[-1] == 0 or any(view.roles[row]):
                return None
            return ([k for k, s in enumerate(segments) if s == segments[-1]],
                    [k for k, s in enumerate(segments) if s == 0])

        return part_swaps(view, predicted, parts_of, seed, (self.kind, variant), max_length)
