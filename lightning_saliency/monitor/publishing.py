"""Where a finished run goes: scalars, heatmap images and markdown to the sinks (:mod:`.sinks`),
warnings and the user's alert hook, and the record to disk. Scalars, warnings and the hook stay on
the training thread; drawing, text and the file go to a :class:`~.worker.BackgroundWorker`.
"""
from __future__ import annotations

import math
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence

from lightning_saliency.monitor import notices
from lightning_saliency.presentation import render, verdicts
from lightning_saliency.attribution import AttributionConfig
from lightning_saliency.attribution.methods import is_signed
from lightning_saliency.presentation.tables import (artifact_table, causal_table, class_table, feature_table,
                                                    timeline_table)
from lightning_saliency.schema.findings import kind_of
from lightning_saliency.schema.files import write_json, write_jsonl
from lightning_saliency.schema.records import (UNCONVERGED, ExampleRecord, RunRecord, completeness_error,
                                               not_neutral_share, unconverged_limit)
from lightning_saliency.monitor.sinks import LoggerSink, NullSink, Sink, TensorBoardSink
from lightning_saliency.monitor.worker import BackgroundWorker

__all__ = ["LoggerSink", "NullSink", "Publisher", "Sink", "TensorBoardSink", "top_token_rows",
           "alert_markdown", "cost_scalars"]

SCALAR_LAYOUT = {
    "saliency: drift": {
        "spearman vs previous": ["Multiline", [r"saliency/.*/drift_previous/spearman_.*"]],
        "spearman vs start": ["Multiline", [r"saliency/.*/drift_start/spearman_.*"]],
        "top-k overlap vs start": ["Multiline", [r"saliency/.*/drift_start/topk_overlap_.*"]],
        "Jensen-Shannon vs start": ["Multiline", [r"saliency/.*/drift_start/jensen_shannon_.*"]],
    },
    "saliency: concentration": {
        "entropy": ["Multiline", [r"saliency/.*/concentration/entropy"]],
        "top-1 share": ["Multiline", [r"saliency/.*/concentration/top1_share"]],
        "special-token share": ["Multiline", [r"saliency/.*/concentration/special_share"]],
    },
    "saliency: shortcut": {
        "suspects": ["Multiline", [r"saliency/.*/shortcut/suspects"]],
        "top suspect share": ["Multiline", [r"saliency/.*/shortcut/top_share"]],
    },
    "saliency: causal checks": {
        "removal flip rate": ["Multiline", [r"saliency/causal/.*/(control_)?deletion_flip_rate"]],
        "insertion flip rate": ["Multiline", [r"saliency/causal/.*/(control_)?insertion_flip_rate"]],
        "class probability shift (rank z)": ["Multiline", [r"saliency/causal/.*_shift_z"]],
        "confirmed suspects": ["Multiline", [r"saliency/causal/confirmed"]],
    },
    "saliency: faithfulness": {
        "comprehensiveness AOPC": ["Multiline", [r"saliency/.*/faithfulness/comprehensiveness_aopc"]],
        "sufficiency AOPC": ["Multiline", [r"saliency/.*/faithfulness/sufficiency_aopc"]],
    },
    "saliency: cost": {
        "convergence delta": ["Multiline", [r"saliency/.*/delta_(mean|max)"]],
        "seconds and epoch share": ["Multiline", [r"saliency/cost/.*"]],
    },
}


class Publisher:
    """Sends each finished run to the sinks and to ``<directory>/saliency/epoch_<label>.json``.

    Args:
        sinks: where scalars, images and text go (warnings reach the user through
            :func:`~lightning_saliency.monitor.notices.warn`, the package's one way to warn).
        top_k: tokens per example in the markdown tables.
        log_example_images: also log one image per example (the grid image is always logged).
        on_shortcut: called as ``on_shortcut(suspects, record_json)`` when a run has suspects.
        no_images_hint: warned once when no sink takes images (names how to add one).
        color_scale: ``"run"``: one color scale per run and method, so a weak example looks weak;
            ``"example"``: each example scaled to its own largest |score|.
        background: draw images, write text and the record file on a
            :class:`~lightning_saliency.monitor.worker.BackgroundWorker` (``False``: on the calling thread).
        max_pending: runs waiting for the worker before waiting runs lose their images.
    """

    def __init__(
        self,
        sinks: Sequence[Sink],
        top_k: int = 5,
        log_example_images: bool = True,
        on_shortcut: Optional[Callable[[list, dict], None]] = None,
        no_images_hint: Optional[str] = None,
        color_scale: str = "run",
        background: bool = True,
        max_pending: int = 4,
    ) -> None:
        self.sinks, self.top_k, self.color_scale = list(sinks), top_k, color_scale
        self.log_example_images, self.on_shortcut = log_example_images, on_shortcut
        self._warned_tokens: set[str] = set()
        self._warned_skips: set[str] = set()
        self._confirmed_tokens: set[str] = set()
        self.worker = BackgroundWorker(max_pending) if background else None
        if no_images_hint and not any(s.takes_images for s in self.sinks) and self.sinks:
            notices.warn(no_images_hint)

    def publish(self, record: RunRecord, directory: Path, started: float, epoch_seconds: Optional[float],
                attachments: Optional[Mapping[str, Sequence[dict]]] = None) -> tuple[RunRecord, dict[str, Any]]:
        """Finish ``record`` on the training thread (its cost scalars: ``started`` is when the run
        began), send the scalars and warnings, and hand drawing, text and the file to the worker.
        ``attachments``: JSONL files to write next to the record (a path under ``saliency/`` ->
        lines), before it. Returns the published record (a new one: ``record`` is not changed) and
        its JSON form."""
        publishing = time.perf_counter()
        self._warn_and_call_back(record, directory)
        if record.skipped:
            self._warn_skipped(record)
        timed = replace(record, seconds=time.perf_counter() - started,  # what the run blocked training for
                        timings={**record.timings, "publishing": time.perf_counter() - publishing})
        scalars = {**record.metrics.scalars, **cost_scalars(timed, epoch_seconds), "saliency/status": 1.0,
                   "saliency/skipped_examples": float(len(record.skipped))}
        record = replace(timed, metrics=replace(record.metrics, scalars=scalars))
        self._send_scalars(record)
        data = record.to_json()
        attached = dict(attachments or {})
        self._submit(lambda: self._outputs(record, data, directory, attached, images=True),
                     lambda: self._outputs(record, data, directory, attached, images=False))
        return record, data

    def publish_failure(self, record: RunRecord, directory: Path) -> tuple[RunRecord, dict[str, Any]]:
        """A run that failed as a whole: ``saliency/status`` 0, the cause as text, and its record
        (returned as by :meth:`publish`)."""
        record = replace(record, metrics=replace(record.metrics, scalars={**record.metrics.scalars,
                                                                          "saliency/status": 0.0}))
        self._send_scalars(record)
        data = record.to_json()
        cause = f"Run **{record.label}** failed: {render.escape_markdown(record.error or '')}"

        def job() -> None:
            for sink in self.sinks:
                sink.text("saliency/status", cause, record.global_step)
            self._write(data, directory)

        self._submit(job)
        return record, data

    def flush(self, timeout: Optional[float] = None) -> bool:
        """Wait until everything handed to the worker has reached the sinks and the disk."""
        return self.worker.flush(timeout) if self.worker is not None else True

    def _submit(self, job: Callable[[], None], light: Optional[Callable[[], None]] = None) -> None:
        if self.worker is None:
            job()
        else:
            self.worker.submit(job, light)

    def _send_scalars(self, record: RunRecord) -> None:
        """Scalars and tags stay on the training thread: Lightning loggers are called from it alone."""
        finite = {k: float(v) for k, v in record.metrics.scalars.items() if v is not None and math.isfinite(v)}
        suspects = {f"saliency.suspects.{m}": ", ".join(s.token for s in f.suspects) or "none"
                    for m, f in record.metrics.shortcut.items()}
        for sink in self.sinks:
            sink.scalars(finite, record.global_step)
            if suspects:
                sink.tags(suspects)

    def _outputs(self, record: RunRecord, data: dict, directory: Path, attachments: Mapping[str, Sequence[dict]],
                 images: bool) -> None:
        """The worker's part of a run: images (``images=False``: dropped to catch up), tables and
        text, then the attachments, the record file and the sinks' copies of it."""
        started = time.perf_counter()
        for name, lines in attachments.items():
            write_jsonl(lines, Path(directory) / "saliency" / name)
        image_sinks = [s for s in self.sinks if s.takes_images]
        for sink in image_sinks:
            sink.layout(SCALAR_LAYOUT)
        if image_sinks and not record.step_run:
            self._images_and_tables(record, image_sinks, images)
        found = {m: f.suspects for m, f in record.metrics.shortcut.items() if f.suspects}
        if found:
            for sink in image_sinks:
                sink.text("saliency/shortcut_alert", alert_markdown(found, record), record.global_step)
        # The file gets the worker's own time; ``data`` (the caller's history entry) is not touched
        # from this thread.
        self._write({**data, "timings": {**data["timings"], "background": time.perf_counter() - started}}, directory)

    def _write(self, data: dict, directory: Path) -> None:
        path = write_json(data, directory)
        for sink in self.sinks:
            sink.artifact(path, "saliency")
            sink.flush()

    def _warn_skipped(self, record: RunRecord) -> None:
        described = "; ".join(f"example {s.index}: {s.reason}" for s in record.skipped)
        key = described
        if key not in self._warned_skips:  # the same examples skipped for the same reasons: said once
            self._warned_skips.add(key)
            notices.warn(f"SaliencyMonitor: run {record.label} skipped {len(record.skipped)} probe example(s) and "
                      f"attributed the other {len(record.examples)}: {described}")

    def _images_and_tables(self, record: RunRecord, sinks: list[Sink], images: bool = True) -> None:
        step = record.global_step
        config = AttributionConfig(**record.settings["attribution"]) if "attribution" in record.settings else None
        for method in record.methods if images else ():
            limit = unconverged_limit(record.settings)
            rows = [heatmap_row(e, method, k, limit) for k, e in enumerate(record.examples)]
            grid, per_example = render.grid_and_row_images(
                rows, f"{method}: run {record.label} (step {step})",
                shared_limit=render.run_scale(record, method) if self.color_scale == "run" else None,
                signed=config is None or is_signed(method, config),
            )
            for sink in sinks:
                sink.image(f"saliency/{method}/probe_set", grid, step)
                if self.log_example_images:
                    for k, image in enumerate(per_example):
                        sink.image(f"saliency/{method}/example_{k:02d}", image, step)
        header, rows = top_token_rows(record, self.top_k)
        drifted = drifted_markdown(record, self.top_k)
        per_class = class_table(record.metrics, record.methods[0]) if record.methods else None
        artifacts = artifact_table(record.metrics, record.methods[0]) if record.methods else None
        for sink in sinks:
            sink.table("saliency/top_tokens", header, rows, step)
            if drifted:
                sink.text("saliency/most_drifted", drifted, step)
            if per_class:
                sink.text("saliency/per_class", render.markdown_table(*per_class, escape=True), step)
            if artifacts:
                sink.text("saliency/dataset_artifacts", render.markdown_table(*artifacts, escape=True), step)

    def _alert_location(self, directory: Path) -> str:
        """Where the user reads the alert: TensorBoard's text tab, else the run's record files."""
        if any(isinstance(sink, TensorBoardSink) for sink in self.sinks):
            return "saliency/shortcut_alert in TensorBoard"
        return f"the records in {Path(directory) / 'saliency'} (lightning-saliency report {directory})"

    def _warn_and_call_back(self, record: RunRecord, directory: Path) -> None:
        """Warnings about new suspects and confirmations, and the user's ``on_shortcut`` hook: on
        the training thread, so that the hook may act on the trainer."""
        found = {m: f.suspects for m, f in record.metrics.shortcut.items() if f.suspects}
        if not found:
            return
        new = sorted({s.token for suspects in found.values() for s in suspects} - self._warned_tokens)
        if new:
            self._warned_tokens.update(new)
            # A rise is claimed only against a reference run (a validate()-only run has no start).
            compared = any(f.reference is not None for f in record.metrics.shortcut.values() if f.suspects)
            rise = ("and rising since the start" if compared
                    else "(no start run to compare with, so no rise is claimed)")
            at_chance, accuracy, majority = verdicts.chance_of(record)
            learned = (f" {verdicts.not_learned(accuracy, majority)}: a suspect at chance is a hint to watch, not a "
                       "shortcut it relies on." if at_chance else "")
            words = [t for t in new if kind_of(t) in ("word", "pair")]
            features = [t for t in new if t not in words]
            said = []
            if words:
                said.append(f"possible shortcut token(s) {words} at run {record.label}: top-attributed in most "
                            f"probe examples that contain them {rise}.")
            if features:
                said.append(f"possible shortcut(s) that are not words {features} at run {record.label}: they go with "
                            "one class in the training set (or the probe's labels); the causal checks test whether "
                            "the model relies on them.")
            notices.warn(f"SaliencyMonitor: {' '.join(said)}{learned} See {self._alert_location(directory)}.")
        confirmed = [c for c in record.metrics.causal if c.confirmed and c.token not in self._confirmed_tokens]
        for check in confirmed:
            self._confirmed_tokens.add(check.token)
            notices.warn(f"SaliencyMonitor: shortcut confirmed at run {record.label} (step {record.global_step}): "
                      f"{verdicts.verdict(check, *verdicts.chance_of(record))}")
        if self.on_shortcut is not None:
            self.on_shortcut([s.as_dict() for suspects in found.values() for s in suspects], record.to_json())


def cost_scalars(record: RunRecord, epoch_seconds: Optional[float]) -> dict[str, float]:
    """The run's wall time, where it went (attribution and faithfulness passes, analysis,
    publishing), its share of the epoch, and what the compute budget planned."""
    scalars = {"saliency/cost/seconds": record.seconds}
    scalars.update({f"saliency/cost/{kind}_seconds": value for kind, value in record.timings.items()})
    if record.timings.get("attribution"):
        scalars["saliency/cost/run_over_attribution"] = record.seconds / record.timings["attribution"]
    if epoch_seconds:
        scalars["saliency/cost/epoch_share"] = record.seconds / epoch_seconds
    budget = record.settings.get("budget")
    if budget is not None:
        scalars["saliency/cost/planned_examples"] = budget["num_examples"]
        scalars["saliency/cost/planned_steps"] = budget["steps"]
        if budget["target_seconds"] is not None:
            scalars["saliency/cost/budget_seconds"] = budget["target_seconds"]
    return scalars


def heatmap_row(example: ExampleRecord, method: str, number: int, limit: float = UNCONVERGED) -> render.HeatmapRow:
    truth = example.label_name if example.label_name is not None else "?"
    caption = f"#{number} true: {truth} | pred: {example.predicted_name} ({example.probability:.2f}) | {method}"
    if method in example.delta:
        caption += f" | delta {example.delta[method]:+.1e}"
    scores, delta = example.attributions[method], example.delta.get(method)
    error = completeness_error(scores, delta)
    warning = (f"not converged: |delta| is {error:.0%} of F(x) - F(x')" if error is not None and error > limit
               else None)
    share = not_neutral_share(scores, delta, example.probability)
    if share is not None:  # drawn uncoloured: the scores explain next to nothing
        warning = f"baseline not neutral: IG has little to explain (F(x) - F(x') is {share:.0%} of the margin)"
        scores = [0.0] * len(scores)
    return render.HeatmapRow(example.tokens, scores, caption, warning)


def top_token_rows(record: RunRecord, k: int) -> tuple[list[str], list[list[Any]]]:
    """The top-k words (subwords merged) per example and method, as a table (the last cell holds
    ``(word, score)`` pairs): markdown for TensorBoard and MLflow, a ``wandb.Table`` for W&B."""
    rows = []
    for number, e in enumerate(record.examples):
        for method in record.methods:
            pairs = render.top_tokens(*e.words(method), k)
            rows.append([number, e.label_name or "", f"{e.predicted_name} ({e.probability:.2f})", method, pairs])
    return ["#", "true", "predicted (p)", "method", f"top-{k} words (score)"], rows


def drifted_markdown(record: RunRecord, k: int, count: int = 3) -> Optional[str]:
    sections = []
    for method, blocks in record.metrics.drift.items():
        block = blocks.get("previous") or blocks.get("start")
        if block is None:
            continue
        rho = [d["spearman"] for d in block.per_example]
        order = sorted(range(len(rho)), key=lambda i: (math.inf if math.isnan(rho[i]) else rho[i]))[:count]
        rows = []
        for i in order:
            e = record.examples[block.positions[i]]
            now = render.top_tokens(e.tokens, e.attributions[method], e.special, k)
            rows.append([block.positions[i], f"{rho[i]:.2f}", render.format_top(block.before_top[i]),
                         render.format_top(now)])
        header = ["#", "spearman", f"top-{k} at run {block.against}", f"top-{k} now"]
        sections.append(f"**{method}**\n\n" + render.markdown_table(header, rows))
    return "\n\n".join(sections) if sections else None


def alert_markdown(found: dict[str, list], record: Optional[RunRecord] = None) -> str:
    """The suspects, then the evidence on them: the causal checks (one sentence each and the
    table), the timeline and the training-set artifacts the model relies on."""
    rows = [
        [render.escape_markdown(s.token), s.kind, m, f"{s.top1_rate:.0%}", s.examples, f"{s.mean_share:.2f}",
         f"{s.rise:+.2f}", f"{s.z:.1f}"]
        for m, suspects in found.items() for s in suspects
    ]
    header = ["token", "kind", "method", "top-1 rate", "examples", "share", "rise vs start", "label z"]
    text = "**Possible shortcut:** these tokens dominate the attributions of the examples that contain them.\n\n"
    if any(s.at_chance for suspects in found.values() for s in suspects):
        text = ("**The model has not learned yet** (probe accuracy not above the majority class's rate): these "
                "tokens dominate its attributions, but a model at chance relies on nothing yet. Watch them.\n\n")
    text += render.markdown_table(header, rows)
    if record is None:
        return text
    metrics = record.metrics
    if metrics.causal:
        chance = verdicts.chance_of(record)
        text += "\n\n**Causal checks** (95% Wilson intervals):\n\n" + "\n".join(
            f"- {render.escape_markdown(verdicts.verdict(c, *chance))}" for c in metrics.causal)
        text += "\n\n" + render.markdown_table(*causal_table(metrics), escape=True)
    elif metrics.causal_error:
        text += f"\n\nThe causal checks could not run: {render.escape_markdown(metrics.causal_error)}"
    for title, table in (("When", timeline_table(metrics)), ("Shortcuts that are not words", feature_table(metrics)),
                         ("Training-set artifacts", artifact_table(metrics, next(iter(found))))):
        if table is not None:
            text += f"\n\n**{title}**\n\n" + render.markdown_table(*table, escape=True)
    return text
