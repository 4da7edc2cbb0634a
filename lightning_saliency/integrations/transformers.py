"""Deprecated: import from :mod:`lightning_saliency.adapters.transformers` (this alias goes in 0.3)."""
import warnings

from lightning_saliency.adapters.transformers import *  # noqa: F401,F403
from lightning_saliency.adapters.transformers import SaliencyCallback  # noqa: F401

warnings.warn("lightning_saliency.integrations.transformers moved to lightning_saliency.adapters.transformers; "
              "the old path will be removed in 0.3.", FutureWarning, stacklevel=2)
