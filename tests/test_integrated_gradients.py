import pytest
import torch

from lightning_saliency.attribution import AttributionConfig
from captum.attr import LayerIntegratedGradients

from conftest import SPECIAL, bert_classifier, random_batch
from lightning_saliency.attribution import attribute, integrated_gradients

CAPTUM_RULES = {"gauss_legendre": "gausslegendre", "trapezoid": "riemann_trapezoid"}


def captum_ig(model, batch, target, rule, n_steps, baseline_id=0):
    ids, mask = batch["input_ids"], batch["attention_mask"]
    special = torch.isin(ids, torch.tensor(sorted(SPECIAL.special_ids)))
    baseline = torch.where(mask.bool() & ~special, torch.full_like(ids, baseline_id), ids)

    def forward(input_ids, attention_mask, token_type_ids):
        return model(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids).logits

    lig = LayerIntegratedGradients(forward, model.bert.embeddings.word_embeddings)
    attr, delta = lig.attribute(
        ids, baselines=baseline, target=target, additional_forward_args=(mask, batch["token_type_ids"]),
        n_steps=n_steps, method=CAPTUM_RULES[rule], return_convergence_delta=True,
    )
    return attr.sum(-1), delta


@pytest.mark.parametrize("rule", ["gauss_legendre", "trapezoid"])
@pytest.mark.parametrize("baseline,baseline_id", [("pad", 0), ("mask", 3)])
def test_matches_captum_layer_integrated_gradients(model, batch, rule, baseline, baseline_id):
    ours = attribute(model, batch, "integrated_gradients", special_tokens=SPECIAL, rule=rule, n_steps=32, baseline=baseline)
    reference, reference_delta = captum_ig(model, batch, ours.target, rule, 32, baseline_id)
    if rule == "trapezoid":
        # captum's riemann_trapezoid weights are 1/n with halved ends, summing to (n-1)/n; ours sum to 1
        # (the textbook rule), so captum's attributions are uniformly (n-1)/n of ours.
        reference = reference * 32 / 31
        reference_delta = None
    scores = ours["integrated_gradients"].scores
    scale = reference.abs().max()
    assert torch.allclose(scores, reference, rtol=1e-4, atol=1e-4 * scale)
    if reference_delta is not None:
        assert torch.allclose(ours["integrated_gradients"].delta, reference_delta, atol=1e-4 * scale)


def test_zero_baseline_keeps_special_tokens(model, batch):
    ig = attribute(model, batch, "integrated_gradients", special_tokens=SPECIAL, baseline="zero", n_steps=16)
    # Special tokens are identical in input and baseline, so their attribution is exactly 0.
    assert torch.all(ig["integrated_gradients"].scores[ig.special_mask] == 0)
    assert torch.all(ig["integrated_gradients"].scores[~ig.attention_mask] == 0)


@pytest.mark.parametrize("tolerance", [0.05, 0.01, 0.002])
def test_adaptive_mode_meets_completeness_tolerance(model, batch, tolerance):
    result = attribute(model, batch, "integrated_gradients", special_tokens=SPECIAL, tolerance=tolerance, max_steps=257)
    ig = result["integrated_gradients"]
    relative = ig.relative_delta(result.target_score, result.baseline_score)
    converged = ig.steps < 257
    assert converged.all(), ig.steps
    assert torch.all((relative <= tolerance) | (ig.delta.abs() <= 1e-5))
    assert torch.all(ig.steps >= AttributionConfig().min_steps)  # the first rule: 3 Gauss points


def test_adaptive_mode_stops_at_step_cap():
    model = bert_classifier(init=1.5).eval()
    batch = random_batch()
    ig = integrated_gradients(model, batch, special_tokens=SPECIAL, tolerance=1e-6, min_steps=3, max_steps=9)
    assert int(ig.steps.max()) <= 9
    assert ig.delta is not None


def test_adaptive_mode_reuses_evaluations(model, batch):
    calls = []
    forward = lambda m, inputs: (calls.append(inputs["input_ids"].shape[0]), m(**inputs))[1]  # noqa: E731
    result = attribute(model, batch, "integrated_gradients", special_tokens=SPECIAL, tolerance=0.01, forward_fn=forward)
    evaluated_rows = sum(calls) - 2 * batch["input_ids"].shape[0]  # minus the end-point forward pass
    assert evaluated_rows == int(result["integrated_gradients"].steps.sum())


def test_completeness_with_many_fixed_steps(model, batch):
    result = attribute(model, batch, "integrated_gradients", special_tokens=SPECIAL, n_steps=64)
    ig = result["integrated_gradients"]
    assert torch.all(ig.relative_delta(result.target_score, result.baseline_score) < 1e-3)
    assert torch.equal(ig.steps, torch.full((4,), 64))


def test_adaptive_ig_agrees_with_fixed_step_ig_where_both_converge(model, batch):
    """On examples that already converge, refining where the integrand is steep changes nothing that
    matters: each token's score equals 128-step Gauss-Legendre IG's within the tolerance's share of
    the example's largest score."""
    fixed = attribute(model, batch, "integrated_gradients", special_tokens=SPECIAL, n_steps=128)
    adaptive = attribute(model, batch, "integrated_gradients", special_tokens=SPECIAL, tolerance=0.01, max_steps=257)
    a, f = adaptive["integrated_gradients"].scores, fixed["integrated_gradients"].scores
    scale = f.abs().amax(dim=1, keepdim=True)
    assert torch.all((a - f).abs() <= 0.02 * scale + 1e-6), ((a - f).abs() / scale).amax(dim=1)
    assert torch.all(adaptive["integrated_gradients"].steps < 128)  # and it needed fewer gradients
