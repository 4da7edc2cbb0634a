"""A class of tokens goes with one class of examples: punctuation ("!" ending positive reviews) or
digits (Zhou et al. 2024's occurrence and style shortcuts).

Association is the presence of any word of the class against the label (Gardner et al.'s z, as for
a word); reliance is the share of |attribution| on those words. The counterfactual strips the
class's words from examples of the class, and adds the class's commonest word (where such words
usually sit: at the end when they mostly end the text) to examples of other classes, against
control edits that strip as many other words, or add a word of the probe's vocabulary there.
"""
from __future__ import annotations

from collections import Counter
from typing import Callable, Optional, Sequence

from lightning_saliency.monitor.features.base import (
    Feature, no_edits, Lookup, Roles, Segments, filler_pieces, filler_pool, presence_association, register_feature, sampled,
)
from lightning_saliency.monitor.features.edits import ConfirmationView, Edit, edit_rng
from lightning_saliency.schema.findings import FeatureAssociation

CLASSES: dict[str, Callable[[str], bool]] = {
    "punctuation": lambda word: bool(word) and not any(c.isalnum() for c in word),
    "digits": lambda word: any(c.isdigit() for c in word),
}


@register_feature
class TokenClass(Feature):
    kind = "token_class"
    variants = tuple(CLASSES)
    measured_by_attribution = True
    control = "strip as many other words, or add a vocabulary word at the same place"

    def association(self, variant: str, word_lists: Sequence[Sequence[str]],
                    labels: Sequence[int], segments: Segments = None,
                    roles: Roles = None) -> FeatureAssociation:
        test = CLASSES[variant]
        return presence_association(self.name(variant), [any(test(w) for w in words) for words in word_lists], labels)

    def carries(self, variant: str, words: Sequence[str], reference: FeatureAssociation,
                segments: Optional[Sequence[int]] = None, roles: Optional[Sequence[Optional[str]]] = None) -> bool:
        return any(CLASSES[variant](w) for w in words)

    def marked(self, variant: str, words: Sequence[str], segments: Optional[Sequence[int]] = None,
               roles: Optional[Sequence[Optional[str]]] = None) -> list[bool]:
        return [CLASSES[variant](w) for w in words]

    def edits(self, variant: str, view: ConfirmationView, label: int, predicted: Sequence[int],
              vocabulary: Sequence[str], lookup: Lookup, seed: int, max_length: int) -> dict[str, list[Edit]]:
        test = CLASSES[variant]
        found = no_edits()
        marked = [[test(w) for w, _ in spans] for spans in view.spans]
        seen = Counter(w for r, spans in enumerate(view.spans) if predicted[r] == label
                       for (w, _), m in zip(spans, marked[r]) if m)
        common = next((w for w, _ in seen.most_common() if lookup(w)), None)
        ending = [flags[-1] for flags in marked if any(flags)]
        at_end = bool(ending) and sum(ending) >= len(ending) / 2
        pool = filler_pool(view, [w for w in vocabulary if not test(w)])
        for row, flags in enumerate(marked):
            rng = edit_rng(seed, self.kind, variant, view.indices[row])
            words = len(flags)
            if predicted[row] == label and any(flags):
                others = [k for k, m in enumerate(flags) if not m]
                if len(others) <= sum(flags):
                    continue
                dropped = set(rng.sample(others, sum(flags)))
                edit = view.rebuilt(row, [() if m else None for m in flags], max_length=max_length)
                control = view.rebuilt(row, [() if k in dropped else None for k in range(words)], max_length=max_length)
                kinds = ("deletion", "control_deletion")
            elif predicted[row] != label and not any(flags) and common is not None and words:
                slot = words if at_end else rng.randrange(words + 1)
                filler = filler_pieces(pool, rng, 1)
                if not filler:
                    continue
                edit = view.rebuilt(row, [None] * words, [(slot, lookup(common))], max_length=max_length)
                control = view.rebuilt(row, [None] * words, [(slot, filler[0])], max_length=max_length)
                kinds = ("insertion", "control_insertion")
            else:
                continue
            if edit is not None and control is not None:
                found[kinds[0]].append(edit)
                found[kinds[1]].append(control)
        return {kind: sampled(edits, seed, self.kind, variant, kind) for kind, edits in found.items()}
