"""Template: in instruction tuning, the chat template's system turn decides the answer, rather than
the user's question (a system prompt that varies with the data source, and the source with the
label).

It reads rendered conversations only: each word's turn comes from the tokenizer's chat template
(:mod:`lightning_saliency.monitor.chat`, whose literal text is special and never a word).
Association: how well the system turn's words alone predict the answer; reliance: the share of
|attribution| on the system turn; the counterfactual swaps the system turn for that of an example
predicted otherwise, against swapping the user turn instead (:mod:`.parts`, shared with the
``segment`` kind). One system prompt shared by every example goes with no answer (its z is at
most 0), so a model trained with a fixed system prompt raises nothing here.
"""
from __future__ import annotations

from typing import Optional, Sequence

from lightning_saliency.monitor.features.base import Feature, Lookup, Roles, Segments, register_feature
from lightning_saliency.monitor.features.edits import ConfirmationView, Edit
from lightning_saliency.monitor.features.parts import part_association, part_swaps
from lightning_saliency.schema.findings import FeatureAssociation

CONTROL_ROLE = "user"


def _turn(words: Sequence[str], roles: Optional[Sequence[Optional[str]]], role: str) -> list[str]:
    return [w for w, r in zip(words, roles or ()) if r == role]


def _parts(roles: Optional[Sequence[Optional[str]]], variant: str) -> Optional[tuple[list[int], list[int]]]:
    """The word indices of the ``variant`` turn and of the user's turn, or ``None`` when the
    example lacks either."""
    suspect = [k for k, r in enumerate(roles or ()) if r == variant]
    control = [k for k, r in enumerate(roles or ()) if r == CONTROL_ROLE]
    return (suspect, control) if suspect and control else None


@register_feature
class Template(Feature):
    kind = "template"
    variants = ("system",)
    measured_by_attribution = True
    control = "swap the user turn for that of an example predicted otherwise"

    def association(self, variant: str, word_lists: Sequence[Sequence[str]],
                    labels: Sequence[int], segments: Segments = None,
                    roles: Roles = None) -> FeatureAssociation:
        rows = [] if roles is None else [k for k in range(len(word_lists)) if _parts(roles[k], variant)]
        documents = [_turn(word_lists[k], roles[k], variant) for k in rows]
        return part_association(self.name(variant), documents, [labels[k] for k in rows])

    def carries(self, variant: str, words: Sequence[str], reference: FeatureAssociation,
                segments: Optional[Sequence[int]] = None, roles: Optional[Sequence[Optional[str]]] = None) -> bool:
        return any(w in reference.words for w in _turn(words, roles, variant))

    def marked(self, variant: str, words: Sequence[str], segments: Optional[Sequence[int]] = None,
               roles: Optional[Sequence[Optional[str]]] = None) -> list[bool]:
        if roles is None or len(roles) != len(words):
            return [False] * len(words)
        return [r == variant for r in roles]

    def edits(self, variant: str, view: ConfirmationView, label: int, predicted: Sequence[int],
              vocabulary: Sequence[str], lookup: Lookup, seed: int, max_length: int) -> dict[str, list[Edit]]:
        return part_swaps(view, predicted, lambda row: _parts(view.roles[row], variant), seed, (self.kind, variant),
                          max_length)
