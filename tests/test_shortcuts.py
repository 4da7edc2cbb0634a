"""Planted shortcuts in the style of Bastings et al. (2022): the planted token must become the top
suspect and the top-attributed token while the model relies on it; a clean run raises no alarm."""
import functools
from pathlib import Path

import lightning as L
import pytest
import torch

from lightning_saliency import SaliencyMonitor
from lightning_saliency.demo import Shortcut, build_demo

pytestmark = pytest.mark.slow


def train_with_monitor(tmp_path, kind, epochs):
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
    monitor.trained_module = module  # for the occlusion checks below
    return monitor, found


def relied_on(monitor, planted):
    """Per probe example, the planted tokens the model relies on: those whose removal (every
    occurrence replaced by [PAD]) flips the predicted class."""
    model, tokenizer, inputs = monitor.trained_module.model.eval(), monitor.tokenizer, monitor.probe.inputs
    ids = inputs["input_ids"]
    with torch.no_grad():
        predicted = model(**inputs).logits.argmax(-1)
        flips = {}
        for token in planted:
            masked = torch.where(ids == tokenizer.convert_tokens_to_ids(token), tokenizer.pad_token_id, ids)
            flips[token] = (model(**{**inputs, "input_ids": masked}).logits.argmax(-1) != predicted).tolist()
    return [{t for t in planted if flips[t][i]} for i in range(len(ids))]


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


ORDERED_IG_GAP = pytest.mark.xfail(
    reason="measured: IG precision@2 = 0.54 on the ordered-pair shortcut after 10 epochs (bar 0.85), with any "
    "baseline (pad/zero 0.54, mask/unk 0.58) and at 16 or 64 steps (mean |delta| 8e-4 at 64). Occlusion shows "
    "the model leans on the first token more than on the pair: masking zorbly flips 13-14 of 24 predictions, "
    "masking quibble 5, and zorbly's relative position alone separates the classes (0.22 vs 0.53), so IG's "
    "ranking follows the model. With the pair adjacent (no position cue) a 64-wide model learns the order "
    "(accuracy 1.0 after 25 epochs) but IG precision@2 is 0.12-0.38 and gradient 0.62-0.71. Against occlusion "
    "(test_top_tokens_are_the_planted_tokens_the_model_relies_on) IG ranks the tokens the model needs first in "
    "16 of 17 examples. Open in issue 4",
    strict=False,
)


@functools.lru_cache(maxsize=None)
def trained(kind):
    import tempfile

    return train_with_monitor(Path(tempfile.mkdtemp()), kind, epochs=6 if kind in ("single", "none") else 10)


@pytest.mark.parametrize(
    "kind,method,k,threshold",
    [
        ("single", "integrated_gradients", 1, 0.95),
        ("single", "gradient", 1, 0.95),
        ("conditional", "integrated_gradients", 2, 0.85),
        ("conditional", "gradient", 2, 0.85),
        pytest.param("ordered", "integrated_gradients", 2, 0.85, marks=ORDERED_IG_GAP),
        ("ordered", "gradient", 2, 0.85),
    ],
)
def test_planted_shortcut_is_found(kind, method, k, threshold):
    monitor, found = trained(kind)
    planted = set(Shortcut(kind).tokens)
    last = monitor.history[-1]
    assert last["metrics"]["scalars"]["saliency/probe/accuracy"] >= 0.9  # the model relies on the pattern
    precision, count = precision_at(last, method, planted, k, planted)
    assert count >= 4
    assert precision >= threshold, (method, precision)
    suspects = last["metrics"]["shortcut"][method]["suspects"]
    # The strongest suspect is the planted token or, for the pair variants, the planted pair.
    assert suspects and set(suspects[0]["members"]) <= planted, suspects
    assert found and set(found[-1][0]["members"]) <= planted


def test_clean_control_raises_no_alarm():
    monitor, found = trained("none")
    assert found == []
    for record in monitor.history:
        for method in ("integrated_gradients", "gradient"):
            assert record["metrics"]["shortcut"][method]["suspects"] == []


GRADIENT_RELIANCE_GAP = pytest.mark.xfail(
    reason="measured: on the ordered pair the model needs both tokens in only 1 of the 17 probe examples whose "
    "prediction depends on the pattern (zorbly alone in 12, quibble alone in 4); gradient-L2 still ranks the "
    "unneeded partner on top (precision 9/17 = 0.53), while IG ranks exactly the needed tokens first (16/17). "
    "Gradient magnitude is not reliance",
    strict=False,
)


@pytest.mark.parametrize(
    "kind,method",
    [(kind, method) for kind in ("single", "conditional", "ordered") for method in ("integrated_gradients", "gradient")
     if (kind, method) != ("ordered", "gradient")]
    + [pytest.param("ordered", "gradient", marks=GRADIENT_RELIANCE_GAP)],
)
def test_top_tokens_are_the_planted_tokens_the_model_relies_on(kind, method):
    """Against occlusion: where removing planted tokens flips the prediction, exactly those tokens
    are the top-attributed ones (the planted tokens the model does not need must not be on top)."""
    monitor, _ = trained(kind)
    planted = set(Shortcut(kind).tokens)
    record = monitor.history[-1]
    hits = total = 0
    for example, needed in zip(record["examples"], relied_on(monitor, planted)):
        if not needed:
            continue
        scores = example["attributions"][method]
        order = sorted((i for i in range(len(scores)) if not example["special"][i]), key=lambda i: -abs(scores[i]))
        total += 1
        hits += {example["tokens"][i] for i in order[: len(needed)]} == needed
    assert total >= 8
    assert hits / total >= 0.85, (hits, total)
