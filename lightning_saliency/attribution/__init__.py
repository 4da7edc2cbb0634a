"""Pure attribution functions on token embeddings (no Lightning needed)."""
from lightning_saliency.attribution.api import (
    METHODS,
    attention,
    attribute,
    gradient,
    gradient_x_input,
    integrated_gradients,
    occlusion,
    reduce_gradient,
    smoothgrad,
)
from lightning_saliency.attribution.context import AttributionConfig
from lightning_saliency.attribution.embedding import find_embedding_layer
from lightning_saliency.attribution.isolation import isolated_eval
from lightning_saliency.attribution.results import Attributions, MethodAttribution
from lightning_saliency.attribution.targets import TargetSpec
from lightning_saliency.attribution.tokens import SpecialTokens
from lightning_saliency.attribution.words import WordAttribution, merge_subwords

__all__ = [
    "METHODS",
    "AttributionConfig",
    "Attributions",
    "MethodAttribution",
    "SpecialTokens",
    "TargetSpec",
    "WordAttribution",
    "attention",
    "attribute",
    "find_embedding_layer",
    "gradient",
    "gradient_x_input",
    "integrated_gradients",
    "isolated_eval",
    "merge_subwords",
    "occlusion",
    "reduce_gradient",
    "smoothgrad",
]
