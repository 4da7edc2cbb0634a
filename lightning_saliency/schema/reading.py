"""Findings read back from a record's JSON: lenient about fields an older or hand-edited record
lacks (they take their defaults), strict about nothing else."""
from __future__ import annotations

from dataclasses import MISSING, fields
from typing import Any, Optional

from lightning_saliency.schema.findings import (
    KINDS, ArtifactCrossing, Carriers, CausalCheck, CrossRow, FeatureAssociation, FeatureReading, FlipTest, ShiftTest,
)


def lenient(cls: type, data: dict[str, Any]) -> Any:
    """``cls`` from a JSON object that may lack fields (an older or hand-edited record): missing
    ones take the field's default, else None; unknown keys are ignored."""
    values = {}
    for f in fields(cls):
        if f.name in data:
            values[f.name] = data[f.name]
        elif f.default is not MISSING:
            values[f.name] = f.default
        elif f.default_factory is not MISSING:
            values[f.name] = f.default_factory()
        else:
            values[f.name] = None
    return cls(**values)


def by_class(shares: Any) -> dict[int, float]:
    """A class-index map read back from JSON (whose keys are strings)."""
    return {int(k): float(v) for k, v in (shares or {}).items()}


def carriers(data: Optional[dict[str, Any]]) -> Optional[Carriers]:
    return None if not data else lenient(Carriers, {**data, "shares": by_class(data.get("shares"))})


def association(data: Optional[dict[str, Any]]) -> Optional[FeatureAssociation]:
    return None if not data else lenient(FeatureAssociation, {**data, "shares": by_class(data.get("shares"))})


def feature_reading(data: dict[str, Any]) -> FeatureReading:
    reliance = {m: (float(v[0]), None if v[1] is None else float(v[1])) for m, v in (data.get("reliance") or {}).items()}
    return lenient(FeatureReading, {**data, "training": association(data.get("training")),
                                     "validation": association(data.get("validation")), "reliance": reliance})


def causal_check(data: dict[str, Any]) -> CausalCheck:
    tests = {kind: lenient(FlipTest, data.get(kind) or {}) for kind in KINDS}
    shifts = {key: lenient(ShiftTest, data.get(key) or {}) for key in ("deletion_shift", "insertion_shift")}
    return lenient(CausalCheck, {**data, **tests, **shifts, "carriers": carriers(data.get("carriers"))})


def crossing(data: dict[str, Any]) -> ArtifactCrossing:
    lists = {key: [lenient(CrossRow, r) for r in data.get(key) or []]
             for key in ("relied_artifacts", "relied_only", "ignored_artifacts")}
    return lenient(ArtifactCrossing, {**data, **lists})
