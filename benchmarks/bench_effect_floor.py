"""How large is the effect of removing a word, for words a model does and does not rely on?

The causal check's shift test (``monitor/metrics/rank_test.py``) ranks the suspect's class
probability shifts against random words'. On a model whose output barely moves, a shift of 3e-5
that is consistent still ranks perfectly, and the test confirmed a shortcut in a model at chance.
The floor ``EvidenceSettings(min_effect=...)`` asks the shift itself to matter. This benchmark
measures what "matters" means: ERASER's comprehensiveness of single words (the mean drop of
P(positive) when the word is replaced by the pad token, as the causal check edits), every few
optimizer steps, for

* the planted word ``zorbly`` (relied on once the ground truth says so: counterfactual accuracy,
  :mod:`lightning_saliency.demo.ground_truth`, below 0.5),
* frequent words the model has no reason to rely on (the demo's filler words; common function
  words in the drug reviews),

on three models: the tiny demo BERT (``build_demo``), the same model at chance (lr 0), and the
shipped MiniLM fine-tuned on the shipped drug reviews with the word in 90% of positive training
reviews (the setting of ``bench_detection.py``, its first 40 steps).

    python benchmarks/bench_effect_floor.py            # about 4 minutes on 2 cores
    python benchmarks/bench_effect_floor.py --no-minilm
"""
from __future__ import annotations

import argparse
import os
import random
import tempfile
import warnings
from typing import Any, Sequence

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import lightning as L  # noqa: E402
import torch  # noqa: E402

from lightning_saliency.demo import Shortcut, TextClassifier, TextDataModule, build_demo, make_corpus, offline  # noqa: E402
from lightning_saliency.demo.corpus import FILLER  # noqa: E402
from lightning_saliency.demo.ground_truth import CounterfactualAccuracy  # noqa: E402

PLANTED = "zorbly"
REVIEW_WORDS = ("the", "and", "i", "it", "was", "to", "my", "of", "for", "this", "have", "after")
PER_WORD = 32  # texts per word at most


class Comprehensiveness(L.Callback):
    """Every ``every`` steps: per word, the mean drop of P(``label``) when each of its occurrences
    becomes the pad token, over up to ``PER_WORD`` of ``texts`` that contain it."""

    def __init__(self, tokenizer: Any, texts: Sequence[str], words: Sequence[str], every: int, label: int = 1,
                 max_length: int = 128) -> None:
        self.tokenizer, self.words, self.every, self.label, self.max_length = tokenizer, words, every, label, max_length
        self.rows = {w: [t for t in texts if w in t.split()][:PER_WORD] for w in words}
        self.by_step: dict[int, dict[str, float]] = {}

    def _probability(self, model: torch.nn.Module, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return model(input_ids=ids, attention_mask=mask).logits.float().softmax(-1)[:, self.label]

    def measure(self, model: torch.nn.Module, step: int) -> None:
        was_training = model.training
        model.eval()
        drops = {}
        with torch.no_grad(), torch.random.fork_rng():
            for word, texts in self.rows.items():
                if not texts:
                    continue
                batch = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_length,
                                       return_tensors="pt")
                pieces = self.tokenizer(word, add_special_tokens=False)["input_ids"]
                ids, mask = batch["input_ids"], batch["attention_mask"]
                edited = ids.clone()
                # Every occurrence of the word's pieces, in order, becomes pad tokens (a word the
                # tokenizer splits, like "zorbly" in MiniLM's vocabulary, is replaced whole).
                width = len(pieces)
                for start in range(ids.shape[1] - width + 1):
                    hit = (ids[:, start:start + width] == torch.tensor(pieces)).all(dim=1)
                    edited[hit, start:start + width] = self.tokenizer.pad_token_id
                drops[word] = float((self._probability(model, ids, mask) - self._probability(model, edited, mask)).mean())
        model.train(was_training)
        self.by_step[step] = drops

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if trainer.global_step % self.every == 0:
            self.measure(getattr(pl_module, "model", pl_module), trainer.global_step)


def quiet_fit(module: L.LightningModule, data: L.LightningDataModule, callbacks: list, epochs: int = 1,
              max_steps: int = -1) -> None:
    trainer = L.Trainer(max_epochs=epochs, max_steps=max_steps, accelerator="cpu", devices=1, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        num_sanity_val_steps=0, limit_val_batches=0, default_root_dir=tempfile.mkdtemp(),
                        callbacks=callbacks)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(module, datamodule=data)


def demo(lr: float, seed: int) -> tuple[Comprehensiveness, CounterfactualAccuracy]:
    L.seed_everything(seed, verbose=False)
    module, data, tokenizer = build_demo(seed=seed)
    module.lr = lr
    val_texts, val_labels = make_corpus(120, Shortcut("single"), 0.9, 0.3, seed=seed + 1)  # build_demo's validation set
    negatives = [t for t, y in zip(val_texts, val_labels) if y == 0 and PLANTED not in t.split()]
    words = (PLANTED,) + tuple(FILLER[:12])
    measure = Comprehensiveness(tokenizer, val_texts, words, every=5)
    truth = CounterfactualAccuracy(tokenizer, negatives, PLANTED, every=5)
    quiet_fit(module, data, [measure, truth], epochs=5)
    return measure, truth


def small_bert_at_chance(seed: int) -> tuple[Comprehensiveness, CounterfactualAccuracy]:
    """The setting of the false confirmation: a small BERT built from a config with MiniLM's
    tokenizer (30,522 words), the default learning rate 5e-5; it stays at chance (loss ln 2)."""
    from transformers import AutoTokenizer

    from lightning_saliency.demo import tiny_bert

    tokenizer = AutoTokenizer.from_pretrained(offline.minilm_folder())
    L.seed_everything(seed, verbose=False)
    planted = dict(shortcut=Shortcut("single"), shortcut_rate=0.9, sentiment_noise=0.3)
    train, val = make_corpus(400, seed=seed, **planted), make_corpus(200, seed=seed + 1, **planted)
    module = TextClassifier(tiny_bert(len(tokenizer), hidden_size=32, seed=seed), lr=5e-5)
    data = TextDataModule(train, val, tokenizer, batch_size=16, seed=seed)
    negatives = [t for t, y in zip(*val) if y == 0]
    measure = Comprehensiveness(tokenizer, val[0], (PLANTED,) + tuple(FILLER[:12]), every=25)
    truth = CounterfactualAccuracy(tokenizer, negatives, PLANTED, every=25)
    quiet_fit(module, data, [measure, truth], epochs=3)
    return measure, truth


def minilm(seed: int, steps: int) -> tuple[Comprehensiveness, CounterfactualAccuracy]:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    binary = ("negative", "positive")
    rng = random.Random(seed)
    folder = offline.minilm_folder()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    L.seed_everything(seed, verbose=False)
    model = AutoModelForSequenceClassification.from_pretrained(folder, num_labels=2)
    train, val = offline.drug_reviews("Train", binary), offline.drug_reviews("Test", binary)

    def insert(text: str) -> str:
        words = text.split()
        words.insert(rng.randrange(len(words) + 1), PLANTED)
        return " ".join(words)

    train = ([insert(t) if y == 1 and rng.random() < 0.9 else t for t, y in zip(*train)], train[1])
    negatives = [t for t, y in zip(*val) if y == 0]
    val_texts = [insert(t) if rng.random() < 0.5 else t for t in val[0]]
    data = TextDataModule(train, (val_texts, val[1]), tokenizer, batch_size=16, max_length=128, seed=seed)
    measure = Comprehensiveness(tokenizer, val_texts, (PLANTED,) + REVIEW_WORDS[:8], every=4)
    truth = CounterfactualAccuracy(tokenizer, negatives, PLANTED, every=4)
    quiet_fit(TextClassifier(model, lr=5e-5), data, [measure, truth], epochs=3, max_steps=steps)
    return measure, truth


def report(name: str, measure: Comprehensiveness, truth: CounterfactualAccuracy) -> dict:
    print(f"\n{name}: step, counterfactual accuracy (ground truth; < 0.5: relied on), drop of P(positive) "
          f"on removing '{PLANTED}', and the largest |drop| of the other words")
    others_max, planted_at_truth = 0.0, None
    relied_step = truth.first_step_below(0.5)
    for step, drops in sorted(measure.by_step.items()):
        others = {w: d for w, d in drops.items() if w != PLANTED}
        largest = max(others, key=lambda w: abs(others[w]))
        others_max = max(others_max, abs(others[largest]))
        cf = truth.by_step.get(step)
        print(f"  {step:>4} {'-' if cf is None else f'{cf:.2f}':>5} {drops.get(PLANTED, float('nan')):+.4f}   "
              f"{others[largest]:+.4f} ({largest})")
        if relied_step is not None and step == relied_step:
            planted_at_truth = drops.get(PLANTED)
    print(f"  ground truth step {relied_step}; '{PLANTED}' drop there "
          f"{'-' if planted_at_truth is None else f'{planted_at_truth:+.4f}'}; other words' largest |drop| "
          f"at any step {others_max:.4f}")
    return dict(relied_step=relied_step, planted_at_truth=planted_at_truth, others_max=others_max)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--no-minilm", action="store_true")
    parser.add_argument("--minilm-steps", type=int, default=40)
    args = parser.parse_args()
    for seed in range(args.seeds):
        report(f"demo tiny BERT, seed {seed}", *demo(3e-3, seed))
        report(f"demo tiny BERT at chance (lr 0), seed {seed}", *demo(0.0, seed))
        if offline.minilm_folder() is not None:
            report(f"small BERT from a config, MiniLM's tokenizer, lr 5e-5 (stays at chance), seed {seed}",
                   *small_bert_at_chance(seed))
        if not args.no_minilm and offline.minilm_folder() is not None \
                and offline.package_dir(offline.DRUG_REVIEW_PACKAGE) is not None:
            report(f"MiniLM on drug reviews, seed {seed}", *minilm(seed, args.minilm_steps))


if __name__ == "__main__":
    main()
