"""Shortcuts that are not words: a feature of the text (its length, a class of tokens) that goes
with a label, which a model can learn instead of the meaning (Gururangan et al. 2018's length in
NLI; Zhou et al. 2024's punctuation and digits).

A feature is one class in one file of this package, registered by its kind, as a method is in
``attribution/methods`` and a task in ``tasks/``. It takes the same three steps as a word:

1. **association**: how strongly it goes with a class, in the training set and in the probe's labels;
2. **reliance**: where attributions can measure it, the share of |attribution| on its words,
   rising since ``start``;
3. **a counterfactual edit**: removing it from examples of its class and adding it to examples of
   another, each against a control edit of the same size that leaves the feature alone, judged by
   the same flip, strength and effect-size rules as words.

Everything here is pure: word lists, labels and token-id edits, no model.
"""
from __future__ import annotations

import random
from abc import ABC, abstractmethod
from collections import Counter
from typing import Callable, ClassVar, Optional, Sequence

from lightning_saliency.monitor.features.edits import ConfirmationView, Edit, edit_rng
from lightning_saliency.monitor.metrics.shortcut import association_z
from lightning_saliency.registry import Registry
from lightning_saliency.schema.findings import FEATURE_SEPARATOR, KINDS, FeatureAssociation

FEATURES: "Registry[Feature]" = Registry("feature", "register one with lightning_saliency.monitor.features.register_feature")
# Edits per test at most, as for words (causal.MAX_TRIALS).
MAX_EDITS = 128
Lookup = Callable[[str], Optional[tuple[int, ...]]]
# Per example, per word: its text segment (``schema.words.segment_numbers``); ``None``: one segment each.
Segments = Optional[Sequence[Sequence[int]]]
# Per example, per word: its chat turn (``system``, ``user``, ...; ``monitor.chat``) for a rendered
# conversation; ``None``: no turns (plain texts and pairs).
Roles = Optional[Sequence[Sequence[Optional[str]]]]


class Feature(ABC):
    """One kind of shortcut that is not a word.

    Class attributes:
        kind: the kind's name (``length``, ``token_class``, ...).
        variants: the features of this kind that are tested (e.g. ``punctuation``, ``digits``).
        measured_by_attribution: attributions can show reliance on it (mass on its words).
        control: how the control edit differs from the feature's edit, for the record.
    """

    kind: ClassVar[str]
    variants: ClassVar[tuple[str, ...]]
    measured_by_attribution: ClassVar[bool] = False
    control: ClassVar[str] = ""

    def name(self, variant: str) -> str:
        """The suspect's name: ``<kind>:<variant>``."""
        return f"{self.kind}{FEATURE_SEPARATOR}{variant}"

    @abstractmethod
    def association(self, variant: str, word_lists: Sequence[Sequence[str]],
                    labels: Sequence[int], segments: Segments = None,
                    roles: Roles = None) -> FeatureAssociation:
        """How strongly ``variant`` goes with one class in these examples (``segments``: each
        word's text segment, for pair inputs; ``roles``: each word's chat turn, for conversations)."""

    @abstractmethod
    def carries(self, variant: str, words: Sequence[str], reference: FeatureAssociation,
                segments: Optional[Sequence[int]] = None, roles: Optional[Sequence[Optional[str]]] = None) -> bool:
        """Whether an example with ``words`` (in ``segments``, of chat turns ``roles``) carries the
        feature, as ``reference`` (the training set's association) defines it."""

    def marked(self, variant: str, words: Sequence[str], segments: Optional[Sequence[int]] = None,
               roles: Optional[Sequence[Optional[str]]] = None) -> list[bool]:
        """Per word, whether it is part of the feature (the words whose |attribution| is reliance)."""
        return [False] * len(words)

    @abstractmethod
    def edits(self, variant: str, view: ConfirmationView, label: int, predicted: Sequence[int],
              vocabulary: Sequence[str], lookup: Lookup, seed: int, max_length: int) -> dict[str, list[Edit]]:
        """The four edit sets of the causal check (``deletion``, ``insertion`` and their controls):
        remove the feature from examples predicted as ``label``, add it to examples predicted
        otherwise, and the control edits of the same size that leave the feature as it is."""


def register_feature(cls: type[Feature]) -> type[Feature]:
    """Class decorator: make the feature kind available to the monitor.

    Raises:
        ValueError: a feature of that kind is already registered.
    """
    FEATURES.add(cls.kind, cls())
    return cls


def feature_of(token: str) -> tuple[Feature, str]:
    """The registered feature and variant a suspect named ``<kind>:<variant>`` stands for."""
    kind, variant = token.split(FEATURE_SEPARATOR, 1)
    return FEATURES.get_or_raise(kind), variant


def feature_associations(word_lists: Sequence[Sequence[str]], labels: Sequence, segments: Segments = None,
                         roles: Roles = None) -> dict[str, FeatureAssociation]:
    """Every registered feature's association in these examples, by suspect name (``labels``:
    class indices, or answer texts for a completion: see ``evidence.artifacts.with_class_indices``)."""
    found = {}
    for feature in FEATURES.values():
        for variant in feature.variants:
            association = feature.association(variant, word_lists, labels, segments, roles)
            found[association.token] = association
    return found


def presence_association(name: str, present: Sequence[bool], labels: Sequence[int]) -> FeatureAssociation:
    """Gardner et al.'s z of a feature's presence against the label prior (as for a word)."""
    total = len(labels)
    priors = {y: n / total for y, n in Counter(labels).items()} if total else {}
    carriers = [y for flag, y in zip(present, labels) if flag]
    by_label = Counter(carriers)
    z, label = 0.0, None
    for y, prior in priors.items():
        value = association_z(by_label[y], len(carriers), prior)
        if value > z:
            z, label = value, y
    per_class = Counter(labels)
    shares = {y: by_label[y] / n for y, n in per_class.items()}
    return FeatureAssociation(name, z, label, total, len(carriers), shares)


def no_edits() -> dict[str, list[Edit]]:
    """The four edit sets of a check (``schema.findings.KINDS``), empty, for a feature to fill."""
    return {kind: [] for kind in KINDS}


def sampled(edits: list[Edit], seed: int, *parts: object) -> list[Edit]:
    """At most :data:`MAX_EDITS` of ``edits``, a seeded sample in order."""
    if len(edits) <= MAX_EDITS:
        return edits
    keep = sorted(edit_rng(seed, "sample", *parts).sample(range(len(edits)), MAX_EDITS))
    return [edits[k] for k in keep]


def filler_pool(view: ConfirmationView, vocabulary: Sequence[str]) -> list[tuple[int, ...]]:
    """The probe vocabulary's words as token ids, as they occur in these examples (in distribution:
    words the model sees in this data): what padding and control edits draw from."""
    return view.pieces_of(sorted(vocabulary))


def filler_pieces(pool: Sequence[tuple[int, ...]], rng: random.Random, count: int) -> list[tuple[int, ...]]:
    """``count`` words of ``pool`` (:func:`filler_pool`), drawn with ``rng``."""
    return [rng.choice(pool) for _ in range(count)] if pool else []
