"""How the monitor calls the live model (:class:`ModelAccess`), and finding the Hugging Face model,
its label names and its length limit inside a LightningModule (or any module)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, ContextManager, Optional, Union

from torch import nn

from lightning_saliency.attribution import SpecialTokens
from lightning_saliency.attribution.lockstep import Lockstep

from lightning_saliency.attribution.embedding import find_hf_model

ForwardFn = Callable[[Any, dict], Any]


def hf_forward(root: Any) -> ForwardFn:
    """Call the Hugging Face model held anywhere inside ``root`` (found as the embedding layer is)."""
    model = find_hf_model(root)
    if model is None:
        raise ValueError(
            f"{type(root).__name__} holds no Hugging Face model (no submodule with get_input_embeddings()). "
            "Pass model_io=ModelIO(forward_fn=lambda pl_module, inputs: <logits>, embedding_layer='path.to.embedding')."
        )
    return lambda module, inputs: model(**inputs)


def config_label_names(root: Any) -> Optional[list[str]]:
    """Class names from the first ``config.id2label`` inside ``root``, unless they are the
    ``LABEL_i`` placeholders Hugging Face fills in."""
    for module in root.modules():
        id2label = getattr(getattr(module, "config", None), "id2label", None)
        if isinstance(id2label, dict) and id2label:
            names = [str(id2label[i]) for i in sorted(id2label)]
            if not all(name == f"LABEL_{i}" for i, name in enumerate(names)):
                return names
            return None
    return None


def model_max_length(root: Any, tokenizer: Any) -> int:
    """The longest input the model takes: the tokenizer's ``model_max_length`` capped by the first
    ``config.max_position_embeddings`` inside ``root`` (Hugging Face sets an unknown
    ``model_max_length`` to a huge placeholder, which is ignored)."""
    limits = [getattr(tokenizer, "model_max_length", None)]
    for module in root.modules():
        positions = getattr(getattr(module, "config", None), "max_position_embeddings", None)
        if isinstance(positions, int):
            limits.append(positions)
            break
    usable = [n for n in limits if isinstance(n, int) and 0 < n < 1_000_000]
    return min(usable) if usable else 512


@dataclass(frozen=True)
class ModelAccess:
    """How to call the live model.

    Attributes:
        module: what is put in isolated eval mode and searched for the embedding layer (a
            LightningModule or a Hugging Face model).
        forward_fn: ``(module, inputs) -> output with logits``.
        tokenizer: the model's tokenizer (vocabulary size, token strings).
        special_tokens: ids kept fixed by baselines.
        embedding_layer: the word-embedding module or its dotted path (``None``: found automatically).
        forward_context: entered around every forward pass (the trainer's precision context).
        lockstep: set when the parameters are sharded across ranks (FSDP2): every rank then makes
            the same model passes (padding where its share needs fewer), see
            :mod:`lightning_saliency.attribution.lockstep`.
    """

    module: nn.Module
    forward_fn: Callable[[Any, dict], Any]
    tokenizer: Any
    special_tokens: SpecialTokens
    embedding_layer: Union[str, nn.Module, None]
    forward_context: Callable[[], ContextManager]
    lockstep: Optional[Lockstep] = None
