"""Integrated Gradients and gradient saliency on the live model, logged to TensorBoard each epoch."""
from lightning_saliency.attribution import AttributionConfig, SpecialTokens, attribute

__version__ = "0.1.0"
__all__ = ["AttributionConfig", "SpecialTokens", "attribute", "__version__"]
