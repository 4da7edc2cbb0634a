"""Token classification (NER, tagging): one row per entity span of an example, skipping ``O``.

A row's class scores are the span's summed per-token log-probabilities of each tag, so the
attributed scalar for a tag is the sum of its log-probs over the span's tokens, and the span's
predicted tag is the best of them. Rows of all spans of all examples are batched through the
chunker like any other rows; transformers-interpret runs one IG per token instead.

By default the spans are those the live model predicts at each run (``probe.entity_spans=
"predicted"``), read on the positions the validation labels score (a word's first piece: B-/I-
tags, ``-100`` on special tokens and subword continuations, as ``DataCollatorForTokenClassification``
makes them). A false entity is a row too, labelled with its true tag ``O``: a shortcut often shows
as an entity the model puts after a cue word where there is none. ``"labelled"`` attributes the
labels' spans instead, the same rows every run. A suspect is a word associated with a tag: the
association rule reads each row's class as its tag (its true tag as the label, its predicted
tag as the prediction).
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any, Mapping, Optional, Sequence

import torch

from lightning_saliency.probes import ProbeSet
from lightning_saliency.tasks.base import Predict, Task, register_task

OUTSIDE = "O"


@register_task
class TokenClassification(Task):
    name = "token_classification"
    labels_from_column = False
    token_labels_form = ("as token-level tag labels (-100 on special tokens), as DataCollatorForTokenClassification "
                         "makes them")
    target_keys = ("span_mask",)
    erasure_faithfulness = False  # removal would also remove the span itself: ERASER does not apply

    def check_given_probe(self, texts: bool, completions: bool) -> None:
        if texts:
            raise ValueError(f"task={self.name!r} takes its rows (entity spans) from the validation data's tag "
                             "labels: leave probe.texts unset.")

    def head(self, logits: torch.Tensor, last_positions: torch.Tensor,
             targets: Mapping[str, torch.Tensor]) -> torch.Tensor:
        self.expect_dims(logits, 3, self.name, "a token classifier's logits are (batch, seq, tags).")
        span = self.required_target(targets, "span_mask", "each row's span as 'span_mask' (1 on the span's tokens); "
                                    "the monitor builds the rows from token-level tag labels.")
        inside = (span.to(logits.device) == 1).unsqueeze(-1)
        return (logits.float().log_softmax(dim=-1) * inside).sum(dim=1)

    def probe_from_batch(self, examples: ProbeSet, labels: Optional[torch.Tensor], label_key: str,
                         tokenizer: Any, tag_names: Optional[Sequence[str]]) -> ProbeSet:
        # One example per row here; each run makes its span rows (rows()).
        return tagged_examples(examples, self.token_labels(examples, labels, label_key), tag_names)

    def rows(self, examples: ProbeSet, tag_names: Optional[Sequence[str]],
             predict: Optional[Predict]) -> tuple[ProbeSet, bool]:
        """One row per entity span: the labelled ones, or (``predict``) the ones the live model
        predicts; when it predicts none at all (early in training), the labelled ones, flagged."""
        if predict is None:
            return entity_rows(examples, tag_names), False
        try:
            return entity_rows(examples, tag_names, predict(examples, (TAG_LABELS,))), False
        except NoEntities:
            return entity_rows(examples, tag_names), True


def entity_type(name: Optional[str]) -> Optional[str]:
    """``PER`` for ``B-PER``/``I-PER``; ``None`` for ``O`` (outside every entity)."""
    if name is None or name == OUTSIDE:
        return None
    return name[2:] if name[:2] in ("B-", "I-", "E-", "S-") else name


def entity_spans(labels: Sequence[int], names: Optional[Sequence[str]]) -> list[tuple[int, int, int]]:
    """``(first, last, tag)`` of each entity in one example's token labels: a run of tokens whose
    tags name the same entity type, a ``B-`` tag starting a new one; ``-100`` tokens (subword
    continuations) stay inside the run they are in. Without tag names, 0 is outside and each
    other id is its own type."""
    def kind(label: int) -> Optional[str]:
        if names is None:
            return None if label == 0 else str(label)
        return entity_type(names[label]) if 0 <= label < len(names) else None

    spans: list[tuple[int, int, int]] = []
    start, current, tag, last = None, None, None, None
    for position, label in enumerate(labels):
        if label == -100:
            continue
        k = kind(label)
        begins = names is not None and 0 <= label < len(names) and names[label].startswith(("B-", "S-"))
        if k is not None and k == current and not begins:
            last = position
            continue
        if current is not None:
            spans.append((start, last, tag))
        start, current, tag, last = (position, k, label, position) if k is not None else (None, None, None, None)
    if current is not None:
        spans.append((start, last, tag))
    return spans


# A token-classification probe keeps each example's tag labels here until a run makes its span rows.
TAG_LABELS = "tag_labels"


class NoEntities(ValueError):
    """No probe example holds an entity (every tag is ``O`` or ``-100``)."""


def tagged_examples(probe: ProbeSet, labels: torch.Tensor, tag_names: Optional[Sequence[str]]) -> ProbeSet:
    """The examples of a token-classification probe with their tag ``labels`` kept (``-100`` on
    special tokens and further pieces); it must label at least one entity."""
    span_rows(probe, labels, tag_names)  # raises NoEntities now, at setup, rather than at the first run
    return replace(probe, inputs={**probe.inputs, TAG_LABELS: labels})


def entity_rows(probe: ProbeSet, tag_names: Optional[Sequence[str]],
                predicted: Optional[torch.Tensor] = None) -> ProbeSet:
    """One row per entity span of :func:`tagged_examples`: of the labels, or of ``predicted`` (the
    model's tag per token), read on the labelled positions (a word's first piece); a predicted
    span's row is labelled with the tag its first token truly has (``O`` for a false entity)."""
    labels = probe.inputs[TAG_LABELS]
    if predicted is None:
        return span_rows(probe, labels, tag_names)
    return span_rows(probe, torch.where(labels == -100, labels, predicted.to(labels.dtype)), tag_names, labels)


def span_rows(probe: ProbeSet, labels: torch.Tensor, tag_names: Optional[Sequence[str]],
              truths: Optional[torch.Tensor] = None) -> ProbeSet:
    """One row per entity span of each example's tag ``labels``: the example's inputs with a
    ``span_mask`` (1 on the span's tokens, every piece of its words included) and the span's tag as
    the row's label (``truths``' tag at the span's first token, when given). Rows keep their
    example's dataset index; ``spans`` tells them apart."""
    rows, masks, tags, spans = [], [], [], []
    for i in range(len(probe)):
        real = probe.inputs["attention_mask"][i].bool().nonzero().flatten().tolist()
        words = probe.word_ids[i]
        for first, last, tag in entity_spans(labels[i, real].tolist(), tag_names):
            if truths is not None:
                tag = int(truths[i, real[first]])
            covered = {words[p] for p in range(first, last + 1) if words[p] is not None}
            members = [p for p in range(len(real)) if words[p] in covered] if covered else list(range(first, last + 1))
            mask = torch.zeros_like(probe.inputs["input_ids"][i])
            mask[[real[p] for p in members]] = 1
            rows.append(i)
            masks.append(mask)
            tags.append(tag)
            spans.append([min(members), max(members)])
    if not rows:
        raise NoEntities("The token-classification probe examples hold no entity (every tag is O or -100).")
    picked = probe.select(rows)
    inputs = {k: v for k, v in picked.inputs.items() if k != TAG_LABELS}
    return replace(picked, inputs={**inputs, "span_mask": torch.stack(masks)}, labels=torch.tensor(tags), spans=spans)
