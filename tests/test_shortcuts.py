"""Planted shortcuts in the style of Bastings et al. (2022): the planted token must become the top
suspect and the top-attributed token while the model relies on it; a clean run raises no alarm."""
import lightning as L
import pytest

from lightning_saliency import SaliencyMonitor
from lightning_saliency.demo import Shortcut, build_demo

pytestmark = pytest.mark.slow


def train_with_monitor(tmp_path, kind, epochs=6):
    L.seed_everything(0, verbose=False)
    noise = 0.5 if kind != "none" else 0.0  # with noise 0.5 the sentiment words carry no signal
    module, data, tok = build_demo(Shortcut(kind), n_train=800, n_val=200, sentiment_noise=noise,
                                   shortcut_rate=1.0, batch_size=32, hidden_size=32)
    module.lr = 5e-3
    found = []
    monitor = SaliencyMonitor(tokenizer=tok, methods=("integrated_gradients", "gradient"), num_examples=24,
                              n_steps=16, faithfulness=False, log_example_images=False,
                              on_shortcut=lambda suspects, record: found.append(suspects))
    L.Trainer(max_epochs=epochs, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
              enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path,
              callbacks=[monitor]).fit(module, datamodule=data)
    return monitor, found


def precision_at(record, method, planted, k, required):
    hits = total = 0
    for e in record["examples"]:
        if not required <= set(e["tokens"]):
            continue
        scores = e["attributions"][method]
        order = sorted((i for i in range(len(scores)) if not e["special"][i]), key=lambda i: -abs(scores[i]))
        top = {e["tokens"][i] for i in order[:k]}
        total += 1
        hits += len(top & planted) == min(k, len(planted))
    return hits / total, total


ORDERED_GAP = pytest.mark.xfail(
    reason="measured precision@2 = 0.54 for IG on the ordered-pair shortcut after 10 epochs (bar 0.85): "
    "position-dependent evidence is spread over the pair's neighbours; open in issue 4",
    strict=False,
)


@pytest.mark.parametrize(
    "kind,k,threshold",
    [("single", 1, 0.95), ("conditional", 2, 0.85), pytest.param("ordered", 2, 0.85, marks=ORDERED_GAP)],
)
def test_planted_shortcut_is_found(tmp_path, kind, k, threshold):
    monitor, found = train_with_monitor(tmp_path, kind, epochs=6 if k == 1 else 10)
    shortcut = Shortcut(kind)
    planted = set(shortcut.tokens)
    last = monitor.history[-1]
    assert last["metrics"]["scalars"]["saliency/probe/accuracy"] >= 0.9  # the model relies on the pattern
    for method in ("integrated_gradients", "gradient"):
        precision, count = precision_at(last, method, planted, k, planted)
        assert count >= 4
        assert precision >= threshold, (method, precision)
        suspects = last["metrics"]["shortcut"][method]["suspects"]
        assert suspects and suspects[0]["token"] in planted, suspects
    assert found and found[-1][0]["token"] in planted


@pytest.mark.xfail(
    reason="measured: on the clean corpus a genuine sentiment word (4 of 24 probe examples, share 0.80, rise "
    "from 0.25) meets every suspect threshold; telling real features from shortcuts needs more than "
    "attribution statistics (e.g. the label z across data splits). Open in issue 4",
    strict=False,
)
def test_clean_control_raises_no_alarm(tmp_path):
    monitor, found = train_with_monitor(tmp_path, "none", epochs=4)
    assert found == []
    for record in monitor.history:
        for method in ("integrated_gradients", "gradient"):
            assert record["metrics"]["shortcut"][method]["suspects"] == []
