"""A one-sided two-sample rank test: are a suspect's probability shifts larger than random words'?

The causal checks' flip tests need a prediction to cross the decision boundary. Early in training,
when the model predicts one class for almost everything, nothing can flip, yet removing a word it
already leans on lowers the class's probability more than removing any other word does (ERASER's
comprehensiveness; inserting it raises the probability, its sufficiency). The Mann-Whitney U test
compares those shifts with the frequency-matched control words' shifts, without assuming a
distribution or a minimum effect size.
"""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from statistics import NormalDist
from typing import Sequence

import numpy as np

# The z a shift test must reach: the evidence the flip tests demand. Two non-overlapping 95% intervals
# are about a difference of 1.96 * sqrt(2) = 2.77 standard errors (one-sided p about 0.003).
SHIFT_Z = 1.96 * math.sqrt(2)
# The size a confirmation needs besides that strength: the suspect's edits must move its class's
# probability this much further than random words' edits do (``EvidenceSettings.min_effect``).
# Measured by benchmarks/bench_effect_floor.py, see docs/evidence.md.
MIN_EFFECT = 0.02


def average_ranks(values: Sequence[float]) -> np.ndarray:
    """1-based ranks of ``values``, ties given the mean of the ranks they span (scipy's ``rankdata``
    with ``method="average"``, which the tests check; numpy alone, so the runtime needs no scipy)."""
    data = np.asarray(values, dtype=float)
    order = np.argsort(data, kind="mergesort")
    ordered = data[order]
    # Each run of equal values starts where the value changes; every member gets the run's mean rank.
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    ends = np.r_[starts[1:], len(ordered)]
    mean_rank = (starts + ends + 1) / 2.0
    ranks = np.empty(len(data))
    ranks[order] = np.repeat(mean_rank, ends - starts)
    return ranks


@dataclass(frozen=True)
class RankComparison:
    """``auc``: the chance that a suspect's shift beats a control's (0.5: no difference); ``z``: the
    normal approximation of the U statistic, tie-corrected (0 when either side is empty)."""

    auc: float
    z: float
    p: float


def rank_comparison(shifts: Sequence[float], control: Sequence[float]) -> RankComparison:
    """Mann-Whitney U of ``shifts`` against ``control``, one-sided (``shifts`` larger)."""
    n1, n2 = len(shifts), len(control)
    if not n1 or not n2:
        return RankComparison(0.5, 0.0, 1.0)
    ranks = average_ranks(list(shifts) + list(control))
    u = float(ranks[:n1].sum()) - n1 * (n1 + 1) / 2
    n = n1 + n2
    counts = [c for c in Counter(ranks.tolist()).values() if c > 1]
    variance = n1 * n2 / 12 * ((n + 1) - sum(t ** 3 - t for t in counts) / (n * (n - 1)))
    if variance <= 0:  # every value tied: no evidence either way
        return RankComparison(0.5, 0.0, 1.0)
    z = (u - n1 * n2 / 2) / math.sqrt(variance)
    return RankComparison(u / (n1 * n2), z, 1 - NormalDist().cdf(z))
