"""Pair inputs, without a model: segments read from the special tokens, the segment feature's
association, carriers and swap edits, and the words its verdict uses."""
import random

import pytest

from lightning_saliency.demo.corpus import NEGATIVE, POSITIVE, Shortcut, make_corpus
from lightning_saliency.monitor.features.base import FEATURES, feature_associations
from lightning_saliency.monitor.features.carriers import carrier_lines
from lightning_saliency.monitor.features.parts import naive_bayes_loo_accuracy
from lightning_saliency.schema.findings import ANY_CLASS
from lightning_saliency.schema.words import PieceJoiner, segment_numbers


@pytest.mark.parametrize("special, expected", [
    ([True, False, False, True, False, True], [0, 0, 1]),  # BERT: [CLS] a b [SEP] c [SEP]
    ([True, False, True, True, False, True], [0, 1]),  # RoBERTa: <s> a </s></s> c </s>
    ([True, False, False, True, True, True], [0, 0]),  # one text, then padding marked special
    ([False, False], [0, 0]),  # no special tokens at all
])
def test_segments_are_read_from_the_special_tokens(special, expected):
    assert segment_numbers(special) == expected


def test_the_joiner_gives_each_word_its_segment():
    joiner = PieceJoiner(["[CLS]", "[SEP]", "ab", "##c", "d"], [0, 1])
    ids = [0, 2, 3, 4, 1, 2, 3, 1]
    assert joiner.words_and_segments(ids) == (["abc", "d", "abc"], [0, 0, 1])
    assert joiner.words(ids) == ["abc", "d", "abc"]


def word_lists(texts):
    words = [a.split() + b.split() for a, b in texts]
    return words, [[0] * len(a.split()) + [1] * len(b.split()) for a, b in texts]


def test_naive_bayes_leave_one_out_sees_a_deciding_segment_and_nothing_in_a_random_one():
    rng = random.Random(0)
    labels = [i % 2 for i in range(200)]
    deciding = [[rng.choice(POSITIVE if y else NEGATIVE), "it", "was"] for y in labels]
    random_words = [[rng.choice(POSITIVE + NEGATIVE), "it", "was"] for _ in labels]
    assert naive_bayes_loo_accuracy(deciding, labels) == 1.0
    # On noise, leaving each example out leans against its own label (0.365 here): below chance,
    # so the z is conservative and noise raises no suspect.
    assert naive_bayes_loo_accuracy(random_words, labels) < 0.55


def test_the_segment_association_is_strong_when_planted_and_absent_on_single_texts():
    planted, labels = make_corpus(400, Shortcut("segment"), 0.9, 0.5, seed=0)
    clean, clean_labels = make_corpus(400, Shortcut("segment"), 0.0, 0.0, seed=0)
    segment = FEATURES.get_or_raise("segment")
    found = segment.association("last", *word_lists(planted)[:1], labels, word_lists(planted)[1])
    assert found.z > 10 and found.label == ANY_CLASS and found.examples == 400
    assert set(found.words) <= set(POSITIVE + NEGATIVE) and found.words
    words, segments = word_lists(clean)
    assert segment.association("last", words, clean_labels, segments).z < 2.0
    single, single_labels = make_corpus(100, Shortcut("none"), seed=0)
    alone = feature_associations([t.split() for t in single], single_labels)["segment:last"]
    assert alone.examples == 0 and alone.z == 0.0 and alone.label is None  # counts for no test
    # A shared first segment (a chat's system prompt before the user turn): the last deciding
    # alone is the task itself, and the kind reads nothing.
    shared = [("you are a helpful critic", b) for _, b in planted]
    words, segments = word_lists(shared)
    assert segment.association("last", words, labels, segments).examples == 0


def test_carriers_of_a_pair_shortcut_hold_a_deciding_word_in_the_second_text():
    texts, labels = make_corpus(100, Shortcut("segment"), 0.5, seed=0)
    words, segments = word_lists(texts)
    segment = FEATURES.get_or_raise("segment")
    reference = segment.association("last", words, labels, segments)
    summary, lines = carrier_lines(range(100), words, labels, "segment:last", ("segment:last",), reference, 100,
                                   segments)
    assert summary.count == len(lines) > 0
    assert all(len(line["text"]) == 2 and set(line["text"][1].split()) & set(reference.words) for line in lines)
    # A deciding word in the first text alone does not carry it.
    assert not segment.carries("last", ["great", "film", "it", "was"], reference, [0, 0, 1, 1])
    assert segment.marked("last", ["a", "b", "c"], [0, 1, 1]) == [False, True, True]
    assert segment.marked("last", ["a", "b"], [0, 0]) == [False, False]


def test_the_swap_edits_keep_each_segment_whole(demo_tokenizer):
    from lightning_saliency.attribution import SpecialTokens
    from lightning_saliency.monitor.features.edits import ConfirmationView
    from lightning_saliency.monitor.probe import probe_from_dataloader
    from lightning_saliency.demo.modeling import TextDataModule

    texts = [("the film was great", "it was lovely"), ("the film was dull", "it was awful"),
             ("a great cast", "so superb"), ("a dull plot", "so poor")]
    data = TextDataModule((texts, [1, 0, 1, 0]), (texts, [1, 0, 1, 0]), demo_tokenizer, batch_size=4)
    probe = probe_from_dataloader(data.val_dataloader(), 4, 0, tokenizer=demo_tokenizer)
    view = ConfirmationView(probe, SpecialTokens.from_tokenizer(demo_tokenizer))
    predicted = [1, 0, 1, 0]
    edits = FEATURES.get_or_raise("segment").edits("last", view, ANY_CLASS, predicted, [], lambda w: None, 0, 64)
    assert len(edits["deletion"]) == len(edits["control_deletion"]) == 4 and not edits["insertion"]
    decode = lambda edit: demo_tokenizer.decode(list(edit.sequence.ids), skip_special_tokens=False)  # noqa: E731
    for swap, control in zip(edits["deletion"], edits["control_deletion"]):
        first, second = texts[view.indices[swap.row]]
        kept, swapped_in = decode(swap).split("[SEP]")[:2]
        assert first in kept and second not in swapped_in  # the second text came from a partner
        assert any(b in swapped_in for a, b in texts if b != second)
        assert second in decode(control).split("[SEP]")[1]  # the control keeps it and swaps the first
        # Token types follow the segments: the swapped-in text is type 1.
        types = swap.sequence.types
        assert types is not None and types[-2] == 1 and types[1] == 0


def test_position_edits_move_words_within_the_places_own_segment(demo_tokenizer):
    """In a pair, moving the last word elsewhere keeps it in the second text: a move into the first
    text would test the segment (a segment shortcut confirmed as a position one)."""
    from lightning_saliency.attribution import SpecialTokens
    from lightning_saliency.demo.modeling import TextDataModule
    from lightning_saliency.monitor.features.edits import ConfirmationView
    from lightning_saliency.monitor.probe import probe_from_dataloader

    texts = [("the film was great and the cast", "it was really very superb"),
             ("the film was dull and the plot", "and it was really awful")]  # words of the vocabulary
    data = TextDataModule((texts, [1, 0]), (texts, [1, 0]), demo_tokenizer, batch_size=2)
    probe = probe_from_dataloader(data.val_dataloader(), 2, 0, tokenizer=demo_tokenizer)
    view = ConfirmationView(probe, SpecialTokens.from_tokenizer(demo_tokenizer))
    edits = FEATURES.get_or_raise("position").edits("last", view, ANY_CLASS, [1, 0], [], lambda w: None, 0, 64)
    assert all(len(edits[kind]) == 2 for kind in ("deletion", "insertion", "control_deletion", "control_insertion"))
    for kind, moved in edits.items():
        for edit in moved:
            first, second = demo_tokenizer.decode(list(edit.sequence.ids)).split("[SEP]")[:2]
            original_first, original_second = texts[view.indices[edit.row]]
            assert first.replace("[CLS]", "").strip() == original_first, kind  # the first text is untouched
            assert sorted(second.split()) == sorted(original_second.split()), kind  # the same words, moved
