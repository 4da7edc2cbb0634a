"""ERASER faithfulness (DeYoung et al. 2020): comprehensiveness and sufficiency by token removal.

For each example and fraction ``q``, the ``ceil(q * n)`` highest-scoring non-special tokens form
the rationale. Comprehensiveness is ``p(y | x) - p(y | x without the rationale)`` (high = the
rationale mattered); sufficiency is ``p(y | x) - p(y | rationale only)`` (low = the rationale is
enough). Removed tokens take the baseline token's embedding. AOPC averages over the fractions. All
rows of all examples, methods and fractions go through the model in shared batched passes.
"""
from __future__ import annotations

import math
from typing import Any, Optional, Sequence

import torch
from torch import nn

from lightning_saliency.attribution.context import AttributionConfig, AttributionContext
from lightning_saliency.attribution.evaluator import Job
from lightning_saliency.attribution.isolation import isolated_eval, private_generator
from lightning_saliency.attribution.perturbation import target_probability
from lightning_saliency.attribution.targets import TargetArg, TargetSpec

RANDOM = "random"


def _ranking(ctx: AttributionContext, index: int, scores: Optional[torch.Tensor], seed: int, stream: int) -> list[int]:
    """Replaceable flat positions of example ``index``, most important first (random, from its
    own ``stream``, when there are no scores)."""
    allowed = torch.nonzero(ctx.replace[index].reshape(-1).cpu()).flatten()
    if scores is None:
        return allowed[torch.randperm(allowed.numel(), generator=private_generator(seed, stream))].tolist()
    flat = ctx.batch.trim(scores, index).reshape(-1)[allowed]
    return allowed[torch.argsort(flat, descending=True, stable=True)].tolist()


def erasure_faithfulness(
    model: nn.Module,
    inputs: Any,
    rankings: dict[str, torch.Tensor],
    *,
    fractions: Sequence[float] = (0.1, 0.2, 0.5),
    random_control: bool = True,
    target: TargetArg = None,
    task: str = "classification",
    config: Optional[AttributionConfig] = None,
    seed: int = 0,
    streams: Optional[Sequence[int]] = None,
    reference_probability: Optional[torch.Tensor] = None,
    **context_options: Any,
) -> dict[str, dict[str, torch.Tensor]]:
    """Comprehensiveness, sufficiency and their AOPC for each scored method (plus a random control).

    Args:
        rankings: token scores per method, shaped like ``input_ids`` (e.g. ``result[m].scores``).
        fractions: rationale sizes as fractions of the non-special tokens.
        random_control: add a ``"random"`` entry with a seeded random ranking.
        target: the attributed classes (pass ``Attributions.target`` to match an attribution run).
        streams: one random-ranking stream per example (default: its row). Pass each example's
            position in a larger batch to get the same random control whichever shard it is in.
        reference_probability: ``p(target | x)`` per example when the caller already knows it (an
            attribution run's ``probability`` with predicted targets): with ``target`` given, the
            forward pass at the unmasked inputs is skipped.
        context_options: ``tokenizer``, ``special_tokens``, ``embedding_layer``, ``forward_fn``,
            ``forward_context`` as for :func:`~lightning_saliency.attribute`.

    Returns:
        ``{method: {"comprehensiveness": (batch, fractions), "sufficiency": (batch, fractions),
        "aopc_comprehensiveness": (batch,), "aopc_sufficiency": (batch,)}}``.
    """
    if not fractions or any(not 0 < q <= 1 for q in fractions):
        raise ValueError(f"fractions must be in (0, 1], got {tuple(fractions)}.")
    config = config or AttributionConfig()
    methods: dict[str, Optional[torch.Tensor]] = dict(rankings)
    if random_control:
        methods[RANDOM] = None
    with isolated_eval(model):
        ctx = AttributionContext(model, inputs, config=config, spec=TargetSpec(task=task), **context_options)
        known = reference_probability is not None and target is not None
        if known:  # the unmasked forward pass was the attribution run's: reuse its numbers
            ctx.targets = torch.as_tensor(target, dtype=torch.long).cpu().reshape(-1)
            ctx.evaluator.targets = ctx.targets
        else:
            ctx.resolve(target, with_baseline=False)
        removals: dict[tuple, list[int]] = {}
        for name, scores in methods.items():
            for i in range(ctx.size):
                order = _ranking(ctx, i, scores, seed, i if streams is None else int(streams[i]))
                for f, q in enumerate(fractions):
                    k = max(1, math.ceil(q * len(order)))
                    removals[(name, i, f, "comprehensiveness")] = order[:k]
                    removals[(name, i, f, "sufficiency")] = order[k:]
        # Rankings often agree (IG and gradient on the top 10%, or a fraction's complement): each
        # distinct masked row goes through the model once.
        distinct = {(key[1], tuple(sorted(positions))) for key, positions in removals.items()}
        row_probability: dict[tuple, float] = {}

        def build(example: int, keys: list) -> torch.Tensor:
            return ctx.replaced_rows(example, [list(positions) for _, positions in keys])

        def consume(group, head, scores, grads, output) -> None:
            for key, row in zip(group.params, head):
                row_probability[key] = float(target_probability(row, ctx.targets[group.example]))

        jobs = [Job(key[0], key) for key in sorted(distinct)]
        ctx.evaluator.run(jobs, build, consume, need_grad=False)
        probabilities = {key: row_probability[(key[1], tuple(sorted(positions)))] for key, positions in removals.items()}
        full = ([float(p) for p in reference_probability] if known else
                [float(target_probability(ctx.head_at_input[i], ctx.targets[i])) for i in range(ctx.size)])
    results: dict[str, dict[str, torch.Tensor]] = {}
    for name in methods:
        entry = {}
        for kind in ("comprehensiveness", "sufficiency"):
            table = torch.tensor(
                [[full[i] - probabilities[(name, i, f, kind)] for f in range(len(fractions))] for i in range(ctx.size)]
            )
            entry[kind] = table
            entry[f"aopc_{kind}"] = table.mean(dim=1)
        results[name] = entry
    return results
