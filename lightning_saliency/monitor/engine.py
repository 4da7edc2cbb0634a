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

from lightning_saliency.monitor.analysis import REFERENCE_LABEL, AnalysisSettings, analyse, scalar_name
from lightning_saliency.attribution import AttributionConfig
from lightning_saliency.monitor.budget import ComputeBudget, Plan
from lightning_saliency.monitor.distributed import ShardError, broadcast_object
from lightning_saliency.monitor.evidence.causal import KINDS, CausalSettings
from lightning_saliency.monitor.evidence.tracker import EvidenceTracker
from lightning_saliency.monitor.probe import ProbeSet
from lightning_saliency.monitor.publishing import Publisher
from lightning_saliency.monitor.recording import RunRecord, SkippedExample, build_record
from lightning_saliency.monitor.runner import ModelAccess, ModelDiverged, PassSettings, Progress, no_progress, run_model_passes
from lightning_saliency.settings import MonitorSettings


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

    def token_budget(self, probe: ProbeSet, default: int) -> int:
        if self.train_tokens:
            return self.train_tokens
        if self.batch_size:
            return self.batch_size * probe.inputs["input_ids"].shape[-1]
        return default  # examples= without a validation loader, or a batch sampler


@dataclass(frozen=True)
class RunSources:
    """Where one run's inputs come from and where its outputs go, as the adapter provides them.

    Attributes:
        probe: builds (or returns) the probe set.
        publisher: the publisher, called on rank zero only.
        confirmation: builds the causal checks' validation slice (``None``: no causal checks).
        max_length: the most tokens the model takes (inserted words must fit).
    """

    access: ModelAccess
    probe: Callable[[], ProbeSet]
    directory: Path
    publisher: Callable[[], Publisher]
    confirmation: Optional[Callable[[], ProbeSet]] = None
    max_length: int = 512
    warn: Callable[[str], None] = lambda message: None
    progress: Progress = no_progress


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


def _budget(settings: MonitorSettings, examples: int, steps: int) -> Optional[ComputeBudget]:
    if settings.budget is None:
        return None
    return ComputeBudget(settings.budget, examples, steps, min_examples=2,
                         min_steps=settings.attribution.min_steps if settings.adaptive else min(9, steps))


class MonitorEngine:
    """Runs and remembers the monitor's attribution runs.

    Attributes:
        history: the JSON records of the most recent runs (``settings.history_size`` of them): the
            dicts the publisher wrote to disk, to be read, not changed.
        completed: labels of the runs done (on every rank), so a resumed fit does not repeat them.
    """

    def __init__(self, settings: MonitorSettings) -> None:
        self.settings = settings
        self.budget = _budget(settings, settings.num_examples, settings.steps)
        # Step runs cost no IG steps: their own budget plans only how many examples fit.
        self.step_budget = _budget(settings, settings.num_examples, settings.steps)
        self.evidence = EvidenceTracker()
        self.previous_epoch: Optional[RunRecord] = None
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
    def budget_for(self, step_run: bool) -> Optional[ComputeBudget]:
        """The compute budget that plans (and learns the cost of) this kind of run."""
        return self.step_budget if step_run else self.budget

    def plan(self, label: str, epoch_seconds: Optional[float], step_run: bool = False) -> Plan:
        budget = self.budget_for(step_run)
        if budget is None:
            return Plan(self.settings.num_examples, self.settings.attribution.n_steps)
        return budget.full() if label == REFERENCE_LABEL else budget.plan(epoch_seconds)

    def methods_for(self, request: RunRequest) -> tuple[str, ...]:
        """A step run's methods, else the configured ones; the reference run also covers the step
        runs' methods, so that they have a ``start`` to be compared with."""
        s = self.settings
        if request.step_run:
            return s.step_methods
        if request.label == REFERENCE_LABEL and s.every_n_train_steps is not None:
            return s.methods + tuple(m for m in s.step_methods if m not in s.methods)
        return s.methods

    def run_config(self, plan: Plan, token_budget: int) -> AttributionConfig:
        """The attribution options of one run: the token budget and, under a compute budget, the steps."""
        changes: dict[str, Any] = {}
        if self.settings.max_tokens is None:
            changes["max_tokens"] = max(int(token_budget), 1)
        if self.budget is not None:
            changes["max_steps" if self.settings.adaptive else "n_steps"] = plan.steps
        return replace(self.settings.attribution, **changes)

    # ---------------------------------------------------------------------------------- one run
    def run(self, request: RunRequest, sources: RunSources) -> Optional[RunRecord]:
        """Plan, attribute (sharded), analyse, check the suspects causally (sharded) and publish one
        run. Every rank makes the same collectives, whatever fails locally: one broadcast (the
        plan), one gather (a shard, nothing, or its error), one broadcast (the suspects), and the
        causal checks' two gathers when there are suspects."""
        started = time.perf_counter()
        plan = broadcast_object(self.plan(request.label, request.epoch_seconds, request.step_run), request.world_size)
        s = self.settings
        examples: Optional[ProbeSet] = None
        config, failure = s.attribution, None
        try:
            examples = sources.probe()
            self.probe_indices = list(examples.indices)
            if plan.num_examples < len(examples):  # a prefix of the fixed order: drift compares the same examples
                examples = examples.select(range(plan.num_examples))
            config = self.run_config(plan, request.token_budget(examples, s.attribution.max_tokens))
        except Exception as error:
            if request.world_size == 1:
                raise
            failure = f"rank {request.rank}: {type(error).__name__}: {error}"  # still joins the gather below
        faithfulness = s.faithfulness and not request.step_run
        passes = run_model_passes(
            sources.access, examples, PassSettings(self.methods_for(request), config, s.target, s.task, faithfulness,
                                                   s.seed),
            request.rank, request.world_size, sources.progress, f"Saliency [{request.label}]", failure,
            sources.max_length,
        )
        self.completed.add(request.label)
        record, analysis_error = None, None
        if passes is not None:  # rank zero
            try:
                record = self._analysed(request, passes, examples, config, plan)
            except Exception as error:
                if request.world_size == 1:
                    raise
                analysis_error = error
        checked = time.perf_counter()
        try:
            confirmation = sources.confirmation
            if request.step_run and confirmation is not None:
                confirmation = _first_examples(confirmation, STEP_RUN_CONFIRM_EXAMPLES)
            checks, causal_error = self.evidence.run(
                record, analysis_error is not None, sources.access, confirmation, examples,
                self._causal_settings(config, sources.max_length), request.label, request.global_step, request.rank,
                request.world_size, lambda rows: None, recheck_confirmed=not request.step_run)
        except ShardError:
            if analysis_error is not None:
                raise analysis_error
            raise
        if record is None:  # not rank zero
            return None
        record.metrics.causal, record.metrics.causal_error = checks, causal_error
        record.metrics.timeline = list(self.evidence.timeline.values())
        record.metrics.scalars.update(causal_scalars(checks))
        if causal_error is not None:
            sources.warn(f"SaliencyMonitor: the causal checks of run {request.label!r} failed ({causal_error}); its "
                         "attributions and suspects are recorded without them.")
        if checks or causal_error:
            record.timings["causal"] = time.perf_counter() - checked
        data = sources.publisher().publish(record, sources.directory, started, request.epoch_seconds)
        if request.label == REFERENCE_LABEL:
            self.reference = record
        if not request.step_run:
            self.previous_epoch = record
        self.previous = record
        self._remember(data)
        self._observe_cost(record, passes.attributions, len(examples), request.step_run)
        return record

    def _analysed(self, request: RunRequest, passes: Any, examples: ProbeSet, config: AttributionConfig,
                  plan: Plan) -> RunRecord:
        s = self.settings
        budget_used = self.budget_for(request.step_run)
        budget = None if budget_used is None else {"fraction": budget_used.fraction, **plan.as_dict()}
        skipped = [SkippedExample(examples.indices[row], reason) for row, reason in passes.skipped]
        record = build_record(
            label=request.label, stage=request.stage, epoch=request.epoch, global_step=request.global_step,
            settings=s.record_settings(config, budget), probe=examples.select(passes.rows), result=passes.attributions,
            label_names=s.label_names, skipped=skipped,
        )
        record.run_id, record.step_run = self.run_id, request.step_run
        analysed = time.perf_counter()
        # Epoch runs compare with the previous epoch run; step runs with the run just before.
        previous = self.previous if request.step_run else self.previous_epoch
        record.metrics = analyse(record, previous, self.reference,
                                 AnalysisSettings(s.top_k, s.shortcut, frozenset(s.shortcut_ignore)),
                                 passes.faithfulness, self.evidence.artifacts)
        record.timings = {**passes.seconds, "analysis": time.perf_counter() - analysed}
        return record

    def _causal_settings(self, config: AttributionConfig, max_length: int) -> Optional[CausalSettings]:
        s = self.settings
        if s.confirm_examples == 0 or s.task != "classification":
            return None  # off, or a task whose inputs are not one text to edit (documented)
        return CausalSettings(config, s.task, s.seed, max_length, s.label_names)

    def _observe_cost(self, record: RunRecord, attributions: Any, examples: int, step_run: bool) -> None:
        budget = self.budget_for(step_run)
        if budget is None:
            return
        ig = attributions.methods.get("integrated_gradients")
        budget.observe(
            seconds=record.seconds, ig_seconds=attributions.timings.get("integrated_gradients", 0.0),
            examples=examples, mean_steps=float(ig.steps.float().mean()) if ig is not None else 0.0,
        )

    def attempt(self, request: RunRequest, sources: RunSources) -> Optional[RunRecord]:
        """:meth:`run`, guarded: with ``on_error='warn'`` a failed run never costs the training run.
        It is written as a record with ``status="failed"`` (``"diverged"`` when the model's outputs
        are NaN or infinite on every probe example) and its cause (rank zero), logged as
        ``saliency/status`` 0, and warned about at every run (the traceback once per cause)."""
        self.evidence.confirmed = []
        try:
            return self.run(request, sources)
        except Exception as error:
            # A diverged model is the training's state, not a fault of the monitor: recorded, never raised.
            if self.settings.on_error == "raise" and not isinstance(error, ModelDiverged):
                raise
            cause = f"{type(error).__name__}: {error}"
            status = "diverged" if isinstance(error, ModelDiverged) else "failed"
            message = (f"SaliencyMonitor: run {request.label!r} failed and was skipped; training continues. "
                       f"Cause: {cause}")
            if status == "diverged":
                message = f"SaliencyMonitor: run {request.label!r}: {error} No attributions are recorded for it."
            elif cause not in self._reported_errors:
                self._reported_errors.add(cause)
                where = "".join(traceback.format_exception(type(error), error, error.__traceback__, limit=-3))
                message += f"\n{where}Set on_error='raise' to stop on such errors."
            sources.warn(message)
            if request.rank == 0:
                self._record_failure(request, cause, status, sources.directory, sources.publisher, sources.warn)
            return None

    def _record_failure(self, request: RunRequest, cause: str, status: str, directory: Path,
                        publisher: Callable[[], Publisher], warn: Callable[[str], None]) -> None:
        record = RunRecord(label=request.label, stage=request.stage, epoch=request.epoch,
                           global_step=request.global_step, settings=self.settings.record_settings(
                               self.settings.attribution, None),
                           methods=[], examples=[], status=status, error=cause, run_id=self.run_id)
        try:
            data = publisher().publish_failure(record, directory)
        except Exception as error:  # not even the failure could be written: say so, and train on
            warn(f"SaliencyMonitor: the failed run {request.label!r} could not be recorded either: {error}")
            data = record.to_json()
        self._remember(data)

    def _remember(self, data: dict[str, Any]) -> None:
        # The JSON the publisher made for the file: converting the record again would cost the
        # training thread another ~20 ms per run (MiniLM, 8 examples).
        self.history.append(data)
        del self.history[: -self.settings.history_size]  # bounded: every record is also on disk

    # ---------------------------------------------------------------------------------- resuming
    def state_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "probe_indices": self.probe_indices,
            "reference": None if self.reference is None else self.reference.to_json(),
            "previous": None if self.previous is None else self.previous.to_json(),
            "previous_epoch": None if self.previous_epoch is None else self.previous_epoch.to_json(),
            "completed": sorted(self.completed),
            "budget_costs": None if self.budget is None else [self.budget.seconds_per_step,
                                                              self.budget.seconds_per_example],
            "timeline": self.evidence.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.probe_indices = state.get("probe_indices")
        self.run_id = state.get("run_id") or self.run_id
        self.reference = RunRecord.from_json(state["reference"]) if state.get("reference") else None
        self.previous = RunRecord.from_json(state["previous"]) if state.get("previous") else None
        self.previous_epoch = (RunRecord.from_json(state["previous_epoch"]) if state.get("previous_epoch")
                               else self.previous)
        self.completed = set(state.get("completed", []))
        self.evidence.load_state_dict(state.get("timeline", []))
        self.history.clear()
        if self.previous is not None:
            self.history.append(self.previous.to_json())
        costs = state.get("budget_costs")
        if self.budget is not None and costs is not None:  # plan the first run after resuming from the last one
            self.budget.seconds_per_step, self.budget.seconds_per_example = costs


def causal_scalars(checks: list) -> dict[str, float]:
    """Flip rates per checked suspect, and how many the run confirmed."""
    scalars = {"saliency/causal/confirmed": float(sum(c.confirmed for c in checks))} if checks else {}
    for check in checks:
        for kind in KINDS:
            test = getattr(check, kind)
            if test.rate is not None:
                scalars[f"saliency/causal/{scalar_name(check.token)}/{kind}_flip_rate"] = test.rate
    return scalars
