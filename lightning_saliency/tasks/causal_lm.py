"""Next-token prediction of a causal LM: the logits ``(batch, seq, vocab)`` at each row's last real
position; a class is a token, named by its decoded text."""
from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence

import torch

from lightning_saliency.probes import ProbeSet, text_probe
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
        if not -len(self) <= int(index) < len(self):
            raise IndexError(f"token id {index} is outside the vocabulary of {len(self)} tokens")
        return self.tokenizer.decode([int(index) % len(self)])


@register_task
class CausalLM(Task):
    name = "causal_lm"
    labels_from_column = False
    last_logits_only = True

    def head(self, logits: torch.Tensor, last_positions: torch.Tensor, targets: Mapping) -> torch.Tensor:
        self.expect_dims(logits, 3, self.name, "a causal LM's logits are (batch, seq, vocab).")
        rows = torch.arange(logits.shape[0], device=logits.device)
        return logits[rows, last_positions.to(logits.device)]

    def class_names(self, tokenizer: Any, configured: Optional[Sequence[str]]) -> Optional[Sequence[str]]:
        return DecodedVocabulary(tokenizer)

    def probe_from_batch(self, examples: ProbeSet, labels: Optional[torch.Tensor], label_key: str,
                         tokenizer: Any, tag_names: Optional[Sequence[str]]) -> ProbeSet:
        return next_token_probe(examples, labels, tokenizer)

    def probe_from_texts(self, texts: Sequence[str], tokenizer: Any, labels: Optional[Sequence[int]],
                         max_length: int, completions: Optional[Sequence[str]]) -> ProbeSet:
        return next_token_probe(text_probe(texts, tokenizer, None, max_length), None, tokenizer)


def next_token_probe(probe: ProbeSet, labels: Optional[torch.Tensor], tokenizer: Any) -> ProbeSet:
    """A causal-LM probe: each example's last real token becomes its label and the tokens before it
    the context, so the attributed prediction (the next token after the context) has a known truth
    and probe accuracy is next-token accuracy. The label is taken from ``labels`` (``(batch, seq)``,
    as Hugging Face LM batches carry them) where it is not ignored (``-100``), else from the text."""
    ids, mask = probe.inputs["input_ids"].clone(), probe.inputs["attention_mask"].clone()
    truths = []
    for i in range(len(probe)):
        real = mask[i].nonzero().flatten()
        last = int(real.max())
        given = int(labels[i, last]) if labels is not None and labels.dim() == 2 else -100
        truths.append(given if given >= 0 else int(ids[i, last]))
        mask[i, last] = 0
        ids[i, last] = getattr(tokenizer, "pad_token_id", None) or 0
    inputs = {**probe.inputs, "input_ids": ids, "attention_mask": mask}
    texts = [tokenizer.decode(ids[i][mask[i].bool()].tolist()) if tokenizer is not None else " ".join(t[:-1])
             for i, t in enumerate(probe.tokens)]
    return ProbeSet(probe.indices, inputs, torch.tensor(truths), [t[:-1] for t in probe.tokens], texts,
                    [w[:-1] for w in probe.word_ids], probe.truncated)
