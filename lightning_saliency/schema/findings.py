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
# What a shortcut is made of: a word, a pair of words, or a feature of the text that is not a word
# (lightning_saliency.monitor.features: one kind per file). A feature's suspect is named
# "<kind>:<variant>", e.g. "length:long" or "token_class:punctuation".
SHORTCUT_KINDS = ("word", "pair", "length", "position", "segment", "token_class", "template")
FEATURE_SEPARATOR = ":"
# The label of a class-free feature (a position: the word at the first place decides, whichever
# class it says): its checks ask whether edits change each example's own prediction.
ANY_CLASS = -1


def kind_of(token: str) -> str:
    """The kind of a suspect named ``token``: a feature's (``length:long``), a pair or a word."""
    head = token.split(FEATURE_SEPARATOR, 1)[0]
    if FEATURE_SEPARATOR in token and head in SHORTCUT_KINDS:
        return head
    return "pair" if PAIR_SEPARATOR in token else "word"


@dataclass(frozen=True)
class TokenStat:
    """``mean_lift``: mean of share x regular tokens per example (1 = what a uniform attribution gives)."""

    token: str
    examples: int
    mean_share: float
    top1_rate: float
    z: float
    label: Optional[int]
    mean_lift: float = 0.0


@dataclass(frozen=True)
class Suspect:
    """A suspected shortcut. For a pair, ``token`` reads ``"a + b"``, ``members`` lists both, and
    ``top1_rate`` is the rate at which the pair holds the top two places. ``association``: where
    its token-label association reached ``min_z`` (``"validation"`` labels, the model's
    ``"predictions"`` on the probe set, the ``"training"`` set's artifact table); ``z`` and
    ``label`` are those of the first of them. ``at_chance``: raised while the model's probe accuracy
    was not above the majority class's rate (the model had not learned yet)."""

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
    at_chance: bool = False
    kind: str = "word"

    def __post_init__(self) -> None:
        # Frozen: normalised once, here (a list from JSON becomes a tuple; a word is its own member).
        object.__setattr__(self, "members", tuple(self.members) or (self.token,))
        object.__setattr__(self, "association", tuple(self.association or ()))
        object.__setattr__(self, "kind", kind_of(self.token))

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class FlipTest:
    """``flips`` of ``trials`` edited examples changed their prediction as the test asks, with the
    95% Wilson interval of the rate (``rate`` is ``None`` without trials)."""

    flips: int = 0
    trials: int = 0
    rate: Optional[float] = None
    low: float = 0.0
    high: float = 1.0


@dataclass(frozen=True)
class ShiftTest:
    """How far a test's edits move the probability of the suspect's class *toward reliance* (a drop
    on deletion, a rise on insertion: positive means the edit acts as a relied-on word would),
    against the same edits with random words: the mean shifts, ``effect`` (the suspect's mean minus
    the random words'), and the one-sided rank test of the two (``auc``: the chance a suspect's
    shift beats a random word's; ``z``; ``significant``: ``z`` reached the evidence the flip tests
    demand; that is strength, not size: a confirmation also needs ``effect`` at the floor)."""

    trials: int = 0
    mean: Optional[float] = None
    control_trials: int = 0
    control_mean: Optional[float] = None
    auc: float = 0.5
    z: float = 0.0
    significant: bool = False
    effect: Optional[float] = None


@dataclass(frozen=True)
class CausalCheck:
    """The causal evidence on one suspect in one run. ``probability_change``: mean drop of the
    predicted class's probability when the suspect is deleted. ``deletion_shift`` and
    ``insertion_shift``: the suspect's class probability moved by its edits, against random words'
    (these see a shortcut before any prediction flips). ``confirmed_by``: the tests that confirmed
    it; ``min_effect``: the effect (class-probability shift beyond random words') a test needed.
    The sentences that state a check are :mod:`lightning_saliency.presentation.verdicts`."""

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
    min_effect: float = 0.0
    kind: str = "word"
    carriers: Optional["Carriers"] = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", kind_of(self.token))

    @property
    def class_name(self) -> str:
        if self.label is None or self.label == ANY_CLASS:
            return "the predicted class"
        return self.label_name if self.label_name is not None else str(self.label)


@dataclass(frozen=True)
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


@dataclass(frozen=True)
class ArtifactCrossing:
    """Training-set artifacts against one method's reliance in one run (strongest first)."""

    relied_artifacts: list[CrossRow] = field(default_factory=list)
    relied_only: list[CrossRow] = field(default_factory=list)
    ignored_artifacts: list[CrossRow] = field(default_factory=list)
    examples: int = 0
    threshold: float = 0.0


@dataclass(frozen=True)
class SuspectTimeline:
    """One suspect's history in a training run: the first run (and global step) at which it passed
    the suspect rules, with which method, and the first at which the causal check confirmed it."""

    token: str
    method: str
    first_suspected_run: str
    first_suspected_step: int
    confirmed_run: Optional[str] = None
    confirmed_step: Optional[int] = None
    kind: str = "word"

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", kind_of(self.token))


@dataclass(frozen=True)
class FeatureAssociation:
    """How strongly a feature that is not a word goes with one class in a set of examples:
    ``z`` (a rank test's for a number such as length, Gardner et al.'s for a presence), the class
    it favours, and its share of carriers in every class (``shares``, class index -> share);
    ``threshold``: for a number, the value above which an example carries it (the median);
    ``words``: for a place or a segment, the words that decide the class there (an example carries
    it when one of them is at that place, or in that segment); ``label`` :data:`ANY_CLASS` for a feature that decides any class."""

    token: str
    z: float
    label: Optional[int]
    examples: int
    carriers: int
    shares: dict[int, float] = field(default_factory=dict)
    threshold: Optional[float] = None
    words: tuple[str, ...] = ()
    kind: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", kind_of(self.token))
        object.__setattr__(self, "words", tuple(self.words or ()))


@dataclass(frozen=True)
class FeatureReading:
    """One feature in one run: its association in the training set and in the probe's labels, and,
    where attributions can measure it, each method's mean share of |attribution| on its words now
    and at ``start`` (``reliance``: method -> (share, reference share))."""

    token: str
    training: Optional[FeatureAssociation] = None
    validation: Optional[FeatureAssociation] = None
    reliance: dict[str, tuple[float, Optional[float]]] = field(default_factory=dict)
    kind: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", kind_of(self.token))


@dataclass(frozen=True)
class Carriers:
    """The training examples that carry a confirmed shortcut (from alarm to action): how many of
    the ``examples`` read (the artifact table's sample of ``dataset_size``), the share overall and
    per class (class index -> share), and the JSONL file that lists them (dataset index, label,
    text), next to the record."""

    count: int
    examples: int
    share: float
    shares: dict[int, float] = field(default_factory=dict)
    dataset_size: Optional[int] = None
    path: Optional[str] = None
