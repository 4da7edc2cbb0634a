"""Position: the word at one place decides the class, whatever the rest says (a label word always
put first, a lead sentence, the last word).

Association: how well the word at the place predicts the label (each example's class by the
majority of the other examples with that word there, leave-one-out) against the word at a seeded
random place of the same examples, as a z; the feature decides any class
(:data:`~lightning_saliency.schema.findings.ANY_CLASS`). Reliance: the share of |attribution| on
the word at the place. The counterfactual moves words and asks whether each example's own
prediction changes: the word at the place moved elsewhere, or another word moved there, against
the control of moving other words between the other places; in a pair input, words move within
the place's own segment.
"""
from __future__ import annotations

import math
import random
from collections import Counter
from typing import Optional, Sequence

from lightning_saliency.monitor.features.base import Feature, no_edits, Lookup, Roles, Segments, register_feature, sampled
from lightning_saliency.monitor.features.edits import ConfirmationView, Edit, edit_rng
from lightning_saliency.schema.findings import ANY_CLASS, FeatureAssociation

# A word decides the class at the place when at least this many examples have it there, and this
# share of them has one class.
MIN_COUNT, MIN_PURITY = 3, 0.9


def _index(variant: str, count: int) -> int:
    return 0 if variant == "first" else count - 1


def leave_one_out_accuracy(keys: Sequence[str], labels: Sequence[int]) -> float:
    """The accuracy of predicting each example's label by the most common label among the other
    examples with its key (the overall most common without any)."""
    by_key: dict[str, Counter] = {}
    for key, label in zip(keys, labels):
        by_key.setdefault(key, Counter())[label] += 1
    overall = Counter(labels)
    right = 0
    for key, label in zip(keys, labels):
        others = by_key[key].copy()
        others[label] -= 1
        pool = others if sum(others.values()) > 0 else overall
        right += max(sorted(pool), key=lambda y: pool[y]) == label  # ties: the first label in order
    return right / len(keys) if keys else 0.0


@register_feature
class Position(Feature):
    kind = "position"
    variants = ("first", "last")
    measured_by_attribution = True
    control = "move other words between the other places"

    def association(self, variant: str, word_lists: Sequence[Sequence[str]],
                    labels: Sequence[int], segments: Segments = None,
                    roles: Roles = None) -> FeatureAssociation:
        rows = [k for k, words in enumerate(word_lists) if len(words) >= 3]
        rng = random.Random(0)
        keys = [word_lists[k][_index(variant, len(word_lists[k]))] for k in rows]
        controls = [word_lists[k][rng.randrange(1, len(word_lists[k]) - 1)] for k in rows]
        ys = [labels[k] for k in rows]
        accuracy, control = leave_one_out_accuracy(keys, ys), leave_one_out_accuracy(controls, ys)
        p = min(max(control, 0.01), 0.99)
        # Both accuracies are estimates on these examples: the variance of their difference is twice
        # one's (a clean 48-example corpus reached z 2.89 against a line of 2.88 with one's alone).
        z = (accuracy - control) / math.sqrt(2 * p * (1 - p) / len(rows)) if rows else 0.0
        counts: dict[str, Counter] = {}
        for key, y in zip(keys, ys):
            counts.setdefault(key, Counter())[y] += 1
        deciding = tuple(sorted(w for w, c in counts.items()
                                if sum(c.values()) >= MIN_COUNT and max(c.values()) / sum(c.values()) >= MIN_PURITY))
        carried = [key in deciding for key in keys]
        shares = {y: sum(c for c, l in zip(carried, ys) if l == y) / ys.count(y) for y in set(ys)}
        return FeatureAssociation(self.name(variant), z, ANY_CLASS, len(rows), sum(carried), shares, None, deciding)

    def carries(self, variant: str, words: Sequence[str], reference: FeatureAssociation,
                segments: Optional[Sequence[int]] = None, roles: Optional[Sequence[Optional[str]]] = None) -> bool:
        return len(words) >= 3 and words[_index(variant, len(words))] in reference.words

    def marked(self, variant: str, words: Sequence[str], segments: Optional[Sequence[int]] = None,
               roles: Optional[Sequence[Optional[str]]] = None) -> list[bool]:
        place = _index(variant, len(words))
        return [k == place for k in range(len(words))]

    def edits(self, variant: str, view: ConfirmationView, label: int, predicted: Sequence[int],
              vocabulary: Sequence[str], lookup: Lookup, seed: int, max_length: int) -> dict[str, list[Edit]]:
        found = no_edits()
        for row, spans in enumerate(view.spans):
            count = len(spans)
            if count < 4:
                continue
            rng = edit_rng(seed, self.kind, variant, view.indices[row])
            place = _index(variant, count)
            # Words move within the place's own segment (a pair input's first or last text): a move
            # into the other segment would test the segment, not the place.
            segments = view.segments[row]
            same = [k for k in range(count) if segments[k] == segments[place]]
            low, high = same[0], same[-1]
            if high - low + 1 < 4:
                continue
            at_place = 0 if variant == "first" else count  # the slot before word 0, or after the last
            others = [k for k in same if k != place]

            def moved(word: int, slot: int) -> Optional[Edit]:
                pieces: list = [None] * count
                pieces[word] = ()
                ids = tuple(view.sequences[row].ids[p] for p in spans[word][1])
                return view.rebuilt(row, pieces, [(slot, ids)], max_length=max_length)

            inner = list(range(low + 1, high + 1))  # slots inside the segment, away from both its ends
            away = moved(place, rng.choice([s for s in inner if s not in (place, place + 1)]))
            there = moved(rng.choice(others), at_place)
            a, b = rng.sample(others, 2)
            control_away = moved(a, rng.choice([s for s in inner if s not in (a, a + 1)] or inner))
            control_there = moved(b, rng.choice([s for s in inner if s not in (b, b + 1)] or inner))
            for kind, edit in (("deletion", away), ("insertion", there), ("control_deletion", control_away),
                               ("control_insertion", control_there)):
                if edit is not None:
                    found[kind].append(edit)
        return {kind: sampled(edits, seed, self.kind, variant, kind) for kind, edits in found.items()}
