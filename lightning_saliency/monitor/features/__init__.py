"""Shortcuts that are not words, one kind per file (see :mod:`.base`)."""
from lightning_saliency.monitor.features import length, position, segment, token_class  # noqa: F401  (registers the kinds)
from lightning_saliency.monitor.features.base import FEATURES, Feature, feature_of, register_feature

__all__ = ["FEATURES", "Feature", "feature_of", "register_feature"]
