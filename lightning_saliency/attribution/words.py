"""Merge subword attributions into words using a fast tokenizer's ``word_ids()``."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import torch

from lightning_saliency.schema.words import group_positions

REDUCTIONS = ("sum", "max_abs")


@dataclass
class WordAttribution:
    """Per-word scores.

    Attributes:
        scores: one score per word or special token, in order.
        positions: the token positions merged into each entry.
        special: True for entries that are special tokens (word id ``None``); drop them with
            ``scores[~special]``.
    """

    scores: torch.Tensor
    positions: list[list[int]]
    special: torch.Tensor


def merge_subwords(
    scores: torch.Tensor,
    word_ids: Sequence[Optional[int]],
    reduce: str = "sum",
    attention_mask: Optional[torch.Tensor] = None,
) -> WordAttribution:
    """Merge one example's token scores into word scores.

    ``"sum"`` keeps completeness (the word scores add up to the token scores); ``"max_abs"``
    keeps the score of largest magnitude, sign included. Padding (``attention_mask == 0``) is
    dropped; tokens whose word id is ``None`` stay as their own entries, flagged as special.
    """
    if reduce not in REDUCTIONS:
        raise ValueError(f"reduce must be one of {REDUCTIONS}, got {reduce!r}.")
    if len(word_ids) != scores.shape[-1]:
        raise ValueError(f"word_ids has {len(word_ids)} entries for {scores.shape[-1]} token scores.")
    keep = attention_mask.bool().tolist() if attention_mask is not None else None
    groups, special = group_positions(word_ids, keep)
    merged = []
    for positions in groups:
        values = scores[positions]
        if reduce == "sum":
            merged.append(values.sum())
        else:
            merged.append(values[values.abs().argmax()])
    stacked = torch.stack(merged) if merged else scores.new_zeros(0)
    return WordAttribution(stacked, groups, torch.tensor(special, dtype=torch.bool))


