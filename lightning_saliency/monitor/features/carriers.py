"""From alarm to action: which training examples carry a shortcut, of any kind.

A word carries it when it is among the example's words (a pair: both members); a feature that is
not a word when :meth:`~.base.Feature.carries` says so, as the training set's association defines
it (a length above the sample's median). The monitor lists the carriers of a confirmed shortcut
among the training examples its artifact table read; :mod:`lightning_saliency.action` finds them
in a whole dataset.
"""
from __future__ import annotations

from typing import Any, Optional, Sequence

from lightning_saliency.monitor.features.base import feature_of
from lightning_saliency.schema.findings import Carriers, FeatureAssociation, kind_of


def carries(token: str, members: Sequence[str], words: Sequence[str],
            reference: Optional[FeatureAssociation] = None, segments: Optional[Sequence[int]] = None,
            roles: Optional[Sequence[Optional[str]]] = None) -> bool:
    """Whether an example with ``words`` carries the shortcut ``token`` (its ``members`` for a
    word or a pair; ``reference``: a feature's training-set association; ``segments``: each
    word's text segment, for pair inputs; ``roles``: each word's chat turn, for conversations)."""
    if kind_of(token) in ("word", "pair"):
        present = set(words)
        return all(member in present for member in members)
    feature, variant = feature_of(token)
    if reference is None:
        raise ValueError(f"{token!r} is a feature's shortcut: its carriers need the training set's association "
                         "(the record's metrics.features entry, or threshold= for a length).")
    return feature.carries(variant, words, reference, segments, roles)


def _text(words: Sequence[str], segments: Optional[Sequence[int]],
          roles: Optional[Sequence[Optional[str]]] = None) -> Any:
    """An example's text as its words: one string, one per segment for a pair input, or one per
    chat turn (by role, in order) for a conversation."""
    if roles and any(roles):
        turns: dict[str, list[str]] = {}
        for word, role in zip(words, roles):
            turns.setdefault(role or "", []).append(word)
        return {role: " ".join(turn) for role, turn in turns.items()}
    if not segments or segments[-1] == 0:
        return " ".join(words)
    return [" ".join(w for w, s in zip(words, segments) if s == k) for k in range(segments[-1] + 1)]


def carrier_lines(indices: Sequence[int], word_lists: Sequence[Sequence[str]], labels: Sequence[Any], token: str,
                  members: Sequence[str], reference: Optional[FeatureAssociation],
                  dataset_size: Optional[int] = None, segments: Optional[Sequence[Sequence[int]]] = None,
                  roles: Optional[Sequence[Sequence[Optional[str]]]] = None,
                  ) -> tuple[Carriers, list[dict[str, Any]]]:
    """The carriers among these examples, as a summary (count, share overall and per class) and
    as lines for a JSONL file (dataset index, label, text as its words: a list of one text per
    segment for pair inputs, given ``segments``; a mapping of role to turn for conversations,
    given ``roles``)."""
    lines, per_class, carried = [], {}, {}
    for k, (index, words, label) in enumerate(zip(indices, word_lists, labels)):
        per_class[label] = per_class.get(label, 0) + 1
        parts = segments[k] if segments is not None else None
        turns = roles[k] if roles is not None else None
        if carries(token, members, words, reference, parts, turns):
            carried[label] = carried.get(label, 0) + 1
            lines.append({"index": int(index), "label": label, "text": _text(words, parts, turns)})
    total = len(indices)
    shares = {label: carried.get(label, 0) / count for label, count in per_class.items()}
    summary = Carriers(len(lines), total, len(lines) / total if total else 0.0, shares, dataset_size)
    return summary, lines
