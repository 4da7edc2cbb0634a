"""Shortcuts that are not words, one kind per file (see :mod:`.base`)."""
from lightning_saliency.monitor.features import (  # noqa: F401  (registers the kinds)
    length, position, segment, template, token_class,
)
from lightning_saliency.monitor.features.base import FEATURES, Feature, feature_of, register_feature

__all__ = ["FEATURES", "Feature", "feature_of", "register_feature"]
