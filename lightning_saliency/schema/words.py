"""Words from tokens: subword pieces joined into words, without torch (the report reads records
with these, and the attribution core merges tensors with the same grouping)."""
from __future__ import annotations

from typing import Optional, Sequence


def group_positions(word_ids: Sequence[Optional[int]], keep: Optional[Sequence[bool]] = None
                    ) -> tuple[list[list[int]], list[bool]]:
    """Token positions grouped into words by ``word_ids`` (neighbours with the same id are one
    word), and per group whether it is a special token (word id ``None``: a group of its own).
    Positions where ``keep`` is false (padding) are dropped and break a word."""
    groups: list[list[int]] = []
    special: list[bool] = []
    previous: Optional[object] = None
    for position, word in enumerate(word_ids):
        if keep is not None and not keep[position]:
            previous = None
            continue
        if word is None:
            groups.append([position])
            special.append(True)
        elif groups and not special[-1] and word == previous:
            groups[-1].append(position)
        else:
            groups.append([position])
            special.append(False)
        previous = word
    return groups, special


_WORD_START_MARKS = ("\u0120", "\u2581")  # byte-level BPE's "Ġ" and SentencePiece's "▁" mark a word's first piece


def join_pieces(pieces: Sequence[str]) -> str:
    """One word's text from its pieces: WordPiece's ``##`` continuation marks and the word-start
    marks of byte-level BPE and SentencePiece are dropped."""
    text = "".join(p[2:] if k and p.startswith("##") else p for k, p in enumerate(pieces))
    for mark in _WORD_START_MARKS:
        text = text.lstrip(mark) if text.startswith(mark) else text
    return text or "".join(pieces)


def segment_numbers(special: Sequence[bool]) -> list[int]:
    """Per regular (not special) entry, the number of its text segment: a pair input's
    ``[CLS] a b [SEP] c [SEP]`` (or RoBERTa's ``<s> a </s></s> c </s>``) gives ``[0, 0, 1]``. A run of
    special tokens between regular ones closes a segment; those before the first word or after the
    last do not. Read from the special tokens rather than ``token_type_ids``, which not every model
    takes."""
    numbers, segment, seen_word, after_special = [], 0, False, False
    for is_special in special:
        if is_special:
            after_special = True
            continue
        if seen_word and after_special:
            segment += 1
        numbers.append(segment)
        seen_word, after_special = True, False
    return numbers


def word_spans(
    tokens: Sequence[str], special: Sequence[bool], word_ids: Sequence[Optional[int]]
) -> tuple[list[str], list[list[int]], list[bool]]:
    """One example's words: each word's text (pieces joined), its token positions, and whether the
    entry is a special token (special tokens stay entries of their own)."""
    # Special tokens stay apart (None); a token without a known word is a word of its own.
    ids = [None if is_special else (word if word is not None else ("token", k))
           for k, (word, is_special) in enumerate(zip(word_ids, special))]
    positions, flags = group_positions(ids)
    return [join_pieces([tokens[p] for p in span]) for span in positions], positions, flags


def word_scores(
    tokens: Sequence[str], scores: Sequence[float], special: Sequence[bool], word_ids: Sequence[Optional[int]]
) -> tuple[list[str], list[float], list[bool]]:
    """Token scores of one example merged into words (``sum``, which keeps completeness), with
    each word's text; special tokens stay entries of their own."""
    words, positions, flags = word_spans(tokens, special, word_ids)
    return words, span_sums(scores, positions), flags


def span_roles(roles: Optional[Sequence[Optional[str]]], positions: Sequence[Sequence[int]]) -> list[Optional[str]]:
    """Per word (its token ``positions``), the chat turn of its first token (``roles``: per token,
    as ``monitor.chat`` reads them); ``None`` for every word without roles."""
    if roles is None:
        return [None] * len(positions)
    return [roles[p[0]] if p and p[0] < len(roles) else None for p in positions]


def span_sums(scores: Sequence[float], positions: Sequence[Sequence[int]]) -> list[float]:
    """Each word's score: the sum of its tokens' scores."""
    return [float(sum(scores[p] for p in span)) for span in positions]


class PieceJoiner:
    """Words from token ids without a tokenizer's ``word_ids()`` (collated training batches carry
    none): a piece continues the previous word when it is a WordPiece ``##`` piece, or, in a
    vocabulary whose pieces mark word starts (byte-level BPE's "Ġ", SentencePiece's "▁"), when it
    lacks the mark. Other vocabularies: every token is a word."""

    def __init__(self, pieces: Sequence[str], special_ids: Sequence[int]) -> None:
        self.pieces = list(pieces)
        self.special = set(int(i) for i in special_ids)
        marked = sum(p.startswith(_WORD_START_MARKS) for p in self.pieces)
        self.word_pieces = any(p.startswith("##") for p in self.pieces)
        self.start_marks = not self.word_pieces and marked > len(self.pieces) // 10

    def _continues(self, piece: str) -> bool:
        if self.word_pieces:
            return piece.startswith("##")
        return self.start_marks and not piece.startswith(_WORD_START_MARKS)

    def words_and_segments(self, ids: Sequence[int]) -> tuple[list[str], list[int]]:
        """The words of one example's token ids (special tokens left out), and each word's text
        segment (:func:`segment_numbers`: special tokens between words close a segment), in one pass."""
        words: list[list[str]] = []
        entries: list[bool] = []  # per word or special token, whether it is special
        previous_special = True
        for token in ids:
            if token in self.special or not 0 <= token < len(self.pieces):
                entries.append(True)
                previous_special = True
                continue
            piece = self.pieces[token]
            if words and not previous_special and self._continues(piece):
                words[-1].append(piece)
            else:
                words.append([piece])
                entries.append(False)
            previous_special = False
        return [join_pieces(w) for w in words], segment_numbers(entries)

    def words(self, ids: Sequence[int]) -> list[str]:
        """The words of one example's token ids (special tokens left out)."""
        return self.words_and_segments(ids)[0]
