"""Attribution methods, one module each. Every module here is imported, so its ``@register``
runs: a new method is a new file in this package and nothing else."""
import importlib
import pkgutil

from lightning_saliency.attribution.methods.base import (
    REGISTRY,
    AttributionMethod,
    SharedPasses,
    is_signed,
    method_names,
    reduce_gradient,
    register,
)

for _module in pkgutil.iter_modules(__path__):
    if _module.name != "base":
        importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["REGISTRY", "AttributionMethod", "SharedPasses", "is_signed", "method_names", "reduce_gradient", "register"]
