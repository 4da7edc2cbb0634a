"""A bad example never silences the monitor: every run writes a record, bad examples are skipped
with their reason, and odd batch formats are read or named in the error."""
import contextlib
import json
import warnings

import lightning as L
import pytest
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from torch.utils.data import DataLoader

from conftest import bert_classifier
from tests.builders import quiet_trainer
from tests.builders import grouped
from lightning_saliency import SaliencyMonitor
from lightning_saliency.demo import TextClassifier, TextDataset, make_corpus, pad_collate, train_tokenizer

pytestmark = pytest.mark.slow

LONG = " ".join(["the movie was great and the acting was fine"] * 34)  # about 300 tokens
ODD = ["", "great", "这部电影很好看", "😀😀 👍", LONG]


class Data(L.LightningDataModule):
    def __init__(self, train, val, collate):
        super().__init__()
        self.train, self.val, self.collate = train, val, collate

    def train_dataloader(self):
        return DataLoader(self.train, 16, shuffle=True, collate_fn=self.collate,
                          generator=torch.Generator().manual_seed(0))

    def val_dataloader(self):
        return DataLoader(self.val, 16, collate_fn=self.collate)


class TupleClassifier(TextClassifier):
    """A module whose batches are tuples ``(input_ids, attention_mask, labels)``."""

    def training_step(self, batch, batch_idx):
        ids, mask, labels = batch
        return self.model(input_ids=ids, attention_mask=mask, labels=labels).loss

    def validation_step(self, batch, batch_idx):
        ids, mask, labels = batch
        self.log("val_loss", self.model(input_ids=ids, attention_mask=mask, labels=labels).loss, batch_size=len(ids))


def setup_data(collate_kind="dict"):
    L.seed_everything(0, verbose=False)
    texts, labels = make_corpus(96, seed=0)
    val_texts, val_labels = make_corpus(8, seed=1)
    tokenizer = train_tokenizer(texts + val_texts)
    val_texts, val_labels = ODD + val_texts, [1, 1, 0, 1, 1] + val_labels
    pad = tokenizer.pad_token_id

    def collate(items):
        batch = pad_collate(items, pad)
        return (batch["input_ids"], batch["attention_mask"], batch["labels"]) if collate_kind == "tuple" else batch

    train, val = TextDataset(texts, labels, tokenizer), TextDataset(val_texts, val_labels, tokenizer)
    # 64 positions: the model's limit, not a hard-coded 128, decides how long a probe text may be.
    model = bert_classifier(vocab_size=len(tokenizer), num_labels=2)
    module = (TupleClassifier if collate_kind == "tuple" else TextClassifier)(model)
    return module, Data(train, val, collate), tokenizer


def fit(tmp_path, module, data, **options):
    monitor = SaliencyMonitor(**grouped(n_steps=8, **options))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        quiet_trainer(max_epochs=2, logger=TensorBoardLogger(tmp_path, name="run"), callbacks=[monitor]).fit(module, datamodule=data)
    records = {p.stem[6:]: json.loads(p.read_text())
               for p in (tmp_path / "run" / "version_0" / "saliency").glob("epoch_*.json")}
    return monitor, records, [str(w.message) for w in caught]


def test_odd_examples_are_skipped_with_a_reason_and_every_run_is_recorded(tmp_path):
    module, data, tokenizer = setup_data()
    monitor, records, messages = fit(tmp_path, module, data, tokenizer=tokenizer, num_examples=13)
    assert sorted(records) == ["000", "001", "start"]
    assert [r["label"] for r in monitor.history] == ["start", "000", "001"]
    for record in records.values():
        assert record["status"] == "ok"
        skipped = {s["index"]: s["reason"] for s in record["skipped"]}
        # The empty text, and the Chinese and emoji texts (all [UNK] for this tokenizer): nothing to
        # attribute, each with what happened.
        assert set(skipped) == {0, 2, 3} and "only special tokens (an empty text?)" in skipped[0]
        assert all("unknown to the tokenizer ([UNK])" in skipped[i] for i in (2, 3)), skipped
        attributed = [e["index"] for e in record["examples"]]
        # "great" (one token), the long text (cut to the model's 64 positions by the dataset) and 8 reviews.
        assert 1 in attributed and 4 in attributed and len(attributed) == 10
        assert len(next(e for e in record["examples"] if e["index"] == 4)["tokens"]) == 64
        one_word = next(e for e in record["examples"] if e["index"] == 1)
        assert one_word["tokens"] == ["[CLS]", "great", "[SEP]"]
        assert record["metrics"]["scalars"]["saliency/skipped_examples"] == 3.0
    # Drift over one token is undefined: null in the file, and left out of the means.
    drift = records["001"]["metrics"]["drift"]["integrated_gradients"]["start"]
    one_word_position = [e["index"] for e in records["001"]["examples"]].index(1)
    assert drift["per_example"][one_word_position]["spearman"] is None
    assert drift["summary"]["spearman"]["mean"] is not None
    skip_warnings = [m for m in messages if "skipped 3 probe example(s)" in m]
    assert len(skip_warnings) == 1 and "example 0" in skip_warnings[0]  # said once while it stays the same

    from lightning_saliency.report import build_report, read_runs

    page = build_report(read_runs(tmp_path))
    assert "run 001 skipped dataset index 0: nothing to attribute" in page


def test_long_probe_texts_are_cut_to_the_model_length_and_say_so(tmp_path):
    module, data, tokenizer = setup_data()
    long_text = LONG
    assert len(tokenizer(long_text)["input_ids"]) > 300
    monitor, records, _ = fit(tmp_path, module, data, tokenizer=tokenizer, examples=[long_text, "a dull film", ""],
                              example_labels=[1, 0, 0], target="label")
    for record in records.values():
        long_example = next(e for e in record["examples"] if e["index"] == 0)
        assert long_example["truncated"] and len(long_example["tokens"]) == 64
        assert not next(e for e in record["examples"] if e["index"] == 1)["truncated"]
        assert [s["index"] for s in record["skipped"]] == [2]


def test_tuple_batches_are_read_with_input_keys_and_otherwise_refused_at_setup(tmp_path):
    module, data, tokenizer = setup_data("tuple")
    with pytest.raises(ValueError, match=r"tuple.*input_keys=\('input_ids', 'attention_mask', 'labels'\)"):
        fit(tmp_path / "plain", module, data, tokenizer=tokenizer, num_examples=12)
    assert not (tmp_path / "plain" / "run" / "version_0" / "saliency").exists()  # no training time was spent

    module, data, tokenizer = setup_data("tuple")
    monitor, records, _ = fit(tmp_path / "keys", module, data, tokenizer=tokenizer, num_examples=12,
                              input_keys=("input_ids", "attention_mask", "labels"))
    assert all(r["status"] == "ok" for r in records.values())
    assert {e["label"] for e in records["001"]["examples"]} == {0, 1}
    assert "saliency/probe/accuracy" in records["001"]["metrics"]["scalars"]


def test_labels_under_another_key(tmp_path):
    module, data, tokenizer = setup_data()
    renamed = data.collate

    def collate(items):
        batch = renamed(items)
        batch["y"] = batch.pop("labels")
        return batch

    class YClassifier(TextClassifier):
        def training_step(self, batch, batch_idx):
            return self.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["y"]).loss

        def validation_step(self, batch, batch_idx):
            pass

    data.collate = collate
    yields = YClassifier(module.model)
    _, records, messages = fit(tmp_path / "unnamed", yields, data, tokenizer=tokenizer, num_examples=12)
    assert any("no 'labels' entry" in m and "label_key=" in m for m in messages)
    assert records["001"]["examples"][0]["label"] is None
    _, records, _ = fit(tmp_path / "named", yields, data, tokenizer=tokenizer, num_examples=12, label_key="y")
    assert {e["label"] for e in records["001"]["examples"]} == {0, 1}


def test_causal_lm_probe_labels_are_next_tokens_named_by_their_text(tmp_path):
    from transformers import GPT2Config, GPT2LMHeadModel

    L.seed_everything(0, verbose=False)
    texts, _ = make_corpus(64, seed=0)
    tokenizer = train_tokenizer(texts)
    encoded = [{"input_ids": tokenizer(t)["input_ids"][1:-1]} for t in texts]  # no [CLS]/[SEP]: plain text

    def collate(items):
        width = max(len(i["input_ids"]) for i in items)
        ids = torch.tensor([i["input_ids"] + [tokenizer.pad_token_id] * (width - len(i["input_ids"])) for i in items])
        mask = (torch.arange(width)[None] < torch.tensor([len(i["input_ids"]) for i in items])[:, None]).long()
        return {"input_ids": ids, "attention_mask": mask, "labels": ids.masked_fill(mask == 0, -100)}

    config = GPT2Config(vocab_size=len(tokenizer), n_embd=32, n_layer=2, n_head=2, n_positions=64)
    module = TextClassifier(GPT2LMHeadModel(config))
    module.validation_step = lambda batch, batch_idx: None
    data = Data(encoded[:48], encoded[48:], collate)
    monitor, records, _ = fit(tmp_path, module, data, tokenizer=tokenizer, task="causal_lm", num_examples=8,
                              methods=("integrated_gradients", "gradient"))
    record = records["001"]
    assert record["status"] == "ok" and len(record["examples"]) == 8
    for example in record["examples"]:
        full = encoded[48 + example["index"]]["input_ids"]
        assert example["label"] == full[-1]  # the token after the attributed context
        assert example["tokens"] == tokenizer.convert_ids_to_tokens(full[:-1])
        assert example["label_name"] == tokenizer.decode([full[-1]])
        assert example["predicted_name"] == tokenizer.decode([example["predicted"]])
    accuracy = sum(e["predicted"] == e["label"] for e in record["examples"]) / 8
    assert record["metrics"]["scalars"]["saliency/probe/accuracy"] == accuracy


def test_an_empty_validation_set_is_refused_at_setup_with_the_fix(tmp_path):
    module, data, tokenizer = setup_data()
    data.val.items = []  # a validation set with no examples
    with pytest.raises(ValueError, match=r"validation dataset is empty.*probe=ProbeSettings\(texts=\[\.\.\.\]\)"):
        fit(tmp_path, module, data, tokenizer=tokenizer, num_examples=8)


def test_an_example_longer_than_the_model_is_skipped_with_the_model_length_as_reason():
    from conftest import SPECIAL, bert_classifier, random_batch

    from lightning_saliency.attribution import AttributionConfig
    from lightning_saliency.monitor.model_access import hf_forward
    from lightning_saliency.probes import ProbeSet
    from lightning_saliency.monitor.model_access import ModelAccess
    from lightning_saliency.monitor.runner import PassSettings, run_model_passes

    model = bert_classifier().eval()  # 64 positions
    inputs = random_batch(batch=3, seq=80)
    inputs["attention_mask"][:2, 60:] = 0  # rows 0 and 1 fit (at most 60 tokens); row 2 does not
    inputs["input_ids"][:2, 60:] = 0
    tokens = [["t"] * int(m.sum()) for m in inputs["attention_mask"]]
    probe = ProbeSet([10, 11, 12], inputs, None, tokens, ["x"] * 3, [list(range(len(t))) for t in tokens])
    access = ModelAccess(model, hf_forward(model), None, SPECIAL, None, contextlib.nullcontext)
    passes = run_model_passes(access, probe, PassSettings(("gradient",), AttributionConfig(), "predicted",
                                                          "classification", False, 0), max_length=64)
    assert passes.rows == [0, 1]
    length = int(inputs["attention_mask"][2].sum())
    assert length > 64 and passes.skipped == [(2, f"longer than the model's 64 positions ({length} tokens)")]
