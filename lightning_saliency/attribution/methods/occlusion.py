"""Leave-one-out occlusion: the drop in the target's probability when a token is replaced."""
from __future__ import annotations

import torch

from lightning_saliency.attribution.context import AttributionContext
from lightning_saliency.attribution.evaluator import Job
from lightning_saliency.attribution.targets import target_probability
from lightning_saliency.attribution.methods.base import AttributionMethod, SharedPasses, register
from lightning_saliency.attribution.results import MethodAttribution


@register
class Occlusion(AttributionMethod):
    name = "occlusion"
    config_fields = ('baseline',)
    order = 40

    def compute(self, ctx: AttributionContext, shared: SharedPasses) -> MethodAttribution:
        return MethodAttribution(self.name, ctx.scatter(occlusion_scores(ctx)))


def occlusion_scores(ctx: AttributionContext) -> list[torch.Tensor]:
    """Leave-one-out: ``p(target | x) - p(target | x with token t replaced by the baseline token)``.

    Special tokens and padding are never occluded and score 0.
    """
    results = [torch.zeros(r.shape) for r in ctx.replace]

    def build(example: int, positions: list) -> torch.Tensor:
        return ctx.replaced_rows(example, [[p] for p in positions])

    def consume(group, head, scores, grads, output) -> None:
        reference = target_probability(ctx.head_at_input[group.example], ctx.targets[group.example])
        flat = results[group.example].view(-1)
        for position, row in zip(group.params, head):
            flat[position] = float(reference - target_probability(row, ctx.targets[group.example]))

    jobs = [
        Job(i, int(p)) for i in range(ctx.size) for p in torch.nonzero(ctx.replace[i].reshape(-1)).flatten().tolist()
    ]
    ctx.evaluator.run(jobs, build, consume, need_grad=False)
    return results
