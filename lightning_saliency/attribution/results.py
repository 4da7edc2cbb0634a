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
