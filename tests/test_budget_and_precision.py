"""Compute budget, the token budget taken from training batches, and mixed precision."""
import json

import lightning as L
import pytest
import torch

from tests.builders import quiet_trainer
from tests.builders import grouped
from lightning_saliency import SaliencyMonitor
from lightning_saliency.monitor.budget import ComputeBudget, Plan
from lightning_saliency.demo import Shortcut, build_demo


def test_budget_lowers_steps_first_then_examples():
    budget = ComputeBudget(0.1, num_examples=10, steps=50, min_steps=9)
    assert budget.plan(100.0) == budget.full() == Plan(10, 50)  # nothing measured yet
    # 10 examples x 50 steps took 5 s of IG plus 1 s of the rest: 0.01 s per step, 0.1 s per example.
    budget.observe(seconds=6.0, ig_seconds=5.0, examples=10, mean_steps=50)
    assert budget.plan(100.0) == Plan(10, 50, 10.0, pytest.approx(6.0))  # fits: as configured
    plan = budget.plan(30.0)  # 3 s allowed: 10 x (s x 0.01 + 0.1) <= 3 -> s = 20
    assert (plan.num_examples, plan.steps) == (10, 20) and plan.estimated_seconds <= 3.0 + 1e-9
    plan = budget.plan(10.0)  # 1 s: even 9 steps cost 1.9 s, so 5 examples at 9 steps
    assert (plan.num_examples, plan.steps) == (5, 9) and plan.estimated_seconds <= 1.0
    assert budget.plan(0.1).num_examples == 2  # the floor, even over budget
    with pytest.raises(ValueError, match="fraction"):
        ComputeBudget(1.5, 10, 50)


@pytest.mark.slow
def test_step_runs_share_one_account_so_overspending_is_paid_back():
    """Step runs: a run's causal check (or the 2-example floor) overspends its share of the
    training time since the previous run; the next runs take it back, so together they stay at
    the fraction (and unspent time carries over)."""
    budget = ComputeBudget(0.1, num_examples=24, steps=1, min_steps=1, carry=True)
    budget.observe(seconds=1.2, ig_seconds=0.0, examples=24, mean_steps=0)  # 0.05 s per example
    assert budget.plan(12.0).num_examples == 24  # 1.2 s allowed: all of them
    budget.observe(seconds=3.6, ig_seconds=0.0, examples=24, mean_steps=0)  # a causal check: 2.4 s over
    assert budget.balance == pytest.approx(-2.4)
    assert budget.plan(12.0).num_examples == 2  # 1.2 - 2.4 < 0: the floor, while the debt is paid
    budget.observe(seconds=0.1, ig_seconds=0.0, examples=2, mean_steps=0)
    assert budget.balance == pytest.approx(1.2 - 2.4 - 0.1)
    spent, allowed = 3.6 + 0.1, 0.1 * 12.0 * 2
    for _ in range(3):
        plan = budget.plan(12.0)
        allowed += 1.2
        spent += plan.estimated_seconds
        budget.observe(seconds=plan.estimated_seconds, ig_seconds=0.0, examples=plan.num_examples, mean_steps=0)
    assert budget.balance == pytest.approx(allowed - spent, abs=1e-9) and spent <= allowed + 1e-9
    assert ComputeBudget(0.1, 24, 1).plan(12.0) == Plan(24, 1)  # without carry, nothing measured: full


def _fit(tmp_path, precision="32-true", **options):
    L.seed_everything(0, verbose=False)
    module, data, tokenizer = build_demo(Shortcut("single"), n_train=96, n_val=24, seed=0, batch_size=12)
    settings = dict(methods=("integrated_gradients", "gradient"), num_examples=8, n_steps=32, dirpath=str(tmp_path))
    settings.update(options)
    monitor = SaliencyMonitor(**grouped(tokenizer=tokenizer, **settings))
    trainer = quiet_trainer(max_epochs=2, precision=precision, callbacks=[monitor])
    trainer.fit(module, datamodule=data)
    records = {p.stem[6:]: json.loads(p.read_text()) for p in (tmp_path / "saliency").glob("epoch_*.json")}
    return monitor, records


@pytest.mark.slow
def test_budget_shrinks_runs_and_keeps_drift_on_the_same_examples(tmp_path):
    monitor, records = _fit(tmp_path, budget=0.02)
    start, first, second = records["start"], records["000"], records["001"]
    assert len(start["examples"]) == 8 and start["settings"]["budget"]["steps"] == 32  # the reference is full
    plan = second["settings"]["budget"]
    assert plan["fraction"] == 0.02 and plan["target_seconds"] > 0
    assert plan["steps"] < 32 or plan["num_examples"] < 8  # the demo epoch is too short for the full run
    assert second["settings"]["attribution"]["n_steps"] == plan["steps"]
    assert len(second["examples"]) == plan["num_examples"]
    # A prefix of the probe order, and drift against the start run over exactly those examples.
    assert [e["index"] for e in second["examples"]] == [e["index"] for e in start["examples"]][: plan["num_examples"]]
    block = second["metrics"]["drift"]["integrated_gradients"]["start"]
    assert block["positions"] == list(range(plan["num_examples"]))
    assert set(second["metrics"]["scalars"]) >= {"saliency/cost/planned_steps", "saliency/cost/planned_examples"}
    assert first["settings"]["budget"] is not None


@pytest.mark.slow
def test_token_budget_follows_the_training_batch_and_bf16_mixed_matches_fp32(tmp_path):
    _, full = _fit(tmp_path / "fp32", methods=("integrated_gradients",))
    # Before training: validation batch size x padded probe length; then the training batch's tokens.
    ids_width = len(max((e["tokens"] for e in full["start"]["examples"]), key=len))
    assert full["start"]["settings"]["attribution"]["max_tokens"] >= 12 * ids_width
    assert full["000"]["settings"]["attribution"]["max_tokens"] % 12 == 0  # 12 rows x the longest batch

    _, half = _fit(tmp_path / "bf16", precision="bf16-mixed", methods=("integrated_gradients",))
    for a, b in zip(full["start"]["examples"], half["start"]["examples"]):
        assert a["predicted"] == b["predicted"]
        x, y = torch.tensor(a["attributions"]["integrated_gradients"]), torch.tensor(b["attributions"]["integrated_gradients"])
        assert torch.isfinite(y).all()
        assert torch.corrcoef(torch.stack([x, y]))[0, 1] > 0.95
        # Completeness still holds within bf16's resolution: IG is accumulated in float32.
        assert abs(b["delta"]["integrated_gradients"]) <= 0.05 * abs(b["target_score"]) + 0.05


def test_under_a_budget_in_debt_step_runs_do_not_check_again_what_was_never_confirmed(demo_tokenizer):
    """A suspect raised at every step run and never confirmed would be checked at every one, each
    check costing more than the run's attribution. Under ``budget=``, while the step runs' account
    is in debt, a step run checks only suspects it has not checked before; epoch runs, and step runs
    once the debt is paid back, check them all."""
    from dataclasses import replace

    from lightning_saliency.attribution import AttributionConfig
    from lightning_saliency.monitor.analysis import AnalysisSettings, analyse
    from lightning_saliency.monitor.distributed import Ranks
    from lightning_saliency.monitor.evidence.causal import CausalSettings
    from lightning_saliency.monitor.evidence.tracker import EvidenceTracker
    from lightning_saliency.monitor.planning import RunPlanner
    from lightning_saliency.monitor.probe import probe_from_texts
    from lightning_saliency.settings import MonitorSettings
    from tests.builders import BagOfWords, bag_of_words_access, synthetic_run

    start, later = synthetic_run("start", 0.1), synthetic_run("000", 2.0)
    record = replace(later, metrics=analyse(later, start, start, AnalysisSettings(top_k=3)))
    access = bag_of_words_access(BagOfWords(len(demo_tokenizer)), demo_tokenizer)  # zorbly decides nothing
    texts = [f"the {w} film was {v}" for w in ("zorbly", "plain") for v in ("long", "short", "fine", "dull")]
    examples = probe_from_texts(texts, demo_tokenizer, [1, 1, 1, 1, 0, 0, 0, 0], 64)
    settings = CausalSettings(AttributionConfig(max_tokens=4096), "classification", 0, 64)
    tracker = EvidenceTracker()

    def checked(step, **options):
        outcome = tracker.run(record, access, lambda: examples, examples, settings, f"step_{step}", step, Ranks(),
                              lambda rows: None, recheck_confirmed=False, **options)
        return [c.token for c in outcome.checks]

    assert checked(1) == ["zorbly"]  # new: checked, and not confirmed
    assert checked(2, recheck_unconfirmed=False) == []  # in debt: not again
    assert checked(3) == ["zorbly"]  # paid back: again
    # A check with nothing to edit tested nothing: the suspect is still new, and checked in debt
    # too (a segment check before the model predicts both classes has no swaps to make).
    examples = probe_from_texts([f"the plain film was {v}" for v in ("long", "short", "fine", "dull")], demo_tokenizer,
                                [1, 1, 0, 0], 64)
    tracker = EvidenceTracker()
    assert checked(1) == ["zorbly"] and checked(2, recheck_unconfirmed=False) == ["zorbly"]
    planner = RunPlanner(MonitorSettings(budget=0.1))
    step_budget = planner.budget_for(step_run=True)
    assert planner.rechecks_unconfirmed(True) and planner.rechecks_unconfirmed(False)
    step_budget.balance = -1.0  # a check overspent the step runs' account by a second
    assert not planner.rechecks_unconfirmed(True) and planner.rechecks_unconfirmed(False)
    assert RunPlanner(MonitorSettings()).rechecks_unconfirmed(True)  # no budget: always
