"""Sequence classification: one text, one class (logits ``(batch, classes)``)."""
from __future__ import annotations

from typing import Mapping

import torch

from lightning_saliency.tasks.base import Task, register_task

HINT = "use task='causal_lm' for language models or a forward_fn that returns class logits."


@register_task
class Classification(Task):
    name = "classification"
    text_label_evidence = True

    def head(self, logits: torch.Tensor, last_positions: torch.Tensor, targets: Mapping) -> torch.Tensor:
        self.expect_dims(logits, 2, self.name, HINT)
        return logits
