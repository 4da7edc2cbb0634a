"""The probe's lifecycle: how the live model is reached, the class names, the fixed probe set and
the causal checks' validation slice (each sampled once, again from the stored indices after a
resume), and what they imply for a run: a token classifier's span rows, the answer classes and the
causal checks' settings."""
from __future__ import annotations

from typing import Any, Optional, Sequence

from lightning_saliency.attribution import AttributionConfig
from lightning_saliency.attribution.context import DEFAULT_MAX_TOKENS
from lightning_saliency.monitor.evidence.causal import AnswerClasses, CausalSettings
from lightning_saliency.monitor.model_access import ModelAccess
from lightning_saliency.monitor.notices import warn
from lightning_saliency.monitor.runner import predicted_tags
from lightning_saliency.monitor.sampling import sample_confirmation, sample_probe, warn_small_probe
from lightning_saliency.probes import ProbeSet
from lightning_saliency.settings import MonitorSettings
from lightning_saliency.tasks import get_task


def class_names(settings: MonitorSettings, tokenizer: Any, configured: Optional[Sequence[str]]) -> Optional[Sequence[str]]:
    """The records' class names: ``output.label_names``, else the task's (a causal LM's decoded
    vocabulary), else the model config's ``id2label``."""
    if settings.output.label_names is not None:
        return settings.output.label_names
    return get_task(settings.task).class_names(tokenizer, configured)


class ProbeLifecycle:
    """The probe set and the causal checks' slice of one fit, and the model access they need.

    Args:
        settings: the validated settings (never changed here).
    """

    def __init__(self, settings: MonitorSettings) -> None:
        self.settings = settings
        self.access: Optional[ModelAccess] = None
        self.max_length = 512
        self.label_names: Optional[Sequence[str]] = settings.output.label_names
        self.indices: Optional[list[int]] = None  # the probe's dataset indices, kept in the checkpoint
        self.probe: Optional[ProbeSet] = None
        self.confirmation: Optional[ProbeSet] = None

    def connect(self, access: ModelAccess, max_length: int, configured_names: Optional[Sequence[str]],
                rank: int = 0) -> None:
        """Fix how the live model is called (at the adapter's setup)."""
        self.access, self.max_length = access, max_length
        self.label_names = class_names(self.settings, access.tokenizer, configured_names)
        if rank == 0:
            warn_small_probe(self.settings)

    def sample(self, validation: Any, rank: int = 0) -> tuple[ProbeSet, bool]:
        """The fixed probe set, and whether it was sampled by this call (on first use; from the
        stored indices after a resume)."""
        if self.probe is not None:
            return self.probe, False
        self.probe = sample_probe(self.settings, self.access, validation, self.max_length, self.indices,
                                  speak=rank == 0, class_names=self.label_names)
        self.indices = list(dict.fromkeys(self.probe.indices))
        return self.probe, True

    def confirmation_set(self, validation: Any, rank: int) -> ProbeSet:
        """The causal checks' validation slice, sampled once."""
        if self.confirmation is None:
            probe, _ = self.sample(validation, rank)
            self.confirmation = sample_confirmation(self.settings, self.access, validation, probe, self.max_length,
                                                    speak=rank == 0)
        return self.confirmation

    def needs_validation(self) -> bool:
        """Whether the next run may sample from the validation loader (the probe set or the causal
        checks' slice are not sampled yet), so an adapter builds a loader only then."""
        wants_checks = self.settings.evidence.confirm_examples > 0 and self.settings.probe.texts is None
        return self.probe is None or (wants_checks and self.confirmation is None)

    def forget(self, indices: Optional[list[int]]) -> None:
        """After a resume: sample again, from ``indices``."""
        self.indices, self.probe, self.confirmation = indices, None, None

    def rows(self, examples: ProbeSet, config: AttributionConfig, label: str, rank: int) -> ProbeSet:
        """The rows a run attributes, as the task makes them: the examples, or a token classifier's
        entity spans (``probe.entity_spans``); when the model predicts no entity at all (early in
        training), the labelled ones, said once per run."""
        max_tokens = config.max_tokens or DEFAULT_MAX_TOKENS

        def predict(rows: ProbeSet, left_out: tuple[str, ...]):
            return predicted_tags(self.access, rows, max_tokens, left_out)

        live = None if self.settings.probe.entity_spans == "labelled" else predict
        rows, fell_back = get_task(self.settings.task).rows(examples, self.label_names, live)
        if fell_back and rank == 0:
            warn(f"SaliencyMonitor: at run {label!r} the model predicts no entity in the probe examples; their "
                 "labelled entities are attributed instead.")
        return rows

    def text_label_evidence(self) -> bool:
        """Whether the causal checks apply: one text and one class per example, or a completion's
        or target's few answers as classes (the model's answer is the likeliest of them)."""
        return get_task(self.settings.task).text_label_evidence or (self.probe is not None
                                                                   and self.probe.answers is not None)

    def answer_classes(self, probe: ProbeSet) -> AnswerClasses:
        return AnswerClasses(tuple(probe.answers), get_task(self.settings.task).targets_aligned)

    def causal_settings(self, config: AttributionConfig) -> CausalSettings:
        s, probe = self.settings, self.probe
        if probe is not None and probe.answers is not None:
            return CausalSettings(config, s.task, s.probe.seed, self.max_length, probe.label_names,
                                  self.answer_classes(probe), s.evidence.min_effect)
        return CausalSettings(config, s.task, s.probe.seed, self.max_length, self.label_names,
                              min_effect=s.evidence.min_effect)
