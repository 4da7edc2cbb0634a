"""What the Lightning callback and the Hugging Face Trainer callback share: one constructor
signature, the settings it validates, and the setup steps that do not depend on the framework.

Each adapter subclasses :class:`MonitorAdapter` next to its framework's callback class and adds
only its hooks: when to run, where the data and the loggers are, and how to reach the other ranks.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Optional, Sequence, Union

import torch

from lightning_saliency.attribution import AttributionConfig, SpecialTokens
from lightning_saliency.attribution.embedding import find_embedding_layer, num_embeddings
from lightning_saliency.attribution.isolation import preserved_global_rng
from lightning_saliency.attribution.words import PieceJoiner
from lightning_saliency.monitor.engine import MonitorEngine, RunSources
from lightning_saliency.monitor.evidence.artifacts import ArtifactTable, dataset_artifacts
from lightning_saliency.monitor.metrics import ShortcutRules
from lightning_saliency.monitor.model_access import DecodedVocabulary, ForwardFn, config_label_names, hf_forward, model_max_length
from lightning_saliency.monitor.probe import ProbeSet, probe_from_dataloader, probe_from_texts
from lightning_saliency.monitor.publishing import Publisher
from lightning_saliency.monitor.sinks import Sink
from lightning_saliency.monitor.runner import ModelAccess, Progress, attributable_rows
from lightning_saliency.settings import (
    Baseline,
    ColorScale,
    MethodName,
    MonitorSettings,
    OnError,
    StepSchedule,
    TargetChoice,
    Task,
)


def check_examples(examples: Optional[Sequence[str]], labels: Optional[Sequence[int]], target: Any) -> None:
    """The ``examples=`` texts and their labels, checked at construction."""
    if examples is None:
        if labels is not None:
            raise ValueError("example_labels= labels the texts of examples=[...]; pass the texts too.")
        return
    if isinstance(examples, str) or not all(isinstance(text, str) for text in examples):
        raise ValueError(f"examples= is a list of texts, e.g. ['a great film', 'a dull plot'], got {examples!r:.80}.")
    if len(examples) == 0:
        raise ValueError("examples=[] gives no text to probe: pass at least one text, or leave examples=None to "
                         "sample the probe set from the validation data.")
    if labels is not None and len(labels) != len(examples):
        raise ValueError(f"examples= has {len(examples)} texts but example_labels= has {len(labels)} labels: give "
                         "one label per text.")
    if target == "label" and labels is None:
        raise ValueError("target='label' with examples= needs example_labels=[...].")


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


# Fewer probe examples than this and a token seen in 3 of them (min_examples) is judged: common
# words get there by chance. 8 is the default; 16-24 give the rules more to go on.
SMALL_PROBE = 8


class MonitorAdapter:
    """The constructor and framework-free setup shared by :class:`~lightning_saliency.SaliencyMonitor`
    and :class:`~lightning_saliency.adapters.transformers.SaliencyCallback` (see their docstrings
    for the arguments)."""

    def __init__(
        self,
        tokenizer: Optional[Union[str, Any]] = None,
        methods: Sequence[MethodName] = ("integrated_gradients", "gradient"),
        num_examples: int = 8,
        every_n_epochs: int = 1,
        examples: Optional[list[str]] = None,
        example_labels: Optional[list[int]] = None,
        target: TargetChoice = "predicted",
        n_steps: Optional[int] = None,
        tolerance: Optional[float] = None,
        baseline: Optional[Baseline] = None,
        embedding_layer: Optional[str] = None,
        forward_fn: Optional[ForwardFn] = None,
        task: Task = "classification",
        label_names: Optional[list[str]] = None,
        top_k: int = 5,
        max_tokens: Optional[int] = None,
        budget: Optional[float] = None,
        log_example_images: bool = True,
        reference_pass: bool = True,
        dirpath: Optional[str] = None,
        seed: int = 0,
        on_error: OnError = "warn",
        attribution_config: Optional[AttributionConfig] = None,
        attribution_options: Optional[dict[str, Any]] = None,
        shortcut: Optional[ShortcutRules] = None,
        on_shortcut: Optional[Callable[[list, dict], None]] = None,
        faithfulness: bool = True,
        history_size: int = 32,
        input_keys: Optional[Sequence[str]] = None,
        label_key: str = "labels",
        color_scale: ColorScale = "run",
        confirm_examples: int = 256,
        artifact_examples: int = 20_000,
        every_n_train_steps: Optional[int] = None,
        step_schedule: StepSchedule = "linear",
        step_methods: Sequence[MethodName] = ("gradient",),
        shortcut_ignore: Sequence[str] = (),
        stop_on_shortcut: bool = False,
    ) -> None:
        super().__init__()
        if every_n_epochs < 1:
            raise ValueError(f"every_n_epochs must be at least 1, got {every_n_epochs}.")
        check_examples(examples, example_labels, target)
        self.settings = MonitorSettings.build(
            n_steps=n_steps, tolerance=tolerance, baseline=baseline, attribution_config=attribution_config,
            attribution_options=attribution_options, shortcut=shortcut, label_names=label_names,
            methods=tuple(methods), num_examples=num_examples, target=target, task=task, top_k=top_k, seed=seed,
            max_tokens=max_tokens, budget=budget, faithfulness=faithfulness, log_example_images=log_example_images,
            reference_pass=reference_pass, on_error=on_error, history_size=history_size, color_scale=color_scale,
            confirm_examples=confirm_examples, artifact_examples=artifact_examples,
            every_n_train_steps=every_n_train_steps, step_schedule=step_schedule, step_methods=tuple(step_methods),
            shortcut_ignore=shortcut_ignore,
            stop_on_shortcut=stop_on_shortcut,
        )
        self.engine = MonitorEngine(self.settings)
        self.tokenizer = tokenizer
        self.every_n_epochs = every_n_epochs
        self.examples, self.example_labels = examples, example_labels
        self.embedding_layer, self.forward_fn = embedding_layer, forward_fn
        self.dirpath, self.on_shortcut = dirpath, on_shortcut
        self.input_keys = tuple(input_keys) if input_keys is not None else None
        self.label_key = label_key
        self.probe: Optional[ProbeSet] = None
        self.confirmation: Optional[ProbeSet] = None
        self._access: Optional[ModelAccess] = None
        self._publisher: Optional[Publisher] = None
        self._max_length = 512
        self._warn: Callable[[str], None] = lambda message: None

    # The settings, read-only, under the names users passed them as.
    methods = property(lambda self: self.settings.methods)
    num_examples = property(lambda self: self.settings.num_examples)
    config = property(lambda self: self.settings.attribution)
    history = property(lambda self: self.engine.history, doc="Recent records as JSON dicts (all are on disk).")

    def _connect(self, module: torch.nn.Module, forward_context: Callable[[], Any], warn: Callable[[str], None]) -> None:
        """Load the tokenizer, check it against the model, and fix how the model is called."""
        self.tokenizer = load_tokenizer(self.tokenizer)
        check_model_fits_tokenizer(module, self.tokenizer, self.embedding_layer)
        self._max_length = model_max_length(module, self.tokenizer)
        self._warn = warn
        count = len(self.examples) if self.examples is not None else self.settings.num_examples
        if count < SMALL_PROBE:
            warn(f"SaliencyMonitor: {count} probe examples is few for the shortcut rules: a token needs only "
                 f"{self.settings.shortcut.min_count(count)} occurrences to be judged, which common words reach by "
                 f"chance. Use num_examples >= {SMALL_PROBE}; 16-24 are better (the shortcut tests use 24).")
        self._access = ModelAccess(
            module=module, forward_fn=self.forward_fn or hf_forward(module), tokenizer=self.tokenizer,
            special_tokens=SpecialTokens.from_tokenizer(self.tokenizer), embedding_layer=self.embedding_layer,
            forward_context=forward_context,
        )
        names: Any = config_label_names(module)
        if self.settings.task == "causal_lm":  # a class is a token: name it by its text
            names = DecodedVocabulary(self.tokenizer)
        if self.settings.label_names is None and names:
            self.settings = self.engine.settings = replace(self.settings, label_names=names)

    def _probe(self, loader: Optional[Callable[[], Any]]) -> ProbeSet:
        """The fixed probe set: ``examples=`` texts, else sampled once from ``loader()``'s dataset
        through its own collate function (the stored indices after a resume)."""
        if self.probe is not None:
            return self.probe
        if self.examples is not None:
            self.probe = probe_from_texts(self.examples, self.tokenizer, self.example_labels, self._max_length,
                                          next_token=self.settings.task == "causal_lm")
            return self.probe
        source = loader() if loader is not None else None
        if source is None:
            raise ValueError("SaliencyMonitor found no validation dataloader to sample the probe set from.")
        options = dict(tokenizer=self.tokenizer, label_key=self.label_key, input_keys=self.input_keys,
                       next_token=self.settings.task == "causal_lm")
        if self.engine.probe_indices is not None:  # resumed: the same examples as before
            self.probe = probe_from_dataloader(source, indices=self.engine.probe_indices, **options)
        else:
            self.probe = probe_from_dataloader(source, self.num_examples, self.settings.seed, **options)
            if self.probe.labels is None:
                self._warn(f"SaliencyMonitor: the validation batches have no {self.label_key!r} entry, so probe accuracy "
                           "and label association are not computed (and target='label' cannot work). Name the "
                           "labels' key with label_key=... (tuple batches: input_keys=...).")
            if len(self.probe) < self.num_examples:
                self._warn(f"SaliencyMonitor: num_examples={self.num_examples}, but the validation set holds only "
                           f"{len(self.probe)} examples: probing those {len(self.probe)}.")
        return self.probe

    def _confirmation(self, loader: Optional[Callable[[], Any]]) -> ProbeSet:
        """The causal checks' validation slice: up to ``confirm_examples`` examples sampled once
        with a private generator (the probe itself when the probe texts were given)."""
        if self.confirmation is None:
            if self.examples is not None:
                self.confirmation = self._probe(loader)
            else:
                source = loader() if loader is not None else None
                if source is None:
                    raise ValueError("SaliencyMonitor found no validation dataloader for the causal checks.")
                sample = probe_from_dataloader(
                    source, self.settings.confirm_examples, self.settings.seed + 1, tokenizer=self.tokenizer,
                    label_key=self.label_key, input_keys=self.input_keys)
                self.confirmation = self._checkable(sample)
        return self.confirmation

    def _checkable(self, sample: ProbeSet) -> ProbeSet:
        """The causal checks' sample without the examples no model pass can take (an empty text, one
        longer than the model takes): one of them would otherwise fail every run's checks."""
        rows, skipped = attributable_rows(sample, self._access.special_tokens, range(len(sample)), self._max_length)
        if skipped:
            named = "; ".join(f"dataset index {sample.indices[row]}: {reason}" for row, reason in skipped[:5])
            more = f" and {len(skipped) - 5} more" if len(skipped) > 5 else ""
            self._warn(f"SaliencyMonitor: {len(skipped)} validation example(s) are left out of the causal checks "
                       f"({named}{more}).")
        return sample.select(rows) if skipped else sample

    def _find_artifacts(self, dataset: Any, collate_fn: Optional[Callable[[list], Any]]) -> Optional[ArtifactTable]:
        """The training set's artifact table (at fit start, rank zero), or ``None`` when it is off or
        the data cannot be read by index. A failure here is warned about and costs nothing else."""
        if self.settings.artifact_examples == 0 or dataset is None or self.settings.task != "classification":
            return None
        try:
            joiner = PieceJoiner(self.tokenizer.convert_ids_to_tokens(list(range(len(self.tokenizer)))),
                                 self._access.special_tokens.special_ids)
            with preserved_global_rng():
                table = dataset_artifacts(dataset, collate_fn, joiner, max_examples=self.settings.artifact_examples,
                                          seed=self.settings.seed, label_key=self.label_key,
                                          input_keys=self.input_keys)
        except Exception as error:
            self._warn(f"SaliencyMonitor: the training set's token-label association could not be computed "
                       f"({type(error).__name__}: {error}); runs go on without the artifact table.")
            return None
        if table is None:
            self._warn("SaliencyMonitor: the training set cannot be read by index with labels per example, so no "
                       "artifact table is computed (set artifact_examples=0 to silence this).")
        self.engine.evidence.artifacts = table
        return table

    def _sources(self, loader: Optional[Callable[[], Any]], directory: Path, publisher: Callable[[], Publisher],
                 warn: Callable[[str], None], progress: Progress) -> RunSources:
        confirmation = None if self.settings.confirm_examples == 0 else (lambda: self._confirmation(loader))
        return RunSources(self._access, lambda: self._probe(loader), directory, publisher, confirmation,
                          self._max_length, warn, progress)

    def flush(self) -> None:
        """Wait until every finished run's images, text and record file are written (runs publish
        on a background worker). The adapters call it at fit end, on an exception and at teardown."""
        if self._publisher is not None:
            self._publisher.flush()

    def _publisher_with(self, sinks: Callable[[], list[Sink]], warn: Callable[[str], None],
                        no_images_hint: Optional[str]) -> Publisher:
        if self._publisher is None:  # made on rank zero only, at its first run
            self._publisher = Publisher(sinks(), warn, self.settings.top_k, self.settings.log_example_images,
                                        self.on_shortcut, no_images_hint, self.settings.color_scale)
        return self._publisher
