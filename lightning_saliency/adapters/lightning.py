"""SaliencyMonitor: the Lightning adapter over :class:`~lightning_saliency.monitor.engine.MonitorEngine`.

This module holds the hooks, the schedule, the error guard and ``state_dict``; the model work,
the analysis and the publishing live in the framework-free engine.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Mapping, Optional

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_info
from lightning.pytorch.utilities.model_helpers import is_overridden

from lightning_saliency.adapters.common import MonitorAdapter
from lightning_saliency.attribution.lockstep import Lockstep
from lightning_saliency.monitor.distributed import parameters_sharded, world
from lightning_saliency.monitor.messages import RunOutputs, RunRequest
from lightning_saliency.monitor.notices import warn
from lightning_saliency.monitor.loggers import logger_sinks
from lightning_saliency.monitor.sinks import LoggerSink, TensorBoardSink

NO_TENSORBOARD = (
    "SaliencyMonitor: no TensorBoardLogger, WandbLogger or MLFlowLogger is attached, so heatmap images and tables "
    "are not logged (scalars still go to every logger, full results to saliency/*.json). Add "
    "lightning.pytorch.loggers.TensorBoardLogger to Trainer(logger=[...]) to see them."
)


class SaliencyMonitor(MonitorAdapter, Callback):
    r"""Run Integrated Gradients and gradient saliency on a fixed probe set of validation examples
    each validation epoch and log token heatmaps, top-token tables, drift scalars and shortcut alerts.

    Attribution runs on the live model in eval mode with frozen parameters under
    ``torch.autograd.grad`` (never ``.backward()``); every module's mode, every ``requires_grad``,
    ``.grad`` and the RNG state are restored, so training is bitwise unaffected.

    Args:
        tokenizer: a Hugging Face tokenizer, or the path of a saved one (for YAML configs).
        methods: attribution methods from the registry (``lightning_saliency.METHODS``, or any
            registered with ``lightning_saliency.attribution.register``).
        num_examples: probe-set size, sampled once (seeded, stratified by label).
        every_n_epochs: attribute every n-th validation epoch during fit.
        budget: the time allowed per run as a fraction of the epoch's wall time (e.g. ``0.1``); see
            :class:`~lightning_saliency.monitor.budget.ComputeBudget`. ``None``: run exactly as configured.
        task: a registered task (:mod:`lightning_saliency.tasks`): ``"classification"``,
            ``"multiple_choice"``, ``"causal_lm"``, or one of your own.
        target: ``"predicted"``, ``"label"`` or a class index.
        on_error: ``"warn"`` (report, keep training) or ``"raise"``.
        attribution: :class:`~lightning_saliency.AttributionConfig`: IG steps (``n_steps``, default
            32), ``tolerance`` (adaptive IG), ``baseline``, each method's options, and ``max_tokens``
            (padded tokens per chunk of every model pass; default: the largest training batch seen so
            far, so the monitor's peak memory stays at or below a training step's).
        shortcut: :class:`~lightning_saliency.ShortcutRules`: when a token is a suspect, and
            ``ignore``: words you judged genuine cues.
        evidence: :class:`~lightning_saliency.EvidenceSettings`: causal checks
            (``confirm_examples``), the training-set artifact table, faithfulness,
            ``stop_on_shortcut`` and the ``on_shortcut`` hook.
        schedule: :class:`~lightning_saliency.RunSchedule`: the ``start`` run and the step runs
            (``every_n_train_steps``, ``step_schedule``, ``step_methods``).
        output: :class:`~lightning_saliency.OutputSettings`: ``dirpath`` (default: the logger's
            ``log_dir``; with W&B or MLflow first, ``<default_root_dir>/saliency_logs/<run id>``),
            ``top_k``, ``color_scale``, ``history_size``, ``example_images``, ``label_names``.
        probe: :class:`~lightning_saliency.ProbeSettings`: given ``texts``/``labels`` instead of
            sampling, the sampling ``seed``, ``label_key`` and ``input_keys`` (tuple batches).
        model_io: :class:`~lightning_saliency.ModelIO`: ``forward_fn`` for modules that are not
            Hugging Face models, and the ``embedding_layer`` path.

    Under DDP every rank runs its share of the probe set (balanced by tokens) for every model pass,
    and rank zero gathers the shards for metrics, images and files; only rank zero writes.

    Raises:
        ValueError: at construction for an unknown method, task, option or threshold; at ``setup`` for
            validation batches it cannot read (naming ``input_keys=`` for tuples), no
            tokenizer, no embedding layer, a vocabulary larger than the embedding table, no
            validation data, no way to call the model, or a strategy whose sharding it cannot follow
            (tensor parallelism, FSDP1, DeepSpeed; FSDP2 through ``ModelParallelStrategy`` works).

    Example::

        from lightning import Trainer
        from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
        from lightning_saliency import RunSchedule, SaliencyMonitor

        monitor = SaliencyMonitor(tokenizer=tokenizer, num_examples=16,
                                  schedule=RunSchedule(every_n_train_steps=50))
        trainer = Trainer(callbacks=[monitor], logger=TensorBoardLogger("runs"))
        trainer.fit(model, datamodule)
    """

    # Per-fit measurements (class defaults: the constructor is MonitorAdapter's, so that
    # LightningCLI reads one plain signature).
    _train_tokens: int = 0  # the largest training batch so far, in padded tokens
    _epoch_started: Optional[float] = None
    _last_run_ended: Optional[float] = None  # the training time a step run's budget is measured against
    _sinks: Optional[tuple[Any, ...]] = None

    @property
    def state_key(self) -> str:
        return self._generate_state_key(methods=self.methods, num_examples=self.num_examples,
                                        seed=self.settings.probe.seed)

    # ------------------------------------------------------------------------------------ setup
    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        lockstep = Lockstep() if parameters_sharded(trainer.strategy) else None
        self._connect(pl_module, trainer.precision_plugin.forward_context, trainer.global_rank, lockstep)
        given_texts = self.settings.probe.texts is not None
        if not given_texts and stage in ("fit", "validate") and not _has_validation_data(trainer, pl_module, stage):
            raise ValueError(
                "SaliencyMonitor found no validation data: define val_dataloader() (or pass val_dataloaders=) "
                "or give the probe texts with SaliencyMonitor(probe=ProbeSettings(texts=[...]))."
            )
        if not given_texts and stage in ("fit", "validate") and _from_public_hook(trainer, pl_module):
            # The batch format, the labels and the probe's size are checked here, before any
            # training time is spent (a ValueError names the fix, e.g. input_keys= for tuples).
            self.engine.sample(_validation_loader(trainer), trainer.global_rank)

    # ------------------------------------------------------------------------------------ hooks
    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.is_global_zero:  # no collective inside: only rank zero analyses
            loader = _first(trainer.train_dataloader)
            self.engine.observe_training_set(getattr(loader, "dataset", None), getattr(loader, "collate_fn", None))
        # Decided from state every rank holds alike (a checkpoint restores it on all ranks).
        if self.settings.schedule.start_run and self.engine.should_run("start"):
            self._run(trainer, "start", "fit", epoch=None)
        self._last_run_ended = time.perf_counter()

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._epoch_started = time.perf_counter()

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int) -> None:
        ids = batch.get("input_ids") if isinstance(batch, Mapping) else None
        if isinstance(ids, torch.Tensor):
            self._train_tokens = max(self._train_tokens, ids.numel())

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if (batch_idx + 1) % trainer.accumulate_grad_batches and batch_idx + 1 != trainer.num_training_batches:
            return  # inside a gradient accumulation: a step run belongs after the optimizer step
        label = self.engine.due_step_run(trainer.global_step)
        if label is not None:
            self._run(trainer, label, "fit", trainer.current_epoch, step_run=True)

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        epoch = trainer.current_epoch
        if trainer.state.fn != "fit":
            self._run(trainer, f"validate_{epoch:03d}", "validate", epoch)
        elif (epoch + 1) % self.settings.every_n_epochs == 0 and self.engine.should_run(f"{epoch:03d}"):
            self._run(trainer, f"{epoch:03d}", "fit", epoch)

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.flush()

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        self.flush()  # the runs before the failure are all on disk when the exception reaches the user

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self.flush()

    # -------------------------------------------------------------------------------- internals
    def _run(self, trainer: L.Trainer, label: str, stage: str, epoch: Optional[int], step_run: bool = False) -> None:
        started = time.perf_counter()
        directory = records_directory(trainer, self.settings.output.dirpath, self.run_id)
        rank, world_size = world(trainer)
        since = self._last_run_ended if step_run else self._epoch_started
        epoch_seconds = None if since is None or label == "start" else started - since
        loader = _validation_loader(trainer) if self.settings.probe.texts is None else None
        bar = trainer.progress_bar_callback
        request = RunRequest(label, stage, epoch, trainer.global_step, self._train_tokens,
                             getattr(loader, "batch_size", None), epoch_seconds, rank, world_size, step_run,
                             validation=loader, show_progress=bar is not None and getattr(bar, "is_enabled", False))
        outcome = self.engine.attempt(request, self._outputs(trainer, directory) if rank == 0 else None)
        if outcome.record is not None and not step_run:
            rank_zero_info(f"SaliencyMonitor: run {label} ({', '.join(outcome.record.methods)}) on "
                           f"{len(outcome.record.examples)} examples took {outcome.record.seconds:.2f} s.")
        if outcome.should_stop:  # the same on every rank: the checks are gathered by all of them
            trainer.should_stop = True
            warn(f"SaliencyMonitor: stopping training (stop_on_shortcut=True): run {label} confirmed "
                 f"the shortcut(s) {list(outcome.confirmed)} causally. See saliency/shortcut_alert.", rank)
        self._last_run_ended = time.perf_counter()

    def _outputs(self, trainer: L.Trainer, directory: Path) -> RunOutputs:
        if self._sinks is None:  # once: the loggers' experiments are created on first use
            found: list[Any] = [LoggerSink(logger) for logger in trainer.loggers]
            found += [TensorBoardSink(logger.experiment) for logger in trainer.loggers
                      if isinstance(logger, TensorBoardLogger) and hasattr(logger.experiment, "add_image")]
            self._sinks = tuple(found + [sink for logger in trainer.loggers for sink in logger_sinks(logger)])
        return RunOutputs(directory, self._sinks, NO_TENSORBOARD)


def records_directory(trainer: L.Trainer, dirpath: Optional[str], run_id: str) -> Path:
    """Where a fit's ``saliency/epoch_*.json`` go: ``dirpath``; else the first logger's versioned
    ``log_dir`` (TensorBoard, CSV); else, for loggers that keep their runs in their own store (W&B,
    MLflow, whose ``save_dir`` every fit shares) and for fits without a logger, a folder of this
    fit's own, ``<default_root_dir>/saliency_logs/<run id>``, so that the next fit does not
    overwrite it (the report reads them all from ``<default_root_dir>/saliency_logs``)."""
    log_dir = trainer.log_dir  # a collective under DDP: read on every rank, outside rank zero's work
    if dirpath is not None:
        return Path(dirpath)
    if not trainer.loggers or not isinstance(trainer.loggers[0], (TensorBoardLogger, CSVLogger)):
        return Path(trainer.default_root_dir) / "saliency_logs" / run_id
    return Path(log_dir or trainer.default_root_dir)


def _first(loaders: Any) -> Any:
    if isinstance(loaders, dict):
        return next(iter(loaders.values()), None)
    return loaders[0] if isinstance(loaders, (list, tuple)) and loaders else loaders


def _validation_loader(trainer: L.Trainer, load: bool = True) -> Any:
    """The validation loader: the trainer's once Lightning has loaded it; before that (no sanity
    check), a fresh one from the datamodule's or the module's public ``val_dataloader()`` hook."""
    loader = _first(getattr(trainer, "val_dataloaders", None))
    if loader is not None or not load:
        return loader
    sources = _hooked_sources(trainer, trainer.lightning_module)
    if sources:
        return _first(sources[0].val_dataloader())
    # Loaders passed as fit(val_dataloaders=...) have no public route before the first validation.
    trainer.fit_loop.epoch_loop.val_loop.setup_data()
    return _first(trainer.val_dataloaders)


def _hooked_sources(trainer: L.Trainer, pl_module: L.LightningModule) -> list[Any]:
    """The datamodule and the module, in that order, where they define a ``val_dataloader()`` hook."""
    return [s for s in (trainer.datamodule, pl_module) if s is not None and is_overridden("val_dataloader", s)]


def _from_public_hook(trainer: L.Trainer, pl_module: L.LightningModule) -> bool:
    return bool(_hooked_sources(trainer, pl_module))


def _has_validation_data(trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> bool:
    if stage == "fit" and trainer.limit_val_batches == 0:
        return False
    if _from_public_hook(trainer, pl_module):
        return True
    # Loaders passed to fit()/validate() directly: Lightning exposes them only after loading them.
    loop = trainer.fit_loop.epoch_loop.val_loop if stage == "fit" else trainer.validate_loop
    return loop._data_source.is_defined()
