"""task="token_classification": one row per entity span, the span's tag log-probs attributed."""
import contextlib

import pytest
import torch

from lightning_saliency import attribute
from tests.builders import tagged_row

TAGS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
SENTENCES = [(["zorbly", "film", "by", "acting", "story"], ["B-PER", "O", "O", "B-LOC", "I-LOC"]),
             (["the", "plot", "zorbly", "director"], ["O", "O", "B-PER", "I-PER"])]


def tiny_tagger(vocab):
    from transformers import BertConfig, BertForTokenClassification

    config = BertConfig(vocab_size=vocab, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=37, num_labels=len(TAGS), max_position_embeddings=64,
                        id2label=dict(enumerate(TAGS)), label2id={t: i for i, t in enumerate(TAGS)})
    torch.manual_seed(0)
    return BertForTokenClassification(config).eval()


def encoded_rows(tokenizer):
    return [tagged_row(tokenizer, words, tags, TAGS) for words, tags in SENTENCES]


def test_a_span_equals_captum_layer_ig_of_its_summed_tag_log_probs(demo_tokenizer):
    from captum.attr import LayerIntegratedGradients

    model = tiny_tagger(len(demo_tokenizer))
    ids = torch.tensor([demo_tokenizer(SENTENCES[0][0], is_split_into_words=True)["input_ids"]])
    span = torch.zeros_like(ids)
    span[0, 4:6] = 1  # "acting story": B-LOC I-LOC (after [CLS] and three one-piece words)
    tag = TAGS.index("B-LOC")
    ours = attribute(model, {"input_ids": ids, "attention_mask": torch.ones_like(ids), "span_mask": span},
                     ("integrated_gradients",), tokenizer=demo_tokenizer, task="token_classification", target=tag,
                     n_steps=50)["integrated_gradients"]

    def forward(input_ids):
        log_probs = model(input_ids=input_ids).logits.log_softmax(-1)[..., tag]
        return (log_probs * span).sum(-1)

    special = torch.isin(ids, torch.tensor(sorted(demo_tokenizer.all_special_ids)))
    baseline = torch.where(special, ids, demo_tokenizer.pad_token_id)
    reference = LayerIntegratedGradients(forward, model.get_input_embeddings()).attribute(
        ids, baselines=baseline, n_steps=50, method="gausslegendre").sum(-1)
    torch.testing.assert_close(ours.scores, reference.float(), rtol=1e-4, atol=1e-6)


def start_run(model, tokenizer, tmp_path, probe):
    """The engine's ``start`` run of ``model`` on :data:`SENTENCES`, read from batches of Hugging
    Face's ``DataCollatorForTokenClassification``: its record."""
    from transformers import DataCollatorForTokenClassification

    from lightning_saliency import AttributionConfig
    from lightning_saliency.attribution import SpecialTokens
    from lightning_saliency.monitor.engine import MonitorEngine
    from lightning_saliency.monitor.messages import RunOutputs, RunRequest
    from lightning_saliency.monitor.model_access import ModelAccess, config_label_names, hf_forward
    from lightning_saliency.settings import EvidenceSettings, MonitorSettings

    loader = torch.utils.data.DataLoader(encoded_rows(tokenizer), batch_size=2,
                                         collate_fn=DataCollatorForTokenClassification(tokenizer))
    settings = MonitorSettings(task="token_classification", num_examples=2, attribution=AttributionConfig(n_steps=8),
                               evidence=EvidenceSettings(artifact_examples=0), probe=probe)
    engine = MonitorEngine(settings, run_id="ner")
    access = ModelAccess(model, hf_forward(model), tokenizer, SpecialTokens.from_tokenizer(tokenizer),
                         None, contextlib.nullcontext)
    with pytest.warns(UserWarning, match="few"):
        engine.connect(access, 64, config_label_names(model))
    record = engine.attempt(RunRequest("start", "fit", None, 0, validation=loader), RunOutputs(tmp_path)).record
    engine.flush()
    return record


def test_rows_are_the_entity_spans_of_the_validation_labels(demo_tokenizer, tmp_path):
    from lightning_saliency import ProbeSettings
    from lightning_saliency.settings import MonitorSettings

    model = tiny_tagger(len(demo_tokenizer))
    record = start_run(model, demo_tokenizer, tmp_path, ProbeSettings(entity_spans="labelled"))
    found = sorted((e.index, " ".join(e.tokens[e.span[0]: e.span[1] + 1]), e.label_name) for e in record.examples)
    assert found == [(0, "acting story", "B-LOC"), (0, "zorbly", "B-PER"), (1, "zorbly director", "B-PER")]
    assert all(e.predicted_name in TAGS for e in record.examples)
    assert len({e.key for e in record.examples}) == 3  # one row per span, told apart by the span
    with pytest.raises(ValueError, match="leave probe.texts unset"):
        MonitorSettings(task="token_classification", probe=ProbeSettings(texts=("a b",)))
    with pytest.raises(ValueError, match="'predicted'.*or 'labelled'"):
        ProbeSettings(entity_spans="gold")


def test_rows_are_the_entity_spans_the_model_predicts_labelled_with_their_true_tag(demo_tokenizer, tmp_path):
    """By default a run attributes the spans the live model predicts (on each word's first piece),
    false entities included: a row's label is the tag its first token truly has ("O" when the
    model invents an entity), so a tag the model puts where none is can be traced to its cause."""
    from transformers import DataCollatorForTokenClassification

    from lightning_saliency import ProbeSettings
    from lightning_saliency.tasks.token_classification import entity_spans

    model = tiny_tagger(len(demo_tokenizer))
    record = start_run(model, demo_tokenizer, tmp_path, ProbeSettings())
    collate = DataCollatorForTokenClassification(demo_tokenizer)
    batch = collate(encoded_rows(demo_tokenizer))
    with torch.no_grad():
        tags = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.argmax(-1)
    gold = batch["labels"]
    expected = []
    for i in range(len(gold)):
        read = torch.where(gold[i] == -100, gold[i], tags[i]).tolist()
        expected += [(i, first, TAGS[gold[i, first]]) for first, _, _ in entity_spans(read, TAGS)]
    found = [(e.index, e.span[0], e.label_name) for e in record.examples]
    assert expected and sorted(found) == sorted(expected)
    assert "O" in {tag for *_, tag in found}  # the random model invents entities: rows labelled "O"


def ner_corpus(tokenizer, count, seed):
    """Filler words and one entity: a PER that always follows "zorbly" or a LOC that always follows
    "near". The cue word decides the tag, whatever the entity word is."""
    import random

    rng = random.Random(seed)
    filler = ["the", "film", "was", "plot", "story", "acting", "it", "very", "script", "director"]
    rows = []
    for _ in range(count):
        words = [rng.choice(filler) for _ in range(rng.randint(2, 5))]
        tags = ["O"] * len(words)
        cue, tag = rng.choice((("zorbly", "B-PER"), ("near", "B-LOC")))
        at = rng.randint(0, len(words))
        words[at:at] = [cue, rng.choice(filler)]
        tags[at:at] = ["O", tag]
        rows.append(tagged_row(tokenizer, words, tags, TAGS))
    return rows


@pytest.mark.slow
def test_a_cue_word_that_always_precedes_an_entity_is_raised_for_its_tag(demo_tokenizer, tmp_path):
    from transformers import DataCollatorForTokenClassification, Trainer, TrainingArguments, set_seed

    from lightning_saliency import AttributionConfig
    from lightning_saliency.adapters.transformers import SaliencyTrainerCallback

    set_seed(0)
    model = tiny_tagger(len(demo_tokenizer)).train()
    args = TrainingArguments(output_dir=str(tmp_path), num_train_epochs=10, per_device_train_batch_size=16,
                             learning_rate=5e-3, eval_strategy="epoch", save_strategy="no", report_to=[],
                             use_cpu=True, disable_tqdm=True, seed=0)
    trainer = Trainer(model=model, args=args, train_dataset=ner_corpus(demo_tokenizer, 400, 0),
                      eval_dataset=ner_corpus(demo_tokenizer, 64, 1),
                      data_collator=DataCollatorForTokenClassification(demo_tokenizer))
    callback = SaliencyTrainerCallback(tokenizer=demo_tokenizer, task="token_classification", num_examples=16,
                                       methods=("integrated_gradients",), every_n_epochs=5,
                                       attribution=AttributionConfig(n_steps=16)).attach(trainer)
    trainer.train()
    assert [r["label"] for r in callback.history] == ["start", "004", "009"]
    last = callback.history[-1]
    assert {e["label_name"] for e in last["examples"]} == {"B-PER", "B-LOC"} and len(last["examples"]) == 16
    suspects = last["metrics"]["shortcut"]["integrated_gradients"]["suspects"]
    by_token = {s["token"]: s for s in suspects}
    # Suspects per (word, tag): each cue word is raised for the tag it decides.
    assert "zorbly" in by_token and TAGS[by_token["zorbly"]["label"]] == "B-PER", suspects
    assert "near" in by_token and TAGS[by_token["near"]["label"]] == "B-LOC", suspects


@pytest.mark.slow
def test_a_lightning_fit_of_a_tagger_is_monitored_per_span(demo_tokenizer, tmp_path, recwarn):
    from transformers import DataCollatorForTokenClassification

    from lightning_saliency import AttributionConfig, SaliencyMonitor
    from tests.builders import HFModule, assert_no_label_column_warning, quiet_trainer

    model = tiny_tagger(len(demo_tokenizer)).train()


    collate = DataCollatorForTokenClassification(demo_tokenizer)
    train = torch.utils.data.DataLoader(ner_corpus(demo_tokenizer, 64, 0), batch_size=16, collate_fn=collate)
    val = torch.utils.data.DataLoader(ner_corpus(demo_tokenizer, 16, 1), batch_size=16, collate_fn=collate)
    monitor = SaliencyMonitor(tokenizer=demo_tokenizer, task="token_classification", num_examples=8,
                              attribution=AttributionConfig(n_steps=8))
    quiet_trainer(tmp_path, [monitor]).fit(HFModule(model, lr=1e-3), train, val)
    records = monitor.history
    assert [r["label"] for r in records] == ["start", "000"] and {r["status"] for r in records} == {"ok"}
    assert_no_label_column_warning(recwarn)  # a tagger's truth is its token labels, not a label column
    # After one short epoch the model's entities are far from the labels: the rows are its
    # predicted spans (several per example, false ones labelled "O"), each told apart by its span.
    rows = records[-1]["examples"]
    assert rows and all(e["span"] is not None and e["label_name"] in TAGS for e in rows)
    assert len({(e["index"], tuple(e["span"])) for e in rows}) == len(rows)
