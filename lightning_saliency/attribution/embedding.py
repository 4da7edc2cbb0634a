"""Find the word-embedding layer whose output the attribution path runs through."""
from __future__ import annotations

from typing import Optional, Union

from torch import nn


def resolve_module(root: nn.Module, dotted_path: str) -> nn.Module:
    """``root.a.b.0.c`` style lookup with a message that lists what exists where it fails."""
    module = root
    walked = []
    for part in dotted_path.split("."):
        children = dict(module.named_children())
        if part not in children:
            available = ", ".join(children) or "no submodules"
            where = ".".join(walked) or type(root).__name__
            raise ValueError(f"embedding_layer={dotted_path!r}: {where!r} has no submodule {part!r} (it has: {available}).")
        module = children[part]
        walked.append(part)
    return module


def find_hf_model(root: nn.Module) -> Optional[nn.Module]:
    """The outermost module under ``root`` (itself included, depth-first) whose
    ``get_input_embeddings()`` returns a module: a Hugging Face model however deeply it is held
    (``self.model``, ``self.backbone.model``, ...). The one search that both the forward call and
    the embedding lookup use, so they can never disagree."""
    for module in root.modules():
        getter = getattr(module, "get_input_embeddings", None)
        if callable(getter):
            try:
                found = getter()
            except (NotImplementedError, AttributeError):
                continue
            if isinstance(found, nn.Module):
                return module
    return None


def find_embedding_layer(
    model: nn.Module,
    layer: Union[str, nn.Module, None] = None,
    vocab_size: Optional[int] = None,
) -> nn.Module:
    """Return the module whose output is the word (token) embedding.

    Order: an explicit module or dotted path; ``get_input_embeddings()`` on the model or the first
    submodule that has it (Hugging Face models); else the single ``nn.Embedding`` whose
    ``num_embeddings`` equals ``vocab_size`` (or the single ``nn.Embedding`` when no size is given).

    Raises:
        ValueError: when nothing or more than one candidate is found; the message lists the
            candidates and says to pass ``embedding_layer="dotted.path"``.
    """
    if isinstance(layer, nn.Module):
        return layer
    if isinstance(layer, str):
        return resolve_module(model, layer)
    hf_model = find_hf_model(model)
    if hf_model is not None:
        # An encoder-decoder's input is its encoder's: T5 and BART give the encoder an embedding
        # module of its own (tied to the shared one), which is the one the source goes through.
        encoder = hf_model.get_encoder() if callable(getattr(hf_model, "get_encoder", None)) else None
        if encoder is not None and callable(getattr(encoder, "get_input_embeddings", None)):
            return encoder.get_input_embeddings()
        return hf_model.get_input_embeddings()
    embeddings = [(name, m) for name, m in model.named_modules() if isinstance(m, nn.Embedding)]
    matching = [(n, m) for n, m in embeddings if vocab_size is None or m.num_embeddings == vocab_size]
    if len(matching) == 1:
        return matching[0][1]
    listing = ", ".join(f"{n or '<root>'} ({m.num_embeddings}x{m.embedding_dim})" for n, m in embeddings) or "none"
    reason = "several match" if matching else "none matches"
    size = f" with {vocab_size} rows (the tokenizer's vocabulary)" if vocab_size is not None else ""
    raise ValueError(
        f"Could not pick the word-embedding layer: {reason}{size}. nn.Embedding modules found: {listing}. "
        "Pass embedding_layer='dotted.path.to.embedding'."
    )


def num_embeddings(layer: nn.Module) -> int:
    """Vocabulary size of an embedding layer (``nn.Embedding`` or anything with ``weight``)."""
    if isinstance(layer, nn.Embedding):
        return layer.num_embeddings
    weight = getattr(layer, "weight", None)
    if weight is not None and weight.dim() == 2:
        return int(weight.shape[0])
    raise ValueError(f"{type(layer).__name__} is not an embedding layer (no 2-D weight); pass the nn.Embedding itself.")
