"""Deprecated location: the adapters live in :mod:`lightning_saliency.adapters` (removed in 0.3)."""
