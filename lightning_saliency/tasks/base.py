"""The base of every task and the registry that the attribution core and the monitor read.

A task says what one example's attributed scalar is (the head over the model's logits), where a
probe example's label comes from, which class names a record shows, and whether the text-and-label
evidence (causal checks, the training-set artifact table) applies. A task is one class in one file
of this package, registered with ``@register_task``, as a method is in ``attribution/methods``.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import replace
from typing import Any, Callable, ClassVar, Mapping, Optional, Sequence

import torch

from lightning_saliency.probes import ProbeSet, text_probe
from lightning_saliency.probes.answers import with_completion_texts
from lightning_saliency.registry import Registry

# Asked by a task whose rows depend on the live model (a token classifier's predicted entities):
# the model's best class per token of ``examples``, the named input entries left out of the call.
Predict = Callable[[ProbeSet, tuple[str, ...]], torch.Tensor]

TASKS: "Registry[Task]" = Registry("task", "register one with lightning_saliency.tasks.register_task")


class Task(ABC):
    """What is attributed for one kind of model.

    Class attributes:
        name: the ``task=`` name.
        input_dims: the dimensions of ``input_ids`` (2: ``(batch, seq)``; 3: ``(batch, choices, seq)``).
        labels_from_column: a probe example's truth is one class in the batches' label column
            (``ProbeSettings.label_key``); the other tasks keep it with the inputs (token labels,
            answers, the next token), as their :meth:`probe_from_batch` reads it.
        token_labels_form: for tasks that keep token-level labels with the inputs, what the label
            entry must hold (the error when the validation batches lack it).
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
    labels_from_column: ClassVar[bool] = True
    token_labels_form: ClassVar[str] = ""
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

    def probe_from_batch(self, examples: ProbeSet, labels: Optional[torch.Tensor], label_key: str,
                         tokenizer: Any, tag_names: Optional[Sequence[str]]) -> ProbeSet:
        """The probe this task attributes, from collated validation ``examples`` (their ``labels``
        unset) and the batch's label entry ``labels`` (``None``: the batch has none). By default one
        class per example.

        Args:
            examples: the collated examples, without labels.
            labels: the batch's ``label_key`` entry, on CPU, or ``None``.
            label_key: its name, for errors.
            tokenizer: the model's tokenizer.
            tag_names: the class names (a token classifier's tags), or ``None``.

        Raises:
            ValueError: the labels are not what this task reads (say what they must be).
        """
        return replace(examples, labels=labels.reshape(-1) if labels is not None else None)

    def probe_from_texts(self, texts: Sequence[str], tokenizer: Any, labels: Optional[Sequence[int]],
                         max_length: int, completions: Optional[Sequence[str]]) -> ProbeSet:
        """The probe from given texts (``probe.texts``, ``probe.labels`` as class indices, and
        ``probe.completions`` for tasks that score one), cut to ``max_length`` tokens."""
        return text_probe(texts, tokenizer, labels, max_length)

    def with_scored_texts(self, probe: ProbeSet, tokenizer: Any) -> ProbeSet:
        """``probe`` with its prompts and scored sequences as separate texts, for tasks that score
        one (default: unchanged)."""
        return probe

    def rows(self, examples: ProbeSet, tag_names: Optional[Sequence[str]], predict: Optional[Predict]) -> tuple[ProbeSet, bool]:
        """The rows a run attributes for ``examples`` (default: the examples themselves), and whether
        rows the live model should have given (``predict``; ``None``: the labelled ones) were
        missing, so the labelled ones stand in."""
        return examples, False

    def token_labels(self, examples: ProbeSet, labels: Optional[torch.Tensor], label_key: str) -> torch.Tensor:
        """The batch's token-level ``labels`` for a task that keeps them with the inputs: shaped like
        ``input_ids`` (``targets_aligned``), or one row of its own length per example.

        Raises:
            ValueError: naming the shape found and :attr:`token_labels_form`.
        """
        ids = examples.inputs["input_ids"]
        usable = labels is not None and (labels.shape == ids.shape if self.targets_aligned
                                         else labels.dim() == 2 and labels.shape[0] == ids.shape[0])
        if not usable:
            found = "none" if labels is None else "shape " + str(tuple(labels.shape))
            raise ValueError(f"A {self.name} probe needs {label_key!r} {self.token_labels_form}; the validation "
                             f"batches have {found}.")
        return labels

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
    labels_from_column = False
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

    def probe_from_batch(self, examples: ProbeSet, labels: Optional[torch.Tensor], label_key: str,
                         tokenizer: Any, tag_names: Optional[Sequence[str]]) -> ProbeSet:
        labels = self.token_labels(examples, labels, label_key)
        return replace(examples, inputs={**examples.inputs, "labels": labels})

    def with_scored_texts(self, probe: ProbeSet, tokenizer: Any) -> ProbeSet:
        return with_completion_texts(probe, tokenizer, self.targets_aligned)

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
