import pytest
import torch

from conftest import bert_classifier
from lightning_saliency.attribution import attribute, merge_subwords


def test_merge_sum_and_max_abs():
    scores = torch.tensor([0.0, 0.5, -0.2, 0.1, 0.3, 0.0, 0.0])
    word_ids = [None, 0, 0, 1, 2, None, None]
    mask = torch.tensor([1, 1, 1, 1, 1, 1, 0])
    merged = merge_subwords(scores, word_ids, attention_mask=mask)
    assert merged.positions == [[0], [1, 2], [3], [4], [5]]
    assert merged.special.tolist() == [True, False, False, False, True]
    assert torch.allclose(merged.scores, torch.tensor([0.0, 0.3, 0.1, 0.3, 0.0]))
    assert merged.scores.sum() == pytest.approx(float(scores[:6].sum()))  # completeness survives "sum"
    maxed = merge_subwords(scores, word_ids, reduce="max_abs", attention_mask=mask)
    assert maxed.scores[1].item() == pytest.approx(0.5)
    with pytest.raises(ValueError, match="word_ids has 2 entries"):
        merge_subwords(scores, [None, 0])


def test_merge_with_a_real_fast_tokenizer(demo_tokenizer):
    encoded = demo_tokenizer(["the zorblyish movie"], return_tensors="pt")
    tokens = demo_tokenizer.convert_ids_to_tokens(encoded["input_ids"][0])
    model = bert_classifier(vocab_size=len(demo_tokenizer), num_labels=2).eval()
    result = attribute(model, encoded, "integrated_gradients", tokenizer=demo_tokenizer, n_steps=16)
    word_ids = encoded.word_ids(0)
    merged = merge_subwords(result["integrated_gradients"].scores[0], word_ids)
    assert len(tokens) > 5  # "zorblyish" is split into several word pieces
    assert int((~merged.special).sum()) == 3
    assert merged.scores.sum().item() == pytest.approx(result["integrated_gradients"].scores[0].sum().item(), abs=1e-6)


def test_word_scores_merge_pieces_into_words():
    from lightning_saliency.schema.words import join_pieces, word_scores

    tokens = ["[CLS]", "the", "z", "##or", "##bly", "film", "[SEP]"]
    words, scores, special = word_scores(tokens, [0.0, 0.1, 0.5, 0.3, 0.2, -0.1, 0.0],
                                         [True, False, False, False, False, False, True], [None, 0, 1, 1, 1, 2, None])
    assert words == ["[CLS]", "the", "zorbly", "film", "[SEP]"] and special == [True, False, False, False, True]
    assert scores[2] == pytest.approx(1.0)  # summed: completeness is kept
    # Unknown boundaries: every token is its own word, never a special one.
    assert word_scores(["a", "b"], [1.0, 2.0], [False, False], [None, None]) == (["a", "b"], [1.0, 2.0], [False, False])
    assert join_pieces(["\u0120zor", "bly"]) == "zorbly" and join_pieces(["\u2581zor", "bly"]) == "zorbly"
