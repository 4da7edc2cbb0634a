"""The monitor's settings, validated in one place and shared by every adapter (Lightning, HF Trainer).

Choices are typed as ``Literal`` so that LightningCLI (jsonargparse) validates them from YAML, and
every check the attribution engine already makes (methods, baseline, tolerance, task) is reused
from it rather than copied here.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal, Optional, Sequence, Union

from lightning_saliency.attribution import AttributionConfig, check_methods
from lightning_saliency.attribution.targets import TargetSpec
from lightning_saliency.monitor.metrics.shortcut import ShortcutRules

MethodName = Literal["integrated_gradients", "gradient", "gradient_x_input", "smoothgrad", "occlusion", "attention"]
TargetChoice = Union[Literal["predicted", "label"], int]
Task = Literal["classification", "multiple_choice", "causal_lm"]
Baseline = Literal["pad", "mask", "unk", "zero"]
OnError = Literal["warn", "raise"]
StepSchedule = Literal["linear", "log"]
ColorScale = Literal["run", "example"]
# IG steps when neither n_steps= nor attribution_config= says: enough for the 2% completeness the
# demo's models reach on most examples, at a third of AttributionConfig's 50 (a library default).
DEFAULT_STEPS = 32


@dataclass(frozen=True)
class MonitorSettings:
    """Everything that decides what a monitor run computes and records.

    Built and validated by the adapters' constructors, so a bad value fails at construction with a
    message that names the fix, long before any training time is spent.
    """

    methods: tuple[str, ...] = ("integrated_gradients", "gradient")
    num_examples: int = 8
    target: TargetChoice = "predicted"
    task: str = "classification"
    top_k: int = 5
    seed: int = 0
    attribution: AttributionConfig = field(default_factory=AttributionConfig)
    max_tokens: Optional[int] = None
    budget: Optional[float] = None
    shortcut: ShortcutRules = field(default_factory=ShortcutRules)
    faithfulness: bool = True
    log_example_images: bool = True
    reference_pass: bool = True
    on_error: str = "warn"
    label_names: Optional[Sequence[str]] = None
    history_size: int = 32
    color_scale: str = "run"
    confirm_examples: int = 256
    artifact_examples: int = 20_000
    every_n_train_steps: Optional[int] = None
    step_schedule: str = "linear"
    step_methods: tuple[str, ...] = ("gradient",)
    shortcut_ignore: tuple[str, ...] = ()
    stop_on_shortcut: bool = False

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "methods", check_methods(self.methods))
        except ValueError as error:
            raise ValueError(f"Unknown method in methods={tuple(self.methods)!r}: {error}") from error
        try:
            object.__setattr__(self, "step_methods", check_methods(self.step_methods))
        except ValueError as error:
            raise ValueError(f"Unknown method in step_methods={tuple(self.step_methods)!r}: {error}") from error
        if isinstance(self.shortcut_ignore, str) or any(not isinstance(w, str) for w in self.shortcut_ignore):
            raise ValueError(f"shortcut_ignore is a list of words, e.g. ['great'], got {self.shortcut_ignore!r}.")
        object.__setattr__(self, "shortcut_ignore", tuple(self.shortcut_ignore))
        TargetSpec(task=self.task)  # the engine's own check of the task name
        if self.step_schedule not in ("linear", "log"):
            raise ValueError(f"step_schedule must be 'linear' (every n steps) or 'log' (also steps 1, 2, 4, ... "
                             f"below n), got {self.step_schedule!r}.")
        if self.every_n_train_steps is not None and self.every_n_train_steps < 1:
            raise ValueError(f"every_n_train_steps must be at least 1 (or None: no step runs), got "
                             f"{self.every_n_train_steps}.")
        for name in ("confirm_examples", "artifact_examples"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be 0 (off) or positive, got {getattr(self, name)}.")
        if self.color_scale not in ("run", "example"):
            raise ValueError(f"color_scale must be 'run' (one scale per run and method) or 'example', got {self.color_scale!r}.")
        if self.on_error not in ("warn", "raise"):
            raise ValueError(f"on_error must be 'warn' or 'raise', got {self.on_error!r}.")
        if not (self.target in ("predicted", "label") or (isinstance(self.target, int) and self.target >= 0)):
            raise ValueError(f"target must be 'predicted', 'label' or a class index >= 0, got {self.target!r}.")
        for name in ("num_examples", "top_k", "history_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}.")
        if self.max_tokens is not None and self.max_tokens < 1:
            raise ValueError(f"max_tokens must be positive (or None for the training batch's size), got {self.max_tokens}.")
        if self.budget is not None and not 0 < self.budget <= 1:
            raise ValueError(f"budget is a fraction of the epoch's time in (0, 1], got {self.budget}.")

    @classmethod
    def build(
        cls,
        *,
        n_steps: Optional[int] = None,
        tolerance: Optional[float] = None,
        baseline: Optional[str] = None,
        attribution_config: Optional[AttributionConfig] = None,
        attribution_options: Optional[dict[str, Any]] = None,
        shortcut: Optional[ShortcutRules] = None,
        label_names: Optional[Sequence[str]] = None,
        **fields: Any,
    ) -> "MonitorSettings":
        """Settings from the callbacks' flat keyword arguments. ``attribution_config`` is the base
        (else ``AttributionConfig(n_steps=DEFAULT_STEPS)``); ``n_steps``/``tolerance``/``baseline``
        override it only when given (``None`` means "not given"), and ``attribution_options`` last."""
        base = attribution_config or AttributionConfig(n_steps=DEFAULT_STEPS)
        given = {k: v for k, v in (("n_steps", n_steps), ("tolerance", tolerance), ("baseline", baseline))
                 if v is not None}
        config = replace(base, **given, seed=fields.get("seed", 0), **(attribution_options or {}))
        if fields.get("max_tokens") is not None:
            config = replace(config, max_tokens=fields["max_tokens"])
        names = tuple(label_names) if label_names is not None else None
        return cls(attribution=config, shortcut=shortcut or ShortcutRules(), label_names=names, **fields)

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
            "seed": self.seed,
            "top_k": self.top_k,
            "shortcut": asdict(self.shortcut),
            "shortcut_ignore": list(self.shortcut_ignore),
            "confirm_examples": self.confirm_examples,
            "attribution": asdict(config),
            "budget": budget,
        }
