"""Tiny offline building blocks: an in-process WordPiece tokenizer, a small BERT and Lightning glue.

Used by ``examples/shortcut_demo.py``, the tests and the benchmarks; nothing is downloaded.
"""
from __future__ import annotations

from typing import Any, Optional, Sequence

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def train_tokenizer(texts: Sequence[str], vocab_size: int = 200) -> Any:
    """Build an uncased WordPiece tokenizer from ``texts`` (strings, or pairs of strings) and wrap
    it as a fast HF tokenizer (pairs are encoded ``[CLS] a [SEP] b [SEP]``, b with token type 1).

    The vocabulary is deterministic (``tokenizers``' own trainer breaks ties differently from run
    to run): special tokens, every character alone and as a ``##`` continuation, then whole words by
    descending frequency (ties alphabetical) up to ``vocab_size``. Rarer words split into pieces.
    """
    from collections import Counter

    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    normalizer = normalizers.BertNormalizer(lowercase=True)
    splitter = pre_tokenizers.BertPreTokenizer()
    counts: Counter = Counter()
    for text in (part for text in texts for part in ((text,) if isinstance(text, str) else text)):
        counts.update(word for word, _ in splitter.pre_tokenize_str(normalizer.normalize_str(text)))
    characters = sorted({c for word in counts for c in word})
    vocab = list(SPECIAL_TOKENS) + characters + [f"##{c}" for c in characters]
    for word, _ in sorted(counts.items(), key=lambda item: (-item[1], item[0])):
        if len(vocab) >= vocab_size:
            break
        if word not in vocab:
            vocab.append(word)
    backend = Tokenizer(models.WordPiece({token: i for i, token in enumerate(vocab)}, unk_token="[UNK]"))
    backend.normalizer = normalizer
    backend.pre_tokenizer = splitter
    cls_id, sep_id = vocab.index("[CLS]"), vocab.index("[SEP]")
    backend.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)]
    )
    backend.decoder = decoders.WordPiece()
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
        sep_token="[SEP]", mask_token="[MASK]",
    )


def tiny_bert(vocab_size: int, num_labels: int = 2, hidden_size: int = 32, layers: int = 2, seed: int = 0) -> Any:
    """A small ``BertForSequenceClassification`` built from a config (no weights downloaded)."""
    from transformers import BertConfig, BertForSequenceClassification

    config = BertConfig(
        vocab_size=vocab_size, hidden_size=hidden_size, num_hidden_layers=layers, num_attention_heads=2,
        intermediate_size=2 * hidden_size, max_position_embeddings=128, num_labels=num_labels,
        hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1,
    )
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return BertForSequenceClassification(config)


def encode(tokenizer: Any, texts: Sequence[Any], **options: Any) -> Any:
    """``tokenizer`` over ``texts``: strings, or pairs of strings (the second part as the
    tokenizer's ``text_pair``, with token type ids); ``options`` go to the tokenizer."""
    if texts and not isinstance(texts[0], str):
        return tokenizer([a for a, _ in texts], [b for _, b in texts], return_token_type_ids=True, **options)
    return tokenizer(list(texts), **options)


class TextDataset(Dataset):
    """Tokenized texts (strings, or pairs of strings) with labels; items are dicts of lists, padded
    by :func:`pad_collate`."""

    def __init__(self, texts: Sequence[Any], labels: Sequence[int], tokenizer: Any, max_length: int = 64) -> None:
        encoded = encode(tokenizer, texts, truncation=True, max_length=max_length)
        self.items = [
            {key: encoded[key][i] for key in encoded.keys()} | {"labels": int(labels[i])} for i in range(len(texts))
        ]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict:
        return self.items[index]


def pad_collate(items: Sequence[dict], pad_id: int = 0) -> dict:
    """Pad a list of tokenized items into a batch of tensors (``labels`` stays 1-D)."""
    width = max(len(item["input_ids"]) for item in items)
    batch: dict = {}
    for key in items[0]:
        if key == "labels":
            batch[key] = torch.tensor([item[key] for item in items], dtype=torch.long)
            continue
        fill = pad_id if key == "input_ids" else 0
        batch[key] = torch.tensor([list(item[key]) + [fill] * (width - len(item[key])) for item in items])
    return batch


class TextClassifier(L.LightningModule):
    """Fine-tunes a Hugging Face sequence classifier held in ``self.model``."""

    def __init__(self, model: torch.nn.Module, lr: float = 3e-3) -> None:
        super().__init__()
        # ``from_pretrained`` returns the model in eval mode, and Lightning keeps module modes as it
        # finds them: without this, a pretrained model would be fine-tuned with dropout off.
        self.model = model.train()
        self.lr = lr

    def forward(self, **inputs: Any) -> Any:
        return self.model(**inputs)

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        loss = self.model(**batch).loss
        self.log("train_loss", loss, prog_bar=True, batch_size=len(batch["labels"]))
        return loss

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        out = self.model(**batch)
        acc = (out.logits.argmax(-1) == batch["labels"]).float().mean()
        self.log_dict({"val_loss": out.loss, "val_acc": acc}, prog_bar=True, batch_size=len(batch["labels"]))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW(self.parameters(), lr=self.lr)


class TextDataModule(L.LightningDataModule):
    """Train/validation loaders over :class:`TextDataset` with a padding collate function."""

    def __init__(
        self,
        train: tuple[Sequence[str], Sequence[int]],
        val: tuple[Sequence[str], Sequence[int]],
        tokenizer: Any,
        batch_size: int = 32,
        max_length: int = 64,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.train_set = TextDataset(*train, tokenizer, max_length)
        self.val_set = TextDataset(*val, tokenizer, max_length)
        self.batch_size = batch_size
        self.pad_id = tokenizer.pad_token_id
        self.seed = seed

    def _collate(self, items: Sequence[dict]) -> dict:
        return pad_collate(items, self.pad_id)

    def train_dataloader(self) -> DataLoader:
        generator = torch.Generator().manual_seed(self.seed)
        return DataLoader(self.train_set, self.batch_size, shuffle=True, collate_fn=self._collate, generator=generator)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val_set, self.batch_size, collate_fn=self._collate)


def build_demo(
    shortcut: Optional[Any] = None,
    n_train: int = 600,
    n_val: int = 120,
    seed: int = 0,
    sentiment_noise: float = 0.3,
    shortcut_rate: float = 0.9,
    batch_size: int = 32,
    hidden_size: int = 32,
    partial_rate: float = 0.0,
) -> tuple[TextClassifier, TextDataModule, Any]:
    """Corpus, tokenizer, tiny BERT, LightningModule and DataModule for a shortcut experiment
    (corpus arguments as in :func:`~lightning_saliency.demo.corpus.make_corpus`)."""
    from lightning_saliency.demo.corpus import Shortcut, make_corpus

    shortcut = shortcut or Shortcut("single")
    train = make_corpus(n_train, shortcut, shortcut_rate, sentiment_noise, seed=seed, partial_rate=partial_rate)
    val = make_corpus(n_val, shortcut, shortcut_rate, sentiment_noise, seed=seed + 1, partial_rate=partial_rate)
    tokenizer = train_tokenizer(train[0] + val[0])
    model = tiny_bert(len(tokenizer), hidden_size=hidden_size, seed=seed)
    return TextClassifier(model), TextDataModule(train, val, tokenizer, batch_size, seed=seed), tokenizer
