"""Typed records of attribution runs, and the one reader and writer of ``saliency/epoch_*.json``.

The bottom layer: reading a record imports no torch, lightning or transformers, so the report and
the TensorBoard tab start fast. A :class:`RunRecord` is built once from a run's probe examples and
attributions (:func:`lightning_saliency.monitor.recording.build_record`, the torch side), gets its
:class:`RunMetrics` from the (pure) analysis, and is written atomically. ``to_json``/``from_json``
are exact inverses; ``from_json`` checks the schema version, so the report and the TensorBoard tab
never misread a file written by another version.
"""
from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field, replace
from functools import cached_property
from typing import Any, Optional, Sequence

from lightning_saliency.schema.findings import (
    ArtifactCrossing,
    CausalCheck,
    FeatureReading,
    Suspect,
    SuspectTimeline,
    TokenStat,
)
from lightning_saliency.schema.reading import causal_check, crossing, feature_reading, lenient
from lightning_saliency.schema.words import span_roles, span_sums, word_spans

SCHEMA_VERSION = 1


# An IG example is unconverged when its completeness error (|delta| against F(x) - F(x')) is above
# this, or above the run's own tolerance when that is larger: its colours are then not the whole
# difference it explains, and it must not set the run's colour scale on its own.
UNCONVERGED = 0.05


def completeness_error(scores: Sequence[float], delta: Optional[float]) -> Optional[float]:
    """``|delta| / |F(x) - F(x')|`` of one IG example, from its scores (``sum = F(x) - F(x') +
    delta``); ``None`` without a delta (not IG). An absolute delta of at most 1e-5 counts as
    converged (0), as adaptive IG does, so a flat example is not flagged for rounding."""
    if delta is None or not math.isfinite(delta):
        return None
    if abs(delta) <= 1e-5:
        return 0.0
    difference = abs(math.fsum(scores) - delta)
    return abs(delta) / difference if difference > 0 else math.inf


# Below this share of the prediction's margin, F(x) - F(x') leaves IG little to explain: the
# baseline already predicts what the input does (measured on the demo and MiniLM, docs: attribution).
NEUTRAL_SHARE = 0.2


def explained_share(scores: Sequence[float], delta: Optional[float], probability: Optional[float]) -> Optional[float]:
    """``|F(x) - F(x')|`` of one IG example over its prediction's margin, the log-odds
    ``log(p / (1 - p))`` of the predicted class; ``None`` without a delta or when the probability
    is not a class decision (below one half, or 1). Near 0: the baseline is not neutral, it
    already predicts what the input predicts, and IG's scores explain little."""
    if delta is None or probability is None or not math.isfinite(delta) or not 0.5 < probability < 1.0:
        return None
    margin = math.log(probability / (1.0 - probability))
    return abs(math.fsum(scores) - delta) / margin if margin > 0 else None


def not_neutral_share(scores: Sequence[float], delta: Optional[float], probability: Optional[float]) -> Optional[float]:
    """:func:`explained_share` when it is under :data:`NEUTRAL_SHARE` (the baseline is not neutral:
    draw the scores uncoloured and say why), else ``None``."""
    share = explained_share(scores, delta, probability)
    return share if share is not None and share < NEUTRAL_SHARE else None


def unconverged_limit(settings: dict[str, Any]) -> float:
    """The completeness error above which a record's IG examples are flagged: the run's tolerance
    (adaptive IG) when it is larger than :data:`UNCONVERGED`."""
    tolerance = ((settings or {}).get("attribution") or {}).get("tolerance")
    return max(UNCONVERGED, tolerance or 0.0)


class RecordError(ValueError):
    """A file that is not a readable saliency record of a schema this version understands."""


def class_name(index: Optional[int], names: Optional[Sequence[str]]) -> Optional[str]:
    if index is None:
        return None
    return names[index] if names is not None and 0 <= index < len(names) else str(index)


@dataclass
class ExampleRecord:
    """One probe example in one run: tokens (padding removed), prediction and per-method scores."""

    index: int
    text: str
    tokens: list[str]
    word_ids: list[Optional[int]]
    special: list[bool]
    label: Optional[int]
    label_name: Optional[str]
    predicted: int
    predicted_name: Optional[str]
    probability: float
    target: int
    target_score: float
    attributions: dict[str, list[float]]
    delta: dict[str, float] = field(default_factory=dict)
    steps: dict[str, int] = field(default_factory=dict)
    truncated: bool = False
    # Per token, the chat turn it belongs to (system, user, assistant; None for the template's own
    # tokens), when the example is a rendered conversation; None otherwise.
    roles: Optional[list[Optional[str]]] = None
    # For a row that explains one span of its example (token classification): the span's first and
    # last token positions; None when the row is the whole example.
    span: Optional[list[int]] = None
    # The scored completion or target as text (task="completion" or "seq2seq"); ``text`` is then
    # the prompt alone, the part that is explained.
    completion: Optional[str] = None
    # F(x'): the attributed score at the baseline (IG's starting point), beside F(x) = target_score.
    baseline_score: Optional[float] = None

    @property
    def key(self) -> tuple:
        """What identifies this row across runs: its dataset index, and its span when it has one."""
        return (self.index, tuple(self.span) if self.span else ())

    def regular_scores(self, method: str) -> list[float]:
        """The method's scores of the non-special tokens."""
        return [s for s, special in zip(self.attributions[method], self.special) if not special]

    @cached_property
    def spans(self) -> tuple[list[str], list[list[int]], list[bool]]:
        """Words (subwords merged by ``word_ids``), their token positions and special flags; the
        same for every method, so merged once per example (a run reads them per method and class)."""
        return word_spans(self.tokens, self.special, self.word_ids)

    @property
    def word_roles(self) -> Optional[list[Optional[str]]]:
        """Per word (an entry of :meth:`words`), the chat turn of its first token; ``None`` when
        the example is not a conversation."""
        return None if self.roles is None else span_roles(self.roles, self.spans[1])

    def words(self, method: str) -> tuple[list[str], list[float], list[bool]]:
        """Words (subwords merged by ``word_ids``, scores summed), their scores and special flags."""
        words, positions, flags = self.spans
        return words, span_sums(self.attributions[method], positions), flags


@dataclass
class ConcentrationSummary:
    per_example: list[dict[str, float]]
    mean: dict[str, float]


@dataclass
class DriftBlock:
    """Drift of one method against an earlier run, over the examples both attributed."""

    against: str
    positions: list[int]
    per_example: list[dict[str, float]]
    summary: dict[str, dict[str, float]]
    before_top: list[list[tuple[str, float]]]


@dataclass
class ShortcutFindings:
    suspects: list[Suspect]
    tokens: list[TokenStat]
    reference: Optional[str]


@dataclass
class FaithfulnessSummary:
    """ERASER comprehensiveness and sufficiency, means over the probe examples per fraction."""

    fractions: list[float]
    comprehensiveness: list[float]
    sufficiency: list[float]
    comprehensiveness_aopc: float
    sufficiency_aopc: float


@dataclass
class ClassSummary:
    """One method's view of the probe examples of one true class (predicted where unlabelled):
    its top words by mean share of |attribution|, and the mean drift against the ``start`` run."""

    label: int
    name: Optional[str]
    examples: int
    top: list[tuple[str, float]]
    drift_start: dict[str, float] = field(default_factory=dict)


@dataclass
class RunMetrics:
    """What the analysis found. ``causal``: the causal checks of this run's suspects (``causal_error``
    when they could not run); ``timeline``: every suspect of the training run so far, with the run
    and step it was first suspected and confirmed at; ``artifacts``: per method, the training-set
    artifacts crossed with reliance; ``per_class``: per method, one summary per class; ``features``: the
    shortcuts that are not words (length, token classes), their association and reliance."""

    scalars: dict[str, float] = field(default_factory=dict)
    concentration: dict[str, ConcentrationSummary] = field(default_factory=dict)
    drift: dict[str, dict[str, DriftBlock]] = field(default_factory=dict)
    shortcut: dict[str, ShortcutFindings] = field(default_factory=dict)
    faithfulness: dict[str, FaithfulnessSummary] = field(default_factory=dict)
    causal: list[CausalCheck] = field(default_factory=list)
    causal_error: Optional[str] = None
    timeline: list[SuspectTimeline] = field(default_factory=list)
    artifacts: dict[str, ArtifactCrossing] = field(default_factory=dict)
    per_class: dict[str, list[ClassSummary]] = field(default_factory=dict)
    features: list[FeatureReading] = field(default_factory=list)

    def confirmed(self) -> list[str]:
        """The suspects this run's causal checks confirmed."""
        return [c.token for c in self.causal if c.confirmed]

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "RunMetrics":
        return cls(
            scalars=dict(data.get("scalars", {})),
            concentration={m: lenient(ConcentrationSummary, v) for m, v in data.get("concentration", {}).items()},
            drift={
                m: {name: lenient(DriftBlock, {**b, "before_top": [[tuple(p) for p in top]
                                                                    for top in b.get("before_top") or []]})
                    for name, b in blocks.items()}
                for m, blocks in data.get("drift", {}).items()
            },
            shortcut={
                m: ShortcutFindings([lenient(Suspect, s) for s in v.get("suspects", [])],
                                    [lenient(TokenStat, t) for t in v.get("tokens", [])], v.get("reference"))
                for m, v in data.get("shortcut", {}).items()
            },
            faithfulness={m: lenient(FaithfulnessSummary, v) for m, v in data.get("faithfulness", {}).items()},
            causal=[causal_check(c) for c in data.get("causal") or []],
            causal_error=data.get("causal_error"),
            timeline=[lenient(SuspectTimeline, t) for t in data.get("timeline") or []],
            artifacts={m: crossing(v) for m, v in (data.get("artifacts") or {}).items()},
            per_class={m: [lenient(ClassSummary, {**c, "top": [tuple(p) for p in c.get("top") or []]}) for c in v]
                       for m, v in (data.get("per_class") or {}).items()},
            features=[feature_reading(f) for f in data.get("features") or []],
        )


@dataclass
class SkippedExample:
    """A probe example a run could not attribute, and why (the rest of the run goes on)."""

    index: int
    reason: str


@dataclass(frozen=True)
class RunRecord:
    """Everything one attribution run produced, immutable: each stage (analysis, evidence,
    publishing) derives a new record with :func:`dataclasses.replace` and none changes one it was
    given, so a record held in ``history`` or by the background writer never changes under it.
    ``seconds`` is the run's wall time, publishing included, set when the run is published. A run that failed as a whole has
    ``status="failed"``, its ``error``, and no examples. ``step_run``: a cheap run between epochs."""

    label: str
    stage: str
    epoch: Optional[int]
    global_step: int
    settings: dict[str, Any]
    methods: list[str]
    examples: list[ExampleRecord]
    metrics: RunMetrics = field(default_factory=RunMetrics)
    seconds: Optional[float] = None
    skipped: list[SkippedExample] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    status: str = "ok"
    error: Optional[str] = None
    run_id: Optional[str] = None
    step_run: bool = False
    schema: int = SCHEMA_VERSION

    def to_json(self) -> dict[str, Any]:
        """The JSON form (plain dicts and lists; non-finite numbers become ``null``)."""
        data = asdict(self)
        ordered = {key: data[key] for key in ("schema", "run_id", "label", "stage", "step_run", "epoch", "global_step", "status", "error",
                                              "seconds", "timings", "settings", "methods", "examples", "skipped", "metrics")}
        return finite(ordered)

    @classmethod
    def from_json(cls, data: Any) -> "RunRecord":
        if not isinstance(data, dict):
            raise RecordError(f"not a saliency record (a JSON {type(data).__name__}, not an object)")
        missing = [key for key in ("label", "methods", "examples") if key not in data]
        if missing:
            raise RecordError(f"not a saliency record (missing {', '.join(missing)})")
        schema = data.get("schema", SCHEMA_VERSION)
        if schema != SCHEMA_VERSION:
            raise RecordError(f"schema {schema}, but this version of lightning-saliency reads schema {SCHEMA_VERSION}")
        try:
            methods = [str(m) for m in data["methods"]]
            return cls(
                label=str(data["label"]), stage=data.get("stage", "fit"), epoch=data.get("epoch"),
                global_step=data.get("global_step") or 0, settings=dict(data.get("settings") or {}),
                methods=methods, examples=[_example(e, position) for position, e in enumerate(data["examples"])],
                metrics=RunMetrics.from_json(data.get("metrics") or {}), seconds=data.get("seconds"),
                skipped=[lenient(SkippedExample, k) for k in data.get("skipped") or []],
                timings=dict(data.get("timings") or {}),
                status=data.get("status", "ok"), error=data.get("error"), run_id=data.get("run_id"),
                step_run=bool(data.get("step_run", False)), schema=schema,
            )
        except (TypeError, KeyError, AttributeError, ValueError) as error:
            raise RecordError(f"malformed saliency record ({error})") from error

    def restricted_to(self, keys: Sequence[tuple]) -> "RunRecord":
        """This run with only the rows whose :attr:`ExampleRecord.key` is in ``keys`` (in that order)."""
        by_key = {e.key: e for e in self.examples}
        return replace(self, examples=[by_key[k] for k in keys if k in by_key])


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _example(data: Any, position: int) -> ExampleRecord:
    """One example of a record read from JSON, checked field by field: what the report draws must
    have the right type and length (a ``null`` score is what a NaN becomes in JSON)."""
    if not isinstance(data, dict):
        raise ValueError(f"example {position} is not an object")
    example = ExampleRecord(**data)
    where = f"example {position} (dataset index {example.index!r})"
    n = len(example.tokens) if isinstance(example.tokens, list) else -1
    if n < 0 or not all(isinstance(t, str) for t in example.tokens):
        raise ValueError(f"{where}: tokens is not a list of strings")
    for name in ("special", "word_ids"):
        if not isinstance(getattr(example, name), list) or len(getattr(example, name)) != n:
            raise ValueError(f"{where}: {name} does not hold one entry per token")
    if not isinstance(example.attributions, dict):
        raise ValueError(f"{where}: attributions is not an object")
    for method, scores in example.attributions.items():
        if not isinstance(scores, list) or len(scores) != n or not all(_is_number(v) for v in scores):
            raise ValueError(f"{where}: the {method} scores are not {n} numbers (one per token)")
    for name in ("probability", "target_score"):
        if not _is_number(getattr(example, name)):
            raise ValueError(f"{where}: {name} is {getattr(example, name)!r}, not a number")
    for name in ("index", "predicted", "target"):
        if not isinstance(getattr(example, name), int) or isinstance(getattr(example, name), bool):
            raise ValueError(f"{where}: {name} is {getattr(example, name)!r}, not an integer")
    if example.label is not None and not isinstance(example.label, int):
        raise ValueError(f"{where}: label is {example.label!r}, not an integer")
    if example.span is not None and (not isinstance(example.span, list) or len(example.span) != 2
                                     or not all(isinstance(v, int) and 0 <= v < n for v in example.span)):
        raise ValueError(f"{where}: span is not [first, last] token positions")
    if example.roles is not None and (not isinstance(example.roles, list) or len(example.roles) != n
                                      or not all(r is None or isinstance(r, str) for r in example.roles)):
        raise ValueError(f"{where}: roles does not hold one role (or null) per token")
    if not isinstance(example.text, str) or not isinstance(example.delta, dict):
        raise ValueError(f"{where}: text or delta has the wrong type")
    if not all(v is None or _is_number(v) for v in example.delta.values()):
        raise ValueError(f"{where}: a delta is not a number")
    return example


def finite(value: Any) -> Any:
    """JSON-safe copy: NaN and infinities (e.g. a rank correlation over one token) become None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):  # keys as JSON writes them (a class index becomes a string)
        return {str(k) if isinstance(k, int) else k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value


def scalar_name(text: str) -> str:
    """A class or token name as one segment of a scalar tag."""
    return re.sub(r"[^0-9A-Za-z_.-]+", "_", text).strip("_") or "_"
