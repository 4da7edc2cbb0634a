"""Integrated Gradients along the straight path in word-embedding space, fixed or adaptive.

Both modes return, per example, the path integral of the gradient (float32, trimmed layout), the
gradient at the input itself when it was evaluated on the way (so gradient saliency and
gradient x input share the sweep), and the number of gradient evaluations spent.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from lightning_saliency.attribution.approximation import KRONROD_POINTS, fixed_rule, includes_endpoint, kronrod_interval
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


@dataclass
class _Interval:
    """One interval of alpha in an example's partition: its Kronrod estimate of the path integral
    (per embedding dimension) and the error estimate of the scalar integrand there."""

    low: float
    high: float
    integral: torch.Tensor
    error: float


class _Pending:
    """The sums of one interval under evaluation: the vector Kronrod sum and the scalar integrand's
    Kronrod and Gauss sums (the integrand is d F / d alpha: the gradient dotted with x - x')."""

    def __init__(self, low: float, high: float, like: torch.Tensor) -> None:
        self.low, self.high = low, high
        self.alphas, self.kronrod, self.gauss = kronrod_interval(low, high)
        self.integral = torch.zeros_like(like)  # the Kronrod sum
        self.gauss_integral = torch.zeros_like(like)
        self.scalar_kronrod = self.scalar_gauss = 0.0

    def add(self, node: int, grad: torch.Tensor, direction: torch.Tensor) -> None:
        kronrod, gauss = float(self.kronrod[node]), float(self.gauss[node])
        self.integral += kronrod * grad
        if gauss:
            self.gauss_integral += gauss * grad
        slope = float((direction * grad).sum())
        self.scalar_kronrod += kronrod * slope
        self.scalar_gauss += gauss * slope

    def done(self) -> _Interval:
        return _Interval(self.low, self.high, self.integral, abs(self.scalar_kronrod - self.scalar_gauss))


_GAUSS_NODES = (1, 3, 5)  # the 3-point Gauss rule inside the 7-point Kronrod rule
_KRONROD_ONLY = (0, 2, 4, 6)


# An interval is bisected in a round when its error estimate is at least this share of the
# example's largest: the few intervals around a steep rise go together, one round each.
_SPLIT_SHARE = 0.25


def _to_split(intervals: list[_Interval], budget: int) -> list[_Interval]:
    """The intervals to bisect (largest error first), as many as ``budget`` evaluations allow."""
    ranked = sorted(intervals, key=lambda v: -v.error)
    worst = ranked[0].error if ranked else 0.0
    chosen = [v for v in ranked if v.error >= _SPLIT_SHARE * worst and v.error > 0.0]
    return chosen[: budget // (2 * KRONROD_POINTS)]


def adaptive_path(ctx: AttributionContext, need_input_gradient: bool = False) -> PathIntegral:
    """IG refined per example where its integrand is steep, until the completeness error meets
    the tolerance.

    Each example starts from ``ceil(min_steps / 3)`` equal intervals of alpha: first their 3-point
    Gauss rules alone (enough for a smooth integrand), then the 7-point Gauss-Kronrod rules that
    extend them, reusing those points. Until ``|sum(attr) - (F(x) - F(x'))| <= tolerance * |F(x) -
    F(x')|`` (or 1e-5 absolute) or ``max_steps`` evaluations are spent, the intervals whose error
    estimate (Kronrod minus the embedded Gauss rule, on the scalar integrand d F / d alpha) is
    largest are bisected: a trained model's integrand is often flat, then a sharp rise where its
    decision changes, and uniform rules spend most points on the flat parts. Every round batches
    the new points of all refining examples into the evaluator's chunks; converged examples drop out.
    """
    cfg = ctx.config
    at_input: list[Optional[torch.Tensor]] = [None] * ctx.size
    integrals: list[Optional[torch.Tensor]] = [None] * ctx.size
    steps = torch.zeros(ctx.size, dtype=torch.long)
    directions = [ctx.inputs[i] - ctx.baselines[i] for i in range(ctx.size)]
    first = max(1, -(-cfg.min_steps // len(_GAUSS_NODES)))
    kept: list[list[_Interval]] = [[] for _ in range(ctx.size)]
    pending: dict[int, list[_Pending]] = {
        i: [_Pending(k / first, (k + 1) / first, ctx.inputs[i]) for k in range(first)] for i in range(ctx.size)}
    # The first round evaluates the Gauss nodes alone: a smooth integrand is done with them; the
    # second completes the same intervals' Kronrod rules, reusing them, and refinement goes on.
    nodes: dict[int, tuple[int, ...]] = {i: _GAUSS_NODES for i in range(ctx.size)}

    def build(example: int, params: list) -> torch.Tensor:
        points = [1.0 if p == _AT_INPUT else float(pending[example][p[0]].alphas[p[1]]) for p in params]
        return ctx.interpolate(example, torch.tensor(points))

    def consume(group, head, scores, grads, output) -> None:
        for param, grad in zip(group.params, grads):
            if param == _AT_INPUT:
                at_input[group.example] = grad
            else:
                pending[group.example][param[0]].add(param[1], grad, directions[group.example])

    active = list(range(ctx.size))
    wants_input = need_input_gradient
    # Under lockstep, a rank whose examples have converged runs empty batches while others refine.
    while ctx.evaluator.agree_any(bool(active)):
        jobs = [Job(i, (slot, node)) for i in active for slot in range(len(pending[i])) for node in nodes[i]]
        if wants_input:  # the gradient at alpha = 1, for gradient and gradient x input: one row each
            jobs += [Job(i, _AT_INPUT) for i in range(ctx.size)]
            wants_input = False
        ctx.evaluator.run(jobs, build, consume, need_grad=True)
        still = []
        for i in active:
            steps[i] += len(nodes[i]) * len(pending[i])
            if nodes[i] == _GAUSS_NODES:  # the Gauss estimate, before any Kronrod node
                estimate = sum(p.gauss_integral for p in pending[i])
                if _relative_error(ctx, i, estimate) <= cfg.tolerance or (
                        int(steps[i]) + len(_KRONROD_ONLY) * len(pending[i]) > cfg.max_steps):
                    integrals[i], pending[i] = estimate, []
                else:
                    nodes[i] = _KRONROD_ONLY
                    still.append(i)
                continue
            nodes[i] = tuple(range(KRONROD_POINTS))
            kept[i] += [p.done() for p in pending[i]]
            estimate = sum(v.integral for v in kept[i])
            splits = [] if _relative_error(ctx, i, estimate) <= cfg.tolerance else _to_split(
                kept[i], cfg.max_steps - int(steps[i]))
            if not splits:
                integrals[i], pending[i] = estimate, []
                continue
            kept[i] = [v for v in kept[i] if v not in splits]
            pending[i] = [_Pending(lo, hi, ctx.inputs[i]) for v in splits
                          for lo, hi in ((v.low, (v.low + v.high) / 2), ((v.low + v.high) / 2, v.high))]
            still.append(i)
        active = still
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
