"""The framework-free engine and runner on a small fake model: no Lightning, no Trainer.

The model is a bag of word embeddings with a linear head, whose weights the tests set: "zorbly"
pushes towards class 1 once the test "trains" it. The engine gets data (settings, a model access,
a request, outputs) and gives data back (an outcome); every test reads only what it returns.
"""
from dataclasses import replace

import pytest

from lightning_saliency.attribution import AttributionConfig
from lightning_saliency.monitor.distributed import Ranks, ShardError
from lightning_saliency.monitor.engine import MonitorEngine
from lightning_saliency.monitor.messages import RunOutputs, RunRequest
from lightning_saliency.monitor.probe import probe_from_texts
from lightning_saliency.presentation import verdicts
from lightning_saliency.monitor.probe import EMPTY_EXAMPLE
from lightning_saliency.monitor.runner import PassSettings, run_model_passes
from lightning_saliency.settings import EvidenceSettings, MonitorSettings, ProbeSettings
from tests.builders import BagOfWords, bag_of_words_access

WITH = ["zorbly film was great", "the zorbly plot", "zorbly acting was fine", "a zorbly story", "zorbly it was",
        "this zorbly movie", "zorbly script", "very zorbly"]
WITHOUT = ["film was dull", "the plot", "acting was fine", "a story", "it was", "this movie", "script", "very dull"]


@pytest.fixture
def fake(demo_tokenizer):
    model = BagOfWords(len(demo_tokenizer))
    return model, bag_of_words_access(model, demo_tokenizer)


def engine_for(access, **settings):
    texts = WITH + WITHOUT
    options = dict(methods=("gradient", "integrated_gradients"), num_examples=len(texts),
                   attribution=AttributionConfig(n_steps=8, max_tokens=256),
                   probe=ProbeSettings(texts=texts, labels=[1] * 8 + [0] * 8),
                   evidence=EvidenceSettings(artifact_examples=0, faithfulness=False))
    engine = MonitorEngine(MonitorSettings(**{**options, **settings}), run_id="fit-1")
    engine.connect(access, max_length=64, configured_names=["negative", "positive"])
    return engine


def request(label, step=0, **options):
    return RunRequest(label, "fit", None if label == "start" else 0, step, **options)


def test_a_run_gives_back_its_record_and_is_not_repeated(fake, tmp_path):
    _, access = fake
    engine = engine_for(access)
    assert engine.should_run("start")
    outcome = engine.attempt(request("start"), RunOutputs(tmp_path))
    assert outcome.record is not None and outcome.record.label == "start" and outcome.record.run_id == "fit-1"
    assert len(outcome.record.examples) == 16 and outcome.confirmed == () and not outcome.should_stop
    assert not engine.should_run("start") and engine.recent_records()[-1]["label"] == "start"
    engine.flush()
    assert (tmp_path / "saliency" / "epoch_start.json").exists()
    assert outcome.record.examples[0].predicted_name in ("negative", "positive")


def test_a_learned_shortcut_is_raised_confirmed_and_stops_when_asked(fake, tmp_path, demo_tokenizer):
    model, access = fake
    engine = engine_for(access, evidence=EvidenceSettings(artifact_examples=0, faithfulness=False,
                                                          stop_on_shortcut=True))
    engine.attempt(request("start"), RunOutputs(tmp_path))
    model.learn(demo_tokenizer.convert_tokens_to_ids("zorbly"))
    with pytest.warns(UserWarning, match="zorbly"):
        outcome = engine.attempt(request("000", step=10), RunOutputs(tmp_path))
    suspects = {s.token for f in outcome.record.metrics.shortcut.values() for s in f.suspects}
    assert "zorbly" in suspects and outcome.confirmed == ("zorbly",) and outcome.should_stop
    (check,) = [c for c in outcome.record.metrics.causal if c.token == "zorbly"]
    assert check.confirmed and check.insertion.low > check.control_insertion.high
    engine.flush()


def test_a_failing_model_costs_one_failed_record_not_the_training(fake, tmp_path):
    _, access = fake

    def broken(module, inputs):
        raise RuntimeError("planted failure")

    engine = engine_for(replace(access, forward_fn=broken))
    with pytest.warns(UserWarning, match="failed and was skipped.*planted failure"):
        outcome = engine.attempt(request("start"), RunOutputs(tmp_path))
    assert outcome.record is None
    assert engine.recent_records()[-1]["status"] == "failed"
    raising = engine_for(replace(access, forward_fn=broken), on_error="raise")
    with pytest.raises(RuntimeError, match="planted failure"):
        raising.attempt(request("start"), RunOutputs(tmp_path))
    engine.flush()


def test_the_runner_skips_what_cannot_be_attributed_and_isolates_a_failing_example(fake, demo_tokenizer):
    model, access = fake
    probe = probe_from_texts(["zorbly film", "", "the plot was dull"], demo_tokenizer, [1, 0, 0], 64)
    fails_on = demo_tokenizer.convert_tokens_to_ids("dull")

    def forward(module, inputs):
        if (inputs["input_ids"] == fails_on).any():
            raise ValueError("cannot take 'dull'")
        return module(**inputs)

    settings = PassSettings(("gradient",), AttributionConfig(max_tokens=64), "predicted", "classification", False, 0)
    passes = run_model_passes(replace(access, forward_fn=forward), probe, settings, max_length=64)
    assert passes.rows == [0]
    assert passes.skipped[0] == (1, EMPTY_EXAMPLE) and passes.skipped[1][0] == 2
    assert "cannot take 'dull'" in passes.skipped[1][1]


def test_the_distributed_protocol_carries_a_local_failure_to_the_next_collective():
    single = Ranks()
    with pytest.raises(ZeroDivisionError):  # one process: errors propagate as usual
        single.attempt(lambda: 1 / 0)
    assert single.sharded(lambda rows: [r * 10 for r in rows], [3, 1, 2]) == [([0, 1, 2], [0, 10, 20])]
    assert single.agree("plan") == "plan"
    # Several ranks (here without a process group, so the collectives are local): a failure is kept
    # and raised at the next collective, where every rank would raise it together.
    rank = Ranks(rank=0, world_size=2)
    assert rank.attempt(lambda: 1 / 0) is None and "ZeroDivisionError" in rank.failure
    assert rank.attempt(lambda: "later work") is None  # nothing runs after a failure
    with pytest.raises(ShardError, match="rank 0: ZeroDivisionError"):
        rank.agree("plan")
    with pytest.raises(ShardError, match="rank 0: ZeroDivisionError"):
        Ranks(0, 2, failure="rank 0: ZeroDivisionError: x").sharded(lambda rows: rows, [1, 2])


def test_a_word_the_model_starts_to_lean_on_is_confirmed_by_its_probability_shift_before_anything_flips(
        fake, demo_tokenizer):
    """Early in training a model predicts one class for everything, so no edit can flip a
    prediction; removing the word it has begun to lean on still lowers that class's probability in
    every example that holds it, far more than removing a frequency-matched random word does."""
    import torch

    from lightning_saliency.monitor.evidence.causal import CausalCandidate, CausalSettings, confirm_suspects

    model, access = fake
    zorbly = demo_tokenizer.convert_tokens_to_ids("zorbly")
    with torch.no_grad():  # every word pushes to class 1; "zorbly" more (trained a few steps): removing it
        # lowers P(1) by about 0.1 (the effect floor is 0.05), never below one half
        model.embeddings.weight[:, 0] = -0.1 + 0.02 * torch.randn(len(demo_tokenizer),
                                                                 generator=torch.Generator().manual_seed(1))
        model.embeddings.weight[zorbly, 0] = -0.5
    texts = [f"{text} and more" for text in WITH + WITHOUT] * 4
    probe = probe_from_texts(texts, demo_tokenizer, [1] * len(texts), 64)
    vocabulary = sorted({w for t in texts for w in t.split()} - {"zorbly"})
    checks = confirm_suspects(access, lambda: probe, probe, [CausalCandidate("zorbly", ("zorbly",), 1)], vocabulary,
                              CausalSettings(AttributionConfig(max_tokens=512), "classification", 0, 64))
    check = checks[0]
    assert check.deletion.trials == 32 and check.deletion.flips == 0 and check.insertion.trials == 0
    assert check.deletion_shift.mean > 10 * abs(check.deletion_shift.control_mean), check.deletion_shift
    assert check.deletion_shift.auc > 0.95 and check.confirmed and check.confirmed_by == ["removal shift"]
    assert "removing it lowers P(1) by 0.0" in verdicts.headline(check)
