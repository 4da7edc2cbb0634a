"""ERASER faithfulness (DeYoung et al. 2020): comprehensiveness and sufficiency by token removal.

For each example and fraction ``q``, the ``ceil(q * n)`` highest-scoring non-special tokens form
the rationale. Comprehensiveness is ``p(y | x) - p(y | x without the rationale)`` (high = the
rationale mattered); sufficiency is ``p(y | x) - p(y | rationale only)`` (low = the rationale is
enough). AOPC averages over the fractions.

``removal="delete"`` (default) deletes the removed tokens, as ERASER does: the remaining tokens
(special tokens included) close up, so a sufficiency row at 10% is about a tenth as long as its
example and the passes cost roughly half of full-length rows. ``removal="baseline"`` keeps every
position and puts the baseline token's embedding in the removed ones (the IG baseline's view of
"absent"). All rows of all examples, methods and fractions go through the model in shared,
length-sorted, token-budgeted passes; identical rows go once.
"""
from __future__ import annotations

import math
from typing import Any, Literal, Optional, Sequence

import torch
from torch import nn

from lightning_saliency.attribution.context import AttributionConfig, AttributionContext
from lightning_saliency.attribution.evaluator import Job
from lightning_saliency.attribution.isolation import isolated_eval, private_generator
from lightning_saliency.attribution.targets import target_probability
from lightning_saliency.attribution.targets import TargetArg, TargetSpec
from lightning_saliency.attribution.tokens import TokenBatch

RANDOM = "random"
REMOVALS = ("delete", "baseline")
Removal = Literal["delete", "baseline"]


def _ranking(ctx: AttributionContext, index: int, scores: Optional[torch.Tensor], seed: int, stream: int) -> list[int]:
    """Replaceable flat positions of example ``index``, most important first (random, from its
    own ``stream``, when there are no scores)."""
    allowed = torch.nonzero(ctx.replace[index].reshape(-1).cpu()).flatten()
    if scores is None:
        return allowed[torch.randperm(allowed.numel(), generator=private_generator(seed, stream))].tolist()
    flat = ctx.batch.trim(scores, index).reshape(-1)[allowed]
    return allowed[torch.argsort(flat, descending=True, stable=True)].tolist()


def deleted_batch(ctx: AttributionContext, rows: Sequence[tuple[int, tuple[int, ...]]]) -> TokenBatch:
    """One right-padded input per ``(example, removed flat positions)``: the example's real tokens
    without the removed ones. A sequence with nothing left holds the baseline token alone."""
    filler = ctx.special.replacement_id(ctx.config.baseline)
    kept_rows: list[dict[str, list[torch.Tensor]]] = []
    for example, removed in rows:
        inputs = ctx.evaluator.examples[example]
        ids = inputs["input_ids"]
        keep = inputs["attention_mask"].bool().reshape(-1).clone()
        keep[list(removed)] = False
        keep = keep.view(ids.shape).reshape(-1, ids.shape[-1])  # one line per choice
        row: dict[str, list[torch.Tensor]] = {key: [] for key in inputs}
        for choice, kept in enumerate(keep):
            for key, value in inputs.items():
                line = value.reshape(-1, ids.shape[-1])[choice][kept.to(value.device)]
                if line.numel() == 0:
                    alone = {"input_ids": filler, "attention_mask": 1}.get(key, 0)
                    line = torch.tensor([alone], dtype=value.dtype, device=value.device)
                row[key].append(line)
        kept_rows.append(row)
    width = max(line.numel() for row in kept_rows for line in row["input_ids"])
    tensors = {}
    for key in kept_rows[0]:
        fill = ctx.special.pad_id if key == "input_ids" else 0
        padded = [torch.stack([nn.functional.pad(line, (0, width - line.numel()), value=fill) for line in row[key]])
                  for row in kept_rows]
        tensors[key] = torch.stack(padded).reshape(len(kept_rows), *ctx.batch.input_ids.shape[1:-1], width)
    lengths = torch.tensor([max(line.numel() for line in row["input_ids"]) for row in kept_rows])
    # Special tokens are never removed and no score is read from these rows: no special mask needed.
    return TokenBatch(tensors, torch.zeros_like(tensors["input_ids"], dtype=torch.bool),
                      torch.zeros_like(lengths), lengths)


def erasure_faithfulness(
    model: nn.Module,
    inputs: Any,
    rankings: dict[str, torch.Tensor],
    *,
    fractions: Sequence[float] = (0.1, 0.2, 0.5),
    random_control: bool = True,
    removal: Removal = "delete",
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
        removal: ``"delete"`` the removed tokens (ERASER) or put the ``"baseline"`` token in their place.
        target: the attributed classes (pass ``Attributions.target`` to match an attribution run).
        streams: one random-ranking stream per example (default: its row). Pass each example's
            position in a larger batch to get the same random control whichever shard it is in.
        reference_probability: ``p(target | x)`` per example when the caller already knows it (an
            attribution run's ``probability`` with predicted targets): with ``target`` given, the
            forward pass at the unmasked inputs is skipped.
        context_options: ``tokenizer``, ``special_tokens``, ``embedding_layer``, ``forward_fn``,
            ``forward_context``, ``progress``, ``lockstep`` as for :func:`~lightning_saliency.attribute`.

    Returns:
        ``{method: {"comprehensiveness": (batch, fractions), "sufficiency": (batch, fractions),
        "aopc_comprehensiveness": (batch,), "aopc_sufficiency": (batch,)}}``.

    Raises:
        ValueError: a fraction outside ``(0, 1]`` or an unknown ``removal``.
    """
    if not fractions or any(not 0 < q <= 1 for q in fractions):
        raise ValueError(f"fractions must be in (0, 1], got {tuple(fractions)}.")
    if removal not in REMOVALS:
        raise ValueError(f"removal must be one of {REMOVALS}, got {removal!r}.")
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
        # Each (method, example, fraction, kind) names a row: (example, removed positions, sorted).
        rows: dict[tuple, tuple[int, tuple[int, ...]]] = {}
        for name, scores in methods.items():
            for i in range(ctx.size):
                order = _ranking(ctx, i, scores, seed, i if streams is None else int(streams[i]))
                for f, q in enumerate(fractions):
                    k = max(1, math.ceil(q * len(order)))
                    rows[(name, i, f, "comprehensiveness")] = (i, tuple(sorted(order[:k])))
                    rows[(name, i, f, "sufficiency")] = (i, tuple(sorted(order[k:])))
        # Rankings often agree (IG and gradient on the top 10%, or a fraction's complement): each
        # distinct row goes through the model once.
        row_probability = _removal_probabilities(ctx, sorted(set(rows.values())), removal)
        probabilities = {key: row_probability[row] for key, row in rows.items()}
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


def _removal_probabilities(ctx: AttributionContext, rows: list[tuple[int, tuple[int, ...]]],
                           removal: Removal) -> dict[tuple, float]:
    """``p(target | row)`` for each ``(example, removed positions)`` row."""
    probability: dict[tuple, float] = {}
    if removal == "baseline":
        def build(example: int, keys: list) -> torch.Tensor:
            return ctx.replaced_rows(example, [list(positions) for _, positions in keys])

        def consume(group, head, scores, grads, output) -> None:
            for key, row in zip(group.params, head):
                probability[key] = float(target_probability(row, ctx.targets[group.example]))

        ctx.evaluator.run([Job(key[0], key) for key in rows], build, consume, need_grad=False)
        return probability
    evaluator = ctx.evaluator.over(deleted_batch(ctx, rows))
    with evaluator.embedding_access():  # every lookup in one block (one gather when sharded)
        embedded = [evaluator.embed(row) for row in range(len(rows))]

    def embed(row: int, params: list) -> torch.Tensor:
        return embedded[row].unsqueeze(0)

    def consume_deleted(group, head, scores, grads, output) -> None:
        key = rows[group.example]
        probability[key] = float(target_probability(head[0], ctx.targets[key[0]]))

    evaluator.run([Job(r, None) for r in range(len(rows))], embed, consume_deleted, need_grad=False)
    return probability
