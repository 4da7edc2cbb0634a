"""The token-label association of a training set (Gardner et al. 2021) and how it lines up with
what the model relies on: pure functions over word sets, labels and token statistics.

Gardner et al.'s "competency problems" test: for a word in ``n`` training examples of which a
fraction ``p`` has label ``y`` (prior ``p0``), ``z = (p - p0) / sqrt(p0 (1 - p0) / n)``. A word is
an *artifact* when its ``z`` passes the Bonferroni-corrected one-sided 1% level over the words
tested (the line in their Figure 1). Crossed with reliance on the probe set, three lists answer
"why does the model do this": artifacts it relies on (the shortcut and its cause), words it relies
on without an artifact (look elsewhere: a genuine cue, or a pattern of several words), and artifacts
it ignores (so far).
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from statistics import NormalDist
from typing import Iterable, Mapping, Optional, Sequence

from lightning_saliency.monitor.metrics.shortcut import ShortcutRules, TokenStat, association_z
from lightning_saliency.schema.findings import ArtifactCrossing, CrossRow, FeatureAssociation

ALPHA = 0.01
CROSS_ROWS = 5


@dataclass
class ArtifactRow:
    """One word of the training set: in ``count`` examples, ``p_label`` of them with ``label``."""

    token: str
    count: int
    label: Optional[int]
    p_label: float
    z: float


@dataclass
class ArtifactTable:
    """The association of every word in the sampled training examples. ``rows``: the artifacts
    (``z >= threshold``), strongest first; ``words``: every word's row, for lookups (not saved);
    ``features``: the association of each feature that is not a word (length, token classes);
    ``sample``: the examples read."""

    examples: int
    threshold: float
    rows: list[ArtifactRow]
    words: dict[str, ArtifactRow] = field(default_factory=dict, repr=False)
    features: dict[str, FeatureAssociation] = field(default_factory=dict)
    sample: "Optional[ExampleSample]" = field(default=None, repr=False)


@dataclass(frozen=True)
class ExampleSample:
    """The training examples an artifact table was read from: dataset indices, words and labels
    (what a confirmed shortcut's carriers are listed from), of a dataset of ``dataset_size``;
    ``segments``: each word's text segment, for pair inputs (``None`` for single texts);
    ``roles``: each word's chat turn, for conversations (``None`` otherwise). ``labels`` are class
    indices, or a completion's answer texts."""

    indices: tuple[int, ...]
    word_lists: tuple[tuple[str, ...], ...]
    labels: tuple
    dataset_size: int
    segments: Optional[tuple[tuple[int, ...], ...]] = None
    roles: Optional[tuple[tuple[Optional[str], ...], ...]] = None


def bonferroni_z(tests: int, alpha: float = ALPHA) -> float:
    """The one-sided normal quantile at ``alpha`` corrected for ``tests`` comparisons."""
    return NormalDist().inv_cdf(1 - alpha / max(tests, 1))


def association_table(word_sets: Sequence[Iterable[str]], labels: Sequence[int]) -> ArtifactTable:
    """Gardner et al.'s z of every word against the label prior of these examples."""
    total = len(labels)
    priors = {y: n / total for y, n in Counter(labels).items()} if total else {}
    counts: Counter = Counter()
    with_label: dict[str, Counter] = {}
    for words, label in zip(word_sets, labels):
        for word in set(words):
            counts[word] += 1
            with_label.setdefault(word, Counter())[label] += 1
    rows = {}
    for word, count in counts.items():
        z, label = 0.0, None
        for y, prior in priors.items():
            value = association_z(with_label[word][y], count, prior)
            if value > z:
                z, label = value, y
        p = with_label[word][label] / count if label is not None else 0.0
        rows[word] = ArtifactRow(word, count, label, p, z)
    threshold = bonferroni_z(len(rows))
    artifacts = sorted((r for r in rows.values() if r.z >= threshold), key=lambda r: (-r.z, r.token))
    return ArtifactTable(total, threshold, artifacts, rows)


def relied_on(stat: TokenStat, rules: ShortcutRules, min_count: int) -> bool:
    """The model leans on the word in the probe set: the suspect bars without rise or label z."""
    strong = stat.mean_share >= rules.min_share or stat.mean_lift >= rules.min_lift
    return stat.examples >= min_count and stat.top1_rate >= rules.top1_rate and strong


def cross(table: ArtifactTable, stats: Mapping[str, TokenStat], rules: ShortcutRules, probe_size: int,
          rows: int = CROSS_ROWS) -> ArtifactCrossing:
    """The three lists (see the module docstring), ``rows`` each."""
    min_count = rules.min_count(probe_size)

    def row(word: str) -> CrossRow:
        found, stat = table.words.get(word), stats.get(word)
        return CrossRow(word, found.z if found else None, found.count if found else 0, found.label if found else None,
                        found.p_label if found else None, stat.top1_rate if stat else None,
                        stat.mean_share if stat else None, stat.mean_lift if stat else None)

    relied = sorted((w for w, s in stats.items() if relied_on(s, rules, min_count)),
                    key=lambda w: (-stats[w].top1_rate * stats[w].mean_share, w))
    artifacts = {r.token for r in table.rows}
    return ArtifactCrossing(
        relied_artifacts=[row(w) for w in sorted((w for w in relied if w in artifacts),
                                                 key=lambda w: (-table.words[w].z, w))][:rows],
        relied_only=[row(w) for w in relied if w not in artifacts][:rows],
        ignored_artifacts=[row(r.token) for r in table.rows if r.token not in relied][:rows],
        examples=table.examples, threshold=table.threshold,
    )
