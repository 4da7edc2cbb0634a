import pytest
import torch

from conftest import SPECIAL, random_batch
from lightning_saliency.attribution import attribute

METHODS = ("integrated_gradients", "gradient", "gradient_x_input", "smoothgrad", "occlusion")


def run(model, batch, **options):
    return attribute(model, batch, METHODS, special_tokens=SPECIAL, n_steps=8, smoothgrad_samples=3, **options)


def test_batched_equals_one_by_one(model):
    batch = random_batch(batch=5, seq=14)
    together = run(model, batch)
    for i in range(5):
        length = int(batch["attention_mask"][i].sum())
        single = {k: v[i : i + 1, :length] for k, v in batch.items()}
        alone = run(model, single)
        for name in METHODS:
            assert torch.allclose(together[name].scores[i, :length], alone[name].scores[0], atol=2e-5, rtol=1e-4), name
        assert torch.allclose(together["integrated_gradients"].delta[i], alone["integrated_gradients"].delta[0], atol=2e-5)


@pytest.mark.parametrize("max_tokens", [12, 40, 100])
def test_chunking_and_bucketing_do_not_change_results(model, max_tokens):
    batch = random_batch(batch=6, seq=12)
    reference = run(model, batch, bucket=False, max_tokens=10_000)
    chunked = run(model, batch, max_tokens=max_tokens)
    for name in METHODS:
        assert torch.allclose(reference[name].scores, chunked[name].scores, atol=2e-5, rtol=1e-4), name


def test_chunks_respect_token_budget(model):
    batch = random_batch(batch=6, seq=12)
    seen = []

    def forward(m, inputs):
        seen.append(inputs["input_ids"].numel())
        return m(**inputs)

    attribute(model, batch, "integrated_gradients", special_tokens=SPECIAL, n_steps=16, forward_fn=forward, max_tokens=64)
    assert max(seen) <= 64
    unpadded = sum(int(n) for n in batch["attention_mask"].sum(1)) * (16 + 2)
    padded = batch["input_ids"].numel() * (16 + 2)
    # Length bucketing: only chunks that straddle two lengths carry any padding.
    assert unpadded <= sum(seen) <= 1.05 * unpadded < padded


def test_single_row_larger_than_budget_still_runs(model, batch):
    result = attribute(model, batch, "gradient", special_tokens=SPECIAL, max_tokens=1)
    assert result["gradient"].scores.shape == batch["input_ids"].shape


def test_rows_of_very_different_lengths_do_not_share_a_padded_chunk(model):
    from lightning_saliency.attribution.context import AttributionConfig, AttributionContext
    from lightning_saliency.attribution.evaluator import PADDING_SHARE, SMALL_CHUNK, Job
    from lightning_saliency.attribution.targets import TargetSpec

    ids = torch.full((2, 60), 7)
    ids[:, 0], ids[0, 59], ids[1, 9] = 1, 2, 2
    mask = torch.ones_like(ids)
    mask[1, 10:] = 0  # example 0: 60 tokens, example 1: 10
    ctx = AttributionContext(model, {"input_ids": ids * mask, "attention_mask": mask}, config=AttributionConfig(),
                             spec=TargetSpec(), special_tokens=SPECIAL)
    jobs = [Job(0, k) for k in range(40)] + [Job(1, k) for k in range(60)]
    chunks = ctx.evaluator.chunks(jobs)
    for chunk in chunks:
        lengths = [ctx.evaluator.lengths[job.example] for job in chunk]
        padded, real = max(lengths) * len(chunk), sum(lengths)
        assert padded <= 4096 and (padded <= SMALL_CHUNK or padded - real <= PADDING_SHARE * padded)
    # The 60 short rows fill one chunk (600 tokens); the long ones do not join it as 68 padded rows would.
    assert [len(c) for c in chunks] == [60, 40]
