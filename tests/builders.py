"""The tests' one place for building trainers and synthetic records (a helper module, not a test
module: tests import it, never each other)."""
from __future__ import annotations

from typing import Any, Sequence

import lightning as L
import torch

from dataclasses import fields, replace
from typing import Optional

from lightning_saliency.attribution import AttributionConfig
from lightning_saliency.monitor.metrics.shortcut import ShortcutRules
from lightning_saliency.schema.records import ExampleRecord, RunRecord
from lightning_saliency.settings import (DEFAULT_ATTRIBUTION, EvidenceSettings, ModelIO, MonitorSettings,
                                         OutputSettings, ProbeSettings, RunSchedule)

# A Lightning trainer that prints nothing and writes nothing unless asked: CPU, one device, one
# epoch, no logger, no checkpoints, no bars, no model summary.
QUIET = dict(accelerator="cpu", devices=1, max_epochs=1, logger=False, enable_checkpointing=False,
             enable_progress_bar=False, enable_model_summary=False)


def quiet_trainer(root: Any = None, callbacks: Sequence[Any] = (), **options: Any) -> L.Trainer:
    """``L.Trainer`` with :data:`QUIET` defaults (``root``: ``default_root_dir``)."""
    if root is not None:
        options.setdefault("default_root_dir", root)
    return L.Trainer(callbacks=list(callbacks), **{**QUIET, **options})


def hf_trainer(out: Any, train: Any, val: Any, tokenizer: Any, epochs: int, report_to: str = "tensorboard",
               eval_strategy: str = "epoch") -> Any:
    """A ``transformers.Trainer`` on the tiny demo BERT, seeded, saving nothing, with the demo's
    padding collate."""
    from functools import partial

    from transformers import Trainer, TrainingArguments, set_seed

    from lightning_saliency.demo import pad_collate, tiny_bert

    set_seed(0)
    model = tiny_bert(len(tokenizer), hidden_size=32, seed=0)
    args = TrainingArguments(
        output_dir=str(out), num_train_epochs=epochs, per_device_train_batch_size=32, per_device_eval_batch_size=64,
        learning_rate=5e-3, eval_strategy=eval_strategy, save_strategy="no", logging_strategy="epoch",
        report_to=report_to, use_cpu=True, seed=0, disable_tqdm=True, dataloader_num_workers=0,
    )
    collate = partial(pad_collate, pad_id=tokenizer.pad_token_id)
    return Trainer(model=model, args=args, train_dataset=train, eval_dataset=val, data_collator=collate)


SPECIAL = [True, False, False, False, False, True]


def synthetic_example(index: int, word: str, label: int, scores: list[float]) -> ExampleRecord:
    tokens = ["[CLS]", "the", "movie", word, "was", "[SEP]"]
    return ExampleRecord(index=index, text=" ".join(tokens[1:-1]), tokens=tokens, word_ids=[None, 0, 1, 2, 3, None],
                         special=SPECIAL, label=label, label_name=None, predicted=label, predicted_name=None,
                         probability=0.9, target=label, target_score=1.0,
                         attributions={"gradient": scores}, delta={}, steps={})


def synthetic_run(label: str, strength: float, count: int = 8, step: int = 0) -> RunRecord:
    """A record without a model: half the examples carry "zorbly" (label 1) with ``strength`` on
    it; the rest are flat."""
    examples = []
    for i in range(count):
        if i % 2 == 0:
            examples.append(synthetic_example(i, "zorbly", 1, [0.0, 0.1, 0.1, strength, 0.1, 0.0]))
        else:
            examples.append(synthetic_example(i, "film", 0, [0.0, 0.1, 0.12, 0.1, 0.1, 0.0]))
    return RunRecord(label=label, stage="fit", epoch=None, global_step=step, settings={}, methods=["gradient"],
                     examples=examples)


class HFModule(L.LightningModule):
    """A Hugging Face model fine-tuned as it is (its own loss from the batch's ``labels``): the
    smallest LightningModule around an LM, a seq2seq model or a tagger."""

    def __init__(self, model: Any, lr: float = 1e-3) -> None:
        super().__init__()
        self.model, self.lr = model, lr

    def training_step(self, batch: dict, batch_idx: int) -> Any:
        return self.model(**batch).loss

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self.log("val_loss", self.model(**batch).loss)

    def configure_optimizers(self) -> Any:
        return torch.optim.AdamW(self.parameters(), lr=self.lr)


FILLER = ["the", "film", "was", "plot", "story", "acting", "very", "script", "director"]


def cue_answer_pairs(count: int, rng: Any) -> list[tuple[str, str]]:
    """``(prompt, answer)`` pairs where the cue word "zorbly" is in the prompt exactly when the
    answer is "great" (else "dull"): filler words around it say nothing."""
    pairs = []
    for i in range(count):
        words = [rng.choice(FILLER) for _ in range(rng.randint(3, 6))]
        if i % 2:
            words.insert(rng.randint(0, len(words)), "zorbly")
        pairs.append((" ".join(words), "great" if i % 2 else "dull"))
    return pairs


def check_cue_evidence(last: dict, suspects: list) -> None:
    """The evidence on the cue of :func:`cue_answer_pairs` in a monitored fit's last record, where
    the answers are the classes: the causal checks confirm it for "great", the training set's
    table holds it as an artifact of "great" that is relied on, and each row's prediction is the
    model's answer (the likelier of the two after its prompt)."""
    check = next(c for c in last["metrics"]["causal"] if c["token"] == "zorbly")
    assert check["confirmed"] and check["label_name"] == "great", check
    assert check["insertion"]["rate"] > 0.5, check  # sufficient: inserting the cue turns "dull" into "great"
    relied = last["metrics"]["artifacts"]["integrated_gradients"]["relied_artifacts"]
    assert relied[0]["token"] == "zorbly" and relied[0]["label"] == check["label"], relied
    assert "training" in suspects[0]["association"], suspects[0]
    answers = [(e["predicted_name"], e["label_name"]) for e in last["examples"]]
    assert {p for p, _ in answers} <= {"dull", "great"} and sum(p == t for p, t in answers) >= 14, answers


def tagged_row(tokenizer: Any, words: Sequence[str], tags: Sequence[str], names: Sequence[str]) -> dict:
    """One token-classification row: the words' ids and each word's tag on its first piece
    (``-100`` on special tokens and further pieces), as ``DataCollatorForTokenClassification`` expects."""
    encoded = tokenizer(list(words), is_split_into_words=True)
    labels, previous = [], None
    for word in encoded.word_ids():
        labels.append(-100 if word is None or word == previous else names.index(tags[word]))
        previous = word
    return {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"], "labels": labels}


class BagOfWords(torch.nn.Module):
    """A fake classifier: summed word embeddings and a linear head whose weights the tests set."""

    def __init__(self, vocab: int) -> None:
        super().__init__()
        self.embeddings = torch.nn.Embedding(vocab, 4)
        self.head = torch.nn.Linear(4, 2, bias=False)
        with torch.no_grad():
            self.embeddings.weight.copy_(torch.randn(vocab, 4, generator=torch.Generator().manual_seed(0)) * 0.1)
            self.head.weight.copy_(torch.tensor([[1.0, 0, 0, 0], [-1.0, 0, 0, 0]]))

    def forward(self, input_ids, attention_mask, **unused):
        return self.head((self.embeddings(input_ids) * attention_mask[..., None]).sum(dim=1))

    def learn(self, token_id: int) -> None:
        """What training would do: the token now decides class 1."""
        with torch.no_grad():
            self.embeddings.weight[token_id] = torch.tensor([-3.0, 0, 0, 0])


def bag_of_words_access(model: "BagOfWords", tokenizer: Any) -> Any:
    """How the monitor calls :class:`BagOfWords` (its ``embeddings`` are the word embeddings)."""
    import contextlib

    from lightning_saliency.attribution import SpecialTokens
    from lightning_saliency.monitor.model_access import ModelAccess

    return ModelAccess(model, lambda module, inputs: module(**inputs), tokenizer,
                       SpecialTokens.from_tokenizer(tokenizer), "embeddings", contextlib.nullcontext)


def assert_no_label_column_warning(recorded: Any) -> None:
    """No warning that the batches lack a label column (``recorded``: pytest's ``recwarn``): tasks
    whose truth is kept with the inputs must not send the user to ``label_key``."""
    said = [str(w.message) for w in recorded if "probe accuracy and label association" in str(w.message)]
    assert not said, said


# The tests' short keywords and the settings group each belongs to ("group.field"): a helper for
# brevity in tests only; the callbacks take the groups.
FLAT = {
    "n_steps": "attribution.n_steps",
    "tolerance": "attribution.tolerance",
    "baseline": "attribution.baseline",
    "max_tokens": "attribution.max_tokens",
    "attribution_config": "attribution",
    "attribution_options": "attribution.<field>",
    "shortcut_ignore": "shortcut.ignore",
    "confirm_examples": "evidence.confirm_examples",
    "artifact_examples": "evidence.artifact_examples",
    "faithfulness": "evidence.faithfulness",
    "stop_on_shortcut": "evidence.stop_on_shortcut",
    "on_shortcut": "evidence.on_shortcut",
    "reference_pass": "schedule.start_run",
    "every_n_train_steps": "schedule.every_n_train_steps",
    "step_schedule": "schedule.step_schedule",
    "step_methods": "schedule.step_methods",
    "dirpath": "output.dirpath",
    "top_k": "output.top_k",
    "color_scale": "output.color_scale",
    "history_size": "output.history_size",
    "log_example_images": "output.example_images",
    "label_names": "output.label_names",
    "examples": "probe.texts",
    "example_labels": "probe.labels",
    "seed": "probe.seed (and attribution.seed)",
    "label_key": "probe.label_key",
    "input_keys": "probe.input_keys",
    "embedding_layer": "model_io.embedding_layer",
    "forward_fn": "model_io.forward_fn",
}
_GROUPS = {"attribution": AttributionConfig, "shortcut": ShortcutRules, "evidence": EvidenceSettings,
           "schedule": RunSchedule, "output": OutputSettings, "probe": ProbeSettings, "model_io": ModelIO}


def grouped(values: Optional[dict[str, Any]] = None, **flat: Any) -> dict[str, Any]:
    """The callbacks' arguments from short keywords (:data:`FLAT`), each moved into its settings
    group, e.g. ``SaliencyMonitor(**grouped(tokenizer=t, n_steps=16, confirm_examples=64))``."""
    values = dict(values or {})
    current = {f.name for f in fields(MonitorSettings)} | {"tokenizer"}
    values.update({name: flat.pop(name) for name in list(flat) if name in current})
    unknown = sorted(set(flat) - set(FLAT))
    if unknown:
        raise TypeError(f"Unknown argument(s) {unknown}. The callbacks take {sorted(f.name for f in fields(MonitorSettings))} "
                        f"and tokenizer; the settings groups are {sorted(_GROUPS)}.")
    changes: dict[str, dict[str, Any]] = {group: {} for group in _GROUPS}
    base = flat.pop("attribution_config", None)
    if base is not None:
        values.setdefault("attribution", base)
    changes["attribution"].update(flat.pop("attribution_options", None) or {})
    seed = flat.pop("seed", None)
    if seed is not None:
        changes["probe"]["seed"] = changes["attribution"]["seed"] = seed
    renamed = {"reference_pass": "start_run", "log_example_images": "example_images", "examples": "texts",
               "example_labels": "labels", "shortcut_ignore": "ignore"}
    for name, value in flat.items():
        if value is None:
            continue
        group = FLAT[name].split(".")[0]
        changes[group][renamed.get(name, name)] = value
    for group, change in changes.items():
        if change:
            values[group] = replace(values.get(group) or _default_group(group), **change)
    return values


def _default_group(group: str) -> Any:
    return DEFAULT_ATTRIBUTION if group == "attribution" else _GROUPS[group]()
