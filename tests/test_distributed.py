"""DDP on CPU (gloo, two processes): sharded attribution, gathered on rank zero."""
import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from lightning_saliency import SaliencyMonitor
from lightning_saliency.attribution.results import Attributions, MethodAttribution, concatenate, select_rows
from lightning_saliency.monitor.distributed import parameters_sharded, shard_rows

SCRIPT = Path(__file__).parent / "scripts" / "ddp_fit.py"


def fit(out: Path, mode: str, num_examples: int, failing_rank: int = -1) -> subprocess.CompletedProcess:
    command = [sys.executable, str(SCRIPT), str(out), mode, str(num_examples), str(failing_rank)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def ranks(out: Path) -> dict[int, dict]:
    return {int(p.stem[4:]): json.loads(p.read_text()) for p in out.glob("rank*.json")}


def saliency_dir(out: Path) -> Path:
    return out / "run" / "version_0" / "saliency"


@pytest.mark.slow
def test_ddp_shards_equal_a_single_process_run(tmp_path):
    fit(tmp_path / "single", "single", 6)
    fit(tmp_path / "ddp", "ddp", 6)
    single = json.loads((saliency_dir(tmp_path / "single") / "epoch_start.json").read_text())
    ddp = json.loads((saliency_dir(tmp_path / "ddp") / "epoch_start.json").read_text())
    assert [e["index"] for e in ddp["examples"]] == [e["index"] for e in single["examples"]]
    for a, b in zip(single["examples"], ddp["examples"]):
        assert a["tokens"] == b["tokens"] and a["predicted"] == b["predicted"]
        for method in ("integrated_gradients", "gradient"):
            torch.testing.assert_close(torch.tensor(b["attributions"][method]), torch.tensor(a["attributions"][method]),
                                       rtol=1e-5, atol=1e-5)
        assert b["delta"]["integrated_gradients"] == pytest.approx(a["delta"]["integrated_gradients"], abs=1e-5)
    # Only rank zero keeps records and writes; every rank agrees on what was done.
    by_rank = ranks(tmp_path / "ddp")
    assert by_rank[0]["history"] == ["start", "000"] and by_rank[1]["history"] == []
    assert by_rank[0]["completed"] == by_rank[1]["completed"] == ["000", "start"]
    assert sorted(p.name for p in saliency_dir(tmp_path / "ddp").iterdir()) == ["epoch_000.json", "epoch_start.json"]
    # Every model pass of a run, faithfulness included, saw only the rank's own shard of the plan.
    lengths = [len(e["tokens"]) for e in ddp["examples"]]
    for rank in (0, 1):
        assert by_rank[rank]["distinct_examples"]["start"] == len(shard_rows(lengths, rank, 2)) == 3
    # Sharded = unsharded (up to float rounding of differently composed chunks).
    for method, summary in single["metrics"]["faithfulness"].items():
        for key, value in summary.items():
            assert ddp["metrics"]["faithfulness"][method][key] == pytest.approx(value, abs=1e-6), (method, key)
    assert len(list((tmp_path / "ddp" / "run" / "version_0").glob("events.out.tfevents*"))) == 1


@pytest.mark.slow
def test_ddp_causal_checks_equal_a_single_process_run(tmp_path):
    fit(tmp_path, "ddp_causal", 6)
    sharded = json.loads((saliency_dir(tmp_path) / "epoch_000.json").read_text())["metrics"]["causal"]
    unsharded = json.loads((tmp_path / "unsharded_causal.json").read_text())
    assert sharded, "the loose rules should give suspects to check"
    # The edits are planned alike on every rank and the forward passes are sharded and gathered:
    # the same counts as one process checking the same suspects, so the same intervals and verdicts.
    assert [c["token"] for c in sharded] == [c["token"] for c in unsharded]
    for a, b in zip(sharded, unsharded):
        for kind in ("deletion", "insertion", "control_deletion", "control_insertion"):
            assert (a[kind]["flips"], a[kind]["trials"]) == (b[kind]["flips"], b[kind]["trials"]), kind
        assert a["confirmed"] == b["confirmed"] and a["control_tokens"] == b["control_tokens"]
        assert a["probability_change"] == pytest.approx(b["probability_change"], abs=1e-5)


@pytest.mark.slow
def test_ddp_ranks_agree_to_stop_on_a_confirmed_shortcut(tmp_path):
    fit(tmp_path, "ddp_stop", 16)
    by_rank = ranks(tmp_path)
    # Both ranks hold the same gathered checks and timeline, and stop together at the confirming step.
    assert by_rank[0]["timeline"] == by_rank[1]["timeline"] and "zorbly" in by_rank[0]["timeline"]
    confirmed = by_rank[0]["timeline"]["zorbly"]["confirmed_step"]
    assert by_rank[0]["global_step"] == by_rank[1]["global_step"] == confirmed < by_rank[0]["max_steps"]


@pytest.mark.slow
def test_ddp_with_an_empty_shard_and_a_failing_rank_does_not_hang(tmp_path):
    fit(tmp_path / "empty", "ddp", 1)  # rank 1 has nothing to attribute
    assert ranks(tmp_path / "empty")[0]["history"] == ["start", "000"]
    record = json.loads((saliency_dir(tmp_path / "empty") / "epoch_000.json").read_text())
    assert len(record["examples"]) == 1

    done = fit(tmp_path / "failing", "ddp", 4, failing_rank=1)  # finishes: both ranks skip both runs
    assert "rank 1: RuntimeError: planted failure" in done.stderr + done.stdout
    by_rank = ranks(tmp_path / "failing")
    # Rank zero records both runs as failed (with the cause); the other rank records nothing.
    assert by_rank[0]["history"] == ["start", "000"] and by_rank[0]["statuses"] == ["failed", "failed"]
    assert by_rank[1]["history"] == [] and by_rank[0]["completed"] == by_rank[1]["completed"] == []
    record = json.loads((saliency_dir(tmp_path / "failing") / "epoch_000.json").read_text())
    assert record["status"] == "failed" and "rank 1: RuntimeError: planted failure" in record["error"]

    # Building the probe set fails on rank 1 only, before the runner: that rank still joins the
    # plan's broadcast and the gather, so the fit finishes and both runs are recorded as failed.
    fit(tmp_path / "probe", "ddp_probe", 4, failing_rank=1)
    by_rank = ranks(tmp_path / "probe")
    assert by_rank[0]["statuses"] == ["failed", "failed"] and by_rank[1]["history"] == []
    record = json.loads((saliency_dir(tmp_path / "probe") / "epoch_start.json").read_text())
    assert "rank 1: RuntimeError: planted probe failure" in record["error"]


def test_shards_balance_tokens_and_cover_every_row():
    lengths = [50, 10, 40, 30, 20, 60, 5]
    shards = [shard_rows(lengths, r, 3) for r in range(3)]
    assert sorted(i for s in shards for i in s) == list(range(7))
    tokens = [sum(lengths[i] for i in s) for s in shards]
    assert max(tokens) - min(tokens) <= 5
    assert shard_rows([7], 1, 2) == []


def _fake(rows, width=5, hidden=3):
    g = torch.Generator().manual_seed(len(rows))
    n = len(rows)
    ig = MethodAttribution("integrated_gradients", torch.randn(n, width, generator=g), torch.randn(n, width, hidden),
                           torch.randn(n), torch.full((n,), 9))
    ids = torch.tensor(rows, dtype=torch.float)
    return Attributions({"integrated_gradients": ig}, ids.long(), ids.long(), ids, ids, torch.zeros(n, width).bool(),
                        torch.ones(n, width).bool(), ids, timings={"integrated_gradients": float(n)})


def test_concatenate_restores_probe_order():
    parts = [_fake([0, 3, 4]), _fake([1, 2])]
    joined = concatenate(parts, [0, 3, 4, 1, 2])
    assert joined.target.tolist() == [0, 1, 2, 3, 4]
    assert torch.equal(joined["integrated_gradients"].scores[3], parts[0]["integrated_gradients"].scores[1])
    assert torch.equal(joined["integrated_gradients"].raw[1], parts[1]["integrated_gradients"].raw[0])
    assert joined.timings == {"integrated_gradients": 3.0}  # the slowest shard
    assert select_rows(joined, [4, 0]).target.tolist() == [4, 0]


def test_unsupported_sharding_is_refused_at_setup_with_the_route_that_works():
    from lightning.pytorch.strategies import DDPStrategy, DeepSpeedStrategy, FSDPStrategy, ModelParallelStrategy

    for cls in (FSDPStrategy, DeepSpeedStrategy):
        with pytest.raises(ValueError, match=f"{cls.__name__}.*ModelParallelStrategy\\(data_parallel_size"):
            parameters_sharded(cls.__new__(cls))
    assert parameters_sharded(DDPStrategy.__new__(DDPStrategy)) is False  # plain DDP: no lockstep

    class Mesh:
        mesh_dim_names = ("data_parallel", "tensor_parallel")

        def __getitem__(self, name):
            return SimpleNamespace(size=lambda: {"data_parallel": 1, "tensor_parallel": 2}[name])

    strategy = ModelParallelStrategy.__new__(ModelParallelStrategy)
    strategy._device_mesh = Mesh()
    with pytest.raises(ValueError, match="tensor_parallel_size=2.*tensor_parallel_size=1"):
        parameters_sharded(strategy)
    monitor = SaliencyMonitor(tokenizer=object())
    trainer = SimpleNamespace(strategy=FSDPStrategy.__new__(FSDPStrategy))
    with pytest.raises(ValueError, match="FSDPStrategy"):
        monitor.setup(trainer, None, "fit")


def test_a_model_the_hf_trainer_sharded_is_refused_with_the_route_that_works():
    from torch import nn
    from torch.distributed.fsdp import FSDPModule

    from lightning_saliency.adapters.transformers import SaliencyTrainerCallback

    model = nn.Sequential(nn.Linear(2, 2))
    model[0].__class__ = type("FSDPLinear", (FSDPModule, nn.Linear), {})  # what fully_shard makes of it
    callback = SaliencyTrainerCallback(tokenizer=object())
    with pytest.raises(ValueError, match="FSDP2.*ModelParallelStrategy"):
        callback.on_train_begin(SimpleNamespace(process_index=0), None, None, model=model)
