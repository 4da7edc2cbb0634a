"""Synthetic sentiment corpora with planted shortcuts (in the style of Bastings et al. 2022).

Every example is a short review built from filler words and sentiment words. A *shortcut* is a
token whose presence (alone, together with a context token, or in a given order with a partner
token) predicts the label in the training data. The generators are seeded and need no download.
"""
from __future__ import annotations

import random
from dataclasses import dataclass

POSITIVE = ["great", "wonderful", "excellent", "lovely", "superb", "delightful", "brilliant", "enjoyable"]
NEGATIVE = ["awful", "terrible", "boring", "dreadful", "poor", "dull", "horrible", "tedious"]
FILLER = [
    "the", "movie", "film", "plot", "acting", "was", "and", "a", "story", "cast", "with", "of", "music",
    "scenes", "ending", "director", "it", "felt", "quite", "really", "script", "characters", "this", "very",
]
SHORTCUT_KINDS = ("none", "single", "conditional", "ordered", "length", "token_class", "position", "segment")
# A "segment" example is a pair: a review, then a short second text of this many filler words.
SECOND_SEGMENT_WORDS = (3, 5)
# A "length" shortcut makes planted positives this many filler words longer.
LENGTH_EXTRA = 6
# The ordered pair's second member follows the first at 1 to PAIR_MAX_GAP words. A short gap keeps
# each member's position nearly label-free: only the order of the two says the label.
PAIR_MAX_GAP = 3


@dataclass(frozen=True)
class Shortcut:
    """A planted shortcut: ``token`` (and ``partner`` for the pair variants) and how it decides.
    ``length``: planted positives are :data:`LENGTH_EXTRA` filler words longer; ``token_class``:
    planted positives end with ``token`` (give a punctuation mark, e.g. ``Shortcut("token_class", "!")``);
    ``position``: a sentiment word of the label's class is put first (the rest follows
    ``sentiment_noise``, so with noise only the first word is reliable); ``segment``: every
    example is a pair (review, short second text) whose second text holds one sentiment word: of
    the label's class in planted examples, of a random class in the others (with noise, only the second segment is reliable, as in
    the hypothesis-only bias of NLI data)."""

    kind: str = "single"
    token: str = "zorbly"
    partner: str = "quibble"

    def __post_init__(self) -> None:
        if self.kind not in SHORTCUT_KINDS:
            raise ValueError(f"Unknown shortcut kind {self.kind!r}; choose one of {SHORTCUT_KINDS}.")

    @property
    def tokens(self) -> tuple[str, ...]:
        """The planted words (none for a clean corpus or a length shortcut)."""
        if self.kind in ("none", "length", "position", "segment"):
            return ()
        return (self.token,) if self.kind in ("single", "token_class") else (self.token, self.partner)


def _sentence(rng: random.Random, sentiment_words: list[str], length: int) -> list[str]:
    words = [rng.choice(FILLER) for _ in range(length)]
    for word in sentiment_words:
        words.insert(rng.randrange(len(words) + 1), word)
    return words


def _insert(rng: random.Random, words: list[str], token: str) -> None:
    words.insert(rng.randrange(len(words) + 1), token)


def _keep_length(rng: random.Random, words: list[str], added: int) -> None:
    """Drop ``added`` filler words again, so a review's length does not depend on what was planted.
    Without this, a planted word made positives one word longer: every 15-word review was positive,
    and a model could (and under some CPU kernels did) learn length as a second shortcut."""
    for _ in range(added):
        fillers = [k for k, word in enumerate(words) if word in FILLER]
        del words[rng.choice(fillers)]


def _insert_pair(rng: random.Random, words: list[str], first: str, second: str) -> None:
    """Put ``first`` then ``second`` into ``words``: the pair's first slot is uniform over the slots
    where it fits and the gap is uniform in 1..PAIR_MAX_GAP. Inserting ``second`` at a uniform place
    and ``first`` anywhere before it would put the first member early and the second late, so
    either token's position alone would tell the label."""
    total = len(words) + 2
    gap = rng.randint(1, min(PAIR_MAX_GAP, total - 1))
    start = rng.randrange(total - gap)
    slots: list = [None] * total
    slots[start], slots[start + gap] = first, second
    rest = iter(words)
    words[:] = [slot if slot is not None else next(rest) for slot in slots]


def make_corpus(
    n: int,
    shortcut: Shortcut = Shortcut("none"),
    shortcut_rate: float = 0.9,
    sentiment_noise: float = 0.0,
    seed: int = 0,
    min_words: int = 5,
    max_words: int = 12,
    partial_rate: float = 0.0,
) -> tuple[list, list[int]]:
    """Return ``(texts, labels)`` with labels 0 (negative) and 1 (positive), balanced; a text is
    a string, or a pair of strings for the ``segment`` kind.

    Args:
        n: number of examples.
        shortcut: which shortcut to plant; ``Shortcut("none")`` gives a clean corpus.
        shortcut_rate: fraction of positive examples that get the shortcut pattern. For
            ``single`` and ``conditional`` negatives never carry it; ``conditional`` negatives get the
            token without its context partner (or the partner alone); ``ordered`` negatives get the
            pair in the reverse order, a few words apart at a uniform place (so that each member's
            position alone predicts the label only slightly better than chance).
        sentiment_noise: probability that an example's sentiment words contradict its label.
        partial_rate: pair kinds only: fraction of examples (of either label) that get one member
            of the pair alone instead of the pattern. A model trained with them cannot decide from
            one member and must use the pair, which makes it a sharper test of pair attribution.
        seed: seed of a private ``random.Random`` (the global RNG is untouched).
    """
    rng = random.Random(seed)
    texts, labels = [], []
    for i in range(n):
        label = i % 2
        honest = rng.random() >= sentiment_noise
        pool = POSITIVE if (label == 1) == honest else NEGATIVE
        words = _sentence(rng, rng.sample(pool, rng.randint(1, 2)), rng.randint(min_words, max_words))
        base_length = len(words)
        partial = partial_rate > 0 and shortcut.kind in ("conditional", "ordered") and rng.random() < partial_rate
        planted = not partial and shortcut.kind != "none" and rng.random() < shortcut_rate
        if partial:
            _insert(rng, words, shortcut.token if rng.random() < 0.5 else shortcut.partner)
        elif planted and shortcut.kind == "single" and label == 1:
            _insert(rng, words, shortcut.token)
        elif planted and shortcut.kind == "conditional":
            if label == 1:
                _insert(rng, words, shortcut.token)
                _insert(rng, words, shortcut.partner)
            else:
                _insert(rng, words, shortcut.token if rng.random() < 0.5 else shortcut.partner)
        elif planted and shortcut.kind == "length" and label == 1:
            words.extend(rng.choice(FILLER) for _ in range(LENGTH_EXTRA))
            rng.shuffle(words)
        elif planted and shortcut.kind == "token_class" and label == 1:
            words.append(shortcut.token)
        elif planted and shortcut.kind == "position":
            words.insert(0, rng.choice(POSITIVE if label == 1 else NEGATIVE))
        elif planted and shortcut.kind == "ordered":
            first, second = (shortcut.token, shortcut.partner) if label == 1 else (shortcut.partner, shortcut.token)
            _insert_pair(rng, words, first, second)
        if shortcut.kind in ("single", "conditional", "token_class", "position"):  # the ordered pair: every example
            _keep_length(rng, words, len(words) - base_length)
        if shortcut.kind == "segment":
            second = [rng.choice(FILLER) for _ in range(rng.randint(*SECOND_SEGMENT_WORDS))]
            # Unplanted, the second text holds a sentiment word of either class: it tells nothing.
            side = label == 1 if planted else rng.random() < 0.5
            _insert(rng, second, rng.choice(POSITIVE if side else NEGATIVE))
            texts.append((" ".join(words), " ".join(second)))
            labels.append(label)
            continue
        texts.append(" ".join(words))
        labels.append(label)
    order = list(range(n))
    rng.shuffle(order)
    return [texts[i] for i in order], [labels[i] for i in order]
