"""The probe rows of each kind of task, built on a plain :class:`~.probe.ProbeSet`: a causal LM's
next-token probe, a completion's or a seq2seq target's, a token classifier's entity spans, and two
passes over any probe (a chat template's tokens marked special; label-like answers as classes)."""
from __future__ import annotations

from dataclasses import replace
from typing import Any, Optional, Sequence

import torch

from lightning_saliency.monitor.probe import ProbeSet, describe_tokens, probe_from_texts


def next_token_probe(probe: ProbeSet, labels: Optional[torch.Tensor], tokenizer: Any) -> ProbeSet:
    """A causal-LM probe: each example's last real token becomes its label and the tokens before it
    the context, so the attributed prediction (the next token after the context) has a known truth
    and probe accuracy is next-token accuracy. The label is taken from ``labels`` (``(batch, seq)``,
    as Hugging Face LM batches carry them) where it is not ignored (``-100``), else from the text."""
    ids, mask = probe.inputs["input_ids"].clone(), probe.inputs["attention_mask"].clone()
    truths = []
    for i in range(len(probe)):
        real = mask[i].nonzero().flatten()
        last = int(real.max())
        given = int(labels[i, last]) if labels is not None and labels.dim() == 2 else -100
        truths.append(given if given >= 0 else int(ids[i, last]))
        mask[i, last] = 0
        ids[i, last] = getattr(tokenizer, "pad_token_id", None) or 0
    inputs = {**probe.inputs, "input_ids": ids, "attention_mask": mask}
    texts = [tokenizer.decode(ids[i][mask[i].bool()].tolist()) if tokenizer is not None else " ".join(t[:-1])
             for i, t in enumerate(probe.tokens)]
    return ProbeSet(probe.indices, inputs, torch.tensor(truths), [t[:-1] for t in probe.tokens], texts,
                    [w[:-1] for w in probe.word_ids], probe.truncated)

def with_chat_roles(probe: ProbeSet, tokenizer: Any) -> ProbeSet:
    """``probe`` with its chat template's tokens marked special (``special_tokens_mask``, which
    attribution honours) and each token's turn in ``roles``; unchanged without a chat template
    or when no example holds the template's text."""
    from lightning_saliency.attribution import SpecialTokens
    from lightning_saliency.attribution.tokens import special_token_mask
    from lightning_saliency.monitor.chat import template_mask, template_pieces

    pieces = template_pieces(tokenizer)
    if not pieces:
        return probe
    ids, mask = probe.inputs["input_ids"], probe.inputs["attention_mask"]
    template, roles = template_mask(tokenizer, ids, mask, pieces)
    if not bool(template.any()):
        return probe
    special = special_token_mask(ids, SpecialTokens.from_tokenizer(tokenizer)) | template
    inputs = {**probe.inputs, "special_tokens_mask": special.long()}
    return replace(probe, inputs=inputs, roles=roles)

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

def completion_probe(prompts: Sequence[str], completions: Sequence[str], tokenizer: Any,
                      max_length: int) -> ProbeSet:
    """Prompt tokens (with the tokenizer's special tokens) then completion tokens; ``labels`` hold
    the completion's ids and -100 on the prompt and padding, as a completion-only SFT batch does."""
    rows = []
    for prompt, completion in zip(prompts, completions):
        prompt_ids = tokenizer(prompt)["input_ids"]
        completion_ids = tokenizer(completion, add_special_tokens=False)["input_ids"]
        if not completion_ids:
            raise ValueError(f"The completion {completion!r} of prompt {prompt!r} has no tokens.")
        rows.append((prompt_ids, completion_ids))
    width = min(max(len(p) + len(c) for p, c in rows), max_length)
    pad = getattr(tokenizer, "pad_token_id", None) or 0
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask, labels = torch.zeros_like(ids), torch.full_like(ids, -100)
    truncated = []
    for row, (prompt_ids, completion_ids) in enumerate(rows):
        joined = (prompt_ids + completion_ids)[:width]
        ids[row, : len(joined)] = torch.tensor(joined)
        mask[row, : len(joined)] = 1
        labels[row, len(prompt_ids): len(joined)] = torch.tensor(joined[len(prompt_ids):], dtype=torch.long)
        truncated.append(len(prompt_ids) + len(completion_ids) > width)
    inputs = {"input_ids": ids, "attention_mask": mask}
    tokens, _, word_ids = describe_tokens(inputs, tokenizer, None)
    return ProbeSet(list(range(len(rows))), {**inputs, "labels": labels}, None, tokens, list(prompts), word_ids,
                    truncated, completions=list(completions))

def sequence_probe(sources: Sequence[str], targets: Sequence[str], tokenizer: Any, max_length: int) -> ProbeSet:
    """Sources as the encoder's input, targets as ``labels`` (their own length, -100 on padding),
    tokenized as the tokenizer tokenizes targets (``text_target``, e.g. T5's closing ``</s>``)."""
    probe = probe_from_texts(sources, tokenizer, None, max_length)
    try:
        encoded = tokenizer(text_target=list(targets))["input_ids"]
    except TypeError:  # a tokenizer without text_target
        encoded = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in targets]
    labels = torch.full((len(encoded), max(len(ids) for ids in encoded)), -100, dtype=torch.long)
    for row, ids in enumerate(encoded):
        labels[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
    return replace(probe, inputs={**probe.inputs, "labels": labels}, texts=list(sources), completions=list(targets))

# A token-classification probe keeps each example's tag labels here until a run makes its span rows.
TAG_LABELS = "tag_labels"


class NoEntities(ValueError):
    """No probe example holds an entity (every tag is ``O`` or ``-100``)."""


def tagged_examples(probe: ProbeSet, labels: torch.Tensor, tag_names: Optional[Sequence[str]]) -> ProbeSet:
    """The examples of a token-classification probe with their tag ``labels`` kept (``-100`` on
    special tokens and further pieces); it must label at least one entity."""
    span_rows(probe, labels, tag_names)  # raises NoEntities now, at setup, rather than at the first run
    return replace(probe, inputs={**probe.inputs, TAG_LABELS: labels})


def entity_rows(probe: ProbeSet, tag_names: Optional[Sequence[str]],
                predicted: Optional[torch.Tensor] = None) -> ProbeSet:
    """One row per entity span of :func:`tagged_examples`: of the labels, or of ``predicted`` (the
    model's tag per token), read on the labelled positions (a word's first piece); a predicted
    span's row is labelled with the tag its first token truly has (``O`` for a false entity)."""
    labels = probe.inputs[TAG_LABELS]
    if predicted is None:
        return span_rows(probe, labels, tag_names)
    return span_rows(probe, torch.where(labels == -100, labels, predicted.to(labels.dtype)), tag_names, labels)


def span_rows(probe: ProbeSet, labels: torch.Tensor, tag_names: Optional[Sequence[str]],
              truths: Optional[torch.Tensor] = None) -> ProbeSet:
    """One row per entity span of each example's tag ``labels``: the example's inputs with a
    ``span_mask`` (1 on the span's tokens, every piece of its words included) and the span's tag as
    the row's label (``truths``' tag at the span's first token, when given). Rows keep their
    example's dataset index; ``spans`` tells them apart."""
    from lightning_saliency.tasks.token_classification import entity_spans

    rows, masks, tags, spans = [], [], [], []
    for i in range(len(probe)):
        real = probe.inputs["attention_mask"][i].bool().nonzero().flatten().tolist()
        words = probe.word_ids[i]
        for first, last, tag in entity_spans(labels[i, real].tolist(), tag_names):
            if truths is not None:
                tag = int(truths[i, real[first]])
            covered = {words[p] for p in range(first, last + 1) if words[p] is not None}
            members = [p for p in range(len(real)) if words[p] in covered] if covered else list(range(first, last + 1))
            mask = torch.zeros_like(probe.inputs["input_ids"][i])
            mask[[real[p] for p in members]] = 1
            rows.append(i)
            masks.append(mask)
            tags.append(tag)
            spans.append([min(members), max(members)])
    if not rows:
        raise NoEntities("The token-classification probe examples hold no entity (every tag is O or -100).")
    picked = probe.select(rows)
    inputs = {k: v for k, v in picked.inputs.items() if k != TAG_LABELS}
    return replace(picked, inputs={**inputs, "span_mask": torch.stack(masks)}, labels=torch.tensor(tags), spans=spans)
