"""Binomial confidence intervals for flip rates (how sure are we that a token is relied on)."""
from __future__ import annotations

import math
from statistics import NormalDist


def wilson_interval(successes: int, trials: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion (Wilson 1927).

    Unlike the normal approximation it stays inside [0, 1] and is not degenerate at 0 or n
    successes, which matters here: a shortcut's deletion often flips *every* example (n of n) and
    a random control none (0 of n). ``(0.0, 1.0)`` for no trials: nothing is known.
    """
    if trials < 0 or not 0 <= successes <= trials:
        raise ValueError(f"need 0 <= successes <= trials, got {successes} of {trials}.")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence is in (0, 1), got {confidence}.")
    if trials == 0:
        return 0.0, 1.0
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    p = successes / trials
    denominator = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denominator
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denominator
    # Clamp rounding at the ends: 0 of n has a lower bound of exactly 0, n of n an upper bound of 1.
    return max(0.0, centre - half) if successes else 0.0, min(1.0, centre + half) if successes < trials else 1.0
