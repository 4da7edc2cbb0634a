"""What SaliencyMonitor does with one run's attributions: metrics, heatmaps, tables, files."""
from __future__ import annotations

import math
import sys
import time
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

from lightning.pytorch.utilities import rank_zero_warn

from lightning_saliency import render
from lightning_saliency.attribution.faithfulness import erasure_faithfulness
from lightning_saliency.metrics import (
    DRIFT_METRICS,
    concentration,
    drift,
    pair_statistics,
    shortcut_suspects,
    strongest_first,
    summarize,
    token_statistics,
)
from lightning_saliency.records import write_record
from lightning_saliency.sinks import Sinks

FAITHFULNESS_METHODS = ("integrated_gradients", "gradient")
FRACTIONS = (0.1, 0.2, 0.5)

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
    "saliency: faithfulness": {
        "comprehensiveness AOPC": ["Multiline", [r"saliency/.*/faithfulness/comprehensiveness_aopc"]],
        "sufficiency AOPC": ["Multiline", [r"saliency/.*/faithfulness/sufficiency_aopc"]],
    },
    "saliency: cost": {
        "convergence delta": ["Multiline", [r"saliency/.*/delta_(mean|max)"]],
        "seconds and epoch share": ["Multiline", [r"saliency/cost/.*"]],
    },
}


def monitor_settings(monitor: Any, config: Any, plan: Any = None) -> dict[str, Any]:
    """The settings that make runs comparable, stored in every record (``budget``: what the compute
    budget chose for this run, when one is set)."""
    return {
        "methods": list(monitor.methods),
        "target": monitor.target,
        "task": monitor.task,
        "num_examples": monitor.num_examples,
        "seed": monitor.seed,
        "top_k": monitor.top_k,
        "attribution": asdict(config),
        "budget": None if plan is None else {"fraction": monitor.budget.fraction, **plan.as_dict()},
    }


def _regular(example: dict, method: str) -> list[float]:
    return [s for s, special in zip(example["attributions"][method], example["special"]) if not special]


def restricted_to(run: dict, indices: list[int]) -> dict:
    """``run`` with only the examples whose dataset index is in ``indices`` (in that order)."""
    by_index = {e["index"]: e for e in run["examples"]}
    return {**run, "examples": [by_index[i] for i in indices if i in by_index]}


def _drift_block(record: dict, other: dict, method: str, k: int) -> Optional[dict]:
    """Drift against ``other`` over the examples both runs attributed (all of them unless a compute
    budget shortened one run: then a prefix of the same probe order)."""
    if other is None or method not in other.get("methods", []):
        return None
    before = {e["index"]: e for e in other["examples"]}
    positions = [p for p, e in enumerate(record["examples"]) if e["index"] in before]
    if not positions:
        return None
    pairs = [(record["examples"][p], before[record["examples"][p]["index"]]) for p in positions]
    per_example = [drift(_regular(b, method), _regular(a, method), k) for a, b in pairs]
    return {
        "against": other["label"],
        "positions": positions,
        "per_example": per_example,
        "before_top": [render.top_tokens(b["tokens"], b["attributions"][method], b["special"], k) for _, b in pairs],
        "summary": {m: summarize([d[m] for d in per_example]) for m in DRIFT_METRICS},
    }


class RunLogger:
    """Computes a run's metrics and sends everything to the loggers and to disk."""

    def __init__(self) -> None:
        self.sinks = Sinks()
        self._warned_tokens: set[str] = set()

    @contextmanager
    def progress(self, trainer: Any, description: str) -> Iterator[Callable[[int], None]]:
        # A count of evaluated rows: how many a run needs is not known ahead (adaptive IG refines
        # per example), so no total is shown rather than a wrong one.
        bar_callback = trainer.progress_bar_callback
        if bar_callback is None or not getattr(bar_callback, "is_enabled", False):
            yield lambda n: None
            return
        from tqdm.auto import tqdm

        bar = tqdm(desc=description, leave=False, dynamic_ncols=True, file=sys.stdout, unit="row")
        try:
            yield bar.update
        finally:
            bar.close()

    # ------------------------------------------------------------------------------- metrics
    def analyse(self, monitor: Any, pl_module: Any, record: dict, result: Any, probe: Any) -> None:
        metrics: dict[str, Any] = {"scalars": {}, "concentration": {}, "drift": {}, "shortcut": {}, "faithfulness": {}}
        scalars = metrics["scalars"]
        previous = monitor.history[-1] if monitor.history else None
        reference = monitor._reference
        for method in record["methods"]:
            deltas = [abs(e["delta"][method]) for e in record["examples"] if method in e["delta"]]
            if deltas:
                scalars[f"saliency/{method}/delta_mean"] = sum(deltas) / len(deltas)
                scalars[f"saliency/{method}/delta_max"] = max(deltas)
            per_example = [concentration(e["attributions"][method], e["special"]) for e in record["examples"]]
            means = {key: summarize([c[key] for c in per_example])["mean"] for key in per_example[0]}
            metrics["concentration"][method] = {"per_example": per_example, "mean": means}
            for key, value in means.items():
                scalars[f"saliency/{method}/concentration/{key}"] = value
            for name, other in (("previous", previous), ("start", reference)):
                block = _drift_block(record, other, method, monitor.top_k) if other is not record else None
                if block is None:
                    continue
                metrics["drift"].setdefault(method, {})[name] = block
                for metric, summary in block["summary"].items():
                    scalars[f"saliency/{method}/drift_{name}/{metric}_mean"] = summary["mean"]
                    scalars[f"saliency/{method}/drift_{name}/{metric}_p10"] = summary["p10"]
            self._shortcuts(monitor, record, reference, method, metrics)
        if monitor.faithfulness:
            self._faithfulness(monitor, pl_module, record, result, probe, metrics)
        if probe.labels is not None:
            correct = [e["predicted"] == e["label"] for e in record["examples"]]
            scalars["saliency/probe/accuracy"] = sum(correct) / len(correct)
        record["metrics"] = metrics

    def _shortcuts(self, monitor, record, reference, method, metrics) -> None:
        def stats_of(run: dict, statistics=token_statistics, **extra) -> dict:
            return statistics(
                [e["tokens"] for e in run["examples"]], [e["attributions"][method] for e in run["examples"]],
                [e["special"] for e in run["examples"]], [e["label"] for e in run["examples"]], **extra,
            )

        current, pairs = stats_of(record), stats_of(record, pair_statistics)
        has_reference = reference is not None and reference is not record and method in reference["methods"]
        before = pairs_before = None
        if has_reference:  # over the same examples (a compute budget may have attributed only a prefix)
            same = restricted_to(reference, [e["index"] for e in record["examples"]])
            before, pairs_before = stats_of(same), stats_of(same, pair_statistics, pairs=list(pairs))
        options = dict(monitor.shortcut_options)
        fraction = options.pop("min_fraction")
        options["min_examples"] = max(options["min_examples"], math.ceil(fraction * len(record["examples"])))
        suspects = []
        # The reference run is what later runs are compared with; it cannot show a rise itself.
        if record["label"] != "start":
            suspects = shortcut_suspects(current, before, **options)
            # A pair must hold as much as two single suspects would (twice the share), and is only
            # news when neither member is a suspect on its own (else any frequent neighbour pairs up).
            pair_options = {**options, "min_share": 2 * options["min_share"]}
            singles = {s.token for s in suspects}
            pair_suspects = shortcut_suspects(pairs, pairs_before, **pair_options)
            suspects = strongest_first(suspects + [s for s in pair_suspects if not singles & set(s.members)])
        top = sorted(current.values(), key=lambda s: -s.mean_share * s.top1_rate)[:10]
        metrics["shortcut"][method] = {
            "suspects": [s.as_dict() for s in suspects],
            "tokens": [asdict(s) for s in top],
            "reference": None if before is None else reference["label"],
        }
        scalars = metrics["scalars"]
        scalars[f"saliency/{method}/shortcut/suspects"] = float(len(suspects))
        scalars[f"saliency/{method}/shortcut/top_share"] = suspects[0].mean_share if suspects else 0.0

    def _faithfulness(self, monitor, pl_module, record, result, probe, metrics) -> None:
        rankings = {m: result[m].scores for m in FAITHFULNESS_METHODS if m in result}
        if not rankings:
            return
        scores = erasure_faithfulness(
            pl_module, probe.inputs, rankings, fractions=FRACTIONS, target=result.target, task=monitor.task,
            config=monitor.config, seed=monitor.seed, tokenizer=monitor.tokenizer, special_tokens=monitor._special,
            embedding_layer=monitor.embedding_layer, forward_fn=monitor._call_model,
        )
        for method, entry in scores.items():
            summary = {
                "fractions": list(FRACTIONS),
                "comprehensiveness": entry["comprehensiveness"].mean(dim=0).tolist(),
                "sufficiency": entry["sufficiency"].mean(dim=0).tolist(),
                "comprehensiveness_aopc": float(entry["aopc_comprehensiveness"].mean()),
                "sufficiency_aopc": float(entry["aopc_sufficiency"].mean()),
            }
            metrics["faithfulness"][method] = summary
            for key in ("comprehensiveness_aopc", "sufficiency_aopc"):
                metrics["scalars"][f"saliency/{method}/faithfulness/{key}"] = summary[key]

    # ------------------------------------------------------------------------------ publishing
    def publish(
        self, monitor: Any, trainer: Any, record: dict, started: float, epoch_seconds: Optional[float], directory: Path
    ) -> None:
        loggers, step = trainer.loggers, trainer.global_step
        self.sinks.layout(loggers, SCALAR_LAYOUT)
        if self.sinks.wants_images(loggers):
            self._images_and_tables(monitor, trainer, record, step)
        self._alert(monitor, trainer, record, step)
        seconds = time.perf_counter() - started
        record["seconds"] = seconds
        scalars = dict(record["metrics"]["scalars"])
        scalars["saliency/cost/seconds"] = seconds
        if epoch_seconds:
            scalars["saliency/cost/epoch_share"] = seconds / epoch_seconds
        budget = record["settings"].get("budget")
        if budget is not None:
            scalars["saliency/cost/planned_examples"] = budget["num_examples"]
            scalars["saliency/cost/planned_steps"] = budget["steps"]
            if budget["target_seconds"] is not None:
                scalars["saliency/cost/budget_seconds"] = budget["target_seconds"]
        record["metrics"]["scalars"] = scalars
        self.sinks.scalars(loggers, scalars, step)
        self.sinks.flush(loggers)
        write_record(record, directory)

    def _images_and_tables(self, monitor: Any, trainer: Any, record: dict, step: int) -> None:
        loggers = trainer.loggers
        for method in record["methods"]:
            rows = [_heatmap_row(e, method, k) for k, e in enumerate(record["examples"])]
            title = f"{method}: run {record['label']} (step {step})"
            grid, per_example = render.grid_and_row_images(rows, title)
            self.sinks.image(loggers, f"saliency/{method}/probe_set", grid, step)
            if monitor.log_example_images:
                for k, image in enumerate(per_example):
                    self.sinks.image(loggers, f"saliency/{method}/example_{k:02d}", image, step)
        self.sinks.text(loggers, "saliency/top_tokens", top_token_markdown(record, monitor.top_k), step)
        drift_table = drifted_markdown(record, monitor.top_k)
        if drift_table:
            self.sinks.text(loggers, "saliency/most_drifted", drift_table, step)

    def _alert(self, monitor: Any, trainer: Any, record: dict, step: int) -> None:
        found = {m: v["suspects"] for m, v in record["metrics"]["shortcut"].items() if v["suspects"]}
        if not found:
            return
        rows = [
            [render.escape_markdown(s["token"]), m, f"{s['top1_rate']:.0%}", s["examples"], f"{s['mean_share']:.2f}",
             f"{s['rise']:+.2f}", f"{s['z']:.1f}"]
            for m, suspects in found.items() for s in suspects
        ]
        header = ["token", "method", "top-1 rate", "examples", "share", "rise vs start", "label z"]
        text = "**Possible shortcut:** these tokens dominate the attributions of the examples that contain them.\n\n"
        self.sinks.text(trainer.loggers, "saliency/shortcut_alert", text + render.markdown_table(header, rows), step)
        new = sorted({s["token"] for suspects in found.values() for s in suspects} - self._warned_tokens)
        if new:
            self._warned_tokens.update(new)
            rank_zero_warn(
                f"SaliencyMonitor: possible shortcut token(s) {new} at run {record['label']}: top-attributed in most "
                "probe examples that contain them and rising since the start. See saliency/shortcut_alert in TensorBoard."
            )
        if monitor.on_shortcut is not None:
            monitor.on_shortcut([s for suspects in found.values() for s in suspects], record)


def output_directory(monitor: Any, trainer: Any) -> Path:
    """Where ``saliency/*.json`` go. ``trainer.log_dir`` broadcasts under DDP: call this on every rank."""
    if monitor.dirpath is not None:
        return Path(monitor.dirpath)
    return Path(trainer.log_dir or trainer.default_root_dir)


def _heatmap_row(example: dict, method: str, number: int) -> render.HeatmapRow:
    truth = example["label_name"] if example["label_name"] is not None else "?"
    caption = (
        f"#{number} true: {truth} | pred: {example['predicted_name']} ({example['probability']:.2f}) | {method}"
    )
    if method in example["delta"]:
        caption += f" | delta {example['delta'][method]:+.1e}"
    return render.HeatmapRow(example["tokens"], example["attributions"][method], caption)


def top_token_markdown(record: dict, k: int) -> str:
    rows = []
    for number, e in enumerate(record["examples"]):
        for method in record["methods"]:
            pairs = render.top_tokens(e["tokens"], e["attributions"][method], e["special"], k)
            rows.append([number, e["label_name"] or "", f"{e['predicted_name']} ({e['probability']:.2f})", method,
                         render.format_top(pairs)])
    header = ["#", "true", "predicted (p)", "method", f"top-{k} tokens (score)"]
    return f"Run **{record['label']}**, step {record['global_step']}\n\n" + render.markdown_table(header, rows)


def drifted_markdown(record: dict, k: int, count: int = 3) -> Optional[str]:
    sections = []
    for method, blocks in record["metrics"]["drift"].items():
        block = blocks.get("previous") or blocks.get("start")
        if block is None:
            continue
        rho = [d["spearman"] for d in block["per_example"]]
        order = sorted(range(len(rho)), key=lambda i: (math.inf if math.isnan(rho[i]) else rho[i]))[:count]
        rows = []
        for i in order:
            e = record["examples"][block["positions"][i]]
            now = render.top_tokens(e["tokens"], e["attributions"][method], e["special"], k)
            before = render.format_top(block["before_top"][i])
            rows.append([block["positions"][i], f"{rho[i]:.2f}", before, render.format_top(now)])
        header = ["#", "spearman", f"top-{k} at run {block['against']}", f"top-{k} now"]
        sections.append(f"**{method}**\n\n" + render.markdown_table(header, rows))
    return "\n\n".join(sections) if sections else None
