import pytest
import torch
from torch import nn

from conftest import SPECIAL, random_batch
from lightning_saliency.attribution import SpecialTokens, attribute, find_embedding_layer, gradient, integrated_gradients


class LSTMClassifier(nn.Module):
    """A plain PyTorch model: embedding, LSTM, masked mean pooling, linear head."""

    def __init__(self, vocab=60, dim=16, classes=2):
        super().__init__()
        torch.manual_seed(0)
        self.tokens = nn.Embedding(vocab, dim)
        self.lstm = nn.LSTM(dim, dim, batch_first=True)
        self.head = nn.Linear(dim, classes)

    def forward(self, input_ids, attention_mask, token_type_ids=None):
        hidden, _ = self.lstm(self.tokens(input_ids))
        mask = attention_mask.unsqueeze(-1).float()
        return self.head((hidden * mask).sum(1) / mask.sum(1))


def test_plain_pytorch_model(batch):
    model = LSTMClassifier()
    result = attribute(model, batch, ("integrated_gradients", "gradient"), special_tokens=SPECIAL, n_steps=64)
    ig = result["integrated_gradients"]
    assert torch.all(ig.relative_delta(result.target_score, result.baseline_score) < 1e-3)
    one = {k: v[:1, : int(batch["attention_mask"][0].sum())] for k, v in batch.items()}
    single = gradient(model, one, special_tokens=SPECIAL)
    assert torch.allclose(single.scores[0], result["gradient"].scores[0, : one["input_ids"].shape[1]], atol=1e-6)


def test_causal_lm_next_token_target():
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=60, n_embd=32, n_layer=2, n_head=2, n_positions=32)).eval()
    batch = random_batch(batch=3, seq=10)
    result = attribute(model, batch, "integrated_gradients", special_tokens=SPECIAL, task="causal_lm", n_steps=64)
    with torch.no_grad():
        logits = model(**batch).logits
    last = batch["attention_mask"].sum(1) - 1
    expected = logits[torch.arange(3), last].argmax(-1)
    assert torch.equal(result.target, expected)
    ig = result["integrated_gradients"]
    assert torch.all(ig.relative_delta(result.target_score, result.baseline_score) < 2e-3)
    assert torch.all(ig.scores[~batch["attention_mask"].bool()] == 0)


def test_multiple_choice_attributes_the_chosen_choice():
    from transformers import BertConfig, BertForMultipleChoice

    torch.manual_seed(0)
    config = BertConfig(vocab_size=60, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=37, max_position_embeddings=64, initializer_range=0.3)
    model = BertForMultipleChoice(config).eval()
    flat = random_batch(batch=6, seq=10)
    batch = {k: v.view(2, 3, 10) for k, v in flat.items()}
    result = attribute(model, batch, ("integrated_gradients", "gradient"), special_tokens=SPECIAL,
                       task="multiple_choice", target=[2, 0], n_steps=64)
    ig = result["integrated_gradients"]
    assert ig.scores.shape == (2, 3, 10)
    assert torch.all(ig.relative_delta(result.target_score, result.baseline_score) < 2e-3)
    # Only the chosen choice's tokens can move its score.
    assert ig.scores[0, :2].abs().sum() < 1e-6 and ig.scores[0, 2].abs().sum() > 0
    assert ig.scores[1, 1:].abs().sum() < 1e-6 and ig.scores[1, 0].abs().sum() > 0


def test_find_embedding_layer_variants(model):
    assert find_embedding_layer(model) is model.bert.embeddings.word_embeddings
    assert find_embedding_layer(model, "bert.embeddings.word_embeddings") is model.bert.embeddings.word_embeddings
    wrapper = nn.ModuleDict({"backbone": model})
    assert find_embedding_layer(wrapper) is model.bert.embeddings.word_embeddings
    assert find_embedding_layer(LSTMClassifier(), vocab_size=60).num_embeddings == 60
    with pytest.raises(ValueError, match="has no submodule 'word_embedding'"):
        find_embedding_layer(model, "bert.embeddings.word_embedding")

    class TwoTables(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Embedding(60, 4), nn.Embedding(60, 4)

    with pytest.raises(ValueError, match="embedding_layer="):
        find_embedding_layer(TwoTables(), vocab_size=60)


def test_special_tokens_from_tokenizer(demo_tokenizer):
    special = SpecialTokens.from_tokenizer(demo_tokenizer)
    assert special.pad_id == demo_tokenizer.pad_token_id
    assert {demo_tokenizer.cls_token_id, demo_tokenizer.sep_token_id} <= special.special_ids
    assert special.replacement_id("mask") == demo_tokenizer.mask_token_id


def _with(batch, **changes):
    return {**batch, **changes}


@pytest.mark.parametrize(
    "make,message",
    [
        (lambda b: _with(b, input_ids=b["input_ids"][:, :0], attention_mask=b["attention_mask"][:, :0],
                         token_type_ids=b["token_type_ids"][:, :0]), "empty"),
        (lambda b: _with(b, attention_mask=torch.cat([torch.zeros_like(b["attention_mask"][:1]), b["attention_mask"][1:]])),
         "Example 0 is empty"),
        (lambda b: _with(b, input_ids=torch.cat([torch.tensor([[1, 2] + [0] * 10]), b["input_ids"][1:]]),
                         attention_mask=torch.cat([torch.tensor([[1, 1] + [0] * 10]), b["attention_mask"][1:]])),
         "only special tokens"),
        (lambda b: _with(b, input_ids=b["input_ids"].masked_fill(b["input_ids"] == b["input_ids"][0, 3], 600)),
         "outside the embedding layer's range"),
        (lambda b: _with(b, attention_mask=b["attention_mask"][:, :5]), "attention_mask has shape"),
        (lambda b: _with(b, input_ids=b["input_ids"].float()), "integer tensor"),
        (lambda b: _with(b, input_ids=b["input_ids"][0]), "expected \\(batch, seq\\)"),
    ],
)
def test_bad_inputs_raise_clear_errors(model, batch, make, message):
    with pytest.raises(ValueError, match=message):
        integrated_gradients(model, make(batch), special_tokens=SPECIAL, n_steps=2)


def test_output_without_logits_is_rejected(batch):
    from transformers import BertConfig, BertModel

    encoder = BertModel(BertConfig(vocab_size=60, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                   intermediate_size=37, max_position_embeddings=64))
    with pytest.raises(ValueError, match="no logits"):
        gradient(encoder, batch, special_tokens=SPECIAL)


def test_target_out_of_range(model, batch):
    with pytest.raises(ValueError, match="out of range: the model has 3 outputs"):
        gradient(model, batch, special_tokens=SPECIAL, target=3)
    with pytest.raises(ValueError, match="one per example"):
        gradient(model, batch, special_tokens=SPECIAL, target=[0, 1])


def test_unknown_method_and_options(model, batch):
    with pytest.raises(ValueError, match="Unknown attribution method"):
        attribute(model, batch, "lime", special_tokens=SPECIAL)
    with pytest.raises(ValueError, match="Unknown baseline"):
        attribute(model, batch, "gradient", special_tokens=SPECIAL, baseline="blur")
    with pytest.raises(ValueError, match="needs the tokenizer's mask token"):
        attribute(model, batch, "integrated_gradients", special_tokens=SpecialTokens(0, frozenset({0, 1, 2})), baseline="mask")


def test_causal_lm_computes_logits_only_at_the_attributed_positions_with_the_same_result():
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    lm = GPT2LMHeadModel(GPT2Config(vocab_size=97, n_embd=32, n_layer=2, n_head=2, n_positions=32)).eval()
    ids = torch.randint(3, 97, (3, 9))
    mask = torch.ones_like(ids)
    mask[1, 6:], mask[2, 4:] = 0, 0  # three lengths in one chunk: three kept positions
    batch = {"input_ids": ids, "attention_mask": mask}
    seen = []

    def kept(model, inputs):
        seen.append(inputs.get("logits_to_keep"))
        return model(**inputs)

    def full(model, inputs):  # drops the argument: logits for every position, as before
        return model(**{k: v for k, v in inputs.items() if k != "logits_to_keep"})

    special = SpecialTokens(pad_id=0, special_ids=frozenset({0}))
    options = dict(special_tokens=special, task="causal_lm", n_steps=8, methods=("integrated_gradients", "gradient"))
    fast, slow = attribute(lm, batch, forward_fn=kept, **options), attribute(lm, batch, forward_fn=full, **options)
    assert all(k is not None and k.numel() <= 3 for k in seen)  # never every position
    for method in ("integrated_gradients", "gradient"):
        torch.testing.assert_close(fast[method].scores, slow[method].scores, rtol=1e-5, atol=1e-6)
    assert torch.equal(fast.target, slow.target) and torch.equal(fast.predicted, slow.predicted)
