"""What an adapter and the engine exchange, as data: a :class:`RunRequest` and, on rank zero, the
:class:`RunOutputs` go in; a :class:`RunOutcome` comes back. Nothing here is a callable."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

from lightning_saliency.probes import ProbeSet
from lightning_saliency.monitor.sinks import Sink
from lightning_saliency.schema.records import RunRecord


@dataclass(frozen=True)
class RunRequest:
    """One run the adapter asks for.

    Attributes:
        train_tokens: the largest training batch seen so far (padded tokens), the token budget
            when the settings leave ``max_tokens`` to it; 0 when none was seen yet.
        batch_size: the loader's batch size, for a budget of one batch of probe-width rows before
            any training batch is seen.
        epoch_seconds: the training time the compute budget measures the run against: the epoch's
            time so far, or for a step run the training time since the previous run.
        step_run: a cheap run between epochs (``every_n_train_steps``): ``step_methods`` only, no
            faithfulness and no images.
        validation: the validation loader the probe set and the causal checks' slice are sampled
            from, once (``None`` with ``probe.texts``).
        show_progress: draw a per-row progress bar (on a terminal).
    """

    label: str
    stage: str
    epoch: Optional[int]
    global_step: int
    train_tokens: int = 0
    batch_size: Optional[int] = None
    epoch_seconds: Optional[float] = None
    rank: int = 0
    world_size: int = 1
    step_run: bool = False
    validation: Any = None
    show_progress: bool = False

    def token_budget(self, probe: ProbeSet, default: int) -> int:
        if self.train_tokens:
            return self.train_tokens
        if self.batch_size:
            return self.batch_size * probe.inputs["input_ids"].shape[-1]
        return default  # examples= without a validation loader, or a batch sampler


@dataclass(frozen=True)
class RunOutputs:
    """Where rank zero's results go: the records' directory and the sinks (scalars, images,
    text). ``no_images_hint``: said once when no sink takes images."""

    directory: Path
    sinks: Sequence[Sink] = ()
    no_images_hint: Optional[str] = None


@dataclass(frozen=True)
class RunOutcome:
    """What one attempted run gives back, the same on every rank except ``record``.

    Attributes:
        record: the run's record (rank zero; ``None`` elsewhere and when the run failed).
        confirmed: the suspects this run confirmed causally.
        should_stop: ``evidence.stop_on_shortcut`` is on and a suspect was confirmed.
    """

    record: Optional[RunRecord] = None
    confirmed: tuple[str, ...] = ()
    should_stop: bool = False
