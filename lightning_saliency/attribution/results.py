"""Result containers returned by the attribution functions."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import torch


@dataclass
class MethodAttribution:
    """One method's attributions for a batch.

    Attributes:
        method: method name, e.g. ``"integrated_gradients"``.
        scores: one score per token, shaped like ``input_ids``; 0 at padding.
        raw: per-dimension attributions ``(*input_ids.shape, hidden)`` when ``return_raw=True``.
        delta: Integrated Gradients only: ``sum(scores) - (F(x) - F(baseline))`` per example
            (captum's convergence delta).
        steps: Integrated Gradients only: gradient evaluations used per example.
    """

    method: str
    scores: torch.Tensor
    raw: Optional[torch.Tensor] = None
    delta: Optional[torch.Tensor] = None
    steps: Optional[torch.Tensor] = None

    def relative_delta(self, target_score: torch.Tensor, baseline_score: torch.Tensor) -> torch.Tensor:
        """``|delta| / |F(x) - F(baseline)|``, the completeness error the adaptive mode bounds."""
        if self.delta is None:
            raise ValueError(f"{self.method} has no convergence delta.")
        return self.delta.abs() / (target_score - baseline_score).abs().clamp_min(1e-12)


@dataclass
class Attributions:
    """Everything one :func:`attribute` call computed.

    Attributes:
        methods: results per method name.
        target: attributed class / choice / next-token id per example.
        predicted: the model's argmax per example.
        probability: softmax probability of the predicted class per example.
        target_score: attributed scalar at the input, ``F(x)``.
        baseline_score: attributed scalar at the baseline, ``F(x')`` (when IG ran).
        special_mask: True at special tokens ([CLS], [SEP], ...), shaped like ``input_ids``.
        attention_mask: the input's attention mask (bool).
    """

    methods: dict[str, MethodAttribution]
    target: torch.Tensor
    predicted: torch.Tensor
    probability: torch.Tensor
    target_score: torch.Tensor
    special_mask: torch.Tensor
    attention_mask: torch.Tensor
    baseline_score: Optional[torch.Tensor] = None
    timings: dict[str, float] = field(default_factory=dict)

    def __getitem__(self, method: str) -> MethodAttribution:
        return self.methods[method]

    def __contains__(self, method: str) -> bool:
        return method in self.methods


def _rows(value: Optional[torch.Tensor], rows: torch.Tensor) -> Optional[torch.Tensor]:
    return None if value is None else value.detach().cpu()[rows]


def select_rows(result: Attributions, rows: list[int]) -> Attributions:
    """The examples ``rows`` of a result, on the CPU (e.g. to send one shard to another process)."""
    index = torch.as_tensor(rows, dtype=torch.long)
    methods = {
        name: MethodAttribution(name, _rows(m.scores, index), _rows(m.raw, index), _rows(m.delta, index),
                                _rows(m.steps, index))
        for name, m in result.methods.items()
    }
    return Attributions(
        methods=methods, target=_rows(result.target, index), predicted=_rows(result.predicted, index),
        probability=_rows(result.probability, index), target_score=_rows(result.target_score, index),
        special_mask=_rows(result.special_mask, index), attention_mask=_rows(result.attention_mask, index),
        baseline_score=_rows(result.baseline_score, index), timings=dict(result.timings),
    )


def _cat(values: list[Optional[torch.Tensor]]) -> Optional[torch.Tensor]:
    return None if any(v is None for v in values) else torch.cat([v.detach().cpu() for v in values])


def concatenate(parts: list[Attributions], order: list[int]) -> Attributions:
    """Join results computed on disjoint shards of one batch; row ``order[k]`` of the joined rows
    becomes row ``k``. Timings are the slowest shard's (shards run at the same time)."""
    if not parts:
        raise ValueError("concatenate needs at least one result.")
    joined = Attributions(
        methods={
            name: MethodAttribution(
                name, _cat([p[name].scores for p in parts]), _cat([p[name].raw for p in parts]),
                _cat([p[name].delta for p in parts]), _cat([p[name].steps for p in parts]),
            )
            for name in parts[0].methods
        },
        target=_cat([p.target for p in parts]), predicted=_cat([p.predicted for p in parts]),
        probability=_cat([p.probability for p in parts]), target_score=_cat([p.target_score for p in parts]),
        special_mask=_cat([p.special_mask for p in parts]), attention_mask=_cat([p.attention_mask for p in parts]),
        baseline_score=_cat([p.baseline_score for p in parts]),
        timings={key: max(p.timings.get(key, 0.0) for p in parts) for key in parts[0].timings},
    )
    inverse = [0] * len(order)
    for position, row in enumerate(order):
        inverse[row] = position
    return select_rows(joined, inverse)
