"""Token-level edits of the causal checks: delete a word everywhere, or insert it somewhere.

Pure functions over token-id lists, so what is edited can be unit-tested without a model. Every
random choice comes from a private ``random.Random`` seeded by the run's seed, the word and the
example's dataset index, so each rank of a DDP job plans exactly the same edits.
"""
from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass
from typing import Optional, Sequence

from lightning_saliency.attribution.tokens import SpecialTokens
from lightning_saliency.schema.words import segment_numbers, span_roles, word_spans
from lightning_saliency.probes import ProbeSet


@dataclass(frozen=True)
class Sequence_:
    """One model input row: token ids (no padding) and their token type ids, if the model takes them."""

    ids: tuple[int, ...]
    types: Optional[tuple[int, ...]] = None


@dataclass(frozen=True)
class Edit:
    """One edited example: its row in the confirmation set and the edited input."""

    row: int
    sequence: Sequence_


def sequences_of(examples: ProbeSet) -> list[Sequence_]:
    """Each example's input as token ids without padding (and its token types, if it has them)."""
    ids, mask = examples.inputs["input_ids"], examples.inputs["attention_mask"].bool()
    types = examples.inputs.get("token_type_ids")
    return [Sequence_(tuple(ids[i][mask[i]].tolist()), None if types is None else tuple(types[i][mask[i]].tolist()))
            for i in range(len(examples))]


class ConfirmationView:
    """The confirmation examples as token-id lists with their words and the words' positions.

    A rendered conversation's template tokens (``special_tokens_mask``, set by ``monitor.chat``)
    are special here as in the records: never words, never edited, always kept."""

    def __init__(self, examples: ProbeSet, special: SpecialTokens) -> None:
        self.indices = list(examples.indices)
        self.sequences = sequences_of(examples)
        self.spans: list[list[tuple[str, list[int]]]] = []
        self.segments: list[list[int]] = []  # per row, each word's text segment (pair inputs)
        self.roles: list[list[Optional[str]]] = []  # per row, each word's chat turn (conversations)
        marked = examples.inputs.get("special_tokens_mask")
        mask = examples.inputs["attention_mask"].bool()
        for i, sequence in enumerate(self.sequences):
            given = marked[i][mask[i]].tolist() if marked is not None else [0] * len(sequence.ids)
            flags = [t in special.special_ids or bool(m) for t, m in zip(sequence.ids, given)]
            words, positions, is_special = word_spans(examples.tokens[i], flags, examples.word_ids[i])
            self.spans.append([(w, p) for w, p, s in zip(words, positions, is_special) if not s])
            self.segments.append(segment_numbers(is_special))
            roles = examples.roles[i] if examples.roles is not None else None
            self.roles.append(span_roles(roles, [p for _, p in self.spans[-1]]))
        self.words = [{w for w, _ in spans} for spans in self.spans]
        self.frequency = Counter(w for words in self.words for w in words)
        self.special_ids = special.special_ids

    def __len__(self) -> int:
        return len(self.sequences)

    def word_ids(self, word: str) -> Optional[tuple[int, ...]]:
        """The token ids of ``word`` where it occurs (its first occurrence)."""
        for sequence, spans in zip(self.sequences, self.spans):
            for text, positions in spans:
                if text == word:
                    return tuple(sequence.ids[p] for p in positions)
        return None

    def pieces_of(self, words: Sequence[str]) -> list[tuple[int, ...]]:
        """The token ids of each of ``words`` that occurs in these examples (its first occurrence),
        in the order of ``words``: one pass over the examples."""
        wanted, found = set(words), {}
        for sequence, spans in zip(self.sequences, self.spans):
            for text, positions in spans:
                if text in wanted and text not in found:
                    found[text] = tuple(sequence.ids[p] for p in positions)
        return [found[w] for w in words if w in found]

    def containing(self, words: Sequence[str], every: bool = True) -> list[int]:
        """Rows whose example contains every word of ``words`` (or any, with ``every=False``)."""
        test = all if every else any
        return [row for row, present in enumerate(self.words) if test(w in present for w in words)]

    def deleted(self, row: int, words: Sequence[str], replacement: int) -> Optional[Edit]:
        """The example with every token of every occurrence of ``words`` replaced by ``replacement``;
        ``None`` when no regular token would be left (a forward pass needs one)."""
        sequence = self.sequences[row]
        ids = list(sequence.ids)
        removed = {p for word, positions in self.spans[row] if word in words for p in positions}
        for position in removed:
            ids[position] = replacement
        regular_left = sum(1 for p, t in enumerate(sequence.ids) if p not in removed and t not in self.special_ids)
        return Edit(row, Sequence_(tuple(ids), sequence.types)) if removed and regular_left else None

    def inserted(self, row: int, pieces: Sequence[int], rng: random.Random, max_length: int) -> Optional[Edit]:
        """The example with ``pieces`` inserted before a random word (or after the last one);
        ``None`` when the result would be longer than the model takes."""
        sequence, spans = self.sequences[row], self.spans[row]
        if not spans or len(sequence.ids) + len(pieces) > max_length:
            return None
        slots = [positions[0] for _, positions in spans] + [spans[-1][1][-1] + 1]
        at = rng.choice(slots)
        ids = sequence.ids[:at] + tuple(pieces) + sequence.ids[at:]
        types = None
        if sequence.types is not None:  # the inserted tokens join the segment they land in
            segment = sequence.types[at - 1] if at else sequence.types[0]
            types = sequence.types[:at] + (segment,) * len(pieces) + sequence.types[at:]
        return Edit(row, Sequence_(ids, types))

    def rebuilt(self, row: int, pieces: Sequence[Optional[Sequence[int]]], insert: Sequence[tuple[int, Sequence[int]]] = (),
                max_length: Optional[int] = None) -> Optional[Edit]:
        """The example with its words rebuilt: word ``k`` of ``spans[row]`` becomes ``pieces[k]``
        (its own tokens when that is ``None``, nothing when it is empty), and each ``(slot, ids)`` of
        ``insert`` goes before word ``slot`` (after the last word when ``slot`` is the number of
        words). Special tokens stay where they are. ``None`` when no regular token is left or the
        result is longer than ``max_length``: a removal that keeps the text in distribution (a
        shorter text, not a masked one; Madsen et al. 2023)."""
        sequence, spans = self.sequences[row], self.spans[row]
        starts = {positions[0]: k for k, (_, positions) in enumerate(spans)}
        inside = {p for _, positions in spans for p in positions}
        added = {slot: [] for slot, _ in insert}
        for slot, ids in insert:
            added[slot].extend(ids)
        ids_out, types_out = [], []
        types = sequence.types
        last_word_end = spans[-1][1][-1] if spans else len(sequence.ids) - 1

        def put(tokens: Sequence[int], segment: Optional[int]) -> None:
            ids_out.extend(tokens)
            types_out.extend([segment or 0] * len(tokens))

        for position, token in enumerate(sequence.ids):
            segment = None if types is None else types[position]
            if position in starts:
                k = starts[position]
                put(added.get(k, ()), segment)
                word_pieces = pieces[k]
                put([sequence.ids[p] for p in spans[k][1]] if word_pieces is None else word_pieces, segment)
            elif position not in inside:
                put([token], segment)
            if position == last_word_end:
                put(added.get(len(spans), ()), segment)
        regular = sum(1 for t in ids_out if t not in self.special_ids)
        if not regular or (max_length is not None and len(ids_out) > max_length):
            return None
        return Edit(row, Sequence_(tuple(ids_out), None if types is None else tuple(types_out)))


def edit_rng(seed: int, *parts: object) -> random.Random:
    """A private generator for one edit (str seeds hash deterministically across processes)."""
    return random.Random(":".join(str(p) for p in (seed, *parts)))


def frequency_matched(view: ConfirmationView, word: str, candidates: Sequence[str], count: int, seed: int) -> list[str]:
    """``count`` words of ``candidates`` whose number of confirmation examples is closest to
    ``word``'s (ties in a seeded random order): the random control of a causal check."""
    target = view.frequency.get(word, 0)
    pool = sorted({c for c in candidates if view.frequency.get(c, 0) > 0})
    edit_rng(seed, "control", word).shuffle(pool)
    pool.sort(key=lambda c: abs(view.frequency[c] - target))  # stable: the shuffle breaks ties
    return pool[:count]
