"""The probe set: a few examples as one collated batch, with what records and heatmaps need to
print them. Every task reads its probe into this one type (``Task.probe_from_batch``,
``Task.probe_from_texts``); the monitor samples it once per fit."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence

import torch

MODEL_INPUT_KEYS = ("input_ids", "attention_mask", "token_type_ids")


@dataclass
class ProbeSet:
    """Probe examples as one collated batch plus what the heatmaps need to print them.

    Attributes:
        indices: dataset indices (positions from the start for iterable datasets).
        inputs: model inputs on CPU (``input_ids``, ``attention_mask``, optional ``token_type_ids``).
        labels: true labels when the data has them.
        tokens: token strings per example, padding removed.
        texts: decoded text per example.
        word_ids: word index per token (``None`` for special tokens) when a fast tokenizer gives it.
        truncated: per example, whether its text was cut to the model's length.
        spans: per row, the ``[first, last]`` token positions of the span it explains (token
            classification: one row per entity span, so indices repeat); ``None``: whole examples.
        label_names: names of ``labels`` when the probe defines its classes itself (a completion's
            or a target's distinct answers, see :func:`~.answers.with_answer_classes`).
        roles: per example and token, the chat turn it belongs to (``system``, ``user``,
            ``assistant``; ``None`` for the template's own tokens), when the tokenizer has a chat
            template and the example is a rendered conversation; else ``None``.
        answers: with ``label_names`` from answers, each class's answer as token ids (what the
            causal checks score after an edited prompt to find the model's answer).
        completions: per example, the scored completion or target as text (then ``texts`` hold
            the prompts alone); ``None`` for tasks that score no sequence.
    """

    indices: list[int]
    inputs: dict[str, torch.Tensor]
    labels: Optional[torch.Tensor]
    tokens: list[list[str]]
    texts: list[str]
    word_ids: list[list[Optional[int]]]
    truncated: list[bool] = field(default_factory=list)
    roles: Optional[list[list[Optional[str]]]] = None
    spans: Optional[list[Optional[list[int]]]] = None
    label_names: Optional[list[str]] = None
    answers: Optional[list[tuple[int, ...]]] = None
    completions: Optional[list[str]] = None

    def __post_init__(self) -> None:
        if not self.truncated:
            self.truncated = [False] * len(self.indices)

    def __len__(self) -> int:
        return len(self.indices)

    def lengths(self) -> list[int]:
        """Tokens per example, padding excluded."""
        return [len(t) for t in self.tokens]

    def select(self, rows: Sequence[int]) -> "ProbeSet":
        """The examples at positions ``rows`` (in that order), as a probe set of their own."""
        rows = list(rows)
        index = torch.as_tensor(rows, dtype=torch.long)
        return ProbeSet(
            [self.indices[r] for r in rows], {k: v[index] for k, v in self.inputs.items()},
            None if self.labels is None else self.labels[index], [self.tokens[r] for r in rows],
            [self.texts[r] for r in rows], [self.word_ids[r] for r in rows], [self.truncated[r] for r in rows],
            None if self.roles is None else [self.roles[r] for r in rows],
            None if self.spans is None else [self.spans[r] for r in rows], self.label_names, self.answers,
            None if self.completions is None else [self.completions[r] for r in rows],
        )


def describe_tokens(
    inputs: dict[str, torch.Tensor],
    tokenizer: Any,
    id_to_token: Optional[Callable[[int], str]],
    known_word_ids: Optional[list[list[Optional[int]]]] = None,
):
    """Tokens, decoded text and word ids per example (word ids re-derived unless known)."""
    if tokenizer is not None:
        largest = int(inputs["input_ids"].max()) if inputs["input_ids"].numel() else -1
        if largest >= len(tokenizer):
            raise ValueError(
                f"The validation data holds token id {largest}, but the tokenizer has only {len(tokenizer)} tokens: "
                "it is not the tokenizer the data was tokenized with. Pass the model's own tokenizer "
                "(SaliencyMonitor(tokenizer=...))."
            )
    tokens, texts, word_ids = [], [], []
    for i, (row, mask) in enumerate(zip(inputs["input_ids"], inputs["attention_mask"])):
        ids = row[mask.bool()].tolist()
        if tokenizer is not None:
            tokens.append(tokenizer.convert_ids_to_tokens(ids))
            texts.append(tokenizer.decode(ids, skip_special_tokens=True))
        else:
            tokens.append([id_to_token(i) if id_to_token else str(i) for i in ids])
            texts.append(" ".join(tokens[-1]))
        word_ids.append(known_word_ids[i] if known_word_ids is not None else _word_ids(tokenizer, ids, texts[-1]))
    return tokens, texts, word_ids


def _word_ids(tokenizer: Any, ids: list[int], text: str) -> list[Optional[int]]:
    if tokenizer is not None and getattr(tokenizer, "is_fast", False):
        encoding = tokenizer(text, add_special_tokens=True)
        if encoding["input_ids"] == ids:
            return encoding.word_ids()
        without = tokenizer(text, add_special_tokens=False)
        if without["input_ids"] == ids:
            return without.word_ids()
    return list(range(len(ids)))  # unknown word boundaries: every token is its own word



def text_probe(texts: Sequence[str], tokenizer: Any, labels: Optional[Sequence[int]] = None,
               max_length: int = 512) -> ProbeSet:
    """A probe set from raw texts, tokenized with ``tokenizer`` and cut to ``max_length`` tokens
    (the model's limit); ``truncated`` says which were cut; ``labels``: one class per text."""
    encoded = tokenizer(list(texts), padding=True, truncation=True, max_length=max_length, return_tensors="pt")
    full_lengths = [len(ids) for ids in tokenizer(list(texts))["input_ids"]]
    inputs = {k: v for k, v in encoded.items() if k in MODEL_INPUT_KEYS}
    known = None
    if getattr(encoded, "encodings", None):  # a fast tokenizer already knows the word boundaries
        masks = inputs["attention_mask"].bool().tolist()
        known = [[w for w, m in zip(encoded.word_ids(i), masks[i]) if m] for i in range(len(texts))]
    tokens, _, word_ids = describe_tokens(inputs, tokenizer, None, known)
    label_tensor = torch.as_tensor(list(labels)) if labels is not None else None
    return ProbeSet(list(range(len(texts))), inputs, label_tensor, tokens, list(texts), word_ids,
                    [n > max_length for n in full_lengths])
