"""The base of every attribution method and the registry that :func:`attribute` reads.

A method is one class in one file of this package: it names itself, declares whether it uses the
gradient at the input (so IG's sweep can provide it for free), and computes its scores from a
prepared :class:`~lightning_saliency.attribution.context.AttributionContext`. Registering is the
``@register`` decorator; the package imports every module in it, so adding a method touches one file.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar, Optional

import torch

from lightning_saliency.registry import Registry

from lightning_saliency.attribution.context import AttributionContext
from lightning_saliency.attribution.results import MethodAttribution

REGISTRY: "Registry[AttributionMethod]" = Registry("attribution method", "register one with lightning_saliency.attribution.register")


def reduce_gradient(grad: torch.Tensor, norm: str) -> torch.Tensor:
    """One score per token from a ``(..., hidden)`` gradient: L2 norm, L1 norm or signed sum."""
    if norm == "l2":
        return grad.norm(dim=-1)
    if norm == "l1":
        return grad.abs().sum(dim=-1)
    return grad.sum(dim=-1)


class SharedPasses:
    """Results that several methods of one call can share: the gradient at the input. IG's fixed
    sweep offers it when asked; otherwise the first method that needs it runs one gradient pass."""

    def __init__(self, ctx: AttributionContext, wants_input_gradient: bool) -> None:
        self.ctx = ctx
        self.wants_input_gradient = wants_input_gradient
        self._input_gradients: Optional[list[torch.Tensor]] = None

    def offer_input_gradients(self, gradients: list[Optional[torch.Tensor]]) -> None:
        if all(g is not None for g in gradients):
            self._input_gradients = gradients

    def input_gradients(self) -> list[torch.Tensor]:
        if self._input_gradients is None:
            from lightning_saliency.attribution.integrated import gradient_at_input

            self._input_gradients = gradient_at_input(self.ctx)
        return self._input_gradients


class AttributionMethod(ABC):
    """One attribution method. ``order`` fixes the run order inside :func:`attribute` (IG first,
    so that its sweep can offer the input gradient to the gradient methods)."""

    name: ClassVar[str]
    # The AttributionConfig fields this method reads: its options (listed in the README's
    # methods table; a changed field that no chosen method reads is an error, not a silent no-op).
    config_fields: ClassVar[tuple[str, ...]] = ()
    order: ClassVar[int] = 100
    uses_input_gradient: ClassVar[bool] = False
    needs_baseline_score: ClassVar[bool] = False

    def signed(self, config: Any) -> bool:
        """Whether scores carry a direction (for or against the target), or only a magnitude."""
        return True

    @abstractmethod
    def compute(self, ctx: AttributionContext, shared: SharedPasses) -> MethodAttribution:
        """Scores for every example of ``ctx`` (shaped like its ``input_ids``)."""

    @staticmethod
    def from_dimensions(ctx: AttributionContext, name: str, per_dimension: list, norm: str) -> MethodAttribution:
        """Per-token scores from per-dimension values (and the raw values when asked)."""
        scores = ctx.scatter([reduce_gradient(v, norm) for v in per_dimension])
        raw = ctx.scatter(per_dimension) if ctx.config.return_raw else None
        return MethodAttribution(name, scores, raw)


def register(cls: type[AttributionMethod]) -> type[AttributionMethod]:
    """Class decorator: make the method available to :func:`attribute` under ``cls.name``.

    Raises:
        ValueError: a method of that name is already registered.
    """
    return REGISTRY.register(cls)


def is_signed(name: str, config: Any) -> bool:
    """Whether method ``name``'s scores are signed under ``config`` (unknown methods: assumed signed)."""
    method = REGISTRY.get(name)
    return True if method is None else method.signed(config)


def method_names() -> tuple[str, ...]:
    """Registered method names in run order."""
    return tuple(sorted(REGISTRY, key=lambda name: (REGISTRY[name].order, name)))
