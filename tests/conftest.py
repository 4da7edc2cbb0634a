import os

import pytest
import torch

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("MPLBACKEND", "Agg")

from lightning_saliency.attribution import SpecialTokens  # noqa: E402
from lightning_saliency.demo import Shortcut, make_corpus, train_tokenizer  # noqa: E402

SPECIAL = SpecialTokens(pad_id=0, special_ids=frozenset({0, 1, 2}), mask_id=3, unk_id=4)


def bert_classifier(vocab_size=60, num_labels=3, seed=0, init=0.3):
    from transformers import BertConfig, BertForSequenceClassification

    config = BertConfig(
        vocab_size=vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37,
        num_labels=num_labels, max_position_embeddings=64, initializer_range=init,
    )
    torch.manual_seed(seed)
    return BertForSequenceClassification(config)


def random_batch(batch=4, seq=12, vocab=60, seed=1):
    """[CLS]=1 ... [SEP]=2 then [PAD]=0, with different lengths per example."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, vocab, (batch, seq), generator=g)
    mask = torch.ones_like(ids)
    for i in range(batch):
        length = seq - (i * 3) % (seq - 3)
        ids[i, 0] = 1
        ids[i, length - 1] = 2
        ids[i, length:] = 0
        mask[i, length:] = 0
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": torch.zeros_like(ids)}


@pytest.fixture
def model():
    return bert_classifier().eval()


@pytest.fixture
def batch():
    return random_batch()


@pytest.fixture(scope="session")
def demo_tokenizer():
    texts, _ = make_corpus(300, Shortcut("single"), seed=0)
    return train_tokenizer(texts)
