"""Run attribution on a live model without leaving a trace on training.

Everything attribution could change is recorded on entry and put back on exit: every module's
``training`` flag (not just the root's), every parameter's ``requires_grad``, the CPU and CUDA RNG
states, the autograd mode, and for a model sharded with FSDP2 (``fully_shard``) the per-iteration
state FSDP keeps between a forward and its backward. Parameter ``.grad`` tensors are never touched
because gradients are taken with :func:`torch.autograd.grad` with respect to the embedding output only.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
from torch import nn


@contextmanager
def isolated_eval(model: nn.Module) -> Iterator[None]:
    """Put ``model`` in eval mode with frozen parameters and autograd enabled, then restore it all.

    Works when entered under :func:`torch.no_grad` or :func:`torch.inference_mode`.
    """
    modes = [(module, module.training) for module in model.modules()]
    requires_grad = [(param, param.requires_grad) for param in model.parameters()]
    cpu_rng = torch.get_rng_state()
    cuda_rng = torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else None
    try:
        with torch.inference_mode(False), torch.enable_grad():
            model.eval()
            for param, _ in requires_grad:
                param.requires_grad_(False)
            yield
    finally:
        with torch.inference_mode(False):
            for param, flag in requires_grad:
                param.requires_grad_(flag)
        for module, mode in modes:
            module.training = mode
        torch.set_rng_state(cpu_rng)
        if cuda_rng is not None:
            torch.cuda.set_rng_state_all(cuda_rng)
        _reset_sharding_state(model)


def _reset_sharding_state(model: nn.Module) -> None:
    """FSDP2 records each forward for the backward that should follow it (the post-forward order
    for prefetching, the units still to run, each group's training state). Attribution's passes
    are forwards whose backward, if any, reaches only the embedding output: left in place, that
    record changes how the next training step's gradients are reduced (measured: every weight
    differs after 4 epochs on 2 CPU ranks). Local to each rank: no collective."""
    try:
        from torch.distributed.fsdp import FSDPModule
    except ImportError:  # pragma: no cover - torch without FSDP2
        return
    roots = [m for m in model.modules() if isinstance(m, FSDPModule)]
    if roots and hasattr(roots[0], "reset_iter_state"):
        roots[0].reset_iter_state()  # modules() lists the outermost unit first: the root


def private_generator(seed: int, stream: int) -> torch.Generator:
    """A CPU generator for one (seed, stream) pair, so sampling never advances the global RNG and
    does not depend on how examples are batched or chunked."""
    return torch.Generator().manual_seed(seed * 1_000_003 + stream)


def detach_from_inference(tensor: torch.Tensor) -> torch.Tensor:
    """A normal (autograd-usable) copy of a tensor that may have been made under inference mode."""
    with torch.inference_mode(False):
        return tensor.clone() if tensor.is_inference() else tensor


@contextmanager
def preserved_global_rng() -> Iterator[None]:
    """Run user code (a dataset's ``__getitem__``, a collate function) without moving any global
    RNG: Python's, NumPy's (when installed) and torch's CPU and CUDA states are put back."""
    import random

    python_state = random.getstate()
    try:
        import numpy

        numpy_state = numpy.random.get_state()
    except ImportError:  # pragma: no cover - numpy ships with torch's usual installs
        numpy, numpy_state = None, None
    cuda = torch.cuda.is_available() and torch.cuda.is_initialized()
    with torch.random.fork_rng(devices=list(range(torch.cuda.device_count())) if cuda else []):
        try:
            yield
        finally:
            random.setstate(python_state)
            if numpy is not None:
                numpy.random.set_state(numpy_state)
