"""The ground truth of a planted shortcut, measured from the live model during training.

Counterfactual accuracy (in the spirit of Joshi et al. 2022's sufficiency view): of held-out
examples of the *other* class that the model gets right, the share it still gets right once the
planted word is inserted. Below 0.5, the word alone overrides the text's meaning for most of them:
the model has taken the shortcut. Used by the tests and ``benchmarks/bench_detection.py`` to say
when the monitor should have fired.
"""
from __future__ import annotations

from typing import Any, Callable, Optional, Sequence

import lightning as L
import torch

from lightning_saliency.demo.modeling import encode


class CounterfactualAccuracy(L.Callback):
    """Every ``every`` optimizer steps: of ``texts`` (all of class ``label``; strings, or pairs of
    strings for a pair input) that the live model
    predicts right, the share still predicted ``label`` with ``word`` put first (or after ``edit``,
    a feature's counterfactual edit). Steps where fewer
    than ``min_right`` are right are not scored (too few to say). ``by_step``: step -> share;
    ``seconds``: the time this callback took (to leave it out of training time)."""

    def __init__(self, tokenizer: Any, texts: Sequence[Any], word: str, label: int = 0, every: int = 2,
                 max_length: int = 128, batch_size: int = 32, min_right: int = 10,
                 edit: Optional[Callable[[Any], Any]] = None) -> None:
        self.tokenizer, self.texts, self.word, self.label = tokenizer, list(texts), word, label
        # The counterfactual edit: the planted word put first, or a feature's own (a cut, a "!").
        self.edit = edit or (lambda text: f"{word} {text}")
        self.every, self.max_length, self.batch_size, self.min_right = every, max_length, batch_size, min_right
        self.by_step: dict[int, float] = {}
        self.seconds = 0.0

    def _predicted(self, model: torch.nn.Module, texts: Sequence[Any]) -> torch.Tensor:
        device = next(model.parameters()).device
        out = []
        for start in range(0, len(texts), self.batch_size):
            batch = encode(self.tokenizer, list(texts[start:start + self.batch_size]), padding=True, truncation=True,
                           max_length=self.max_length, return_tensors="pt").to(device)
            out.append(model(**batch).logits.argmax(-1).cpu())
        return torch.cat(out)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        step = trainer.global_step
        if step % self.every:
            return
        import time

        started = time.perf_counter()
        model = getattr(pl_module, "model", pl_module)
        was_training = model.training
        model.eval()
        with torch.no_grad(), torch.random.fork_rng():
            right = self._predicted(model, self.texts) == self.label
            edited = [self.edit(text) for text, ok in zip(self.texts, right.tolist()) if ok]
            still = (self._predicted(model, edited) == self.label) if edited else torch.zeros(0, dtype=torch.bool)
        model.train(was_training)
        if int(right.sum()) >= self.min_right:
            self.by_step[step] = float(still.float().mean())
        self.seconds += time.perf_counter() - started

    def first_step_below(self, level: float = 0.5) -> Optional[int]:
        """The first scored step whose counterfactual accuracy is below ``level``."""
        return next((step for step, share in sorted(self.by_step.items()) if share < level), None)
