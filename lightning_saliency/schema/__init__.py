"""The record schema at the bottom layer: typed records, findings and words, with no torch,
lightning or transformers. The report and the TensorBoard tab read records through it alone."""
from lightning_saliency.schema.findings import (
    ArtifactCrossing,
    CausalCheck,
    CrossRow,
    FlipTest,
    ShiftTest,
    Suspect,
    SuspectTimeline,
    TokenStat,
)
from lightning_saliency.schema.files import read_record
from lightning_saliency.schema.records import ExampleRecord, RecordError, RunMetrics, RunRecord

__all__ = [
    "ArtifactCrossing", "CausalCheck", "CrossRow", "ExampleRecord", "FlipTest", "RecordError", "RunMetrics",
    "RunRecord", "ShiftTest", "Suspect", "SuspectTimeline", "TokenStat", "read_record",
]
