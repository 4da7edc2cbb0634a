"""All model work of one monitor run: shard the probe, attribute, score faithfulness, gather.

Every model pass of a run (attribution and faithfulness alike) goes through :func:`run_model_passes`
with the same token budget (``config.max_tokens``), the same precision context, the same progress
bar and the same DDP shard. It returns a :class:`ModelPasses` on rank zero (``None`` elsewhere) and
calls nothing back: what happens to the numbers is the caller's business.
"""
from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, ContextManager, Iterator, Optional, Sequence, Union

import torch

from lightning_saliency.monitor.metrics.faithfulness import faithfulness_summary
from lightning_saliency.attribution import AttributionConfig, attribute
from lightning_saliency.attribution.faithfulness import erasure_faithfulness
from lightning_saliency.attribution.results import Attributions, concatenate, select_rows
from lightning_saliency.monitor.distributed import Ranks
from lightning_saliency.monitor.model_access import ModelAccess
from lightning_saliency.monitor.probe import attributable_rows
from lightning_saliency.probes import ProbeSet
from lightning_saliency.schema.records import FaithfulnessSummary

FAITHFULNESS_METHODS = ("integrated_gradients", "gradient")
FRACTIONS = (0.1, 0.2, 0.5)
Progress = Callable[[str], ContextManager[Callable[[int], None]]]


@dataclass(frozen=True)
class PassSettings:
    """What the model passes of one run compute."""

    methods: tuple[str, ...]
    config: AttributionConfig
    target: Union[str, int]
    task: str
    faithfulness: bool
    seed: int


@dataclass
class ModelPasses:
    """The gathered result of one run's model passes: ``rows`` are the probe positions attributed
    (in probe order, the rows of ``attributions``), ``skipped`` the others with their reasons."""

    attributions: Attributions
    faithfulness: dict[str, FaithfulnessSummary]
    rows: list[int]
    skipped: list[tuple[int, str]]
    seconds: dict[str, float]


@dataclass
class _Shard:
    rows: list[int]
    attributions: Optional[Attributions]
    faithfulness: dict[str, tuple[torch.Tensor, torch.Tensor]]
    skipped: list[tuple[int, str]]
    seconds: dict[str, float] = field(default_factory=dict)


NON_FINITE = "the model's output or its attributions are NaN or infinite for this example"


class ModelDiverged(ValueError):
    """Every probe example gave NaN or infinite outputs or attributions: the model has diverged.
    Raised alike on every rank (decided from the gathered shards)."""


def _drop_non_finite(shard: "_Shard") -> None:
    """Move the examples whose outputs or attributions are not finite to ``shard.skipped``: a
    diverged (or overflowing) model must not enter the record as ``null`` scores."""
    result = shard.attributions
    values = [result.probability, result.target_score] + [m.scores for m in result.methods.values()]
    finite = torch.ones(len(shard.rows), dtype=torch.bool)
    for value in values:
        finite &= torch.isfinite(value.reshape(len(shard.rows), -1).float()).all(dim=1)
    if bool(finite.all()):
        return
    keep = finite.nonzero().flatten().tolist()
    shard.skipped += [(row, NON_FINITE) for row, ok in zip(shard.rows, finite.tolist()) if not ok]
    shard.rows = [shard.rows[k] for k in keep]
    shard.attributions = select_rows(result, keep) if keep else None
    shard.faithfulness = {m: (c[keep], s[keep]) for m, (c, s) in shard.faithfulness.items()} if keep else {}


def _isolate_failures(
    access: ModelAccess, probe: ProbeSet, rows: list[int], settings: PassSettings, error: Exception
) -> tuple[list[int], list[tuple[int, str]]]:
    """After the batch failed: try each example alone (a gradient pass, forward and backward) to
    find the ones that fail, so one bad example (too long for the model, an odd token) never
    silences the run. Re-raises ``error`` when every example fails alone."""
    good, bad = [], []
    single = PassSettings(("gradient",), settings.config, settings.target, settings.task, False, settings.seed)
    for row in rows:
        try:
            _attribute_shard(access, probe.select([row]), [row], single, lambda n: None)
            good.append(row)
        except Exception as failure:  # this example alone fails: skip it, keep the others
            bad.append((row, f"{type(failure).__name__}: {failure}"))
    if not good:  # every example fails alone: a problem of the run, not of an example
        raise error
    return good, bad


@contextmanager
def no_progress(description: str) -> Iterator[Callable[[int], None]]:
    yield lambda rows: None


@contextmanager
def row_progress(description: str) -> Iterator[Callable[[int], None]]:
    """A tqdm bar counting evaluated rows. How many a run needs is not known ahead (adaptive IG
    refines per example), so no total is shown rather than a wrong one. Not on a non-terminal
    output (cluster jobs, CI), where every redraw would be a new line of the log, as Lightning's
    own bars do."""
    import sys

    from tqdm.auto import tqdm

    if not sys.stdout.isatty():
        yield lambda rows: None
        return
    bar = tqdm(desc=description, leave=False, dynamic_ncols=True, file=sys.stdout, unit="row")
    try:
        yield bar.update
    finally:
        bar.close()


def target_argument(target: Union[str, int], probe: ProbeSet) -> Any:
    """The engine's ``target=`` for the monitor's ``target`` choice."""
    if target == "predicted":
        return None
    if target == "label":
        if probe.labels is None:
            raise ValueError("target='label' but the probe examples have no labels.")
        return probe.labels
    return target


def _attribute_shard(
    access: ModelAccess, part: ProbeSet, rows: list[int], settings: PassSettings, advance: Callable[[int], None],
    seconds: Optional[dict[str, float]] = None,
) -> tuple[Attributions, dict[str, tuple[torch.Tensor, torch.Tensor]]]:
    common = dict(
        tokenizer=access.tokenizer, special_tokens=access.special_tokens, embedding_layer=access.embedding_layer,
        forward_fn=access.forward_fn, forward_context=access.forward_context, task=settings.task,
        config=settings.config, progress=advance, lockstep=access.lockstep,
    )
    started = time.perf_counter()
    result = attribute(access.module, part.inputs, settings.methods, target=target_argument(settings.target, part),
                       **common)
    attributed = time.perf_counter()
    tables: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    rankings = {m: result[m].scores for m in FAITHFULNESS_METHODS if m in result}
    if settings.faithfulness and rankings:
        # The attributed targets, and random-control streams keyed by probe position, so that a
        # sharded run scores exactly what an unsharded one would.
        # With predicted targets, p(target | x) is the attribution run's probability: no extra pass.
        known = result.probability if settings.target == "predicted" else None
        scores = erasure_faithfulness(access.module, part.inputs, rankings, fractions=FRACTIONS, target=result.target,
                                      seed=settings.seed, streams=rows, reference_probability=known, **common)
        tables = {m: (entry["comprehensiveness"], entry["sufficiency"]) for m, entry in scores.items()}
    if seconds is not None:  # this shard's model time, by kind of pass
        seconds["attribution"] = seconds.get("attribution", 0.0) + attributed - started
        seconds["faithfulness"] = seconds.get("faithfulness", 0.0) + time.perf_counter() - attributed
    return select_rows(result, range(len(rows))), tables


def _shard_passes(access: ModelAccess, probe: ProbeSet, settings: PassSettings, progress: Progress,
                  description: str, max_length: Optional[int], assigned: list[int]) -> _Shard:
    """One rank's passes over its ``assigned`` rows: untried skips first, then the batch, and
    one bad example isolated rather than losing the batch."""
    rows, skipped = attributable_rows(probe, access.special_tokens, assigned, max_length)
    shard = _Shard(rows, None, {}, skipped)
    if access.lockstep is not None:  # sharded parameters: every rank makes the same passes
        _passes_in_step(access, probe, settings, max_length, shard)
        return shard
    if rows:
        with progress(description) as advance:
            try:
                shard.attributions, shard.faithfulness = _attribute_shard(
                    access, probe.select(rows), rows, settings, advance, shard.seconds)
            except Exception as error:
                shard.rows, bad = _isolate_failures(access, probe, rows, settings, error)
                shard.skipped += bad
                shard.seconds.clear()  # the successful pass's time only
                shard.attributions, shard.faithfulness = _attribute_shard(
                    access, probe.select(shard.rows), shard.rows, settings, advance, shard.seconds)
        _drop_non_finite(shard)
    return shard


def _passes_in_step(access: ModelAccess, probe: ProbeSet, settings: PassSettings, max_length: Optional[int],
                    shard: _Shard) -> None:
    """The passes of a rank whose model is sharded. A rank with nothing of its own attributes a
    stand-in (the probe's first attributable example) and keeps none of it, and a failure is not
    isolated example by example: either would change the number of passes on one rank alone."""
    rows = shard.rows
    if not rows:
        good, _ = attributable_rows(probe, access.special_tokens, range(len(probe)), max_length)
        if not good:  # nothing attributable anywhere: no rank makes a pass
            return
        _attribute_shard(access, probe.select(good[:1]), good[:1], settings, lambda n: None)
        return
    shard.attributions, shard.faithfulness = _attribute_shard(
        access, probe.select(rows), rows, settings, lambda n: None, shard.seconds)
    _drop_non_finite(shard)


def run_model_passes(
    access: ModelAccess,
    probe: Optional[ProbeSet],
    settings: PassSettings,
    ranks: Optional[Ranks] = None,
    progress: Progress = no_progress,
    description: str = "Saliency",
    max_length: Optional[int] = None,
) -> Optional[ModelPasses]:
    """Attribute ``probe`` (this rank's share of it) and gather the shards on rank zero. Examples
    with nothing to attribute or longer than ``max_length`` (the model's positions) are skipped
    untried, with the reason.

    The sharding, the one gather and the failure rule are :meth:`Ranks.sharded`'s: a rank that
    failed earlier in the run (``ranks.failure``, e.g. no probe set) still joins, and every rank
    raises :class:`ShardError` when any failed. Returns the joined result on rank zero and ``None``
    on the others.
    """
    ranks = ranks or Ranks()
    if probe is None and ranks.failure is None:
        ranks.failure = f"rank {ranks.rank}: no probe set"
    lengths = probe.lengths() if probe is not None else []
    gathered = [shard for _, shard in ranks.sharded(
        lambda assigned: _shard_passes(access, probe, settings, progress, description, max_length, assigned), lengths)]
    skipped = sorted(item for s in gathered for item in s.skipped)
    parts = [s for s in gathered if s.attributions is not None]
    if not parts:  # decided from the gathered shards, so every rank raises alike
        if skipped and all(reason == NON_FINITE for _, reason in skipped):
            raise ModelDiverged(f"the model has diverged: its outputs or attributions are NaN or infinite on all "
                                f"{len(skipped)} probe examples. Check the training loss and the learning rate.")
        reasons = "; ".join(f"probe example {probe.indices[r]}: {reason}" for r, reason in skipped) or "no examples"
        raise ValueError(f"No probe example could be attributed ({reasons}).")
    if not ranks.is_zero:
        return None
    order = [i for s in parts for i in s.rows]
    rank_of = {row: k for k, row in enumerate(sorted(order))}  # skipped rows leave gaps in the probe positions
    attributions = (parts[0].attributions if len(parts) == 1
                    else concatenate([s.attributions for s in parts], [rank_of[r] for r in order]))
    inverse = sorted(range(len(order)), key=order.__getitem__)
    faithfulness = {}
    for method in parts[0].faithfulness:
        comprehensiveness = torch.cat([s.faithfulness[method][0] for s in parts])[inverse]
        sufficiency = torch.cat([s.faithfulness[method][1] for s in parts])[inverse]
        faithfulness[method] = faithfulness_summary(FRACTIONS, comprehensiveness, sufficiency)
    # Shards run at the same time: a run's model time is its slowest shard's.
    seconds = {kind: max(s.seconds.get(kind, 0.0) for s in parts) for kind in ("attribution", "faithfulness")}
    return ModelPasses(attributions, faithfulness, sorted(order), skipped, seconds)


def predicted_tags(access: ModelAccess, probe: ProbeSet, max_tokens: int, skip: Sequence[str] = ()) -> torch.Tensor:
    """The model's tag per token of each probe example (``(examples, seq)``): forward passes only,
    on the model in isolated eval mode, in the run's precision context, ``max_tokens`` padded
    tokens at a time. Every rank calls it alike (same examples, same chunks), so sharded parameters
    are gathered in step. ``skip``: probe entries the model does not take."""
    from lightning_saliency.attribution.isolation import isolated_eval
    from lightning_saliency.attribution.targets import extract_logits

    inputs = {k: v for k, v in probe.inputs.items() if k not in skip}
    width = inputs["input_ids"].shape[1]
    per_chunk = max(1, max_tokens // max(width, 1))
    device = next(access.module.parameters()).device
    tags = []
    with isolated_eval(access.module), torch.no_grad(), access.forward_context():
        for start in range(0, len(probe), per_chunk):
            chunk = {k: v[start: start + per_chunk].to(device) for k, v in inputs.items()}
            tags.append(extract_logits(access.forward_fn(access.module, chunk)).argmax(dim=-1).cpu())
    return torch.cat(tags)

