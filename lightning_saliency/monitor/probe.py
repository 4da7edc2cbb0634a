"""Reading the probe from the validation data: a seeded, label-stratified choice of examples,
collated by the validation loader's own collate function, read as the task reads its labels."""
from __future__ import annotations

import random
from typing import Any, Callable, Mapping, Optional, Sequence

import torch
from torch.utils.data import DataLoader, IterableDataset

from lightning_saliency.attribution import SpecialTokens
from lightning_saliency.attribution.tokens import special_token_mask
from lightning_saliency.probes import ProbeSet, describe_tokens
from lightning_saliency.tasks import Task, get_task

EMPTY_EXAMPLE = "nothing to attribute: the example holds only special tokens (an empty text?)"
UNKNOWN_WORDS = "nothing to attribute: every word of the example is unknown to the tokenizer ([UNK])"


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
    task: Optional[Task] = None,
    tag_names: Optional[Sequence[str]] = None,
) -> ProbeSet:
    """Sample from ``dataset`` (or take ``indices``) and collate with ``collate_fn``, the same
    function the training framework collates validation batches with. ``input_keys`` names the
    positions of tuple batches; labels are read from ``label_key``, as ``task`` reads them
    (:meth:`~lightning_saliency.tasks.Task.probe_from_batch`; ``None``: one class per example),
    ``tag_names`` naming the classes."""
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
    examples = ProbeSet(indices, {k: v.cpu() for k, v in inputs.items()}, None, tokens, texts, word_ids)
    return (task or get_task("classification")).probe_from_batch(examples, labels, label_key, tokenizer, tag_names)


def probe_from_dataloader(dataloader: DataLoader, num_examples: int = 8, seed: int = 0, **options: Any) -> ProbeSet:
    """:func:`probe_from_dataset` on the loader's dataset and ``collate_fn``. The loader itself is
    never iterated, so its sampler and workers are left alone."""
    return probe_from_dataset(dataloader.dataset, dataloader.collate_fn, num_examples, seed, **options)


def probe_from_texts(texts: Sequence[str], tokenizer: Any, labels: Optional[Sequence[int]] = None,
                     max_length: int = 512, task: Optional[Task] = None,
                     completions: Optional[Sequence[str]] = None) -> ProbeSet:
    """A probe set from raw texts (``probe.texts``), tokenized with ``tokenizer`` and cut to
    ``max_length`` tokens (the model's limit), as ``task`` reads them (``None``: one class per
    text, ``labels``); with ``completions`` each text is a prompt followed by its scored completion."""
    return (task or get_task("classification")).probe_from_texts(texts, tokenizer, labels, max_length, completions)


def attributable_rows(probe: ProbeSet, special_tokens: SpecialTokens, rows: Sequence[int],
                      max_length: Optional[int] = None) -> tuple[list[int], list[tuple[int, str]]]:
    """The rows worth trying, and the others with the reason (skipped untried): an example without
    a regular token (what :func:`~lightning_saliency.attribution.tokens.prepare_batch` would fail
    the batch on), or one longer than the model's ``max_length`` positions."""
    ids, mask = probe.inputs["input_ids"], probe.inputs["attention_mask"].bool()
    regular = mask & ~special_token_mask(ids, special_tokens)
    flat = len(ids), -1
    has_regular = regular.reshape(flat).any(dim=1).tolist()
    unknown_only = ((mask & (ids == special_tokens.unk_id)).reshape(flat).any(dim=1).tolist()
                    if special_tokens.unk_id is not None else [False] * len(ids))
    lengths = mask.reshape(len(ids), -1, ids.shape[-1]).sum(dim=-1).amax(dim=-1).tolist()
    good, skipped = [], []
    for row in rows:
        if max_length is not None and lengths[row] > max_length:
            skipped.append((row, f"longer than the model's {max_length} positions ({lengths[row]} tokens)"))
        elif not has_regular[row]:
            skipped.append((row, UNKNOWN_WORDS if unknown_only[row] else EMPTY_EXAMPLE))
        else:
            good.append(row)
    return good, skipped
