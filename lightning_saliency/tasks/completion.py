"""A causal LM's completion of a prompt (instruction tuning, SFT): the attributed score is the
completion's log-probability, the sum of its tokens' log-probs under teacher forcing, and it is
attributed to the prompt.

Inputs carry token-level ``labels`` as Hugging Face and TRL batches do: the completion's token ids
where they are scored, ``-100`` on the prompt and padding (TRL's completion-only loss). One forward
per path point scores every completion token at once, for a whole batch of prompts, where
captum's ``LLMGradientAttribution`` runs one attribution per completion token. By linearity the two
agree: IG of the sum is the sum of the per-token IGs (tested against captum within 1e-4).
"""
from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence

import torch

from lightning_saliency.probes import ProbeSet, describe_tokens
from lightning_saliency.tasks.base import IGNORED, SequenceScoreTask, register_task


@register_task
class Completion(SequenceScoreTask):
    name = "completion"
    input_dims = 2
    token_labels_form = ("as token-level labels (the completion's token ids, -100 on the prompt), as TRL's "
                         "completion-only batches have")
    logits_form = "a causal LM's logits are (batch, seq, vocab)."
    labels_form = ("token-level labels in the inputs: the completion's token ids where they are scored, -100 "
                   "elsewhere (as TRL's completion-only batches have), or probe=ProbeSettings(texts=prompts, "
                   "completions=[...]).")

    def check_given_probe(self, texts: bool, completions: bool) -> None:
        if texts and not completions:
            raise ValueError(f"task={self.name!r} with probe.texts needs probe.completions=[...]: the completion of "
                             "each prompt is what is scored.")

    def scored(self, logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # Teacher forcing: the token at position t is predicted by the logits at t - 1.
        return logits[:, :-1], labels[:, 1:]

    def fixed_positions(self, inputs: Mapping[str, torch.Tensor]) -> Optional[torch.Tensor]:
        labels = inputs.get("labels")
        return None if labels is None else labels != IGNORED

    def class_names(self, tokenizer: Any, configured: Optional[Sequence[str]]) -> Optional[Sequence[str]]:
        return ["completion"]

    def probe_from_texts(self, texts: Sequence[str], tokenizer: Any, labels: Optional[Sequence[int]],
                         max_length: int, completions: Optional[Sequence[str]]) -> ProbeSet:
        if completions is None:
            return super().probe_from_texts(texts, tokenizer, labels, max_length, completions)
        return completion_probe(texts, completions, tokenizer, max_length)


def completion_probe(prompts: Sequence[str], completions: Sequence[str], tokenizer: Any,
                      max_length: int) -> ProbeSet:
    """Prompt tokens (with the tokenizer's special tokens) then completion tokens; ``labels`` hold
    the completion's ids and -100 on the prompt and padding, as a completion-only SFT batch does."""
    rows = []
    for prompt, completion in zip(prompts, completions):
        prompt_ids = tokenizer(prompt)["input_ids"]
        completion_ids = tokenizer(completion, add_special_tokens=False)["input_ids"]
        if not completion_ids:
            raise ValueError(f"The completion {completion!r} of prompt {prompt!r} has no tokens.")
        rows.append((prompt_ids, completion_ids))
    width = min(max(len(p) + len(c) for p, c in rows), max_length)
    pad = getattr(tokenizer, "pad_token_id", None) or 0
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask, labels = torch.zeros_like(ids), torch.full_like(ids, IGNORED)
    truncated = []
    for row, (prompt_ids, completion_ids) in enumerate(rows):
        joined = (prompt_ids + completion_ids)[:width]
        ids[row, : len(joined)] = torch.tensor(joined)
        mask[row, : len(joined)] = 1
        labels[row, len(prompt_ids): len(joined)] = torch.tensor(joined[len(prompt_ids):], dtype=torch.long)
        truncated.append(len(prompt_ids) + len(completion_ids) > width)
    inputs = {"input_ids": ids, "attention_mask": mask}
    tokens, _, word_ids = describe_tokens(inputs, tokenizer, None)
    return ProbeSet(list(range(len(rows))), {**inputs, "labels": labels}, None, tokens, list(prompts), word_ids,
                    truncated, completions=list(completions))
