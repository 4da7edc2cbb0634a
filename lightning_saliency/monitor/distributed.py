"""Sharding the probe set across processes and gathering the shards back (DDP and friends).

Every rank runs the same sequence of collectives in every attribution run, whatever happened
locally: a rank whose shard is empty or whose attribution failed still joins the gather (with
nothing or with its error), so no rank waits for a collective that another rank skipped.
"""
from __future__ import annotations

from typing import Any, Optional, Sequence

import torch

# Strategies that shard parameters: a forward pass on one rank needs every other rank, so the
# probe cannot be attributed shard-by-shard nor on rank zero alone.
SHARDED_STRATEGIES = ("FSDPStrategy", "DeepSpeedStrategy", "ModelParallelStrategy", "XLAFSDPStrategy")


def refuse_sharded_models(strategy: Any) -> None:
    """Raise at setup for strategies whose parameters are sharded across ranks."""
    names = {cls.__name__ for cls in type(strategy).__mro__}
    found = sorted(names.intersection(SHARDED_STRATEGIES))
    if found:
        raise ValueError(
            f"SaliencyMonitor does not support {found[0]}: the model's parameters are sharded across ranks, so the "
            "per-example forward and backward passes of attribution would need every rank in lockstep. Train with "
            "strategy='ddp' (or a single device) while you monitor attributions, or attribute a saved checkpoint "
            "afterwards with lightning_saliency.attribute()."
        )


def world(trainer: Any) -> tuple[int, int]:
    """``(global_rank, world_size)`` of the trainer's processes."""
    return int(getattr(trainer, "global_rank", 0)), int(getattr(trainer, "world_size", 1))


def shard_rows(lengths: Sequence[int], rank: int, world_size: int) -> list[int]:
    """The rows this rank attributes. Longest first, each row goes to the rank with the fewest
    tokens so far (attribution cost grows with length), so the ranks finish at similar times.
    Deterministic, so every rank computes the same assignment; ranks may get an empty shard."""
    loads = [0] * world_size
    mine = []
    for row in sorted(range(len(lengths)), key=lambda i: (-lengths[i], i)):
        owner = min(range(world_size), key=lambda r: (loads[r], r))
        loads[owner] += lengths[row]
        if owner == rank:
            mine.append(row)
    return sorted(mine)


def gather_objects(payload: Any, world_size: int) -> list[Any]:
    """Every rank's ``payload`` on every rank (pickled; any size or shape, empty included)."""
    if world_size <= 1 or not torch.distributed.is_available() or not torch.distributed.is_initialized():
        return [payload]
    gathered: list[Optional[Any]] = [None] * world_size
    torch.distributed.all_gather_object(gathered, payload)
    return gathered


def broadcast_object(value: Any, world_size: int) -> Any:
    """Rank zero's ``value`` on every rank, so that all ranks take the same decision."""
    if world_size <= 1 or not torch.distributed.is_available() or not torch.distributed.is_initialized():
        return value
    box = [value]
    torch.distributed.broadcast_object_list(box, src=0)
    return box[0]


class ShardError(RuntimeError):
    """Attribution failed on some rank; raised on every rank so that all of them skip the run."""
