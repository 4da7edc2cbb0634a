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

from typing import Mapping, Optional, Sequence

import torch

from lightning_saliency.tasks.base import Task, register_task

OUTSIDE = "O"


@register_task
class TokenClassification(Task):
    name = "token_classification"
    probe_labels = "spans"
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
