"""Outputs that never break and errors that name the problem: a diverged model, malformed records
(fuzzed), the report and the TensorBoard tab without torch, security headers, construction checks."""
import copy
import json
import random
import subprocess
import sys
import time
import warnings

import lightning as L
import pytest
import torch
from werkzeug.test import Client

from tests.builders import quiet_trainer
from tests.builders import grouped
from lightning_saliency import AttributionConfig, SaliencyMonitor
from lightning_saliency.demo import Shortcut, build_demo
from lightning_saliency.report import build_report, read_runs


def demo(n_train=64, n_val=16):
    L.seed_everything(0, verbose=False)
    return build_demo(Shortcut("single"), n_train=n_train, n_val=n_val, seed=0, batch_size=16)


# ---------------------------------------------------------------------------------- construction
def test_bad_arguments_fail_at_construction_with_the_fix(tmp_path):
    _, _, tok = demo()
    for steps in (0, -3):
        with pytest.raises(ValueError, match="n_steps"):
            SaliencyMonitor(**grouped(tokenizer=tok, n_steps=steps))
    with pytest.raises(ValueError, match=r"probe.texts=\[\] gives no text"):
        SaliencyMonitor(**grouped(tokenizer=tok, examples=[]))
    with pytest.raises(ValueError, match="2 texts but probe.labels has 1 label"):
        SaliencyMonitor(**grouped(tokenizer=tok, examples=["a good film", "a dull plot"], example_labels=[1]))
    with pytest.raises(ValueError, match="No attribution method given"):
        SaliencyMonitor(tokenizer=tok, methods=())
    module, data, _ = demo()
    with pytest.raises(ValueError, match="is not a folder"):
        quiet_trainer(tmp_path, [SaliencyMonitor(tokenizer=str(tmp_path / "no_such_tokenizer"))]).fit(
            module, datamodule=data)


def test_attribution_config_is_kept_unless_an_argument_is_given(tmp_path):
    _, _, tok = demo()
    config = AttributionConfig(n_steps=100, tolerance=0.01, baseline="mask")
    kept = SaliencyMonitor(**grouped(tokenizer=tok, attribution_config=config)).config
    assert (kept.n_steps, kept.tolerance, kept.baseline) == (100, 0.01, "mask")
    overridden = SaliencyMonitor(**grouped(tokenizer=tok, attribution_config=config, n_steps=8, baseline="unk")).config
    assert (overridden.n_steps, overridden.tolerance, overridden.baseline) == (8, 0.01, "unk")
    default = SaliencyMonitor(tokenizer=tok).config
    assert (default.n_steps, default.tolerance, default.baseline) == (32, None, "pad")


# -------------------------------------------------------------------------------- diverged model
@pytest.mark.slow
def test_a_diverged_model_is_recorded_and_warned_as_such_and_the_report_still_renders(tmp_path):
    from lightning.pytorch.loggers import TensorBoardLogger

    module, data, tok = demo()
    with torch.no_grad():
        for parameter in module.model.classifier.parameters():
            parameter.fill_(float("nan"))
    callback = SaliencyMonitor(**grouped(tokenizer=tok, num_examples=4, n_steps=4, on_error="raise"))
    logger = TensorBoardLogger(tmp_path, name="run")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        quiet_trainer(tmp_path, [callback], logger=logger).validate(module, datamodule=data)
    (record,) = callback.history
    assert record["status"] == "diverged" and record["examples"] == []
    assert "NaN or infinite on all 4 probe examples" in record["error"]
    assert any("the model has diverged" in str(w.message) for w in caught)
    (run,) = read_runs(tmp_path)
    page = build_report(read_runs(tmp_path))
    assert "diverged" in page and not run.problems


@pytest.mark.slow
def test_one_non_finite_example_is_skipped_with_its_reason(tmp_path):
    """An example whose output overflows is skipped; the others are recorded (no null scores)."""
    module, data, tok = demo()
    model = module.model

    def forward(pl_module, inputs):
        logits = model(**inputs).logits
        bad = (inputs["input_ids"] == tok.convert_tokens_to_ids("zorbly")).any(dim=-1, keepdim=True)
        return logits.masked_fill(bad, float("inf"))

    callback = SaliencyMonitor(**grouped(tokenizer=tok, num_examples=8, n_steps=4, forward_fn=forward, faithfulness=False, confirm_examples=0))
    quiet_trainer(tmp_path, [callback]).validate(module, datamodule=data)
    (record,) = callback.history
    assert record["status"] == "ok" and record["skipped"]
    assert all("NaN or infinite" in s["reason"] for s in record["skipped"])
    assert len(record["examples"]) + len(record["skipped"]) == 8
    assert all(v is not None for e in record["examples"] for v in e["attributions"]["integrated_gradients"])


# ------------------------------------------------------------------------------- malformed records
MUTATIONS = [
    lambda e: e.update(attributions={m: s[:-1] for m, s in e["attributions"].items()}),  # length mismatch
    lambda e: e.update(attributions={m: None for m in e["attributions"]}),
    lambda e: e.update(attributions={m: [None] * len(s) for m, s in e["attributions"].items()}),
    lambda e: e.update(probability="high"),
    lambda e: e.update(tokens=None),
    lambda e: e.update(tokens=[1] * len(e["tokens"])),
    lambda e: e.update(special=[]),
    lambda e: e.pop("attributions"),
    lambda e: e.update(word_ids="x"),
    lambda e: e.update(delta={"integrated_gradients": "big"}),
    lambda e: e.update(index=None),
    lambda e: e.update(label="positive"),
    lambda e: e.update(text=None),
]
RECORD_MUTATIONS = [
    lambda r: r.update(examples=None),
    lambda r: r.update(examples=[1, 2]),
    lambda r: r.update(methods=None),
    lambda r: r.update(metrics={"scalars": "oops"}),
    lambda r: r.update(metrics={"shortcut": {"gradient": {"suspects": [{"token": None}]}}}),
    lambda r: r.update(metrics={"drift": {"gradient": {"start": {"summary": 3}}}}),
    lambda r: r.update(metrics={"causal": [{"token": "w", "deletion": {"rate": "x"}}]}),
    lambda r: r.update(label=None),
    lambda r: r.update(status=None),
    lambda r: r.update(global_step="ten"),
]


def test_fuzzed_records_never_break_the_report_and_are_listed(saliency_run, tmp_path):
    """Many mutated records next to good ones: the report always renders the good runs and lists
    every record it skipped (by the reader's checks, or because it could not be drawn)."""
    root, run_dir = saliency_run
    good = {p.name: json.loads(p.read_text()) for p in (run_dir / "saliency").glob("epoch_*.json")}
    rng = random.Random(0)
    for trial in range(60):
        folder = tmp_path / f"trial_{trial}"
        (folder / "saliency").mkdir(parents=True)
        broken_name = rng.choice(sorted(good))
        for name, data in good.items():
            data = copy.deepcopy(data)
            if name == broken_name:
                for _ in range(rng.randint(1, 3)):
                    examples = [e for e in data.get("examples") or [] if isinstance(e, dict)]
                    if rng.random() < 0.6 and examples:
                        rng.choice(MUTATIONS)(rng.choice(examples))
                    else:
                        rng.choice(RECORD_MUTATIONS)(data)
            (folder / "saliency" / name).write_text(json.dumps(data))
        (run,) = read_runs(folder)
        page = build_report([run])
        shown = {r.label for r in run.records}
        assert shown >= {good[n]["label"] for n in good if n != broken_name}, trial
        if len(shown) < len(good):  # the broken record was left out: it is named, with the reason
            assert any(broken_name in p or "cannot be shown" in p for p in run.problems), run.problems
            assert "skipped" in page
        assert page.rstrip().endswith("</html>")


# --------------------------------------------------------------------- the report without torch
def test_the_report_and_the_tensorboard_tab_import_no_torch(saliency_run, tmp_path):
    root, _ = saliency_run
    script = f"""
import sys, time
started = time.perf_counter()
import lightning_saliency.tensorboard_plugin
from lightning_saliency.report import write_report
path, runs = write_report({str(root)!r}, {str(tmp_path / 'r.html')!r})
assert runs and runs[0].records
print(sorted(m for m in ("torch", "lightning", "transformers", "pytorch_lightning") if m in sys.modules))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
    started = time.perf_counter()
    assert subprocess.run([sys.executable, "-m", "lightning_saliency", "report", "--help"],
                          capture_output=True, timeout=60).returncode == 0
    # Not a wall-clock bar (benchmarks measure time): a generous sanity bound that catches torch being imported.
    assert time.perf_counter() - started < 5


def test_tensorboard_tab_responses_carry_nosniff_and_a_content_security_policy(saliency_run):
    from tensorboard.plugins.base_plugin import TBContext

    from lightning_saliency.tensorboard_plugin import SaliencyPlugin

    root, _ = saliency_run
    apps = SaliencyPlugin(TBContext(logdir=str(root))).get_plugin_apps()
    (run,) = json.loads(Client(apps["/runs"]).get("/runs").get_data())
    for path, query in (("/index.js", {}), ("/runs", {}), ("/report", {"run": run})):
        response = Client(apps[path]).get(path, query_string=query)
        assert response.status_code == 200, path
        assert response.headers["X-Content-Type-Options"] == "nosniff", path
        assert "default-src" in response.headers["Content-Security-Policy"], path


# ----------------------------------------------------------------------------------------- logs
@pytest.mark.slow
def test_no_row_progress_bar_when_output_is_not_a_terminal(tmp_path, capsys):
    module, data, tok = demo()
    callback = SaliencyMonitor(**grouped(tokenizer=tok, num_examples=4, n_steps=4, confirm_examples=0))
    quiet_trainer(tmp_path, [callback], enable_progress_bar=True, max_epochs=1).fit(module, datamodule=data)
    assert [r["status"] for r in callback.history] == ["ok", "ok"]
    assert "Saliency [" not in capsys.readouterr().out


@pytest.mark.slow
def test_a_foreign_tokenizer_smaller_than_the_model_is_refused_at_setup(tmp_path):
    """Smaller than the embedding table, so the size check passes, but it cannot decode the data."""
    from lightning_saliency.demo import train_tokenizer

    module, data, tok = demo()
    foreign = train_tokenizer(["a b c d e f g h"], vocab_size=40)
    assert len(foreign) < len(tok) <= module.model.get_input_embeddings().num_embeddings
    with pytest.raises(ValueError, match=r"only \d+ tokens: it is not the tokenizer the data was tokenized with"):
        quiet_trainer(tmp_path, [SaliencyMonitor(tokenizer=foreign, num_examples=4)]).fit(module, datamodule=data)
