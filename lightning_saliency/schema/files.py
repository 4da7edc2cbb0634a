"""Records on disk: one JSON file per run, written atomically (temp file, then rename), so that a
record is never half-written, and read back with its checks."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Sequence

from lightning_saliency.schema.records import RecordError, RunRecord, finite


def record_path(directory: os.PathLike, label: str) -> Path:
    return Path(directory) / "saliency" / f"epoch_{label}.json"


def write_record(record: RunRecord, directory: os.PathLike) -> Path:
    """Write atomically (temp file, then rename) so readers never see half a file."""
    return write_json(record.to_json(), directory)


def write_json(data: dict[str, Any], directory: os.PathLike) -> Path:
    """Write a record's JSON form (``RunRecord.to_json()``) atomically: temp file, then rename."""
    path = record_path(directory, data["label"])
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".json.tmp")
    temporary.write_text(json.dumps(data, indent=1, allow_nan=False), encoding="utf-8")
    os.replace(temporary, path)
    return path


def write_jsonl(lines: Sequence[dict[str, Any]], path: os.PathLike) -> Path:
    """Write one JSON object per line atomically (temp file, then rename): never half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(path.suffix + ".tmp")
    temporary.write_text("".join(json.dumps(finite(line), allow_nan=False) + "\n" for line in lines), encoding="utf-8")
    os.replace(temporary, path)
    return path


def read_record(path: os.PathLike) -> RunRecord:
    """Read and validate one record. Raises :class:`RecordError` for a truncated or unreadable
    file, a JSON that is not a record, or another schema version."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise RecordError(f"truncated or unreadable JSON ({error})") from error
    return RunRecord.from_json(data)
