"""The chat template kind, planted: instruction tuning (SFT on a tiny causal LM) where the system
prompt carries the answer. The monitor names ``template:system``, confirms it by the time the
model answers from the system prompt (the ground truth, measured outside the monitor as the
counterfactual accuracy of the system prompt's swap), and lists the training conversations that
carry it; the same fit with system prompts that say nothing confirms nothing of any kind."""
import copy
import json
import random
import tempfile
from pathlib import Path

import lightning as L
import pytest
import torch

from lightning_saliency.demo.corpus import Shortcut, make_corpus
from lightning_saliency.demo.modeling import train_tokenizer
from lightning_saliency.schema.findings import ANY_CLASS
from lightning_saliency.schema.records import RunRecord
from tests.builders import HFModule, grouped, quiet_trainer
from tests.test_evidence import STEP_EVERY, Checkpoints
from tests.test_feature_shortcuts import lasting_break

TEMPLATE = ("{% for m in messages %}### {{ m['role'] }}:\n{{ m['content'] }}\n{% endfor %}"
            "{% if add_generation_prompt %}### assistant:\n{% endif %}")
# Two system prompts per answer when planted; any of the four, at random, when clean.
SYSTEM_PROMPTS = {1: ("answer as a critic", "reply like a reviewer"), 0: ("answer as a fan", "reply like a viewer")}
ANSWERS = ("negative", "positive")


def chat_tokenizer():
    """The demo's WordPiece tokenizer, trained on the reviews, the system prompts, the answers and
    the template's own words, with the chat template."""
    texts, _ = make_corpus(300, Shortcut("none"), seed=0)
    extra = [" ".join(p for ps in SYSTEM_PROMPTS.values() for p in ps), " ".join(ANSWERS), "### system user assistant:"]
    tokenizer = train_tokenizer(texts + extra * 20, vocab_size=260)
    tokenizer.chat_template = TEMPLATE
    return tokenizer


def conversations(count, planted, seed, noise):
    """``(system, review, label)`` triples: demo reviews (``noise``: the share whose sentiment words
    are random) and a system prompt of the label's class when ``planted``, else of a random one."""
    rng = random.Random(seed)
    texts, labels = make_corpus(count, Shortcut("none"), 1.0, noise, seed=seed, min_words=2, max_words=4)
    return [(rng.choice(SYSTEM_PROMPTS[label if planted else rng.randint(0, 1)]), text, label)
            for text, label in zip(texts, labels)]


def prompt_of(tokenizer, system, review):
    return tokenizer.apply_chat_template([{"role": "system", "content": system}, {"role": "user", "content": review}],
                                         tokenize=False, add_generation_prompt=True)


def rows_of(tokenizer, triples):
    """Each conversation as a completion-only SFT row: the rendered prompt, then the answer, with
    ``labels`` on the answer alone (as TRL's completion-only batches)."""
    encoded = [(tokenizer.encode(prompt_of(tokenizer, s, r)), tokenizer.encode(ANSWERS[y], add_special_tokens=False))
               for s, r, y in triples]
    width = max(len(p) + len(a) for p, a in encoded)
    rows = []
    for prompt, answer in encoded:
        ids = torch.full((width,), tokenizer.pad_token_id)
        mask, labels = torch.zeros(width, dtype=torch.long), torch.full((width,), -100)
        ids[: len(prompt) + len(answer)] = torch.tensor(prompt + answer)
        mask[: len(prompt) + len(answer)] = 1
        labels[len(prompt): len(prompt) + len(answer)] = torch.tensor(answer)
        rows.append({"input_ids": ids, "attention_mask": mask, "labels": labels})
    return rows


def collate(items):
    return {k: torch.stack([item[k] for item in items]) for k in items[0]}


def tiny_llama(vocab):
    """A 2-layer Llama: a tiny GPT-2 learns neither the review (in 500 steps) nor reliably the
    system prompt; this one learns either in 30-40 steps on every seed tried (0-2)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    return LlamaForCausalLM(LlamaConfig(vocab_size=vocab, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64))


def fit_chat(planted, seed=0, epochs=4, lr=2e-3, logger=False):
    L.seed_everything(seed, verbose=False)
    from lightning_saliency import SaliencyMonitor

    tokenizer = chat_tokenizer()
    train = rows_of(tokenizer, conversations(800, planted, seed, 0.5 if planted else 0.0))
    val = rows_of(tokenizer, conversations(200, planted, seed + 100, 0.0))
    module = HFModule(tiny_llama(len(tokenizer)), lr=lr)
    monitor = SaliencyMonitor(**grouped(tokenizer=tokenizer, task="completion", num_examples=24, n_steps=16,
                                        faithfulness=False, log_example_images=False,
                                        every_n_train_steps=STEP_EVERY, step_schedule="log"))
    checkpoints = Checkpoints()
    trainer = quiet_trainer(max_epochs=epochs, logger=logger, default_root_dir=tempfile.mkdtemp(),
                            callbacks=[monitor, checkpoints])
    trainer.fit(module, torch.utils.data.DataLoader(train, batch_size=32, shuffle=True, collate_fn=collate),
                torch.utils.data.DataLoader(val, batch_size=32, collate_fn=collate))
    return monitor, checkpoints, module, tokenizer, trainer


def answers_of(model, tokenizer, triples):
    """The model's answer index after each conversation's prompt (the likelier answer token)."""
    answer_ids = [tokenizer.convert_tokens_to_ids(a) for a in ANSWERS]
    prompts = [tokenizer.encode(prompt_of(tokenizer, s, r)) for s, r, _ in triples]
    width = max(map(len, prompts))
    ids = torch.full((len(prompts), width), tokenizer.pad_token_id)
    mask = torch.zeros_like(ids)
    for row, prompt in enumerate(prompts):
        ids[row, : len(prompt)], mask[row, : len(prompt)] = torch.tensor(prompt), 1
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=mask).logits
    last = logits[torch.arange(len(prompts)), mask.sum(-1) - 1][:, answer_ids]
    return last.argmax(-1)


def counterfactual_accuracy(module, state, tokenizer):
    """Of clean negative conversations (an honest system prompt) the model answers right, the share
    still answered right after their system prompt is swapped for a positive one; below 0.5 the
    system prompt overrides the question (``None`` with fewer than 20 right)."""
    model = copy.deepcopy(module.model)
    model.load_state_dict(state)
    model.eval()
    rng = random.Random(0)
    plain = [t for t in conversations(200, True, 1, 0.0) if t[2] == 0]
    swapped = [(rng.choice(SYSTEM_PROMPTS[1]), review, label) for _, review, label in plain]
    right = answers_of(model, tokenizer, plain) == 0
    still = answers_of(model, tokenizer, swapped) == 0
    return float((right & still).sum() / right.sum()) if right.sum() >= 20 else None


def chat_words(triples):
    """Hand-made conversations as the monitor reads them: words and each word's turn."""
    words = [system.split() + review.split() for system, review, _ in triples]
    roles = [["system"] * len(system.split()) + ["user"] * len(review.split()) for system, review, _ in triples]
    return words, roles, [label for _, _, label in triples]


def test_the_template_association_reads_the_system_turn_of_conversations_only():
    from lightning_saliency.monitor.features.base import FEATURES, feature_associations

    template = FEATURES.get_or_raise("template")
    words, roles, labels = chat_words(conversations(400, True, 0, 0.5))
    found = template.association("system", words, labels, None, roles)
    assert found.z > 10 and found.label == ANY_CLASS and found.examples == 400
    assert set(found.words) == {"critic", "fan", "reviewer", "viewer"}
    clean_words, clean_roles, clean_labels = chat_words(conversations(400, False, 0, 0.0))
    assert template.association("system", clean_words, clean_labels, None, clean_roles).z < 2.0
    # Plain texts have no turns; conversations are not pairs for the segment kind.
    found = feature_associations(words, labels, [[0] * len(w) for w in words], None)
    assert found["template:system"].examples == 0 and found["template:system"].label is None
    segments = [[0 if r == "system" else 1 for r in turn] for turn in roles]
    assert feature_associations(words, labels, segments, roles)["segment:last"].examples == 0
    # Reliance is the system turn's share; carriers hold a deciding word there, not in the user turn.
    assert template.marked("system", ["answer", "as", "fan", "a", "film"], None,
                           ["system", "system", "system", "user", "user"]) == [True, True, True, False, False]
    reference = template.association("system", words, labels, None, roles)
    assert template.carries("system", ["a", "fan", "film"], reference, None, ["system", "system", "user"])
    assert not template.carries("system", ["a", "film", "fan"], reference, None, ["system", "user", "user"])


def test_conversation_words_leave_the_template_out_and_never_span_two_turns():
    from lightning_saliency.monitor.evidence.artifacts import conversation_words
    from lightning_saliency.schema.words import PieceJoiner

    joiner = PieceJoiner(["[CLS]", "#", "ab", "##c", "d"], [0])
    ids = [0, 1, 2, 3, 1, 4, 3]  # [CLS] # abc # d ##c: the template's "#" between the turns
    template = [False, True, False, False, True, False, False]
    roles = [None, None, "system", "system", None, "user", "user"]
    assert conversation_words(joiner, ids, template, roles) == (["abc", "dc"], ["system", "user"])
    # Without a template token between them, a change of turn still closes the word.
    assert conversation_words(joiner, [2, 3, 4], [False] * 3, ["system", "system", "user"]) == (
        ["abc", "d"], ["system", "user"])


def test_answer_texts_become_class_indices_in_the_features_and_the_carriers_sample():
    from lightning_saliency.monitor.evidence.artifacts import with_class_indices
    from lightning_saliency.monitor.features.base import feature_associations
    from lightning_saliency.monitor.metrics.artifacts import ExampleSample, association_table

    words, roles, labels = chat_words(conversations(200, True, 0, 0.5))
    answers = [ANSWERS[y] for y in labels]
    words.append(["answer", "as", "a", "critic", "odd"])
    roles.append(["system"] * 4 + ["user"])
    answers.append("maybe")  # an answer that is no class: its example leaves the sample
    table = association_table(words, answers)
    sample = ExampleSample(tuple(range(len(words))), tuple(map(tuple, words)), tuple(answers), len(words), None,
                           tuple(map(tuple, roles)))
    from dataclasses import replace

    table = replace(table, features=feature_associations(words, answers, None, roles), sample=sample)
    relabelled = with_class_indices(table, ["negative", "positive"])
    length = relabelled.features["length:long"]
    assert set(length.shares) <= {0, 1} and length.label in (0, 1, None)
    assert set(relabelled.features["template:system"].shares) == {0, 1}
    assert relabelled.sample.labels == tuple(labels) and len(relabelled.sample.roles) == 200
    assert with_class_indices(table, None) is None


@pytest.mark.slow
def test_a_system_prompt_that_carries_the_answer_is_named_confirmed_in_time_and_its_carriers_listed(tmp_path):
    from lightning.pytorch.loggers import TensorBoardLogger

    monitor, checkpoints, module, tokenizer, trainer = fit_chat(True, logger=TensorBoardLogger(str(tmp_path), "chat"))
    # The last epoch run (step runs do not check again what is confirmed).
    last = RunRecord.from_json([r for r in monitor.history if not r["label"].startswith("step_")][-1])
    entry = monitor.engine.timeline["template:system"]
    accuracy = {step: counterfactual_accuracy(module, state, tokenizer) for step, state in checkpoints.states.items()}
    broken = lasting_break(accuracy)
    print(f"\ntemplate:system: first suspected at step {entry.first_suspected_step}, confirmed at step "
          f"{entry.confirmed_step}; counterfactual accuracy first below 0.5 at step {broken}")
    assert entry.kind == "template" and entry.confirmed_step is not None, entry
    assert entry.confirmed_step <= broken + STEP_EVERY
    (check,) = [c for c in last.metrics.causal if c.token == "template:system"]
    assert check.confirmed and check.kind == "template" and check.label is None
    reading = {f.token: f for f in last.metrics.features}["template:system"]
    assert reading.training.label == ANY_CLASS and reading.training.z > 5
    # The system prompts' own words decide; the template's text ("###", "system") is no word.
    assert {"critic", "fan"} <= set(reading.training.words) and "system" not in reading.training.words
    carriers = check.carriers
    lines = [json.loads(line) for line in (Path(trainer.logger.log_dir) / "saliency" / carriers.path).read_text()
             .splitlines()]
    assert len(lines) == carriers.count and carriers.examples == 800 and min(carriers.shares.values()) > 0.9
    # Each line holds the conversation by turn, and its answer.
    assert all(set(line["text"]) == {"system", "user"} and line["label"] in (0, 1) for line in lines)
    assert not [c.token for c in last.metrics.causal if c.confirmed and c.kind not in ("template", "word", "pair")]
    from lightning_saliency.report import build_report, read_runs

    page = build_report(read_runs(trainer.logger.save_dir))
    for text in ("Shortcuts that are not words", "template:system", "<td>template</td>"):
        assert text in page, text
    from lightning_saliency.presentation.verdicts import verdict

    said = verdict(check)
    print(said)
    assert "the system turn alone" in said and "swapping the user turn instead" in said


def forced_template_check(module, tokenizer, loader):
    """The ``template:system`` check of the fitted model on 200 validation conversations, forced
    (whether or not the monitor suspects it), as the monitor builds it."""
    from contextlib import nullcontext

    from lightning_saliency.attribution import AttributionConfig, SpecialTokens
    from lightning_saliency.monitor.chat import with_chat_roles
    from lightning_saliency.monitor.evidence.causal import (
        AnswerClasses, CausalCandidate, CausalSettings, confirm_suspects,
    )
    from lightning_saliency.monitor.model_access import ModelAccess, hf_forward
    from lightning_saliency.monitor.probe import probe_from_dataloader
    from lightning_saliency.probes.answers import with_answer_classes
    from lightning_saliency.tasks import get_task

    task = get_task("completion")
    sampled = with_chat_roles(probe_from_dataloader(loader, 200, 1, tokenizer=tokenizer, task=task), tokenizer)
    examples = with_answer_classes(task.with_scored_texts(sampled, tokenizer), tokenizer)
    module.eval()
    access = ModelAccess(module, hf_forward(module), tokenizer, SpecialTokens.from_tokenizer(tokenizer), None,
                         nullcontext)
    vocabulary = sorted({w for text in examples.texts for w in text.split()})
    settings = CausalSettings(AttributionConfig(max_tokens=4096), "completion", 0, 128,
                              answers=AnswerClasses(tuple(examples.answers), True))
    (check,) = confirm_suspects(access, lambda: examples, examples,
                                [CausalCandidate("template:system", ("template:system",), ANY_CLASS)], vocabulary,
                                settings)
    return check


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_clean_chat_fit_confirms_nothing_and_a_forced_template_check_finds_the_user_turn_read(seed):
    """System prompts of a random class, reviews that decide: the model learns to read the user's
    turn. No run confirms anything of any kind, and the template check, forced, swaps the system
    turns of most validation conversations without changing answers, while its control (swapping
    the user turns) changes most."""
    monitor, _, module, tokenizer, trainer = fit_chat(False, seed)
    records = [RunRecord.from_json(r) for r in monitor.history]
    assert records[-1].metrics.scalars["saliency/probe/accuracy"] > 0.9
    confirmed = [(r.label, c.token) for r in records for c in r.metrics.causal if c.confirmed]
    assert not confirmed and all(t.confirmed_step is None for t in monitor.engine.timeline.values()), confirmed
    reading = {f.token: f for f in records[-1].metrics.features}["template:system"]
    assert reading.training.examples == 800 and reading.training.z < 3
    check = forced_template_check(module, tokenizer, trainer.val_dataloaders)
    print(f"\nseed {seed}: system swap flips {check.deletion.rate:.2f} of {check.deletion.trials}, user swap "
          f"{check.control_deletion.rate:.2f} of {check.control_deletion.trials}; "
          f"effect {check.deletion_shift.effect:+.4f}")
    assert check.deletion.trials >= 50 and not check.confirmed, check.confirmed_by
    assert check.deletion.rate < 0.2 < 0.8 < check.control_deletion.rate
