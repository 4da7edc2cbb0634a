"""Tokenized inputs: validation, special tokens, baselines and per-example trimming.

An example is the slice ``input_ids[i]``: shape ``(S,)`` for one sequence or ``(C, S)`` for the
``C`` choices of a multiple-choice example. Every function keeps that trailing layout.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Optional, Union

import torch

from lightning_saliency.attribution.isolation import detach_from_inference

BASELINES = ("pad", "mask", "unk", "zero")
_DROPPED_KEYS = {"labels", "label", "special_tokens_mask", "offset_mapping", "overflow_to_sample_mapping", "length"}


@dataclass(frozen=True)
class SpecialTokens:
    """Token ids attribution treats specially.

    Args:
        pad_id: id used for padding and for the ``"pad"`` baseline.
        special_ids: ids kept fixed in every baseline ([CLS], [SEP], ...) and flagged in results.
        mask_id: id for the ``"mask"`` baseline and occlusion with it.
        unk_id: id for the ``"unk"`` baseline.
    """

    pad_id: int = 0
    special_ids: frozenset = field(default_factory=frozenset)
    mask_id: Optional[int] = None
    unk_id: Optional[int] = None

    @classmethod
    def from_tokenizer(cls, tokenizer: Any) -> "SpecialTokens":
        """Read the ids from a Hugging Face tokenizer (``PreTrainedTokenizerBase``)."""
        pad_id = getattr(tokenizer, "pad_token_id", None)
        if pad_id is None:
            pad_id = getattr(tokenizer, "eos_token_id", None)
        if pad_id is None:
            raise ValueError(
                "The tokenizer has neither a pad nor an eos token; set `tokenizer.pad_token` or pass "
                "`special_tokens=SpecialTokens(pad_id=...)`."
            )
        ids = frozenset(int(i) for i in getattr(tokenizer, "all_special_ids", []) or [])
        return cls(
            pad_id=int(pad_id),
            special_ids=ids | {int(pad_id)},
            mask_id=getattr(tokenizer, "mask_token_id", None),
            unk_id=getattr(tokenizer, "unk_token_id", None),
        )

    def replacement_id(self, baseline: str) -> int:
        """The token id that stands in for a removed token under ``baseline``."""
        if baseline not in BASELINES:
            raise ValueError(f"Unknown baseline {baseline!r}; choose one of {BASELINES}.")
        chosen = {"pad": self.pad_id, "zero": self.pad_id, "mask": self.mask_id, "unk": self.unk_id}[baseline]
        if chosen is None:
            raise ValueError(
                f"baseline={baseline!r} needs the tokenizer's {baseline} token, which is not set; "
                "use baseline='pad' or pass a tokenizer that defines it."
            )
        return int(chosen)


@dataclass
class TokenBatch:
    """A validated batch. ``inputs`` holds every model input shaped like ``input_ids``;
    ``sequences`` the per-row entries of another length (a seq2seq target), never trimmed."""

    inputs: dict[str, torch.Tensor]
    special_mask: torch.Tensor
    starts: torch.Tensor
    ends: torch.Tensor
    sequences: dict[str, torch.Tensor] = field(default_factory=dict)

    @property
    def input_ids(self) -> torch.Tensor:
        return self.inputs["input_ids"]

    @property
    def attention_mask(self) -> torch.Tensor:
        return self.inputs["attention_mask"]

    @property
    def size(self) -> int:
        return self.input_ids.shape[0]

    def lengths(self) -> torch.Tensor:
        """Per-example number of positions kept after trimming padding."""
        return self.ends - self.starts

    def trim(self, padded: torch.Tensor, index: int) -> torch.Tensor:
        """Example ``index`` of a tensor shaped like ``input_ids``, with its padding cut off."""
        return padded[index, ..., int(self.starts[index]) : int(self.ends[index])]

    def example(self, index: int) -> dict[str, torch.Tensor]:
        """Inputs of one example with padding trimmed off both ends (its sequences as they are)."""
        trimmed = {key: self.trim(value, index) for key, value in self.inputs.items()}
        return {**trimmed, **{key: value[index] for key, value in self.sequences.items()}}


def special_token_mask(ids: torch.Tensor, special: SpecialTokens) -> torch.Tensor:
    """True where ``ids`` holds one of ``special``'s ids ([CLS], [SEP], padding, ...)."""
    return torch.isin(ids, torch.tensor(sorted(special.special_ids), dtype=ids.dtype, device=ids.device))


def prepare_batch(
    inputs: Union[Mapping[str, Any], torch.Tensor],
    special: SpecialTokens,
    num_embeddings: int,
    device: Optional[torch.device] = None,
    keep: tuple[str, ...] = (),
    fixed: Optional[Callable[[Mapping[str, torch.Tensor]], Optional[torch.Tensor]]] = None,
    aligned: bool = True,
) -> TokenBatch:
    """Validate a tokenized batch and compute what bucketing needs. Raises ``ValueError`` early.
    ``keep``: entries kept although labels are dropped otherwise (a task's target keys);
    ``fixed``: the positions that belong to the scored target (a completion), treated like
    special tokens: kept by baselines and not attributed. ``aligned=False``: the ``keep`` entries
    are sequences of their own length (a seq2seq target), kept whole per row."""
    if isinstance(inputs, torch.Tensor):
        inputs = {"input_ids": inputs}
    if not isinstance(inputs, Mapping) or "input_ids" not in inputs:
        raise ValueError("inputs must be a tensor of token ids or a mapping with an 'input_ids' entry.")
    ids = inputs["input_ids"]
    if not isinstance(ids, torch.Tensor) or ids.dtype in (torch.float16, torch.bfloat16, torch.float32, torch.float64):
        raise ValueError("input_ids must be an integer tensor of shape (batch, seq) or (batch, choices, seq).")
    if ids.dim() not in (2, 3):
        raise ValueError(
            f"input_ids has shape {tuple(ids.shape)}; expected (batch, seq) or (batch, choices, seq). "
            "For a single example use input_ids.unsqueeze(0)."
        )
    if ids.shape[-1] == 0 or ids.shape[0] == 0:
        raise ValueError(f"input_ids has an empty dimension (shape {tuple(ids.shape)}): nothing to attribute.")
    mask = inputs.get("attention_mask")
    if mask is None:
        mask = torch.ones_like(ids)
    if not isinstance(mask, torch.Tensor) or mask.shape != ids.shape:
        shape = tuple(mask.shape) if isinstance(mask, torch.Tensor) else type(mask).__name__
        raise ValueError(f"attention_mask has shape {shape} but input_ids has shape {tuple(ids.shape)}; they must match.")
    low, high = int(ids.min()), int(ids.max())
    if low < 0 or high >= num_embeddings:
        raise ValueError(
            f"input_ids contain id {high if high >= num_embeddings else low}, outside the embedding layer's "
            f"range [0, {num_embeddings}); the tokenizer and the model's vocabulary do not match."
        )
    tensors = {"input_ids": ids, "attention_mask": mask}
    sequences = {}
    if not aligned:
        for key in keep:
            value = inputs.get(key)
            if not isinstance(value, torch.Tensor) or value.dim() != 2 or value.shape[0] != ids.shape[0]:
                raise ValueError(f"The target {key!r} must be one sequence of token ids per example, shaped (batch, "
                                 f"length); got {None if value is None else tuple(value.shape)}.")
            sequences[key] = detach_from_inference(value).to(device) if device is not None else detach_from_inference(value)
        keep = ()
    for key, value in inputs.items():
        if key in tensors or (key in _DROPPED_KEYS and key not in keep) or not isinstance(value, torch.Tensor):
            continue
        if value.shape == ids.shape:
            tensors[key] = value
    tensors = {k: detach_from_inference(v).to(device) if device is not None else detach_from_inference(v) for k, v in tensors.items()}
    ids, mask = tensors["input_ids"], tensors["attention_mask"].bool()

    given_special = inputs.get("special_tokens_mask")
    if isinstance(given_special, torch.Tensor) and given_special.shape == ids.shape:
        special_mask = given_special.to(ids.device).bool() & mask
    else:
        special_mask = special_token_mask(ids, special) & mask
    target = fixed(tensors) if fixed is not None else None
    if target is not None:
        special_mask = special_mask | (target.to(ids.device).bool() & mask)

    valid_positions = mask.reshape(ids.shape[0], -1, ids.shape[-1]).any(dim=1)  # (B, S)
    seq_len = ids.shape[-1]
    positions = torch.arange(seq_len, device=ids.device)
    starts = torch.where(valid_positions, positions, seq_len).min(dim=1).values
    ends = torch.where(valid_positions, positions + 1, 0).max(dim=1).values
    for i in range(ids.shape[0]):
        if ends[i] <= starts[i]:
            raise ValueError(f"Example {i} is empty: its attention_mask has no 1s.")
        attributable = (mask[i] & ~special_mask[i]).any()
        if not attributable:
            raise ValueError(f"Example {i} contains only special tokens; there is nothing to attribute.")
    return TokenBatch(inputs=tensors, special_mask=special_mask, starts=starts.cpu(), ends=ends.cpu(),
                      sequences=sequences)


def replaceable_mask(example: dict[str, torch.Tensor], special_mask: torch.Tensor) -> torch.Tensor:
    """Positions a baseline replaces: real (unmasked) tokens that are not special."""
    return example["attention_mask"].bool() & ~special_mask
