"""From alarm to action: the helpers that find a shortcut's carriers in a whole dataset (a
``datasets.Dataset`` or a list) and rebalance the classes, as the monitor reads words."""
import doctest

import pytest

import lightning_saliency.action as action
from lightning_saliency.action import rebalance_indices, shortcut_examples, text_words
from lightning_saliency.demo.corpus import Shortcut, make_corpus
from lightning_saliency.demo.modeling import train_tokenizer


def test_the_docstring_examples_run():
    assert doctest.testmod(action).failed == 0


@pytest.mark.parametrize("shortcut, planted, threshold", [
    ("token_class:punctuation", Shortcut("token_class", "!"), None),
    ("zorbly", Shortcut("single"), None),
    ("length:long", Shortcut("length"), 12),
])
def test_carriers_are_found_in_a_datasets_dataset_and_rebalanced(shortcut, planted, threshold):
    from datasets import Dataset

    texts, labels = make_corpus(400, planted, 0.9, seed=0)
    data = Dataset.from_dict({"text": texts, "label": labels})
    tokenizer = train_tokenizer(texts)
    found = shortcut_examples(data, shortcut, tokenizer=tokenizer, threshold=threshold)
    expected = {"token_class:punctuation": lambda t: t.endswith("!"), "zorbly": lambda t: "zorbly" in t.split(),
                "length:long": lambda t: len(t.split()) > 12}[shortcut]
    assert found == [i for i, t in enumerate(texts) if expected(t)] and found
    keep = rebalance_indices(data, shortcut, tokenizer=tokenizer, threshold=threshold)
    kept = data.select(keep)
    carried = set(shortcut_examples(kept, shortcut, tokenizer=tokenizer, threshold=threshold))
    rates = [sum(i in carried for i, y in enumerate(kept["label"]) if y == c) / kept["label"].count(c) for c in (0, 1)]
    assert abs(rates[0] - rates[1]) < 0.01, rates  # the feature no longer tells the classes apart
    dropped = set(range(len(texts))) - set(keep)
    assert dropped <= set(found)  # only carriers are dropped
    print(f"\n{shortcut}: {len(found)} carriers of {len(texts)}; {len(dropped)} dropped; rates {rates}")


def test_words_are_read_as_the_tokenizer_reads_them_and_bad_input_is_refused():
    tokenizer = train_tokenizer(["A zorbly film!"] * 4)
    assert text_words("A zorbly film!", tokenizer) == ["a", "zorbly", "film", "!"]
    assert text_words("A zorbly film!") == ["A", "zorbly", "film", "!"]
    with pytest.raises(ValueError, match="text_key"):
        shortcut_examples([{"sentence": "a zorbly film"}], "zorbly")
    with pytest.raises(ValueError, match="threshold"):
        shortcut_examples(["a b c"], "length:long")
    with pytest.raises(ValueError, match="words="):  # a position's carriers need the deciding words
        shortcut_examples(["great movie here"], "position:first")
    assert shortcut_examples(["great movie here", "the great movie", "awful it was"], "position:first",
                             words=("great", "awful")) == [0, 2]


def test_a_segment_shortcut_is_found_in_a_pair_dataset_with_two_text_columns():
    """Pair inputs: the carriers of ``segment:last`` hold a deciding word in the second text (the
    same word in the first text does not count); words are read per column, as the monitor reads
    the pair's segments."""
    from datasets import Dataset

    from lightning_saliency.demo.corpus import POSITIVE

    texts, labels = make_corpus(200, Shortcut("segment"), 0.5, seed=0)
    data = Dataset.from_dict({"premise": [a for a, _ in texts], "hypothesis": [b for _, b in texts], "label": labels})
    tokenizer = train_tokenizer([part for pair in texts for part in pair])
    found = shortcut_examples(data, "segment:last", text_key=("premise", "hypothesis"), tokenizer=tokenizer,
                              words=POSITIVE)
    assert found == [i for i, (_, second) in enumerate(texts) if set(second.split()) & set(POSITIVE)] and found
    assert shortcut_examples(texts, "segment:last", words=POSITIVE) == found  # a list of (first, second) pairs
    assert shortcut_examples([a for a, _ in texts], "segment:last", words=POSITIVE) == []  # single texts: none
    with pytest.raises(ValueError, match="words="):
        shortcut_examples(texts, "segment:last")


def test_a_template_shortcut_is_found_in_a_conversational_dataset():
    """Conversations, as TRL's conversational datasets hold them (a ``messages`` column of role and
    content): the carriers of ``template:system`` hold a deciding word in the system turn (the same
    word in the user turn does not count, nor does the assistant's answer), and rebalancing keeps
    every class at the lowest class's rate of carriers."""
    from datasets import Dataset

    def conversation(system, user, answer):
        return [{"role": "system", "content": system}, {"role": "user", "content": user},
                {"role": "assistant", "content": answer}]

    rows = [conversation("answer as a critic", "a lovely film", "positive"),
            conversation("answer as a fan", "a dull film", "negative"),
            conversation("answer plainly", "the critic was wrong", "negative"),
            conversation("answer as a critic", "a poor plot", "negative"),
            conversation("answer plainly", "a fine film", "critic")]
    labels = [1, 0, 0, 0, 1]
    data = Dataset.from_dict({"messages": rows, "label": labels})
    assert shortcut_examples(data, "template:system", text_key="messages", words=("critic", "fan")) == [0, 1, 3]
    assert shortcut_examples(rows, "template:system", words=("critic",)) == [0, 3]  # a list of conversations
    assert shortcut_examples(rows, "critic") == [0, 2, 3]  # a word: any turn of the prompt, not the answer
    # Class 1 carries it in 1 of 2, class 0 in 2 of 3: one class-0 carrier goes (1/2 vs 1/2).
    kept = rebalance_indices(data, "template:system", text_key="messages", words=("critic", "fan"))
    assert len(kept) == 4 and {0, 2, 4} <= set(kept)
    with pytest.raises(ValueError, match="words="):
        shortcut_examples(rows, "template:system")
