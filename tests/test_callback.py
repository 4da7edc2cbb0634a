import json
import warnings

import lightning as L
import pytest
import torch
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from tests.builders import quiet_trainer
from tests.builders import grouped
from lightning_saliency import SaliencyMonitor
from lightning_saliency.monitor.metrics import ShortcutRules
from lightning_saliency.demo import Shortcut, build_demo

pytestmark = pytest.mark.slow


def demo(seed=0, n_train=128, n_val=32):
    L.seed_everything(seed, verbose=False)
    return build_demo(Shortcut("single"), n_train=n_train, n_val=n_val, seed=seed, batch_size=16)


def trainer(tmp_path, callbacks, logger=True, **kwargs):
    if logger is True:
        logger = TensorBoardLogger(tmp_path, name="run")
    return quiet_trainer(tmp_path, callbacks, logger=logger, **{"max_epochs": 2, "log_every_n_steps": 1, **kwargs})


def monitor(tokenizer, **kwargs):
    options = dict(methods=("integrated_gradients", "gradient"), num_examples=4, n_steps=8)
    options.update(kwargs)
    return SaliencyMonitor(**grouped(tokenizer=tokenizer, **options))


def test_fit_logs_images_scalars_text_and_json(tmp_path):
    module, data, tok = demo()
    callback = monitor(tok)
    t = trainer(tmp_path, [callback])
    t.fit(module, datamodule=data)
    events = EventAccumulator(t.logger.log_dir, size_guidance={"images": 0, "scalars": 0, "tensors": 0})
    events.Reload()
    tags = events.Tags()
    for method in ("integrated_gradients", "gradient"):
        assert len(events.Images(f"saliency/{method}/probe_set")) == 3  # start + 2 epochs
        assert len(events.Images(f"saliency/{method}/example_03")) == 3
    delta = events.Scalars("saliency/integrated_gradients/delta_mean")
    assert [s.step for s in delta] == [0, 8, 16]
    assert "saliency/integrated_gradients/drift_start/spearman_mean" in tags["scalars"]
    assert "saliency/gradient/drift_previous/topk_overlap_p10" in tags["scalars"]
    assert "saliency/cost/epoch_share" in tags["scalars"]
    assert "saliency/gradient/faithfulness/comprehensiveness_aopc" in tags["scalars"]
    assert "saliency/top_tokens/text_summary" in tags["tensors"]
    assert "saliency/most_drifted/text_summary" in tags["tensors"]
    text = events.Tensors("saliency/top_tokens/text_summary")[0].tensor_proto.string_val[0].decode()
    assert text.count("\n|") >= 8 and "integrated_gradients" in text

    files = sorted(p.name for p in (tmp_path / "run" / "version_0" / "saliency").iterdir())
    assert files == ["epoch_000.json", "epoch_001.json", "epoch_start.json"]
    record = json.loads((tmp_path / "run" / "version_0" / "saliency" / "epoch_001.json").read_text())
    assert record["epoch"] == 1 and record["global_step"] == 16 and record["stage"] == "fit"
    example = record["examples"][0]
    assert len(example["tokens"]) == len(example["attributions"]["integrated_gradients"]) == len(example["special"])
    assert set(example) >= {"text", "tokens", "word_ids", "label", "predicted", "probability", "target", "delta"}
    assert record["metrics"]["drift"]["gradient"]["start"]["against"] == "start"
    assert [r["label"] for r in callback.history] == ["start", "000", "001"]
    assert sorted({e["label"] for e in record["examples"]}) == [0, 1]  # stratified probe set


def _train(tmp_path, with_callback, seed=3, **options):
    module, data, tok = demo(seed)
    watching = monitor(tok, methods=("integrated_gradients", "gradient", "smoothgrad", "occlusion"), **options)
    callbacks = [watching] if with_callback else []
    trainer(tmp_path, callbacks, logger=False, accumulate_grad_batches=3).fit(module, datamodule=data)
    return module.state_dict(), watching


# Rules so loose that some token is a suspect in most runs: every step run then has causal checks.
LOOSE_RULES = ShortcutRules(min_examples=2, min_fraction=0.0, top1_rate=0.3, min_share=0.0, min_rise=-1.0,
                            min_lift=1.0, min_z=0.1)


@pytest.mark.parametrize("options", [{}, dict(every_n_train_steps=1, shortcut=LOOSE_RULES)],
                         ids=["epoch runs", "step runs and causal checks"])
def test_training_is_bitwise_identical_with_and_without_the_callback(tmp_path, options):
    plain, _ = _train(tmp_path / "a", with_callback=False)
    watched, watching = _train(tmp_path / "b", with_callback=True, **options)
    assert plain.keys() == watched.keys()
    for key in plain:
        assert torch.equal(plain[key], watched[key]), key
    if options:  # the side effects of every kind of run were exercised
        step_runs = [r for r in watching.history if r["step_run"]]
        assert len(step_runs) >= 2 and all(r["methods"] == ["gradient"] for r in step_runs)
        assert any(r["metrics"]["causal"] for r in step_runs)


def test_resume_keeps_probe_set_and_reference(tmp_path):
    from lightning.pytorch.callbacks import ModelCheckpoint

    module, data, tok = demo()
    first = monitor(tok, budget=0.5)
    checkpoint = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True)
    trainer(tmp_path, [first, checkpoint], max_epochs=1, enable_checkpointing=True).fit(module, datamodule=data)
    module2, data2, _ = demo()
    second = monitor(tok, seed=0, budget=0.5)
    trainer(tmp_path, [second], max_epochs=2).fit(module2, datamodule=data2, ckpt_path=tmp_path / "ckpt" / "last.ckpt")
    assert second.state_dict()["reference"]["examples"][0]["attributions"] == \
        first.state_dict()["reference"]["examples"][0]["attributions"]
    assert second.state_dict()["probe_indices"] == first.state_dict()["probe_indices"]
    assert [r["label"] for r in second.history] == ["000", "001"]  # no second reference pass
    assert "start" in second.history[-1]["metrics"]["drift"]["integrated_gradients"]
    # The budget's measured costs are restored: the first run after resuming is planned, not full.
    assert second.history[-1]["settings"]["budget"]["target_seconds"] is not None


def test_validate_runs_under_inference_mode(tmp_path):
    module, data, tok = demo()
    callback = monitor(tok, methods=("integrated_gradients", "gradient", "occlusion"))
    trainer(tmp_path, [callback]).validate(module, datamodule=data)
    assert [r["label"] for r in callback.history] == ["validate_000"]
    assert (tmp_path / "run" / "version_0" / "saliency" / "epoch_validate_000.json").exists()


def test_a_failing_run_is_recorded_warned_every_run_and_training_continues(tmp_path):
    module, data, tok = demo()
    calls = []

    def broken(pl_module, inputs):
        calls.append(1)
        raise RuntimeError("exploded on purpose")

    callback = monitor(tok, forward_fn=broken)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer(tmp_path, [callback]).fit(module, datamodule=data)
    messages = [str(w.message) for w in caught if "exploded on purpose" in str(w.message)]
    assert len(messages) == 3 and all("training continues" in m for m in messages)  # one per run
    assert sum("Traceback" in m for m in messages) == 1  # the traceback once per cause
    assert len(calls) >= 3
    assert [(r["label"], r["status"]) for r in callback.history] == [("start", "failed"), ("000", "failed"),
                                                                      ("001", "failed")]
    saved = json.loads((tmp_path / "run" / "version_0" / "saliency" / "epoch_001.json").read_text())
    assert saved["status"] == "failed" and "exploded on purpose" in saved["error"] and saved["examples"] == []
    events = EventAccumulator(str(tmp_path / "run" / "version_0"), size_guidance={"scalars": 0})
    events.Reload()
    assert [s.value for s in events.Scalars("saliency/status")] == [0.0, 0.0, 0.0]
    with pytest.raises(RuntimeError, match="exploded"):
        trainer(tmp_path, [monitor(tok, forward_fn=broken, on_error="raise")], logger=False).fit(module, datamodule=data)


def test_setup_errors_name_the_fix(tmp_path):
    module, data, tok = demo()
    with pytest.raises(ValueError, match="needs tokenizer="):
        trainer(tmp_path, [SaliencyMonitor()], logger=False).fit(module, datamodule=data)
    from lightning_saliency.demo import train_tokenizer

    big = train_tokenizer(["alpha beta gamma delta " * 50 + " ".join(f"w{i}" for i in range(600))], vocab_size=800)
    with pytest.raises(ValueError, match="do not belong together"):
        trainer(tmp_path, [SaliencyMonitor(tokenizer=big)], logger=False).fit(module, datamodule=data)
    with pytest.raises(ValueError, match="no validation data"):
        trainer(tmp_path, [monitor(tok)], logger=False).fit(module, train_dataloaders=data.train_dataloader())
    with pytest.raises(ValueError, match="Unknown method"):
        SaliencyMonitor(tokenizer=tok, methods=("lime",))


def test_other_loggers_get_scalars_and_explicit_examples(tmp_path):
    module, data, tok = demo()
    callback = monitor(tok, examples=["the zorbly movie was great", "a dull film"], example_labels=[1, 0], target="label")
    csv = CSVLogger(tmp_path, name="csv")
    with pytest.warns(UserWarning, match="no TensorBoardLogger"):
        trainer(tmp_path, [callback], logger=csv, max_epochs=1).fit(module, datamodule=data)
    metrics = (tmp_path / "csv" / "version_0" / "metrics.csv").read_text()
    assert "saliency/integrated_gradients/delta_mean" in metrics.splitlines()[0]
    record = callback.history[-1]
    assert [e["text"] for e in record["examples"]] == ["the zorbly movie was great", "a dull film"]
    assert [e["target"] for e in record["examples"]] == [1, 0]
    assert (tmp_path / "csv" / "version_0" / "saliency" / "epoch_000.json").exists()


def test_lightning_cli_configures_groups_and_a_registered_method_and_task(tmp_path):
    from lightning.pytorch.cli import LightningCLI

    import tests.extensions  # noqa: F401  (registers gradient_max and two_class_margin)

    module, data, tok = demo()
    tok.save_pretrained(tmp_path / "tok")
    config = tmp_path / "config.yaml"
    config.write_text(
        "trainer:\n"
        "  callbacks:\n"
        "    - class_path: lightning_saliency.SaliencyMonitor\n"
        "      init_args:\n"
        f"        tokenizer: {tmp_path / 'tok'}\n"
        "        methods: [integrated_gradients, occlusion, gradient_max]\n"
        "        task: two_class_margin\n"
        "        num_examples: 3\n"
        "        attribution: {n_steps: 6, baseline: mask}\n"
        "        shortcut: {ignore: [great], min_z: 2.5}\n"
        "        schedule: {every_n_train_steps: 4, step_methods: [gradient_max]}\n"
        "        output: {top_k: 3}\n"
    )
    from lightning_saliency.demo import TextClassifier, TextDataModule

    def make_model() -> TextClassifier:
        return module

    def make_data() -> TextDataModule:
        return data

    cli = LightningCLI(
        make_model, make_data, run=False, save_config_callback=None,
        args=["--config", str(config), "--trainer.max_epochs=1", f"--trainer.default_root_dir={tmp_path}"],
    )
    callback = next(c for c in cli.trainer.callbacks if isinstance(c, SaliencyMonitor))
    assert callback.methods == ("integrated_gradients", "occlusion", "gradient_max")
    assert callback.config.baseline == "mask" and callback.settings.shortcut.ignore == ("great",)
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    record = callback.history[-1]
    assert record["settings"]["attribution"]["n_steps"] == 6 and record["settings"]["task"] == "two_class_margin"
    assert set(record["methods"]) == {"integrated_gradients", "occlusion", "gradient_max"}
    # The registered task's head is what is explained: the predicted class's margin is never negative
    # (a class logit can be), and the other class's is its negative.
    assert all(e["target_score"] >= 0 for e in record["examples"])
    steps = [r["label"] for r in callback.history if r["label"].startswith("step_")]
    assert steps and all(r["methods"] == ["gradient_max"] for r in callback.history if r["label"] in steps)


def test_a_resumed_fit_in_a_new_log_version_is_one_run_in_the_report(tmp_path):
    from lightning.pytorch.callbacks import ModelCheckpoint

    from lightning_saliency.report import read_runs

    module, data, tok = demo()
    first = monitor(tok)
    checkpoint = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True)
    trainer(tmp_path, [first, checkpoint], max_epochs=1, enable_checkpointing=True).fit(module, datamodule=data)
    module2, data2, _ = demo()
    second = monitor(tok)
    trainer(tmp_path, [second], max_epochs=2).fit(module2, datamodule=data2, ckpt_path=tmp_path / "ckpt" / "last.ckpt")
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["version_0", "version_1"]
    (run,) = read_runs(tmp_path / "run")
    assert [r.label for r in run.records] == ["start", "000", "001"]
    assert run.name == "version_0 + version_1"
    assert second.state_dict()["run_id"] == first.state_dict()["run_id"]
    other = monitor(tok)  # a new training under the same root is a run of its own
    trainer(tmp_path, [other], max_epochs=1).fit(*demo()[:2])
    assert len(read_runs(tmp_path / "run")) == 2


def test_fits_without_a_logger_each_keep_their_own_records(tmp_path):
    """Without a logger, two fits under one root used to write the same saliency/epoch_*.json, and
    the report showed two run ids as one run."""
    from lightning_saliency.report import read_runs

    monitors = []
    for seed in (0, 1):
        module, data, tok = demo(seed)
        monitors.append(monitor(tok))
        trainer(tmp_path, [monitors[-1]], logger=False, max_epochs=1).fit(module, datamodule=data)
    folders = sorted(p.parent.parent.name for p in (tmp_path / "saliency_logs").rglob("saliency/epoch_000.json"))
    assert folders == sorted(m.state_dict()["run_id"] for m in monitors)
    runs = read_runs(tmp_path / "saliency_logs")
    assert len(runs) == 2 and all([r.label for r in run.records] == ["start", "000"] for run in runs)


def test_probe_texts_with_class_names_as_labels(tmp_path):
    from lightning_saliency import OutputSettings, ProbeSettings

    module, data, tok = demo()
    texts = ["the plot was great", "a dull zorbly film", "it was long", "the cast was superb"]
    labelled = SaliencyMonitor(tokenizer=tok, num_examples=4, probe=ProbeSettings(
        texts=texts, labels=["positive", "negative", "negative", "positive"]),
        output=OutputSettings(label_names=["negative", "positive"]))
    trainer(tmp_path, [labelled], logger=False, max_epochs=1).fit(module, datamodule=data)
    record = labelled.history[-1]
    assert record["status"] == "ok" and [e["label"] for e in record["examples"]] == [1, 0, 0, 1]
    assert [e["label_name"] for e in record["examples"]] == ["positive", "negative", "negative", "positive"]
