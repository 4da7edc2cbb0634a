import os
from pathlib import Path

import pytest
import torch

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("MPLBACKEND", "Agg")

from tests.builders import grouped
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


@pytest.fixture(scope="session")
def saliency_run(tmp_path_factory):
    """A real demo fit with SaliencyMonitor: ``(logdir root, run directory)`` with epoch_{start,000,001}.json."""
    import lightning as L
    from lightning.pytorch.loggers import TensorBoardLogger

    from tests.builders import quiet_trainer

    from lightning_saliency import SaliencyMonitor
    from lightning_saliency.demo import build_demo

    root = tmp_path_factory.mktemp("saliency_run")
    L.seed_everything(0, verbose=False)
    module, data, tokenizer = build_demo(Shortcut("single"), n_train=128, n_val=32, seed=0, batch_size=16)
    module.model.config.id2label = {0: "negative", 1: "positive"}
    monitor = SaliencyMonitor(**grouped(tokenizer=tokenizer, num_examples=4, n_steps=8, log_example_images=False))
    logger = TensorBoardLogger(root, name="demo")
    trainer = quiet_trainer(max_epochs=2, logger=logger, callbacks=[monitor])
    trainer.fit(module, datamodule=data)
    return root, Path(logger.log_dir)


# Fixtures that fit a model: a test that uses one fits too, so it belongs to the slow lane.
FITTING_FIXTURES = {"saliency_run"}


def pytest_collection_modifyitems(config, items):
    for item in items:
        if FITTING_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
