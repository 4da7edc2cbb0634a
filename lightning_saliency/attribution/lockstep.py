"""Forward passes in step across ranks, for models whose parameters are sharded (FSDP2).

Under ``fully_shard`` every forward (and every backward) of the model is a collective: each rank
all-gathers the parameters of each unit. Ranks attributing different examples would make different
numbers of passes, and the rank with more would wait forever. :class:`Lockstep` keeps them in step:

* before a batch of passes, the ranks agree on the largest number of chunks any of them needs; a
  rank with fewer runs *padding passes* (one short row of padding tokens, forward and, when the
  batch needs gradients, backward), so every rank makes the same passes in the same order;
* before each pass the ranks agree that none has failed. A rank whose pass raised (in the forward
  function, the head or the gradient) runs a padding pass in its place, so the collectives still
  match, and at the next agreement every rank raises :class:`LockstepAborted` together;
* word embeddings are looked up with the owning FSDP unit unsharded (one all-gather per lookup
  batch on every rank): calling the embedding module outside a forward would mix sharded and
  plain tensors.

A failure inside the model's forward, between its collectives, cannot be evened out this way;
the process group's timeout is then the limit (documented in the README).
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator, Optional

import torch
from torch import nn


class LockstepAborted(RuntimeError):
    """Some rank's pass failed; raised on every rank at the same agreement."""


def _owner(model: nn.Module, layer: nn.Module) -> Optional[nn.Module]:
    """The innermost FSDP2 unit that holds ``layer``'s parameters (``None``: none is sharded)."""
    try:
        from torch.distributed.fsdp import FSDPModule
    except ImportError:  # pragma: no cover - torch without FSDP2
        return None
    owner = None
    for module in model.modules():
        if isinstance(module, FSDPModule) and any(m is layer for m in module.modules()):
            owner = module  # modules() is depth first: a later match is deeper
    return owner


class Lockstep:
    """The agreements of one process group (the default one unless ``group`` is given)."""

    def __init__(self, group: Any = None) -> None:
        self.group = group

    def _device(self) -> torch.device:
        backend = torch.distributed.get_backend(self.group)
        return torch.device("cuda", torch.cuda.current_device()) if backend == "nccl" else torch.device("cpu")

    def agree(self, count: int, failed: bool) -> tuple[int, bool]:
        """The largest ``count`` of any rank, and whether any rank has ``failed``."""
        values = torch.tensor([count, int(failed)], dtype=torch.long, device=self._device())
        torch.distributed.all_reduce(values, op=torch.distributed.ReduceOp.MAX, group=self.group)
        return int(values[0]), bool(values[1])

    def any(self, flag: bool) -> bool:
        """Whether ``flag`` holds on any rank (e.g. an example still refining)."""
        return self.agree(int(flag), False)[0] > 0

    @contextmanager
    def unsharded(self, model: nn.Module, layer: nn.Module) -> Iterator[None]:
        """``layer`` callable outside a forward: its FSDP unit's parameters gathered, then
        resharded. Every rank enters this the same number of times."""
        owner = _owner(model, layer)
        if owner is None:
            yield
            return
        owner.unshard()
        try:
            yield
        finally:
            owner.reshard()
