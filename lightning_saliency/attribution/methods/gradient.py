"""Gradient saliency: the norm of the gradient with respect to each token's embedding
(``gradient_norm``, L2 by default, as in Bastings et al. 2022's Grad-L2)."""
from __future__ import annotations

from typing import Any

from torch import nn

from lightning_saliency.attribution.context import AttributionContext
from lightning_saliency.attribution.methods.base import AttributionMethod, SharedPasses, attribute_one, register
from lightning_saliency.attribution.results import MethodAttribution


@register
class Gradient(AttributionMethod):
    name = "gradient"
    order = 10
    uses_input_gradient = True

    def signed(self, config: Any) -> bool:
        return config.gradient_norm == "sum"  # a norm has no sign

    def compute(self, ctx: AttributionContext, shared: SharedPasses) -> MethodAttribution:
        return self.from_dimensions(ctx, self.name, shared.input_gradients(), ctx.config.gradient_norm)


def gradient(model: nn.Module, inputs: Any, **options: Any) -> MethodAttribution:
    """Gradient saliency alone: :func:`~lightning_saliency.attribute` with ``methods=("gradient",)``;
    takes the same keyword arguments."""
    return attribute_one(Gradient.name, model, inputs, **options)
