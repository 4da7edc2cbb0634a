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
from typing import Any, Callable, Optional, Sequence

from lightning_saliency.attribution import AttributionConfig
from lightning_saliency.attribution.context import DEFAULT_MAX_TOKENS
from lightning_saliency.monitor.analysis import REFERENCE_LABEL, AnalysisSettings, analyse
from lightning_saliency.monitor.budget import ComputeBudget, Plan
from lightning_saliency.monitor.distributed import Ranks
from lightning_saliency.monitor.evidence.artifacts import training_artifacts, with_class_indices
from lightning_saliency.monitor.evidence.causal import (
    AnswerClasses, CausalSettings, answer_probabilities, causal_scalars,
)
from lightning_saliency.monitor.evidence.tracker import EvidenceTracker
from lightning_saliency.monitor.model_access import ModelAccess
from lightning_saliency.monitor.notices import warn
from lightning_saliency.monitor.probe import ProbeSet
from lightning_saliency.monitor.publishing import Publisher
from lightning_saliency.monitor.recording import build_record
from lightning_saliency.schema.records import RunRecord, SkippedExample
from lightning_saliency.monitor.runner import (
    ModelDiverged, PassSettings, no_progress, predicted_tags, row_progress, run_model_passes,
)
from lightning_saliency.monitor.sampling import sample_confirmation, sample_probe, warn_small_probe
from lightning_saliency.monitor.messages import RunOutcome, RunOutputs, RunRequest
from lightning_saliency.monitor.task_probes import TAG_LABELS, NoEntities, entity_rows
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


def class_names(settings: MonitorSettings, tokenizer: Any, configured: Optional[Sequence[str]]) -> Optional[Sequence[str]]:
    """The records' class names: ``output.label_names``, else the task's (a causal LM's decoded
    vocabulary), else the model config's ``id2label``."""
    if settings.output.label_names is not None:
        return settings.output.label_names
    return get_task(settings.task).class_names(tokenizer, configured)


def _budget(settings: MonitorSettings, examples: int, steps: int, carry: bool = False) -> Optional[ComputeBudget]:
    if settings.budget is None:
        return None
    return ComputeBudget(settings.budget, examples, steps, min_examples=2,
                         min_steps=settings.attribution.min_steps if settings.adaptive else min(9, steps), carry=carry)


class MonitorEngine:
    """Runs and remembers the monitor's attribution runs.

    Args:
        settings: the validated settings (never changed here).
        run_id: one training, one id (it travels with the checkpoint, so the records of a resumed
            fit in a new log directory are joined with the earlier ones by the report).
    """

    def __init__(self, settings: MonitorSettings, run_id: str) -> None:
        self.settings = settings
        self.run_id = run_id
        self.budget = _budget(settings, settings.num_examples, settings.steps)
        # Step runs cost no IG steps: their own budget plans only how many examples fit, and they
        # share one account, so that together they stay within the fraction of training time.
        self.step_budget = _budget(settings, settings.num_examples, settings.steps, carry=True)
        self.evidence = EvidenceTracker()
        self.history: list[dict[str, Any]] = []
        self.completed: set[str] = set()
        self.probe_indices: Optional[list[int]] = None
        self.reference: Optional[RunRecord] = None
        self.previous: Optional[RunRecord] = None
        self.previous_epoch: Optional[RunRecord] = None
        self.access: Optional[ModelAccess] = None
        self.max_length = 512
        self.label_names: Optional[Sequence[str]] = settings.output.label_names
        self.probe: Optional[ProbeSet] = None
        self.confirmation: Optional[ProbeSet] = None
        self.publisher: Optional[Publisher] = None
        self._reported_errors: set[str] = set()

    # ------------------------------------------------------------------------------------ setup
    def connect(self, access: ModelAccess, max_length: int, configured_names: Optional[Sequence[str]],
                rank: int = 0) -> None:
        """Fix how the live model is called (at the adapter's setup)."""
        self.access, self.max_length = access, max_length
        self.label_names = class_names(self.settings, access.tokenizer, configured_names)
        if rank == 0:
            warn_small_probe(self.settings)

    def sample(self, validation: Any, rank: int = 0) -> ProbeSet:
        """The fixed probe set, sampled on first use (the stored indices after a resume). Adapters
        call it at setup to fail early on batches it cannot read."""
        if self.probe is None:
            self.probe = sample_probe(self.settings, self.access, validation, self.max_length, self.probe_indices,
                                      speak=rank == 0, class_names=self.label_names)
            self.probe_indices = list(dict.fromkeys(self.probe.indices))
            self._index_artifacts()
        return self.probe

    def _confirmation_set(self, validation: Any, rank: int) -> ProbeSet:
        if self.confirmation is None:
            self.confirmation = sample_confirmation(self.settings, self.access, validation, self.sample(validation, rank),
                                                    self.max_length, speak=rank == 0)
        return self.confirmation

    def observe_training_set(self, dataset: Any, collate_fn: Optional[Callable[[list], Any]],
                             columns: Optional[Sequence[str]] = None) -> None:
        """The training set's artifact table (at fit start, on rank zero: no collective), when the
        task has one text and one class per example. ``columns``: the item keys the collate takes."""
        s, task = self.settings, get_task(self.settings.task)
        if s.evidence.artifact_examples and dataset is not None and task.text_label_evidence:
            self.evidence.artifacts = training_artifacts(dataset, collate_fn, self.access, s, columns)
        elif s.evidence.artifact_examples and dataset is not None and task.answer_classes:
            self.evidence.artifacts = training_artifacts(dataset, collate_fn, self.access, s, columns,
                                                         answers_aligned=task.targets_aligned)
        self._index_artifacts()

    def _index_artifacts(self) -> None:
        """Once the artifact table and the probe are both there (in either order): a table of
        answer texts (a label-like completion's) is read against the probe's answer classes, once,
        so that every run's analysis reads class indices as for any table."""
        if self.probe is not None:
            self.evidence.artifacts = with_class_indices(self.evidence.artifacts, self.probe.label_names)

    def needs_validation(self) -> bool:
        """Whether the next run may sample from the validation loader (the probe set or the causal
        checks' slice are not sampled yet), so an adapter builds a loader only then."""
        wants_checks = self.settings.evidence.confirm_examples > 0 and self.settings.probe.texts is None
        return self.probe is None or (wants_checks and self.confirmation is None)

    def should_run(self, label: str) -> bool:
        """Whether run ``label`` is still to be done (a resumed fit does not repeat runs); the
        same answer on every rank."""
        return label not in self.completed

    def recent_records(self) -> list[dict[str, Any]]:
        """The JSON records of the most recent runs (``output.history_size`` of them), oldest first."""
        return list(self.history)

    def flush(self) -> None:
        """Wait until every finished run's outputs are written (runs publish on a worker)."""
        if self.publisher is not None:
            self.publisher.flush()

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
            return s.schedule.step_methods
        if request.label == REFERENCE_LABEL:
            return s.methods + tuple(m for m in s.step_run_methods() if m not in s.methods)
        return s.methods

    def run_config(self, plan: Plan, token_budget: int) -> AttributionConfig:
        """The attribution options of one run: the token budget and, under a compute budget, the steps."""
        changes: dict[str, Any] = {}
        if self.settings.attribution.max_tokens is None:
            changes["max_tokens"] = max(int(token_budget), 1)
        if self.budget is not None:
            changes["max_steps" if self.settings.adaptive else "n_steps"] = plan.steps
        return replace(self.settings.attribution, **changes)

    # ---------------------------------------------------------------------------------- one run
    def run(self, request: RunRequest, outputs: Optional[RunOutputs]) -> Optional[RunRecord]:
        """Plan, attribute (sharded), analyse, check the suspects causally (sharded) and publish one
        run. Every rank makes the same collectives, whatever fails locally (:class:`Ranks`): one
        broadcast (the plan), one gather (a shard, nothing, or its error), one broadcast (the
        suspects), and the causal checks' two gathers when there are suspects."""
        started = time.perf_counter()
        ranks = Ranks(request.rank, request.world_size, in_step=self.access.lockstep is not None)
        plan = ranks.agree(self.plan(request.label, request.epoch_seconds, request.step_run))
        s = self.settings

        def prepared() -> tuple[ProbeSet, AttributionConfig]:
            examples = self.sample(request.validation, request.rank)
            kept = list(dict.fromkeys(examples.indices))[: plan.num_examples]
            if len(kept) < len(examples):  # a prefix of the fixed order: drift compares the same examples
                kept_set = set(kept)  # (all rows of each kept example: a span probe has one per span)
                examples = examples.select([r for r, index in enumerate(examples.indices) if index in kept_set])
            default_tokens = s.attribution.max_tokens or DEFAULT_MAX_TOKENS  # no batch seen, no loader
            config = self.run_config(plan, request.token_budget(examples, default_tokens))
            if TAG_LABELS in examples.inputs:  # a token classifier's rows: this run's entity spans
                examples = self._entity_rows(examples, config, request.label, request.rank)
            return examples, config

        examples, config = ranks.attempt(prepared) or (None, s.attribution)
        progress = row_progress if request.show_progress and not request.step_run else no_progress
        passes = run_model_passes(
            self.access, examples, PassSettings(self.methods_for(request), config, s.target, s.task,
                                                s.evidence.faithfulness and not request.step_run
                                                and get_task(s.task).erasure_faithfulness, s.attribution.seed),
            ranks, progress, f"Saliency [{request.label}]", self.max_length,
        )
        self.completed.add(request.label)
        answered = None
        if examples is not None and examples.answers is not None:  # every rank: the answers' passes are sharded
            answered = answer_probabilities(self.access, examples, config, s.task, self._answer_classes(examples), ranks)
        record = (ranks.attempt(self._analysed, request, passes, examples, config, plan, answered)
                  if passes is not None else None)
        checked = time.perf_counter()
        confirmation = None
        if s.evidence.confirm_examples and self._text_label_evidence():
            confirmation = lambda: self._confirmation_set(request.validation, request.rank)  # noqa: E731
            if request.step_run:
                confirmation = _first_examples(confirmation, STEP_RUN_CONFIRM_EXAMPLES)
        checks, causal_error = self.evidence.run(
            record, self.access, confirmation, examples, self._causal_settings(config), request.label,
            request.global_step, ranks, lambda rows: None, recheck_confirmed=not request.step_run)
        if record is None:  # not rank zero
            return None
        if causal_error is not None:
            warn(f"SaliencyMonitor: the causal checks of run {request.label!r} failed ({causal_error}); its "
                 "attributions and suspects are recorded without them.")
        metrics = replace(record.metrics, causal=checks, causal_error=causal_error,
                          timeline=list(self.evidence.timeline.values()),
                          scalars={**record.metrics.scalars, **causal_scalars(checks)})
        causal_seconds = {"causal": time.perf_counter() - checked} if checks or causal_error else {}
        record = replace(record, metrics=metrics, timings={**record.timings, **causal_seconds})
        record, data = self._publisher(outputs).publish(record, outputs.directory, started, request.epoch_seconds)
        if request.label == REFERENCE_LABEL:
            self.reference = record
        if not request.step_run:
            self.previous_epoch = record
        self.previous = record
        self._remember(data)
        self._observe_cost(record, passes.attributions, len(examples), request.step_run)
        return record

    def _entity_rows(self, examples: ProbeSet, config: AttributionConfig, label: str, rank: int) -> ProbeSet:
        """The spans a token classifier's run attributes (``probe.entity_spans``). When the model
        predicts no entity at all (early in training), the labelled ones, said once per run."""
        if self.settings.probe.entity_spans == "labelled":
            return entity_rows(examples, self.label_names)
        predicted = predicted_tags(self.access, examples, config.max_tokens or DEFAULT_MAX_TOKENS, (TAG_LABELS,))
        try:
            return entity_rows(examples, self.label_names, predicted)
        except NoEntities:
            if rank == 0:
                warn(f"SaliencyMonitor: at run {label!r} the model predicts no entity in the probe examples; their "
                     "labelled entities are attributed instead.")
            return entity_rows(examples, self.label_names)

    def _publisher(self, outputs: Optional[RunOutputs]) -> Publisher:
        if outputs is None:
            raise ValueError("rank zero's run needs RunOutputs (the directory and the sinks).")
        if self.publisher is None:  # made on rank zero only, at its first run
            o = self.settings.output
            self.publisher = Publisher(outputs.sinks, warn, o.top_k, o.example_images, self.settings.evidence.on_shortcut,
                                       outputs.no_images_hint, o.color_scale)
        return self.publisher

    def _analysed(self, request: RunRequest, passes: Any, examples: ProbeSet, config: AttributionConfig,
                  plan: Plan, answered: Optional[Any] = None) -> RunRecord:
        s = self.settings
        budget_used = self.budget_for(request.step_run)
        budget = None if budget_used is None else {"fraction": budget_used.fraction, **plan.as_dict()}
        skipped = [SkippedExample(examples.indices[row], reason) for row, reason in passes.skipped]
        record = build_record(
            label=request.label, stage=request.stage, epoch=request.epoch, global_step=request.global_step,
            settings=s.record_settings(config, budget), probe=examples.select(passes.rows), result=passes.attributions,
            label_names=self.label_names, skipped=skipped, run_id=self.run_id, step_run=request.step_run,
            answer_probabilities=None if answered is None else answered[passes.rows],
        )
        analysed = time.perf_counter()
        # Epoch runs compare with the previous epoch run; step runs with the run just before.
        previous = self.previous if request.step_run else self.previous_epoch
        metrics = analyse(record, previous, self.reference, AnalysisSettings(s.output.top_k, s.shortcut),
                          passes.faithfulness, self.evidence.artifacts)
        return replace(record, metrics=metrics, timings={**passes.seconds, "analysis": time.perf_counter() - analysed})

    def _text_label_evidence(self) -> bool:
        """Whether the causal checks apply: one text and one class per example, or a completion's
        or target's few answers as classes (the model's answer is the likeliest of them)."""
        return get_task(self.settings.task).text_label_evidence or (self.probe is not None
                                                                   and self.probe.answers is not None)

    def _answer_classes(self, probe: ProbeSet) -> AnswerClasses:
        return AnswerClasses(tuple(probe.answers), get_task(self.settings.task).targets_aligned)

    def _causal_settings(self, config: AttributionConfig) -> CausalSettings:
        s, probe = self.settings, self.probe
        if probe is not None and probe.answers is not None:
            return CausalSettings(config, s.task, s.probe.seed, self.max_length, probe.label_names,
                                  self._answer_classes(probe), s.evidence.min_effect)
        return CausalSettings(config, s.task, s.probe.seed, self.max_length, self.label_names,
                              min_effect=s.evidence.min_effect)

    def _observe_cost(self, record: RunRecord, attributions: Any, examples: int, step_run: bool) -> None:
        budget = self.budget_for(step_run)
        if budget is None:
            return
        ig = attributions.methods.get("integrated_gradients")
        budget.observe(
            seconds=record.seconds, ig_seconds=attributions.timings.get("integrated_gradients", 0.0),
            examples=examples, mean_steps=float(ig.steps.float().mean()) if ig is not None else 0.0,
        )

    def attempt(self, request: RunRequest, outputs: Optional[RunOutputs] = None) -> RunOutcome:
        """:meth:`run`, guarded: with ``on_error='warn'`` a failed run never costs the training run.
        It is written as a record with ``status="failed"`` (``"diverged"`` when the model's outputs
        are NaN or infinite on every probe example) and its cause (rank zero), logged as
        ``saliency/status`` 0, and warned about at every run (the traceback once per cause).
        ``outputs``: rank zero's (``None`` on the other ranks)."""
        self.evidence.confirmed = []
        try:
            record = self.run(request, outputs)
        except Exception as error:
            # A diverged model is the training's state, not a fault of the monitor: recorded, never raised.
            if self.settings.on_error == "raise" and not isinstance(error, ModelDiverged):
                raise
            self._report_failure(request, outputs, error)
            return RunOutcome()
        confirmed = tuple(self.evidence.confirmed)
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
                           methods=[], examples=[], status=status, error=cause, run_id=self.run_id)
        try:
            data = self._publisher(outputs).publish_failure(record, outputs.directory)[1]
        except Exception as failure:  # not even the failure could be written: say so, and train on
            warn(f"SaliencyMonitor: the failed run {request.label!r} could not be recorded either: {failure}")
            data = record.to_json()
        self._remember(data)

    def _remember(self, data: dict[str, Any]) -> None:
        # The JSON the publisher made for the file: converting the record again would cost the
        # training thread another ~20 ms per run (MiniLM, 8 examples).
        self.history.append(data)
        del self.history[: -self.settings.output.history_size]  # bounded: every record is also on disk

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
        self.probe = self.confirmation = None  # sampled again from the stored indices
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

