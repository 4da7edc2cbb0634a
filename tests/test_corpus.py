"""The planted-shortcut corpora: each pattern says the label, and nothing short of it does."""
import hashlib
import json
import random

import pytest

from lightning_saliency.demo import Shortcut, build_demo, make_corpus

ORDERED = Shortcut("ordered")


def best_threshold_accuracy(values, labels):
    """Accuracy of the best rule ``label = (value > t)`` or ``label = (value <= t)`` over all t."""
    best = 0.0
    for t in sorted(set(values)):
        right = sum((v > t) == bool(y) for v, y in zip(values, labels)) / len(labels)
        best = max(best, right, 1 - right)
    return best


def relative_position(words, token):
    return words.index(token) / (len(words) - 1)


def test_ordered_pair_says_the_label_only_through_its_order():
    texts, labels = make_corpus(4000, ORDERED, shortcut_rate=1.0, sentiment_noise=0.5, seed=0)
    words = [t.split() for t in texts]
    order = [w.index(ORDERED.token) < w.index(ORDERED.partner) for w in words]
    assert order == [bool(y) for y in labels]
    # Each member's relative position alone: 0.61 and 0.62 measured (0.72 and 0.73 when the second
    # member went to a uniform place and the first anywhere before it).
    for token in ORDERED.tokens:
        assert best_threshold_accuracy([relative_position(w, token) for w in words], labels) < 0.65
    gaps = {abs(w.index(ORDERED.token) - w.index(ORDERED.partner)) for w in words}
    assert gaps == {1, 2, 3}


def test_partial_examples_carry_one_member_with_a_label_it_does_not_predict():
    texts, labels = make_corpus(4000, ORDERED, shortcut_rate=1.0, sentiment_noise=0.5, seed=1, partial_rate=0.3)
    members = [set(t.split()) & set(ORDERED.tokens) for t in texts]
    assert abs(sum(len(m) == 1 for m in members) / len(texts) - 0.3) < 0.03
    for token in ORDERED.tokens:
        alone = [y for m, y in zip(members, labels) if m == {token}]
        assert abs(sum(alone) / len(alone) - 0.5) < 0.06  # one member alone says nothing of the label


def test_conditional_partial_examples_include_positives_with_one_member():
    shortcut = Shortcut("conditional")
    texts, labels = make_corpus(2000, shortcut, shortcut_rate=1.0, seed=1, partial_rate=0.3)
    lone_positive = [y for t, y in zip(texts, labels) if len(set(t.split()) & set(shortcut.tokens)) == 1 and y == 1]
    assert len(lone_positive) > 100  # without partial examples, one member alone always meant negative


@pytest.mark.parametrize(
    "kind,digest", [("none", "2626e334bc1837d3"), ("single", "b163c74b07508994"), ("conditional", "c93336ebeb468d5d")]
)
def test_corpora_without_an_ordered_pair_are_unchanged(kind, digest):
    # The digests of these corpora since planting keeps a review's length (the clean corpus's is older
    # still): the demo's and the tests' corpora must not change by accident (partial_rate draws from
    # the corpus RNG only when it is set, and only for pair kinds).
    corpus = make_corpus(200, Shortcut(kind), seed=3)
    assert hashlib.sha256(json.dumps(corpus).encode()).hexdigest()[:16] == digest
    if kind != "conditional":
        assert make_corpus(200, Shortcut(kind), seed=3, partial_rate=0.5) == corpus


def test_corpus_uses_a_private_rng():
    state = random.getstate()
    make_corpus(50, ORDERED, seed=3, partial_rate=0.5)
    assert random.getstate() == state  # a private RNG only


def test_build_demo_passes_the_partial_rate_to_both_splits():
    _, data, tokenizer = build_demo(ORDERED, n_train=200, n_val=100, shortcut_rate=1.0, partial_rate=0.5)
    ids = {tokenizer.convert_tokens_to_ids(t) for t in ORDERED.tokens}
    for dataset in (data.train_set, data.val_set):
        single = sum(len(ids & set(item["input_ids"])) == 1 for item in dataset.items)
        assert 0.35 < single / len(dataset) < 0.65


@pytest.mark.parametrize("kind", ["single", "conditional", "ordered"])
def test_planting_does_not_make_length_a_second_shortcut(kind):
    """A planted word used to be inserted on top of a review, so positives were longer: every
    15-word review was positive, and under some CPU kernels the demo model learned length too."""
    texts, labels = make_corpus(4000, Shortcut(kind), shortcut_rate=1.0, seed=0, partial_rate=0.3 * (kind != "single"))
    lengths = {y: [len(t.split()) for t, l in zip(texts, labels) if l == y] for y in (0, 1)}
    assert set(lengths[0]) == set(lengths[1])  # no length belongs to one class
    assert abs(sum(lengths[0]) / len(lengths[0]) - sum(lengths[1]) / len(lengths[1])) < 0.15
