"""What the Lightning callback and the Hugging Face Trainer callback share: one constructor
signature, the settings it validates, and the setup steps that do not depend on the framework.

Each adapter subclasses :class:`MonitorAdapter` next to its framework's callback class and adds
only its hooks: when to run, where the data and the loggers are, and which rank it is. It hands
the engine data and reads back a :class:`~lightning_saliency.monitor.engine.RunOutcome`.
"""
from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any, Callable, Optional, Sequence, Union

import torch

from lightning_saliency.attribution import AttributionConfig, SpecialTokens
from lightning_saliency.attribution.embedding import find_embedding_layer, num_embeddings
from lightning_saliency.attribution.lockstep import Lockstep
from lightning_saliency.monitor.engine import MonitorEngine
from lightning_saliency.monitor.metrics.shortcut import ShortcutRules
from lightning_saliency.monitor.model_access import ModelAccess, config_label_names, hf_forward, model_max_length
from lightning_saliency.settings import (
    EvidenceSettings,
    ModelIO,
    MonitorSettings,
    OnError,
    OutputSettings,
    ProbeSettings,
    RunSchedule,
    TargetChoice,
)


def load_tokenizer(tokenizer: Any) -> Any:
    """A tokenizer object from a tokenizer or the path of a saved one (YAML configs give paths)."""
    if isinstance(tokenizer, (str, Path)):
        from transformers import AutoTokenizer

        try:
            return AutoTokenizer.from_pretrained(str(tokenizer))
        except (OSError, ValueError) as error:
            if Path(tokenizer).is_dir():
                raise ValueError(f"tokenizer={str(tokenizer)!r} holds no loadable tokenizer ({error}).") from error
            # Not a folder: the hub's repo-id message would hide that the path is simply wrong.
            raise ValueError(f"tokenizer={str(tokenizer)!r} is not a folder, and no tokenizer of that name could "
                             "be loaded. Pass the folder a tokenizer was saved to (tokenizer.save_pretrained(folder)) "
                             "or the tokenizer object itself.") from error
    if tokenizer is None:
        raise ValueError(
            "SaliencyMonitor needs tokenizer= (a Hugging Face tokenizer or the path of a saved one) to know the "
            "special tokens and to print tokens in heatmaps."
        )
    return tokenizer


def check_model_fits_tokenizer(module: torch.nn.Module, tokenizer: Any, embedding_layer: Any) -> None:
    """Fail early when the embedding layer cannot be found or is smaller than the vocabulary."""
    vocab = len(tokenizer)
    layer = find_embedding_layer(module, embedding_layer, vocab)
    if vocab > num_embeddings(layer):
        raise ValueError(
            f"The tokenizer has {vocab} tokens but the embedding layer has {num_embeddings(layer)} rows: they do "
            "not belong together. Pass the model's own tokenizer (or resize the embeddings)."
        )


class MonitorAdapter:
    """The constructor and framework-free setup shared by :class:`~lightning_saliency.SaliencyMonitor`
    and :class:`~lightning_saliency.adapters.transformers.SaliencyTrainerCallback` (see their
    docstrings for the arguments). At most 15 arguments: the common ones flat, the rest in groups
    (:mod:`lightning_saliency.settings`)."""

    def __init__(
        self,
        tokenizer: Optional[Union[str, Any]] = None,
        methods: Sequence[str] = ("integrated_gradients", "gradient"),
        num_examples: int = 8,
        every_n_epochs: int = 1,
        budget: Optional[float] = None,
        task: str = "classification",
        target: TargetChoice = "predicted",
        on_error: OnError = "warn",
        attribution: Optional[AttributionConfig] = None,
        shortcut: Optional[ShortcutRules] = None,
        evidence: Optional[EvidenceSettings] = None,
        schedule: Optional[RunSchedule] = None,
        output: Optional[OutputSettings] = None,
        probe: Optional[ProbeSettings] = None,
        model_io: Optional[ModelIO] = None,
    ) -> None:
        super().__init__()
        self.settings = MonitorSettings.build(
            methods=methods, num_examples=num_examples, every_n_epochs=every_n_epochs, budget=budget, task=task,
            target=target, on_error=on_error, attribution=attribution, shortcut=shortcut, evidence=evidence,
            schedule=schedule, output=output, probe=probe, model_io=model_io,
        )
        self.tokenizer = tokenizer
        self.run_id = uuid.uuid4().hex
        self.engine = MonitorEngine(self.settings, self.run_id)
        self._connected = False

    # The settings, read-only, under the names users passed them as.
    methods = property(lambda self: self.settings.methods)
    num_examples = property(lambda self: self.settings.num_examples)
    config = property(lambda self: self.settings.attribution)

    @property
    def history(self) -> list[dict[str, Any]]:
        """Recent records as JSON dicts (all are on disk)."""
        return self.engine.recent_records()

    def _connect(self, module: torch.nn.Module, forward_context: Callable[[], Any], rank: int = 0,
                 lockstep: Optional[Lockstep] = None) -> None:
        """Load the tokenizer, check it against the model, and tell the engine how to call the model
        (``lockstep``: the parameters are sharded across ranks, FSDP2)."""
        io = self.settings.model_io
        self.tokenizer = load_tokenizer(self.tokenizer)
        check_model_fits_tokenizer(module, self.tokenizer, io.embedding_layer)
        access = ModelAccess(
            module=module, forward_fn=io.forward_fn or hf_forward(module), tokenizer=self.tokenizer,
            special_tokens=SpecialTokens.from_tokenizer(self.tokenizer), embedding_layer=io.embedding_layer,
            forward_context=forward_context, lockstep=lockstep,
        )
        self.engine.connect(access, model_max_length(module, self.tokenizer), config_label_names(module), rank)
        self._connected = True

    def flush(self) -> None:
        """Wait until every finished run's images, text and record file are written (runs publish
        on a background worker). The adapters call it at fit end, on an exception and at teardown."""
        self.engine.flush()

    # --------------------------------------------------------------------------------- resuming
    def state_dict(self) -> dict[str, Any]:
        return self.engine.state_dict()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.run_id = state_dict.get("run_id") or self.run_id
        self.engine.load_state_dict(state_dict)
