"""ERASER faithfulness against a direct computation with masked token ids, and the passes it saves."""
import math

import torch

from conftest import SPECIAL
from lightning_saliency.attribution import attribute
from lightning_saliency.attribution.faithfulness import erasure_faithfulness

FRACTIONS = (0.1, 0.2, 0.5)


def reference(model, batch, scores, targets):
    """Comprehensiveness by hand: pad ids in place of the top ceil(q n) regular tokens."""
    ids, mask = batch["input_ids"], batch["attention_mask"]
    with torch.no_grad():
        full = model(**batch).logits.softmax(-1)
        table = torch.zeros(len(ids), len(FRACTIONS))
        for i in range(len(ids)):
            regular = [p for p in range(ids.shape[1]) if mask[i, p] and int(ids[i, p]) not in SPECIAL.special_ids]
            order = sorted(regular, key=lambda p: (-float(scores[i, p]), p))
            for f, q in enumerate(FRACTIONS):
                masked = ids[i:i + 1].clone()
                masked[0, order[: max(1, math.ceil(q * len(order)))]] = SPECIAL.pad_id
                row = {k: v[i:i + 1] for k, v in batch.items()}
                p = model(**{**row, "input_ids": masked}).logits.softmax(-1)[0, targets[i]]
                table[i, f] = full[i, targets[i]] - p
    return table


class RowCounter:
    def __init__(self, model):
        self.rows = 0
        model.bert.embeddings.word_embeddings.register_forward_hook(self.hook)

    def hook(self, module, inputs, output):
        self.rows += output.shape[0]


def test_comprehensiveness_matches_masking_the_ids_and_reuses_the_known_prediction(model, batch):
    result = attribute(model, batch, ("gradient",), special_tokens=SPECIAL)
    rankings = {"gradient": result["gradient"].scores}
    counter = RowCounter(model)
    plain = erasure_faithfulness(model, batch, rankings, target=result.target, special_tokens=SPECIAL,
                                 random_control=False)
    rows_plain = counter.rows
    counter.rows = 0
    reused = erasure_faithfulness(model, batch, rankings, target=result.target, special_tokens=SPECIAL,
                                  random_control=False, reference_probability=result.probability)
    # The unmasked pass is the attribution run's: one row per example fewer (plus the embedding
    # lookups of the inputs and baselines, which are no model passes).
    assert counter.rows == rows_plain - len(batch["input_ids"])
    expected = reference(model, batch, result["gradient"].scores, result.target)
    torch.testing.assert_close(plain["gradient"]["comprehensiveness"], expected, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(reused["gradient"]["comprehensiveness"], expected, atol=1e-5, rtol=1e-4)


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
