"""Gradient saliency's precision on planted shortcuts, per seed and per CPU kernel.

Bastings et al. (2022) find that gradient-L2 locates planted shortcuts on BERT. On the tiny demo
BERT it saturates: once the model leans on the planted word, the logit is flat along that word's
embedding and other tokens can carry larger gradients. This is a property of the method, not a
bug to test away, so it is measured here rather than kept as an expected failure in the suite
(the suite asserts IG's D1/D2 bars, which IG meets).

Each seed trains the tests' tiny BERT on the single planted word and on the conditional pair (as
``tests/test_shortcuts.py`` does) under each ``ATEN_CPU_CAPABILITY`` (torch's kernels; the trained
model depends on their rounding), and prints precision@1 (single) and precision@2 (pair) of
gradient and of IG over the 64 probe examples' planted ones.

    python benchmarks/bench_gradient_saturation.py            # 3 seeds x 3 kernels, about 6 minutes on 2 cores
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import warnings

KERNELS = ("native", "avx2", "default")
METHODS = ("gradient", "integrated_gradients")


def measure(seed: int) -> dict:
    """Train on each planted kind with ``seed`` (in this process's kernels); precision per method."""
    import lightning as L

    from lightning_saliency import (AttributionConfig, EvidenceSettings, OutputSettings, SaliencyMonitor)
    from lightning_saliency.demo import Shortcut, build_demo
    from lightning_saliency.demo.summary import planted_precision

    found = {}
    for kind, epochs in (("single", 6), ("conditional", 10)):
        L.seed_everything(seed, verbose=False)
        module, data, tokenizer = build_demo(Shortcut(kind), n_train=800, n_val=200, sentiment_noise=0.5,
                                             shortcut_rate=1.0, batch_size=32, hidden_size=32, seed=seed)
        module.lr = 5e-3
        monitor = SaliencyMonitor(tokenizer=tokenizer, methods=METHODS, num_examples=64,
                                  attribution=AttributionConfig(n_steps=16), evidence=EvidenceSettings(confirm_examples=0,
                                  faithfulness=False), output=OutputSettings(example_images=False))
        trainer = L.Trainer(max_epochs=epochs, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                            enable_progress_bar=False, enable_model_summary=False, default_root_dir=tempfile.mkdtemp(),
                            callbacks=[monitor])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            trainer.fit(module, datamodule=data)
        planted = set(Shortcut(kind).tokens)
        found[kind] = {m: planted_precision(monitor.history[-1], m, planted, len(planted))[0] for m in METHODS}
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        print(json.dumps(measure(args.child)))
        return
    print(f"{'kernel':>8} {'seed':>4}  {'single p@1 gradient':>19} {'IG':>5}  {'pair p@2 gradient':>17} {'IG':>5}")
    for kernel in KERNELS:
        env = {**os.environ, "TOKENIZERS_PARALLELISM": "false"}
        if kernel != "native":
            env["ATEN_CPU_CAPABILITY"] = kernel
        for seed in range(args.seeds):
            out = subprocess.run([sys.executable, __file__, "--child", str(seed)], env=env, check=True,
                                 capture_output=True, text=True).stdout
            r = json.loads(out.strip().splitlines()[-1])
            print(f"{kernel:>8} {seed:>4}  {r['single']['gradient']:>19.2f} {r['single']['integrated_gradients']:>5.2f}  "
                  f"{r['conditional']['gradient']:>17.2f} {r['conditional']['integrated_gradients']:>5.2f}", flush=True)


if __name__ == "__main__":
    main()
