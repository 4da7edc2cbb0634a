"""The framework-free monitor: one run from plan to published record, and the state between runs.

Both adapters (the Lightning callback and the Hugging Face Trainer callback) are thin layers over
:class:`MonitorEngine`, as Lightning's ``ThroughputMonitor`` sits over ``fabric``'s ``Throughput``.
Data flows one way: the adapter hands in the model access, the probe set, the output directory and
a publisher; the engine plans, runs the model passes (:mod:`.runner`), analyses (:mod:`.analysis`)
and publishes (:mod:`.publishing`). Nothing is called back.
"""
from __future__ import annotations

import time
import traceback
import uuid
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Optional

from lightning_saliency.analysis import REFERENCE_LABEL, AnalysisSettings, analyse
from lightning_saliency.attribution import AttributionConfig
from lightning_saliency.budget import ComputeBudget, Plan
from lightning_saliency.distributed import broadcast_object
from lightning_saliency.probe import ProbeSet
from lightning_saliency.publishing import Publisher
from lightning_saliency.records import RunRecord, SkippedExample, build_record
from lightning_saliency.runner import ModelAccess, PassSettings, Progress, no_progress, run_model_passes
from lightning_saliency.settings import MonitorSettings


@dataclass(frozen=True)
class RunRequest:
    """One run the adapter asks for.

    Attributes:
        train_tokens: the largest training batch seen so far (padded tokens), the token budget
            when the settings leave ``max_tokens`` to it; 0 when none was seen yet.
        batch_size: the loader's batch size, for a budget of one batch of probe-width rows before
            any training batch is seen.
        epoch_seconds: the epoch's time so far (for the compute budget).
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

    def token_budget(self, probe: ProbeSet, default: int) -> int:
        if self.train_tokens:
            return self.train_tokens
        if self.batch_size:
            return self.batch_size * probe.inputs["input_ids"].shape[-1]
        return default  # examples= without a validation loader, or a batch sampler


class MonitorEngine:
    """Runs and remembers the monitor's attribution runs.

    Attributes:
        history: the JSON records of the most recent runs (``settings.history_size`` of them; every
            record is also on disk).
        completed: labels of the runs done (on every rank), so a resumed fit does not repeat them.
    """

    def __init__(self, settings: MonitorSettings) -> None:
        self.settings = settings
        self.budget: Optional[ComputeBudget] = None
        if settings.budget is not None:
            self.budget = ComputeBudget(
                settings.budget, settings.num_examples, settings.steps, min_examples=2,
                min_steps=settings.attribution.min_steps if settings.adaptive else min(9, settings.attribution.n_steps),
            )
        self.history: list[dict[str, Any]] = []
        self.completed: set[str] = set()
        self.probe_indices: Optional[list[int]] = None
        self.reference: Optional[RunRecord] = None
        self.previous: Optional[RunRecord] = None
        # One training, one id: it travels with the checkpoint, so the records of a resumed fit in a
        # new log directory are joined with the earlier ones by the report.
        self.run_id = uuid.uuid4().hex
        self._reported_errors: set[str] = set()

    # ---------------------------------------------------------------------------------- planning
    def plan(self, label: str, epoch_seconds: Optional[float]) -> Plan:
        if self.budget is None:
            return Plan(self.settings.num_examples, self.settings.attribution.n_steps)
        return self.budget.full() if label == REFERENCE_LABEL else self.budget.plan(epoch_seconds)

    def run_config(self, plan: Plan, token_budget: int) -> AttributionConfig:
        """The attribution options of one run: the token budget and, under a compute budget, the steps."""
        changes: dict[str, Any] = {}
        if self.settings.max_tokens is None:
            changes["max_tokens"] = max(int(token_budget), 1)
        if self.budget is not None:
            changes["max_steps" if self.settings.adaptive else "n_steps"] = plan.steps
        return replace(self.settings.attribution, **changes)

    # ---------------------------------------------------------------------------------- one run
    def run(
        self,
        request: RunRequest,
        access: ModelAccess,
        probe: Callable[[], ProbeSet],
        directory: Path,
        publisher: Callable[[], Publisher],
        progress: Progress = no_progress,
    ) -> Optional[RunRecord]:
        """Plan, attribute (sharded), analyse and publish one run. ``probe`` builds the probe set;
        ``publisher`` is called on rank zero only. Every rank makes the same collectives, whatever
        fails locally: one broadcast (the plan) and one gather (a shard, nothing, or its error)."""
        started = time.perf_counter()
        plan = broadcast_object(self.plan(request.label, request.epoch_seconds), request.world_size)
        s = self.settings
        examples: Optional[ProbeSet] = None
        config, failure = s.attribution, None
        try:
            examples = probe()
            self.probe_indices = list(examples.indices)
            if plan.num_examples < len(examples):  # a prefix of the fixed order: drift compares the same examples
                examples = examples.select(range(plan.num_examples))
            config = self.run_config(plan, request.token_budget(examples, s.attribution.max_tokens))
        except Exception as error:
            if request.world_size == 1:
                raise
            failure = f"rank {request.rank}: {type(error).__name__}: {error}"  # still joins the gather below
        passes = run_model_passes(
            access, examples, PassSettings(s.methods, config, s.target, s.task, s.faithfulness, s.seed),
            request.rank, request.world_size, progress, f"Saliency [{request.label}]", failure,
        )
        self.completed.add(request.label)
        if passes is None:  # not rank zero
            return None
        budget = None if self.budget is None else {"fraction": self.budget.fraction, **plan.as_dict()}
        skipped = [SkippedExample(examples.indices[row], reason) for row, reason in passes.skipped]
        record = build_record(
            label=request.label, stage=request.stage, epoch=request.epoch, global_step=request.global_step,
            settings=s.record_settings(config, budget), probe=examples.select(passes.rows), result=passes.attributions,
            label_names=s.label_names, skipped=skipped,
        )
        record.run_id = self.run_id
        analysed = time.perf_counter()
        record.metrics = analyse(record, self.previous, self.reference, AnalysisSettings(s.top_k, s.shortcut),
                                 passes.faithfulness)
        record.timings = {**passes.seconds, "analysis": time.perf_counter() - analysed}
        publisher().publish(record, directory, started, request.epoch_seconds)
        if request.label == REFERENCE_LABEL:
            self.reference = record
        self.previous = record
        self._remember(record)
        self._observe_cost(record, passes.attributions, len(examples))
        return record

    def _observe_cost(self, record: RunRecord, attributions: Any, examples: int) -> None:
        if self.budget is None:
            return
        ig = attributions.methods.get("integrated_gradients")
        self.budget.observe(
            seconds=record.seconds, ig_seconds=attributions.timings.get("integrated_gradients", 0.0),
            examples=examples, mean_steps=float(ig.steps.float().mean()) if ig is not None else 0.0,
        )

    def attempt(
        self,
        request: RunRequest,
        access: ModelAccess,
        probe: Callable[[], ProbeSet],
        directory: Path,
        publisher: Callable[[], Publisher],
        warn: Callable[[str], None],
        progress: Progress = no_progress,
    ) -> Optional[RunRecord]:
        """:meth:`run`, guarded: with ``on_error='warn'`` a failed run never costs the training run.
        It is written as a record with ``status="failed"`` and its cause (rank zero), logged as
        ``saliency/status`` 0, and warned about at every run (the traceback once per cause)."""
        try:
            return self.run(request, access, probe, directory, publisher, progress)
        except Exception as error:
            if self.settings.on_error == "raise":
                raise
            cause = f"{type(error).__name__}: {error}"
            message = (f"SaliencyMonitor: run {request.label!r} failed and was skipped; training continues. "
                       f"Cause: {cause}")
            if cause not in self._reported_errors:
                self._reported_errors.add(cause)
                where = "".join(traceback.format_exception(type(error), error, error.__traceback__, limit=-3))
                message += f"\n{where}Set on_error='raise' to stop on such errors."
            warn(message)
            if request.rank == 0:
                self._record_failure(request, cause, directory, publisher, warn)
            return None

    def _record_failure(self, request: RunRequest, cause: str, directory: Path, publisher: Callable[[], Publisher],
                        warn: Callable[[str], None]) -> None:
        record = RunRecord(label=request.label, stage=request.stage, epoch=request.epoch,
                           global_step=request.global_step, settings=self.settings.record_settings(
                               self.settings.attribution, None),
                           methods=[], examples=[], status="failed", error=cause, run_id=self.run_id)
        try:
            publisher().publish_failure(record, directory)
        except Exception as error:  # not even the failure could be written: say so, and train on
            warn(f"SaliencyMonitor: the failed run {request.label!r} could not be recorded either: {error}")
        self._remember(record)

    def _remember(self, record: RunRecord) -> None:
        self.history.append(record.to_json())
        del self.history[: -self.settings.history_size]  # bounded: every record is also on disk

    # ---------------------------------------------------------------------------------- resuming
    def state_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "probe_indices": self.probe_indices,
            "reference": None if self.reference is None else self.reference.to_json(),
            "previous": None if self.previous is None else self.previous.to_json(),
            "completed": sorted(self.completed),
            "budget_costs": None if self.budget is None else [self.budget.seconds_per_step,
                                                              self.budget.seconds_per_example],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.probe_indices = state.get("probe_indices")
        self.run_id = state.get("run_id") or self.run_id
        self.reference = RunRecord.from_json(state["reference"]) if state.get("reference") else None
        self.previous = RunRecord.from_json(state["previous"]) if state.get("previous") else None
        self.completed = set(state.get("completed", []))
        self.history.clear()
        if self.previous is not None:
            self.history.append(self.previous.to_json())
        costs = state.get("budget_costs")
        if self.budget is not None and costs is not None:  # plan the first run after resuming from the last one
            self.budget.seconds_per_step, self.budget.seconds_per_example = costs
