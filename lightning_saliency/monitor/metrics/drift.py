"""Agreement between two attribution vectors over the same tokens (one example, two runs)."""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torchmetrics.functional import spearman_corrcoef

DRIFT_METRICS = ("spearman", "kendall", "topk_overlap", "jensen_shannon", "sign_agreement")


def _constant(x: torch.Tensor) -> bool:
    return x.numel() < 2 or bool(torch.all(x == x[0]))


def spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    """Spearman rank correlation (torchmetrics); NaN when either side is constant."""
    if _constant(a) or _constant(b):
        return math.nan
    return float(spearman_corrcoef(a.double(), b.double()))


def kendall(a: torch.Tensor, b: torch.Tensor) -> float:
    """Kendall's tau-b; NaN when either side is constant.

    ``(concordant - discordant) / sqrt(pairs untied in a * pairs untied in b)`` from the pairwise
    sign matrices: one vectorised O(n^2) pass. torchmetrics' ``kendall_rank_corrcoef`` gives the
    same number (the tests check it, and scipy's) but costs 2.6 ms per 62-token example against
    0.1 ms here, and a run computes it for every example, method and comparison.
    """
    if _constant(a) or _constant(b):
        return math.nan
    sign_a = torch.sign(a.double().unsqueeze(0) - a.double().unsqueeze(1)).triu(diagonal=1)
    sign_b = torch.sign(b.double().unsqueeze(0) - b.double().unsqueeze(1)).triu(diagonal=1)
    untied = sign_a.abs().sum() * sign_b.abs().sum()
    return float((sign_a * sign_b).sum() / untied.sqrt())


def topk_overlap(a: torch.Tensor, b: torch.Tensor, k: int = 5) -> float:
    """``|top_k(|a|) ∩ top_k(|b|)| / k`` with ``k`` capped at the number of tokens."""
    k = min(k, a.numel())
    if k == 0:
        return math.nan
    top_a = set(torch.topk(a.abs(), k).indices.tolist())
    top_b = set(torch.topk(b.abs(), k).indices.tolist())
    return len(top_a & top_b) / k


def normalized_magnitude(x: torch.Tensor) -> torch.Tensor:
    """``|x| / sum |x|`` (uniform when all zero): the attribution mass distribution."""
    magnitude = x.abs().double()
    total = magnitude.sum()
    return magnitude / total if total > 0 else torch.full_like(magnitude, 1.0 / max(x.numel(), 1))


def jensen_shannon(a: torch.Tensor, b: torch.Tensor) -> float:
    """Jensen-Shannon divergence (base 2, in [0, 1]) of the normalized |attribution| distributions."""
    p, q = normalized_magnitude(a), normalized_magnitude(b)
    m = 0.5 * (p + q)

    def kl(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        keep = x > 0
        return (x[keep] * (x[keep] / y[keep]).log2()).sum()

    return float(0.5 * kl(p, m) + 0.5 * kl(q, m))


def sign_agreement(a: torch.Tensor, b: torch.Tensor) -> float:
    """Fraction of tokens whose attributions have the same sign (zero counts as its own sign)."""
    return float((torch.sign(a) == torch.sign(b)).double().mean()) if a.numel() else math.nan


def drift(a: Sequence[float], b: Sequence[float], k: int = 5) -> dict[str, float]:
    """All drift metrics for one example; ``a`` and ``b`` cover the same (non-special) tokens."""
    x, y = torch.as_tensor(a, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64)
    if x.shape != y.shape:
        raise ValueError(f"Drift needs the same tokens on both sides, got {tuple(x.shape)} and {tuple(y.shape)}.")
    return {
        "spearman": spearman(x, y),
        "kendall": kendall(x, y),
        "topk_overlap": topk_overlap(x, y, k),
        "jensen_shannon": jensen_shannon(x, y),
        "sign_agreement": sign_agreement(x, y),
    }


def summarize(values: Sequence[float]) -> dict[str, float]:
    """Mean and 10th percentile over examples, ignoring NaN."""
    finite = torch.tensor([v for v in values if not math.isnan(v)], dtype=torch.float64)
    if finite.numel() == 0:
        return {"mean": math.nan, "p10": math.nan}
    return {"mean": float(finite.mean()), "p10": float(torch.quantile(finite, 0.1))}
