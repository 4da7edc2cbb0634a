"""SaliencyMonitor: attribution heatmaps and drift metrics on a fixed probe set every epoch."""
from __future__ import annotations

import time
import traceback
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Optional, Sequence, Union

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn

from lightning_saliency.attribution import METHODS, AttributionConfig, SpecialTokens, attribute
from lightning_saliency.attribution.embedding import find_embedding_layer, num_embeddings
from lightning_saliency.attribution.results import Attributions, concatenate, select_rows
from lightning_saliency.attribution.targets import TASKS
from lightning_saliency.budget import ComputeBudget, Plan
from lightning_saliency.distributed import (
    ShardError, broadcast_object, gather_objects, refuse_sharded_models, shard_rows, world,
)
from lightning_saliency.model_access import ForwardFn, config_label_names, hf_forward
from lightning_saliency.monitoring import RunLogger, monitor_settings, output_directory
from lightning_saliency.probe import ProbeSet, probe_from_dataloader, probe_from_texts
from lightning_saliency.records import build_record


class SaliencyMonitor(Callback):
    r"""Run Integrated Gradients and gradient saliency on a fixed probe set of validation examples
    each validation epoch and log token heatmaps, top-token tables and drift scalars.

    Attribution runs on the live model in eval mode with frozen parameters under
    ``torch.autograd.grad`` (never ``.backward()``); every module's mode, every ``requires_grad``,
    ``.grad`` and the RNG state are restored, so training is bitwise unaffected.

    Args:
        tokenizer: a Hugging Face tokenizer, or the path of a saved one (for YAML configs).
        methods: attribution methods, any of ``integrated_gradients``, ``gradient``,
            ``gradient_x_input``, ``smoothgrad``, ``occlusion``, ``attention``.
        num_examples: probe-set size, sampled once (seeded, stratified by label).
        every_n_epochs: attribute every n-th validation epoch during fit.
        examples: raw texts to probe instead of sampling the validation set.
        example_labels: true labels of ``examples``.
        target: ``"predicted"``, ``"label"`` or a class index.
        n_steps: IG steps (fixed mode).
        tolerance: relative completeness error for adaptive IG (``n_steps`` is then ignored).
        baseline: ``"pad"``, ``"mask"``, ``"unk"`` or ``"zero"``.
        embedding_layer: dotted path of the word-embedding layer inside the LightningModule.
        forward_fn: ``(pl_module, inputs) -> logits`` for modules that are not Hugging Face models.
        task: ``"classification"``, ``"multiple_choice"`` or ``"causal_lm"``.
        label_names: class names for captions (default: the model config's ``id2label``).
        top_k: tokens per example in the markdown table and drift metrics.
        max_tokens: padded tokens per attribution chunk, which bounds attribution's memory. Default:
            the largest training batch seen so far (``input_ids.numel()``), so attribution's peak
            memory stays at or below a training step's; before the first training batch, the
            validation loader's batch size times the probe's padded length.
        budget: the attribution time allowed per run as a fraction of the epoch's wall time (e.g.
            ``0.1``). Each run's cost is predicted from the previous run's; the IG steps (or the
            adaptive step cap) are lowered first, down to ``min(9, n_steps)``, then fewer probe
            examples are attributed (a fixed prefix of the probe order, at least 2), so drift is
            always compared on the same examples. ``None`` (default): run exactly as configured.
        log_example_images: also log one image per example (the grid image is always logged).
        reference_pass: attribute once before training (run label ``"start"``).
        dirpath: where ``saliency/epoch_*.json`` go (default: the logger's ``log_dir``).
        seed: probe sampling and SmoothGrad seed (private generators; training RNG untouched).
        on_error: ``"warn"`` (report once, keep training) or ``"raise"``.
        attribution_options: further :class:`~lightning_saliency.AttributionConfig` fields.
        shortcut_min_examples, shortcut_min_fraction, shortcut_top1_rate, shortcut_min_share,
            shortcut_min_rise: a token is a shortcut suspect when it appears in at least
            ``max(min_examples, min_fraction * num_examples)`` probe examples, is the top token in at
            least ``top1_rate`` of them, holds on average ``min_share`` of their |attribution| and its
            share rose by ``min_rise`` since the ``start`` run
            (see :func:`lightning_saliency.metrics.shortcut_suspects`).
        on_shortcut: called as ``on_shortcut(suspects, record)`` when suspects are found.
        faithfulness: compute ERASER comprehensiveness / sufficiency for IG and gradient.

    Under DDP every rank attributes its share of the probe set (balanced by tokens) and rank zero
    gathers the shards for metrics, images and files; only rank zero writes.

    Raises:
        ValueError: at ``setup`` for an unknown method or option, no tokenizer, no embedding layer,
            a vocabulary larger than the embedding table, no validation data, no way to call
            the model, or a strategy that shards parameters (FSDP, DeepSpeed, model parallel).

    Example::

        from lightning import Trainer
        from lightning.pytorch.loggers import TensorBoardLogger
        from lightning_saliency import SaliencyMonitor

        trainer = Trainer(callbacks=[SaliencyMonitor(tokenizer=tokenizer)], logger=TensorBoardLogger("runs"))
        trainer.fit(model, datamodule)
    """

    def __init__(
        self,
        tokenizer: Optional[Union[str, Any]] = None,
        methods: Sequence[str] = ("integrated_gradients", "gradient"),
        num_examples: int = 8,
        every_n_epochs: int = 1,
        examples: Optional[list[str]] = None,
        example_labels: Optional[list[int]] = None,
        target: Union[str, int] = "predicted",
        n_steps: int = 32,
        tolerance: Optional[float] = None,
        baseline: str = "pad",
        embedding_layer: Optional[str] = None,
        forward_fn: Optional[ForwardFn] = None,
        task: str = "classification",
        label_names: Optional[list[str]] = None,
        top_k: int = 5,
        max_tokens: Optional[int] = None,
        budget: Optional[float] = None,
        log_example_images: bool = True,
        reference_pass: bool = True,
        dirpath: Optional[str] = None,
        seed: int = 0,
        on_error: str = "warn",
        attribution_options: Optional[dict[str, Any]] = None,
        shortcut_min_examples: int = 3,
        shortcut_min_fraction: float = 0.25,
        shortcut_top1_rate: float = 0.6,
        shortcut_min_share: float = 0.3,
        shortcut_min_rise: float = 0.05,
        on_shortcut: Optional[Callable[[list, dict], None]] = None,
        faithfulness: bool = True,
    ) -> None:
        super().__init__()
        self.methods = tuple(methods)
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown or not self.methods:
            raise ValueError(f"Unknown method(s) {unknown or self.methods}; choose from {METHODS}.")
        if on_error not in ("warn", "raise"):
            raise ValueError(f"on_error must be 'warn' or 'raise', got {on_error!r}.")
        if not (target in ("predicted", "label") or isinstance(target, int)):
            raise ValueError(f"target must be 'predicted', 'label' or a class index, got {target!r}.")
        if task not in TASKS:
            raise ValueError(f"Unknown task {task!r}; choose one of {TASKS}.")
        if num_examples < 1 or every_n_epochs < 1 or top_k < 1:
            raise ValueError("num_examples, every_n_epochs and top_k must be positive.")
        self.config = AttributionConfig(
            n_steps=n_steps, tolerance=tolerance, baseline=baseline, seed=seed, max_tokens=max_tokens or 4096,
            **(attribution_options or {}),
        )
        self.max_tokens = max_tokens
        adaptive = self.config.tolerance is not None
        steps = self.config.max_steps if adaptive else self.config.n_steps
        self.budget = None if budget is None else ComputeBudget(
            budget, num_examples, steps, min_examples=2,
            min_steps=self.config.min_steps if adaptive else min(9, self.config.n_steps),
        )
        self._train_tokens = 0
        self.tokenizer = tokenizer
        self.num_examples, self.every_n_epochs = num_examples, every_n_epochs
        self.examples, self.example_labels = examples, example_labels
        self.target, self.task = target, task
        self.embedding_layer, self.forward_fn = embedding_layer, forward_fn
        self.label_names, self.top_k = label_names, top_k
        self.log_example_images, self.reference_pass = log_example_images, reference_pass
        self.dirpath, self.seed, self.on_error = dirpath, seed, on_error
        self.shortcut_options = {
            "min_examples": shortcut_min_examples, "min_fraction": shortcut_min_fraction,
            "top1_rate": shortcut_top1_rate, "min_share": shortcut_min_share, "min_rise": shortcut_min_rise,
        }
        self.on_shortcut, self.faithfulness = on_shortcut, faithfulness
        self.history: list[dict[str, Any]] = []
        self.probe: Optional[ProbeSet] = None
        self._probe_indices: Optional[list[int]] = None
        self._reference: Optional[dict[str, Any]] = None
        self._completed: set[str] = set()
        self._reported_errors: set[str] = set()
        self._epoch_started: Optional[float] = None
        self._special: Optional[SpecialTokens] = None
        self._call_model: Optional[ForwardFn] = None
        self._logger = RunLogger()

    @property
    def state_key(self) -> str:
        return self._generate_state_key(methods=self.methods, num_examples=self.num_examples, seed=self.seed)

    # ----------------------------------------------------------------------------------- setup
    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        refuse_sharded_models(trainer.strategy)
        if isinstance(self.tokenizer, (str, Path)):
            from transformers import AutoTokenizer

            self.tokenizer = AutoTokenizer.from_pretrained(str(self.tokenizer))
        if self.tokenizer is None:
            raise ValueError(
                "SaliencyMonitor needs tokenizer= (a Hugging Face tokenizer or the path of a saved one) to know the "
                "special tokens and to print tokens in heatmaps."
            )
        self._special = SpecialTokens.from_tokenizer(self.tokenizer)
        vocab = len(self.tokenizer)
        layer = find_embedding_layer(pl_module, self.embedding_layer, vocab)
        if vocab > num_embeddings(layer):
            raise ValueError(
                f"The tokenizer has {vocab} tokens but the embedding layer has {num_embeddings(layer)} rows: they do "
                "not belong together. Pass the model's own tokenizer (or resize the embeddings)."
            )
        self._call_model = self.forward_fn or hf_forward(pl_module)
        if self.examples is None and stage in ("fit", "validate"):
            loop = trainer.fit_loop.epoch_loop.val_loop if stage == "fit" else trainer.validate_loop
            if not loop._data_source.is_defined() or (stage == "fit" and trainer.limit_val_batches == 0):
                raise ValueError(
                    "SaliencyMonitor found no validation data: define val_dataloader() (or pass val_dataloaders=) "
                    "or give the probe texts with SaliencyMonitor(examples=[...])."
                )
        if self.target == "label" and self.examples is not None and self.example_labels is None:
            raise ValueError("target='label' with examples= needs example_labels=[...].")

    # ---------------------------------------------------------------------------------- hooks
    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Decided from state every rank holds alike (a checkpoint restores it on all ranks).
        if self.reference_pass and "start" not in self._completed:
            self._prepare_validation_data(trainer)
            self._guarded_run(trainer, pl_module, "start", "fit", epoch=None)

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._epoch_started = time.perf_counter()

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int) -> None:
        ids = batch.get("input_ids") if isinstance(batch, dict) else None
        if isinstance(ids, torch.Tensor):
            self._train_tokens = max(self._train_tokens, ids.numel())

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        epoch = trainer.current_epoch
        if trainer.state.fn == "fit":
            label = f"{epoch:03d}"
            if (epoch + 1) % self.every_n_epochs != 0 or label in self._completed:
                return
            self._guarded_run(trainer, pl_module, label, "fit", epoch)
        else:
            self._guarded_run(trainer, pl_module, f"validate_{epoch:03d}", "validate", epoch)

    # ------------------------------------------------------------------------------ resuming
    def state_dict(self) -> dict[str, Any]:
        return {
            "probe_indices": self._probe_indices,
            "reference": self._reference,
            "previous": self.history[-1] if self.history else None,
            "completed": sorted(self._completed),
            "budget_costs": None if self.budget is None else [self.budget.seconds_per_step, self.budget.seconds_per_example],
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._probe_indices = state_dict.get("probe_indices")
        self._reference = state_dict.get("reference")
        self._completed = set(state_dict.get("completed", []))
        previous = state_dict.get("previous")
        self.history = [previous] if previous is not None else []
        costs = state_dict.get("budget_costs")
        if self.budget is not None and costs is not None:  # plan the first run after resuming from the last one
            self.budget.seconds_per_step, self.budget.seconds_per_example = costs
        self.probe = None  # rebuilt from the stored indices on the next run

    # ------------------------------------------------------------------------------ internals
    def _prepare_validation_data(self, trainer: L.Trainer) -> None:
        # Every rank runs this (it contains a barrier); attribution itself runs on rank zero only.
        if self.examples is None and trainer.val_dataloaders is None:
            trainer.fit_loop.epoch_loop.val_loop.setup_data()

    def _ensure_probe(self, trainer: L.Trainer) -> ProbeSet:
        if self.probe is not None:
            return self.probe
        if self.examples is not None:
            self.probe = probe_from_texts(self.examples, self.tokenizer, self.example_labels)
        else:
            loader = self._validation_loader(trainer)
            if loader is None:
                raise ValueError("SaliencyMonitor found no validation dataloader to sample the probe set from.")
            if self._probe_indices is not None:
                self.probe = probe_from_dataloader(loader, indices=self._probe_indices, tokenizer=self.tokenizer)
            else:
                self.probe = probe_from_dataloader(loader, self.num_examples, self.seed, self.tokenizer)
        self._probe_indices = list(self.probe.indices)
        return self.probe

    @staticmethod
    def _validation_loader(trainer: Optional[L.Trainer]) -> Any:
        loaders = getattr(trainer, "val_dataloaders", None)
        if isinstance(loaders, dict):
            return next(iter(loaders.values()), None)
        return loaders[0] if isinstance(loaders, (list, tuple)) and loaders else loaders

    def _target_argument(self, probe: ProbeSet) -> Any:
        if self.target == "predicted":
            return None
        if self.target == "label":
            if probe.labels is None:
                raise ValueError("target='label' but the validation batches have no 'labels'.")
            return probe.labels
        return self.target

    def _guarded_run(self, trainer: L.Trainer, pl_module: L.LightningModule, label: str, stage: str, epoch) -> None:
        try:
            self._run(trainer, pl_module, label, stage, epoch)
        except Exception as error:  # attribution must never cost the user's training run
            if self.on_error == "raise":
                raise
            key = f"{type(error).__name__}: {error}"
            if key not in self._reported_errors:
                self._reported_errors.add(key)
                where = "".join(traceback.format_exception(type(error), error, error.__traceback__, limit=-3))
                rank_zero_warn(
                    f"SaliencyMonitor: attribution for run {label!r} failed and was skipped; training continues. "
                    f"Cause: {key}\n{where}Set on_error='raise' to stop on such errors."
                )

    def _plan(self, label: str, epoch_seconds: Optional[float]) -> Plan:
        if self.budget is None:
            return Plan(self.num_examples, self.config.n_steps)
        return self.budget.full() if label == "start" else self.budget.plan(epoch_seconds)

    def _run_config(self, plan: Plan, probe: ProbeSet, trainer: L.Trainer) -> AttributionConfig:
        changes: dict[str, Any] = {}
        if self.max_tokens is None:
            changes["max_tokens"] = self._train_tokens or self._validation_tokens(probe, trainer)
        if self.budget is not None:
            changes["max_steps" if self.config.tolerance is not None else "n_steps"] = plan.steps
        return replace(self.config, **changes)

    def _validation_tokens(self, probe: ProbeSet, trainer: L.Trainer) -> int:
        """Before any training batch: a validation batch's tokens, else the engine's default."""
        batch_size = getattr(self._validation_loader(trainer), "batch_size", None)
        if not batch_size:  # examples= without a validation loader, or a batch sampler
            return self.config.max_tokens
        return max(batch_size * probe.inputs["input_ids"].shape[-1], 1)

    def _run(self, trainer: L.Trainer, pl_module: L.LightningModule, label: str, stage: str, epoch) -> None:
        started = time.perf_counter()
        epoch_seconds = None if self._epoch_started is None or label == "start" else started - self._epoch_started
        rank, world_size = world(trainer)
        # Every rank makes the same collective calls in the same order, whatever fails locally:
        # one broadcast (the plan), then one gather (a shard, nothing, or an error).
        plan = broadcast_object(self._plan(label, epoch_seconds), world_size)
        shard: Optional[Attributions] = None
        failure: Optional[str] = None
        try:
            probe = self._ensure_probe(trainer)
            probe = probe.select(range(plan.num_examples)) if plan.num_examples < len(probe) else probe
            config = self._run_config(plan, probe, trainer)
            rows = shard_rows(probe.lengths(), rank, world_size)
            if rows:
                with self._logger.progress(trainer, f"Saliency [{label}]") as advance:
                    part = probe.select(rows)
                    shard = attribute(
                        pl_module, part.inputs, self.methods, tokenizer=self.tokenizer, special_tokens=self._special,
                        embedding_layer=self.embedding_layer, forward_fn=self._call_model,
                        target=self._target_argument(part), task=self.task, config=config,
                        forward_context=trainer.precision_plugin.forward_context, progress=advance,
                    )
                    shard = select_rows(shard, range(len(rows))) if world_size > 1 else shard
        except Exception as error:
            if world_size == 1:
                raise
            rows, failure = [], f"rank {rank}: {type(error).__name__}: {error}"
        directory = output_directory(self, trainer)  # a collective under DDP, so outside rank zero's branch
        gathered = gather_objects((rows, shard, failure), world_size)
        failures = [f for _, _, f in gathered if f is not None]
        if failures:
            raise ShardError("; ".join(failures))
        self._completed.add(label)
        if not trainer.is_global_zero:
            return
        parts = [(r, s) for r, s, _ in gathered if s is not None]
        result = parts[0][1] if len(parts) == 1 else concatenate([s for _, s in parts], [i for r, _ in parts for i in r])
        self._record(trainer, pl_module, label, stage, epoch, probe, result, config, plan, (started, epoch_seconds),
                     directory)

    def _record(self, trainer, pl_module, label, stage, epoch, probe, result, config, plan, timing, directory):
        names = self.label_names or config_label_names(pl_module)
        record = build_record(
            label=label, stage=stage, epoch=epoch, global_step=trainer.global_step,
            settings=monitor_settings(self, config, plan if self.budget is not None else None), probe=probe,
            result=result, label_names=names,
        )
        self._logger.analyse(self, pl_module, record, result, probe)
        if label == "start":
            self._reference = record
        self._logger.publish(self, trainer, record, *timing, directory)
        self.history.append(record)
        if self.budget is not None:
            ig = result.methods.get("integrated_gradients")
            self.budget.observe(
                seconds=record["seconds"], ig_seconds=result.timings.get("integrated_gradients", 0.0),
                examples=len(probe), mean_steps=float(ig.steps.float().mean()) if ig is not None else 0.0,
            )
        rank_zero_info(
            f"SaliencyMonitor: run {label} ({', '.join(self.methods)}) on {len(probe)} examples "
            f"took {record['seconds']:.2f} s."
        )
