"""Vocabulary-level attribution statistics and shortcut suspects.

A shortcut token is one the model leans on regardless of context: it is the top-attributed token
in most examples that contain it, its share of attribution rose during training, and it appears
often enough to matter. The token-label association is the z statistic of Gardner et al. (2021),
"Competency Problems": ``z = (p(y | token) - p0) / sqrt(p0 (1 - p0) / n)`` with ``p0`` the label
prior in the probe set.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Optional, Sequence

import torch


@dataclass
class TokenStat:
    token: str
    examples: int
    mean_share: float
    top1_rate: float
    z: float
    label: Optional[int]


@dataclass
class Suspect:
    token: str
    examples: int
    mean_share: float
    reference_share: float
    rise: float
    top1_rate: float
    z: float
    label: Optional[int]

    def as_dict(self) -> dict:
        return asdict(self)


def association_z(count_with_label: int, count: int, prior: float) -> float:
    """Gardner et al.'s z statistic of ``p(label | token)`` against the label prior."""
    if count == 0 or prior <= 0 or prior >= 1:
        return 0.0
    return (count_with_label / count - prior) / math.sqrt(prior * (1 - prior) / count)


def token_statistics(
    tokens: Sequence[Sequence[str]],
    scores: Sequence[Sequence[float]],
    special: Sequence[Sequence[bool]],
    labels: Optional[Sequence[Optional[int]]] = None,
) -> dict[str, TokenStat]:
    """Per token type: examples containing it, mean share of |attribution|, top-1 rate, max z."""
    counts: dict[str, int] = {}
    shares: dict[str, float] = {}
    top1: dict[str, int] = {}
    by_label: dict[str, dict[int, int]] = {}
    for i, (toks, vals, spec) in enumerate(zip(tokens, scores, special)):
        values = torch.as_tensor(vals, dtype=torch.float64).abs()
        keep = [j for j in range(len(toks)) if not spec[j]]
        total = float(values[keep].sum()) if keep else 0.0
        if not keep:
            continue
        share_of: dict[str, float] = {}
        for j in keep:
            share_of[toks[j]] = share_of.get(toks[j], 0.0) + (float(values[j]) / total if total > 0 else 0.0)
        best = toks[max(keep, key=lambda j: float(values[j]))]
        for token, share in share_of.items():
            counts[token] = counts.get(token, 0) + 1
            shares[token] = shares.get(token, 0.0) + share
            if labels is not None and labels[i] is not None:
                by_label.setdefault(token, {}).setdefault(int(labels[i]), 0)
                by_label[token][int(labels[i])] += 1
        top1[best] = top1.get(best, 0) + 1
    priors: dict[int, float] = {}
    if labels is not None:
        known = [int(y) for y in labels if y is not None]
        priors = {y: known.count(y) / len(known) for y in set(known)} if known else {}
    stats = {}
    for token, count in counts.items():
        z, label = 0.0, None
        for y, prior in priors.items():
            value = association_z(by_label.get(token, {}).get(y, 0), count, prior)
            if value > z:
                z, label = value, y
        stats[token] = TokenStat(token, count, shares[token] / count, top1.get(token, 0) / count, z, label)
    return stats


def shortcut_suspects(
    current: dict[str, TokenStat],
    reference: Optional[dict[str, TokenStat]] = None,
    min_examples: int = 3,
    top1_rate: float = 0.5,
    min_rise: float = 0.05,
    min_share: float = 0.25,
) -> list[Suspect]:
    """Tokens that are top-1 in at least ``top1_rate`` of the examples containing them, hold on
    average at least ``min_share`` of those examples' |attribution| mass, appear in at least
    ``min_examples`` probe examples, and whose mean share rose by at least ``min_rise`` over the
    reference run (the share itself counts as the rise when there is no reference). Strongest first.
    """
    suspects = []
    for token, stat in current.items():
        before = reference[token].mean_share if reference and token in reference else 0.0
        rise = stat.mean_share - before
        strong = stat.top1_rate >= top1_rate and stat.mean_share >= min_share
        if stat.examples >= min_examples and strong and rise >= min_rise:
            suspects.append(Suspect(token, stat.examples, stat.mean_share, before, rise, stat.top1_rate, stat.z, stat.label))
    return sorted(suspects, key=lambda s: (-s.top1_rate * s.mean_share, s.token))
