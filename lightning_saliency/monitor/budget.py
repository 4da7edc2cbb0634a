"""Compute budget: keep attribution within a fraction of the epoch's wall time.

The cost of a run is modelled from the previous run's measurement as

    seconds = examples * (steps * seconds_per_step + seconds_per_example)

where ``seconds_per_step`` is the Integrated Gradients time per example and gradient evaluation and
``seconds_per_example`` everything else (gradient methods, metrics, heatmaps). The planner first
lowers the IG steps (fixed rule) or the step cap (adaptive mode) towards ``min_steps``; only when
that is not enough it attributes fewer examples, always a prefix of the fixed probe order, so that
drift is compared on the same examples run after run.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Optional


@dataclass(frozen=True)
class Plan:
    """What one attribution run does: how many probe examples and at most how many IG steps."""

    num_examples: int
    steps: int
    target_seconds: Optional[float] = None
    estimated_seconds: Optional[float] = None

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class ComputeBudget:
    """Plans each run so its predicted cost is at most ``fraction`` of the epoch's wall time.

    Args:
        fraction: allowed attribution time as a fraction of the epoch's time without attribution.
        num_examples: the probe-set size, the most a run attributes.
        steps: the configured IG steps (fixed) or step cap (adaptive), the most a run uses.
        min_examples: the fewest examples a run attributes (the budget may be exceeded to keep them).
        min_steps: the fewest IG steps a run uses (the budget may be exceeded to keep them).
        carry: the runs share one account (step runs): what a run leaves unspent of its share of
            the training time since the previous run is added to the next run's, and what it
            overspends (its causal checks, the floor of ``min_examples``) is taken from the next
            runs', so that together they stay at ``fraction`` of the training time.
    """

    fraction: float
    num_examples: int
    steps: int
    min_examples: int = 2
    min_steps: int = 9
    seconds_per_step: Optional[float] = None
    seconds_per_example: Optional[float] = None
    carry: bool = False
    balance: float = 0.0
    _target: Optional[float] = None

    def __post_init__(self) -> None:
        if not 0 < self.fraction <= 1:
            raise ValueError(f"budget is a fraction of the epoch's time in (0, 1], got {self.fraction}.")
        self.min_examples = max(1, min(self.min_examples, self.num_examples))
        self.min_steps = max(2, min(self.min_steps, self.steps))

    def full(self) -> Plan:
        return Plan(self.num_examples, self.steps)

    def observe(self, *, seconds: float, ig_seconds: float, examples: int, mean_steps: float) -> None:
        """Update the unit costs (and, with ``carry``, the balance) from a finished run."""
        if self.carry and self._target is not None:
            self.balance = self._target - seconds
            self._target = None
        if examples <= 0 or seconds <= 0:
            return
        self.seconds_per_step = ig_seconds / (examples * mean_steps) if mean_steps > 0 else 0.0
        self.seconds_per_example = max(seconds - ig_seconds, 0.0) / examples

    def plan(self, epoch_seconds: Optional[float]) -> Plan:
        """The largest run (steps first, then examples) whose predicted cost fits the budget."""
        if epoch_seconds is None or epoch_seconds <= 0 or self.seconds_per_step is None:
            return self.full()
        target = self.fraction * epoch_seconds + (self.balance if self.carry else 0.0)
        self._target = target
        per_step, per_example = self.seconds_per_step, self.seconds_per_example or 0.0

        def cost(examples: int, steps: int) -> float:
            return examples * (steps * per_step + per_example)

        if per_step > 0:
            affordable = (target / self.num_examples - per_example) / per_step
            steps = int(min(self.steps, max(self.min_steps, math.floor(affordable + 1e-9))))
        else:
            steps = self.steps
        examples = self.num_examples
        if cost(examples, steps) > target:
            per_run = steps * per_step + per_example
            examples = int(min(self.num_examples, max(self.min_examples, math.floor(target / per_run + 1e-9))))
        return Plan(examples, steps, target, cost(examples, steps))
