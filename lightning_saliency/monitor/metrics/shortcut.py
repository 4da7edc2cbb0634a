"""Vocabulary-level attribution statistics and shortcut suspects.

A shortcut token is one the model leans on regardless of context: it is the top-attributed token
in most examples that contain it, its share of attribution rose during training, and it appears
often enough to matter. The token-label association is the z statistic of Gardner et al. (2021),
"Competency Problems": ``z = (p(y | token) - p0) / sqrt(p0 (1 - p0) / n)`` with ``p0`` the label
prior in the probe set.

Pair shortcuts (a token that counts only with a partner, or only in a given order) split the
attribution between the two tokens, so neither may be top-1 often enough. :func:`pair_statistics`
treats each pair of token types that shares the top two places of some example as one unit: its
combined share, and how often exactly those two are the top two of the examples containing both.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from typing import Iterable, Mapping, NamedTuple, Optional, Sequence

from lightning_saliency.schema.findings import PAIR_SEPARATOR, Suspect, TokenStat


@dataclass(frozen=True)
class ShortcutRules:
    """When a token (or a pair of tokens) is a shortcut suspect: one set of defaults for the
    callbacks, :func:`find_suspects` and :func:`shortcut_suspects`.

    A token is a suspect when it appears in at least ``max(min_examples, ceil(min_fraction * n))``
    of the ``n`` attributed probe examples, is their top-1 token in at least ``top1_rate`` of them,
    is strong there, and its share rose by at least ``min_rise`` since the reference (``start``) run.
    Strong: on average it holds at least ``min_share`` of their |attribution| mass, **or** at least
    ``min_lift`` times the share a uniform attribution would give it (share x regular tokens).

    Why two bars: an unsigned method such as gradient-L2 gives every token some mass, so on a long
    text even a token that tops every example may hold well under 0.3 of it (measured: the planted
    word of the conditional shortcut tops 72% of its examples with share 0.30, lift 3.7); a lift bar
    alone, on the other hand, is out of reach on very short texts. Across the planted and clean test
    runs, no unplanted token that passed the top-1 bar reached a lift above 3.0.
    A pair needs twice the share, or the same lift per member.

    A single token must also carry a label association (Gardner et al.'s z over the examples that
    contain it) of at least ``min_z``: a token that tops its examples in both classes alike (z = 0,
    e.g. "it" or "the" in a small probe set, or anything in a one-class validation set) is no
    shortcut to a label. With a perfect association in n examples and balanced labels, z = sqrt(n),
    so 2.0 needs 4 examples. A pair's z is the largest of its co-occurrence's and of each
    order's: a pair that works only in one order carries no association through its members or
    their co-occurrence, only through the order.
    """

    min_examples: int = 3
    min_fraction: float = 0.25
    top1_rate: float = 0.6
    min_share: float = 0.3
    min_rise: float = 0.05
    min_lift: float = 3.0
    min_z: float = 2.0
    # Words you judged genuine cues (e.g. "great" in sentiment): never suspects, alone or in a pair.
    ignore: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if isinstance(self.ignore, str) or any(not isinstance(w, str) for w in self.ignore):
            raise ValueError(f"shortcut ignore is a list of words, e.g. ['great'], got {self.ignore!r}.")
        object.__setattr__(self, "ignore", tuple(self.ignore))
        if self.min_examples < 1:
            raise ValueError(f"shortcut min_examples must be at least 1, got {self.min_examples}.")
        for name in ("min_fraction", "top1_rate", "min_share"):
            value = getattr(self, name)
            if not 0 <= value <= 1:
                raise ValueError(f"shortcut {name} is a fraction in [0, 1], got {value}.")
        if not -1 <= self.min_rise <= 1:
            raise ValueError(f"shortcut min_rise is a change of share in [-1, 1], got {self.min_rise}.")
        if self.min_lift < 1:
            raise ValueError(f"shortcut min_lift is a multiple of the uniform share (>= 1), got {self.min_lift}.")

    def min_count(self, num_examples: int) -> int:
        """The fewest probe examples that must contain a token for it to be judged."""
        return max(self.min_examples, math.ceil(self.min_fraction * num_examples))


_DEFAULT = ShortcutRules()


def association_z(count_with_label: int, count: int, prior: float) -> float:
    """Gardner et al.'s z statistic of ``p(label | token)`` against the label prior."""
    if count == 0 or prior <= 0 or prior >= 1:
        return 0.0
    return (count_with_label / count - prior) / math.sqrt(prior * (1 - prior) / count)


def _example_shares(toks: Sequence[str], vals: Sequence[float], spec: Sequence[bool]):
    """Share of the example's non-special |attribution| per token type, strongest type first, and
    the number of non-special tokens."""
    values = [abs(float(v)) for v in vals]  # plain floats: a run reads each one several times
    keep = [j for j in range(len(toks)) if not spec[j]]
    total = math.fsum(values[j] for j in keep)
    share_of: dict[str, float] = {}
    for j in keep:
        share_of[toks[j]] = share_of.get(toks[j], 0.0) + (values[j] / total if total > 0 else 0.0)
    ranked = list(dict.fromkeys(toks[j] for j in sorted(keep, key=lambda j: -values[j])))
    return share_of, ranked, len(keep)


def mean_shares(tokens: Sequence[Sequence[str]], scores: Sequence[Sequence[float]],
                special: Sequence[Sequence[bool]]) -> dict[str, float]:
    """Each token type's share of |attribution| averaged over all the examples (0 where absent):
    what a group of examples leans on as a whole."""
    totals: dict[str, float] = {}
    for toks, vals, spec in zip(tokens, scores, special):
        for token, share in _example_shares(toks, vals, spec)[0].items():
            totals[token] = totals.get(token, 0.0) + share
    return {token: total / max(len(tokens), 1) for token, total in totals.items()}


def _priors(labels: Optional[Sequence[Optional[int]]]) -> dict[int, float]:
    known = [int(y) for y in labels if y is not None] if labels is not None else []
    return {y: known.count(y) / len(known) for y in set(known)} if known else {}


def _strongest_association(with_label: dict[int, int], count: int, priors: dict[int, float]) -> tuple[float, Optional[int]]:
    """The largest z over the labels, and that label (0 and None when nothing is above the prior)."""
    z, label = 0.0, None
    for y, prior in priors.items():
        value = association_z(with_label.get(y, 0), count, prior)
        if value > z:
            z, label = value, y
    return z, label


def _with_association(
    counts: dict[str, int], shares: dict[str, float], tops: dict[str, int], by_label: dict[str, dict[int, int]],
    labels: Optional[Sequence[Optional[int]]], lifts: dict[str, float],
) -> dict[str, TokenStat]:
    priors = _priors(labels)
    stats = {}
    for key, count in counts.items():
        z, label = _strongest_association(by_label.get(key, {}), count, priors)
        stats[key] = TokenStat(key, count, shares[key] / count, tops.get(key, 0) / count, z, label, lifts[key] / count)
    return stats


def _count(key: str, share: float, lift: float, label: Optional[int], counts, shares, lifts, by_label) -> None:
    counts[key] = counts.get(key, 0) + 1
    shares[key] = shares.get(key, 0.0) + share
    lifts[key] = lifts.get(key, 0.0) + lift
    if label is not None:
        by_label.setdefault(key, {}).setdefault(int(label), 0)
        by_label[key][int(label)] += 1


def token_statistics(
    tokens: Sequence[Sequence[str]],
    scores: Sequence[Sequence[float]],
    special: Sequence[Sequence[bool]],
    labels: Optional[Sequence[Optional[int]]] = None,
) -> dict[str, TokenStat]:
    """Per token type: examples containing it, mean share of |attribution|, top-1 rate, max z."""
    counts: dict[str, int] = {}
    shares: dict[str, float] = {}
    lifts: dict[str, float] = {}
    top1: dict[str, int] = {}
    by_label: dict[str, dict[int, int]] = {}
    for i, (toks, vals, spec) in enumerate(zip(tokens, scores, special)):
        share_of, ranked, regular = _example_shares(toks, vals, spec)
        if not ranked:
            continue
        for token, share in share_of.items():
            _count(token, share, share * regular, labels[i] if labels is not None else None, counts, shares, lifts,
                   by_label)
        top1[ranked[0]] = top1.get(ranked[0], 0) + 1
    return _with_association(counts, shares, top1, by_label, labels, lifts)


def pair_statistics(
    tokens: Sequence[Sequence[str]],
    scores: Sequence[Sequence[float]],
    special: Sequence[Sequence[bool]],
    labels: Optional[Sequence[Optional[int]]] = None,
    pairs: Optional[Iterable[str]] = None,
) -> dict[str, TokenStat]:
    """Per pair of token types that holds the top two places of at least one example (key
    ``"a + b"``, names sorted): examples containing both, their mean combined share, the rate at
    which exactly this pair is the top two, and the association z: the largest of their
    co-occurrence's, of "a before b"'s and of "b before a"'s (a pair that works only in one order
    is associated with a label through its order alone).
    ``pairs`` (keys) fixes which pairs to measure, e.g. a later run's pairs on the reference run."""
    per_example = [_example_shares(t, v, s) for t, v, s in zip(tokens, scores, special)]
    if pairs is None:
        candidates = {tuple(sorted(ranked[:2])) for _, ranked, _ in per_example if len(ranked) >= 2}
    else:
        candidates = {tuple(key.split(PAIR_SEPARATOR)) for key in pairs}
    counts: dict[str, int] = {}
    shares: dict[str, float] = {}
    lifts: dict[str, float] = {}
    top2: dict[str, int] = {}
    by_label: dict[str, dict[int, int]] = {}
    in_order: dict[tuple[str, bool], dict[int, int]] = {}  # (key, a comes first) -> label counts
    for i, (share_of, ranked, regular) in enumerate(per_example):
        label = labels[i] if labels is not None else None
        for a, b in candidates:
            if a in share_of and b in share_of:
                key = a + PAIR_SEPARATOR + b
                share = share_of[a] + share_of[b]
                # Per member: a pair at lift L holds L times the share two uniform tokens would.
                _count(key, share, share * regular / 2, label, counts, shares, lifts, by_label)
                if set(ranked[:2]) == {a, b}:
                    top2[key] = top2.get(key, 0) + 1
                if label is not None:
                    order = in_order.setdefault((key, tokens[i].index(a) < tokens[i].index(b)), {})
                    order[int(label)] = order.get(int(label), 0) + 1
    stats = _with_association(counts, shares, top2, by_label, labels, lifts)
    priors = _priors(labels)
    for (key, _), with_label in in_order.items():
        z, label = _strongest_association(with_label, sum(with_label.values()), priors)
        if z > stats[key].z:
            stats[key] = replace(stats[key], z=z, label=label)
    return stats


def shortcut_suspects(
    current: dict[str, TokenStat],
    reference: Optional[dict[str, TokenStat]] = None,
    min_examples: int = _DEFAULT.min_examples,
    top1_rate: float = _DEFAULT.top1_rate,
    min_rise: float = _DEFAULT.min_rise,
    min_share: float = _DEFAULT.min_share,
    min_lift: float = _DEFAULT.min_lift,
) -> list[Suspect]:
    """Tokens that are top-1 in at least ``top1_rate`` of the examples containing them, hold on
    average at least ``min_share`` of those examples' |attribution| mass or ``min_lift`` times a
    uniform token's share (see :class:`ShortcutRules`), appear in at least
    ``min_examples`` probe examples, and whose mean share rose by at least ``min_rise`` over the
    reference run (the share itself counts as the rise when there is no reference). Strongest first.
    """
    suspects = []
    for token, stat in current.items():
        before = reference[token].mean_share if reference and token in reference else 0.0
        rise = stat.mean_share - before
        dominant = stat.mean_share >= min_share or stat.mean_lift >= min_lift
        if stat.examples >= min_examples and stat.top1_rate >= top1_rate and dominant and rise >= min_rise:
            suspects.append(Suspect(token, stat.examples, stat.mean_share, before, rise, stat.top1_rate, stat.z,
                                    stat.label, tuple(token.split(PAIR_SEPARATOR)), stat.mean_lift))
    return strongest_first(suspects)


def strongest_first(suspects: Iterable[Suspect]) -> list[Suspect]:
    """Suspects ordered by top rate x share (ties by name), e.g. single and pair suspects together."""
    return sorted(suspects, key=lambda s: (-s.top1_rate * s.mean_share, s.token))


class AttributedExamples(NamedTuple):
    """One method's view of a run's probe examples, the input of :func:`find_suspects`.
    ``labels``: the validation labels (``None`` entries where unknown); ``predictions``: the
    model's predicted classes; ``roles``: per entry of ``tokens``, its chat turn (conversations)."""

    tokens: Sequence[Sequence[str]]
    scores: Sequence[Sequence[float]]
    special: Sequence[Sequence[bool]]
    labels: Optional[Sequence[Optional[int]]] = None
    predictions: Optional[Sequence[int]] = None
    roles: Optional[Sequence[Sequence[Optional[str]]]] = None


@dataclass(frozen=True)
class TrainingAssociation:
    """A word's association with a label in the training set: an artifact row of Gardner et al.'s
    table (its ``z`` above the Bonferroni line), as :mod:`lightning_saliency.monitor.evidence.artifacts` finds it."""

    z: float
    label: Optional[int]


def _associated(suspect: Suspect, by_prediction: dict[str, TokenStat], training: Mapping[str, TrainingAssociation],
                min_z: float) -> Optional[Suspect]:
    """The suspect with the sources its association reaches ``min_z`` in, or ``None`` when it
    reaches it nowhere. A shortcut is a training artifact: users often validate on data that does
    not carry it, where the validation labels show no association, but the training set and the
    model's own predictions do."""
    sources: list[tuple[str, float, Optional[int]]] = []
    if suspect.z >= min_z:
        sources.append(("validation", suspect.z, suspect.label))
    if len(suspect.members) == 1 and suspect.token in training:
        found = training[suspect.token]
        sources.append(("training", found.z, found.label))
    predicted = by_prediction.get(suspect.token)
    if predicted is not None and predicted.z >= min_z:
        sources.append(("predictions", predicted.z, predicted.label))
    if not sources:
        return None
    _, z, label = sources[0]
    return replace(suspect, z=z, label=label, association=tuple(name for name, _, _ in sources))


def find_suspects(
    current: AttributedExamples, reference: Optional[AttributedExamples] = None, rules: ShortcutRules = _DEFAULT,
    training: Optional[Mapping[str, TrainingAssociation]] = None,
) -> tuple[list[Suspect], dict[str, TokenStat]]:
    """The shortcut policy: single-token suspects, plus pair suspects when neither member is a
    suspect alone (else any frequent neighbour of a strong single shortcut would pair up with it).
    A pair must hold twice the share a single token needs. Each must carry a label association of
    at least ``rules.min_z`` against the validation labels, the model's predictions, or (single
    words) the training set (``training``: its artifacts by word); a word associated nowhere (z = 0,
    e.g. "it" or "the") stays quiet. ``reference`` covers the same examples (e.g. the ``start`` run
    restricted to them). Returns the suspects, strongest first, and the per-token statistics of ``current``."""
    singles, pairs = token_statistics(*current[:4]), pair_statistics(*current[:4])
    by_prediction: dict[str, TokenStat] = {}
    if current.predictions is not None:
        view = (current.tokens, current.scores, current.special, current.predictions)
        by_prediction = {**token_statistics(*view), **pair_statistics(*view, pairs=list(pairs))}
    before = pairs_before = None
    if reference is not None:
        before, pairs_before = token_statistics(*reference[:4]), pair_statistics(*reference[:4], pairs=list(pairs))
    # The thresholds shortcut_suspects applies (coverage as a count); the association is checked after.
    limits = {f.name: getattr(rules, f.name) for f in fields(rules) if f.name not in ("min_fraction", "min_z", "ignore")}
    limits["min_examples"] = rules.min_count(len(current.tokens))
    training = training or {}

    def associated(candidates: list[Suspect]) -> list[Suspect]:
        kept = (_associated(s, by_prediction, training, rules.min_z) for s in candidates)
        return [s for s in kept if s is not None]

    single_suspects = associated(shortcut_suspects(singles, before, **limits))
    pair_suspects = associated(shortcut_suspects(pairs, pairs_before, **{**limits, "min_share": 2 * rules.min_share}))
    names = {s.token for s in single_suspects}
    return strongest_first(single_suspects + [p for p in pair_suspects if not names & set(p.members)]), singles
