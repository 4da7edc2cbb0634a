"""What scalar is attributed: a class logit or probability, a choice, or a next-token logit."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Optional, Sequence, Union

import torch

from lightning_saliency.tasks import Task, get_task

OUTPUTS = ("logit", "probability")
TargetArg = Union[None, int, Sequence[int], torch.Tensor]


def extract_logits(output: Any) -> torch.Tensor:
    """Logits from a model output: a tensor, an object or mapping with ``logits``, or a tuple's first tensor."""
    if isinstance(output, torch.Tensor):
        return output
    logits = output.get("logits") if isinstance(output, dict) else getattr(output, "logits", None)
    if isinstance(logits, torch.Tensor):
        return logits
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    keys = list(output.keys()) if hasattr(output, "keys") else type(output).__name__
    raise ValueError(
        f"The model output has no logits (got {keys}). Attribute a model with a classification or LM head, "
        "or pass forward_fn=lambda model, inputs: <logits tensor>."
    )


@dataclass(frozen=True)
class TargetSpec:
    """Which output is attributed.

    Args:
        task: a registered task (:mod:`lightning_saliency.tasks`): ``"classification"`` (logits
            ``(N, classes)``), ``"multiple_choice"`` (logits ``(N, choices)`` for inputs ``(N,
            choices, seq)``), ``"causal_lm"`` (logits ``(N, seq, vocab)``; the next token after the
            last real position), or any other registered one.
        output: attribute the raw ``"logit"`` or the softmax ``"probability"``.
    """

    task: str = "classification"
    output: str = "logit"

    def __post_init__(self) -> None:
        get_task(self.task)  # ValueError naming the registered tasks
        if self.output not in OUTPUTS:
            raise ValueError(f"Unknown output {self.output!r}; choose one of {OUTPUTS}.")

    @property
    def task_object(self) -> Task:
        return get_task(self.task)

    def head(self, logits: torch.Tensor, last_positions: torch.Tensor,
             targets: Optional[Mapping[str, torch.Tensor]] = None) -> torch.Tensor:
        """Reduce model logits to one score vector per row: ``(N, classes)`` (the task's head;
        ``targets``: the rows' entries of the task's ``target_keys``)."""
        return self.task_object.head(logits, last_positions, targets or {})

    def score(self, head: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """The attributed scalar per row, in float32."""
        head = head.float()
        if self.output == "probability":
            head = head.softmax(dim=-1)
        return head.gather(1, targets.view(-1, 1).to(head.device)).squeeze(1)


def target_probability(head: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The softmax probability of ``target`` in one row's head."""
    return head.float().softmax(dim=-1)[..., int(target)]


def resolve_targets(target: TargetArg, head: torch.Tensor) -> torch.Tensor:
    """Per-example target indices: the predicted class when ``target`` is None."""
    batch, classes = head.shape
    if target is None:
        return head.argmax(dim=-1).cpu()
    resolved = torch.as_tensor(target, dtype=torch.long).cpu().reshape(-1)
    if resolved.numel() == 1 and batch > 1:
        resolved = resolved.expand(batch).clone()
    if resolved.numel() != batch:
        raise ValueError(f"target has {resolved.numel()} entries for {batch} examples; give one per example or a single int.")
    bad = (resolved < 0) | (resolved >= classes)
    if bad.any():
        raise ValueError(f"target {int(resolved[bad][0])} is out of range: the model has {classes} outputs (0..{classes - 1}).")
    return resolved


