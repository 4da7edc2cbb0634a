"""Chat templates: which tokens of a rendered conversation are the template's, and whose turn the
others belong to.

A template's own text (``### user:``, ``<|im_start|>assistant``) is in every example, so its words
would top attributions and association tables without saying anything about the model. They are
treated like special tokens: kept by baselines, never attributed, never words or suspects.

The template is learned from the tokenizer alone: a conversation with sentinel contents is
rendered, and the text between the contents is the template's literal text. Where its tokens occur
in an example, they are template tokens; the others take the role of the turn they are in.
Examples that hold no template text are left as they are.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any, Optional, Sequence

import torch

from lightning_saliency.attribution import SpecialTokens
from lightning_saliency.attribution.tokens import special_token_mask
from lightning_saliency.probes import ProbeSet

ROLES = ("system", "user", "assistant")
_OPEN, _CLOSE = "\ue000", "\ue001"  # private-use characters: never in real text


def template_pieces(tokenizer: Any) -> list[tuple[str, Optional[str]]]:
    """The template's literal text pieces, each with the role whose turn follows it (``None``
    after the last turn); empty when the tokenizer has no chat template."""
    if not getattr(tokenizer, "chat_template", None):
        return []
    for roles in (ROLES, ROLES[1:]):  # some templates refuse a system turn
        messages = [{"role": role, "content": f"{_OPEN}{role}{_CLOSE}"} for role in roles]
        try:
            rendered = tokenizer.apply_chat_template(messages, tokenize=False)
        except Exception:  # noqa: BLE001 - a template may raise on any turn it does not take
            continue
        pieces, rest = [], rendered
        for role in roles:
            before, _, rest = rest.partition(f"{_OPEN}{role}{_CLOSE}")
            pieces.append((before, role))
        pieces.append((rest, None))
        # Whitespace alone is everywhere in real text: only pieces with something visible count.
        return [(text, role) for text, role in pieces if text.strip()]
    return []


def _occurrences(sequence: list[int], piece: list[int]) -> list[int]:
    n = len(piece)
    return [k for k in range(len(sequence) - n + 1) if n and sequence[k: k + n] == piece]


def template_mask(tokenizer: Any, ids: torch.Tensor, attention_mask: torch.Tensor,
                  pieces: Sequence[tuple[str, Optional[str]]]) -> tuple[torch.Tensor, list[list[Optional[str]]]]:
    """``(template, roles)``: a mask shaped like ``ids`` of the template's tokens, and per example
    each real token's role (``None`` for template tokens and tokens before any turn). A piece is
    found as its own token ids inside the example's: no decoding, so any tokenizer works whose
    template text tokenizes the same alone as in a conversation (the usual case: templates are
    built from special tokens and line breaks)."""
    # Each piece as rendered and without its surrounding line breaks: the first turn of a
    # conversation has no line break before its header, and BPE tokenizers keep line breaks.
    variants = [(form, role) for text, role in pieces for form in dict.fromkeys((text, text.strip()))]
    encoded = [tokenizer(text, add_special_tokens=False)["input_ids"] for text, _ in variants]
    template = torch.zeros_like(ids, dtype=torch.bool)
    roles: list[list[Optional[str]]] = []
    for row in range(ids.shape[0]):
        positions = attention_mask[row].bool().nonzero().flatten().tolist()
        real = ids[row, positions].tolist()
        found = sorted((start, start + len(piece_ids), role) for piece_ids, (_, role) in zip(encoded, variants)
                       for start in _occurrences(real, piece_ids))
        row_roles: list[Optional[str]] = [None] * len(real)
        current: Optional[str] = None
        cursor = 0
        for k in range(len(real)):
            while cursor < len(found) and found[cursor][1] <= k:
                current = found[cursor][2]  # the turn that follows the last piece ended before k
                cursor += 1
            if any(start <= k < end for start, end, _ in found[cursor:cursor + 2]):
                template[row, positions[k]] = True
            else:
                row_roles[k] = current
        roles.append(row_roles)
    return template, roles


def with_chat_roles(probe: ProbeSet, tokenizer: Any) -> ProbeSet:
    """``probe`` with its chat template's tokens marked special (``special_tokens_mask``, which
    attribution honours) and each token's turn in ``roles``; unchanged without a chat template
    or when no example holds the template's text."""
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
