"""Gradient x input: the signed sum over hidden dimensions of gradient times embedding."""
from __future__ import annotations

from lightning_saliency.attribution.context import AttributionContext
from lightning_saliency.attribution.methods.base import AttributionMethod, SharedPasses, register
from lightning_saliency.attribution.results import MethodAttribution


@register
class GradientXInput(AttributionMethod):
    name = "gradient_x_input"
    config_fields = ()
    order = 20
    uses_input_gradient = True

    def compute(self, ctx: AttributionContext, shared: SharedPasses) -> MethodAttribution:
        products = [g * x for g, x in zip(shared.input_gradients(), ctx.inputs)]
        return self.from_dimensions(ctx, self.name, products, "sum")
