"""A method and a task registered from outside the package, as a user would (imported by tests)."""
import torch

from lightning_saliency.attribution import AttributionMethod, register
from lightning_saliency.attribution.results import MethodAttribution
from lightning_saliency.tasks import Task, register_task
from lightning_saliency.tasks.base import TASKS
from lightning_saliency.attribution.methods import REGISTRY


if "gradient_max" not in REGISTRY:
    @register
    class GradientMax(AttributionMethod):
        """The largest |gradient| over the embedding dimensions of each token."""

        name = "gradient_max"
        order = 60
        uses_input_gradient = True

        def signed(self, config) -> bool:
            return False

        def compute(self, ctx, shared) -> MethodAttribution:
            return MethodAttribution(self.name, ctx.scatter([g.abs().amax(dim=-1) for g in shared.input_gradients()]))


if "two_class_margin" not in TASKS:
    @register_task
    class TwoClassMargin(Task):
        """A binary classifier's margin: class k's score is its logit minus the other's."""

        name = "two_class_margin"
        text_label_evidence = True

        def head(self, logits: torch.Tensor, last_positions: torch.Tensor, targets) -> torch.Tensor:
            self.expect_dims(logits, 2, self.name, "a binary classifier's logits are (batch, 2).")
            return torch.stack([logits[:, 0] - logits[:, 1], logits[:, 1] - logits[:, 0]], dim=1)
