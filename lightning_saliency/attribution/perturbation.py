"""SmoothGrad (noisy gradients), leave-one-out occlusion and attention received per token."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
from torch import nn

from lightning_saliency.attribution.context import AttributionContext
from lightning_saliency.attribution.evaluator import Job
from lightning_saliency.attribution.isolation import private_generator


def _noise(seed: int, sample: int, like: torch.Tensor) -> torch.Tensor:
    # One private stream per sample index, shared by all examples of any batch.
    return torch.randn(like.shape, generator=private_generator(seed, sample)).to(like)


def smoothgrad(ctx: AttributionContext) -> list[torch.Tensor]:
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


def target_probability(head: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return head.float().softmax(dim=-1)[..., int(target)]


def occlusion(ctx: AttributionContext) -> list[torch.Tensor]:
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


def attention(ctx: AttributionContext) -> list[torch.Tensor]:
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
