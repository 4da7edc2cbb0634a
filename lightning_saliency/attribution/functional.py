"""One method at a time: :func:`~lightning_saliency.attribute` with a single method, returning that
method's result. Kept outside the method registry's import graph (api -> methods), so the registry
imports no entry point."""
from __future__ import annotations

from typing import Any

from torch import nn

from lightning_saliency.attribution.api import attribute
from lightning_saliency.attribution.results import MethodAttribution


def attribute_one(name: str, model: nn.Module, inputs: Any, **options: Any) -> MethodAttribution:
    """:func:`~lightning_saliency.attribute` with ``methods=(name,)``; the same keyword arguments."""
    return attribute(model, inputs, (name,), **options)[name]


def integrated_gradients(model: nn.Module, inputs: Any, **options: Any) -> MethodAttribution:
    """Integrated Gradients alone (see :func:`attribute_one`)."""
    return attribute_one("integrated_gradients", model, inputs, **options)


def gradient(model: nn.Module, inputs: Any, **options: Any) -> MethodAttribution:
    """Gradient saliency alone (see :func:`attribute_one`)."""
    return attribute_one("gradient", model, inputs, **options)


def gradient_x_input(model: nn.Module, inputs: Any, **options: Any) -> MethodAttribution:
    """Gradient x input alone (see :func:`attribute_one`)."""
    return attribute_one("gradient_x_input", model, inputs, **options)


def smoothgrad(model: nn.Module, inputs: Any, **options: Any) -> MethodAttribution:
    """SmoothGrad alone (see :func:`attribute_one`)."""
    return attribute_one("smoothgrad", model, inputs, **options)


def occlusion(model: nn.Module, inputs: Any, **options: Any) -> MethodAttribution:
    """Occlusion alone (see :func:`attribute_one`)."""
    return attribute_one("occlusion", model, inputs, **options)


def attention(model: nn.Module, inputs: Any, **options: Any) -> MethodAttribution:
    """Attention received alone (see :func:`attribute_one`)."""
    return attribute_one("attention", model, inputs, **options)
