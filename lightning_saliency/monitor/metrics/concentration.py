"""How concentrated one example's attribution mass is."""
from __future__ import annotations

import math
from typing import Sequence

import torch

from lightning_saliency.monitor.metrics.drift import normalized_magnitude


def concentration(scores: Sequence[float], special: Sequence[bool]) -> dict[str, float]:
    """Entropy, top-1 share and special-token share of the |attribution| mass.

    ``entropy`` is normalized by ``log(n)`` over the non-special tokens (1 = uniform, 0 = one
    token carries everything); ``top1_share`` is the largest non-special token's share of the
    non-special mass; ``special_share`` is the special tokens' share of all mass.
    """
    values = torch.as_tensor(scores, dtype=torch.float64)
    is_special = torch.as_tensor(special, dtype=torch.bool)
    total = values.abs().sum()
    special_share = float(values[is_special].abs().sum() / total) if total > 0 else 0.0
    regular = values[~is_special]
    if regular.numel() == 0:
        return {"entropy": math.nan, "top1_share": math.nan, "special_share": special_share}
    p = normalized_magnitude(regular)
    nonzero = p[p > 0]
    entropy = float(-(nonzero * nonzero.log()).sum())
    normalized = entropy / math.log(regular.numel()) if regular.numel() > 1 else 0.0
    return {"entropy": normalized, "top1_share": float(p.max()), "special_share": special_share}
