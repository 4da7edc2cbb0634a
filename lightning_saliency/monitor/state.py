"""What the monitor remembers between runs, as one frozen value: what ``state_dict`` saves and a
resume restores. Each run derives the next state; nothing is changed in place."""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Optional

from lightning_saliency.schema.records import RunRecord

REFERENCE_LABEL = "start"  # the run every later one is compared with (drift, rising shares)


@dataclass(frozen=True)
class RunState:
    """The engine's state between runs.

    Attributes:
        run_id: the fit's id (kept across a resume, so the report joins its runs).
        completed: the labels of the runs done (a resumed fit does not repeat them).
        reference: the ``start`` run's record.
        previous: the last run's record (what a step run compares with).
        previous_epoch: the last epoch run's record (what an epoch run compares with).
    """

    run_id: str
    completed: frozenset[str] = frozenset()
    reference: Optional[RunRecord] = None
    previous: Optional[RunRecord] = None
    previous_epoch: Optional[RunRecord] = None

    def started(self, label: str) -> "RunState":
        """The state once run ``label`` is under way (it counts as done whatever happens next)."""
        return replace(self, completed=self.completed | {label})

    def after(self, record: RunRecord, step_run: bool) -> "RunState":
        """The state after ``record`` was published."""
        return replace(self, reference=record if record.label == REFERENCE_LABEL else self.reference,
                       previous=record, previous_epoch=self.previous_epoch if step_run else record)

    def compared_with(self, step_run: bool) -> Optional[RunRecord]:
        """The record a run is compared with: an epoch run's previous epoch run, a step run's last run."""
        return self.previous if step_run else self.previous_epoch

    def to_json(self) -> dict[str, Any]:
        as_json = lambda record: None if record is None else record.to_json()  # noqa: E731
        return {"run_id": self.run_id, "reference": as_json(self.reference), "previous": as_json(self.previous),
                "previous_epoch": as_json(self.previous_epoch), "completed": sorted(self.completed)}

    @classmethod
    def from_json(cls, state: dict[str, Any], run_id: str) -> "RunState":
        """A saved state (``run_id``: this fit's, when the saved one has none)."""
        read = lambda key: RunRecord.from_json(state[key]) if state.get(key) else None  # noqa: E731
        previous = read("previous")
        return cls(state.get("run_id") or run_id, frozenset(state.get("completed", [])), read("reference"), previous,
                   read("previous_epoch") or previous)
