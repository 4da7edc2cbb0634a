"""A shortcut is a training artifact: users often validate on data that does not carry it. The
planted word is in 90% of the positive *training* reviews only; in validation it is in half the
reviews, whatever their label (so its validation z is near 0). The alarm must still fire, from the
training set's association and the model's predictions, and before the model is taken over."""
import random

import lightning as L
import pytest

from tests.builders import quiet_trainer
from tests.builders import grouped
from lightning_saliency import SaliencyMonitor
from lightning_saliency.demo import Shortcut, TextClassifier, TextDataModule, make_corpus, tiny_bert, train_tokenizer
from lightning_saliency.demo.ground_truth import CounterfactualAccuracy

pytestmark = pytest.mark.slow
PLANTED = "zorbly"


def clean_validation(n, seed):
    """Reviews without the artifact's label link: the word goes into a random half, any label.
    Also an empty text and a text of words the tokenizer does not know (both unattributable)."""
    texts, labels = make_corpus(n, Shortcut("none"), sentiment_noise=0.3, seed=seed)
    rng = random.Random(seed)
    texts = [t + f" {PLANTED}" if rng.random() < 0.5 else t for t in texts]
    return texts + ["", "日本語 🙂"], labels + [0, 1]


def test_a_shortcut_planted_in_training_only_is_raised_confirmed_and_early(tmp_path):
    L.seed_everything(0, verbose=False)
    train = make_corpus(800, Shortcut("single"), shortcut_rate=0.9, sentiment_noise=0.3, seed=0)
    val = clean_validation(200, seed=1)
    held_out = [t for t, y in zip(*make_corpus(200, Shortcut("none"), sentiment_noise=0.0, seed=2)) if y == 0]
    tokenizer = train_tokenizer(train[0] + val[0])
    data = TextDataModule(train, val, tokenizer, batch_size=32)
    module = TextClassifier(tiny_bert(len(tokenizer), seed=0), lr=3e-3)
    truth = CounterfactualAccuracy(tokenizer, held_out, PLANTED)
    monitor = SaliencyMonitor(**grouped(tokenizer=tokenizer, num_examples=24, n_steps=16, faithfulness=False, log_example_images=False, every_n_train_steps=8, step_schedule="log"))
    with pytest.warns(UserWarning, match="left out of the causal checks"):
        quiet_trainer(max_epochs=4, callbacks=[monitor, truth], default_root_dir=tmp_path).fit(module, datamodule=data)

    taken_over = truth.first_step_below(0.5)
    assert taken_over is not None, truth.by_step  # the premise: the model does take the shortcut
    last = monitor.history[-1]
    suspects = {s["token"]: s for m in last["metrics"]["shortcut"].values() for s in m["suspects"]}
    assert PLANTED in suspects, suspects
    assert "training" in suspects[PLANTED]["association"], suspects[PLANTED]
    # Validation does not carry the artifact: its labels show no association with the word.
    stats = {t["token"]: t for t in last["metrics"]["shortcut"]["gradient"]["tokens"]}
    assert PLANTED not in stats or stats[PLANTED]["z"] < 2.0
    timeline = {t["token"]: t for t in last["metrics"]["timeline"]}[PLANTED]
    assert timeline["confirmed_step"] is not None
    assert timeline["first_suspected_step"] <= taken_over, (timeline, taken_over)
    # Confirmed at the first run from the ground truth on. (Before the effect floor it was confirmed
    # at step 25, three steps before the truth at 28, on a removal shift of 0.0002 of probability:
    # the size of the shifts a model at chance shows. Now it is step 32, the next run, by 63% of
    # removals and 81% of insertions flipping, against 0% for random words.)
    first_run_from_truth = min(r["global_step"] for r in monitor.history if r["global_step"] >= taken_over)
    assert timeline["confirmed_step"] <= first_run_from_truth, (timeline, taken_over)
    # Once confirmed, step runs do not pay for the check again; epoch runs re-check it for their record.
    after = [r for r in monitor.history if r["global_step"] > timeline["confirmed_step"]]
    assert all(PLANTED not in {c["token"] for c in r["metrics"]["causal"]} for r in after if r["step_run"])
    assert all(PLANTED in {c["token"] for c in r["metrics"]["causal"]} for r in after if not r["step_run"])
    assert any(r["step_run"] for r in after) and any(not r["step_run"] for r in after)
    # No run lost its causal checks to the empty or unknown-word validation texts.
    assert all(r["metrics"].get("causal_error") is None for r in monitor.history)


def test_validate_without_a_start_run_claims_no_rise(tmp_path):
    L.seed_everything(0, verbose=False)
    corpus = dict(shortcut=Shortcut("single"), shortcut_rate=1.0, sentiment_noise=0.5)
    train, val = make_corpus(400, seed=0, **corpus), make_corpus(100, seed=1, **corpus)
    tokenizer = train_tokenizer(train[0] + val[0])
    data = TextDataModule(train, val, tokenizer, batch_size=32)
    module = TextClassifier(tiny_bert(len(tokenizer), seed=0), lr=5e-3)
    quiet_trainer(tmp_path, max_epochs=4).fit(module, datamodule=data)
    monitor = SaliencyMonitor(**grouped(tokenizer=tokenizer, num_examples=24, n_steps=16, faithfulness=False, log_example_images=False))
    with pytest.warns(UserWarning, match="possible shortcut") as caught:
        quiet_trainer(tmp_path, [monitor]).validate(module, datamodule=data)
    alert = next(str(w.message) for w in caught if "possible shortcut" in str(w.message))
    assert "no start run to compare with, so no rise is claimed" in alert and "rising" not in alert
