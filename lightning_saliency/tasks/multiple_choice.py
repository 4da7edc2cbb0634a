"""Multiple choice: inputs ``(batch, choices, seq)``, one logit per choice (``(batch, choices)``).
A choice's text is the question plus one answer, so no single text is edited: no causal checks."""
from __future__ import annotations

from typing import Mapping

import torch

from lightning_saliency.tasks.base import Task, register_task
from lightning_saliency.tasks.classification import HINT


@register_task
class MultipleChoice(Task):
    name = "multiple_choice"
    input_dims = 3

    def head(self, logits: torch.Tensor, last_positions: torch.Tensor, targets: Mapping) -> torch.Tensor:
        self.expect_dims(logits, 2, self.name, HINT)
        return logits
