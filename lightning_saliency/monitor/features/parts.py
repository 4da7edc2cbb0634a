"""A part of each example that may decide the class alone: a pair's last segment (``segment``), a
conversation's system turn (``template``). The two kinds share their association and their edits.

Association: how well the part's words alone predict the label (a bag-of-words naive Bayes
classifier, leave-one-out) against the majority class's rate, as a z; the part decides any class
(:data:`~lightning_saliency.schema.findings.ANY_CLASS`). The counterfactual swaps parts between
examples the model predicts differently, in distribution (Madsen et al. 2023: real text, not
masks): the suspect part for another example's, against the control of swapping the other part
instead. A model that reads both parts changes its prediction under either swap; one that reads
the suspect part alone, under that one only.
"""
from __future__ import annotations

import math
from collections import Counter
from typing import Callable, Optional, Sequence

from lightning_saliency.monitor.features.base import no_edits, sampled
from lightning_saliency.monitor.features.edits import ConfirmationView, Edit, edit_rng
from lightning_saliency.monitor.features.position import MIN_COUNT, MIN_PURITY
from lightning_saliency.schema.findings import ANY_CLASS, FeatureAssociation

# Per row of a confirmation view: the word indices of the suspect part and of the control part
# (``None``: the row has no such parts).
PartsOf = Callable[[int], Optional[tuple[list[int], list[int]]]]


def naive_bayes_loo_accuracy(documents: Sequence[Sequence[str]], labels: Sequence) -> float:
    """The leave-one-out accuracy of a multinomial naive Bayes classifier (add-one smoothing) on
    bags of words: each document is classified by counts that leave its own words out."""
    counts: dict = {}
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


def part_association(name: str, documents: Sequence[Sequence[str]], labels: Sequence) -> FeatureAssociation:
    """The association of a part whose words are ``documents`` (one per example that has the part)
    with ``labels``: the z of its naive Bayes accuracy over the majority rate, and the words that
    decide a class there (``words``: seen ``MIN_COUNT`` times, ``MIN_PURITY`` of them in one class)."""
    z = 0.0
    if len(set(labels)) > 1:
        accuracy = naive_bayes_loo_accuracy(documents, labels)
        p = min(max(Counter(labels).most_common(1)[0][1] / len(labels), 0.01), 0.99)
        # Both rates are estimates on these examples, as for a position: twice one's variance.
        z = (accuracy - p) / math.sqrt(2 * p * (1 - p) / len(labels))
    by_word: dict[str, Counter] = {}
    for words, y in zip(documents, labels):
        for word in set(words):
            by_word.setdefault(word, Counter())[y] += 1
    deciding = tuple(sorted(w for w, c in by_word.items()
                            if sum(c.values()) >= MIN_COUNT and max(c.values()) / sum(c.values()) >= MIN_PURITY))
    carried = [any(w in deciding for w in words) for words in documents]
    shares = {y: sum(c for c, label in zip(carried, labels) if label == y) / labels.count(y) for y in set(labels)}
    return FeatureAssociation(name, z, ANY_CLASS if documents else None, len(documents), sum(carried), shares,
                              None, deciding)


def part_swaps(view: ConfirmationView, predicted: Sequence[int], parts_of: PartsOf, seed: int,
               tag: tuple[str, ...], max_length: int) -> dict[str, list[Edit]]:
    """The edits of a part's check: each row with its suspect part swapped for a partner's
    (``deletion``) and, as the control, its other part swapped for the same partner's
    (``control_deletion``). The partner is predicted otherwise and differs in both parts (an equal
    part would make its swap a no-op); ``tag`` names the kind in the seeded choices."""
    found = no_edits()
    parts = {row: found_parts for row in range(len(view)) if (found_parts := parts_of(row)) is not None}
    texts = {row: tuple(tuple(view.spans[row][k][0] for k in indices) for indices in both)
             for row, both in parts.items()}
    for row, (suspect, control) in parts.items():
        partners = [other for other in parts if predicted[other] != predicted[row]
                    and all(a != b for a, b in zip(texts[other], texts[row]))]
        if not partners:
            continue
        partner = edit_rng(seed, *tag, view.indices[row]).choice(partners)
        for kind, mine, theirs in (("deletion", suspect, parts[partner][0]),
                                   ("control_deletion", control, parts[partner][1])):
            edit = _swapped(view, row, mine, partner, theirs, max_length)
            if edit is not None:
                found[kind].append(edit)
    return {kind: sampled(edits, seed, *tag, kind) for kind, edits in found.items()}


def _swapped(view: ConfirmationView, row: int, mine: Sequence[int], partner: int, theirs: Sequence[int],
             max_length: int) -> Optional[Edit]:
    """``row`` with its words ``mine`` replaced by ``partner``'s words ``theirs`` (word indices)."""
    if not mine or not theirs:
        return None
    ids = view.sequences[partner].ids
    incoming = [ids[p] for k in theirs for p in view.spans[partner][k][1]]
    pieces: list = [None] * len(view.spans[row])
    for k in mine:
        pieces[k] = ()
    pieces[mine[0]] = incoming
    return view.rebuilt(row, pieces, max_length=max_length)
