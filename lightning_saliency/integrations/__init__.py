"""Adapters for training loops other than Lightning (import each submodule explicitly)."""
