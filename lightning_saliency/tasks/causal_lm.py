"""Next-token prediction of a causal LM: the logits ``(batch, seq, vocab)`` at each row's last real
position; a class is a token, named by its decoded text."""
from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence

import torch

from lightning_saliency.tasks.base import Task, register_task


class DecodedVocabulary(Sequence[str]):
    """Class names of a causal LM: each token id decoded to its text, on demand (a vocabulary has
    tens of thousands of entries, and a record names only a few)."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer

    def __len__(self) -> int:
        return len(self.tokenizer)

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        return self.tokenizer.decode([int(index)])


@register_task
class CausalLM(Task):
    name = "causal_lm"
    probe_labels = "next_token"
    last_logits_only = True

    def head(self, logits: torch.Tensor, last_positions: torch.Tensor, targets: Mapping) -> torch.Tensor:
        self.expect_dims(logits, 3, self.name, "a causal LM's logits are (batch, seq, vocab).")
        rows = torch.arange(logits.shape[0], device=logits.device)
        return logits[rows, last_positions.to(logits.device)]

    def class_names(self, tokenizer: Any, configured: Optional[Sequence[str]]) -> Optional[Sequence[str]]:
        return DecodedVocabulary(tokenizer)
