"""SaliencyTrainerCallback on a real ``transformers.Trainer`` (CPU, tiny BERT, planted shortcut)."""
import json

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from tests.builders import grouped
from lightning_saliency.demo import Shortcut, TextDataset, make_corpus, train_tokenizer
from lightning_saliency.adapters.transformers import SaliencyTrainerCallback
from tests.builders import hf_trainer

pytestmark = pytest.mark.slow


def data(n_train, n_val):
    # Sentiment words are noise (0.5), so the planted word is the only signal, as in test_shortcuts.
    corpus = dict(shortcut=Shortcut("single"), shortcut_rate=1.0, sentiment_noise=0.5)
    train, val = make_corpus(n_train, seed=0, **corpus), make_corpus(n_val, seed=1, **corpus)
    tokenizer = train_tokenizer(train[0] + val[0])
    return TextDataset(*train, tokenizer), TextDataset(*val, tokenizer), tokenizer


def test_trainer_callback_finds_the_planted_shortcut_and_logs_to_tensorboard(tmp_path):
    train, val, tokenizer = data(800, 200)
    trainer = hf_trainer(tmp_path, train, val, tokenizer, epochs=6)
    found = []
    callback = SaliencyTrainerCallback(**grouped(tokenizer=tokenizer, num_examples=24, n_steps=16, faithfulness=False, log_example_images=False, on_shortcut=lambda s, r: found.append(s), every_n_train_steps=10)).attach(trainer)
    trainer.train()

    epochs = [r for r in callback.history if not r["step_run"]]
    assert [r["label"] for r in epochs] == ["start", "000", "001", "002", "003", "004", "005"]
    steps = [r["global_step"] for r in callback.history if r["step_run"]]
    assert steps == list(range(10, trainer.state.global_step + 1, 10))[-len(steps):] and len(steps) >= 10
    last = callback.history[-1]
    for method in ("integrated_gradients", "gradient"):
        suspects = last["metrics"]["shortcut"][method]["suspects"]
        assert suspects and suspects[0]["token"] == "zorbly", (method, suspects)
        # The artifact table read through the Trainer's dataset and collator.
        assert last["metrics"]["artifacts"][method]["relied_artifacts"][0]["token"] == "zorbly"
    assert found and found[-1][0]["token"] == "zorbly"
    (check,) = last["metrics"]["causal"]
    assert check["token"] == "zorbly" and check["confirmed"]
    timeline = {t["token"]: t for t in last["metrics"]["timeline"]}["zorbly"]
    assert timeline["first_suspected_step"] <= timeline["confirmed_step"] < trainer.state.global_step
    # The same records the Lightning callback writes, beside the Trainer's own TensorBoard events.
    (logdir,) = {p.parent.parent for p in tmp_path.rglob("saliency/epoch_start.json")}
    assert len(list(logdir.glob("events.out.tfevents*"))) == 1  # one writer, shared with TensorBoardCallback
    record = json.loads((logdir / "saliency" / "epoch_005.json").read_text())
    assert record["global_step"] == trainer.state.global_step and len(record["examples"]) == 24
    events = EventAccumulator(str(logdir), size_guidance={"images": 0, "scalars": 0, "tensors": 0})
    events.Reload()
    assert len(events.Images("saliency/integrated_gradients/probe_set")) == 7
    assert "eval/loss" in events.Tags()["scalars"]  # the Trainer's own scalars, in the same file
    assert events.Scalars("saliency/gradient/shortcut/suspects")[-1].value >= 1

    from lightning_saliency.report import read_runs

    (run,) = read_runs(tmp_path)
    assert [r.label for r in run.records if not r.step_run][:2] == ["start", "000"] and not run.problems


def test_trainer_callback_stops_training_on_a_confirmed_shortcut(tmp_path):
    train, val, tokenizer = data(800, 200)
    trainer = hf_trainer(tmp_path, train, val, tokenizer, epochs=6, report_to="none")
    callback = SaliencyTrainerCallback(**grouped(tokenizer=tokenizer, num_examples=24, n_steps=8, faithfulness=False, every_n_train_steps=5, stop_on_shortcut=True)).attach(trainer)
    with pytest.warns(UserWarning, match="stopping training"):
        trainer.train()
    confirmed = callback.engine.timeline["zorbly"].confirmed_step
    assert trainer.state.global_step == confirmed < 150


def _weights(out, with_callback):
    train, val, tokenizer = data(192, 48)
    trainer = hf_trainer(out, train, val, tokenizer, epochs=2, report_to="none")
    if with_callback:
        SaliencyTrainerCallback(**grouped(tokenizer=tokenizer, num_examples=4, n_steps=8, methods=("integrated_gradients", "gradient", "occlusion"))).attach(trainer)
    trainer.train()
    return trainer.model.state_dict(), trainer.model.training


def test_training_is_bitwise_identical_with_and_without_the_trainer_callback(tmp_path):
    plain, plain_mode = _weights(tmp_path / "a", with_callback=False)
    watched, watched_mode = _weights(tmp_path / "b", with_callback=True)
    assert plain_mode == watched_mode
    assert plain.keys() == watched.keys()
    for key in plain:
        assert torch.equal(plain[key], watched[key]), key
    assert (tmp_path / "b" / "runs" / "saliency" / "saliency" / "epoch_001.json").exists()


def test_attach_checks_the_setup(tmp_path):
    train, val, tokenizer = data(64, 16)
    trainer = hf_trainer(tmp_path, train, None, tokenizer, epochs=1, report_to="none", eval_strategy="no")
    with pytest.raises(ValueError, match="eval_dataset"):
        SaliencyTrainerCallback(tokenizer=tokenizer).attach(trainer)
    with pytest.raises(ValueError, match="needs tokenizer="):
        SaliencyTrainerCallback().attach(trainer)
    unattached = hf_trainer(tmp_path, train, val, tokenizer, epochs=1, report_to="none")
    unattached.add_callback(SaliencyTrainerCallback(tokenizer=tokenizer))
    with pytest.raises(ValueError, match=r"attach\(trainer\)"):
        unattached.train()


