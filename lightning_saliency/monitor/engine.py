"""The framework-free monitor: one run from plan to published record, and the state between runs.

Both adapters (the Lightning callback and the Hugging Face Trainer callback) are thin layers over
:class:`MonitorEngine`, as Lightning's ``ThroughputMonitor`` sits over ``fabric``'s ``Throughput``.
Data flows one way: the adapter hands in data (the settings at construction; the model access at
:meth:`MonitorEngine.connect`; per run a :class:`RunRequest` with the validation loader, and on
rank zero a :class:`RunOutputs` with the directory and the sinks) and gets data back (a
:class:`RunOutcome`). The engine samples the probe (:mod:`.sampling`), runs the model passes
(:mod:`.runner`), analyses (:mod:`.analysis`), gathers the evidence (:mod:`.evidence`) and
publishes (:mod:`.publishing`). Nothing is called back, and no adapter reads the engine's state.
"""
from __future__ import annotations

import time
import traceback
from dataclasses import replace
from types import MappingProxyType
from typing import Any, Callable, Mapping, Optional, Sequence

from lightning_saliency.attribution import AttributionConfig
from lightning_saliency.attribution.context import DEFAULT_MAX_TOKENS
from lightning_saliency.monitor.analysis import AnalysisSettings, analyse
from lightning_saliency.monitor.budget import Plan
from lightning_saliency.monitor.distributed import Ranks
from lightning_saliency.monitor.evidence.artifacts import training_artifacts, with_class_indices
from lightning_saliency.monitor.evidence.causal import answer_probabilities, causal_scalars
from lightning_saliency.monitor.evidence.timeline import step_run_due
from lightning_saliency.monitor.evidence.tracker import EvidenceTracker
from lightning_saliency.monitor.model_access import ModelAccess
from lightning_saliency.monitor.notices import warn
from lightning_saliency.monitor.planning import RunPlanner
from lightning_saliency.monitor.probing import ProbeLifecycle
from lightning_saliency.probes import ProbeSet
from lightning_saliency.monitor.publishing import Publisher
from lightning_saliency.monitor.recording import build_record
from lightning_saliency.monitor.state import RunState
from lightning_saliency.schema.findings import SuspectTimeline
from lightning_saliency.schema.records import RunRecord, SkippedExample
from lightning_saliency.monitor.runner import (
    ModelDiverged, PassSettings, no_progress, row_progress, run_model_passes,
)
from lightning_saliency.monitor.messages import RunOutcome, RunOutputs, RunRequest
from lightning_saliency.settings import MonitorSettings
from lightning_saliency.tasks import get_task


# A step run checks its new suspects on the first 64 examples of the causal checks' sample (epoch
# runs use all of it, for the record). A shortcut that matters flips most of the examples that
# contain it: with about 30 trials a rate of 0.9 has a 95% lower bound near 0.75, far above a
# control near 0, while the check costs a quarter of the forward rows (on MiniLM, about 8 s of
# a step run's 9 s before).
STEP_RUN_CONFIRM_EXAMPLES = 64


def _first_examples(sample: Callable[[], ProbeSet], count: int) -> Callable[[], ProbeSet]:
    def first() -> ProbeSet:
        examples = sample()
        return examples if len(examples) <= count else examples.select(range(count))
    return first


class MonitorEngine:
    """Runs and remembers the monitor's attribution runs.

    Args:
        settings: the validated settings (never changed here).
        run_id: one training, one id (it travels with the checkpoint, so the records of a resumed
            fit in a new log directory are joined with the earlier ones by the report).
    """

    def __init__(self, settings: MonitorSettings, run_id: str) -> None:
        self.settings = settings
        self._state = RunState(run_id)
        self._planner = RunPlanner(settings)
        self._evidence = EvidenceTracker()
        self._probing = ProbeLifecycle(settings)
        self._history: list[dict[str, Any]] = []
        self._publisher: Optional[Publisher] = None
        self._reported_errors: set[str] = set()

    # ------------------------------------------------------------------------------------ setup
    def connect(self, access: ModelAccess, max_length: int, configured_names: Optional[Sequence[str]],
                rank: int = 0) -> None:
        """Fix how the live model is called (at the adapter's setup)."""
        self._probing.connect(access, max_length, configured_names, rank)

    @property
    def probe(self) -> Optional[ProbeSet]:
        """The fixed probe set, once sampled."""
        return self._probing.probe

    @property
    def run_id(self) -> str:
        """The fit's id (the records' ``run_id``)."""
        return self._state.run_id

    @property
    def timeline(self) -> Mapping[str, SuspectTimeline]:
        """When each suspect was first raised and confirmed, by token (a read-only view)."""
        return MappingProxyType(self._evidence.timeline)

    def sample(self, validation: Any, rank: int = 0) -> ProbeSet:
        """The fixed probe set, sampled on first use (the stored indices after a resume). Adapters
        call it at setup to fail early on batches it cannot read."""
        probe, new = self._probing.sample(validation, rank)
        if new:
            self._index_artifacts()
        return probe

    def observe_training_set(self, dataset: Any, collate_fn: Optional[Callable[[list], Any]],
                             columns: Optional[Sequence[str]] = None) -> None:
        """The training set's artifact table (at fit start, on rank zero: no collective), when the
        task has one text and one class per example. ``columns``: the item keys the collate takes."""
        s, task, access = self.settings, get_task(self.settings.task), self._probing.access
        if s.evidence.artifact_examples and dataset is not None and task.text_label_evidence:
            self._evidence.artifacts = training_artifacts(dataset, collate_fn, access, s, columns)
        elif s.evidence.artifact_examples and dataset is not None and task.answer_classes:
            self._evidence.artifacts = training_artifacts(dataset, collate_fn, access, s, columns,
                                                         answers_aligned=task.targets_aligned)
        self._index_artifacts()

    def _index_artifacts(self) -> None:
        """Once the artifact table and the probe are both there (in either order): a table of
        answer texts (a label-like completion's) is read against the probe's answer classes, once,
        so that every run's analysis reads class indices as for any table."""
        if self.probe is not None:
            self._evidence.artifacts = with_class_indices(self._evidence.artifacts, self.probe.label_names)

    def needs_validation(self) -> bool:
        """Whether the next run may sample from the validation loader (the probe set or the causal
        checks' slice are not sampled yet), so an adapter builds a loader only then."""
        return self._probing.needs_validation()

    def should_run(self, label: str) -> bool:
        """Whether run ``label`` is still to be done (a resumed fit does not repeat runs); the
        same answer on every rank."""
        return label not in self._state.completed

    def due_step_run(self, step: int) -> Optional[str]:
        """The label of the step run due after optimizer step ``step`` (``schedule.every_n_train_steps``
        and ``step_schedule``), or ``None`` when none is due or it is done already."""
        schedule, label = self.settings.schedule, f"step_{step:06d}"
        due = step_run_due(step, schedule.every_n_train_steps, schedule.step_schedule)
        return label if due and self.should_run(label) else None

    def recent_records(self) -> list[dict[str, Any]]:
        """The JSON records of the most recent runs (``output.history_size`` of them), oldest first."""
        return list(self._history)

    def flush(self) -> None:
        """Wait until every finished run's outputs are written (runs publish on a worker)."""
        if self._publisher is not None:
            self._publisher.flush()

    # ---------------------------------------------------------------------------------- one run
    def run(self, request: RunRequest, outputs: Optional[RunOutputs]) -> Optional[RunRecord]:
        """Plan, attribute (sharded), analyse, check the suspects causally (sharded) and publish one
        run. Every rank makes the same collectives, whatever fails locally (:class:`Ranks`): one
        broadcast (the plan), one gather (a shard, nothing, or its error), one broadcast (the
        suspects), and the causal checks' two gathers when there are suspects."""
        started = time.perf_counter()
        access = self._probing.access
        ranks = Ranks(request.rank, request.world_size, in_step=access.lockstep is not None)
        plan = ranks.agree(self._planner.plan(request.label, request.epoch_seconds, request.step_run))
        s = self.settings

        def prepared() -> tuple[ProbeSet, AttributionConfig]:
            examples = self.sample(request.validation, request.rank)
            kept = list(dict.fromkeys(examples.indices))[: plan.num_examples]
            if len(kept) < len(examples):  # a prefix of the fixed order: drift compares the same examples
                kept_set = set(kept)  # (all rows of each kept example: a span probe has one per span)
                examples = examples.select([r for r, index in enumerate(examples.indices) if index in kept_set])
            default_tokens = s.attribution.max_tokens or DEFAULT_MAX_TOKENS  # no batch seen, no loader
            config = self._planner.run_config(plan, request.token_budget(examples, default_tokens))
            return self._probing.rows(examples, config, request.label, request.rank), config

        examples, config = ranks.attempt(prepared) or (None, s.attribution)
        progress = row_progress if request.show_progress and not request.step_run else no_progress
        passes = run_model_passes(
            access, examples, PassSettings(self._planner.methods_for(request), config, s.target, s.task,
                                                s.evidence.faithfulness and not request.step_run
                                                and get_task(s.task).erasure_faithfulness, s.attribution.seed),
            ranks, progress, f"Saliency [{request.label}]", self._probing.max_length,
        )
        self._state = self._state.started(request.label)
        answered = None
        if examples is not None and examples.answers is not None:  # every rank: the answers' passes are sharded
            answered = answer_probabilities(access, examples, config, s.task, self._probing.answer_classes(examples),
                                            ranks)
        record = (ranks.attempt(self._analysed, request, passes, examples, config, plan, answered)
                  if passes is not None else None)
        checked = time.perf_counter()
        confirmation = None
        if s.evidence.confirm_examples and self._probing.text_label_evidence():
            confirmation = lambda: self._probing.confirmation_set(request.validation, request.rank)  # noqa: E731
            if request.step_run:
                confirmation = _first_examples(confirmation, STEP_RUN_CONFIRM_EXAMPLES)
        checks, causal_error, attachments = self._evidence.run(
            record, access, confirmation, examples, self._probing.causal_settings(config), request.label,
            request.global_step, ranks, lambda rows: None, recheck_confirmed=not request.step_run,
            recheck_unconfirmed=self._planner.rechecks_unconfirmed(request.step_run))
        if record is None:  # not rank zero
            return None
        if causal_error is not None:
            warn(f"SaliencyMonitor: the causal checks of run {request.label!r} failed ({causal_error}); its "
                 "attributions and suspects are recorded without them.")
        metrics = replace(record.metrics, causal=checks, causal_error=causal_error,
                          timeline=list(self._evidence.timeline.values()),
                          scalars={**record.metrics.scalars, **causal_scalars(checks)})
        causal_seconds = {"causal": time.perf_counter() - checked} if checks or causal_error else {}
        record = replace(record, metrics=metrics, timings={**record.timings, **causal_seconds})
        record, data = self._publisher_for(outputs).publish(record, outputs.directory, started, request.epoch_seconds,
                                                            attachments)
        self._state = self._state.after(record, request.step_run)
        self._remember(data)
        self._planner.observe(record, passes.attributions, len(examples), request.step_run)
        return record

    def _publisher_for(self, outputs: Optional[RunOutputs]) -> Publisher:
        if outputs is None:
            raise ValueError("rank zero's run needs RunOutputs (the directory and the sinks).")
        if self._publisher is None:  # made on rank zero only, at its first run
            o = self.settings.output
            self._publisher = Publisher(outputs.sinks, o.top_k, o.example_images,
                                        self.settings.evidence.on_shortcut, outputs.no_images_hint, o.color_scale)
        return self._publisher

    def _analysed(self, request: RunRequest, passes: Any, examples: ProbeSet, config: AttributionConfig,
                  plan: Plan, answered: Optional[Any] = None) -> RunRecord:
        s = self.settings
        budget = self._planner.recorded(plan, request.step_run)
        skipped = [SkippedExample(examples.indices[row], reason) for row, reason in passes.skipped]
        record = build_record(
            label=request.label, stage=request.stage, epoch=request.epoch, global_step=request.global_step,
            settings=s.record_settings(config, budget), probe=examples.select(passes.rows), result=passes.attributions,
            label_names=self._probing.label_names, skipped=skipped, run_id=self._state.run_id, step_run=request.step_run,
            answer_probabilities=None if answered is None else answered[passes.rows],
        )
        analysed = time.perf_counter()
        metrics = analyse(record, self._state.compared_with(request.step_run), self._state.reference,
                          AnalysisSettings(s.output.top_k, s.shortcut),
                          passes.faithfulness, self._evidence.artifacts)
        return replace(record, metrics=metrics, timings={**passes.seconds, "analysis": time.perf_counter() - analysed})

    def attempt(self, request: RunRequest, outputs: Optional[RunOutputs] = None) -> RunOutcome:
        """:meth:`run`, guarded: with ``on_error='warn'`` a failed run never costs the training run.
        It is written as a record with ``status="failed"`` (``"diverged"`` when the model's outputs
        are NaN or infinite on every probe example) and its cause (rank zero), logged as
        ``saliency/status`` 0, and warned about at every run (the traceback once per cause).
        ``outputs``: rank zero's (``None`` on the other ranks)."""
        self._evidence.confirmed = []
        try:
            record = self.run(request, outputs)
        except Exception as error:
            # A diverged model is the training's state, not a fault of the monitor: recorded, never raised.
            if self.settings.on_error == "raise" and not isinstance(error, ModelDiverged):
                raise
            self._report_failure(request, outputs, error)
            return RunOutcome()
        confirmed = tuple(self._evidence.confirmed)
        return RunOutcome(record, confirmed, self.settings.evidence.stop_on_shortcut and bool(confirmed))

    def _report_failure(self, request: RunRequest, outputs: Optional[RunOutputs], error: Exception) -> None:
        cause = f"{type(error).__name__}: {error}"
        status = "diverged" if isinstance(error, ModelDiverged) else "failed"
        message = f"SaliencyMonitor: run {request.label!r} failed and was skipped; training continues. Cause: {cause}"
        if status == "diverged":
            message = f"SaliencyMonitor: run {request.label!r}: {error} No attributions are recorded for it."
        elif cause not in self._reported_errors:
            self._reported_errors.add(cause)
            where = "".join(traceback.format_exception(type(error), error, error.__traceback__, limit=-3))
            message += f"\n{where}Set on_error='raise' to stop on such errors."
        if request.rank != 0:
            return
        warn(message)
        record = RunRecord(label=request.label, stage=request.stage, epoch=request.epoch,
                           global_step=request.global_step,
                           settings=self.settings.record_settings(self.settings.attribution, None),
                           methods=[], examples=[], status=status, error=cause, run_id=self._state.run_id)
        try:
            data = self._publisher_for(outputs).publish_failure(record, outputs.directory)[1]
        except Exception as failure:  # not even the failure could be written: say so, and train on
            warn(f"SaliencyMonitor: the failed run {request.label!r} could not be recorded either: {failure}")
            data = record.to_json()
        self._remember(data)

    def _remember(self, data: dict[str, Any]) -> None:
        # The JSON the publisher made for the file: converting the record again would cost the
        # training thread another ~20 ms per run (MiniLM, 8 examples).
        self._history.append(data)
        del self._history[: -self.settings.output.history_size]  # bounded: every record is also on disk

    # ---------------------------------------------------------------------------------- resuming
    def state_dict(self) -> dict[str, Any]:
        """The state between runs (:class:`RunState`), the probe's indices, the budget's costs and
        the suspects' timeline: what a checkpoint keeps."""
        return {**self._state.to_json(), "probe_indices": self._probing.indices,
                "budget_costs": self._planner.state_dict(), "timeline": self._evidence.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._probing.forget(state.get("probe_indices"))  # sampled again from the stored indices
        self._state = RunState.from_json(state, self._state.run_id)
        self._evidence.load_state_dict(state.get("timeline", []))
        self._history.clear()
        if self._state.previous is not None:
            self._history.append(self._state.previous.to_json())
        self._planner.load_state_dict(state.get("budget_costs"))
