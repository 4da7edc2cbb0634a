"""SaliencyCallback: the Hugging Face ``transformers.Trainer`` adapter over the same engine as
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
from typing import Any, Callable, Mapping, Optional

from transformers import TrainerCallback
from transformers.integrations import TensorBoardCallback

from lightning_saliency.adapters.common import MonitorAdapter
from lightning_saliency.monitor.engine import RunRequest
from lightning_saliency.monitor.evidence.timeline import step_run_due
from lightning_saliency.monitor.publishing import Publisher
from lightning_saliency.monitor.sinks import TensorBoardSink
from lightning_saliency.monitor.runner import no_progress, row_progress

NOT_ATTACHED = (
    "SaliencyCallback needs the Trainer's evaluation data for its probe set: create it with "
    "SaliencyCallback(...).attach(trainer) instead of Trainer(callbacks=[...]), or pass examples=[...texts]."
)


def _warn(message: str) -> None:
    import warnings

    warnings.warn(message, UserWarning, stacklevel=3)


class SaliencyCallback(MonitorAdapter, TrainerCallback):
    r"""Attribution heatmaps, drift and shortcut alerts for ``transformers.Trainer`` runs.

    Takes the same arguments as :class:`~lightning_saliency.SaliencyMonitor` (``every_n_epochs``
    counts evaluations here, ``forward_fn`` receives the Hugging Face model). Attribution runs on
    the live model in eval mode with frozen parameters, inside the Trainer's accelerator autocast,
    and every module's mode, ``requires_grad`` and the RNG state are restored afterwards.

    Where things go: with a ``TensorBoardCallback`` in the Trainer (``report_to="tensorboard"``), its
    ``SummaryWriter`` gets the images and scalars and ``saliency/epoch_*.json`` go to its logging
    directory; otherwise a writer of our own writes to ``<output_dir>/runs/saliency`` (or ``dirpath``).
    A run at step ``s`` is labelled ``NNN`` (the epoch, 0-based) when it ends an epoch, else ``step_s``.
    Step runs (``every_n_train_steps``) run at ``on_step_end``; ``stop_on_shortcut`` sets
    ``control.should_training_stop``. The artifact table reads ``trainer.train_dataset`` by index
    through the Trainer's data collator (model-input and label columns only).

    Raises:
        ValueError: at construction for an unknown method or option; at :meth:`attach` for no
            tokenizer, no embedding layer, a vocabulary larger than the embedding table or no
            evaluation dataset.

    Example::

        from transformers import Trainer, TrainingArguments
        from lightning_saliency.adapters.transformers import SaliencyCallback

        trainer = Trainer(model=model, args=TrainingArguments("out", eval_strategy="epoch", report_to="tensorboard"),
                          train_dataset=train, eval_dataset=val, data_collator=collator)
        SaliencyCallback(tokenizer=tokenizer, num_examples=8).attach(trainer)
        trainer.train()
    """

    _eval_loader: Optional[Callable[[], Any]] = None
    _tensorboard: Optional[TensorBoardCallback] = None
    _own_writer: Any = None
    _evaluations: int = 0
    _train_data: Optional[tuple[Any, Any]] = None

    MODEL_COLUMNS = ("input_ids", "attention_mask", "token_type_ids", "labels", "label")

    def attach(self, trainer: Any) -> "SaliencyCallback":
        """Check the model and tokenizer, remember where the Trainer's evaluation data and
        TensorBoard writer are, and add this callback to ``trainer``. Returns ``self``."""
        model = trainer.model
        accelerator = getattr(trainer, "accelerator", None)
        self._connect(model, accelerator.autocast if accelerator is not None else nullcontext, _warn)
        if self.examples is None:
            if trainer.eval_dataset is None:
                raise ValueError("SaliencyCallback needs Trainer(eval_dataset=...) or examples=[...texts] to probe.")
            self._eval_loader = trainer.get_eval_dataloader
        if trainer.train_dataset is not None:
            collator = trainer.data_collator
            columns = self.MODEL_COLUMNS
            self._train_data = (trainer.train_dataset, lambda items: collator(
                [{k: v for k, v in item.items() if k in columns} if isinstance(item, Mapping) else item for item in items]))
        self._tensorboard = next((c for c in trainer.callback_handler.callbacks if isinstance(c, TensorBoardCallback)),
                                 None)
        trainer.add_callback(self)
        return self

    # -------------------------------------------------------------------------------------- hooks
    def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        if self._access is None:
            if self.examples is None:
                raise ValueError(NOT_ATTACHED)
            self._connect(model, nullcontext, _warn)
        if self._train_data is not None and args.process_index == 0:
            self._find_artifacts(*self._train_data)
        if self.settings.reference_pass and "start" not in self.engine.completed:
            self._run(args, state, control, "start", None)

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        s, label = self.settings, f"step_{state.global_step:06d}"
        if step_run_due(state.global_step, s.every_n_train_steps, s.step_schedule) and label not in self.engine.completed:
            self._run(args, state, control, label, None, step_run=True)

    def on_evaluate(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._evaluations += 1
        if self._evaluations % self.every_n_epochs:
            return
        at_epoch_end = state.epoch is not None and math.isclose(state.epoch, round(state.epoch)) and state.epoch >= 1
        epoch = round(state.epoch) - 1 if at_epoch_end else None
        label = f"{epoch:03d}" if at_epoch_end else f"step_{state.global_step:06d}"
        if label not in self.engine.completed:
            self._run(args, state, control, label, epoch)

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.flush()  # runs publish on a background worker: everything is written before the writer closes
        if self._own_writer is not None:
            self._own_writer.close()
            self._own_writer = None

    # ---------------------------------------------------------------------------------- internals
    def _run(self, args: Any, state: Any, control: Any, label: str, epoch: Optional[int], step_run: bool = False) -> None:
        # The Trainer shows callbacks no batch: the token budget is one training batch of probe-width rows.
        request = RunRequest(label, "fit", epoch, state.global_step, 0, args.per_device_train_batch_size, None,
                             args.process_index, args.world_size, step_run)
        directory = self._directory(args)
        progress = no_progress if args.disable_tqdm or step_run else row_progress
        self.engine.attempt(request, self._sources(self._eval_loader, directory, lambda: self._publisher_for(directory),
                                                   _warn, progress))
        # Every process holds the same gathered checks, so they all agree to stop.
        if self.settings.stop_on_shortcut and self.engine.evidence.confirmed:
            control.should_training_stop = True
            _warn(f"SaliencyCallback: stopping training (stop_on_shortcut=True): run {label} confirmed the "
                  f"shortcut(s) {self.engine.evidence.confirmed} causally.")
        if control.should_training_stop or (state.max_steps and state.global_step >= state.max_steps):
            # The last run of the training: the TensorBoardCallback (before us in the callback list)
            # closes the shared writer at on_train_end, so everything must be written now.
            self.flush()

    def _directory(self, args: Any) -> Path:
        if self.dirpath is not None:
            return Path(self.dirpath)
        logging_dir = getattr(self._tensorboard, "logging_dir", None)
        return Path(logging_dir) if logging_dir else Path(args.output_dir) / "runs" / "saliency"

    def _publisher_for(self, directory: Path) -> Publisher:
        def sinks() -> list[Any]:
            writer = getattr(self._tensorboard, "tb_writer", None)
            if writer is None:  # no TensorBoardCallback, or report_to without tensorboard
                from torch.utils.tensorboard import SummaryWriter

                self._own_writer = writer = SummaryWriter(log_dir=os.fspath(directory))
            return [TensorBoardSink(writer, with_scalars=True)]

        return self._publisher_with(sinks, _warn, None)
