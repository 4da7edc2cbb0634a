"""When each suspect appeared and when it was confirmed, and when the cheap step runs happen.

Du et al. (2021) show shortcuts are learned in the first few hundred steps, long before an epoch
ends. Step runs are therefore dense early: with ``schedule="log"`` they happen at steps 1, 2, 4,
8, ... below ``every_n_train_steps`` and at every multiple of it after that.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Iterable, Literal, Optional

from lightning_saliency.schema.findings import SuspectTimeline

StepSchedule = Literal["linear", "log"]


def step_run_due(step: int, every: Optional[int], schedule: str = "linear") -> bool:
    """Whether a step run is due after optimizer step ``step`` (1-based: the trainer's
    ``global_step`` once the step is taken)."""
    if every is None or step < 1:
        return False
    if step % every == 0:
        return True
    return schedule == "log" and step < every and step & (step - 1) == 0  # a power of two


def update_timeline(timeline: dict[str, SuspectTimeline], label: str, step: int,
                    suspected: Iterable[tuple[str, str]], confirmed: Iterable[str]) -> None:
    """Add the suspects (``(token, method)``) first seen in run ``label`` and mark the confirmed."""
    for token, method in suspected:
        if token not in timeline:
            timeline[token] = SuspectTimeline(token, method, label, step)
    for token in confirmed:
        entry = timeline.get(token)
        if entry is not None and entry.confirmed_run is None:
            timeline[token] = replace(entry, confirmed_run=label, confirmed_step=step)
