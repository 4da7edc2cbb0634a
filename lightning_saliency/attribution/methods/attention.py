"""Attention received per token (head-averaged, last layer or mean over layers). A baseline for
comparison, not an explanation of the prediction."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator

import torch
from torch import nn

from lightning_saliency.attribution.context import AttributionContext
from lightning_saliency.attribution.evaluator import Job
from lightning_saliency.attribution.methods.base import AttributionMethod, SharedPasses, register
from lightning_saliency.attribution.results import MethodAttribution


@register
class Attention(AttributionMethod):
    name = "attention"
    config_fields = ('attention_layers',)
    order = 50

    def signed(self, config: Any) -> bool:
        return False  # attention weights are never negative

    def compute(self, ctx: AttributionContext, shared: SharedPasses) -> MethodAttribution:
        return MethodAttribution(self.name, ctx.scatter(attention_scores(ctx)))


@contextmanager
def _eager_attention(model: nn.Module) -> Iterator[None]:
    """Hugging Face SDPA/flash kernels return no attention weights: switch to eager, then back."""
    config = getattr(model, "config", None)
    current = getattr(config, "_attn_implementation", None)
    switch = current not in (None, "eager") and hasattr(model, "set_attn_implementation")
    if switch:
        model.set_attn_implementation("eager")
    try:
        yield
    finally:
        if switch:
            model.set_attn_implementation(current)


def attention_scores(ctx: AttributionContext) -> list[torch.Tensor]:
    """Head-averaged attention each token receives, averaged over query positions.

    ``attention_layers="last"`` uses the last layer, ``"mean"`` averages all layers.
    """
    cfg, choices = ctx.config, ctx.evaluator.choices
    results: list = [None] * ctx.size

    def build(example: int, params: list) -> torch.Tensor:
        return ctx.inputs[example].unsqueeze(0)

    def consume(group, head, scores, grads, output) -> None:
        maps = output.get("attentions") if isinstance(output, dict) else getattr(output, "attentions", None)
        if not maps or any(m is None for m in maps):
            raise ValueError(
                "The model returned no attention weights. The attention method needs a model that accepts "
                "output_attentions=True (Hugging Face transformers) or a forward_fn returning an object with "
                "`.attentions` (one (batch, heads, seq, seq) tensor per layer)."
            )
        layers = maps[-1:] if cfg.attention_layers == "last" else maps
        rows = slice(group.rows.start * choices, group.rows.stop * choices)
        n = group.length
        averaged = torch.stack([m[rows, :, :n, :n].float() for m in layers]).mean(dim=(0, 2))  # (rows, q, k)
        received = averaged.mean(dim=1)
        results[group.example] = received.view(ctx.inputs[group.example].shape[:-1]).detach()

    # A custom forward_fn finds output_attentions=True among its inputs and may pass it on.
    jobs = [Job(i, None) for i in range(ctx.size)]
    with _eager_attention(ctx.model):
        try:
            ctx.evaluator.run(jobs, build, consume, need_grad=False, extra_inputs={"output_attentions": True})
        except TypeError as error:
            if "output_attentions" not in str(error):
                raise
            raise ValueError(
                f"The model does not accept output_attentions ({error}); the attention method needs a model that "
                "returns attention weights, or a forward_fn that drops the argument and returns `.attentions`."
            ) from error
    return results
