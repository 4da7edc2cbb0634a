"""Attention received per token (head-averaged, last layer or mean over layers). A baseline for
comparison, not an explanation of the prediction."""
from __future__ import annotations

from typing import Any

from torch import nn

from lightning_saliency.attribution import perturbation
from lightning_saliency.attribution.context import AttributionContext
from lightning_saliency.attribution.methods.base import AttributionMethod, SharedPasses, attribute_one, register
from lightning_saliency.attribution.results import MethodAttribution


@register
class Attention(AttributionMethod):
    name = "attention"
    order = 50

    def signed(self, config: Any) -> bool:
        return False  # attention weights are never negative

    def compute(self, ctx: AttributionContext, shared: SharedPasses) -> MethodAttribution:
        return MethodAttribution(self.name, ctx.scatter(perturbation.attention(ctx)))


def attention(model: nn.Module, inputs: Any, **options: Any) -> MethodAttribution:
    """Attention alone: :func:`~lightning_saliency.attribute` with ``methods=("attention",)``;
    takes the same keyword arguments."""
    return attribute_one(Attention.name, model, inputs, **options)
