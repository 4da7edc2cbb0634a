"""Leave-one-out occlusion: the drop in the target's probability when a token is replaced."""
from __future__ import annotations

from typing import Any

from torch import nn

from lightning_saliency.attribution import perturbation
from lightning_saliency.attribution.context import AttributionContext
from lightning_saliency.attribution.methods.base import AttributionMethod, SharedPasses, attribute_one, register
from lightning_saliency.attribution.results import MethodAttribution


@register
class Occlusion(AttributionMethod):
    name = "occlusion"
    order = 40

    def compute(self, ctx: AttributionContext, shared: SharedPasses) -> MethodAttribution:
        return MethodAttribution(self.name, ctx.scatter(perturbation.occlusion(ctx)))


def occlusion(model: nn.Module, inputs: Any, **options: Any) -> MethodAttribution:
    """Occlusion alone: :func:`~lightning_saliency.attribute` with ``methods=("occlusion",)``;
    takes the same keyword arguments."""
    return attribute_one(Occlusion.name, model, inputs, **options)
