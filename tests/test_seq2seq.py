"""task="seq2seq": the target sequence's log-probability of an encoder-decoder, attributed to the
encoder input. Reference: captum's IntegratedGradients over the encoder's ``inputs_embeds`` (a
hand-built forward: the T5 model with ``labels``, summing the target tokens' log-probs)."""
import contextlib

import pytest
import torch

from lightning_saliency import attribute

SOURCES = ["the zorbly film was", "a dull plot and the acting"]
TARGETS = ["great fun", "was poor indeed"]


def tiny_t5(vocab):
    from transformers import T5Config, T5ForConditionalGeneration

    config = T5Config(vocab_size=vocab, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_decoder_layers=2,
                      num_heads=4, decoder_start_token_id=0, pad_token_id=0)
    torch.manual_seed(0)
    return T5ForConditionalGeneration(config).eval()


def batch(tokenizer):
    encoded = tokenizer(SOURCES, padding=True, return_tensors="pt")
    targets = [tokenizer.encode(t, add_special_tokens=False) for t in TARGETS]
    labels = torch.full((len(targets), max(map(len, targets))), -100)
    for row, ids in enumerate(targets):
        labels[row, : len(ids)] = torch.tensor(ids)
    return {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"], "labels": labels}


def test_seq2seq_equals_captum_ig_over_the_encoder_embeddings(demo_tokenizer):
    from captum.attr import IntegratedGradients

    model = tiny_t5(len(demo_tokenizer))
    inputs = batch(demo_tokenizer)
    ours = attribute(model, inputs, ("integrated_gradients",), tokenizer=demo_tokenizer, task="seq2seq",
                     n_steps=50)["integrated_gradients"]
    embed = model.get_input_embeddings()
    special = torch.isin(inputs["input_ids"], torch.tensor(sorted(demo_tokenizer.all_special_ids)))
    for row in range(len(SOURCES)):
        mask = inputs["attention_mask"][row: row + 1]
        n = int(mask.sum())
        ids, labels = inputs["input_ids"][row: row + 1, :n], inputs["labels"][row: row + 1]
        labels = labels[:, : int((labels[0] != -100).sum())]

        def forward(embeddings):
            rows = labels.expand(embeddings.shape[0], -1).contiguous()
            logits = model(inputs_embeds=embeddings, attention_mask=torch.ones(embeddings.shape[:2], dtype=torch.long),
                           labels=rows).logits
            return logits.log_softmax(-1).gather(2, rows.unsqueeze(-1)).sum((1, 2))

        with torch.no_grad():
            x = embed(ids)
            # Our "pad" baseline: special tokens kept, every other source token replaced by [PAD].
            base = embed(torch.where(special[row: row + 1, :n], ids, demo_tokenizer.pad_token_id))
        reference = IntegratedGradients(forward).attribute(x, baselines=base, n_steps=50, method="gausslegendre")
        torch.testing.assert_close(ours.scores[row, :n], reference.sum(-1)[0].float(), rtol=1e-4, atol=1e-6)
        assert torch.all(ours.scores[row, n:] == 0)  # padding


@pytest.mark.parametrize("given", ["texts", "collator"])
def test_the_monitor_attributes_a_seq2seq_fine_tune(given, demo_tokenizer, tmp_path):
    from lightning_saliency import AttributionConfig, ProbeSettings
    from lightning_saliency.monitor.engine import MonitorEngine
    from lightning_saliency.monitor.messages import RunOutputs, RunRequest
    from lightning_saliency.monitor.model_access import ModelAccess, hf_forward
    from lightning_saliency.attribution import SpecialTokens
    from lightning_saliency.settings import EvidenceSettings, MonitorSettings

    model = tiny_t5(len(demo_tokenizer))
    probe, loader = ProbeSettings(texts=SOURCES, completions=TARGETS), None
    if given == "collator":
        from transformers import DataCollatorForSeq2Seq

        rows = [{"input_ids": demo_tokenizer.encode(s), "labels": demo_tokenizer.encode(t, add_special_tokens=False)}
                for s, t in zip(SOURCES, TARGETS)]
        probe = ProbeSettings()
        loader = torch.utils.data.DataLoader(rows, batch_size=2,
                                             collate_fn=DataCollatorForSeq2Seq(demo_tokenizer, model=model))
    settings = MonitorSettings(task="seq2seq", num_examples=2, probe=probe, attribution=AttributionConfig(n_steps=8),
                               evidence=EvidenceSettings(artifact_examples=0))
    engine = MonitorEngine(settings, run_id="t5")
    access = ModelAccess(model, hf_forward(model), demo_tokenizer, SpecialTokens.from_tokenizer(demo_tokenizer),
                         None, contextlib.nullcontext)
    with pytest.warns(UserWarning, match="2 probe examples is few"):
        engine.connect(access, 64, None)
    outcome = engine.attempt(RunRequest("start", "fit", None, 0, validation=loader), RunOutputs(tmp_path))
    engine.flush()
    record = outcome.record
    assert record is not None and record.settings["task"] == "seq2seq"
    assert [e.predicted_name for e in record.examples] == ["target", "target"]
    assert all(0 < e.probability <= 1 for e in record.examples)
    # The source is what is explained; the target is what is scored, not part of the input.
    tokens = [token for e in record.examples for token in e.tokens]
    assert "zorbly" in tokens and "great" not in tokens


def seq2seq_rows(tokenizer, count=16):
    sources = [f"review {i}: the film was {'zorbly ' if i % 2 else ''}long" for i in range(count)]
    targets = ["great" if i % 2 else "dull" for i in range(count)]
    return [{"input_ids": tokenizer.encode(s), "labels": tokenizer.encode(t, add_special_tokens=False)}
            for s, t in zip(sources, targets)]


def check_records(history):
    assert [r["label"] for r in history] == ["start", "000"] and {r["status"] for r in history} == {"ok"}
    for example in history[-1]["examples"]:
        # The two targets are the classes: the prediction is the likelier one after the source.
        assert example["predicted_name"] in ("great", "dull") and 0 < example["probability"] <= 1
        assert "film" in example["tokens"] and not {"great", "dull"} & set(example["tokens"])


@pytest.mark.slow
def test_a_lightning_fit_of_t5_is_monitored_from_its_seq2seq_batches(demo_tokenizer, tmp_path, recwarn):
    from transformers import DataCollatorForSeq2Seq

    from lightning_saliency import AttributionConfig, SaliencyMonitor
    from tests.builders import HFModule, assert_no_label_column_warning, quiet_trainer

    model = tiny_t5(len(demo_tokenizer)).train()


    loader = torch.utils.data.DataLoader(seq2seq_rows(demo_tokenizer), batch_size=8,
                                         collate_fn=DataCollatorForSeq2Seq(demo_tokenizer, model=model))
    monitor = SaliencyMonitor(tokenizer=demo_tokenizer, task="seq2seq", num_examples=8,
                              attribution=AttributionConfig(n_steps=8))
    quiet_trainer(tmp_path, [monitor]).fit(HFModule(model, lr=1e-3), loader, loader)
    check_records(monitor.history)
    assert_no_label_column_warning(recwarn)  # a target's truth is its tokens


@pytest.mark.slow
def test_a_seq2seq_trainer_run_is_monitored(demo_tokenizer, tmp_path):
    from datasets import Dataset
    from transformers import DataCollatorForSeq2Seq, Seq2SeqTrainer, Seq2SeqTrainingArguments

    from lightning_saliency import AttributionConfig
    from lightning_saliency.adapters.transformers import SaliencyTrainerCallback

    model = tiny_t5(len(demo_tokenizer))
    rows = Dataset.from_list(seq2seq_rows(demo_tokenizer))
    args = Seq2SeqTrainingArguments(output_dir=str(tmp_path), num_train_epochs=1, per_device_train_batch_size=8,
                                    eval_strategy="epoch", save_strategy="no", report_to=[], use_cpu=True,
                                    disable_tqdm=True)
    trainer = Seq2SeqTrainer(model=model, args=args, train_dataset=rows, eval_dataset=rows,
                             data_collator=DataCollatorForSeq2Seq(demo_tokenizer, model=model))
    callback = SaliencyTrainerCallback(tokenizer=demo_tokenizer, task="seq2seq", num_examples=8,
                                       attribution=AttributionConfig(n_steps=8)).attach(trainer)
    trainer.train()
    check_records(callback.history)


@pytest.mark.slow
def test_a_cue_word_that_decides_the_output_is_raised_for_that_output(demo_tokenizer, tmp_path):
    import random

    from transformers import DataCollatorForSeq2Seq

    from lightning_saliency import AttributionConfig, SaliencyMonitor
    from tests.builders import HFModule, check_cue_evidence, cue_answer_pairs, quiet_trainer

    rng = random.Random(0)

    def rows(count):
        return [{"input_ids": demo_tokenizer.encode(prompt), "labels": demo_tokenizer.encode(answer, add_special_tokens=False)}
                for prompt, answer in cue_answer_pairs(count, rng)]

    from lightning import seed_everything

    seed_everything(0, verbose=False)
    model = tiny_t5(len(demo_tokenizer)).train()


    collate = DataCollatorForSeq2Seq(demo_tokenizer, model=model)
    train = torch.utils.data.DataLoader(rows(128), batch_size=16, shuffle=True, collate_fn=collate)
    val = torch.utils.data.DataLoader(rows(32), batch_size=16, collate_fn=collate)
    monitor = SaliencyMonitor(tokenizer=demo_tokenizer, task="seq2seq", num_examples=16, every_n_epochs=4,
                              methods=("integrated_gradients",), attribution=AttributionConfig(n_steps=16))
    quiet_trainer(tmp_path, [monitor], max_epochs=8).fit(HFModule(model, lr=5e-3), train, val)
    last = monitor.history[-1]
    assert {e["label_name"] for e in last["examples"]} == {"dull", "great"}
    suspects = last["metrics"]["shortcut"]["integrated_gradients"]["suspects"]
    assert [s["token"] for s in suspects][:1] == ["zorbly"], suspects
    great = next(e["label"] for e in last["examples"] if e["label_name"] == "great")
    assert suspects[0]["label"] == great
    check_cue_evidence(last, suspects)
