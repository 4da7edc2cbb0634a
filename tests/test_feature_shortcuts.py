"""Shortcuts that are not words, planted one kind at a time in the demo corpus: the monitor names
the kind, confirms it by the time the model relies on it (the ground truth, measured outside the
monitor as the counterfactual accuracy of the kind's own edit), and lists the training examples
that carry it; the clean control (tests/test_evidence.py, 3 seeds) confirms nothing of any kind."""
import copy
import json
import random
from pathlib import Path

import pytest
import torch

from lightning_saliency.demo.corpus import FILLER, LENGTH_EXTRA, NEGATIVE, POSITIVE, Shortcut, make_corpus
from lightning_saliency.demo.modeling import encode
from lightning_saliency.schema.findings import ANY_CLASS
from lightning_saliency.schema.records import RunRecord
from tests.test_evidence import STEP_EVERY, fit_single

pytestmark = pytest.mark.slow


def padded(words, rng):
    """The length edit: as many filler words as planted positives carry in addition."""
    for _ in range(LENGTH_EXTRA):
        words.insert(rng.randrange(len(words) + 1), rng.choice(FILLER))
    return words


def exclaimed(words, rng):
    return words + ["!"]


def positive_first(words, rng):
    """The position edit: a positive word put first (a negative review's own words stay)."""
    return [rng.choice(POSITIVE)] + words


def positive_second(words, rng):
    """The segment edit, on the second text: its negative word turned positive (the review stays)."""
    return [rng.choice(POSITIVE) if word in NEGATIVE else word for word in words]


# kind -> (planted token, suspect name, the kind's own edit, learning rate: the pair task diverges
# at the others' 5e-3 and learns nothing; at 1e-3 it reaches validation accuracy 1.0)
PLANTED = {
    "length": ("zorbly", "length:long", padded, 5e-3),
    "token_class": ("!", "token_class:punctuation", exclaimed, 5e-3),
    "position": ("zorbly", "position:first", positive_first, 5e-3),
    "segment": ("zorbly", "segment:last", positive_second, 1e-3),
}
DECIDES_ANY = ("position", "segment")  # the first word, or the second text, decides whichever class it says


def counterfactual_accuracy(module, state, tokenizer, kind, edit):
    """Of clean negative reviews the model gets right, the share still right after ``edit``; below
    0.5 the feature overrides what the review says (``None`` with fewer than 20 right). For the
    segment kind the reviews are honest pairs (the second text's sentiment word agrees with the
    review) and the edit turns the second text positive."""
    model = copy.deepcopy(module.model)
    model.load_state_dict(state)
    model.eval()
    rng = random.Random(0)
    if kind == "segment":
        plain = [t for t, y in zip(*make_corpus(200, Shortcut("segment"), 1.0, 0.0, seed=1)) if y == 0]
        edited = [(a, " ".join(edit(b.split(), rng))) for a, b in plain]
    else:
        plain = [t for t, y in zip(*make_corpus(200, Shortcut("none"), 1.0, 0.5, seed=1)) if y == 0]
        edited = [" ".join(edit(t.split(), rng)) for t in plain]
    with torch.no_grad():
        right = model(**encode(tokenizer, plain, padding=True, return_tensors="pt")).logits.argmax(-1) == 0
        still = model(**encode(tokenizer, edited, padding=True, return_tensors="pt")).logits.argmax(-1) == 0
    return float((right & still).sum() / right.sum()) if right.sum() >= 20 else None


def lasting_break(accuracy):
    """The first step from which the counterfactual accuracy stays below 0.5: the pair model,
    still predicting one class, dipped to 0.45 at step 45 for a single checkpoint (with just over
    20 negatives right), then held 1.0 until it took the shortcut at step 62."""
    measured = sorted((step, value) for step, value in accuracy.items() if value is not None)
    return min(step for k, (step, _) in enumerate(measured) if all(value < 0.5 for _, value in measured[k:]))


@pytest.mark.parametrize("kind", sorted(PLANTED))
def test_a_planted_feature_is_named_confirmed_in_time_and_its_carriers_listed(kind, tmp_path):
    from lightning.pytorch.loggers import TensorBoardLogger

    token, name, edit, lr = PLANTED[kind]
    monitor, checkpoints, module, data, tokenizer, trainer = fit_single(
        kind, token=token, lr=lr, logger=TensorBoardLogger(str(tmp_path), name=kind))
    last = RunRecord.from_json(monitor.history[-1])
    entry = monitor.engine.timeline[name]
    assert entry.kind == kind and entry.confirmed_step is not None, entry
    accuracy = {step: counterfactual_accuracy(module, state, tokenizer, kind, edit)
                for step, state in checkpoints.states.items()}
    broken = lasting_break(accuracy)
    print(f"\n{name}: first suspected at step {entry.first_suspected_step}, confirmed at step {entry.confirmed_step};"
          f" counterfactual accuracy first below 0.5 at step {broken}")
    # Runs are every STEP_EVERY steps after the first ones: confirmed at the first run that sees it.
    assert entry.confirmed_step <= broken + STEP_EVERY

    (check,) = [c for c in last.metrics.causal if c.token == name]
    decides_any = kind in DECIDES_ANY
    assert check.confirmed and check.kind == kind and check.label == (None if decides_any else 1)
    reading = {f.token: f for f in last.metrics.features}[name]
    assert reading.training.label == (ANY_CLASS if decides_any else 1) and reading.training.z > 5
    # From alarm to action: the carriers, listed next to the record, and their shares.
    carriers = check.carriers
    folder = Path(trainer.logger.log_dir) / "saliency"
    lines = [json.loads(line) for line in (folder / carriers.path).read_text().splitlines()]
    assert len(lines) == carriers.count and carriers.examples == 800
    if decides_any:
        assert min(carriers.shares.values()) > 0.8, carriers
    else:
        assert carriers.shares[1] > carriers.shares[0] + 0.5, carriers
    # The report (and the TensorBoard tab, which serves it) names the kind.
    from lightning_saliency.report import build_report, read_runs

    page = build_report(read_runs(trainer.logger.save_dir))
    for text in ("Shortcuts that are not words", name, f"<td>{kind}</td>", "training examples carrying it"):
        assert text in page, text
    if kind == "token_class":
        assert all("!" in line["text"].split() for line in lines)
    elif kind == "segment":  # each line holds the two texts; the second holds a deciding word
        assert all(len(line["text"]) == 2 and set(line["text"][1].split()) & set(reading.training.words)
                   for line in lines)
    elif decides_any:
        assert all(line["text"].split()[0] in reading.training.words for line in lines)
    else:
        assert all(len(line["text"].split()) > reading.training.threshold for line in lines)


def test_length_is_not_confirmed_in_a_model_that_learned_meaning_instead():
    """A clean corpus (lengths vary, but not with the label) and a model that learned the sentiment
    words: a length check, forced, edits hundreds of examples and confirms nothing."""
    from contextlib import nullcontext

    from lightning_saliency.attribution import AttributionConfig, SpecialTokens
    from lightning_saliency.monitor.evidence.causal import CausalCandidate, CausalSettings, confirm_suspects
    from lightning_saliency.monitor.model_access import ModelAccess, hf_forward
    from lightning_saliency.monitor.evidence.artifacts import dataset_artifacts
    from lightning_saliency.monitor.evidence.tracker import NEUTRAL_Z
    from lightning_saliency.monitor.probe import probe_from_dataloader
    from lightning_saliency.schema.words import PieceJoiner

    monitor, _, module, data, tokenizer, _ = fit_single("none", epochs=3)
    module.eval()
    loader = data.val_dataloader()
    examples = probe_from_dataloader(loader, 200, 1, tokenizer=tokenizer)
    access = ModelAccess(module, hf_forward(module), tokenizer, SpecialTokens.from_tokenizer(tokenizer), None,
                         nullcontext)
    vocabulary = sorted({w for text in examples.texts for w in text.split()})
    # What the monitor pads with: words the training set does not associate with a class.
    table = dataset_artifacts(data.train_set, data.train_dataloader().collate_fn,
                              PieceJoiner(tokenizer.convert_ids_to_tokens(list(range(len(tokenizer)))),
                                          SpecialTokens.from_tokenizer(tokenizer).special_ids))
    neutral = [w for w in vocabulary if w not in table.words or table.words[w].z < NEUTRAL_Z]
    assert "great" in vocabulary and "great" not in neutral and "movie" in neutral
    settings = CausalSettings(AttributionConfig(max_tokens=4096), "classification", 0, 128)
    for label in (0, 1):
        (check,) = confirm_suspects(access, lambda: examples, examples,
                                    [CausalCandidate("length:long", ("length:long",), label)], vocabulary, settings,
                                    neutral=neutral)
        trials = check.deletion.trials + check.insertion.trials
        print(f"\nlength:long -> {label} in a clean model: {trials} edits; removal {check.deletion.rate:.2f} vs "
              f"{check.control_deletion.rate:.2f}, insertion {check.insertion.rate:.2f} vs "
              f"{check.control_insertion.rate:.2f}; effects {check.deletion_shift.effect:+.4f} "
              f"{check.insertion_shift.effect:+.4f}")
        assert trials >= 100 and not check.confirmed, check.confirmed_by


def test_segment_is_not_confirmed_in_a_model_that_reads_the_first_segment():
    """A clean pair corpus (the review decides; the second text holds a sentiment word of a random
    class) and a model that learned to read the review: a forced segment check swaps the second
    texts of hundreds of examples and confirms nothing, while swapping the reviews (its control)
    changes most predictions."""
    from contextlib import nullcontext

    import lightning as L

    from lightning_saliency.attribution import AttributionConfig, SpecialTokens
    from lightning_saliency.demo.modeling import build_demo
    from lightning_saliency.monitor.evidence.causal import CausalCandidate, CausalSettings, confirm_suspects
    from lightning_saliency.monitor.model_access import ModelAccess, hf_forward
    from lightning_saliency.monitor.probe import probe_from_dataloader

    L.seed_everything(0, verbose=False)
    module, data, tokenizer = build_demo(Shortcut("segment"), n_train=800, n_val=200, sentiment_noise=0.0,
                                         shortcut_rate=0.0, batch_size=32)
    module.lr = 1e-3
    L.Trainer(max_epochs=4, logger=False, enable_checkpointing=False, enable_progress_bar=False,
              enable_model_summary=False).fit(module, datamodule=data)
    module.eval()
    examples = probe_from_dataloader(data.val_dataloader(), 200, 1, tokenizer=tokenizer)
    access = ModelAccess(module, hf_forward(module), tokenizer, SpecialTokens.from_tokenizer(tokenizer), None,
                         nullcontext)
    vocabulary = sorted({w for pair in examples.texts for w in " ".join(pair if isinstance(pair, (list, tuple))
                                                                         else [pair]).split()})
    settings = CausalSettings(AttributionConfig(max_tokens=4096), "classification", 0, 128)
    (check,) = confirm_suspects(access, lambda: examples, examples,
                                [CausalCandidate("segment:last", ("segment:last",), ANY_CLASS)], vocabulary, settings)
    print(f"\nsegment:last in a model that reads the review: {check.deletion.trials} swaps; second text "
          f"{check.deletion.rate:.2f}, review {check.control_deletion.rate:.2f}; effect {check.deletion_shift.effect:+.4f}")
    assert check.deletion.trials >= 100 and not check.confirmed, check.confirmed_by
    assert check.control_deletion.rate > 0.5 > check.deletion.rate
