"""task="completion" against captum's LLMGradientAttribution (LayerIntegratedGradients), equal steps.

16 prompts with 8-token completions on a small GPT-2 (random weights: the cost does not depend on
them). captum runs one IG per completion token, one prompt at a time (batch of one, no attention
mask); ours runs one teacher-forced pass per path point for all prompts, chunked by ``max_tokens``.
Both give the same sequence attribution (tests/test_completion.py checks it within 1e-4).

Time: interleaved minimum of 3 repeats each. Memory: each method in a child process of its own,
under glibc's fixed mmap threshold (freed tensors leave the resident set), the peak resident memory
sampled every 2 ms during the call, over the resident memory just before it.

    python benchmarks/bench_completion.py [--steps 32] [--max-tokens 2048]
"""
from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import interleaved  # noqa: E402

from lightning_saliency import attribute  # noqa: E402
from lightning_saliency.demo import Shortcut, make_corpus, train_tokenizer  # noqa: E402

PROMPTS, COMPLETION_TOKENS = 16, 8


def setup():
    from transformers import GPT2Config, GPT2LMHeadModel

    texts, _ = make_corpus(400, Shortcut("single"), seed=0)
    tokenizer = train_tokenizer(texts)
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=len(tokenizer), n_embd=256, n_layer=4, n_head=4,
                                       n_positions=128)).eval()
    rng = random.Random(0)
    pairs = []
    for text in texts[:PROMPTS]:
        prompt = tokenizer.encode(" ".join(text.split()[:16]))
        completion = [rng.randrange(5, len(tokenizer)) for _ in range(COMPLETION_TOKENS)]
        pairs.append((prompt, completion))
    return model, tokenizer, pairs


def batch(pairs, pad_id):
    width = max(len(p) + len(c) for p, c in pairs)
    ids = torch.full((len(pairs), width), pad_id)
    mask, labels = torch.zeros_like(ids), torch.full_like(ids, -100)
    for row, (p, c) in enumerate(pairs):
        ids[row, : len(p) + len(c)] = torch.tensor(p + c)
        mask[row, : len(p) + len(c)] = 1
        labels[row, len(p): len(p) + len(c)] = torch.tensor(c)
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def ours(model, tokenizer, pairs, steps, max_tokens):
    inputs = batch(pairs, tokenizer.pad_token_id)
    return lambda: attribute(model, inputs, ("integrated_gradients",), tokenizer=tokenizer, task="completion",
                             n_steps=steps, max_tokens=max_tokens)


def captum(model, tokenizer, pairs, steps):
    from captum.attr import LayerIntegratedGradients, LLMGradientAttribution, TextTokenInput

    method = LLMGradientAttribution(LayerIntegratedGradients(model, model.get_input_embeddings()), tokenizer)
    special = [tokenizer.cls_token_id, tokenizer.sep_token_id]
    inputs = [(TextTokenInput(tokenizer.decode(p, skip_special_tokens=True), tokenizer,
                              baselines=tokenizer.pad_token_id, skip_tokens=special), torch.tensor(c))
              for p, c in pairs]

    def run():
        for prompt, completion in inputs:
            method.attribute(prompt, target=completion, n_steps=steps)
    return run


def resident_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def child(which: str, steps: int, max_tokens: int) -> None:
    import threading

    model, tokenizer, pairs = setup()
    run = ours(model, tokenizer, pairs, steps, max_tokens) if which == "ours" else captum(model, tokenizer, pairs, steps)
    run()  # warm-up: lazily built kernels and caches are not the method's memory
    before, peak, done = resident_mib(), [0.0], threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], resident_mib())
            done.wait(0.002)

    sampler = threading.Thread(target=sample)
    sampler.start()
    run()
    done.set()
    sampler.join()
    print(json.dumps({"peak_mib": max(peak[0] - before, 0.0)}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=32)
    parser.add_argument("--max-tokens", type=int, default=2048)
    parser.add_argument("--child", choices=["ours", "captum"])
    args = parser.parse_args()
    if args.child:
        return child(args.child, args.steps, args.max_tokens)
    torch.set_num_threads(2)
    model, tokenizer, pairs = setup()
    seconds = interleaved(3, ours(model, tokenizer, pairs, args.steps, args.max_tokens),
                          captum(model, tokenizer, pairs, args.steps))
    peaks = {}
    for which in ("ours", "captum"):
        out = subprocess.run([sys.executable, __file__, "--child", which, "--steps", str(args.steps),
                              "--max-tokens", str(args.max_tokens)], capture_output=True, text=True, check=True,
                             env={**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"})
        peaks[which] = json.loads(out.stdout.strip().splitlines()[-1])["peak_mib"]
    prompt_tokens = sum(len(p) for p, _ in pairs)
    print(f"{PROMPTS} prompts ({prompt_tokens} prompt tokens), {COMPLETION_TOKENS}-token completions, GPT-2 "
          f"4x256, {args.steps} IG steps, max_tokens={args.max_tokens}")
    print(f"ours (task='completion'):               {seconds[0]:7.2f} s   peak +{peaks['ours']:6.1f} MiB")
    print(f"captum LLMGradientAttribution (LIG):    {seconds[1]:7.2f} s   peak +{peaks['captum']:6.1f} MiB")
    print(f"ratio ours / captum: {seconds[0] / seconds[1]:.3f} (goal <= 0.2)")


if __name__ == "__main__":
    main()
