"""One JSON-serialisable record per attribution run, written to ``saliency/epoch_*.json``."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Optional, Sequence

from lightning_saliency.attribution import Attributions
from lightning_saliency.probe import ProbeSet

SCHEMA_VERSION = 1


def class_name(index: Optional[int], names: Optional[Sequence[str]]) -> Optional[str]:
    if index is None:
        return None
    return names[index] if names is not None and 0 <= index < len(names) else str(index)


def build_record(
    *,
    label: str,
    stage: str,
    epoch: Optional[int],
    global_step: int,
    settings: dict[str, Any],
    probe: ProbeSet,
    result: Attributions,
    label_names: Optional[Sequence[str]] = None,
) -> dict[str, Any]:
    """Per-example tokens, prediction and per-method token attributions (padding removed).

    ``seconds`` (the run's wall time, rendering and logging included) is filled in when published.
    """
    examples = []
    for i in range(len(probe)):
        valid = result.attention_mask[i].bool()
        true_label = int(probe.labels[i]) if probe.labels is not None else None
        predicted, target = int(result.predicted[i]), int(result.target[i])
        entry = {
            "index": int(probe.indices[i]),
            "text": probe.texts[i],
            "tokens": list(probe.tokens[i]),
            "word_ids": list(probe.word_ids[i]),
            "special": result.special_mask[i][valid].tolist(),
            "label": true_label,
            "label_name": class_name(true_label, label_names),
            "predicted": predicted,
            "predicted_name": class_name(predicted, label_names),
            "probability": float(result.probability[i]),
            "target": target,
            "target_score": float(result.target_score[i]),
            "attributions": {m: r.scores[i][valid].tolist() for m, r in result.methods.items()},
            "delta": {m: float(r.delta[i]) for m, r in result.methods.items() if r.delta is not None},
            "steps": {m: int(r.steps[i]) for m, r in result.methods.items() if r.steps is not None},
        }
        examples.append(entry)
    return {
        "schema": SCHEMA_VERSION,
        "label": label,
        "stage": stage,
        "epoch": epoch,
        "global_step": global_step,
        "seconds": None,
        "settings": settings,
        "methods": list(result.methods),
        "examples": examples,
        "metrics": {},
    }


def record_path(directory: os.PathLike, label: str) -> Path:
    return Path(directory) / "saliency" / f"epoch_{label}.json"


def write_record(record: dict[str, Any], directory: os.PathLike) -> Path:
    """Write atomically (temp file, then rename) so readers never see half a file."""
    path = record_path(directory, record["label"])
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".json.tmp")
    temporary.write_text(json.dumps(record, indent=1, allow_nan=False))
    os.replace(temporary, path)
    return path


def read_record(path: os.PathLike) -> dict[str, Any]:
    return json.loads(Path(path).read_text())
