"""The evidence stage of a run, between the analysis and the publishing: pick the suspects to
check, run their causal checks on every rank, and keep the suspects' timeline.

Only rank zero analyses, but the checks are sharded like attribution, so rank zero broadcasts what
to check (one broadcast every run, on every rank, whatever happened locally) and every rank then
holds the same checks, the same timeline and the same stop decision.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any, Callable, NamedTuple, Optional

from lightning_saliency.monitor.distributed import Ranks
from lightning_saliency.monitor.metrics.artifacts import ArtifactTable
from lightning_saliency.monitor.evidence.causal import CausalCandidate, CausalCheck, CausalSettings, confirm_suspects
from lightning_saliency.monitor.evidence.timeline import SuspectTimeline, update_timeline
from lightning_saliency.monitor.features.carriers import carrier_lines
from lightning_saliency.schema.findings import Carriers
from lightning_saliency.schema.records import scalar_name
from lightning_saliency.probes import ProbeSet


@dataclass(frozen=True)
class _Order:
    """What rank zero tells every rank to check in one run."""

    candidates: tuple[CausalCandidate, ...] = ()
    suspected: tuple[tuple[str, str], ...] = ()  # (token, method) of every suspect of the run
    vocabulary: tuple[str, ...] = ()
    neutral: Optional[tuple[str, ...]] = None  # the vocabulary's words with no label association
    # Rank zero's say on whether suspects checked before and never confirmed are checked again.
    recheck_unconfirmed: bool = True


# A word is neutral, fit to pad a text or stand in for another in a feature's edits, when its
# training-set association with every class stays below this z (Gardner et al.'s).
NEUTRAL_Z = 2.0


def order_from(record: Any, artifacts: Optional[ArtifactTable] = None) -> _Order:
    """The suspects of an analysed record (strongest first, one check per token), the probe words
    the controls are drawn from (no suspect's word among them) and, with the training set's
    ``artifacts``, those of them that go with no class (what a feature's edits pad with)."""
    candidates: dict[str, CausalCandidate] = {}
    suspected = []
    for method, findings in record.metrics.shortcut.items():
        for s in findings.suspects:
            suspected.append((s.token, method))
            if s.token not in candidates and s.label is not None:
                candidates[s.token] = CausalCandidate(s.token, tuple(s.members), int(s.label))
    taken = {m for c in candidates.values() for m in c.members}
    words: set[str] = set()
    for example in record.examples if record.methods else ():  # the words are the same for every method
        texts, _, special = example.words(record.methods[0])
        words.update(w for w, is_special in zip(texts, special) if not is_special and w not in taken)
    neutral = None
    if artifacts is not None:
        neutral = tuple(sorted(w for w in words if w not in artifacts.words or artifacts.words[w].z < NEUTRAL_Z))
    return _Order(tuple(candidates.values()), tuple(suspected), tuple(sorted(words)), neutral)


class EvidenceOutcome(NamedTuple):
    """One run's evidence: the checks, why they could not run (``None``: they could, or there were
    none), and the JSONL files to write next to the record (name -> lines): the training examples
    that carry each shortcut confirmed for the first time."""

    checks: list[CausalCheck]
    error: Optional[str]
    attachments: dict[str, list[dict]]


# A suspect checked without being confirmed is checked again at the next runs, whether or not they
# raise it again, this many times at most: a cheap step run attributes few examples (under a budget,
# 2 while a check's cost is paid back), too few to raise it, yet the model may be learning it.
WATCHED_CHECKS = 8


class EvidenceTracker:
    """Causal checks, the suspects' timeline and the training-set artifact table of one fit.

    Attributes:
        timeline: per suspect token, when it was first suspected and confirmed.
        confirmed: the suspects the last run confirmed (the same on every rank).
        artifacts: the training set's artifact table, once computed (rank zero).
    """

    def __init__(self) -> None:
        self.timeline: dict[str, SuspectTimeline] = {}
        self.confirmed: list[str] = []
        self.artifacts: Optional[ArtifactTable] = None
        # Suspects checked but not confirmed, with the checks left to them (the same on every rank:
        # updated from the gathered checks alone).
        self._watched: dict[str, tuple[CausalCandidate, int]] = {}
        self._carriers: dict[str, Carriers] = {}  # per confirmed token, its carriers' summary (rank zero)
        # Tokens checked at least once, with edits to test, and never confirmed (the same on every
        # rank). A check without edits (no example predicted otherwise to swap with) tested nothing.
        self._unconfirmed: set[str] = set()

    def run(
        self,
        record: Optional[Any],
        access: Any,
        examples: Optional[Callable[[], ProbeSet]],
        probe: Optional[ProbeSet],
        settings: Optional[CausalSettings],
        label: str,
        step: int,
        ranks: Ranks,
        advance: Callable[[int], None],
        recheck_confirmed: bool = True,
        recheck_unconfirmed: bool = True,
    ) -> EvidenceOutcome:
        """One run's evidence stage on every rank. ``record``: the analysed record (rank zero),
        A failure on rank zero before this stage (``ranks.failure``) raises on every rank at the broadcast.
        ``settings``/``examples`` ``None``: no causal checks (only the timeline is kept).
        ``recheck_confirmed=False`` (step runs): suspects the timeline already holds as confirmed are
        not checked again; a check is the costliest part of a cheap run (on MiniLM, 768 forward
        rows against 24 for the gradient), and epoch runs re-check them for their records.
        ``recheck_unconfirmed=False`` (rank zero's say, agreed with the order): suspects checked
        before and never confirmed are not checked again at this run; new suspects still are."""
        order = _Order(recheck_unconfirmed=recheck_unconfirmed)
        if ranks.is_zero and record is not None:
            order = replace(order_from(record, self.artifacts), recheck_unconfirmed=recheck_unconfirmed)
        order = ranks.agree(order)
        checks, error = [], None
        raised = {c.token for c in order.candidates}
        candidates = order.candidates + tuple(c for token, (c, _) in self._watched.items() if token not in raised)
        if not recheck_confirmed:  # the timeline is the same on every rank: every rank drops the same
            candidates = tuple(c for c in candidates
                               if c.token not in self.timeline or self.timeline[c.token].confirmed_run is None)
        if not order.recheck_unconfirmed:
            candidates = tuple(c for c in candidates if c.token not in self._unconfirmed)
        if settings is not None and examples is not None and candidates:
            # Control words are drawn from the probe's words, none of any checked suspect's.
            suspect_words = {m for c in candidates for m in c.members}
            vocabulary = [w for w in order.vocabulary if w not in suspect_words]
            neutral = None if order.neutral is None else [w for w in order.neutral if w not in suspect_words]
            try:
                # The checks' own failures stay theirs: a fresh failure state, so that the run's
                # attributions stand without their evidence on every rank alike.
                checks = confirm_suspects(access, examples, probe, candidates, vocabulary, settings,
                                          Ranks(ranks.rank, ranks.world_size, in_step=ranks.in_step), advance,
                                          neutral=neutral)
            except Exception as failure:  # the run's attributions stand without their evidence
                error = f"{type(failure).__name__}: {failure}"
        self._watch(candidates, checks)
        self.confirmed = [c.token for c in checks if c.confirmed]
        update_timeline(self.timeline, label, step, order.suspected, self.confirmed)
        checks, attachments = self._with_carriers(checks)
        return EvidenceOutcome(checks, error, attachments)

    def _with_carriers(self, checks: list[CausalCheck]) -> tuple[list[CausalCheck], dict[str, list[dict]]]:
        """Each confirmed check with the training examples that carry it (from alarm to action):
        listed once, at its first confirmation, from the artifact table's sample (rank zero)."""
        sample = self.artifacts.sample if self.artifacts is not None else None
        attachments: dict[str, list[dict]] = {}
        if sample is None:
            return checks, attachments
        found = []
        for check in checks:
            if check.confirmed and check.token not in self._carriers:
                name = f"carriers/{scalar_name(check.token)}.jsonl"
                summary, lines = carrier_lines(sample.indices, sample.word_lists, sample.labels, check.token,
                                               check.members, self.artifacts.features.get(check.token),
                                               sample.dataset_size, sample.segments, sample.roles)
                self._carriers[check.token] = replace(summary, path=name)
                attachments[name] = lines
            found.append(replace(check, carriers=self._carriers[check.token]) if check.confirmed else check)
        return found, attachments

    def _watch(self, candidates: tuple[CausalCandidate, ...], checks: list[CausalCheck]) -> None:
        """Keep watching the checked suspects that were not confirmed, each for its checks left."""
        by_token = {c.token: c for c in candidates}
        for check in checks:
            if check.confirmed:
                self._unconfirmed.discard(check.token)
                self._watched.pop(check.token, None)
            elif check.token in by_token:
                if check.deletion.trials or check.insertion.trials:  # a check that tested nothing is no check
                    self._unconfirmed.add(check.token)
                left = self._watched.get(check.token, (None, WATCHED_CHECKS))[1] - 1
                if left > 0:
                    self._watched[check.token] = (by_token[check.token], left)
                else:
                    self._watched.pop(check.token, None)

    def state_dict(self) -> list[dict]:
        return [asdict(t) for t in self.timeline.values()]

    def load_state_dict(self, entries: list[dict]) -> None:
        self.timeline = {e["token"]: SuspectTimeline(**e) for e in entries or []}
