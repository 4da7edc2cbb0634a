"""task="completion": a prompt's completion log-probability, attributed to the prompt, batched.

Reference: captum's LLMGradientAttribution over LayerIntegratedGradients on the word embeddings,
which runs one IG per completion token (a batch of one, no attention mask) and sums them.
"""
import pytest
import torch

from lightning_saliency import attribute

PROMPTS = ["the zorbly film was", "a dull plot and the acting"]
COMPLETIONS = ["great fun", "was poor indeed"]


def tiny_causal_lm(kind, vocab):
    if kind == "gpt2":
        from transformers import GPT2Config, GPT2LMHeadModel

        config = GPT2Config(vocab_size=vocab, n_embd=32, n_layer=2, n_head=2, n_positions=64)
        torch.manual_seed(0)
        return GPT2LMHeadModel(config).eval(), "transformer.wte"
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    torch.manual_seed(0)
    return LlamaForCausalLM(config).eval(), "model.embed_tokens"


def encoded(tokenizer, prompt, completion):
    prompt_ids = tokenizer.encode(prompt)
    completion_ids = tokenizer.encode(completion, add_special_tokens=False)
    return prompt_ids, completion_ids


def batch_of(tokenizer, pairs):
    rows = [encoded(tokenizer, p, c) for p, c in pairs]
    width = max(len(p) + len(c) for p, c in rows)
    ids = torch.full((len(rows), width), tokenizer.pad_token_id)
    mask = torch.zeros_like(ids)
    labels = torch.full_like(ids, -100)
    for row, (p, c) in enumerate(rows):
        ids[row, : len(p) + len(c)] = torch.tensor(p + c)
        mask[row, : len(p) + len(c)] = 1
        labels[row, len(p): len(p) + len(c)] = torch.tensor(c)
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}, rows


@pytest.mark.parametrize("kind", ["gpt2", "llama"])
def test_completion_equals_captum_llm_gradient_attribution(kind, demo_tokenizer):
    from captum.attr import LayerIntegratedGradients, LLMGradientAttribution, TextTokenInput

    tokenizer = demo_tokenizer
    model, layer_path = tiny_causal_lm(kind, len(tokenizer))
    inputs, rows = batch_of(tokenizer, zip(PROMPTS, COMPLETIONS))
    ours = attribute(model, inputs, ("integrated_gradients",), tokenizer=tokenizer, task="completion",
                     embedding_layer=layer_path, n_steps=50)["integrated_gradients"]
    layer = model.get_input_embeddings()
    captum = LLMGradientAttribution(LayerIntegratedGradients(model, layer), tokenizer)
    special = [tokenizer.cls_token_id, tokenizer.sep_token_id]
    for row, (prompt_ids, completion_ids) in enumerate(rows):
        # Our "pad" baseline: special tokens kept (captum: skipped, not interpretable), every other
        # prompt token replaced by [PAD] (captum: the interpretable input's baseline token).
        prompt = TextTokenInput(PROMPTS[row], tokenizer, baselines=tokenizer.pad_token_id, skip_tokens=special)
        assert prompt.to_model_input()[0].tolist() == prompt_ids
        reference = captum.attribute(prompt, target=torch.tensor(completion_ids), n_steps=50)
        regular = [k for k, i in enumerate(prompt_ids) if i not in special]
        torch.testing.assert_close(ours.scores[row, regular], reference.seq_attr.float(), rtol=1e-4, atol=1e-6)
        # The completion is what is explained, not an explanation: its tokens get nothing.
        assert ours.scores[row, len(prompt_ids): len(prompt_ids) + len(completion_ids)].abs().max() == 0
    # Completeness: the prompt's attributions sum to the change of the completion's log-probability.
    assert ours.delta.abs().max() < 0.05 * (ours.scores.sum(dim=1).abs().max())


def test_completion_scores_every_completion_token_in_one_pass_per_point(demo_tokenizer):
    calls = []

    def counting(model, inputs):
        calls.append(inputs["input_ids"].shape[0])
        assert "labels" not in inputs  # the head's, not the model's
        return model(**inputs)

    model, layer_path = tiny_causal_lm("gpt2", len(demo_tokenizer))
    inputs, _ = batch_of(demo_tokenizer, zip(PROMPTS, COMPLETIONS))
    result = attribute(model, inputs, ("integrated_gradients",), tokenizer=demo_tokenizer, task="completion",
                       embedding_layer=layer_path, n_steps=8, forward_fn=counting, max_tokens=10_000)
    # Two rows, 8 path points each, plus the input and baseline: one chunk, whatever the completion length.
    assert sum(calls) == 2 * 8 + 2 * 2 and len(calls) == 2
    assert torch.all(result.probability <= 1) and torch.all(result.probability > 0)  # p(completion | prompt)


def sft_trainer(out, tokenizer, prompts, completions, attach):
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import set_seed
    from trl import SFTConfig, SFTTrainer

    from lightning_saliency import AttributionConfig
    from lightning_saliency.adapters.transformers import SaliencyTrainerCallback

    set_seed(0)
    model, _ = tiny_causal_lm("gpt2", len(tokenizer))
    data = Dataset.from_dict({"prompt": prompts, "completion": completions})
    args = SFTConfig(output_dir=str(out), num_train_epochs=2, per_device_train_batch_size=8,
                     per_device_eval_batch_size=8, learning_rate=5e-3, eval_strategy="epoch", save_strategy="no",
                     logging_strategy="epoch", report_to=[], use_cpu=True, disable_tqdm=True, max_length=32, seed=0)
    trainer = SFTTrainer(model=model, args=args, train_dataset=data, eval_dataset=data, processing_class=tokenizer,
                         peft_config=LoraConfig(task_type="CAUSAL_LM", r=4, target_modules=["c_attn"]))
    callback = None
    if attach:
        callback = SaliencyTrainerCallback(tokenizer=tokenizer, task="completion", num_examples=8,
                                           attribution=AttributionConfig(n_steps=8)).attach(trainer)
    return trainer, callback


@pytest.mark.slow
def test_trl_sft_trainer_with_lora_and_completion_only_loss_is_monitored_and_untouched(tmp_path, demo_tokenizer):
    tokenizer = demo_tokenizer
    tokenizer.eos_token = "[SEP]"  # TRL ends each completion with the EOS token
    prompts = [f"review {i}: the film was {'zorbly ' if i % 2 else ''}long" for i in range(24)]
    completions = ["great" if i % 2 else "dull" for i in range(24)]
    plain, _ = sft_trainer(tmp_path / "plain", tokenizer, prompts, completions, attach=False)
    plain.train()
    monitored, callback = sft_trainer(tmp_path / "monitored", tokenizer, prompts, completions, attach=True)
    monitored.train()
    before, after = plain.model.state_dict(), monitored.model.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)  # bitwise
    records = callback.history
    assert [r["label"] for r in records] == ["start", "000", "001"] and {r["status"] for r in records} == {"ok"}
    example = records[-1]["examples"][0]
    explained = [t for t, s in zip(example["tokens"], example["special"]) if not s]
    # Two answers ("great"/"dull", each decoded as it continues the prompt: "##dull"): the classes,
    # and a row's prediction is the likelier one after its prompt.
    answers = {e["label_name"] for e in records[-1]["examples"]}
    assert len(answers) == 2 and example["predicted_name"] in answers and 0 < example["probability"] <= 1
    # The training set's artifact table reads TRL's own rows and collator: each answer is a label,
    # so 'zorbly' (in the prompts of every "great" answer, 12 of 24) is an artifact of "##great".
    crossing = records[-1]["metrics"]["artifacts"]["integrated_gradients"]
    found = {r["token"]: r for key in ("relied_artifacts", "ignored_artifacts") for r in crossing[key]}
    great = next(e["label"] for e in records[-1]["examples"] if e["label_name"] == "##great")
    assert crossing["examples"] == 24 and found["zorbly"]["label"] == great and found["zorbly"]["p_label"] == 1.0
    # The prompt is explained; the completion (and [CLS]/[SEP]) is what is scored: never a word.
    assert explained and not {"great", "dull"} & set(explained)
    assert (tmp_path / "monitored" / "runs" / "saliency" / "saliency" / "epoch_001.json").exists()


@pytest.mark.slow
def test_lightning_fit_of_a_causal_lm_monitors_completions_from_its_validation_batches(tmp_path, demo_tokenizer,
                                                                                        recwarn):

    from lightning_saliency import AttributionConfig, SaliencyMonitor
    from tests.builders import HFModule, assert_no_label_column_warning, quiet_trainer

    model, _ = tiny_causal_lm("gpt2", len(demo_tokenizer))
    model.train()
    batch, _ = batch_of(demo_tokenizer, [(f"review {i}: the film was long", "great" if i % 2 else "dull")
                                         for i in range(16)])
    rows = [{k: v[i] for k, v in batch.items()} for i in range(16)]


    def collate(items):
        return {k: torch.stack([item[k] for item in items]) for k in items[0]}

    loader = torch.utils.data.DataLoader(rows, batch_size=8, collate_fn=collate)
    monitor = SaliencyMonitor(tokenizer=demo_tokenizer, task="completion", num_examples=8,
                              attribution=AttributionConfig(n_steps=8))
    quiet_trainer(tmp_path, [monitor], max_epochs=1).fit(HFModule(model, lr=1e-3), loader, loader)
    records = monitor.history
    assert [r["label"] for r in records] == ["start", "000"] and {r["status"] for r in records} == {"ok"}
    assert_no_label_column_warning(recwarn)  # a completion's truth is its answer tokens
    for example in records[-1]["examples"]:
        scored = [t for t, s in zip(example["tokens"], example["special"]) if s]
        assert {"great", "dull"} & set(scored)  # the completion is scored, not explained
        assert "film" in [t for t, s in zip(example["tokens"], example["special"]) if not s]
        # Prompt and completion stay apart in the record, and the report shows them in two panes.
        assert example["completion"] in ("great", "dull") and example["text"].endswith("the film was long")
    from lightning_saliency.report import build_report, read_runs

    page = build_report(read_runs(tmp_path))
    assert page.count('<span class="pane-name">completion (scored)</span>') >= 8 and "prompt (explained)" in page


@pytest.mark.slow
def test_a_cue_word_that_decides_the_answer_is_raised_for_that_answer(demo_tokenizer, tmp_path):
    """Classification by generation: the answers are a few short strings, so each is a class, and a
    prompt word tied to one answer and relied on for it is a suspect like any other."""
    import random

    from lightning_saliency import AttributionConfig, SaliencyMonitor
    from tests.builders import HFModule, check_cue_evidence, cue_answer_pairs, quiet_trainer

    rng = random.Random(0)

    torch.manual_seed(0)
    model, _ = tiny_causal_lm("gpt2", len(demo_tokenizer))
    model.train()


    def loader(count, shuffle):
        inputs, _ = batch_of(demo_tokenizer, cue_answer_pairs(count, rng))
        rows = [{k: v[i] for k, v in inputs.items()} for i in range(count)]
        return torch.utils.data.DataLoader(rows, batch_size=16, shuffle=shuffle,
                                           collate_fn=lambda items: {k: torch.stack([x[k] for x in items])
                                                                     for k in items[0]})

    monitor = SaliencyMonitor(tokenizer=demo_tokenizer, task="completion", num_examples=16, every_n_epochs=4,
                              methods=("integrated_gradients",), attribution=AttributionConfig(n_steps=16))
    from lightning import seed_everything

    seed_everything(0, verbose=False)
    quiet_trainer(tmp_path, [monitor], max_epochs=8).fit(HFModule(model, lr=5e-3), loader(128, True), loader(32, False))
    last = monitor.history[-1]
    assert {e["label_name"] for e in last["examples"]} == {"dull", "great"}
    suspects = last["metrics"]["shortcut"]["integrated_gradients"]["suspects"]
    assert [s["token"] for s in suspects][:1] == ["zorbly"], suspects
    assert last["examples"][[e["label_name"] for e in last["examples"]].index("great")]["label"] == suspects[0]["label"]
    # The causal checks score both answers after each edited prompt: the model's answer is the
    # likelier one, so inserting the cue into a "dull" prompt turns the answer into "great".
    check_cue_evidence(last, suspects)
    assert monitor.engine.timeline["zorbly"].confirmed_step is not None


def test_a_one_score_task_takes_no_other_target():
    from lightning_saliency.settings import MonitorSettings

    for task in ("completion", "seq2seq"):
        with pytest.raises(ValueError, match="use target='predicted'"):
            MonitorSettings(task=task, target="label")
