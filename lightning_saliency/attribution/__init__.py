"""Pure attribution functions on token embeddings (no Lightning needed)."""
from lightning_saliency.attribution.api import attribute, check_methods
from lightning_saliency.attribution.context import AttributionConfig
from lightning_saliency.attribution.embedding import find_embedding_layer
from lightning_saliency.attribution.faithfulness import erasure_faithfulness
from lightning_saliency.attribution.functional import (
    attention,
    attribute_one,
    gradient,
    gradient_x_input,
    integrated_gradients,
    occlusion,
    smoothgrad,
)
from lightning_saliency.attribution.isolation import isolated_eval
from lightning_saliency.attribution.methods import AttributionMethod, method_names, reduce_gradient, register
from lightning_saliency.attribution.results import Attributions, MethodAttribution
from lightning_saliency.attribution.targets import TargetSpec
from lightning_saliency.attribution.tokens import SpecialTokens
from lightning_saliency.attribution.words import WordAttribution, merge_subwords

METHODS = method_names()

__all__ = [
    "METHODS",
    "AttributionConfig",
    "AttributionMethod",
    "Attributions",
    "MethodAttribution",
    "SpecialTokens",
    "TargetSpec",
    "WordAttribution",
    "attention",
    "attribute",
    "attribute_one",
    "check_methods",
    "erasure_faithfulness",
    "find_embedding_layer",
    "gradient",
    "gradient_x_input",
    "integrated_gradients",
    "isolated_eval",
    "merge_subwords",
    "method_names",
    "occlusion",
    "reduce_gradient",
    "register",
    "smoothgrad",
]
