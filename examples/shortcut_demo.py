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
import json
import os
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import lightning as L  # noqa: E402
from lightning.pytorch.loggers import TensorBoardLogger  # noqa: E402

from lightning_saliency import SaliencyMonitor  # noqa: E402
from lightning_saliency.demo import Shortcut, build_demo  # noqa: E402


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
        tolerance=0.02,  # adaptive IG: refine each example until completeness is within 2%
        attribution_options={"max_steps": 129},
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
    print(f"{'run':>6} {'probe acc':>9} {'IG delta':>9} {'zorbly top-1 in':>16} {'suspects (IG)':>20}  causal check")
    for record in monitor.history:
        with_token = [e for e in record["examples"] if "zorbly" in e["tokens"]]
        top1 = 0
        for e in with_token:
            scores = [abs(s) if not sp else -1 for s, sp in zip(e["attributions"]["integrated_gradients"], e["special"])]
            top1 += e["tokens"][scores.index(max(scores))] == "zorbly"
        scalars = record["metrics"]["scalars"]
        suspects = [s["token"] for s in record["metrics"]["shortcut"]["integrated_gradients"]["suspects"]]
        checks = [f"{c['token']}: {'confirmed' if c['confirmed'] else 'not confirmed'}, removal flips "
                  f"{c['deletion']['rate']:.0%}" for c in record["metrics"]["causal"] if c["deletion"]["rate"] is not None]
        print(
            f"{record['label']:>6} {scalars.get('saliency/probe/accuracy', float('nan')):>9.2f} "
            f"{scalars.get('saliency/integrated_gradients/delta_mean', float('nan')):>9.1e} "
            f"{f'{top1}/{len(with_token)} examples':>16} {json.dumps(suspects):>20}  {'; '.join(checks) or '-'}"
        )
    print("\nReading: as training proceeds the planted word 'zorbly' becomes the top-attributed token in the positive")
    print("reviews that contain it, and SaliencyMonitor flags it as a shortcut suspect (saliency/shortcut_alert).")
    print("The causal check confirms it: removing the word from validation reviews flips their prediction far more")
    print("often than removing random words of the same frequency (95% Wilson intervals in the alert).")


if __name__ == "__main__":
    main()
