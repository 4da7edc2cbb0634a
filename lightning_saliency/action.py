"""From alarm to action: the training examples that carry a confirmed shortcut, and which to keep.

A confirmed check names its shortcut (``check.token`` in the record: a word ``"zorbly"``, a pair
``"a + b"``, or a feature ``"length:long"``, ``"token_class:punctuation"``) and lists the carriers
among the training examples the monitor read (``carriers/<name>.jsonl`` next to the record). These
helpers find them in a whole dataset, a ``datasets.Dataset`` or a list, so that you can drop them
or rebalance the classes::

    keep = rebalance_indices(train_dataset, "token_class:punctuation", label_key="label")
    train_dataset = train_dataset.select(keep)

Words are read as the monitor reads them: with the model's tokenizer (its normalizer and
pre-tokenizer: lower case and punctuation split off for BERT), else split on word characters. A
conversation (a list of ``{"role", "content"}`` messages, as TRL's conversational datasets hold
them) is read turn by turn, without its last assistant turn: that is the answer, not the prompt.
"""
from __future__ import annotations

import math
import random
import re
from typing import Any, Optional, Sequence, Union

from lightning_saliency.monitor.features.carriers import carries
from lightning_saliency.schema.findings import PAIR_SEPARATOR, FeatureAssociation, kind_of

_WORDS = re.compile(r"\w+|[^\w\s]")
TextKey = Union[str, Sequence[str]]


def text_words(text: str, tokenizer: Any = None) -> list[str]:
    """The words of ``text`` as the monitor reads them (see the module docstring)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return _WORDS.findall(text)
    if backend.normalizer is not None:
        text = backend.normalizer.normalize_str(text)
    if backend.pre_tokenizer is None:
        return text.split()
    return [word for word, _ in backend.pre_tokenizer.pre_tokenize_str(text)]


def _is_conversation(value: Any) -> bool:
    return (isinstance(value, list) and bool(value)
            and all(isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
                    for m in value))


def _turns(item: Any, text_key: TextKey) -> Optional[list[tuple[str, str]]]:
    """A conversation's prompt turns as ``(role, content)``, or ``None`` when ``item`` is not one
    (a list of messages, or a mapping that holds one under ``text_key``)."""
    value = item.get(text_key) if isinstance(item, dict) and isinstance(text_key, str) else item
    if not _is_conversation(value):
        return None
    if value[-1]["role"] == "assistant":  # the answer: the monitor reads the prompt alone
        value = value[:-1]
    return [(m["role"], m["content"]) for m in value]


def _parts(item: Any, text_key: TextKey) -> tuple[str, ...]:
    """An example's text, or its texts for a pair input (a tuple of strings, or several columns)."""
    keys = (text_key,) if isinstance(text_key, str) else tuple(text_key)
    if isinstance(item, str):
        return (item,)
    if isinstance(item, (tuple, list)) and item and all(isinstance(part, str) for part in item):
        return tuple(item)
    if isinstance(item, dict) and all(isinstance(item.get(key), str) for key in keys):
        return tuple(item[key] for key in keys)
    raise ValueError(f"An example is {type(item).__name__}, not a text, a pair of texts, a conversation or a "
                     f"mapping with text column(s) {keys!r}: pass text_key= to name the text column (two for a pair "
                     "input; the messages column for a conversation).")


def example_layout(item: Any, text_key: TextKey = "text",
                   tokenizer: Any = None) -> tuple[list[str], list[int], Optional[list[str]]]:
    """An example's words as the monitor reads them, each word's text segment (0 for a single
    text; a pair's second text is segment 1; a conversation's turns in order) and, for a
    conversation, each word's role (``None`` otherwise)."""
    turns = _turns(item, text_key)
    parts = [(None, part) for part in _parts(item, text_key)] if turns is None else turns
    words: list[str] = []
    segments: list[int] = []
    roles: list[str] = []
    for segment, (role, part) in enumerate(parts):
        found = text_words(part, tokenizer)
        words += found
        segments += [segment] * len(found)
        roles += [role or ""] * len(found)
    return words, segments, roles if turns is not None else None


def example_words(item: Any, text_key: TextKey = "text", tokenizer: Any = None) -> tuple[list[str], list[int]]:
    """An example's words as the monitor reads them, and each word's text segment (0 for a single
    text; a pair's second text is segment 1)."""
    words, segments, _ = example_layout(item, text_key, tokenizer)
    return words, segments


def _reference(shortcut: str, threshold: Optional[float], words: Sequence[str]) -> Optional[FeatureAssociation]:
    if kind_of(shortcut) == "length" and threshold is None:
        raise ValueError("A length shortcut needs threshold= (the word count above which an example carries "
                         "it: the record's metrics.features entry, training.threshold).")
    if kind_of(shortcut) in ("position", "segment", "template") and not words:
        raise ValueError(f"A {kind_of(shortcut)} shortcut needs words= (the words that decide the class there: the "
                         "record's metrics.features entry, training.words).")
    return FeatureAssociation(shortcut, 0.0, None, 0, 0, {}, None if threshold is None else float(threshold),
                              tuple(words))


def shortcut_examples(data: Sequence[Any], shortcut: str, *, text_key: TextKey = "text", tokenizer: Any = None,
                      threshold: Optional[float] = None, words: Sequence[str] = ()) -> list[int]:
    """The indices of the examples of ``data`` that carry ``shortcut``.

    Args:
        data: a ``datasets.Dataset`` or a list of texts, of pairs of texts, of conversations, or of
            mappings with a text column (or two, for a pair input; or a messages column).
        shortcut: the confirmed check's ``token`` (a word, ``"a + b"``, or ``"<kind>:<variant>"``).
        text_key: the text column of mapping examples; two names for a pair input
            (``("premise", "hypothesis")``); the messages column for conversations (``"messages"``).
        tokenizer: the model's tokenizer, to read words as the monitor did.
        threshold: for ``length:long``, the word count above which an example carries it.
        words: for a position (``position:first``), a segment (``segment:last``) or a template
            (``template:system``), the words that decide the class there.

    Returns:
        The indices, in order.

    Raises:
        ValueError: an example without text, a length shortcut without ``threshold`` or a
            position, segment or template without ``words``.

    Example:
        >>> shortcut_examples(["a zorbly film", "a dull film"], "zorbly")
        [0]
    """
    members = tuple(shortcut.split(PAIR_SEPARATOR))
    reference = _reference(shortcut, threshold, words)
    found = []
    for i in range(len(data)):
        example, segments, roles = example_layout(data[i], text_key, tokenizer)
        if carries(shortcut, members, example, reference, segments, roles):
            found.append(i)
    return found


def rebalance_indices(data: Sequence[Any], shortcut: str, *, labels: Optional[Sequence[int]] = None,
                      label_key: str = "label", text_key: TextKey = "text", tokenizer: Any = None,
                      threshold: Optional[float] = None, words: Sequence[str] = (), seed: int = 0) -> list[int]:
    """The indices to keep so that every class carries ``shortcut`` at the same rate (the lowest
    class's): carriers of the classes above it are dropped, a seeded random choice. The feature
    then no longer tells the classes apart, and no class loses examples without it.

    Args:
        data: a ``datasets.Dataset`` or a list, as for :func:`shortcut_examples`.
        shortcut: the confirmed check's ``token``.
        labels: the class of every example; else read from each example's ``label_key``.
        label_key: the label column of mapping examples.
        text_key: the text column of mapping examples (two for a pair input; the messages column for
            conversations).
        tokenizer: the model's tokenizer, to read words as the monitor did.
        threshold: for ``length:long``, the word count above which an example carries it.
        words: for a position, a segment or a template, the words that decide the class there.
        seed: the seed of the choice of carriers dropped.

    Returns:
        The kept indices, in order (``dataset.select(kept)``).

    Example:
        >>> rebalance_indices(["zorbly good", "zorbly fine", "good", "zorbly bad", "bad", "dull"], "zorbly",
        ...                   labels=[1, 1, 1, 0, 0, 0])
        [0, 2, 3, 4, 5]
    """
    labels = list(labels) if labels is not None else [int(data[i][label_key]) for i in range(len(data))]
    carried = set(shortcut_examples(data, shortcut, text_key=text_key, tokenizer=tokenizer, threshold=threshold,
                                    words=words))
    classes = sorted(set(labels))
    members = {y: [i for i, label in enumerate(labels) if label == y] for y in classes}
    rates = {y: sum(i in carried for i in rows) / len(rows) for y, rows in members.items()}
    target = min(rates.values())
    rng = random.Random(seed)
    dropped: set[int] = set()
    for y, rows in members.items():
        count, size = sum(i in carried for i in rows), len(rows)
        exact = (count - target * size) / (1 - target) if target < 1 else 0.0
        # The whole number of carriers to drop whose rate comes closest to the target.
        excess = min({math.floor(exact), math.ceil(exact)}, key=lambda k: abs((count - k) / (size - k) - target)
                     if k < size else math.inf)
        if excess > 0:
            dropped.update(rng.sample([i for i in rows if i in carried], excess))
    return [i for i in range(len(data)) if i not in dropped]
