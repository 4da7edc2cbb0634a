"""Integration rules for the Integrated Gradients path integral over alpha in [0, 1].

Kept tiny and free of model code (like captum's ``approximation_methods``) so the rules can be
checked against closed-form integrals in isolation.

Fixed rules return ``(alphas, weights)`` with ``sum(weights) == 1``. The adaptive mode integrates
each interval of alpha with the 7-point Gauss-Kronrod rule, whose embedded 3-point Gauss rule gives
the interval's error estimate (:func:`kronrod_interval`), and bisects the intervals where that
estimate is largest, as QUADPACK's QAG does. The nested uniform levels with Romberg coefficients
(:func:`nested_level`, :func:`romberg_coefficients`) are kept for comparison in the tests.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch

FIXED_RULES = ("gauss_legendre", "trapezoid", "riemann_middle")


def fixed_rule(rule: str, n_steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Return float64 ``(alphas, weights)`` of ``n_steps`` points for a fixed rule on [0, 1]."""
    if n_steps < 1:
        raise ValueError(f"n_steps must be >= 1, got {n_steps}.")
    if rule == "gauss_legendre":
        x, w = np.polynomial.legendre.leggauss(n_steps)
        alphas, weights = 0.5 * (x + 1.0), 0.5 * w
    elif rule == "trapezoid":
        if n_steps < 2:
            raise ValueError("The trapezoid rule needs n_steps >= 2 (both end points).")
        alphas = np.linspace(0.0, 1.0, n_steps)
        weights = np.full(n_steps, 1.0 / (n_steps - 1))
        weights[0] = weights[-1] = 0.5 / (n_steps - 1)
    elif rule == "riemann_middle":
        alphas = (np.arange(n_steps) + 0.5) / n_steps
        weights = np.full(n_steps, 1.0 / n_steps)
    else:
        raise ValueError(f"Unknown integration rule {rule!r}; choose one of {FIXED_RULES}.")
    return torch.as_tensor(alphas, dtype=torch.float64), torch.as_tensor(weights, dtype=torch.float64)


def includes_endpoint(rule: str) -> bool:
    """Whether the fixed rule evaluates the gradient at alpha = 1 (the input itself)."""
    return rule == "trapezoid"


def nested_level(level: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Alphas first evaluated at ``level`` and their weight inside that level's gradient sum.

    Level 0 is the two end points with weight 1/2 each (the trapezoid with one interval);
    level ``k >= 1`` is ``(2j - 1) / 2**k`` for ``j = 1 .. 2**(k-1)`` with weight 1.
    """
    if level == 0:
        return torch.tensor([0.0, 1.0], dtype=torch.float64), torch.tensor([0.5, 0.5], dtype=torch.float64)
    count = 2 ** (level - 1)
    alphas = (2.0 * torch.arange(1, count + 1, dtype=torch.float64) - 1.0) / 2**level
    return alphas, torch.ones(count, dtype=torch.float64)


def points_up_to(level: int) -> int:
    """Number of distinct alphas evaluated once levels ``0 .. level`` are done."""
    return 2**level + 1


@lru_cache(maxsize=None)
def _romberg_table(level: int) -> tuple[tuple[float, ...], ...]:
    # Trapezoid T_k = T_{k-1} / 2 + 2**-k * S_k, written as coefficients over the level sums S_0..S_k.
    trapezoids = []
    for k in range(level + 1):
        coeffs = np.zeros(level + 1)
        if k == 0:
            coeffs[0] = 1.0
        else:
            coeffs[: k + 1] = trapezoids[k - 1][: k + 1] / 2.0
            coeffs[k] += 2.0**-k
        trapezoids.append(coeffs)
    # Richardson extrapolation R(i, j) = R(i, j-1) + (R(i, j-1) - R(i-1, j-1)) / (4**j - 1).
    previous = trapezoids
    for j in range(1, level + 1):
        current = [None] * (level + 1)
        for i in range(j, level + 1):
            current[i] = previous[i] + (previous[i] - previous[i - 1]) / (4.0**j - 1.0)
        previous = current
    return tuple(tuple(float(c) for c in trapezoids[k]) for k in range(level + 1)) + (tuple(previous[level]),)


def romberg_coefficients(level: int, extrapolate: bool = True) -> torch.Tensor:
    """Coefficients ``c`` with ``integral ~= sum_l c[l] * S_l`` over the level sums ``S_0..S_level``.

    With ``extrapolate=False`` this is the plain trapezoid rule on ``2**level`` intervals.
    """
    if level < 0:
        raise ValueError(f"level must be >= 0, got {level}.")
    table = _romberg_table(level)
    coeffs = table[-1] if extrapolate else table[level]
    return torch.tensor(coeffs, dtype=torch.float64)


# The 7-point Kronrod extension of the 3-point Gauss-Legendre rule on [-1, 1] (nodes from the
# outside in; the Gauss nodes are the 2nd, the 4th (0) and the 6th). Exact for polynomials of
# degree 11 (Kronrod) and 5 (Gauss); |Kronrod - Gauss| bounds the error of the Gauss estimate.
_K7_NODES = (-0.960491268708020283423507092629080, -0.774596669241483377035853079956480,
             -0.434243749346802558002071502844628, 0.0, 0.434243749346802558002071502844628,
             0.774596669241483377035853079956480, 0.960491268708020283423507092629080)
_K7_WEIGHTS = (0.104656226026467265193823857192073, 0.268488089868333440728569280666710,
               0.401397414775962222905051818618432, 0.450916538658474142345110446149685,
               0.401397414775962222905051818618432, 0.268488089868333440728569280666710,
               0.104656226026467265193823857192073)
_G3_WEIGHTS = (0.0, 5.0 / 9.0, 0.0, 8.0 / 9.0, 0.0, 5.0 / 9.0, 0.0)
KRONROD_POINTS = len(_K7_NODES)


def kronrod_interval(low: float, high: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(alphas, kronrod_weights, gauss_weights)`` of the 7-point Gauss-Kronrod rule on
    ``[low, high]`` (float64; both weight sets sum to ``high - low``)."""
    half, mid = (high - low) / 2.0, (high + low) / 2.0
    alphas = torch.tensor([mid + half * x for x in _K7_NODES], dtype=torch.float64)
    return (alphas, torch.tensor(_K7_WEIGHTS, dtype=torch.float64) * half,
            torch.tensor(_G3_WEIGHTS, dtype=torch.float64) * half)
