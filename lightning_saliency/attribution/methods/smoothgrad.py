"""SmoothGrad (Smilkov et al. 2017): gradients averaged over noisy copies of the embeddings."""
from __future__ import annotations

from typing import Any

import torch

from lightning_saliency.attribution.context import AttributionContext
from lightning_saliency.attribution.evaluator import Job
from lightning_saliency.attribution.isolation import private_generator
from lightning_saliency.attribution.methods.base import AttributionMethod, SharedPasses, register
from lightning_saliency.attribution.results import MethodAttribution


@register
class SmoothGrad(AttributionMethod):
    name = "smoothgrad"
    config_fields = ('smoothgrad_samples', 'smoothgrad_stdev', 'gradient_norm', 'seed')
    order = 30

    def signed(self, config: Any) -> bool:
        return config.gradient_norm == "sum"  # a norm has no sign

    def compute(self, ctx: AttributionContext, shared: SharedPasses) -> MethodAttribution:
        return self.from_dimensions(ctx, self.name, smoothgrad_scores(ctx), ctx.config.gradient_norm)


def _noise(seed: int, sample: int, like: torch.Tensor) -> torch.Tensor:
    # One private stream per sample index, shared by all examples of any batch.
    return torch.randn(like.shape, generator=private_generator(seed, sample)).to(like)


def smoothgrad_scores(ctx: AttributionContext) -> list[torch.Tensor]:
    """Mean gradient over ``smoothgrad_samples`` Gaussian perturbations of the input embeddings."""
    cfg = ctx.config
    sums = [torch.zeros_like(x) for x in ctx.inputs]
    scales = [float(x.max() - x.min()) * cfg.smoothgrad_stdev for x in ctx.inputs]

    def build(example: int, samples: list) -> torch.Tensor:
        x = ctx.inputs[example]
        return torch.stack([x + scales[example] * _noise(cfg.seed, k, x) for k in samples])

    def consume(group, head, scores, grads, output) -> None:
        sums[group.example] += grads.sum(dim=0)

    jobs = [Job(i, k) for i in range(ctx.size) for k in range(cfg.smoothgrad_samples)]
    ctx.evaluator.run(jobs, build, consume, need_grad=True)
    return [s / cfg.smoothgrad_samples for s in sums]
