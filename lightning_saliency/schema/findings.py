"""What the analysis and the evidence find, as plain typed records: suspects and token
statistics, causal checks, training-set artifacts crossed with reliance, and suspect timelines.

The bottom layer: no torch, no framework. The record schema (:mod:`.records`) is built from these,
and the monitor's numerics (:mod:`lightning_saliency.monitor.metrics`, :mod:`lightning_saliency.monitor.evidence`)
produce them.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Optional

PAIR_SEPARATOR = " + "
# The four flip tests of a causal check, in the order every table shows them.
KINDS = ("deletion", "insertion", "control_deletion", "control_insertion")


@dataclass
class TokenStat:
    """``mean_lift``: mean of share x regular tokens per example (1 = what a uniform attribution gives)."""

    token: str
    examples: int
    mean_share: float
    top1_rate: float
    z: float
    label: Optional[int]
    mean_lift: float = 0.0


@dataclass
class Suspect:
    """A suspected shortcut. For a pair, ``token`` reads ``"a + b"``, ``members`` lists both, and
    ``top1_rate`` is the rate at which the pair holds the top two places. ``association``: where
    its token-label association reached ``min_z`` (``"validation"`` labels, the model's
    ``"predictions"`` on the probe set, the ``"training"`` set's artifact table); ``z`` and
    ``label`` are those of the first of them."""

    token: str
    examples: int
    mean_share: float
    reference_share: float
    rise: float
    top1_rate: float
    z: float
    label: Optional[int]
    members: tuple[str, ...] = ()
    mean_lift: float = 0.0
    association: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        self.members = tuple(self.members) or (self.token,)
        self.association = tuple(self.association or ())

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class FlipTest:
    """``flips`` of ``trials`` edited examples changed their prediction as the test asks, with the
    95% Wilson interval of the rate (``rate`` is ``None`` without trials)."""

    flips: int = 0
    trials: int = 0
    rate: Optional[float] = None
    low: float = 0.0
    high: float = 1.0

    def describe(self) -> str:
        if not self.trials:
            return "no examples to test"
        return f"{self.rate:.0%} ({self.low:.0%}-{self.high:.0%}) of {self.trials}"


@dataclass
class ShiftTest:
    """How far a test's edits move the probability of the suspect's class (down on deletion, up on
    insertion), against the same edits with random words: the mean shifts, and the one-sided rank
    test of the two (``auc``: the chance a suspect's shift beats a random word's; ``z``; ``significant``:
    ``z`` reached the evidence the flip tests demand)."""

    trials: int = 0
    mean: Optional[float] = None
    control_trials: int = 0
    control_mean: Optional[float] = None
    auc: float = 0.5
    z: float = 0.0
    significant: bool = False

    def describe(self) -> str:
        if not self.trials or not self.control_trials:
            return "no examples to compare"
        return (f"{self.mean:+.3f} against {self.control_mean:+.3f} for random words (larger in {self.auc:.0%} of "
                f"pairs, z {self.z:.1f})")


@dataclass
class CausalCheck:
    """The causal evidence on one suspect in one run. ``probability_change``: mean drop of the
    predicted class's probability when the suspect is deleted. ``deletion_shift`` and
    ``insertion_shift``: the suspect's class probability moved by its edits, against random words'
    (these see a shortcut before any prediction flips). ``confirmed_by``: the tests that confirmed it."""

    token: str
    members: list[str]
    label: Optional[int]
    label_name: Optional[str]
    examples: int
    deletion: FlipTest = field(default_factory=FlipTest)
    insertion: FlipTest = field(default_factory=FlipTest)
    control_deletion: FlipTest = field(default_factory=FlipTest)
    control_insertion: FlipTest = field(default_factory=FlipTest)
    probability_change: Optional[float] = None
    control_tokens: list[str] = field(default_factory=list)
    confirmed: bool = False
    deletion_shift: ShiftTest = field(default_factory=ShiftTest)
    insertion_shift: ShiftTest = field(default_factory=ShiftTest)
    confirmed_by: list[str] = field(default_factory=list)

    def sentence(self) -> str:
        """The evidence in one sentence, as the alert states it."""
        cls = self.label_name if self.label_name is not None else str(self.label)
        verdict = f"confirmed by {', '.join(self.confirmed_by)}" if self.confirmed and self.confirmed_by else (
            "confirmed" if self.confirmed else "not confirmed")
        text = (f"'{self.token}' ({verdict}): removing it flips {self.deletion.describe()} examples that contain it; "
                f"inserting it flips {self.insertion.describe()} other examples to {cls}; random words flip "
                f"{self.control_deletion.describe()} on removal and {self.control_insertion.describe()} on insertion.")
        if self.deletion_shift.trials:
            text += f" Removal moves P({cls}) by {self.deletion_shift.describe()}."
        if self.insertion_shift.trials:
            text += f" Insertion moves P({cls}) by {self.insertion_shift.describe()}."
        return text


@dataclass
class CrossRow:
    """A word in both views: its training-set association and its probe-set reliance."""

    token: str
    z: Optional[float]
    count: int
    label: Optional[int]
    p_label: Optional[float]
    top1_rate: Optional[float]
    mean_share: Optional[float]
    mean_lift: Optional[float]


@dataclass
class ArtifactCrossing:
    """Training-set artifacts against one method's reliance in one run (strongest first)."""

    relied_artifacts: list[CrossRow] = field(default_factory=list)
    relied_only: list[CrossRow] = field(default_factory=list)
    ignored_artifacts: list[CrossRow] = field(default_factory=list)
    examples: int = 0
    threshold: float = 0.0


@dataclass
class SuspectTimeline:
    """One suspect's history in a training run: the first run (and global step) at which it passed
    the suspect rules, with which method, and the first at which the causal check confirmed it."""

    token: str
    method: str
    first_suspected_run: str
    first_suspected_step: int
    confirmed_run: Optional[str] = None
    confirmed_step: Optional[int] = None
