"""Integrated Gradients and gradient saliency on the live model, logged to TensorBoard each epoch."""
from lightning_saliency.attribution import METHODS, AttributionConfig, SpecialTokens, attribute
from lightning_saliency.callback import SaliencyMonitor
from lightning_saliency.metrics import ShortcutRules
from lightning_saliency.settings import MonitorSettings

__version__ = "0.1.0"
__all__ = [
    "METHODS",
    "AttributionConfig",
    "MonitorSettings",
    "SaliencyMonitor",
    "ShortcutRules",
    "SpecialTokens",
    "attribute",
    "__version__",
]
