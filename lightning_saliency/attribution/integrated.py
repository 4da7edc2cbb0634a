"""Integrated Gradients along the straight path in word-embedding space, fixed or adaptive.

Both modes return, per example, the path integral of the gradient (float32, trimmed layout), the
gradient at the input itself when it was evaluated on the way (so gradient saliency and
gradient x input share the sweep), and the number of gradient evaluations spent.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from lightning_saliency.attribution.approximation import (
    fixed_rule,
    includes_endpoint,
    nested_level,
    points_up_to,
    romberg_coefficients,
)
from lightning_saliency.attribution.context import AttributionContext
from lightning_saliency.attribution.evaluator import Job

_ABSOLUTE_FLOOR = 1e-5  # completeness error below this (in score units) counts as converged
_AT_INPUT = "input"


@dataclass
class PathIntegral:
    integrals: list[torch.Tensor]
    input_gradients: list[Optional[torch.Tensor]]
    steps: torch.Tensor

    def attributions(self, ctx: AttributionContext) -> list[torch.Tensor]:
        """Per-dimension IG: ``(x - x') * integral``."""
        return [(ctx.inputs[i] - ctx.baselines[i]) * self.integrals[i] for i in range(ctx.size)]


def _relative_error(ctx: AttributionContext, example: int, integral: torch.Tensor) -> float:
    total = float(((ctx.inputs[example] - ctx.baselines[example]) * integral).sum())
    change = float(ctx.target_score[example] - ctx.baseline_score[example])
    error = abs(total - change)
    if error <= _ABSOLUTE_FLOOR:
        return 0.0
    return error / max(abs(change), 1e-12)


def fixed_path(ctx: AttributionContext, need_input_gradient: bool) -> PathIntegral:
    """IG with a fixed rule; one extra gradient row at alpha = 1 when asked and the rule lacks it."""
    cfg = ctx.config
    alphas, weights = fixed_rule(cfg.rule, cfg.n_steps)
    integrals = [torch.zeros_like(x) for x in ctx.inputs]
    at_input: list[Optional[torch.Tensor]] = [None] * ctx.size
    jobs = [Job(i, k) for i in range(ctx.size) for k in range(cfg.n_steps)]
    if need_input_gradient and not includes_endpoint(cfg.rule):
        jobs += [Job(i, _AT_INPUT) for i in range(ctx.size)]

    def build(example: int, params: list) -> torch.Tensor:
        points = torch.tensor([1.0 if p == _AT_INPUT else float(alphas[p]) for p in params])
        return ctx.interpolate(example, points)

    def consume(group, head, scores, grads, output) -> None:
        for param, grad in zip(group.params, grads):
            if param == _AT_INPUT or float(alphas[param]) == 1.0:
                at_input[group.example] = grad
            if param != _AT_INPUT:
                integrals[group.example] += float(weights[param]) * grad

    ctx.evaluator.run(jobs, build, consume, need_grad=True)
    return PathIntegral(integrals, at_input, torch.full((ctx.size,), cfg.n_steps, dtype=torch.long))


def _level_bounds(min_steps: int, max_steps: int) -> tuple[int, int]:
    low = 0
    while points_up_to(low) < min_steps:
        low += 1
    high = low
    while points_up_to(high + 1) <= max_steps:
        high += 1
    return low, high


def adaptive_path(ctx: AttributionContext) -> PathIntegral:
    """IG refined per example on nested grids until the completeness error meets the tolerance.

    Level ``k`` adds the odd multiples of ``2**-k``; every gradient is computed once and kept as a
    per-level sum, and the estimate is the Romberg combination of those sums. Examples that
    converge drop out, so the batch shrinks as refinement proceeds.
    """
    cfg = ctx.config
    first, last = _level_bounds(cfg.min_steps, cfg.max_steps)
    level_sums = [[torch.zeros_like(x) for _ in range(last + 1)] for x in ctx.inputs]
    at_input: list[Optional[torch.Tensor]] = [None] * ctx.size
    integrals: list[Optional[torch.Tensor]] = [None] * ctx.size
    steps = torch.zeros(ctx.size, dtype=torch.long)
    levels = {level: nested_level(level) for level in range(last + 1)}

    def build(example: int, params: list) -> torch.Tensor:
        return ctx.interpolate(example, torch.tensor([float(levels[l][0][j]) for l, j in params]))

    def consume(group, head, scores, grads, output) -> None:
        for (level, j), grad in zip(group.params, grads):
            alpha, weight = levels[level][0][j], levels[level][1][j]
            level_sums[group.example][level] += float(weight) * grad
            if float(alpha) == 1.0:
                at_input[group.example] = grad

    active = list(range(ctx.size))
    pending = list(range(first + 1))
    # Under lockstep, a rank whose examples have converged runs empty batches while others refine.
    while ctx.evaluator.agree_any(bool(active)):
        jobs = [Job(i, (l, j)) for i in active for l in pending for j in range(len(levels[l][0]))]
        ctx.evaluator.run(jobs, build, consume, need_grad=True)
        level = pending[-1]
        coeffs = romberg_coefficients(level)
        still_active = []
        for i in active:
            estimate = sum(float(c) * s for c, s in zip(coeffs, level_sums[i][: level + 1]))
            if level == last or _relative_error(ctx, i, estimate) <= cfg.tolerance:
                integrals[i] = estimate
                steps[i] = points_up_to(level)
            else:
                still_active.append(i)
        active = still_active
        pending = [level + 1]
    return PathIntegral(integrals, at_input, steps)


def gradient_at_input(ctx: AttributionContext) -> list[torch.Tensor]:
    """Gradient of the target with respect to the input's word embeddings (alpha = 1 only)."""
    grads: list[Optional[torch.Tensor]] = [None] * ctx.size

    def build(example: int, params: list) -> torch.Tensor:
        return ctx.inputs[example].unsqueeze(0)

    def consume(group, head, scores, grad, output) -> None:
        grads[group.example] = grad[0]

    ctx.evaluator.run([Job(i, _AT_INPUT) for i in range(ctx.size)], build, consume, need_grad=True)
    return grads
