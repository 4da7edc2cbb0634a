"""The one protocol of every model pass across processes: shard, run, gather even on failure, agree.

Every rank makes the same sequence of collectives in every run, whatever happened locally. A rank
whose shard is empty or whose work failed still joins the gather (with nothing, or with its error),
and a failure anywhere raises :class:`ShardError` on every rank after that gather, so no rank ever
waits in a collective that another rank skipped. :class:`Ranks` is that protocol; the runner, the
causal checks and the engine use it and write no collective of their own.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence, TypeVar

import torch

T = TypeVar("T")

TENSOR_PARALLEL = (
    "SaliencyMonitor does not support tensor parallelism (ModelParallelStrategy with tensor_parallel_size={size}): "
    "a layer's output is then split across ranks, and the word embeddings the attributions are taken at with it. "
    "Shard the parameters only: ModelParallelStrategy(data_parallel_size=<ranks>, tensor_parallel_size=1) with "
    "fully_shard in configure_model (FSDP2), or strategy='ddp'."
)
REFUSED = {
    "FSDPStrategy": "FSDPStrategy (FSDP1) is not supported: its parameters are flattened into per-rank shards that the "
                    "monitor's embedding hook cannot reach. Use FSDP2, which it supports: "
                    "ModelParallelStrategy(data_parallel_size=<ranks>, tensor_parallel_size=1) with fully_shard applied "
                    "in configure_model (see the README's 'Sharded models (FSDP2)').",
    "DeepSpeedStrategy": "DeepSpeedStrategy is not supported: ZeRO partitions the parameters (stage 3) or the optimizer "
                         "state outside PyTorch's view of the forward. Use FSDP2 instead "
                         "(ModelParallelStrategy(data_parallel_size=<ranks>, tensor_parallel_size=1) with fully_shard), "
                         "strategy='ddp', or attribute a saved checkpoint afterwards with lightning_saliency.attribute().",
    "XLAFSDPStrategy": "XLAFSDPStrategy is not supported (no XLA devices are tested). Use strategy='ddp' or "
                       "ModelParallelStrategy (FSDP2) on GPUs or CPUs.",
}


def parameters_sharded(strategy: Any) -> bool:
    """Whether ``strategy`` shards the model's parameters in a way the monitor supports (FSDP2
    through Lightning's ``ModelParallelStrategy`` without tensor parallelism): then every model
    pass is a collective and the ranks run in lockstep. Raises, naming the route that works, for
    tensor parallelism, FSDP1, DeepSpeed and XLA FSDP."""
    names = {cls.__name__ for cls in type(strategy).__mro__}
    for name, message in REFUSED.items():
        if name in names:
            raise ValueError(f"SaliencyMonitor: {message}")
    if "ModelParallelStrategy" not in names:
        return False
    mesh = getattr(strategy, "device_mesh", None)
    dims = tuple(getattr(mesh, "mesh_dim_names", None) or ())
    size = mesh["tensor_parallel"].size() if "tensor_parallel" in dims else 1
    if size > 1:
        raise ValueError(TENSOR_PARALLEL.format(size=size))
    return True


TRAINER_SHARDED = (
    "SaliencyTrainerCallback does not support a model the Trainer has sharded ({kind}): every forward of it is "
    "a collective, and the Trainer's sharding could not be tested here (accelerate enables FSDP only on GPUs and "
    "other accelerators; on CPU it trains with DDP). Monitor sharded fits with Lightning's ModelParallelStrategy "
    "(FSDP2) and SaliencyMonitor, or train with DDP while you monitor."
)


def refuse_trainer_sharding(model: Any) -> None:
    """Raise at the Trainer's start for a model that accelerate has sharded (FSDP1 or FSDP2)."""
    try:
        from torch.distributed.fsdp import FSDPModule, FullyShardedDataParallel
    except ImportError:  # pragma: no cover - torch without FSDP
        return
    for module in model.modules():
        if isinstance(module, (FSDPModule, FullyShardedDataParallel)):
            kind = "FSDP2" if isinstance(module, FSDPModule) else "FSDP1"
            raise ValueError(TRAINER_SHARDED.format(kind=kind))


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


def _initialised(world_size: int) -> bool:
    return world_size > 1 and torch.distributed.is_available() and torch.distributed.is_initialized()


def gather_objects(payload: Any, world_size: int) -> list[Any]:
    """Every rank's ``payload`` on every rank (pickled; any size or shape, empty included)."""
    if not _initialised(world_size):
        return [payload]
    gathered: list[Optional[Any]] = [None] * world_size
    torch.distributed.all_gather_object(gathered, payload)
    return gathered


def broadcast_object(value: Any, world_size: int) -> Any:
    """Rank zero's ``value`` on every rank, so that all ranks take the same decision."""
    if not _initialised(world_size):
        return value
    box = [value]
    torch.distributed.broadcast_object_list(box, src=0)
    return box[0]


class ShardError(RuntimeError):
    """Work failed on some rank; raised on every rank so that all of them skip the run."""


@dataclass
class Ranks:
    """This process's place among the ranks of one run, and its first local failure.

    Local work goes through :meth:`attempt`: on a single process an error propagates as usual;
    with several, it is kept and carried to the next collective (:meth:`sharded` or
    :meth:`agree`), where every rank raises :class:`ShardError` together.
    """

    rank: int = 0
    world_size: int = 1
    failure: Optional[str] = None
    in_step: bool = False  # the model's parameters are sharded: every rank takes part in every pass

    @property
    def is_zero(self) -> bool:
        return self.rank == 0

    def attempt(self, work: Callable[..., T], *args: Any) -> Optional[T]:
        """``work(*args)``, or ``None`` after a failure here (now or earlier in the run)."""
        if self.failure is not None:
            return None
        try:
            return work(*args)
        except Exception as error:
            if self.world_size == 1:
                raise
            self.failure = f"rank {self.rank}: {type(error).__name__}: {error}"
            return None

    def _raise_failures(self, failures: Sequence[Optional[str]]) -> None:
        found = [f for f in failures if f is not None]
        if found:
            raise ShardError("; ".join(found))

    def sharded(self, work: Callable[[list[int]], T], lengths: Sequence[int]) -> list[tuple[list[int], T]]:
        """Run ``work(rows)`` on this rank's share of the rows (balanced by ``lengths``) and gather
        every rank's ``(rows, result)``: one gather on every rank, whatever happens locally. Ranks
        with an empty share (or a failure) contribute nothing; a failure anywhere raises on all.
        With ``in_step``, one more gather first (the failures so far), and ``work`` also runs on an
        empty share; a ``None`` result contributes nothing."""
        rows = shard_rows(lengths, self.rank, self.world_size) if self.failure is None else []
        if self.in_step:
            # Every forward is a collective: a rank that failed earlier cannot take part, so all
            # learn of it first; then every rank works, an empty share included (``work`` runs a
            # stand-in and keeps nothing).
            self._raise_failures(gather_objects(self.failure, self.world_size))
            result = self.attempt(work, rows) if len(lengths) else None
        else:
            result = self.attempt(work, rows) if rows else None
        gathered = gather_objects((rows, result, self.failure), self.world_size)
        self._raise_failures([failure for _, _, failure in gathered])
        return [(part, value) for part, value, _ in gathered if value is not None]

    def agree(self, value: T) -> T:
        """Rank zero's ``value`` on every rank (one broadcast). A failure on rank zero raises on
        every rank; other ranks' failures wait for the next gather."""
        agreed, failure = broadcast_object((value, self.failure), self.world_size)
        self._raise_failures([failure])
        return agreed
