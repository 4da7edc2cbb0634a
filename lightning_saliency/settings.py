"""The monitor's settings: frozen groups, validated in one place, shared by every adapter.

The callbacks take the common choices flat (``tokenizer``, ``methods``, ``num_examples``,
``every_n_epochs``, ``budget``, ``task``, ``target``, ``on_error``) and the rest as groups:

* ``attribution``: :class:`~lightning_saliency.AttributionConfig` (IG steps, tolerance, baseline,
  chunk size, each method's options);
* ``shortcut``: :class:`ShortcutRules` (when a token is a suspect; ``ignore``: genuine cues);
* ``evidence``: :class:`EvidenceSettings` (causal checks, artifact table, faithfulness, stopping);
* ``schedule``: :class:`RunSchedule` (the ``start`` run and the cheap step runs);
* ``output``: :class:`OutputSettings` (where records go, tables, heatmap colours, class names);
* ``probe``: :class:`ProbeSettings` (given texts, sampling seed, how batches are read);
* ``model_io``: :class:`ModelIO` (how the model is called, where its embeddings are).

``None`` for a group means "not given": its defaults. Groups are passed down unchanged, so what a
user wrote is what the engine reads. Names are validated against the registries (methods, tasks),
so a registered method or task is accepted from YAML (LightningCLI) like a built-in one.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Literal, Optional, Union

from lightning_saliency.attribution import AttributionConfig, check_methods
from lightning_saliency.attribution.api import check_options
from lightning_saliency.monitor.metrics.rank_test import MIN_EFFECT
from lightning_saliency.monitor.metrics.shortcut import ShortcutRules
from lightning_saliency.tasks import get_task

TargetChoice = Union[Literal["predicted", "label"], int]
OnError = Literal["warn", "raise"]
# IG steps when the attribution group does not say: enough for the 2% completeness the demo's
# models reach on most examples, at a third of AttributionConfig's 50 (a library default).
DEFAULT_STEPS = 32
DEFAULT_ATTRIBUTION = AttributionConfig(n_steps=DEFAULT_STEPS)
DEFAULT_METHODS = ("integrated_gradients", "gradient")


def _positive(owner: str, **values: Optional[int]) -> None:
    for name, value in values.items():
        if value is not None and value < 1:
            raise ValueError(f"{owner}.{name} must be at least 1, got {value}.")


@dataclass(frozen=True)
class EvidenceSettings:
    """How suspects are tested, beyond attribution.

    Args:
        confirm_examples: validation examples (sampled once, privately seeded) on which each suspect
            is checked causally: deletion, insertion and a frequency-matched random control, with
            95% Wilson intervals. ``0``: no checks. Tasks with one text and one class per example.
        artifact_examples: training examples read at fit start for the token-label association
            (Gardner et al.'s z), crossed with reliance in every run. ``0``: off.
        faithfulness: ERASER comprehensiveness / sufficiency for IG and gradient (epoch runs).
        stop_on_shortcut: stop training when a suspect is confirmed (agreed by all ranks).
        on_shortcut: called as ``on_shortcut(suspects, record)`` when a run has suspects.
        min_effect: the effect a shift test needs to confirm, besides its statistical strength:
            the suspect's edits must move its class's probability this much further (toward
            reliance) than random words' edits do (a flip test needs none: a changed prediction
            is an effect of its own). ``0`` keeps strength alone (not advised: a
            model at chance then "confirms" consistent shifts of 1e-5). The default, 0.02, is
            chosen from measured effects (docs: How the evidence works).

    Raises:
        ValueError: a negative example count, or ``min_effect`` outside ``[0, 1]``.
    """

    confirm_examples: int = 256
    artifact_examples: int = 20_000
    faithfulness: bool = True
    stop_on_shortcut: bool = False
    on_shortcut: Optional[Callable[[list, dict], None]] = None
    min_effect: float = MIN_EFFECT

    def __post_init__(self) -> None:
        for name in ("confirm_examples", "artifact_examples"):
            if getattr(self, name) < 0:
                raise ValueError(f"evidence.{name} must be 0 (off) or positive, got {getattr(self, name)}.")
        if not 0.0 <= self.min_effect <= 1.0:
            raise ValueError(f"evidence.min_effect is a class-probability shift, between 0 and 1; got "
                             f"{self.min_effect}.")


@dataclass(frozen=True)
class RunSchedule:
    """Which runs happen besides the epoch runs (``every_n_epochs``).

    Args:
        start_run: attribute once before training (run ``"start"``, the reference of drift and rises).
        every_n_train_steps: also run every n optimizer steps (cheap runs: ``step_methods``, no
            faithfulness, no images), to see when a shortcut starts. ``None``: epoch runs only.
        step_schedule: ``"linear"``: every n steps; ``"log"``: also at steps 1, 2, 4, ... below n.
        step_methods: the step runs' methods (default: gradient, the cheapest).
    """

    start_run: bool = True
    every_n_train_steps: Optional[int] = None
    step_schedule: Literal["linear", "log"] = "linear"
    step_methods: tuple[str, ...] = ("gradient",)

    def __post_init__(self) -> None:
        _positive("schedule", every_n_train_steps=self.every_n_train_steps)
        if self.step_schedule not in ("linear", "log"):
            raise ValueError(f"schedule.step_schedule must be 'linear' (every n steps) or 'log' (also steps 1, 2, "
                             f"4, ... below n), got {self.step_schedule!r}.")
        try:
            object.__setattr__(self, "step_methods", check_methods(self.step_methods))
        except ValueError as error:
            raise ValueError(f"Unknown method in schedule.step_methods={self.step_methods!r}: {error}") from error


@dataclass(frozen=True)
class OutputSettings:
    """Where and how results are shown.

    Args:
        dirpath: where ``saliency/epoch_*.json`` go (default: the logger's ``log_dir``; with W&B or
            MLflow first, ``<default_root_dir>/saliency_logs/<run id>``, one per fit).
        top_k: tokens per example in the tables and drift metrics.
        color_scale: ``"run"``: one heatmap scale per run and method (a weak example looks pale);
            ``"example"``: each example scaled to its own largest |score|.
        history_size: recent records kept in memory (``history``); all are on disk.
        example_images: also log one image per example (the grid image is always logged).
        label_names: class names for captions (default: the model config's ``id2label``).
    """

    dirpath: Optional[str] = None
    top_k: int = 5
    color_scale: Literal["run", "example"] = "run"
    history_size: int = 32
    example_images: bool = True
    label_names: Optional[tuple[str, ...]] = None

    def __post_init__(self) -> None:
        _positive("output", top_k=self.top_k, history_size=self.history_size)
        if self.color_scale not in ("run", "example"):
            raise ValueError(f"output.color_scale must be 'run' (one scale per run and method) or 'example', got "
                             f"{self.color_scale!r}.")
        if self.label_names is not None:
            object.__setattr__(self, "label_names", tuple(self.label_names))


@dataclass(frozen=True)
class ProbeSettings:
    """The probe set and how batches are read.

    Args:
        texts: texts to probe instead of sampling the validation set (with ``task="completion"``:
            the prompts).
        labels: the true labels of ``texts``: class indices, or class names (``"positive"``) when the
            classes have names (``output.label_names`` or the model config's ``id2label``).
        completions: with ``task="completion"``, each prompt's completion (what is scored).
        seed: probe sampling seed (private generators; the training RNG is untouched).
        label_key: the batch entry that holds the labels.
        input_keys: names of the positions of tuple batches, e.g. ``("input_ids", "attention_mask", "labels")``.
        entity_spans: with ``task="token_classification"``, which spans are attributed:
            ``"predicted"``, the entities the live model predicts at each run (its false entities
            too: where a shortcut shows), or ``"labelled"``, the validation labels' entities (the
            same rows every run).
    """

    texts: Optional[tuple[str, ...]] = None
    labels: Optional[tuple[Union[int, str], ...]] = None
    completions: Optional[tuple[str, ...]] = None
    seed: int = 0
    label_key: str = "labels"
    input_keys: Optional[tuple[str, ...]] = None
    entity_spans: Literal["predicted", "labelled"] = "predicted"

    def __post_init__(self) -> None:
        if self.entity_spans not in ("predicted", "labelled"):
            raise ValueError(f"probe.entity_spans is 'predicted' (the model's entities at each run) or 'labelled' "
                             f"(the validation labels' entities), got {self.entity_spans!r}.")
        texts, labels = self.texts, self.labels
        if texts is None:
            if labels is not None:
                raise ValueError("probe.labels label the texts of probe.texts; pass the texts too.")
        else:
            if isinstance(texts, str) or not all(isinstance(text, str) for text in texts):
                raise ValueError(f"probe.texts is a list of texts, e.g. ['a great film', 'a dull plot'], got "
                                 f"{texts!r:.80}.")
            if len(texts) == 0:
                raise ValueError("probe.texts=[] gives no text to probe: pass at least one text, or leave it None to "
                                 "sample the probe set from the validation data.")
            if labels is not None and len(labels) != len(texts):
                raise ValueError(f"probe.texts has {len(texts)} texts but probe.labels has {len(labels)} labels: "
                                 "give one label per text.")
            object.__setattr__(self, "texts", tuple(texts))
        if labels is not None:  # class indices, or class names (read against the model's class names)
            object.__setattr__(self, "labels", tuple(label if isinstance(label, str) else int(label)
                                                     for label in labels))
        if self.completions is not None:
            if texts is None or len(self.completions) != len(texts):
                raise ValueError("probe.completions gives one completion per prompt of probe.texts: "
                                 f"{len(self.completions)} completions for {0 if texts is None else len(texts)} prompts.")
            object.__setattr__(self, "completions", tuple(self.completions))
        if self.input_keys is not None:
            object.__setattr__(self, "input_keys", tuple(self.input_keys))


@dataclass(frozen=True)
class ModelIO:
    """How the model is called.

    Args:
        embedding_layer: dotted path of the word-embedding layer (found automatically otherwise).
        forward_fn: ``(module, inputs) -> logits`` for modules that are not Hugging Face models.
    """

    embedding_layer: Optional[str] = None
    forward_fn: Optional[Callable[[Any, dict], Any]] = None


@dataclass(frozen=True)
class MonitorSettings:
    """Everything that decides what the monitor computes and records: the callbacks' arguments,
    validated at construction, long before any training time is spent."""

    methods: tuple[str, ...] = DEFAULT_METHODS
    num_examples: int = 8
    every_n_epochs: int = 1
    budget: Optional[float] = None
    task: str = "classification"
    target: TargetChoice = "predicted"
    on_error: OnError = "warn"
    attribution: AttributionConfig = DEFAULT_ATTRIBUTION
    shortcut: ShortcutRules = field(default_factory=ShortcutRules)
    evidence: EvidenceSettings = field(default_factory=EvidenceSettings)
    schedule: RunSchedule = field(default_factory=RunSchedule)
    output: OutputSettings = field(default_factory=OutputSettings)
    probe: ProbeSettings = field(default_factory=ProbeSettings)
    model_io: ModelIO = field(default_factory=ModelIO)

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "methods", check_methods(self.methods))
        except ValueError as error:
            raise ValueError(f"Unknown method in methods={self.methods!r}: {error}") from error
        get_task(self.task)  # ValueError naming the registered tasks
        check_options(self.attribution, self.methods + self.step_run_methods(), DEFAULT_ATTRIBUTION)
        _positive("settings", num_examples=self.num_examples, every_n_epochs=self.every_n_epochs)
        if self.on_error not in ("warn", "raise"):
            raise ValueError(f"on_error must be 'warn' or 'raise', got {self.on_error!r}.")
        if not (self.target in ("predicted", "label") or (isinstance(self.target, int) and self.target >= 0)):
            raise ValueError(f"target must be 'predicted', 'label' or a class index >= 0, got {self.target!r}.")
        task = get_task(self.task)
        if task.one_score and self.target != "predicted":
            raise ValueError(f"task={self.task!r} attributes one score per example (the sequence's log-probability): "
                             f"target={self.target!r} has nothing to pick; use target='predicted'.")
        task.check_given_probe(texts=self.probe.texts is not None, completions=self.probe.completions is not None)
        if self.target == "label" and self.probe.texts is not None and self.probe.labels is None:
            raise ValueError("target='label' with probe.texts needs probe.labels=[...].")
        if self.budget is not None and not 0 < self.budget <= 1:
            raise ValueError(f"budget is a fraction of the epoch's time in (0, 1], got {self.budget}.")

    def step_run_methods(self) -> tuple[str, ...]:
        return self.schedule.step_methods if self.schedule.every_n_train_steps is not None else ()

    @classmethod
    def build(cls, **given: Any) -> "MonitorSettings":
        """Settings from the callbacks' arguments: a group left ``None`` takes its defaults."""
        values = {k: v for k, v in given.items() if v is not None}
        if "methods" in values and not isinstance(values["methods"], str):
            values["methods"] = tuple(values["methods"])
        return cls(**values)

    @property
    def adaptive(self) -> bool:
        return self.attribution.tolerance is not None

    @property
    def steps(self) -> int:
        """IG steps of a full run: ``n_steps``, or the step cap in adaptive mode."""
        return self.attribution.max_steps if self.adaptive else self.attribution.n_steps

    def record_settings(self, config: AttributionConfig, budget: Optional[dict[str, Any]]) -> dict[str, Any]:
        """The settings that make runs comparable, stored in every record (``config``: the
        attribution options as used in this run; ``budget``: what the compute budget chose)."""
        return {
            "methods": list(self.methods),
            "target": self.target,
            "task": self.task,
            "num_examples": self.num_examples,
            "seed": self.probe.seed,
            "top_k": self.output.top_k,
            "shortcut": asdict(self.shortcut),
            "shortcut_ignore": list(self.shortcut.ignore),
            "confirm_examples": self.evidence.confirm_examples,
            "min_effect": self.evidence.min_effect,
            "attribution": asdict(config),
            "budget": budget,
        }
