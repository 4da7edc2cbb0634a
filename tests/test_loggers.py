"""W&B (offline) and MLflow (local file store) runs carry the heatmaps, tables, records and
suspects, read back from what the services wrote, not from mocks."""
import json

import lightning as L
import pytest

from tests.builders import quiet_trainer
from tests.builders import grouped
from lightning_saliency import SaliencyMonitor
from lightning_saliency.demo import Shortcut, build_demo

pytestmark = pytest.mark.slow


def fit(tmp_path, logger):
    L.seed_everything(0, verbose=False)
    module, data, tokenizer = build_demo(Shortcut("single"), n_train=128, n_val=32, seed=0, batch_size=16)
    monitor = SaliencyMonitor(**grouped(tokenizer=tokenizer, num_examples=8, n_steps=8, log_example_images=False, dirpath=str(tmp_path / "records")))
    quiet_trainer(max_epochs=2, logger=logger, log_every_n_steps=1, callbacks=[monitor]).fit(module, datamodule=data)
    return monitor


def test_wandb_offline_run_carries_images_tables_and_records(tmp_path, monkeypatch):
    pytest.importorskip("wandb", reason="pip install -e '.[dev]' (or lightning-saliency[wandb])")
    import wandb
    from lightning.pytorch.loggers import WandbLogger

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    logger = WandbLogger(save_dir=str(tmp_path), offline=True, project="saliency-test")
    monitor = fit(tmp_path, logger)
    summary = dict(logger.experiment.summary)  # offline runs keep it in the .wandb log, not a JSON file
    wandb.finish()
    (run_dir,) = (tmp_path / "wandb").glob("offline-run-*")
    files = run_dir / "files"
    images = sorted(p.name for p in files.rglob("media/images/saliency/integrated_gradients/probe_set*.png"))
    assert len(images) == 3  # start, 000, 001
    (table,) = [p for p in files.rglob("media/table/saliency/top_tokens*.table.json")][-1:]
    content = json.loads(table.read_text())
    assert content["columns"][:4] == ["#", "true", "predicted (p)", "method"] and len(content["data"]) == 16
    saved = sorted(p.name for p in (files / "saliency").glob("epoch_*.json"))
    assert saved == ["epoch_000.json", "epoch_001.json", "epoch_start.json"]
    expected = ", ".join(s["token"] for s in monitor.history[-1]["metrics"]["shortcut"]["gradient"]["suspects"])
    assert summary["saliency.suspects.gradient"] == (expected or "none")
    assert "saliency/integrated_gradients/delta_mean" in summary  # scalars, through log_metrics


def test_mlflow_file_store_run_carries_images_records_and_suspect_tags(tmp_path, monkeypatch):
    pytest.importorskip("mlflow", reason="pip install -e '.[dev]' (or lightning-saliency[mlflow])")
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 keeps the file store behind this switch
    from lightning.pytorch.loggers import MLFlowLogger
    from mlflow.tracking import MlflowClient

    uri = f"file:{tmp_path / 'mlruns'}"
    logger = MLFlowLogger(experiment_name="saliency", tracking_uri=uri)
    monitor = fit(tmp_path, logger)
    client = MlflowClient(tracking_uri=uri)
    run = client.get_run(logger.run_id)

    def listing(path):
        return sorted(a.path for a in client.list_artifacts(logger.run_id, path))

    records = [p for p in listing("saliency") if p.endswith(".json")]
    assert records == ["saliency/epoch_000.json", "saliency/epoch_001.json", "saliency/epoch_start.json"]
    assert len(listing("saliency/images/saliency/integrated_gradients/probe_set")) == 3
    assert listing("saliency/text/saliency/top_tokens")  # the top-word table, as markdown
    local = client.download_artifacts(logger.run_id, "saliency/epoch_001.json", str(tmp_path / "download"))
    assert json.loads(open(local).read())["label"] == "001"
    suspects = monitor.history[-1]["metrics"]["shortcut"]["integrated_gradients"]["suspects"]
    assert run.data.tags["saliency.suspects.integrated_gradients"] == (", ".join(s["token"] for s in suspects) or "none")
    assert "saliency/integrated_gradients/delta_mean" in run.data.metrics


def test_wandb_and_mlflow_are_not_imported_for_other_loggers(tmp_path):
    import subprocess
    import sys

    script = (
        "import sys, lightning as L\n"
        "from lightning.pytorch.loggers import TensorBoardLogger\n"
        "from lightning_saliency import AttributionConfig, SaliencyMonitor\n"
        "from lightning_saliency.demo import Shortcut, build_demo\n"
        "module, data, tok = build_demo(Shortcut('single'), n_train=32, n_val=16, batch_size=16)\n"
        "L.Trainer(max_epochs=1, logger=TensorBoardLogger(sys.argv[1]), enable_progress_bar=False,\n"
        "          enable_checkpointing=False, enable_model_summary=False,\n"
        "          callbacks=[SaliencyMonitor(tokenizer=tok, num_examples=8, attribution=AttributionConfig(n_steps=4))]).fit(module, datamodule=data)\n"
        "print(sorted(m for m in ('wandb', 'mlflow') if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_without_tensorboard_each_fit_keeps_its_records_in_its_own_folder_and_the_alert_names_it(
        tmp_path, monkeypatch, capfd):
    """MLflow's save_dir is shared by every fit: records go to <default_root_dir>/saliency_logs/<run id>,
    never into the MLflow store, and the alert says where they are (there is no TensorBoard to look in)."""
    pytest.importorskip("mlflow", reason="pip install -e '.[dev]' (or lightning-saliency[mlflow])")
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    from lightning.pytorch.loggers import MLFlowLogger
    from mlflow.tracking import MlflowClient

    from lightning_saliency.demo import make_corpus, TextClassifier, TextDataModule, tiny_bert, train_tokenizer

    corpus = dict(shortcut=Shortcut("single"), shortcut_rate=1.0, sentiment_noise=0.5)
    train, val = make_corpus(400, seed=0, **corpus), make_corpus(100, seed=1, **corpus)
    tokenizer = train_tokenizer(train[0] + val[0])
    uri = f"file:{tmp_path / 'mlruns'}"
    folders = []
    for fit_number in range(2):
        L.seed_everything(0, verbose=False)
        module = TextClassifier(tiny_bert(len(tokenizer), seed=0), lr=5e-3)
        monitor = SaliencyMonitor(**grouped(tokenizer=tokenizer, num_examples=24, n_steps=8, log_example_images=False, faithfulness=False))
        trainer = quiet_trainer(max_epochs=3, default_root_dir=tmp_path, logger=MLFlowLogger(experiment_name="saliency", tracking_uri=uri), callbacks=[monitor])
        with pytest.warns(UserWarning, match="possible shortcut") as caught:
            trainer.fit(module, datamodule=TextDataModule(train, val, tokenizer))
        folder = tmp_path / "saliency_logs" / monitor.engine.run_id
        assert sorted(p.name for p in (folder / "saliency").glob("epoch_*.json")) == [
            "epoch_000.json", "epoch_001.json", "epoch_002.json", "epoch_start.json"]
        alert = next(str(w.message) for w in caught if "possible shortcut" in str(w.message))
        assert f"See the records in {folder / 'saliency'}" in alert and "TensorBoard" not in alert
        folders.append(folder)
    assert folders[0] != folders[1]
    assert not (tmp_path / "mlruns" / "saliency").exists() and not (tmp_path / "saliency").exists()
    capfd.readouterr()
    assert [e.name for e in MlflowClient(tracking_uri=uri).search_experiments()].count("saliency") == 1
    assert "Traceback" not in capfd.readouterr().err
