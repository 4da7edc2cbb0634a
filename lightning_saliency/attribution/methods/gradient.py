"""Gradient saliency: the norm of the gradient with respect to each token's embedding
(``gradient_norm``, L2 by default, as in Bastings et al. 2022's Grad-L2)."""
from __future__ import annotations

from typing import Any

from lightning_saliency.attribution.context import AttributionContext
from lightning_saliency.attribution.methods.base import AttributionMethod, SharedPasses, register
from lightning_saliency.attribution.results import MethodAttribution


@register
class Gradient(AttributionMethod):
    name = "gradient"
    config_fields = ('gradient_norm',)
    order = 10
    uses_input_gradient = True

    def signed(self, config: Any) -> bool:
        return config.gradient_norm == "sum"  # a norm has no sign

    def compute(self, ctx: AttributionContext, shared: SharedPasses) -> MethodAttribution:
        return self.from_dimensions(ctx, self.name, shared.input_gradients(), ctx.config.gradient_norm)
