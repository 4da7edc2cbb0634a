"""One self-contained HTML file of colored-token views, drift summaries and charts.

Every string taken from a record (tokens, texts, labels, run names, method names) passes through
:func:`html.escape` before it enters the page, and the page's only script reads ``data-*``
attributes and writes ``textContent``: record data never becomes markup or code. CSS and JS are
inlined from ``static/``, so the file opens offline and from ``file://``.
"""
from __future__ import annotations

import base64
import hashlib
import html
import math
from dataclasses import replace
from importlib import resources
from typing import Any, Iterable, Optional, Sequence

from matplotlib.colors import to_hex

from lightning_saliency.presentation import verdicts
from lightning_saliency.presentation.tables import evidence_tables
from lightning_saliency.schema.records import ExampleRecord, RunRecord, not_neutral_share
from lightning_saliency.schema.words import word_scores
from lightning_saliency.presentation.render import ATTRIBUTION_CMAP, line_scale, run_scale
from lightning_saliency.report.charts import line_chart
from lightning_saliency.report.reading import Run

DRIFT_CHARTS = (
    ("spearman", "start", "Spearman vs start"),
    ("topk_overlap", "start", "top-k overlap vs start"),
    ("jensen_shannon", "start", "Jensen-Shannon vs start"),
    ("spearman", "previous", "Spearman vs previous run"),
)


def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _static(name: str) -> str:
    return resources.files("lightning_saliency.report").joinpath("static", name).read_text(encoding="utf-8")


def token_color(score: float, limit: float) -> str:
    """Background color of a token: red (negative) - white - green (positive), scaled by ``limit``."""
    position = 0.5 if limit <= 0 or not math.isfinite(score) else 0.5 + 0.5 * max(-1.0, min(1.0, score / limit))
    return to_hex(ATTRIBUTION_CMAP(position))


def _text_color(background: str) -> str:
    r, g, b = (int(background[i:i + 2], 16) for i in (1, 3, 5))
    return "#ffffff" if 0.299 * r + 0.587 * g + 0.114 * b < 128 else "#111111"


def token_line(tokens: Sequence[str], scores: Sequence[float], special: Sequence[bool], suspects: Iterable[str],
               limit: Optional[float] = None, coloured: bool = True) -> str:
    """Colored tokens of one example and method, scaled by ``limit`` (default: the line's own
    largest |score|); each span carries its score for the hover view. ``coloured=False`` draws
    them white (scores that explain nothing), their scores still on hover."""
    limit = (limit if limit is not None else line_scale(scores, special)) or 1.0
    marked = set(suspects)
    spans = []
    for token, score, is_special in zip(tokens, scores, special):
        background = token_color(score if coloured else 0.0, limit)
        classes = "tok" + (" special" if is_special else "") + (" suspect" if token in marked else "")
        spans.append(
            f'<span class="{classes}" style="background:{background};color:{_text_color(background)}" '
            f'data-token="{esc(token)}" data-score="{score:+.4g}" title="{esc(token)}: {score:+.4g}">{esc(token)}</span>'
        )
    return "".join(spans)


def _suspect_tokens(record: RunRecord, method: str, members: bool = False) -> list[str]:
    """Suspect names (a pair reads "a + b"), or with ``members`` the token types to outline."""
    findings = record.metrics.shortcut.get(method)
    suspects = findings.suspects if findings is not None else []
    if members:
        return [t for s in suspects for t in (s.members or [s.token])]
    return [s.token for s in suspects]


def _drift_value(record: RunRecord, method: str, against: str, metric: str) -> Optional[float]:
    block = record.metrics.drift.get(method, {}).get(against)
    value = None if block is None else block.summary.get(metric, {}).get("mean")
    return value if isinstance(value, (int, float)) and math.isfinite(value) else None


def _format(value: Optional[float]) -> str:
    return "–" if value is None else f"{value:.2f}"


def _failed(record: RunRecord) -> bool:
    """A run with nothing to show: ``failed``, or ``diverged`` (the model's outputs were NaN)."""
    return record.status != "ok"


def summary_table(run: Run) -> str:
    """Per run of the callback: step, cost, accuracy, drift per method and the shortcut suspects."""
    header = ["run", "step", "seconds", "probe accuracy", "method", "Spearman vs start", "top-k vs start",
              "JS vs start", "suspects"]
    rows = []
    for position, record in enumerate(run.records):
        accuracy = record.metrics.scalars.get("saliency/probe/accuracy")
        for k, method in enumerate(record.methods):
            suspects = _suspect_tokens(record, method)
            marks = " ".join(f"<mark>{esc(t)}</mark>" for t in suspects) or "none"
            lead = [esc(record.label), esc(record.global_step), _format(record.seconds),
                    _format(accuracy)] if k == 0 else ["", "", "", ""]
            cells = lead + [esc(method)] + [
                _format(_drift_value(record, method, "start", m)) for m in ("spearman", "topk_overlap", "jensen_shannon")
            ] + [marks]
            flagged = " flagged" if suspects else ""
            rows.append(f'<tr class="summary-row{flagged}" data-epoch="{position}">' +
                        "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
        if _failed(record):
            cells = [esc(record.label), esc(record.global_step), "", "", esc(record.status),
                     f'<span class="failure">{esc(record.error or "")}</span>', "", "", ""]
            rows.append(f'<tr class="summary-row failed" data-epoch="{position}">' +
                        "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    return f'<table class="summary"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'


def run_notes(run: Run) -> str:
    """Runs that failed as a whole, and probe examples a run skipped, with the reasons."""
    notes = []
    for record in run.records:
        if _failed(record):
            notes.append(f'run {esc(record.label)} {esc(record.status)}: {esc(record.error or "unknown cause")}')
        for skipped in record.skipped:
            notes.append(f'run {esc(record.label)} skipped dataset index {esc(skipped.index)}: {esc(skipped.reason)}')
    items = "".join(f"<li>{note}</li>" for note in notes)
    return f'<ul class="run-notes">{items}</ul>' if notes else ""


def evidence_section(run: Run) -> str:
    """The latest evidence of the run: causal checks, the suspects' timeline, training-set
    artifacts against reliance and the per-class view, for the first method."""
    latest = next((r for r in reversed(run.records) if not _failed(r) and r.methods), None)
    if latest is None:
        return ""
    metrics = latest.metrics
    tables = evidence_tables(metrics, latest.methods[0])
    if metrics.causal_error:
        tables = [("Causal checks", (["could not run"], [[metrics.causal_error]]))] + tables
    parts = []
    for title, (header, rows) in tables:
        head = "".join(f"<th>{esc(h)}</th>" for h in header)
        body = "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>" for row in rows)
        parts.append(f'<p><b>{esc(title)}</b></p><table class="summary evidence"><thead><tr>{head}</tr></thead>'
                     f"<tbody>{body}</tbody></table>")
    if not parts:
        return ""
    chance = verdicts.chance_of(latest)
    said = "".join(f"<li><b>{esc(verdicts.headline(c, *chance))}</b> {esc(verdicts.details(c))}</li>"
                   for c in metrics.causal)
    said = f'<ul class="verdicts">{said}</ul>' if said else ""
    return f'<h3>Evidence (run {esc(latest.label)})</h3>' + said + "".join(parts)


def drift_charts(run: Run) -> str:
    labels = [str(r.label) for r in run.records]
    charts = []
    for metric, against, title in DRIFT_CHARTS:
        series = {
            method: [_drift_value(r, method, against, metric) for r in run.records] for method in run.methods
        }
        if any(v is not None for values in series.values() for v in values):
            charts.append(line_chart(title, labels, series))
    if not charts:
        return '<p class="note">Drift charts appear once there are two runs to compare.</p>'
    return '<div class="charts">' + "".join(charts) + "</div>"


def _example_header(example: ExampleRecord, number: int) -> str:
    truth = example.label_name if example.label_name is not None else example.label
    span = "" if not example.span else f" · span {esc(' '.join(example.tokens[example.span[0]: example.span[1] + 1]))}"
    head = (f'<div class="example-head"><b>#{number}</b> dataset index {esc(example.index)}{span} · '
            f'true: <b>{esc("?" if truth is None else truth)}</b></div>')
    if example.completion is None:
        return head + f'<div class="example-text">{esc(example.text)}</div>'
    # A completion: the prompt (explained) and the completion (scored) in two panes.
    return (head + '<div class="panes">'
            f'<div class="example-text pane"><span class="pane-name">prompt (explained)</span>{esc(example.text)}</div>'
            f'<div class="example-text pane completion"><span class="pane-name">completion (scored)</span>'
            f'{esc(example.completion)}</div></div>')


def _absence(record: RunRecord, index: Any) -> str:
    """Why a probe example has no attributions in ``record``."""
    if record.status == "failed":
        return f'The run failed: {esc(record.error or "unknown cause")}'
    reason = next((s.reason for s in record.skipped if s.index == index), None)
    if reason is not None:
        return f"Skipped in this run: {esc(reason)}"
    return "Not attributed in this run (a compute budget attributed fewer examples)."


def _epoch_view(record: RunRecord, example: Optional[ExampleRecord], methods: Sequence[str], position: int,
                index: Any = None) -> str:
    title = f'run {esc(record.label)} · step {esc(record.global_step)}'
    if example is None:
        body = f'<p class="note">{_absence(record, index)}</p>'
    else:
        name = example.predicted_name if example.predicted_name is not None else example.predicted
        body = (f'<div class="prediction">predicted: <b>{esc(name)}</b> '
                f'(p = {float(example.probability):.2f})</div>')
        for method in methods:
            scores = example.attributions.get(method)
            if scores is None:
                body += f'<div class="method"><span class="method-name">{esc(method)}</span>' \
                        f'<span class="note">not computed in this run</span></div>'
                continue
            special = example.special or [False] * len(scores)
            delta = example.delta.get(method)
            # One scale per run and method; the line's own largest |score| is printed beside it.
            shared = run_scale(record, method)
            extra = (f' <span class="delta">max ±{line_scale(scores, special):.2g} '
                     f'of the run\'s ±{shared:.2g}</span>')
            extra += "" if delta is None else f' <span class="delta">delta {delta:+.1e}</span>'
            share = not_neutral_share(scores, delta, example.probability)
            coloured = share is None  # else not coloured as an explanation
            if not coloured:
                extra += (f' <span class="note">the baseline is not neutral here: IG has little to explain '
                          f'(F(x) - F(x\') is {share:.0%} of the prediction\'s margin)</span>')
            suspects = _suspect_tokens(record, method, members=True)
            line = token_line(example.tokens, scores, special, suspects, shared, coloured)
            words, word_values, word_special = word_scores(example.tokens, scores, special,
                                                           example.word_ids or [None] * len(scores))
            if len(words) == len(scores):  # nothing to merge: one view
                lines = f'<div class="tokens">{line}</div>'
            else:  # subwords merge: both views, the toggle picks one (word scores are sums of pieces)
                merged = token_line(words, word_values, word_special, suspects, coloured=coloured)
                lines = f'<div class="tokens pieces">{line}</div><div class="tokens words">{merged}</div>'
            body += f'<div class="method"><span class="method-name">{esc(method)}{extra}</span>{lines}</div>'
    return f'<div class="epoch-view" data-epoch="{position}"><div class="epoch-title">{title}</div>{body}</div>'


def examples_section(run: Run) -> str:
    order: list[Any] = []
    for record in run.records:
        order += [e.key for e in record.examples if e.key not in order]
    methods = run.methods
    blocks = []
    for number, key in enumerate(order):
        per_record = [next((e for e in r.examples if e.key == key), None) for r in run.records]
        first = next(e for e in per_record if e is not None)
        views = "".join(_epoch_view(r, e, methods, p, key[0]) for p, (r, e) in enumerate(zip(run.records, per_record)))
        blocks.append(f'<div class="example">{_example_header(first, number)}<div class="views">{views}</div></div>')
    return "".join(blocks)


def run_section(run: Run, number: int) -> str:
    problems = "".join(f"<li>{esc(p)}</li>" for p in run.problems)
    problems = f'<ul class="problems">{problems}</ul>' if problems else ""
    if not run.records:
        return (f'<section class="run" data-run="{number}"><h2>{esc(run.name)}</h2>{problems}'
                '<p class="note">No readable saliency records.</p></section>')
    last = len(run.records) - 1
    ticks = "".join(f'<option value="{p}" label="{esc(r.label)}"></option>' for p, r in enumerate(run.records))
    controls = (
        '<div class="controls">'
        f'<label>run <input type="range" class="epoch-slider" min="0" max="{last}" value="{last}" step="1" '
        f'list="ticks-{number}"></label><datalist id="ticks-{number}">{ticks}</datalist>'
        f'<output class="epoch-label">{esc(run.records[last].label)}</output>'
        '<label><input type="checkbox" class="side-by-side"> all runs side by side</label>'
        '<label><input type="checkbox" class="show-words"> words (subwords merged)</label>'
        '</div>'
    )
    labels = "".join(f'<span class="label-of" data-epoch="{p}">{esc(r.label)}</span>'
                     for p, r in enumerate(run.records))
    return (
        f'<section class="run" data-run="{number}"><h2>{esc(run.name)}</h2>{problems}'
        f'<h3>Summary</h3>{summary_table(run)}{run_notes(run)}{evidence_section(run)}'
        f'<h3>Drift over runs</h3>{drift_charts(run)}'
        f'<h3>Probe examples</h3>{controls}<div class="labels" hidden>{labels}</div>'
        f'<div class="examples">{examples_section(run)}</div></section>'
    )


def _guarded_section(run: Run, number: int) -> str:
    """:func:`run_section`, never failing on a record: the reader checks what it can, and a record
    that still cannot be drawn (found by drawing each alone) is left out and listed as a problem."""
    try:
        return run_section(run, number)
    except Exception:
        shown, problems = [], list(run.problems)
        for record in run.records:
            try:
                run_section(replace(run, records=[record], problems=[]), number)
                shown.append(record)
            except Exception as error:
                problems.append(f"run {record.label!r}: cannot be shown ({type(error).__name__}: {error}); "
                                "skipped")
        return run_section(replace(run, records=shown, problems=problems), number)


def build_report(runs: Sequence[Run], title: str = "lightning_saliency report") -> str:
    """The whole page as a string."""
    chooser = ""
    if len(runs) > 1:
        options = "".join(f'<option value="{k}">{esc(r.name)}</option>' for k, r in enumerate(runs))
        chooser = f'<label class="run-chooser">training run <select id="run-select">{options}</select></label>'
    sections = "".join(_guarded_section(run, k) for k, run in enumerate(runs)) or '<p class="note">No runs found.</p>'
    legend = ('<p class="legend">Token background: <span class="swatch neg">negative</span> '
              '<span class="swatch zero">0</span> <span class="swatch pos">positive</span> attribution, on one scale '
              'per run and method (its largest |score|), so a weak example looks pale. Hover a token to read its score. '
              '<mark>Marked</mark> tokens are shortcut suspects of that run.</p>')
    script = _static("report.js")
    # Only this exact script may run (its hash), nothing may be fetched: markup slipped in by a
    # record could neither execute nor reach the network.
    digest = base64.b64encode(hashlib.sha256(script.encode("utf-8")).digest()).decode("ascii")
    policy = f"default-src 'none'; style-src 'unsafe-inline'; script-src 'sha256-{digest}'; img-src data:"
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<meta http-equiv=\"Content-Security-Policy\" content=\"{policy}\">"
        f"<title>{esc(title)}</title><style>{_static('report.css')}</style></head><body>"
        f"<header><h1>{esc(title)}</h1>{chooser}{legend}</header>{sections}"
        '<div id="inspector" role="status" aria-live="polite"></div>'
        f"<script>{script}</script></body></html>\n"
    )
