"""ERASER faithfulness against a direct computation with masked token ids, and the passes it saves."""
import math

import pytest
import torch

from conftest import SPECIAL, random_batch
from lightning_saliency.attribution import attribute
from lightning_saliency.attribution.faithfulness import erasure_faithfulness

FRACTIONS = (0.1, 0.2, 0.5)


def reference(model, batch, scores, targets, removal):
    """ERASER by hand, one example and one row at a time: the top ceil(q n) regular tokens deleted
    from the ids (or pad ids in their place) for comprehensiveness, everything else for sufficiency."""
    ids, mask = batch["input_ids"], batch["attention_mask"]
    tables = {kind: torch.zeros(len(ids), len(FRACTIONS)) for kind in ("comprehensiveness", "sufficiency")}
    with torch.no_grad():
        full = model(**batch).logits.softmax(-1)
        for i in range(len(ids)):
            real = [p for p in range(ids.shape[1]) if mask[i, p]]
            regular = [p for p in real if int(ids[i, p]) not in SPECIAL.special_ids]
            order = sorted(regular, key=lambda p: (-float(scores[i, p]), p))
            for f, q in enumerate(FRACTIONS):
                k = max(1, math.ceil(q * len(order)))
                for kind, removed in (("comprehensiveness", order[:k]), ("sufficiency", order[k:])):
                    if removal == "delete":
                        kept = [p for p in real if p not in removed]
                        row = {key: value[i:i + 1, kept] for key, value in batch.items()}
                    else:
                        row = {key: value[i:i + 1] for key, value in batch.items()}
                        row["input_ids"] = row["input_ids"].clone()
                        row["input_ids"][0, removed] = SPECIAL.pad_id
                    p = model(**row).logits.softmax(-1)[0, targets[i]]
                    tables[kind][i, f] = full[i, targets[i]] - p
    return tables


class RowCounter:
    def __init__(self, model):
        self.rows = 0
        model.bert.embeddings.word_embeddings.register_forward_hook(self.hook)

    def hook(self, module, inputs, output):
        self.rows += output.shape[0]


@pytest.mark.parametrize("removal", ["delete", "baseline"])
def test_erasure_matches_editing_the_ids_by_hand_and_reuses_the_known_prediction(model, batch, removal):
    result = attribute(model, batch, ("gradient",), special_tokens=SPECIAL)
    rankings = {"gradient": result["gradient"].scores}
    counter = RowCounter(model)
    plain = erasure_faithfulness(model, batch, rankings, target=result.target, special_tokens=SPECIAL,
                                 random_control=False, removal=removal)
    rows_plain = counter.rows
    counter.rows = 0
    reused = erasure_faithfulness(model, batch, rankings, target=result.target, special_tokens=SPECIAL,
                                  random_control=False, reference_probability=result.probability, removal=removal)
    # The unmasked pass is the attribution run's: one row per example fewer (plus the embedding
    # lookups of the inputs and baselines, which are no model passes).
    assert counter.rows == rows_plain - len(batch["input_ids"])
    expected = reference(model, batch, result["gradient"].scores, result.target, removal)
    for kind in ("comprehensiveness", "sufficiency"):
        torch.testing.assert_close(plain["gradient"][kind], expected[kind], atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(reused["gradient"][kind], expected[kind], atol=1e-5, rtol=1e-4)


def test_deletion_sends_shorter_rows_than_baseline_replacement(model):
    batch = random_batch(seq=40)
    result = attribute(model, batch, ("gradient",), special_tokens=SPECIAL)
    tokens = {}
    for removal in ("delete", "baseline"):
        seen = []

        def forward(m, inputs):  # the real (unpadded) tokens of every pass
            seen.append(int(inputs["attention_mask"].sum()))
            return m(**inputs)

        erasure_faithfulness(model, batch, {"gradient": result["gradient"].scores}, target=result.target,
                             reference_probability=result.probability, special_tokens=SPECIAL, removal=removal,
                             forward_fn=forward)
        tokens[removal] = sum(seen)
    # Per ranking, the rows keep (0.9 + 0.8 + 0.5) + (0.1 + 0.2 + 0.5) = 3 of the 6 example lengths
    # that baseline replacement sends (plus their special tokens).
    assert tokens["delete"] < 0.6 * tokens["baseline"]


def test_deleting_every_token_leaves_the_baseline_token_and_bad_arguments_fail_early(model):
    from lightning_saliency.attribution import SpecialTokens

    plain = SpecialTokens(pad_id=0)  # no [CLS]/[SEP]: removing the whole rationale leaves nothing
    ids = torch.tensor([[7, 8, 9, 10]])
    result = attribute(model, ids, ("gradient",), special_tokens=plain)
    scores = erasure_faithfulness(model, ids, {"gradient": result["gradient"].scores}, fractions=(1.0,),
                                  special_tokens=plain, random_control=False)
    with torch.no_grad():
        full = model(input_ids=ids).logits.softmax(-1)[0, result.target[0]]
        alone = model(input_ids=torch.tensor([[0]])).logits.softmax(-1)[0, result.target[0]]
    assert float(scores["gradient"]["comprehensiveness"][0, 0]) == pytest.approx(float(full - alone), abs=1e-5)
    assert float(scores["gradient"]["sufficiency"][0, 0]) == pytest.approx(0.0, abs=1e-5)
    with pytest.raises(ValueError, match="removal must be one of"):
        erasure_faithfulness(model, ids, {}, removal="mask", special_tokens=plain)
    with pytest.raises(ValueError, match="fractions must be in"):
        erasure_faithfulness(model, ids, {}, fractions=(0.0,), special_tokens=plain)


def test_identical_masked_rows_go_through_the_model_once(model, batch):
    result = attribute(model, batch, ("gradient",), special_tokens=SPECIAL)
    scores = result["gradient"].scores
    counter = RowCounter(model)
    one = erasure_faithfulness(model, batch, {"a": scores}, target=result.target, special_tokens=SPECIAL,
                               random_control=False, reference_probability=result.probability)
    rows_one = counter.rows
    counter.rows = 0
    two = erasure_faithfulness(model, batch, {"a": scores, "b": scores.clone()}, target=result.target,
                               special_tokens=SPECIAL, random_control=False, reference_probability=result.probability)
    assert counter.rows == rows_one  # the second, identical ranking costs no model rows
    for kind in ("comprehensiveness", "sufficiency"):
        assert torch.equal(two["a"][kind], one["a"][kind]) and torch.equal(two["b"][kind], one["a"][kind])


def test_deletion_in_multiple_choice_inputs_closes_up_each_choice_on_its_own():
    from transformers import BertConfig, BertForMultipleChoice

    torch.manual_seed(0)
    config = BertConfig(vocab_size=60, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=37, max_position_embeddings=64, initializer_range=0.3)
    model = BertForMultipleChoice(config).eval()
    batch = {k: v.view(2, 3, 10) for k, v in random_batch(batch=6, seq=10).items()}  # choices of 10, 7, 4 tokens
    scores = torch.randn(2, 3, 10, generator=torch.Generator().manual_seed(3))
    target = torch.tensor([2, 0])
    got = erasure_faithfulness(model, batch, {"r": scores}, fractions=(0.5,), target=target, task="multiple_choice",
                               special_tokens=SPECIAL, random_control=False)
    ids, mask = batch["input_ids"], batch["attention_mask"]
    with torch.no_grad():
        full = model(**batch).logits.softmax(-1)
        for i in range(2):
            flat = [(c, p) for c in range(3) for p in range(10)
                    if mask[i, c, p] and int(ids[i, c, p]) not in SPECIAL.special_ids]
            order = sorted(flat, key=lambda cp: -float(scores[i, cp[0], cp[1]]))
            k = math.ceil(0.5 * len(order))
            for kind, removed in (("comprehensiveness", set(order[:k])), ("sufficiency", set(order[k:]))):
                kept = [[p for p in range(10) if mask[i, c, p] and (c, p) not in removed] for c in range(3)]
                width = max(len(k_) for k_ in kept)
                row = {}
                for key, value in batch.items():
                    fill = SPECIAL.pad_id if key == "input_ids" else 0
                    row[key] = torch.stack([torch.cat([value[i, c, kept[c]],
                                                       torch.full((width - len(kept[c]),), fill)]) for c in range(3)])[None]
                row["attention_mask"] = torch.stack([torch.tensor([1] * len(kept[c]) + [0] * (width - len(kept[c])))
                                                     for c in range(3)])[None]
                expected = full[i, target[i]] - model(**row).logits.softmax(-1)[0, target[i]]
                assert float(got["r"][kind][i, 0]) == pytest.approx(float(expected), abs=1e-5), (i, kind)
