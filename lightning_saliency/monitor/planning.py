"""What each run costs and does: the compute budgets (epoch runs and step runs), the methods of a
run, and its attribution options. The engine asks; this keeps the measurements between runs."""
from __future__ import annotations

from dataclasses import replace
from typing import Any, Optional

from lightning_saliency.attribution import AttributionConfig
from lightning_saliency.monitor.budget import ComputeBudget, Plan
from lightning_saliency.monitor.messages import RunRequest
from lightning_saliency.monitor.state import REFERENCE_LABEL
from lightning_saliency.schema.records import RunRecord
from lightning_saliency.settings import MonitorSettings


def _budget(settings: MonitorSettings, carry: bool = False) -> Optional[ComputeBudget]:
    if settings.budget is None:
        return None
    steps = settings.steps
    return ComputeBudget(settings.budget, settings.num_examples, steps, min_examples=2,
                         min_steps=settings.attribution.min_steps if settings.adaptive else min(9, steps), carry=carry)


class RunPlanner:
    """The budget plan of every run.

    Args:
        settings: the validated settings (never changed here).
    """

    def __init__(self, settings: MonitorSettings) -> None:
        self.settings = settings
        self._epoch_budget = _budget(settings)
        # Step runs cost no IG steps: their own budget plans only how many examples fit, and they
        # share one account, so that together they stay within the fraction of training time.
        self._step_budget = _budget(settings, carry=True)

    def budget_for(self, step_run: bool) -> Optional[ComputeBudget]:
        """The compute budget that plans (and learns the cost of) this kind of run."""
        return self._step_budget if step_run else self._epoch_budget

    def plan(self, label: str, epoch_seconds: Optional[float], step_run: bool = False) -> Plan:
        """How many examples and IG steps the run ``label`` may use (the ``start`` run is always full)."""
        budget = self.budget_for(step_run)
        if budget is None:
            return Plan(self.settings.num_examples, self.settings.attribution.n_steps)
        return budget.full() if label == REFERENCE_LABEL else budget.plan(epoch_seconds)

    def methods_for(self, request: RunRequest) -> tuple[str, ...]:
        """A step run's methods, else the configured ones; the reference run also covers the step
        runs' methods, so that they have a ``start`` to be compared with."""
        s = self.settings
        if request.step_run:
            return s.schedule.step_methods
        if request.label == REFERENCE_LABEL:
            return s.methods + tuple(m for m in s.step_run_methods() if m not in s.methods)
        return s.methods

    def rechecks_unconfirmed(self, step_run: bool) -> bool:
        """Whether a run checks again the suspects it checked before and never confirmed: always at
        epoch runs (their records hold every check) and without a budget; at a step run under
        ``budget=``, only while the step runs' account is not in debt. A check costs more than a
        cheap run's attribution (on MiniLM, 768 forward rows against 24), and a suspect raised at
        every step run and never confirmed would otherwise keep the account in debt for good."""
        budget = self.budget_for(step_run)
        return not step_run or budget is None or budget.balance >= 0

    def run_config(self, plan: Plan, token_budget: int) -> AttributionConfig:
        """The attribution options of one run: the token budget and, under a compute budget, the steps."""
        changes: dict[str, Any] = {}
        if self.settings.attribution.max_tokens is None:
            changes["max_tokens"] = max(int(token_budget), 1)
        if self._epoch_budget is not None:
            changes["max_steps" if self.settings.adaptive else "n_steps"] = plan.steps
        return replace(self.settings.attribution, **changes)

    def recorded(self, plan: Plan, step_run: bool) -> Optional[dict[str, Any]]:
        """What a record says of its budget: the fraction and the plan (``None`` without a budget)."""
        budget = self.budget_for(step_run)
        return None if budget is None else {"fraction": budget.fraction, **plan.as_dict()}

    def observe(self, record: RunRecord, attributions: Any, examples: int, step_run: bool) -> None:
        """Learn this run's cost, so the next run of its kind is planned from it."""
        budget = self.budget_for(step_run)
        if budget is None:
            return
        ig = attributions.methods.get("integrated_gradients")
        budget.observe(
            seconds=record.seconds, ig_seconds=attributions.timings.get("integrated_gradients", 0.0),
            examples=examples, mean_steps=float(ig.steps.float().mean()) if ig is not None else 0.0,
        )

    def state_dict(self) -> Optional[list[float]]:
        budget = self._epoch_budget
        return None if budget is None else [budget.seconds_per_step, budget.seconds_per_example]

    def load_state_dict(self, costs: Optional[list[float]]) -> None:
        """Plan the first run after a resume from the last one's measured costs."""
        if self._epoch_budget is not None and costs is not None:
            self._epoch_budget.seconds_per_step, self._epoch_budget.seconds_per_example = costs
