"""Planted shortcuts in the style of Bastings et al. (2022): the planted token must become the top
suspect and the top-attributed token while the model relies on it; a clean run raises no alarm.

The single-token and conditional shortcuts are learned by the tiny demo BERT. The ordered pair is
learned by the real pretrained MiniLM (installed offline from PyPI), fine-tuned as in Bastings et al.:
from scratch, a 2-layer BERT learns a word order only with some seeds and then often through
neighbouring words, so it is no test of whether attribution credits both members of a pair."""
import tempfile

import lightning as L
import pytest
import torch

from tests.builders import quiet_trainer
from tests.builders import grouped
from lightning_saliency import SaliencyMonitor
from lightning_saliency.demo import Shortcut, TextClassifier, TextDataModule, build_demo, make_corpus, offline
from lightning_saliency.demo.summary import planted_precision

pytestmark = pytest.mark.slow

MINILM = offline.minilm_folder()
needs_minilm = pytest.mark.skipif(MINILM is None, reason=offline.install_hint(offline.MINILM_PACKAGE))
# Single WordPieces in MiniLM's vocabulary that never occur in the demo's filler and sentiment words.
MINILM_ORDERED = Shortcut("ordered", token="zebra", partner="violin")


# 64 probe examples: about 32 carry the planted pattern, so one example moves a precision by 0.03
# (with 24, by 0.08: a change of CPU kernels, hence of the trained model, could swing the verdict).
PROBE_EXAMPLES = 64


def fit_with_monitor(module, data, tokenizer, epochs):
    found = []
    # Adaptive IG (tolerance 5%): at saturation a fixed 16-point rule can miss the path's one steep
    # step and sum to nothing (|delta| 100% of F(x) - F(x')); with transformers 5.24 under
    # ATEN_CPU_CAPABILITY=default, 2 of the 32 "single" examples did, and D1 read 0.9375.
    monitor = SaliencyMonitor(**grouped(tokenizer=tokenizer, methods=("integrated_gradients", "gradient"), num_examples=PROBE_EXAMPLES, n_steps=16, tolerance=0.05, faithfulness=False, log_example_images=False, on_shortcut=lambda suspects, record: found.append(suspects)))
    quiet_trainer(max_epochs=epochs, default_root_dir=tempfile.mkdtemp(), callbacks=[monitor]).fit(module, datamodule=data)
    monitor.trained_module = module  # for the occlusion checks below
    return monitor, found


def train_tiny(kind):
    L.seed_everything(0, verbose=False)
    noise = 0.5 if kind != "none" else 0.0  # with noise 0.5 the sentiment words carry no signal
    module, data, tok = build_demo(Shortcut(kind), n_train=800, n_val=200, sentiment_noise=noise,
                                   shortcut_rate=1.0, batch_size=32, hidden_size=32)
    module.lr = 5e-3
    return fit_with_monitor(module, data, tok, epochs=6 if kind in ("single", "none") else 10)


def train_minilm_ordered():
    """MiniLM fine-tuned on the ordered pair. 30% of the examples carry one member alone with a
    label it does not predict, so the model cannot decide from one member: it must use the pair."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    L.seed_everything(0, verbose=False)
    corpus = dict(shortcut=MINILM_ORDERED, shortcut_rate=1.0, sentiment_noise=0.5, partial_rate=0.3)
    tokenizer = AutoTokenizer.from_pretrained(MINILM)
    model = AutoModelForSequenceClassification.from_pretrained(MINILM, num_labels=2)
    data = TextDataModule(make_corpus(800, seed=0, **corpus), make_corpus(200, seed=1, **corpus), tokenizer)
    return fit_with_monitor(TextClassifier(model, lr=5e-5), data, tokenizer, epochs=3)


def relied_on(monitor, planted):
    """Per probe example, the planted tokens the model relies on: those whose removal (every
    occurrence replaced by [PAD]) flips the predicted class."""
    model, tokenizer, inputs = monitor.trained_module.model.eval(), monitor.tokenizer, monitor.engine.probe.inputs
    ids = inputs["input_ids"]
    with torch.no_grad():
        predicted = model(**inputs).logits.argmax(-1)
        flips = {}
        for token in planted:
            masked = torch.where(ids == tokenizer.convert_tokens_to_ids(token), tokenizer.pad_token_id, ids)
            flips[token] = (model(**{**inputs, "input_ids": masked}).logits.argmax(-1) != predicted).tolist()
    return [{t for t in planted if flips[t][i]} for i in range(len(ids))]


@pytest.fixture(scope="session")
def trained():
    """The trained model of each planted kind, trained once per session on first use."""
    models: dict[str, tuple] = {}

    def of(kind):
        if kind not in models:
            models[kind] = train_minilm_ordered() if kind == "ordered" else train_tiny(kind)
        return models[kind]
    return of


def planted_tokens(kind):
    return set((MINILM_ORDERED if kind == "ordered" else Shortcut(kind)).tokens)


def pattern_accuracy(record, planted):
    """Accuracy on the probe examples that carry the whole pattern (the others, if any, carry one
    member of a pair alone and a label it does not predict)."""
    right = [e["predicted"] == e["label"] for e in record["examples"] if planted <= set(e["tokens"])]
    return sum(right) / len(right)


KINDS = ("single", "conditional", pytest.param("ordered", marks=needs_minilm))


# Gradient-L2 is not reliance: once the model leans on a planted token, the logit is flat along
# that token's embedding (saturation) and other tokens can have larger gradients. So the precision
# promises (D1 >= 0.95, D2 >= 0.85) are IG's; gradient's precision is a measurement, per seed and
# per CPU kernel, in benchmarks/bench_gradient_saturation.py (numbers in docs/benchmarks.md), not
# a test that cannot fail. The monitor still raises and confirms the shortcut: suspects of any
# method go to the causal check.
PRECISION_CASES = [
    ("single", "integrated_gradients"), ("conditional", "integrated_gradients"),
    pytest.param("ordered", "integrated_gradients", marks=needs_minilm),
]


@pytest.mark.parametrize("kind", KINDS)
def test_planted_shortcut_is_raised_and_confirmed(kind, trained):
    """The verdict: the strongest suspect is the planted token or one of the planted pair (or the
    pair), the alert fired, and the causal check confirms it against random words."""
    monitor, found = trained(kind)
    planted = planted_tokens(kind)
    last = monitor.history[-1]
    assert pattern_accuracy(last, planted) >= 0.9  # the model relies on the pattern
    suspects = last["metrics"]["shortcut"]["integrated_gradients"]["suspects"]
    assert suspects and set(suspects[0]["members"]) <= planted, suspects
    assert found and set(found[-1][0]["members"]) <= planted
    checks = {c["token"]: c for c in last["metrics"]["causal"]}
    assert checks[suspects[0]["token"]]["confirmed"], checks


@pytest.mark.parametrize("kind,method", PRECISION_CASES)
def test_planted_shortcut_is_found(kind, method, trained):
    """D1 (precision@1 >= 0.95, one planted word) and D2 (precision@2 >= 0.85, a pair)."""
    monitor, _ = trained(kind)
    planted = planted_tokens(kind)
    k, threshold = (1, 0.95) if len(planted) == 1 else (2, 0.85)
    last = monitor.history[-1]
    assert pattern_accuracy(last, planted) >= 0.9  # the model relies on the pattern
    precision, count = planted_precision(last, method, planted, k)
    assert count >= 16
    assert precision >= threshold, (method, precision)
    suspects = last["metrics"]["shortcut"][method]["suspects"]
    assert suspects and set(suspects[0]["members"]) <= planted, suspects


def test_clean_control_raises_no_alarm(trained):
    monitor, found = trained("none")
    assert found == []
    for record in monitor.history:
        for method in ("integrated_gradients", "gradient"):
            assert record["metrics"]["shortcut"][method]["suspects"] == []


@pytest.mark.parametrize("kind,method", PRECISION_CASES)
def test_top_tokens_are_the_planted_tokens_the_model_relies_on(kind, method, trained):
    """Against occlusion: where removing planted tokens flips the prediction, exactly those tokens
    are the top-attributed ones (the planted tokens the model does not need must not be on top)."""
    monitor, _ = trained(kind)
    planted = planted_tokens(kind)
    record = monitor.history[-1]
    hits = total = 0
    for example, needed in zip(record["examples"], relied_on(monitor, planted)):
        if not needed:
            continue
        scores = example["attributions"][method]
        order = sorted((i for i in range(len(scores)) if not example["special"][i]), key=lambda i: -abs(scores[i]))
        total += 1
        hits += {example["tokens"][i] for i in order[: len(needed)]} == needed
    assert total >= 16
    assert hits / total >= 0.85, (hits, total)


@pytest.fixture(scope="session")
def trained_split_word():
    """The single shortcut with a tokenizer that has never seen "zorbly": it splits into six pieces."""
    from lightning_saliency.demo import tiny_bert, train_tokenizer

    L.seed_everything(0, verbose=False)
    corpus = dict(shortcut=Shortcut("single"), shortcut_rate=1.0, sentiment_noise=0.5)
    train, val = make_corpus(800, seed=0, **corpus), make_corpus(200, seed=1, **corpus)
    without = [t.replace("zorbly", "") for t in train[0] + val[0]] + ["z o r b l y"]  # its letters, not the word
    tokenizer = train_tokenizer(without)
    assert tokenizer.tokenize("zorbly") == ["z", "##o", "##r", "##b", "##l", "##y"]
    module = TextClassifier(tiny_bert(len(tokenizer), hidden_size=32, seed=0), lr=5e-3)
    return fit_with_monitor(module, TextDataModule(train, val, tokenizer), tokenizer, epochs=6)


@pytest.mark.parametrize("method", ("integrated_gradients", "gradient"))
def test_a_planted_word_split_into_pieces_is_suspected_as_the_word(method, trained_split_word):
    monitor, found = trained_split_word
    last = monitor.history[-1]
    assert pattern_accuracy(last, {"z", "##o"}) >= 0.9
    suspects = last["metrics"]["shortcut"][method]["suspects"]
    assert suspects and suspects[0]["token"] == "zorbly" and suspects[0]["members"] == ["zorbly"], suspects
    assert "##" not in " ".join(s["token"] for s in suspects)
