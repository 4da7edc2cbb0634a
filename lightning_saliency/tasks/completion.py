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

from lightning_saliency.tasks.base import IGNORED, SequenceScoreTask, register_task


@register_task
class Completion(SequenceScoreTask):
    name = "completion"
    input_dims = 2
    probe_labels = "tokens"
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
