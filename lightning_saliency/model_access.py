"""Finding the Hugging Face model and its label names inside a LightningModule."""
from __future__ import annotations

from typing import Any, Callable, Optional

ForwardFn = Callable[[Any, dict], Any]


def hf_forward(pl_module: Any) -> ForwardFn:
    """Call the Hugging Face model inside the LightningModule (the module itself or a child)."""
    candidates = [pl_module] + [child for _, child in pl_module.named_children()]
    for candidate in candidates:
        if callable(getattr(candidate, "get_input_embeddings", None)):
            return lambda module, inputs, model=candidate: model(**inputs)
    raise ValueError(
        f"{type(pl_module).__name__} holds no Hugging Face model (no child with get_input_embeddings()). "
        "Pass forward_fn=lambda pl_module, inputs: <logits> and embedding_layer='path.to.embedding'."
    )


def config_label_names(pl_module: Any) -> Optional[list[str]]:
    for module in pl_module.modules():
        id2label = getattr(getattr(module, "config", None), "id2label", None)
        if isinstance(id2label, dict) and id2label:
            names = [str(id2label[i]) for i in sorted(id2label)]
            if not all(name == f"LABEL_{i}" for i, name in enumerate(names)):
                return names
            return None
    return None
