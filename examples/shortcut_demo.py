"""Embedded default main job: watch a tiny BERT learn a planted shortcut word, live in TensorBoard.

A synthetic sentiment corpus is generated in code. The made-up word "zorbly" appears in 90% of the
positive training reviews and in no negative one, while 30% of reviews carry sentiment words that
contradict their label, so the word is the most reliable cue. A WordPiece tokenizer is trained
in-process, a 2-layer BERT is built from a config, and SaliencyMonitor logs heatmaps, drift and
shortcut alerts each epoch. Nothing is downloaded.

    python examples/shortcut_demo.py            # writes runs/shortcut_demo/version_N
    tensorboard --logdir runs --samples_per_plugin images=100
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import lightning as L  # noqa: E402
from lightning.pytorch.loggers import TensorBoardLogger  # noqa: E402

from lightning_saliency import AttributionConfig, SaliencyMonitor  # noqa: E402
from lightning_saliency.demo import Shortcut, build_demo  # noqa: E402
from lightning_saliency.demo.summary import summary_lines  # noqa: E402


def main(argv=None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--root", default="runs", help="TensorBoard log root")
    parser.add_argument("--examples", type=int, default=12, help="probe-set size")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    L.seed_everything(args.seed, verbose=False)
    module, data, tokenizer = build_demo(Shortcut("single", token="zorbly"), n_train=800, n_val=160, seed=args.seed)
    module.model.config.id2label = {0: "negative", 1: "positive"}
    monitor = SaliencyMonitor(
        tokenizer=tokenizer,
        methods=("integrated_gradients", "gradient", "occlusion"),
        num_examples=args.examples,
        # Adaptive IG: refine each example until completeness is within 2% (at most 129 points).
        attribution=AttributionConfig(tolerance=0.02, max_steps=129),
    )
    logger = TensorBoardLogger(args.root, name="shortcut_demo")
    trainer = L.Trainer(
        max_epochs=args.epochs, callbacks=[monitor], logger=logger, accelerator="cpu", devices=1,
        log_every_n_steps=5, enable_checkpointing=False,
    )
    trainer.fit(module, datamodule=data)
    summarize(monitor, Path(logger.log_dir))
    return Path(logger.log_dir)


def summarize(monitor: SaliencyMonitor, log_dir: Path) -> None:
    print(f"\nTensorBoard logs and saliency/*.json in {log_dir}")
    print(f"View them with: tensorboard --logdir {log_dir.parent.parent} --samples_per_plugin images=100\n")
    print("\n".join(summary_lines(monitor.history, planted="zorbly")))
    print("\nReading: as training proceeds the planted word 'zorbly' becomes the top-attributed token in the positive")
    print("reviews that contain it, and SaliencyMonitor flags it as a shortcut suspect (saliency/shortcut_alert).")
    print("The causal check confirms it: removing the word from validation reviews flips their prediction far more")
    print("often than removing random words of the same frequency (95% Wilson intervals in the alert).")


if __name__ == "__main__":
    main()
