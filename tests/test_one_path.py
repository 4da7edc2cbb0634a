"""Every model pass of a run (attribution and faithfulness) uses the run's token budget, the
trainer's precision context and the run's shard: spied on at the forward call."""
import json

import lightning as L
import pytest
import torch

from tests.builders import quiet_trainer
from tests.builders import grouped
from lightning_saliency import SaliencyMonitor
from lightning_saliency.demo import Shortcut, build_demo

pytestmark = pytest.mark.slow


def spied_fit(tmp_path, faithfulness, precision="bf16-mixed", max_tokens=64):
    calls = []

    def spy(pl_module, inputs):
        calls.append({"tokens": inputs["input_ids"].numel(), "autocast": torch.is_autocast_enabled("cpu"),
                      "dtype": torch.get_autocast_dtype("cpu")})
        return pl_module.model(**inputs)

    L.seed_everything(0, verbose=False)
    module, data, tokenizer = build_demo(Shortcut("single"), n_train=48, n_val=24, seed=0, batch_size=12)
    monitor = SaliencyMonitor(**grouped(tokenizer=tokenizer, num_examples=6, n_steps=8, max_tokens=max_tokens, faithfulness=faithfulness, forward_fn=spy, dirpath=str(tmp_path), on_error="raise"))
    quiet_trainer(max_epochs=1, precision=precision, callbacks=[monitor]).fit(module, datamodule=data)
    return calls, monitor


def test_faithfulness_passes_use_the_run_budget_and_precision_context(tmp_path):
    with_faithfulness, monitor = spied_fit(tmp_path / "on", faithfulness=True)
    attribution_only, _ = spied_fit(tmp_path / "off", faithfulness=False)
    assert len(with_faithfulness) > len(attribution_only)  # the faithfulness passes were spied on too
    longest = max(len(e["tokens"]) for r in monitor.history for e in r["examples"])
    for call in with_faithfulness:
        # One row may exceed the budget on its own; a chunk of several rows never does.
        assert call["tokens"] <= max(64, longest), call
        assert call["autocast"] and call["dtype"] == torch.bfloat16, call
    record = monitor.history[-1]
    assert record["settings"]["attribution"]["max_tokens"] == 64
    assert set(record["metrics"]["faithfulness"]) == {"integrated_gradients", "gradient", "random"}


def test_each_record_says_where_the_run_time_went(tmp_path):
    _, monitor = spied_fit(tmp_path, faithfulness=True, precision="32-true")
    for record in monitor.history:
        # The background worker's share (drawing, text, the file) is not part of the blocked run: it
        # is in the file the worker writes, and never written into the record held in memory.
        written = json.loads((tmp_path / "saliency" / f"epoch_{record['label']}.json").read_text())
        assert written["timings"].pop("background") > 0 and written["timings"] == record["timings"]
        timings = dict(record["timings"])
        assert "background" not in timings
        assert set(timings) == {"attribution", "faithfulness", "analysis", "publishing"}
        assert all(value > 0 for value in timings.values())
        assert sum(timings.values()) <= record["seconds"] + 1e-6  # parts of the run, on the training thread
        ratio = record["metrics"]["scalars"]["saliency/cost/run_over_attribution"]
        assert ratio == pytest.approx(record["seconds"] / timings["attribution"])
