"""From suspicion to evidence: Wilson intervals, the causal checks' edits, the artifact table, the
step schedule and the suspects' timeline, on their own and in a real fit with a planted shortcut."""
import re
import copy
import random
import tempfile

import lightning as L
import pytest
import torch

from tests.builders import quiet_trainer, synthetic_run as run
from tests.builders import grouped
from lightning_saliency import SaliencyMonitor
from lightning_saliency.monitor.analysis import AnalysisSettings, analyse
from lightning_saliency.monitor.metrics import ShortcutRules
from lightning_saliency.attribution import SpecialTokens
from lightning_saliency.schema.words import PieceJoiner
from lightning_saliency.demo import Shortcut, build_demo, make_corpus
from lightning_saliency.monitor.metrics.artifacts import association_table, bonferroni_z
from lightning_saliency.monitor.evidence.causal import CausalCheck, flip_test, is_confirmed
from lightning_saliency.monitor.features.edits import ConfirmationView, edit_rng, frequency_matched
from lightning_saliency.monitor.evidence.timeline import step_run_due, update_timeline
from lightning_saliency.monitor.metrics.intervals import wilson_interval
from lightning_saliency.monitor.probe import probe_from_texts
from lightning_saliency.presentation import verdicts
from lightning_saliency.schema.records import RunRecord


# ------------------------------------------------------------------------------------------ units
@pytest.mark.parametrize("flips,trials", [(0, 10), (10, 10), (3, 7), (83, 120), (1, 1000), (0, 1)])
def test_wilson_interval_matches_scipy(flips, trials):
    from scipy.stats import binomtest

    reference = binomtest(flips, trials).proportion_ci(0.95, method="wilson")
    low, high = wilson_interval(flips, trials)
    assert low == pytest.approx(reference.low, abs=1e-12) and high == pytest.approx(reference.high, abs=1e-12)


def test_wilson_interval_refuses_impossible_counts_and_knows_nothing_without_trials():
    assert wilson_interval(0, 0) == (0.0, 1.0)
    with pytest.raises(ValueError, match="successes <= trials"):
        wilson_interval(5, 3)


def test_a_check_is_confirmed_only_beyond_both_intervals():
    def check(deletion, control):
        return CausalCheck("w", ["w"], 1, None, 100, deletion=flip_test(deletion), control_deletion=flip_test(control))

    assert is_confirmed(check([True] * 9 + [False], [False] * 30))
    assert not is_confirmed(check([True] * 2 + [False], [False] * 3))  # 2 of 3 vs 0 of 3: intervals overlap
    assert not is_confirmed(check([], [False] * 30))  # nothing to delete: no evidence


def test_step_schedule_is_dense_early_with_log_spacing():
    linear = [s for s in range(1, 101) if step_run_due(s, 25, "linear")]
    log = [s for s in range(1, 101) if step_run_due(s, 25, "log")]
    assert linear == [25, 50, 75, 100]
    assert log == [1, 2, 4, 8, 16, 25, 50, 75, 100]
    assert not any(step_run_due(s, None) for s in range(5)) and not step_run_due(0, 1)


def test_timeline_keeps_the_first_suspicion_and_the_first_confirmation():
    timeline = {}
    update_timeline(timeline, "step_000008", 8, [("zorbly", "gradient")], [])
    update_timeline(timeline, "step_000016", 16, [("zorbly", "integrated_gradients")], ["zorbly"])
    update_timeline(timeline, "000", 25, [("zorbly", "gradient")], ["zorbly"])
    entry = timeline["zorbly"]
    assert (entry.first_suspected_step, entry.method, entry.confirmed_step) == (8, "gradient", 16)


@pytest.fixture(scope="module")
def view(demo_tokenizer):
    texts = ["the zorbly movie was great", "a dull film", "zorbly zorbly acting", "poor plot and music"]
    return ConfirmationView(probe_from_texts(texts, demo_tokenizer, [1, 0, 1, 0]), SpecialTokens.from_tokenizer(demo_tokenizer))


def test_deletion_replaces_every_occurrence_and_insertion_lands_between_words(view, demo_tokenizer):
    zorbly = view.word_ids("zorbly")
    assert zorbly is not None and view.containing(["zorbly"]) == [0, 2]
    deleted = view.deleted(2, ["zorbly"], demo_tokenizer.pad_token_id)
    kept = [t for t in deleted.sequence.ids if t != demo_tokenizer.pad_token_id]
    assert len(deleted.sequence.ids) == len(view.sequences[2].ids) and demo_tokenizer.decode(kept) == "[CLS] acting [SEP]"
    assert view.deleted(1, ["zorbly"], 0) is None  # nothing to delete
    assert view.deleted(0, ["the", "zorbly", "movie", "was", "great"], 0) is None  # no regular token would be left
    for seed in range(20):
        inserted = view.inserted(1, zorbly, edit_rng(seed, "x"), max_length=64)
        words = demo_tokenizer.decode(inserted.sequence.ids, skip_special_tokens=True).split()
        assert sorted(words) == sorted(["a", "dull", "film", "zorbly"])
    assert view.inserted(1, zorbly, random.Random(0), max_length=len(view.sequences[1].ids)) is None  # too long


def test_controls_are_matched_in_frequency_and_seeded(view):
    assert view.frequency["zorbly"] == 2
    picked = frequency_matched(view, "zorbly", ["the", "movie", "dull", "plot", "never-seen"], 2, seed=0)
    assert len(picked) == 2 and "never-seen" not in picked
    assert picked == frequency_matched(view, "zorbly", ["the", "movie", "dull", "plot", "never-seen"], 2, seed=0)


def test_token_label_association_is_gardners_z_with_a_bonferroni_line():
    words = [{"zorbly", "film"}] * 40 + [{"film"}] * 40 + [{"dull"}] * 20
    labels = [1] * 40 + [0] * 40 + [0] * 20
    table = association_table(words, labels)
    # p(1 | zorbly) = 1 against a prior of 0.4 over 40 examples.
    assert table.words["zorbly"].z == pytest.approx((1 - 0.4) / (0.4 * 0.6 / 40) ** 0.5)
    assert table.words["zorbly"].label == 1 and table.words["zorbly"].p_label == 1.0
    assert table.threshold == pytest.approx(bonferroni_z(3))
    assert [r.token for r in table.rows] == ["zorbly", "dull"]  # "film" (p = 0.5, prior 0.4, n = 80) is below the line
    assert table.words["film"].z < table.threshold


def test_piece_joiner_merges_wordpieces_and_marked_bpe_pieces():
    wordpiece = PieceJoiner(["[PAD]", "[CLS]", "zor", "##bly", "film"], [0, 1])
    assert wordpiece.words([1, 2, 3, 4, 0]) == ["zorbly", "film"]
    bpe = PieceJoiner(["<s>", "\u0120zor", "bly", "\u0120film", "\u0120a", "\u0120b", "\u0120c", "\u0120d", "\u0120e", "\u0120f",
                       "\u0120g", "\u0120h"], [0])
    assert bpe.words([0, 1, 2, 3]) == ["zorbly", "film"]


def test_ignored_words_are_never_suspects():

    start, later = run("start", strength=0.1), run("000", strength=2.0)
    assert [s.token for s in analyse(later, start, start, AnalysisSettings(top_k=3)).shortcut["gradient"].suspects] == ["zorbly"]
    ignoring = AnalysisSettings(top_k=3, rules=ShortcutRules(ignore=("Zorbly",)))
    assert analyse(later, start, start, ignoring).shortcut["gradient"].suspects == []


def test_settings_name_the_fix_for_bad_evidence_options():
    with pytest.raises(ValueError, match="step_schedule"):
        SaliencyMonitor(**grouped(tokenizer="x", step_schedule="cubic"))
    with pytest.raises(ValueError, match="every_n_train_steps"):
        SaliencyMonitor(**grouped(tokenizer="x", every_n_train_steps=0))
    with pytest.raises(ValueError, match="shortcut ignore is a list of words"):
        SaliencyMonitor(**grouped(tokenizer="x", shortcut_ignore="great"))
    with pytest.raises(ValueError, match="step_methods"):
        SaliencyMonitor(**grouped(tokenizer="x", step_methods=("gradient", "nope")))
    with pytest.raises(ValueError, match="confirm_examples"):
        SaliencyMonitor(**grouped(tokenizer="x", confirm_examples=-1))


# ------------------------------------------------------------------------------------ real fits
# Dense enough to see the planted word being picked up: with lr 5e-3 the tiny BERT goes from
# ignoring it to being ruled by it within about 8 steps (measured with a step run at every step:
# first suspected at step 32, counterfactual accuracy 0 from step 37).
STEP_EVERY = 4


class Checkpoints(L.Callback):
    """A copy of the model's weights after every optimizer step (the tiny model makes this cheap)."""

    def __init__(self):
        self.states = {}

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.states[trainer.global_step] = copy.deepcopy(pl_module.model.state_dict())


def fit_single(kind="single", seed=0, epochs=6, step_every=STEP_EVERY, logger=False, token="zorbly", lr=5e-3,
               shortcut_rate=1.0, **options):
    L.seed_everything(seed, verbose=False)
    noise = 0.5 if kind != "none" and shortcut_rate > 0 else 0.0
    module, data, tokenizer = build_demo(Shortcut(kind, token), n_train=800, n_val=200, sentiment_noise=noise,
                                         shortcut_rate=shortcut_rate, batch_size=32, hidden_size=32, seed=seed)
    module.lr = lr
    monitor = SaliencyMonitor(**grouped(tokenizer=tokenizer, num_examples=24, n_steps=16, faithfulness=False, log_example_images=False, every_n_train_steps=step_every, step_schedule="log", **options))
    checkpoints = Checkpoints()
    trainer = quiet_trainer(max_epochs=epochs, logger=logger, default_root_dir=tempfile.mkdtemp(), callbacks=[monitor, checkpoints])
    trainer.fit(module, datamodule=data)
    return monitor, checkpoints, module, data, tokenizer, trainer


@pytest.fixture(scope="session")
def planted_fit():
    from lightning.pytorch.loggers import TensorBoardLogger

    return fit_single(logger=TensorBoardLogger(tempfile.mkdtemp(), name="planted"))


def counterfactual_accuracy(module, state, tokenizer):
    """Accuracy on counterfactual examples: negative validation reviews with the shortcut word
    inserted at a random place, among the reviews the model gets right without it (so that steps
    where the young model calls everything positive do not count as the shortcut's doing). Below
    0.5, the word overrides what the review says. ``None`` when fewer than 20 are right without it."""
    model = copy.deepcopy(module.model)
    model.load_state_dict(state)
    model.eval()
    rng = random.Random(0)
    plain, inserted = [], []
    for text, label in zip(*make_corpus(200, Shortcut("single"), 1.0, 0.5, seed=1)):
        if label == 0:
            words = text.split()
            plain.append(text)
            words.insert(rng.randrange(len(words) + 1), "zorbly")
            inserted.append(" ".join(words))
    with torch.no_grad():
        right = model(**tokenizer(plain, padding=True, return_tensors="pt")).logits.argmax(-1) == 0
        still = model(**tokenizer(inserted, padding=True, return_tensors="pt")).logits.argmax(-1) == 0
    return float((right & still).sum() / right.sum()) if right.sum() >= 20 else None


@pytest.mark.slow
def test_planted_shortcut_is_confirmed_causally_and_caught_before_it_takes_over(planted_fit):
    monitor, checkpoints, module, data, tokenizer, _ = planted_fit
    last = RunRecord.from_json(monitor.history[-1])
    (check,) = [c for c in last.metrics.causal if c.token == "zorbly"]
    assert check.confirmed and check.label == 1
    assert check.deletion.trials >= 50 and check.deletion.low > 0.5 > check.control_deletion.high
    assert check.insertion.trials >= 50 and check.insertion.low > 0.5 > check.control_insertion.high
    assert check.probability_change > 0.3 and len(check.control_tokens) == 3
    assert last.metrics.scalars["saliency/causal/zorbly/deletion_flip_rate"] == check.deletion.rate
    print(f"\nzorbly: {verdicts.verdict(check)}")

    entry = {t.token: t for t in last.metrics.timeline}["zorbly"]
    first_suspected = entry.first_suspected_step
    assert entry.confirmed_step is not None and entry.confirmed_step >= first_suspected
    accuracy = {step: counterfactual_accuracy(module, state, tokenizer) for step, state in checkpoints.states.items()}
    broken = min(step for step, value in accuracy.items() if value is not None and value < 0.5)
    print(f"first suspected at step {first_suspected} ({entry.first_suspected_run}, {entry.method}), confirmed at "
          f"step {entry.confirmed_step}; counterfactual accuracy first below 0.5 at step {broken}")
    assert first_suspected <= broken
    # Step runs are cheap runs: gradient only, no images, and every one of them is on disk.
    steps = [r for r in monitor.history if r["step_run"]]
    assert steps and all(r["methods"] == ["gradient"] for r in steps)


@pytest.mark.slow
def test_the_planted_word_is_the_top_artifact_the_model_relies_on_and_leads_its_class(planted_fit):
    monitor, *_ = planted_fit
    last = RunRecord.from_json(monitor.history[-1])
    # IG's reliance: gradient-L2 saturates on this trained model (under ATEN_CPU_CAPABILITY=avx2 its
    # top-1 rate on the word fell to 0.5 in the last run), a measurement in
    # benchmarks/bench_gradient_saturation.py rather than a promise of the suite.
    for method in ("integrated_gradients",):
        crossing = last.metrics.artifacts[method]
        assert crossing.relied_artifacts[0].token == "zorbly", crossing
        assert crossing.relied_artifacts[0].count > 300 and crossing.examples == 800
        positive = [c for c in last.metrics.per_class[method] if c.label == 1][0]
        negative = [c for c in last.metrics.per_class[method] if c.label == 0][0]
        assert positive.top[0][0] == "zorbly" and "zorbly" not in [w for w, _ in negative.top]
        assert "jensen_shannon" in positive.drift_start


@pytest.mark.slow
@pytest.mark.parametrize("seed", (0, 1, 2))
@pytest.mark.parametrize("corpus", ("texts", "pairs"))
def test_clean_control_confirms_nothing(seed, corpus):
    """Nothing planted: single reviews, or pairs whose review decides and whose second text holds a
    sentiment word of a random class (the pair model learns at lr 1e-3, see test_feature_shortcuts)."""
    if corpus == "pairs":
        monitor, *_, trainer = fit_single("segment", seed=seed, epochs=4, step_every=10, lr=1e-3, shortcut_rate=0.0)
    else:
        monitor, *_, trainer = fit_single("none", seed=seed, epochs=4, step_every=10)
    print(f"\n{corpus}, seed {seed}: validation accuracy {float(trainer.callback_metrics['val_acc']):.3f}")
    assert trainer.callback_metrics["val_acc"] > 0.9  # it learned the meaning, and confirms nothing
    assert len(monitor.history) >= 5 and all(r["status"] == "ok" for r in monitor.history), [
        (r["label"], r["status"], r.get("error")) for r in monitor.history]  # a failed run confirms nothing, too
    for record in monitor.history:
        assert not [c.token for c in RunRecord.from_json(record).metrics.causal if c.confirmed], record["label"]
    assert monitor.history[-1]["metrics"]["timeline"] == [] or all(
        t["confirmed_run"] is None for t in monitor.history[-1]["metrics"]["timeline"])


@pytest.mark.slow
def test_stop_on_shortcut_stops_training_at_the_confirming_run():
    monitor, _, _, _, _, trainer = fit_single(epochs=6, stop_on_shortcut=True)
    entry = monitor.engine.timeline["zorbly"]
    assert trainer.global_step == entry.confirmed_step < 150


@pytest.mark.slow
def test_the_alert_and_the_report_state_the_evidence(planted_fit):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from lightning_saliency.report import build_report, read_runs

    *_, trainer = planted_fit
    events = EventAccumulator(trainer.logger.log_dir, size_guidance={"tensors": 0, "scalars": 0})
    events.Reload()
    alerts = [e.tensor_proto.string_val[0].decode() for e in events.Tensors("saliency/shortcut_alert/text_summary")]
    # The verdict and its evidence, not a trained model's exact rate: the alert states the removal
    # flip rate with its interval, and that interval lies above the random control's.
    # The alert opens with the one-line verdict, then the evidence behind it.
    assert re.search(r"- 'zorbly' (drives 1: removing it changes \d+% of \d+ predictions \(random words: \d+% of \d+\)"
                     r"|pushes predictions toward 1)", alerts[-1]), alerts[-1]
    match = re.search(r"Removal: flips (\d+)% \((\d+)%-(\d+)%\) of \d+ examples that contain it \(random words: "
                      r"(\d+)% \((\d+)%-(\d+)%\) of \d+\)", alerts[-1])
    assert match, alerts[-1]
    assert int(match.group(2)) > int(match.group(6))  # deletion's lower bound above the control's upper bound
    assert "**When**" in alerts[-1] and "artifact, relied on" in alerts[-1]
    assert "saliency/causal/zorbly/control_insertion_flip_rate" in events.Tags()["scalars"]
    assert any("dataset_artifacts" in tag for tag in events.Tags()["tensors"])
    page = build_report(read_runs(trainer.logger.save_dir))
    for text in ("Causal checks", "Suspect timeline", "artifact, relied on", "Per class", "zorbly"):
        assert text in page, text
