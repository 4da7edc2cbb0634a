"""FSDP2 (Lightning's ModelParallelStrategy with fully_shard) on CPU: 2 processes over gloo."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).parent / "scripts" / "fsdp_fit.py"


def fit(out: Path, mode: str) -> dict[int, dict]:
    done = subprocess.run([sys.executable, str(SCRIPT), str(out), mode], capture_output=True, text=True, timeout=420)
    assert done.returncode == 0, done.stderr[-4000:]
    return {int(p.stem[4:]): json.loads(p.read_text()) for p in out.glob("rank*.json")}


def records(out: Path) -> dict[str, dict]:
    folder = out / "run" / "version_0" / "saliency"
    return {p.stem[6:]: json.loads(p.read_text()) for p in folder.glob("epoch_*.json")}


@pytest.fixture(scope="module")
def monitored(tmp_path_factory):
    out = tmp_path_factory.mktemp("fsdp_monitored")
    return out, fit(out, "monitored")


@pytest.mark.slow
def test_a_sharded_fit_is_monitored_on_rank_zero_and_training_is_untouched(monitored, tmp_path):
    out, ranks = monitored
    assert ranks[0]["history"] == ["start", "000", "001", "002", "003"] and ranks[1]["history"] == []
    assert set(ranks[0]["statuses"]) == {"ok"}
    assert sorted(records(out)) == ["000", "001", "002", "003", "start"]
    plain = tmp_path / "plain"
    fit(plain, "plain")
    with_monitor, without = torch.load(out / "weights.pt"), torch.load(plain / "weights.pt")
    assert with_monitor.keys() == without.keys()
    assert all(torch.equal(with_monitor[k], without[k]) for k in without)  # bitwise


@pytest.mark.slow
def test_the_planted_word_is_raised_and_confirmed_under_fsdp(monitored):
    out, _ = monitored
    last = records(out)["003"]
    suspects = {s["token"] for f in last["metrics"]["shortcut"].values() for s in f["suspects"]}
    confirmed = {c["token"] for c in last["metrics"]["causal"] if c["confirmed"]}
    assert "zorbly" in suspects and "zorbly" in confirmed, (suspects, confirmed)


@pytest.mark.slow
def test_sharded_attributions_equal_one_process_on_the_same_weights(monitored):
    from transformers import AutoTokenizer

    from lightning_saliency import attribute
    from lightning_saliency.demo import tiny_bert
    from lightning_saliency.monitor.probe import probe_from_texts

    out, _ = monitored
    last = records(out)["003"]
    tokenizer = AutoTokenizer.from_pretrained(out / "tokenizer")
    model = tiny_bert(len(tokenizer), hidden_size=32, seed=0)
    model.load_state_dict(torch.load(out / "weights.pt"))
    texts = [e["text"] for e in last["examples"]]
    probe = probe_from_texts(texts, tokenizer, None, 64)
    config = last["settings"]["attribution"]
    result = attribute(model.eval(), probe.inputs, ("integrated_gradients", "gradient"), tokenizer=tokenizer,
                       n_steps=config["n_steps"], max_tokens=config["max_tokens"])
    for row, example in enumerate(last["examples"]):
        valid = result.attention_mask[row]
        for method in ("integrated_gradients", "gradient"):
            torch.testing.assert_close(result[method].scores[row][valid], torch.tensor(example["attributions"][method]),
                                       rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_a_rank_failing_inside_attribution_leaves_no_rank_waiting(tmp_path):
    ranks = fit(tmp_path, "failing")  # the subprocess timeout is the hang detector
    assert set(ranks[0]["statuses"]) == {"failed"} and ranks[1]["history"] == []
    record = json.loads((tmp_path / "run" / "version_0" / "saliency" / "epoch_start.json").read_text())
    assert "planted failure on rank 1" in record["error"]


@pytest.mark.slow
def test_uneven_and_empty_shards_leave_no_rank_waiting(tmp_path):
    ranks = fit(tmp_path, "uneven")
    assert set(ranks[0]["statuses"]) == {"ok"} and len(records(tmp_path)["000"]["examples"]) == 5
    assert ranks[0]["one"] == ["ok", "ok"] and ranks[1]["one"] == []
