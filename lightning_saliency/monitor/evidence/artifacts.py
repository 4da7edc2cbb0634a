"""Dataset artifacts: reading the training set (a sample of it, by index, through the training
collate function) into the token-label association table of
:mod:`lightning_saliency.monitor.metrics.artifacts` (Gardner et al. 2021)."""
from __future__ import annotations

import random
from functools import partial
from dataclasses import dataclass, replace
from typing import Any, Callable, Mapping, Optional, Sequence

import torch

from lightning_saliency.attribution.isolation import preserved_global_rng
from lightning_saliency.schema.words import PieceJoiner
from lightning_saliency.monitor.chat import template_mask, template_pieces
from lightning_saliency.monitor.features.base import feature_associations
from lightning_saliency.monitor.metrics.artifacts import ArtifactTable, ExampleSample, association_table
from lightning_saliency.monitor.notices import warn
from lightning_saliency.monitor.probe import as_mapping, label_of
from lightning_saliency.probes.answers import MAX_ANSWER_CLASSES, answer_text, first_scored

COLLATE_BATCH = 256


# A chat template's reader: ``(input_ids, attention_mask) -> (template, roles)``, as
# :func:`lightning_saliency.monitor.chat.template_mask` gives them for a batch.
TurnReader = Callable[[Any, Any], tuple[Any, list[list[Optional[str]]]]]


@dataclass(frozen=True)
class AnswerReading:
    """How to read a label-like answer off token-level labels: ``text`` turns the answer's ids into
    its class name; ``aligned``: the answer's labels sit on the input's positions after the prompt
    (a causal LM's completion), else they are a separate target (an encoder-decoder's);
    ``turns``: the chat template's reader, when prompts are rendered conversations."""

    text: Callable[[list[int]], str]
    aligned: bool
    turns: Optional[TurnReader] = None

    def prompt_and_answer(self, ids: Any, mask: Any, labels: Any) -> tuple[list[int], str]:
        real = mask.bool() if mask is not None else ids == ids
        if self.aligned:
            real = real.clone()
            real[first_scored(labels):] = False
        return ids[real].tolist(), self.text(labels[labels >= 0].tolist())


def conversation_words(joiner: PieceJoiner, ids: Sequence[int], template: Sequence[bool],
                       roles: Sequence[Optional[str]]) -> tuple[list[str], list[Optional[str]]]:
    """A rendered conversation's words and each word's turn: the template's tokens are no words
    (as in the probe), and a word never spans two turns."""
    words: list[str] = []
    word_roles: list[Optional[str]] = []
    run: list[int] = []

    def close() -> None:
        if run:
            found = joiner.words([ids[k] for k in run])
            words.extend(found)
            word_roles.extend([roles[run[0]]] * len(found))
            run.clear()

    for k in range(len(ids)):
        if template[k] or (run and roles[k] != roles[run[0]]):
            close()
        if not template[k]:
            run.append(k)
    close()
    return words, word_roles


def dataset_artifacts(
    dataset: Any,
    collate_fn: Optional[Callable[[list], Any]],
    joiner: PieceJoiner,
    *,
    max_examples: int = 20_000,
    seed: int = 0,
    label_key: str = "labels",
    input_keys: Optional[Sequence[str]] = None,
    answers: Optional[AnswerReading] = None,
) -> Optional[ArtifactTable]:
    """The artifact table of up to ``max_examples`` training examples, read by index (sampled with
    a private ``random.Random``) and collated with ``collate_fn``, the training loader's own. The
    loader is never iterated and no global RNG is drawn from. ``None`` for a dataset without
    ``__len__``/``__getitem__`` or without labels. With ``answers``, token-level labels hold each
    example's answer: its text is the label and the prompt's words are tested, when the answers
    are a few (label-like, :data:`~lightning_saliency.probes.answers.MAX_ANSWER_CLASSES`); ``None`` for open-ended ones."""
    if not hasattr(dataset, "__len__") or not hasattr(dataset, "__getitem__"):
        return None
    size = len(dataset)
    indices = sorted(random.Random(seed).sample(range(size), min(size, max_examples)))
    word_sets, segments, roles, labels, read = [], [], [], [], []
    for start in range(0, len(indices), COLLATE_BATCH):
        items = [dataset[i] for i in indices[start: start + COLLATE_BATCH]]
        batch = as_mapping(collate_fn(items) if collate_fn is not None else items, input_keys)
        if not isinstance(batch, Mapping) or "input_ids" not in batch:
            return None
        batch_labels = batch.get(label_key, batch.get("label"))
        if batch_labels is None:
            batch_labels = [label_of(item, label_key, input_keys) for item in items]
        ids, mask = batch["input_ids"], batch.get("attention_mask")
        turns = None
        if answers is not None and answers.turns is not None:
            turns = answers.turns(ids, mask if mask is not None else torch.ones_like(ids))
        for row, label in enumerate(batch_labels):
            if answers is not None and label is not None and getattr(label, "dim", lambda: 0)() == 1:
                prompt, answer = answers.prompt_and_answer(ids[row], None if mask is None else mask[row], label)
                if turns is not None:  # the prompt is the row's first real tokens, as its roles are
                    real = mask[row].bool() if mask is not None else torch.ones_like(ids[row], dtype=torch.bool)
                    template = turns[0][row][real].tolist()[: len(prompt)]
                    words, word_roles = conversation_words(joiner, prompt, template, turns[1][row][: len(prompt)])
                else:
                    words, word_roles = joiner.words(prompt), []
                word_sets.append(words)
                roles.append(tuple(word_roles))
                labels.append(answer)
                read.append(indices[start + row])
                continue
            if label is None or ids[row].dim() != 1 or getattr(label, "numel", lambda: 1)() != 1:
                return None  # unlabelled, multiple-choice or token-level labels: no word-label association
            kept = (ids[row][mask[row].bool()] if mask is not None else ids[row]).tolist()
            words, word_segments = joiner.words_and_segments(kept)
            word_sets.append(words)
            segments.append(tuple(word_segments))
            labels.append(int(label))
            read.append(indices[start + row])
    if answers is not None and not 2 <= len(set(labels)) <= MAX_ANSWER_CLASSES:
        return None  # open-ended answers: no classes to associate words with
    table = association_table(word_sets, labels)
    # Segments are kept for pair inputs only (single texts are all segment 0), roles for
    # conversations only. Answers are texts here: ``with_class_indices`` makes them classes.
    paired = tuple(segments) if any(s and s[-1] for s in segments) else None
    chat = tuple(roles) if any(any(r) for r in roles) else None
    sample = ExampleSample(tuple(read), tuple(tuple(w) for w in word_sets), tuple(labels), size, paired, chat)
    return replace(table, features=feature_associations(word_sets, labels, paired, chat), sample=sample)


def with_class_indices(table: Optional[ArtifactTable], names: Optional[Sequence[str]]) -> Optional[ArtifactTable]:
    """``table`` with class indices as labels: a table of answer texts (a label-like completion's)
    has them turned into the indices of ``names`` (the probe's answer classes; a word or feature
    whose answer is not among them keeps its z with no label), and is ``None`` without them. The
    sample (what carriers are listed from) keeps the examples whose answer is a class."""
    if table is None:
        return None
    sampled = table.sample.labels if table.sample is not None else ()
    if not any(isinstance(label, str) for label in [r.label for r in table.words.values()] + list(sampled)):
        return table  # class indices already
    if names is None:
        return None
    index = {name: i for i, name in enumerate(names)}
    relabel = lambda row: replace(row, label=index.get(row.label))  # noqa: E731
    features = {token: replace(f, label=index.get(f.label) if isinstance(f.label, str) else f.label,
                               shares={index[y]: share for y, share in f.shares.items() if y in index})
                for token, f in table.features.items()}
    sample = table.sample
    if sample is not None:
        kept = [k for k, y in enumerate(sample.labels) if y in index]
        pick = lambda values: None if values is None else tuple(values[k] for k in kept)  # noqa: E731
        sample = replace(sample, indices=pick(sample.indices), word_lists=pick(sample.word_lists),
                         labels=tuple(index[sample.labels[k]] for k in kept), segments=pick(sample.segments),
                         roles=pick(sample.roles))
    return replace(table, rows=[relabel(r) for r in table.rows], words={w: relabel(r) for w, r in table.words.items()},
                   features=features, sample=sample)


def training_artifacts(dataset: Any, collate_fn: Optional[Callable[[list], Any]], access: Any, settings: Any,
                       columns: Optional[Sequence[str]] = None,
                       answers_aligned: Optional[bool] = None) -> Optional[ArtifactTable]:
    """The monitor's artifact table of ``dataset`` (the training set), or ``None`` when the data
    cannot be read by index with labels. ``columns``: the item keys ``collate_fn`` takes (a Hugging
    Face dataset's rows hold text columns that a data collator rejects). ``answers_aligned``: the
    labels are answers (see :class:`AnswerReading`), labelled by their text. Any failure is warned
    about and costs nothing else: runs go on without the table."""
    if columns is not None and collate_fn is not None:
        collate = collate_fn
        keep = tuple(columns)
        collate_fn = lambda items: collate([{k: v for k, v in item.items() if k in keep}  # noqa: E731
                                            if isinstance(item, Mapping) else item for item in items])
    try:
        tokenizer = access.tokenizer
        joiner = PieceJoiner(tokenizer.convert_ids_to_tokens(list(range(len(tokenizer)))),
                             access.special_tokens.special_ids)
        pieces = template_pieces(tokenizer)
        turns = partial(template_mask, tokenizer, pieces=pieces) if pieces else None
        answers = None if answers_aligned is None else AnswerReading(lambda ids: answer_text(ids, tokenizer),
                                                                     answers_aligned, turns)
        with preserved_global_rng():
            table = dataset_artifacts(dataset, collate_fn, joiner, max_examples=settings.evidence.artifact_examples,
                                      seed=settings.probe.seed, label_key=settings.probe.label_key,
                                      input_keys=settings.probe.input_keys, answers=answers)
    except Exception as error:
        warn(f"SaliencyMonitor: the training set's token-label association could not be computed "
             f"({type(error).__name__}: {error}); runs go on without the artifact table.")
        return None
    if table is None and answers_aligned is not None:
        return None  # open-ended answers: the table does not apply, nothing to warn about
    if table is None:
        warn("SaliencyMonitor: the training set cannot be read by index with labels per example, so no artifact "
             "table is computed (set evidence=EvidenceSettings(artifact_examples=0) to silence this).")
    return table
