"""Integrated Gradients and gradient saliency on the live model, logged to TensorBoard each epoch.

The public names load on first use: ``lightning-saliency report`` and the TensorBoard tab import
this package without paying for torch, lightning and transformers.
"""
from __future__ import annotations

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

_PUBLIC = {
    "METHODS": "lightning_saliency.attribution",
    "AttributionConfig": "lightning_saliency.attribution",
    "SpecialTokens": "lightning_saliency.attribution",
    "attribute": "lightning_saliency.attribution",
    "SaliencyMonitor": "lightning_saliency.adapters.lightning",
    "EvidenceSettings": "lightning_saliency.settings",
    "ModelIO": "lightning_saliency.settings",
    "OutputSettings": "lightning_saliency.settings",
    "ProbeSettings": "lightning_saliency.settings",
    "RunSchedule": "lightning_saliency.settings",
    "register_task": "lightning_saliency.tasks",
    "register": "lightning_saliency.attribution",
    "ShortcutRules": "lightning_saliency.settings",
    "MonitorSettings": "lightning_saliency.settings",
}
__all__ = sorted(_PUBLIC) + ["__version__"]


def __getattr__(name: str) -> Any:
    if name not in _PUBLIC:
        raise AttributeError(f"module 'lightning_saliency' has no attribute {name!r}")
    value = getattr(import_module(_PUBLIC[name]), name)
    globals()[name] = value  # once loaded, a plain attribute
    return value


def __dir__() -> list[str]:
    return __all__
