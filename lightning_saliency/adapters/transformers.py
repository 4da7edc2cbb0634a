"""SaliencyTrainerCallback: the Hugging Face ``transformers.Trainer`` adapter over the same engine as
:class:`~lightning_saliency.SaliencyMonitor` (one runner, one analysis, one publisher).

A ``start`` run at ``on_train_begin`` and one run at every ``on_evaluate``; the probe set is sampled
once from the Trainer's evaluation dataset through its own data collator; images and tables go to
the writer of the Trainer's ``TensorBoardCallback`` when it has one, and ``saliency/epoch_*.json``
next to its event files, so ``lightning-saliency report`` and the TensorBoard tab work unchanged.
"""
from __future__ import annotations

import math
import os
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Optional

from transformers import TrainerCallback
from transformers.integrations import TensorBoardCallback

from lightning_saliency.adapters.common import MonitorAdapter
from lightning_saliency.monitor.distributed import refuse_trainer_sharding
from lightning_saliency.monitor.messages import RunOutputs, RunRequest
from lightning_saliency.monitor.notices import warn
from lightning_saliency.monitor.sinks import TensorBoardSink

NOT_ATTACHED = (
    "SaliencyTrainerCallback needs the Trainer's evaluation data for its probe set: create it with "
    "SaliencyTrainerCallback(...).attach(trainer) instead of Trainer(callbacks=[...]), or give the texts with "
    "probe=ProbeSettings(texts=[...])."
)


class SaliencyTrainerCallback(MonitorAdapter, TrainerCallback):
    r"""Attribution heatmaps, drift and shortcut alerts for ``transformers.Trainer`` runs.

    Takes the same arguments as :class:`~lightning_saliency.SaliencyMonitor` (``every_n_epochs``
    counts evaluations here, ``forward_fn`` receives the Hugging Face model). Attribution runs on
    the live model in eval mode with frozen parameters, inside the Trainer's accelerator autocast,
    and every module's mode, ``requires_grad`` and the RNG state are restored afterwards.

    Where things go: with a ``TensorBoardCallback`` in the Trainer (``report_to="tensorboard"``), its
    ``SummaryWriter`` gets the images and scalars and ``saliency/epoch_*.json`` go to its logging
    directory; otherwise a writer of our own writes to ``<output_dir>/runs/saliency`` (or ``output.dirpath``).
    A run at step ``s`` is labelled ``NNN`` (the epoch, 0-based) when it ends an epoch, else ``step_s``.
    Step runs (``schedule.every_n_train_steps``) run at ``on_step_end``; ``stop_on_shortcut`` sets
    ``control.should_training_stop``. The artifact table reads ``trainer.train_dataset`` by index
    through the Trainer's data collator (model-input and label columns only).

    Raises:
        ValueError: at construction for an unknown method or option; at :meth:`attach` for no
            tokenizer, no embedding layer, a vocabulary larger than the embedding table or no
            evaluation dataset.

    Example::

        from transformers import Trainer, TrainingArguments
        from lightning_saliency.adapters.transformers import SaliencyTrainerCallback

        trainer = Trainer(model=model, args=TrainingArguments("out", eval_strategy="epoch", report_to="tensorboard"),
                          train_dataset=train, eval_dataset=val, data_collator=collator)
        SaliencyTrainerCallback(tokenizer=tokenizer, num_examples=8).attach(trainer)
        trainer.train()
    """

    _trainer: Any = None  # the Trainer whose evaluation loader the probe is sampled from
    _sinks: Optional[tuple[Any, ...]] = None
    _tensorboard: Optional[TensorBoardCallback] = None
    _own_writer: Any = None
    _evaluations: int = 0
    _train_data: Optional[tuple[Any, Any]] = None

    MODEL_COLUMNS = ("input_ids", "attention_mask", "token_type_ids", "labels", "label")

    def attach(self, trainer: Any) -> "SaliencyTrainerCallback":
        """Check the model and tokenizer, remember where the Trainer's evaluation data and
        TensorBoard writer are, and add this callback to ``trainer``. Returns ``self``."""
        model = trainer.model
        accelerator = getattr(trainer, "accelerator", None)
        self._connect(model, accelerator.autocast if accelerator is not None else nullcontext,
                      trainer.args.process_index)
        if self.settings.probe.texts is None:
            if trainer.eval_dataset is None:
                raise ValueError("SaliencyTrainerCallback needs Trainer(eval_dataset=...) or "
                                 "probe=ProbeSettings(texts=[...]) to probe.")
            self._trainer = trainer
        self._train_data = (trainer.train_dataset, trainer.data_collator)
        self._tensorboard = next((c for c in trainer.callback_handler.callbacks if isinstance(c, TensorBoardCallback)),
                                 None)
        trainer.add_callback(self)
        return self

    # -------------------------------------------------------------------------------------- hooks
    def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        if model is not None:
            refuse_trainer_sharding(model)  # accelerate wraps the model after attach(): checked here
        if not self._connected:
            if self.settings.probe.texts is None:
                raise ValueError(NOT_ATTACHED)
            self._connect(model, nullcontext, args.process_index)
        if self._train_data is not None and self._train_data[0] is not None and args.process_index == 0:
            self.engine.observe_training_set(*self._train_data, columns=self.MODEL_COLUMNS)
        if self.settings.schedule.start_run and self.engine.should_run("start"):
            self._run(args, state, control, "start", None)

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        label = self.engine.due_step_run(state.global_step)
        if label is not None:
            self._run(args, state, control, label, None, step_run=True)

    def on_evaluate(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._evaluations += 1
        if self._evaluations % self.settings.every_n_epochs:
            return
        at_epoch_end = state.epoch is not None and math.isclose(state.epoch, round(state.epoch)) and state.epoch >= 1
        epoch = round(state.epoch) - 1 if at_epoch_end else None
        label = f"{epoch:03d}" if at_epoch_end else f"step_{state.global_step:06d}"
        if self.engine.should_run(label):
            self._run(args, state, control, label, epoch)

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.flush()  # runs publish on a background worker: everything is written before the writer closes
        if self._own_writer is not None:
            self._own_writer.close()
            self._own_writer = None

    # ---------------------------------------------------------------------------------- internals
    def _run(self, args: Any, state: Any, control: Any, label: str, epoch: Optional[int], step_run: bool = False) -> None:
        # The Trainer shows callbacks no batch: the token budget is one training batch of probe-width rows.
        loader = self._trainer.get_eval_dataloader() if self._trainer is not None and self.engine.needs_validation() else None
        request = RunRequest(label, "fit", epoch, state.global_step, 0, args.per_device_train_batch_size, None,
                             args.process_index, args.world_size, step_run, validation=loader,
                             show_progress=not args.disable_tqdm)
        directory = self._directory(args)
        outcome = self.engine.attempt(request, self._outputs(directory) if args.process_index == 0 else None)
        # Every process holds the same gathered checks, so they all agree to stop.
        if outcome.should_stop:
            control.should_training_stop = True
            warn(f"SaliencyTrainerCallback: stopping training (stop_on_shortcut=True): run {label} confirmed the "
                 f"shortcut(s) {list(outcome.confirmed)} causally.", args.process_index)
        if control.should_training_stop or (state.max_steps and state.global_step >= state.max_steps):
            # The last run of the training: the TensorBoardCallback (before us in the callback list)
            # closes the shared writer at on_train_end, so everything must be written now.
            self.flush()

    def _directory(self, args: Any) -> Path:
        if self.settings.output.dirpath is not None:
            return Path(self.settings.output.dirpath)
        logging_dir = getattr(self._tensorboard, "logging_dir", None)
        return Path(logging_dir) if logging_dir else Path(args.output_dir) / "runs" / "saliency"

    def _outputs(self, directory: Path) -> RunOutputs:
        if self._sinks is None:  # once: our own writer, if any, is made at the first run
            writer = getattr(self._tensorboard, "tb_writer", None)
            if writer is None:  # no TensorBoardCallback, or report_to without tensorboard
                from torch.utils.tensorboard import SummaryWriter

                self._own_writer = writer = SummaryWriter(log_dir=os.fspath(directory))
            self._sinks = (TensorBoardSink(writer, with_scalars=True),)
        return RunOutputs(directory, self._sinks)
