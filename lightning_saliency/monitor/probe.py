"""The fixed probe set: validation examples sampled once and reused every epoch."""
from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Optional, Sequence

import torch
from torch.utils.data import DataLoader, IterableDataset

_MODEL_INPUT_KEYS = ("input_ids", "attention_mask", "token_type_ids")


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
            or a target's distinct answers, see :func:`~.task_probes.with_answer_classes`).
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


def as_mapping(batch: Any, input_keys: Optional[Sequence[str]]) -> Any:
    """A tuple or list batch (or item) as a dict keyed by ``input_keys``; anything else unchanged."""
    if isinstance(batch, (tuple, list)) and input_keys:
        if len(input_keys) != len(batch):
            raise ValueError(f"input_keys={tuple(input_keys)} names {len(input_keys)} positions, but the validation "
                             f"batches have {len(batch)}; name every position, e.g. ('input_ids', 'attention_mask', 'labels').")
        return dict(zip(input_keys, batch))
    return batch


def label_of(item: Any, label_key: str, input_keys: Optional[Sequence[str]] = None) -> Optional[int]:
    """The integer label of one dataset item (``label_key``, else ``"label"``), or ``None`` (none, or
    token-level labels)."""
    item = as_mapping(item, input_keys)
    value = item.get(label_key) if isinstance(item, Mapping) else None
    if value is None and isinstance(item, Mapping):
        value = item.get("label")
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            return None  # token-level labels (a completion, tags): no class to stratify by
        value = value.item()
    return int(value) if isinstance(value, (int, float)) or hasattr(value, "__index__") else None


def choose_indices(
    dataset: Any, num_examples: int, seed: int, label_key: str = "labels", input_keys: Optional[Sequence[str]] = None
) -> list[int]:
    """Seeded choice of dataset indices, stratified by label when items carry one.

    Uses a private ``random.Random``; labels are read from at most ``max(50 * num_examples, 1000)``
    candidates so large datasets are not scanned whole.
    """
    if isinstance(dataset, IterableDataset) or not hasattr(dataset, "__len__"):
        return list(range(num_examples))
    size = len(dataset)
    if size == 0:
        raise ValueError("The validation dataset is empty, so SaliencyMonitor has no examples to probe. Give the "
                         "validation set examples, or pass the probe texts with probe=ProbeSettings(texts=[...]).")
    rng = random.Random(seed)
    candidates = rng.sample(range(size), min(size, max(50 * num_examples, 1000)))
    by_label: dict[Optional[int], list[int]] = {}
    for index in candidates:
        by_label.setdefault(label_of(dataset[index], label_key, input_keys), []).append(index)
    groups = [by_label[key] for key in sorted(by_label, key=lambda k: (k is None, k if k is not None else 0))]
    chosen: list[int] = []
    while len(chosen) < min(num_examples, size):
        for group in groups:
            if group and len(chosen) < num_examples:
                chosen.append(group.pop(0))
    return chosen


def _fetch(dataset: Any, indices: Sequence[int]) -> list:
    if isinstance(dataset, IterableDataset) or not hasattr(dataset, "__getitem__"):
        items = []
        for position, item in enumerate(iter(dataset)):
            if position >= len(indices):
                break
            items.append(item)
        return items
    return [dataset[i] for i in indices]


def model_inputs(batch: Any, label_key: str = "labels") -> dict[str, torch.Tensor]:
    """The tensors of a collated batch that are model inputs (``labels`` left out)."""
    # Any mapping: collators return dicts, but the tokenizer's own BatchEncoding (what
    # DataCollatorWithPadding and the HF Trainer's default collator return) is a UserDict.
    if not isinstance(batch, Mapping):
        kind = type(batch).__name__
        hint = (" Name the positions of tuple batches with probe=ProbeSettings(input_keys=('input_ids', "
                "'attention_mask', 'labels'))."
                if isinstance(batch, (tuple, list)) else "")
        raise ValueError(
            f"Validation batches are {kind}, not mappings with 'input_ids'.{hint} Or pass the texts with "
            "probe=ProbeSettings(texts=[...]) and a tokenizer, or collate batches into dicts with input_ids / "
            "attention_mask."
        )
    if "input_ids" not in batch:
        raise ValueError(
            f"Validation batches have the keys {sorted(map(str, batch))} but no 'input_ids'. Collate the token ids "
            "under 'input_ids', or pass the texts with probe=ProbeSettings(texts=[...]) and a tokenizer."
        )
    ids = batch["input_ids"]
    return {
        key: value for key, value in batch.items()
        if isinstance(value, torch.Tensor) and value.shape == ids.shape and key not in ("labels", "label", label_key)
    }


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


# The probes whose labels are per token, and what their labels must be.
TOKEN_LABELS = {"spans": "token-classification", "tokens": "completion", "sequence": "seq2seq"}
TOKEN_LABEL_FORMS = {
    "spans": "as token-level tag labels (-100 on special tokens), as DataCollatorForTokenClassification makes them",
    "tokens": "as token-level labels (the completion's token ids, -100 on the prompt), as TRL's completion-only "
              "batches have",
    "sequence": "as the targets' token ids (one row per example, -100 on padding), as DataCollatorForSeq2Seq "
                "makes them",
}


def probe_from_dataset(
    dataset: Any,
    collate_fn: Optional[Callable[[list], Any]],
    num_examples: int = 8,
    seed: int = 0,
    tokenizer: Any = None,
    label_key: str = "labels",
    id_to_token: Optional[Callable[[int], str]] = None,
    indices: Optional[Sequence[int]] = None,
    input_keys: Optional[Sequence[str]] = None,
    labels_kind: str = "class",
    tag_names: Optional[Sequence[str]] = None,
) -> ProbeSet:
    """Sample from ``dataset`` (or take ``indices``) and collate with ``collate_fn``, the same
    function the training framework collates validation batches with. ``input_keys`` names the
    positions of tuple batches; labels are read from ``label_key``. ``labels_kind``: the task's
    (``"class"``; ``"next_token"``: a causal-LM probe, see :func:`~.task_probes.next_token_probe`; ``"tokens"``:
    token-level labels stay with the inputs, as ``labels``, for a completion task; ``"sequence"``:
    a seq2seq target; ``"spans"``: the tag labels stay with the inputs, ``tag_names`` naming the
    tags, and each run makes one row per entity span, see :func:`~.task_probes.entity_rows`)."""
    from lightning_saliency.monitor import task_probes  # builds on ProbeSet: imported here, not at the top

    indices = (list(indices) if indices is not None
               else choose_indices(dataset, num_examples, seed, label_key, input_keys))
    items = _fetch(dataset, indices)
    if not items:
        raise ValueError("The validation dataset yielded no examples; SaliencyMonitor needs examples to probe.")
    indices = indices[: len(items)]
    batch = as_mapping(collate_fn(items) if collate_fn is not None else items, input_keys)
    inputs = model_inputs(batch, label_key)
    inputs.setdefault("attention_mask", torch.ones_like(inputs["input_ids"]))
    labels = None
    if isinstance(batch, Mapping):
        labels = batch.get(label_key, batch.get("label") if label_key == "labels" else None)
    labels = torch.as_tensor(labels).cpu() if labels is not None else None
    tokens, texts, word_ids = describe_tokens(inputs, tokenizer, id_to_token)
    inputs = {k: v.cpu() for k, v in inputs.items()}
    if labels_kind in ("spans", "tokens", "sequence"):  # token-level labels: checked, then kept with the inputs
        rows = inputs["input_ids"].shape[0]
        aligned = labels is not None and labels.shape == inputs["input_ids"].shape
        usable = aligned if labels_kind != "sequence" else (labels is not None and labels.dim() == 2
                                                            and labels.shape[0] == rows)
        if not usable:
            raise ValueError(f"A {TOKEN_LABELS[labels_kind]} probe needs {label_key!r} {TOKEN_LABEL_FORMS[labels_kind]}"
                             f"; the validation batches have "
                             f"{'none' if labels is None else 'shape ' + str(tuple(labels.shape))}.")
        if labels_kind == "spans":  # one example per row here; each run makes its span rows
            return task_probes.tagged_examples(ProbeSet(indices, inputs, None, tokens, texts, word_ids), labels,
                                               tag_names)
        return ProbeSet(indices, {**inputs, "labels": labels}, None, tokens, texts, word_ids)
    if labels_kind == "next_token":
        return task_probes.next_token_probe(ProbeSet(indices, inputs, None, tokens, texts, word_ids), labels, tokenizer)
    labels = labels.reshape(-1) if labels is not None else None
    return ProbeSet(indices, inputs, labels, tokens, texts, word_ids)


def probe_from_dataloader(dataloader: DataLoader, num_examples: int = 8, seed: int = 0, **options: Any) -> ProbeSet:
    """:func:`probe_from_dataset` on the loader's dataset and ``collate_fn``. The loader itself is
    never iterated, so its sampler and workers are left alone."""
    return probe_from_dataset(dataloader.dataset, dataloader.collate_fn, num_examples, seed, **options)


def probe_from_texts(
    texts: Sequence[str], tokenizer: Any, labels: Optional[Sequence[int]] = None, max_length: int = 512,
    labels_kind: str = "class", completions: Optional[Sequence[str]] = None,
) -> ProbeSet:
    """A probe set from raw texts (``probe.texts``), tokenized with ``tokenizer`` and cut to
    ``max_length`` tokens (the model's limit); ``truncated`` says which were cut. With
    ``completions`` each text is a prompt followed by its completion (scored, ``labels``)."""
    from lightning_saliency.monitor import task_probes  # builds on ProbeSet: imported here, not at the top

    if completions is not None and labels_kind == "sequence":
        return task_probes.sequence_probe(texts, completions, tokenizer, max_length)
    if completions is not None:
        return task_probes.completion_probe(texts, completions, tokenizer, max_length)
    encoded = tokenizer(list(texts), padding=True, truncation=True, max_length=max_length, return_tensors="pt")
    full_lengths = [len(ids) for ids in tokenizer(list(texts))["input_ids"]]
    inputs = {k: v for k, v in encoded.items() if k in _MODEL_INPUT_KEYS}
    known = None
    if getattr(encoded, "encodings", None):  # a fast tokenizer already knows the word boundaries
        masks = inputs["attention_mask"].bool().tolist()
        known = [[w for w, m in zip(encoded.word_ids(i), masks[i]) if m] for i in range(len(texts))]
    tokens, _, word_ids = describe_tokens(inputs, tokenizer, None, known)
    label_tensor = torch.as_tensor(list(labels)) if labels is not None else None
    probe = ProbeSet(list(range(len(texts))), inputs, label_tensor, tokens, list(texts), word_ids,
                     [n > max_length for n in full_lengths])
    return task_probes.next_token_probe(probe, None, tokenizer) if labels_kind == "next_token" else probe
