"""An encoder-decoder's output sequence (T5, BART): the attributed score is the target sequence's
log-probability, the sum of its tokens' log-probs under teacher forcing, attributed to the encoder
input. Inputs carry ``labels`` (the target's token ids, ``-100`` on padding) as Hugging Face's
``DataCollatorForSeq2Seq`` makes them; the model builds its decoder inputs from them. The decoder's
own embedding call is left alone: only the encoder's input is explained (inseq's default, without
attributing the decoder prefix).
"""
from __future__ import annotations

from typing import Any, Optional, Sequence

from lightning_saliency.tasks.base import SequenceScoreTask, register_task


@register_task
class Seq2Seq(SequenceScoreTask):
    name = "seq2seq"
    probe_labels = "sequence"
    targets_aligned = False
    model_takes_targets = True
    # The decoder input at t is the target shifted right: the logits at t predict label t, as
    # scored() pairs them by default.
    logits_form = "an encoder-decoder's logits are (batch, target length, vocab)."
    labels_form = ("the target's token ids as 'labels' in the inputs (-100 on padding), as DataCollatorForSeq2Seq "
                   "makes them, or probe=ProbeSettings(texts=sources, completions=targets).")

    def class_names(self, tokenizer: Any, configured: Optional[Sequence[str]]) -> Optional[Sequence[str]]:
        return ["target"]
