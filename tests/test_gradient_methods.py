import pytest
import torch

from conftest import SPECIAL
from lightning_saliency.attribution import attribute, gradient, occlusion, smoothgrad


def direct_gradient(model, batch, target):
    layer = model.get_input_embeddings()
    captured = {}

    def keep(module, args, output):
        output.retain_grad()
        captured["emb"] = output

    handle = layer.register_forward_hook(keep)
    logits = model(**batch).logits
    handle.remove()
    score = logits.gather(1, target.view(-1, 1)).sum()
    (grad,) = torch.autograd.grad(score, captured["emb"])
    return grad, captured["emb"].detach()


@pytest.mark.parametrize("norm", ["l2", "l1", "sum"])
def test_gradient_matches_direct_autograd(model, batch, norm):
    result = attribute(model, batch, ("gradient", "gradient_x_input"), special_tokens=SPECIAL, gradient_norm=norm)
    grad, emb = direct_gradient(model, batch, result.target)
    mask = batch["attention_mask"].bool()
    expected = {"l2": grad.norm(dim=-1), "l1": grad.abs().sum(-1), "sum": grad.sum(-1)}[norm] * mask
    # BERT's embedding LayerNorm makes the gradient sum to zero over the hidden units: "sum" is then
    # float32 rounding of terms as large as |grad|_1, which any other chunking rounds differently.
    scale = float(grad.abs().sum(-1).max())
    assert torch.allclose(result["gradient"].scores, expected, atol=1e-7 * scale, rtol=1e-4)
    assert torch.allclose(result["gradient_x_input"].scores, (grad * emb).sum(-1) * mask, atol=1e-6, rtol=1e-4)


def test_shared_sweep_gives_same_gradients_as_separate_call(model, batch):
    together = attribute(model, batch, ("integrated_gradients", "gradient", "gradient_x_input"), special_tokens=SPECIAL)
    alone = attribute(model, batch, ("gradient", "gradient_x_input"), special_tokens=SPECIAL)
    for name in ("gradient", "gradient_x_input"):  # the same rows in other chunks: float32 rounding apart
        torch.testing.assert_close(together[name].scores, alone[name].scores, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("rule,extra_rows", [("gauss_legendre", 1), ("trapezoid", 0)])
def test_gradient_rides_on_the_ig_sweep(model, batch, rule, extra_rows):
    rows = []
    forward = lambda m, inputs: (rows.append(inputs["input_ids"].shape[0]), m(**inputs))[1]  # noqa: E731
    attribute(model, batch, ("integrated_gradients", "gradient", "gradient_x_input"), special_tokens=SPECIAL,
              forward_fn=forward, n_steps=8, rule=rule)
    size = batch["input_ids"].shape[0]
    assert sum(rows) == size * (2 + 8 + extra_rows)  # end points + path (+ one row at alpha=1)


def test_raw_attributions_sum_to_scores(model, batch):
    result = attribute(model, batch, ("integrated_gradients", "gradient_x_input"), special_tokens=SPECIAL, return_raw=True)
    for name in ("integrated_gradients", "gradient_x_input"):
        method = result[name]
        assert method.raw.shape == (*batch["input_ids"].shape, 32)
        assert torch.allclose(method.raw.sum(-1), method.scores, atol=1e-5)


def test_smoothgrad_is_seeded_and_leaves_global_rng(model, batch):
    state = torch.get_rng_state()
    first = smoothgrad(model, batch, special_tokens=SPECIAL, smoothgrad_samples=4, seed=3)
    assert torch.equal(torch.get_rng_state(), state)
    second = smoothgrad(model, batch, special_tokens=SPECIAL, smoothgrad_samples=4, seed=3)
    other = smoothgrad(model, batch, special_tokens=SPECIAL, smoothgrad_samples=4, seed=4)
    assert torch.equal(first.scores, second.scores)
    assert not torch.equal(first.scores, other.scores)
    plain = gradient(model, batch, special_tokens=SPECIAL)
    zero_noise = smoothgrad(model, batch, special_tokens=SPECIAL, smoothgrad_samples=2, smoothgrad_stdev=0.0)
    assert torch.allclose(plain.scores, zero_noise.scores, atol=1e-6)


def test_occlusion_matches_manual_leave_one_out(model, batch):
    result = occlusion(model, batch, special_tokens=SPECIAL, baseline="mask")
    with torch.no_grad():
        probs = model(**batch).logits.softmax(-1)
        target = probs.argmax(-1)
        for i, j in [(0, 3), (1, 1), (3, 2)]:
            ids = batch["input_ids"].clone()
            ids[i, j] = SPECIAL.mask_id
            occluded = model(**{**batch, "input_ids": ids}).logits.softmax(-1)
            expected = probs[i, target[i]] - occluded[i, target[i]]
            assert result.scores[i, j].item() == pytest.approx(expected.item(), abs=1e-5)
    special = torch.isin(batch["input_ids"], torch.tensor([0, 1, 2]))
    assert torch.all(result.scores[special] == 0)


def test_attention_received_matches_eager_model(model, batch):
    result = attribute(model, batch, "attention", special_tokens=SPECIAL, attention_layers="mean")
    assert model.config._attn_implementation == "sdpa"  # switched to eager for the call and back
    model.set_attn_implementation("eager")
    with torch.no_grad():
        maps = model(**batch, output_attentions=True).attentions
    averaged = torch.stack(maps).mean(dim=(0, 2))  # (batch, query, key)
    lengths = batch["attention_mask"].sum(1)
    for i, n in enumerate(lengths.tolist()):
        expected = averaged[i, :n, :n].mean(0)
        assert torch.allclose(result["attention"].scores[i, :n], expected, atol=1e-5)


def test_attention_needs_a_model_that_returns_weights(batch):
    class NoAttention(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = torch.nn.Embedding(60, 8)
            self.head = torch.nn.Linear(8, 2)

        def forward(self, input_ids, attention_mask=None, token_type_ids=None, **kwargs):
            return self.head(self.embed(input_ids).mean(1))

    with pytest.raises(ValueError, match="attention weights"):
        attribute(NoAttention(), batch, "attention", special_tokens=SPECIAL)


def test_probability_output_and_explicit_target(model, batch):
    result = attribute(model, batch, "integrated_gradients", special_tokens=SPECIAL, output="probability", target=2, n_steps=64)
    assert torch.equal(result.target, torch.full((4,), 2))
    with torch.no_grad():
        probs = model(**batch).logits.softmax(-1)[:, 2]
    assert torch.allclose(result.target_score, probs, atol=1e-6)
    ig = result["integrated_gradients"]
    assert torch.all(ig.relative_delta(result.target_score, result.baseline_score) < 5e-3)
