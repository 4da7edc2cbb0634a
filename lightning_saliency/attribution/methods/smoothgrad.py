"""SmoothGrad (Smilkov et al. 2017): gradients averaged over noisy copies of the embeddings."""
from __future__ import annotations

from typing import Any

from torch import nn

from lightning_saliency.attribution import perturbation
from lightning_saliency.attribution.context import AttributionContext
from lightning_saliency.attribution.methods.base import AttributionMethod, SharedPasses, attribute_one, register
from lightning_saliency.attribution.results import MethodAttribution


@register
class SmoothGrad(AttributionMethod):
    name = "smoothgrad"
    order = 30

    def signed(self, config: Any) -> bool:
        return config.gradient_norm == "sum"  # a norm has no sign

    def compute(self, ctx: AttributionContext, shared: SharedPasses) -> MethodAttribution:
        return self.from_dimensions(ctx, self.name, perturbation.smoothgrad(ctx), ctx.config.gradient_norm)


def smoothgrad(model: nn.Module, inputs: Any, **options: Any) -> MethodAttribution:
    """SmoothGrad alone: :func:`~lightning_saliency.attribute` with ``methods=("smoothgrad",)``;
    takes the same keyword arguments."""
    return attribute_one(SmoothGrad.name, model, inputs, **options)
