"""Offline demo data and tiny models used by the examples, tests and benchmarks."""
from lightning_saliency.demo import offline
from lightning_saliency.demo.corpus import Shortcut, make_corpus
from lightning_saliency.demo.modeling import (
    TextClassifier,
    TextDataModule,
    TextDataset,
    build_demo,
    pad_collate,
    tiny_bert,
    train_tokenizer,
)

__all__ = [
    "Shortcut",
    "TextClassifier",
    "TextDataModule",
    "TextDataset",
    "build_demo",
    "make_corpus",
    "offline",
    "pad_collate",
    "tiny_bert",
    "train_tokenizer",
]
