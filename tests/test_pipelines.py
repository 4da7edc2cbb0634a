"""The pipelines users run, end to end and without mocks: ``datasets.Dataset`` mapped with the
tokenizer, the tokenizer's own ``BatchEncoding`` batches (``DataCollatorWithPadding``, the HF
Trainer's default collator, a collate that returns ``tokenizer(...)``), ``with_format("torch")``
rows, and a PEFT LoRA model inside the Trainer. In each, the planted word must be raised as a
suspect and confirmed by the causal check."""
import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader

from tests.builders import quiet_trainer
from tests.builders import grouped
from lightning_saliency import SaliencyMonitor
from lightning_saliency.demo import Shortcut, TextClassifier, make_corpus, tiny_bert, train_tokenizer

datasets = pytest.importorskip("datasets")
transformers = pytest.importorskip("transformers")

pytestmark = pytest.mark.slow

PLANTED = "zorbly"
# Sentiment words are noise (0.5), so the planted word is the only signal, as in test_shortcuts.
CORPUS = dict(shortcut=Shortcut("single"), shortcut_rate=1.0, sentiment_noise=0.5)
MONITOR = dict(num_examples=24, n_steps=16, faithfulness=False, log_example_images=False)


@pytest.fixture(scope="module")
def corpus():
    train, val = make_corpus(800, seed=0, **CORPUS), make_corpus(200, seed=1, **CORPUS)
    return train, val, train_tokenizer(train[0] + val[0])


def hf_dataset(texts, labels, tokenizer, keep_text=True):
    """What the HF tutorials do: a Dataset of text and label, mapped with the tokenizer (batched)."""
    data = datasets.Dataset.from_dict({"text": list(texts), "label": list(labels)})
    return data.map(lambda batch: tokenizer(batch["text"], truncation=True), batched=True,
                    remove_columns=[] if keep_text else ["text"])


def assert_planted_word_raised_and_confirmed(history):
    """Every method raises the planted word as its strongest suspect at a run, and the last run's
    check confirms it. (Not necessarily at the last run: with transformers 5.24 and datasets 5.2,
    the DataCollatorWithPadding fit's last epoch at lr 5e-3 drops to probe accuracy 0.75 and IG's
    suspects there are empty, while the check still confirms it.)"""
    last = history[-1]
    assert last["status"] == "ok", last.get("error")
    for method in last["methods"]:
        runs = [r["metrics"]["shortcut"][method]["suspects"] for r in history if method in r["methods"]]
        assert any(suspects and suspects[0]["token"] == PLANTED for suspects in runs), (method, runs)
    checks = {c["token"]: c for c in last["metrics"]["causal"]}
    assert checks[PLANTED]["confirmed"], checks
    assert all(r["status"] == "ok" for r in history), [r.get("error") for r in history]


def lightning_fit(module, tokenizer, epochs, **loaders):
    monitor = SaliencyMonitor(**grouped(tokenizer=tokenizer, **MONITOR))
    trainer = quiet_trainer(max_epochs=epochs, callbacks=[monitor])
    trainer.fit(module, **loaders)
    return monitor


def test_lightning_with_datasets_and_data_collator_with_padding(corpus, tmp_path):
    """The batches are ``BatchEncoding`` (a ``UserDict``), read from the datamodule's public hook at setup."""
    (train, val, tokenizer) = corpus
    collator = transformers.DataCollatorWithPadding(tokenizer)
    train_set = hf_dataset(*train, tokenizer, keep_text=False)
    val_set = hf_dataset(*val, tokenizer, keep_text=False)

    class Data(L.LightningDataModule):
        def train_dataloader(self):
            return DataLoader(train_set, 32, shuffle=True, collate_fn=collator,
                              generator=torch.Generator().manual_seed(0))

        def val_dataloader(self):
            return DataLoader(val_set, 64, collate_fn=collator)

    assert isinstance(collator([val_set[0], val_set[1]]), transformers.BatchEncoding)
    L.seed_everything(0, verbose=False)
    module = TextClassifier(tiny_bert(len(tokenizer), seed=0), lr=5e-3)
    monitor = lightning_fit(module, tokenizer, epochs=4, datamodule=Data())
    assert_planted_word_raised_and_confirmed(monitor.history)
    assert monitor.engine.probe.labels is not None and len(monitor.engine.probe) == 24


def test_lightning_loaders_passed_to_fit_with_a_tokenizer_collate(corpus):
    """Raw text rows; the collate returns ``tokenizer(...)`` with the labels added; loaders go to fit()."""
    (train, val, tokenizer) = corpus

    def collate(rows):
        batch = tokenizer([r["text"] for r in rows], padding=True, truncation=True, return_tensors="pt")
        batch["labels"] = torch.tensor([r["label"] for r in rows])
        return batch

    rows = lambda texts, labels: [{"text": t, "label": y} for t, y in zip(texts, labels)]  # noqa: E731
    L.seed_everything(0, verbose=False)
    module = TextClassifier(tiny_bert(len(tokenizer), seed=0), lr=5e-3)
    monitor = lightning_fit(
        module, tokenizer, epochs=4,
        train_dataloaders=DataLoader(rows(*train), 32, shuffle=True, collate_fn=collate,
                                     generator=torch.Generator().manual_seed(0)),
        val_dataloaders=DataLoader(rows(*val), 64, collate_fn=collate))
    assert_planted_word_raised_and_confirmed(monitor.history)


def trainer_run(out, train_set, val_set, tokenizer, model, epochs=6):
    from transformers import Trainer, TrainingArguments

    from lightning_saliency.adapters.transformers import SaliencyTrainerCallback

    args = TrainingArguments(
        output_dir=str(out), num_train_epochs=epochs, per_device_train_batch_size=32, per_device_eval_batch_size=64,
        learning_rate=5e-3, eval_strategy="epoch", save_strategy="no", logging_strategy="no", report_to="none",
        use_cpu=True, seed=0, disable_tqdm=True, dataloader_num_workers=0,
    )
    # processing_class=tokenizer and no data_collator: the Trainer's default, DataCollatorWithPadding.
    trainer = Trainer(model=model, args=args, train_dataset=train_set, eval_dataset=val_set, processing_class=tokenizer)
    assert isinstance(trainer.data_collator, transformers.DataCollatorWithPadding)
    callback = SaliencyTrainerCallback(**grouped(tokenizer=tokenizer, **MONITOR)).attach(trainer)
    trainer.train()
    return callback


@pytest.mark.parametrize("rows", ["python", "torch"])
def test_hf_trainer_default_collator_over_a_dataset(corpus, tmp_path, rows):
    """``rows="torch"``: ``with_format("torch")``, so every item is a dict of tensors."""
    from transformers import set_seed

    (train, val, tokenizer) = corpus
    train_set, val_set = hf_dataset(*train, tokenizer), hf_dataset(*val, tokenizer)
    if rows == "torch":
        train_set = train_set.remove_columns(["text"]).with_format("torch")
        val_set = val_set.remove_columns(["text"]).with_format("torch")
        assert isinstance(val_set[0]["input_ids"], torch.Tensor)
    set_seed(0)
    callback = trainer_run(tmp_path, train_set, val_set, tokenizer, tiny_bert(len(tokenizer), seed=0))
    assert_planted_word_raised_and_confirmed(callback.history)
    # The training set's artifact table was read through the same default collator.
    relied = callback.history[-1]["metrics"]["artifacts"]["gradient"]["relied_artifacts"]
    assert relied and relied[0]["token"] == PLANTED


def test_hf_trainer_with_a_peft_lora_model(corpus, tmp_path):
    peft = pytest.importorskip("peft")
    from transformers import set_seed

    (train, val, tokenizer) = corpus
    set_seed(0)
    model = peft.get_peft_model(tiny_bert(len(tokenizer), seed=0),
                                peft.LoraConfig(task_type="SEQ_CLS", r=8, lora_alpha=16,
                                                target_modules=["query", "value"]))
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    callback = trainer_run(tmp_path, hf_dataset(*train, tokenizer), hf_dataset(*val, tokenizer), tokenizer, model)
    assert_planted_word_raised_and_confirmed(callback.history)
    # Attribution froze and restored parameters: LoRA's frozen base stays frozen and unchanged.
    for name, parameter in model.named_parameters():
        if name in frozen:
            assert not parameter.requires_grad and torch.equal(parameter, frozen[name]), name
