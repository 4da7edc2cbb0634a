"""Integrated Gradients (Sundararajan et al. 2017) in word-embedding space, fixed or adaptive."""
from __future__ import annotations

from lightning_saliency.attribution import integrated
from lightning_saliency.attribution.context import AttributionContext
from lightning_saliency.attribution.methods.base import AttributionMethod, SharedPasses, register
from lightning_saliency.attribution.results import MethodAttribution


@register
class IntegratedGradients(AttributionMethod):
    name = "integrated_gradients"
    config_fields = ('n_steps', 'rule', 'tolerance', 'min_steps', 'max_steps', 'baseline')
    order = 0
    needs_baseline_score = True

    def compute(self, ctx: AttributionContext, shared: SharedPasses) -> MethodAttribution:
        if ctx.config.tolerance is None:
            path = integrated.fixed_path(ctx, shared.wants_input_gradient)
        else:
            path = integrated.adaptive_path(ctx, shared.wants_input_gradient)
        shared.offer_input_gradients(path.input_gradients)
        per_dimension = path.attributions(ctx)
        scores = ctx.scatter([a.sum(dim=-1) for a in per_dimension])
        delta = scores.flatten(1).sum(dim=1) - (ctx.target_score - ctx.baseline_score)
        raw = ctx.scatter(per_dimension) if ctx.config.return_raw else None
        return MethodAttribution(self.name, scores, raw, delta=delta, steps=path.steps)
