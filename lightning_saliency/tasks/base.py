"""The base of every task and the registry that the attribution core and the monitor read.

A task says what one example's attributed scalar is (the head over the model's logits), where a
probe example's label comes from, which class names a record shows, and whether the text-and-label
evidence (causal checks, the training-set artifact table) applies. A task is one class in one file
of this package, registered with ``@register_task``, as a method is in ``attribution/methods``.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar, Mapping, Optional, Sequence

import torch

from lightning_saliency.registry import Registry

TASKS: "Registry[Task]" = Registry("task", "register one with lightning_saliency.tasks.register_task")


class Task(ABC):
    """What is attributed for one kind of model.

    Class attributes:
        name: the ``task=`` name.
        input_dims: the dimensions of ``input_ids`` (2: ``(batch, seq)``; 3: ``(batch, choices, seq)``).
        probe_labels: where a probe example's truth comes from: ``"class"`` (a label column, one
            class per example), ``"next_token"`` (the token that follows the text; the text is the
            prompt) or ``"tokens"`` (token-level labels that stay with the inputs, ``-100`` where
            nothing is scored: a completion after its prompt).
        target_keys: input entries the head reads (e.g. ``labels``), padded with ``-100``; the
            model does not take them unless ``model_takes_targets``.
        targets_aligned: the target entries are shaped like ``input_ids`` (a completion's labels
            on its own positions); else each is a sequence of its own length (a seq2seq target).
        model_takes_targets: the model gets the target entries too (an encoder-decoder builds its
            decoder inputs from ``labels``).
        text_label_evidence: one text and one class per example, so the causal checks (edit the
            text, watch the class) and the artifact table (token-label association) apply.
        last_logits_only: only the last real position's logits are attributed, so a model that
            accepts ``logits_to_keep`` is asked for those alone.
        erasure_faithfulness: ERASER's comprehensiveness and sufficiency (class probabilities under
            token removal) mean something for this task.
        one_score: the head gives one score per row (a sequence's log-probability), so the only
            target is that score (``target="predicted"``).
        answer_classes: the scored sequences are answers; when the examples share a few of them
            (classification by generation) each answer is a class, and the evidence of
            ``text_label_evidence`` applies to prompts and answers.
    """

    name: ClassVar[str]
    input_dims: ClassVar[int] = 2
    probe_labels: ClassVar[str] = "class"
    target_keys: ClassVar[tuple[str, ...]] = ()
    targets_aligned: ClassVar[bool] = True
    model_takes_targets: ClassVar[bool] = False
    erasure_faithfulness: ClassVar[bool] = True
    one_score: ClassVar[bool] = False
    text_label_evidence: ClassVar[bool] = False
    last_logits_only: ClassVar[bool] = False
    answer_classes: ClassVar[bool] = False

    @abstractmethod
    def head(self, logits: torch.Tensor, last_positions: torch.Tensor,
             targets: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """One score vector per row, ``(N, classes)``, from the model's logits; ``last_positions``
        holds each row's last real position (for heads read at one position), ``targets`` the
        rows' entries of :attr:`target_keys`."""

    @property
    def labels_from_column(self) -> bool:
        """Whether the truth comes from the batches' label column (``ProbeSettings.label_key``); the
        other tasks keep it with the inputs (token labels, answers, the next token)."""
        return self.probe_labels == "class"

    def check_given_probe(self, texts: bool, completions: bool) -> None:
        """Refuse a probe given as texts (``probe.texts``, with or without ``probe.completions``)
        that this task cannot read; every task takes a probe sampled from the validation data.

        Raises:
            ValueError: naming what the task needs instead.
        """

    def fixed_positions(self, inputs: Mapping[str, torch.Tensor]) -> Optional[torch.Tensor]:
        """Positions (shaped like ``input_ids``) that are part of the scored target, not of what is
        explained: kept by baselines, never attributed, never words (``None``: none)."""
        return None

    def probability(self, heads: torch.Tensor) -> torch.Tensor:
        """What a record calls the prediction's probability, per row (default: the softmax's largest)."""
        return heads.float().softmax(dim=-1).max(dim=-1).values

    def class_names(self, tokenizer: Any, configured: Optional[Sequence[str]]) -> Optional[Sequence[str]]:
        """The class names for records and captions (``configured``: the model config's)."""
        return configured

    @staticmethod
    def expect_dims(logits: torch.Tensor, dims: int, name: str, hint: str) -> None:
        if logits.dim() != dims:
            raise ValueError(f"task={name!r} expects logits of {dims} dimensions, got shape {tuple(logits.shape)}; "
                             f"{hint}")

    def required_target(self, targets: Mapping[str, torch.Tensor], key: str, hint: str) -> torch.Tensor:
        """The rows' target entry ``key``; a ``ValueError`` saying what it must hold (``hint``) without it."""
        found = targets.get(key)
        if found is None:
            raise ValueError(f"task={self.name!r} needs {hint}")
        return found


IGNORED = -100  # a label that is not scored (a prompt token, padding), as Hugging Face losses read it


def sequence_log_prob(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``(N, 1)``: per row, the sum over positions whose label is not ``IGNORED`` of the log-prob
    the logits at that position give the label (the score of a completion or a target)."""
    labels = labels.to(logits.device)
    log_probs = logits.float().log_softmax(dim=-1).gather(2, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return (log_probs * (labels != IGNORED)).sum(dim=1, keepdim=True)


class SequenceScoreTask(Task):
    """A task whose one score per row is a sequence's log-probability (a completion, a target),
    read from ``labels`` under teacher forcing: the record's probability is that sequence's, and
    ERASER's faithfulness, whose scores are class probabilities under removal, does not apply.

    Class attributes:
        logits_form: what the model's logits are, for the error on logits of another shape.
        labels_form: what ``labels`` must hold, for the error when they are missing.
    """

    one_score = True
    erasure_faithfulness = False
    answer_classes = True
    target_keys = ("labels",)
    logits_form: ClassVar[str]
    labels_form: ClassVar[str]

    def head(self, logits: torch.Tensor, last_positions: torch.Tensor,
             targets: Mapping[str, torch.Tensor]) -> torch.Tensor:
        self.expect_dims(logits, 3, self.name, self.logits_form)
        labels = self.required_target(targets, "labels", self.labels_form)
        return sequence_log_prob(*self.scored(logits, labels))

    def scored(self, logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The logits and the labels they predict, position by position (default: the same positions)."""
        return logits, labels

    def probability(self, heads: torch.Tensor) -> torch.Tensor:
        return heads.float()[:, 0].exp()


def register_task(cls: type[Task]) -> type[Task]:
    """Class decorator: make the task available as ``task=cls.name`` everywhere.

    Raises:
        ValueError: a task of that name is already registered.
    """
    return TASKS.register(cls)


def task_names() -> tuple[str, ...]:
    return tuple(TASKS)


def get_task(name: str) -> Task:
    """The registered task ``name``; ``ValueError`` naming the choices otherwise."""
    return TASKS.get_or_raise(name)
