"""Integrated Gradients and gradient saliency on the live model, logged to TensorBoard each epoch."""
from lightning_saliency.attribution import AttributionConfig, SpecialTokens, attribute
from lightning_saliency.callback import SaliencyMonitor

__version__ = "0.1.0"
__all__ = ["AttributionConfig", "SaliencyMonitor", "SpecialTokens", "attribute", "__version__"]
