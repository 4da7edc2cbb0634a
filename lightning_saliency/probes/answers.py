"""A scored sequence's answers (a completion's, a seq2seq target's): their texts apart from the
prompts, a few distinct ones as classes, and the probe without them (what the causal checks edit)."""
from __future__ import annotations

from dataclasses import replace
from typing import Any, Sequence

import torch

from lightning_saliency.probes.probe_set import ProbeSet


# A completion is label-like (classification by generation) when its examples share a few answers.
MAX_ANSWER_CLASSES = 10


def with_answer_classes(probe: ProbeSet, tokenizer: Any) -> ProbeSet:
    """For a completion or seq2seq probe whose targets are a few distinct short answers
    ("positive"/"negative", a tag, a yes/no), each answer is a class: ``labels`` become the answer's
    index and ``label_names`` the answers, so the association rule can tie a prompt word to an
    answer (a cue word that decides it). Open-ended targets (as many answers as examples) are left
    as they are."""
    targets = probe.inputs.get("labels")
    if targets is None or probe.labels is not None or tokenizer is None:
        return probe
    answer_ids = [tuple(int(i) for i in row if i >= 0) for row in targets]
    answers = [answer_text(ids, tokenizer) for ids in answer_ids]
    distinct = sorted(set(answers))
    if not 2 <= len(distinct) <= min(MAX_ANSWER_CLASSES, len(answers) // 2):
        return probe
    labels = torch.tensor([distinct.index(a) for a in answers])
    # Each class's answer as the probe's first example with it tokenized it (its exact pieces).
    ids_of = {a: answer_ids[answers.index(a)] for a in distinct}
    return replace(probe, labels=labels, label_names=distinct, answers=[ids_of[a] for a in distinct])


def with_completion_texts(probe: ProbeSet, tokenizer: Any, aligned: bool) -> ProbeSet:
    """A completion or seq2seq probe with its prompts and its scored completions as separate texts
    (records, the report and the tab show them apart); unchanged without token-level labels."""
    targets = probe.inputs.get("labels")
    if targets is None or probe.labels is not None or tokenizer is None or probe.completions is not None:
        return probe
    completions = [answer_text([int(i) for i in row if i >= 0], tokenizer) for row in targets]
    prompts = list(probe.texts)  # a seq2seq input is the prompt already
    if aligned:
        ids, mask = probe.inputs["input_ids"], probe.inputs["attention_mask"].bool()
        for row in range(len(probe)):
            first = first_scored(targets[row])
            prompts[row] = tokenizer.decode(ids[row, :first][mask[row, :first]].tolist(), skip_special_tokens=True).strip()
    return replace(probe, texts=prompts, completions=completions)


def first_scored(labels: torch.Tensor) -> int:
    """The first position of a row's aligned labels that is scored (where its answer starts), or
    the row's length when none is."""
    scored = (labels != -100).nonzero().flatten()
    return int(scored[0]) if len(scored) else labels.shape[-1]


def answer_text(ids: Sequence[int], tokenizer: Any) -> str:
    """An answer's text as its class name: decoded without special tokens, stripped."""
    return tokenizer.decode(list(ids), skip_special_tokens=True).strip()


def prompt_part(probe: ProbeSet, aligned: bool) -> ProbeSet:
    """``probe`` without its answers: a completion's scored positions leave the attention mask (and
    its tokens), a seq2seq target leaves the inputs, so the causal checks edit prompts alone and
    score each class's answer after them (``aligned``: the labels are on the input's positions)."""
    inputs = {k: v for k, v in probe.inputs.items() if k != "labels"}
    labels = probe.inputs.get("labels")
    if labels is None or not aligned:
        return replace(probe, inputs=inputs)
    mask = inputs["attention_mask"].clone()
    tokens, word_ids = [], []
    for row in range(len(probe)):
        first = first_scored(labels[row])
        kept = int(mask[row, :first].sum())  # real tokens before the answer (padding may be on the left)
        mask[row, first:] = 0
        tokens.append(probe.tokens[row][:kept])
        word_ids.append(probe.word_ids[row][:kept])
    roles = None if probe.roles is None else [r[: len(t)] for r, t in zip(probe.roles, tokens)]
    return replace(probe, inputs={**inputs, "attention_mask": mask}, tokens=tokens, word_ids=word_ids, roles=roles)
