"""Shared state of one attribution call: validated inputs, embeddings, baselines and targets."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, ContextManager, Optional, Union

import torch
from torch import nn

from lightning_saliency.attribution.embedding import find_embedding_layer, num_embeddings
from lightning_saliency.attribution.evaluator import ForwardFn, Job, PathEvaluator
from lightning_saliency.attribution.lockstep import Lockstep
from lightning_saliency.attribution.targets import TargetArg, TargetSpec, resolve_targets
from lightning_saliency.attribution.tokens import BASELINES, SpecialTokens, prepare_batch, replaceable_mask

# Padded tokens per chunk when nothing else decides (attribute() without max_tokens).
DEFAULT_MAX_TOKENS = 4096


@dataclass(frozen=True)
class AttributionConfig:
    """Options of the attribution methods (all have working defaults).

    Args:
        n_steps: IG points for a fixed rule.
        rule: ``"gauss_legendre"`` (default), ``"trapezoid"`` or ``"riemann_middle"``.
        tolerance: when set, IG is adaptive: each example's path is cut into intervals integrated
            by the 7-point Gauss-Kronrod rule, and the intervals where the integrand is steepest
            are bisected until ``|sum(attr) - (F(x) - F(x'))| <= tolerance * |F(x) - F(x')|`` (or
            ``<= 1e-5`` absolute), capped at ``max_steps``.
        min_steps: the adaptive mode's first partition: ``ceil(min_steps / 3)`` intervals, whose
            3-point Gauss rules are tried first.
        max_steps: the adaptive mode's cap on gradient evaluations per example.
        baseline: ``"pad"`` (default; special tokens kept), ``"mask"``, ``"unk"`` or ``"zero"``.
        gradient_norm: per-token reduction of gradients: ``"l2"`` (default), ``"l1"`` or ``"sum"``.
        smoothgrad_samples: SmoothGrad's sample count.
        smoothgrad_stdev: SmoothGrad's noise standard deviation as a fraction of each example's
            embedding range (AllenNLP's convention).
        attention_layers: ``"last"`` or ``"mean"`` (over all layers).
        seed: seed of SmoothGrad's private generator (the global RNG is never used).
        max_tokens: padded tokens per forward/backward chunk (rows x length x choices); ``None``:
            4096 here, the largest training batch so far in the callbacks.
        bucket: trim each example's padding and group similar lengths (results are unchanged
            for models that honour ``attention_mask``).
        return_raw: also return per-dimension attributions.
    """

    n_steps: int = 50
    rule: str = "gauss_legendre"
    tolerance: Optional[float] = None
    min_steps: int = 3
    max_steps: int = 129
    baseline: str = "pad"
    gradient_norm: str = "l2"
    smoothgrad_samples: int = 10
    smoothgrad_stdev: float = 0.01
    attention_layers: str = "last"
    seed: int = 0
    max_tokens: Optional[int] = None
    bucket: bool = True
    return_raw: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.n_steps, bool) or not isinstance(self.n_steps, int) or self.n_steps < 1:
            raise ValueError(f"n_steps is the number of IG points, a positive int, got {self.n_steps!r}.")
        if self.max_tokens is not None and self.max_tokens < 1:
            raise ValueError(f"max_tokens must be positive, got {self.max_tokens}.")
        if self.baseline not in BASELINES:
            raise ValueError(f"Unknown baseline {self.baseline!r}; choose one of {BASELINES}.")
        if self.gradient_norm not in ("l2", "l1", "sum"):
            raise ValueError(f"gradient_norm must be 'l2', 'l1' or 'sum', got {self.gradient_norm!r}.")
        if self.attention_layers not in ("last", "mean"):
            raise ValueError(f"attention_layers must be 'last' or 'mean', got {self.attention_layers!r}.")
        if self.tolerance is not None and not 0 < self.tolerance < 1:
            raise ValueError(f"tolerance is a relative error in (0, 1), got {self.tolerance}.")
        if self.min_steps < 1 or self.max_steps < self.min_steps:
            raise ValueError(f"Need 1 <= min_steps <= max_steps, got {self.min_steps} and {self.max_steps}.")
        if self.smoothgrad_samples < 1 or self.smoothgrad_stdev < 0:
            raise ValueError("smoothgrad_samples must be >= 1 and smoothgrad_stdev >= 0.")


class AttributionContext:
    """Validated batch plus per-example input and baseline embeddings (trimmed, float32)."""

    def __init__(
        self,
        model: nn.Module,
        inputs: Any,
        *,
        config: AttributionConfig,
        spec: TargetSpec,
        tokenizer: Any = None,
        special_tokens: Optional[SpecialTokens] = None,
        embedding_layer: Union[str, nn.Module, None] = None,
        forward_fn: Optional[ForwardFn] = None,
        forward_context: Optional[Callable[[], ContextManager]] = None,
        progress: Optional[Callable[[int], None]] = None,
        lockstep: Optional[Lockstep] = None,
    ) -> None:
        self.model, self.config, self.spec = model, config, spec
        if special_tokens is None:
            special_tokens = SpecialTokens.from_tokenizer(tokenizer) if tokenizer is not None else SpecialTokens()
        self.special = special_tokens
        vocab = len(tokenizer) if tokenizer is not None and hasattr(tokenizer, "__len__") else None
        self.layer = find_embedding_layer(model, embedding_layer, vocab)
        weight = getattr(self.layer, "weight", None)
        device = weight.device if weight is not None else None
        task = spec.task_object
        self.batch = prepare_batch(inputs, self.special, num_embeddings(self.layer), device=device,
                                   keep=task.target_keys, fixed=task.fixed_positions, aligned=task.targets_aligned)
        if not config.bucket:
            self.batch.starts = torch.zeros_like(self.batch.starts)
            self.batch.ends = torch.full_like(self.batch.ends, self.batch.input_ids.shape[-1])
        self.evaluator = PathEvaluator(
            model, self.layer, self.batch, spec, self.special.pad_id, forward_fn, forward_context,
            config.max_tokens or DEFAULT_MAX_TOKENS, progress, lockstep,
        )
        self.size = self.batch.size
        self.special_masks = [self.batch.trim(self.batch.special_mask, i) for i in range(self.size)]
        self.replace = [replaceable_mask(self.evaluator.examples[i], self.special_masks[i]) for i in range(self.size)]
        replacement = self.special.replacement_id(config.baseline)
        self.baselines = []
        with self.evaluator.embedding_access():  # one block of lookups (one gather when sharded)
            self.inputs = [self.evaluator.embed(i) for i in range(self.size)]
            for i in range(self.size):
                ids = self.evaluator.examples[i]["input_ids"]
                base = self.evaluator.embed(i, torch.where(self.replace[i], torch.full_like(ids, replacement), ids))
                if config.baseline == "zero":
                    base = base.masked_fill(self.replace[i].to(base.device).unsqueeze(-1), 0.0)
                self.baselines.append(base)
        self.head_at_input: list[Optional[torch.Tensor]] = [None] * self.size
        self.baseline_head: list[Optional[torch.Tensor]] = [None] * self.size

    def interpolate(self, example: int, alphas: torch.Tensor) -> torch.Tensor:
        """Rows on the straight path ``x' + alpha (x - x')`` for the given alphas."""
        base, inp = self.baselines[example], self.inputs[example]
        shape = (-1,) + (1,) * inp.dim()
        return base + alphas.to(base).view(shape) * (inp - base)

    def replaced_rows(self, example: int, removals: list) -> torch.Tensor:
        """One copy of the input embeddings per entry of ``removals``, with those flat positions
        (over the example's trimmed ``(..., length)`` grid) set to the baseline's embeddings."""
        x, base = self.inputs[example], self.baselines[example]
        rows = x.unsqueeze(0).repeat(len(removals), *([1] * x.dim()))
        flat_rows, flat_base = rows.view(len(removals), -1, x.shape[-1]), base.reshape(-1, x.shape[-1])
        for row, positions in enumerate(removals):
            if positions:
                flat_rows[row, positions] = flat_base[positions]
        return rows

    def resolve(self, target: TargetArg, with_baseline: bool) -> None:
        """Forward pass at the inputs (and baselines) to fix targets and the end-point scores."""

        def build(example: int, alphas: list) -> torch.Tensor:
            return self.interpolate(example, torch.tensor(alphas, dtype=torch.float32))

        def consume(group, head, scores, grads, output) -> None:
            for alpha, row in zip(group.params, head):
                (self.head_at_input if alpha == 1.0 else self.baseline_head)[group.example] = row

        alphas = (1.0, 0.0) if with_baseline else (1.0,)
        jobs = [Job(i, a) for i in range(self.size) for a in alphas]
        self.evaluator.run(jobs, build, consume, need_grad=False)
        heads = torch.stack(self.head_at_input)
        self.targets = resolve_targets(target, heads)
        self.evaluator.targets = self.targets
        self.predicted = heads.argmax(dim=-1).cpu()
        self.probability = self.spec.task_object.probability(heads).cpu()
        self.target_score = self.spec.score(heads, self.targets).cpu()
        self.baseline_score = self.spec.score(torch.stack(self.baseline_head), self.targets).cpu() if with_baseline else None

    def scatter(self, per_example: list[torch.Tensor]) -> torch.Tensor:
        """Place trimmed per-position results back into the padded input layout."""
        trailing = per_example[0].shape[self.batch.input_ids.dim() - 1 :]
        out = torch.zeros(*self.batch.input_ids.shape, *trailing, dtype=torch.float32)
        seq_dim = self.batch.input_ids.dim() - 2  # sequence axis inside one example
        for i, values in enumerate(per_example):
            window = (slice(None),) * seq_dim + (slice(int(self.batch.starts[i]), int(self.batch.ends[i])),)
            out[i][window] = values.detach().float().cpu()
        return out
