"""An encoder-decoder's output sequence (T5, BART): the attributed score is the target sequence's
log-probability, the sum of its tokens' log-probs under teacher forcing, attributed to the encoder
input. Inputs carry ``labels`` (the target's token ids, ``-100`` on padding) as Hugging Face's
``DataCollatorForSeq2Seq`` makes them; the model builds its decoder inputs from them. The decoder's
own embedding call is left alone: only the encoder's input is explained (inseq's default, without
attributing the decoder prefix).
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any, Optional, Sequence

import torch

from lightning_saliency.probes import ProbeSet, text_probe
from lightning_saliency.tasks.base import IGNORED, SequenceScoreTask, register_task


@register_task
class Seq2Seq(SequenceScoreTask):
    name = "seq2seq"
    token_labels_form = ("as the targets' token ids (one row per example, -100 on padding), as "
                         "DataCollatorForSeq2Seq makes them")
    targets_aligned = False
    model_takes_targets = True
    # The decoder input at t is the target shifted right: the logits at t predict label t, as
    # scored() pairs them by default.
    logits_form = "an encoder-decoder's logits are (batch, target length, vocab)."
    labels_form = ("the target's token ids as 'labels' in the inputs (-100 on padding), as DataCollatorForSeq2Seq "
                   "makes them, or probe=ProbeSettings(texts=sources, completions=targets).")

    def class_names(self, tokenizer: Any, configured: Optional[Sequence[str]]) -> Optional[Sequence[str]]:
        return ["target"]

    def probe_from_texts(self, texts: Sequence[str], tokenizer: Any, labels: Optional[Sequence[int]],
                         max_length: int, completions: Optional[Sequence[str]]) -> ProbeSet:
        if completions is None:
            return super().probe_from_texts(texts, tokenizer, labels, max_length, completions)
        return sequence_probe(texts, completions, tokenizer, max_length)


def sequence_probe(sources: Sequence[str], targets: Sequence[str], tokenizer: Any, max_length: int) -> ProbeSet:
    """Sources as the encoder's input, targets as ``labels`` (their own length, -100 on padding),
    tokenized as the tokenizer tokenizes targets (``text_target``, e.g. T5's closing ``</s>``)."""
    probe = text_probe(sources, tokenizer, None, max_length)
    try:
        encoded = tokenizer(text_target=list(targets))["input_ids"]
    except TypeError:  # a tokenizer without text_target
        encoded = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in targets]
    labels = torch.full((len(encoded), max(len(ids) for ids in encoded)), IGNORED, dtype=torch.long)
    for row, ids in enumerate(encoded):
        labels[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
    return replace(probe, inputs={**probe.inputs, "labels": labels}, texts=list(sources), completions=list(targets))
