"""The evidence of a run as tables (header and rows of plain strings), for every place that shows
it: the TensorBoard alert (markdown), the HTML report, and the W&B and MLflow sinks."""
from __future__ import annotations

from typing import Any, Optional

from lightning_saliency.presentation import render, verdicts

Table = tuple[list[str], list[list[str]]]


def _rate(test: Any) -> str:
    return "–" if test.rate is None else f"{test.rate:.0%} ({test.low:.0%}–{test.high:.0%}) of {test.trials}"


def _number(value: Optional[float], spec: str = ".2f") -> str:
    return "–" if value is None else format(value, spec)


def _verdict(check: Any) -> str:
    if not check.confirmed:
        return "not confirmed"
    by = getattr(check, "confirmed_by", None)
    return f"confirmed ({', '.join(by)})" if by else "confirmed"


def _shift(test: Any, removal: bool) -> str:
    """The class probability's change as it happened (a drop is negative), the random words' in
    brackets, and the rank test's z."""
    change, control = verdicts.signed_change(test, removal), verdicts.signed_control_change(test, removal)
    if change is None or control is None:
        return "–"
    return f"{change:+.3f} ({control:+.3f}, z {test.z:.1f})"


def _carriers(check: Any) -> str:
    c = check.carriers
    return "–" if c is None else f"{c.count} of {c.examples} ({c.share:.0%})"


def causal_table(metrics: Any) -> Optional[Table]:
    """One row per checked suspect: verdict (and the tests that confirmed it), deletion and
    insertion flip rates with their 95% intervals, the random control's, and the mean shifts of the
    suspect's class probability against the control's."""
    if not metrics.causal:
        return None
    header = ["suspect", "kind", "verdict", "removal flips", "insertion flips (to class)", "control removal",
              "control insertion", "p drop on removal", "class p change, removal / insertion (control)",
              "effect floor", "training examples carrying it"]
    rows = [[c.token, c.kind, _verdict(c), _rate(c.deletion),
             f"{_rate(c.insertion)} ({c.label_name if c.label_name is not None else c.label})",
             _rate(c.control_deletion), _rate(c.control_insertion), _number(c.probability_change),
             f"{_shift(c.deletion_shift, True)} / {_shift(c.insertion_shift, False)}", f"{c.min_effect:.3f}",
             _carriers(c)]
            for c in metrics.causal]
    return header, rows


def timeline_table(metrics: Any) -> Optional[Table]:
    if not metrics.timeline:
        return None
    header = ["suspect", "kind", "first suspected (run, step)", "by", "confirmed (run, step)"]
    rows = [[t.token, t.kind, f"{t.first_suspected_run}, step {t.first_suspected_step}", t.method,
             "–" if t.confirmed_run is None else f"{t.confirmed_run}, step {t.confirmed_step}"]
            for t in metrics.timeline]
    return header, rows


LISTS = (
    ("relied_artifacts", "artifact, relied on"),
    ("relied_only", "relied on, no artifact"),
    ("ignored_artifacts", "artifact, ignored"),
)


def artifact_table(metrics: Any, method: str) -> Optional[Table]:
    """The three lists of the artifact crossing of one method, the top rows of each."""
    crossing = metrics.artifacts.get(method)
    if crossing is None:
        return None
    header = ["word", "kind", "train z", "train examples", "p(label)", "label", "probe top-1 rate", "share"]
    rows = []
    for key, kind in LISTS:
        for r in getattr(crossing, key):
            rows.append([r.token, kind, _number(r.z, ".1f"), str(r.count), _number(r.p_label), str(r.label),
                         _number(r.top1_rate), _number(r.mean_share)])
    return header, rows


def class_table(metrics: Any, method: str) -> Optional[Table]:
    summaries = metrics.per_class.get(method)
    if not summaries:
        return None
    header = ["class", "examples", "top words (mean share)", "Spearman vs start", "JS vs start"]
    rows = [[str(c.name if c.name is not None else c.label), str(c.examples),
             ", ".join(f"{w} ({v:.2f})" for w, v in c.top), _number(c.drift_start.get("spearman")),
             _number(c.drift_start.get("jensen_shannon"))] for c in summaries]
    return header, rows


def _association(found: Any) -> str:
    return "–" if found is None else f"z {found.z:.1f} (class {found.label}; {found.carriers} of {found.examples})"


def feature_table(metrics: Any) -> Optional[Table]:
    """One row per feature that is not a word: its kind, its association in the training sample and
    in the probe's labels, and each method's share of |attribution| on its words (at ``start``)."""
    if not metrics.features:
        return None
    header = ["feature", "kind", "training association", "probe association", "reliance now (at start)"]
    rows = []
    for reading in metrics.features:
        reliance = "; ".join(f"{method} {now:.2f} ({'–' if before is None else f'{before:.2f}'})"
                             for method, (now, before) in reading.reliance.items()) or "not measured by attribution"
        rows.append([reading.token, reading.kind, _association(reading.training), _association(reading.validation),
                     reliance])
    return header, rows


def evidence_tables(metrics: Any, method: str) -> list[tuple[str, Table]]:
    """Every evidence table of a run that has content, titled."""
    found = [("Causal checks", causal_table(metrics)), ("Suspect timeline", timeline_table(metrics)),
             ("Shortcuts that are not words", feature_table(metrics)),
             (f"Training-set artifacts vs reliance ({method})", artifact_table(metrics, method)),
             (f"Per class ({method})", class_table(metrics, method))]
    return [(title, table) for title, table in found if table is not None]


def plain_cell(value: Any) -> Any:
    """A table cell for a rich table (``wandb.Table``): pairs formatted unescaped, numbers kept."""
    if isinstance(value, list):
        return render.format_top(value, escape=False)
    return value if isinstance(value, (int, float, str)) else str(value)
