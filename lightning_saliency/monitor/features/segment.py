"""Segment: in a pair input, the last segment alone decides the class (Poliak et al. 2018's
hypothesis-only bias in NLI; Gururangan et al. 2018's hypothesis artifacts).

Association: how well the last segment's words alone predict the label (a bag-of-words naive
Bayes classifier, leave-one-out) against the majority class's rate, as a z; the feature decides any
class (:data:`~lightning_saliency.schema.findings.ANY_CLASS`). Reliance: the share of |attribution|
on the last segment. The counterfactual swaps segments between examples the model predicts
differently, in distribution (Madsen et al. 2023: real segments, not masks): the last segment for
another example's, against the control of swapping the first segment instead. A model that reads
both parts changes its prediction under either swap; one that reads the last part alone, under
that one only. Single-segment inputs carry nothing of this kind and are left out, and so are
inputs whose first segment is mostly the same text (:data:`SHARED_FIRST`): a shared system prompt
before a chat's user turn, where the user turn alone *should* decide.
"""
from __future__ import annotations

import math
from collections import Counter
from typing import Optional, Sequence

from lightning_saliency.monitor.features.base import Feature, Lookup, Segments, no_edits, register_feature, sampled
from lightning_saliency.monitor.features.edits import ConfirmationView, Edit, edit_rng
from lightning_saliency.monitor.features.position import MIN_COUNT, MIN_PURITY
from lightning_saliency.schema.findings import ANY_CLASS, FeatureAssociation


# The kind reads nothing when this share of the examples or more have the same first segment: the
# last segment deciding alone is then the task, not a bias (a chat's shared system prompt).
SHARED_FIRST = 0.5


def _first_segment(words: Sequence[str], segments: Sequence[int]) -> tuple[str, ...]:
    return tuple(w for w, s in zip(words, segments) if s == 0)


def _last_segment(words: Sequence[str], segments: Optional[Sequence[int]]) -> Optional[list[str]]:
    """The words of the last segment, or ``None`` for a single-segment example."""
    if not segments or len(segments) != len(words) or segments[-1] == 0:
        return None
    return [w for w, s in zip(words, segments) if s == segments[-1]]


def naive_bayes_loo_accuracy(documents: Sequence[Sequence[str]], labels: Sequence[int]) -> float:
    """The leave-one-out accuracy of a multinomial naive Bayes classifier (add-one smoothing) on
    bags of words: each document is classified by counts that leave its own words out."""
    counts: dict[int, Counter] = {}
    for words, label in zip(documents, labels):
        counts.setdefault(label, Counter()).update(words)
    totals = {y: sum(c.values()) for y, c in counts.items()}
    priors = Counter(labels)
    vocabulary = len({w for c in counts.values() for w in c})
    right = 0
    for words, label in zip(documents, labels):
        own = Counter(words)
        best, best_score = None, -math.inf
        for y in sorted(counts):
            mine = y == label
            prior = priors[y] - mine
            if prior <= 0:
                continue
            total = totals[y] - (len(words) if mine else 0) + vocabulary
            score = math.log(prior) + sum(
                n * math.log((counts[y][w] - (own[w] if mine else 0) + 1) / total) for w, n in own.items())
            if score > best_score:
                best, best_score = y, score
        right += best == label
    return right / len(documents) if documents else 0.0


@register_feature
class Segment(Feature):
    kind = "segment"
    variants = ("last",)
    measured_by_attribution = True
    control = "swap the first segment for that of an example predicted otherwise"

    def association(self, variant: str, word_lists: Sequence[Sequence[str]],
                    labels: Sequence[int], segments: Segments = None) -> FeatureAssociation:
        rows = [] if segments is None else [
            k for k, words in enumerate(word_lists) if _last_segment(words, segments[k])]
        firsts = Counter(_first_segment(word_lists[k], segments[k]) for k in rows) if rows else Counter()
        if rows and firsts.most_common(1)[0][1] >= SHARED_FIRST * len(rows):
            rows = []
        documents = [_last_segment(word_lists[k], segments[k]) for k in rows]  # rows hold pairs only
        ys = [labels[k] for k in rows]
        z = 0.0
        if len(set(ys)) > 1:
            accuracy = naive_bayes_loo_accuracy(documents, ys)
            p = min(max(Counter(ys).most_common(1)[0][1] / len(ys), 0.01), 0.99)
            # Both rates are estimates on these examples, as for a position: twice one's variance.
            z = (accuracy - p) / math.sqrt(2 * p * (1 - p) / len(ys))
        by_word: dict[str, Counter] = {}
        for words, y in zip(documents, ys):
            for word in set(words):
                by_word.setdefault(word, Counter())[y] += 1
        deciding = tuple(sorted(w for w, c in by_word.items()
                                if sum(c.values()) >= MIN_COUNT and max(c.values()) / sum(c.values()) >= MIN_PURITY))
        carried = [any(w in deciding for w in words) for words in documents]
        shares = {int(y): sum(c for c, l in zip(carried, ys) if l == y) / ys.count(y) for y in set(ys)}
        return FeatureAssociation(self.name(variant), z, ANY_CLASS if rows else None, len(rows), sum(carried), shares,
                                  None, deciding)

    def carries(self, variant: str, words: Sequence[str], reference: FeatureAssociation,
                segments: Optional[Sequence[int]] = None) -> bool:
        last = _last_segment(words, segments)
        return bool(last) and any(w in reference.words for w in last)

    def marked(self, variant: str, words: Sequence[str], segments: Optional[Sequence[int]] = None) -> list[bool]:
        if _last_segment(words, segments) is None:
            return [False] * len(words)
        return [s == segments[-1] for s in segments]

    def edits(self, variant: str, view: ConfirmationView, label: int, predicted: Sequence[int],
              vocabulary: Sequence[str], lookup: Lookup, seed: int, max_length: int) -> dict[str, list[Edit]]:
        found = no_edits()
        pairs = [row for row in range(len(view)) if view.segments[row] and view.segments[row][-1] > 0]
        first = {row: _first_segment([w for w, _ in view.spans[row]], view.segments[row]) for row in pairs}
        for row in pairs:
            # A partner with the same first segment would make the control swap a no-op.
            partners = [other for other in pairs if predicted[other] != predicted[row] and first[other] != first[row]]
            if not partners:
                continue
            partner = edit_rng(seed, self.kind, variant, view.indices[row]).choice(partners)
            last = view.segments[row][-1]
            for kind, segment, partner_segment in (("deletion", last, view.segments[partner][-1]),
                                                   ("control_deletion", 0, 0)):
                edit = self._swapped(view, row, segment, partner, partner_segment, max_length)
                if edit is not None:
                    found[kind].append(edit)
        return {kind: sampled(edits, seed, self.kind, variant, kind) for kind, edits in found.items()}

    @staticmethod
    def _swapped(view: ConfirmationView, row: int, segment: int, partner: int, partner_segment: int,
                 max_length: int) -> Optional[Edit]:
        """``row`` with the words of its ``segment`` replaced by ``partner``'s ``partner_segment``."""
        mine = [k for k, s in enumerate(view.segments[row]) if s == segment]
        theirs = [k for k, s in enumerate(view.segments[partner]) if s == partner_segment]
        if not mine or not theirs:
            return None
        ids = view.sequences[partner].ids
        incoming = [ids[p] for k in theirs for p in view.spans[partner][k][1]]
        pieces: list = [None] * len(view.spans[row])
        for k in mine:
            pieces[k] = ()
        pieces[mine[0]] = incoming
        return view.rebuilt(row, pieces, max_length=max_length)
