import pytest
import torch

from conftest import SPECIAL
from lightning_saliency.attribution import METHODS, attribute


def snapshot(model):
    return {
        "modes": [m.training for m in model.modules()],
        "requires_grad": [p.requires_grad for p in model.parameters()],
        "grads": [None if p.grad is None else p.grad.clone() for p in model.parameters()],
        "params": [p.detach().clone() for p in model.parameters()],
        "rng": torch.get_rng_state(),
        "grad_enabled": torch.is_grad_enabled(),
        "inference": torch.is_inference_mode_enabled(),
    }


def assert_same(before, after):
    assert before["modes"] == after["modes"]
    assert before["requires_grad"] == after["requires_grad"]
    for a, b in zip(before["grads"], after["grads"]):
        assert (a is None and b is None) or torch.equal(a, b)
    for a, b in zip(before["params"], after["params"]):
        assert torch.equal(a, b)
    assert torch.equal(before["rng"], after["rng"])
    assert before["grad_enabled"] == after["grad_enabled"]
    assert before["inference"] == after["inference"]


def train_mode_model_with_accumulated_grads(model, batch):
    model.train()
    model.bert.encoder.layer[0].eval()  # a mixed mode tree must be restored module by module
    model.classifier.weight.requires_grad_(False)
    loss = model(**batch).logits.sum()
    loss.backward()  # accumulated gradients, as under gradient accumulation
    return model


@pytest.mark.parametrize("mode", ["plain", "no_grad", "inference_mode"])
def test_every_method_leaves_no_trace(model, batch, mode):
    model = train_mode_model_with_accumulated_grads(model, batch)
    context = {"plain": torch.enable_grad, "no_grad": torch.no_grad, "inference_mode": torch.inference_mode}[mode]
    with context():
        if mode == "inference_mode":
            batch = {k: v.clone() for k, v in batch.items()}  # inference tensors, as Trainer.validate makes them
            assert batch["input_ids"].is_inference()
        before = snapshot(model)
        result = attribute(model, batch, METHODS, special_tokens=SPECIAL, n_steps=4, smoothgrad_samples=2)
        after = snapshot(model)
    assert_same(before, after)
    assert set(result.methods) == set(METHODS)


def test_dropout_is_off_during_attribution(model, batch):
    model.train()
    first = attribute(model, batch, ("integrated_gradients", "gradient"), special_tokens=SPECIAL, n_steps=8)
    second = attribute(model, batch, ("integrated_gradients", "gradient"), special_tokens=SPECIAL, n_steps=8)
    model.eval()
    evaluated = attribute(model, batch, ("integrated_gradients", "gradient"), special_tokens=SPECIAL, n_steps=8)
    for name in ("integrated_gradients", "gradient"):
        assert torch.equal(first[name].scores, second[name].scores)
        assert torch.allclose(first[name].scores, evaluated[name].scores, atol=1e-6)


def test_restores_state_when_attribution_fails(model, batch):
    model.train()
    before = snapshot(model)

    def failing_forward(m, inputs):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        attribute(model, batch, "gradient", special_tokens=SPECIAL, forward_fn=failing_forward)
    assert_same(before, snapshot(model))
    assert not model.bert.embeddings.word_embeddings._forward_hooks
