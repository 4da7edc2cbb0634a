"""ERASER's comprehensiveness and sufficiency summed up over a run's examples."""
from __future__ import annotations

from lightning_saliency.schema.records import FaithfulnessSummary


def faithfulness_summary(fractions, comprehensiveness, sufficiency) -> FaithfulnessSummary:
    """Means over examples of per-example ``(examples, fractions)`` tables (tensors or lists)."""
    import torch

    comp, suff = torch.as_tensor(comprehensiveness, dtype=torch.float64), torch.as_tensor(sufficiency, dtype=torch.float64)
    return FaithfulnessSummary(
        fractions=list(fractions), comprehensiveness=comp.mean(dim=0).tolist(), sufficiency=suff.mean(dim=0).tolist(),
        comprehensiveness_aopc=float(comp.mean()), sufficiency_aopc=float(suff.mean()),
    )
