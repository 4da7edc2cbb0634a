"""From suspicion to evidence: causal checks of suspects, dataset artifacts, and their timeline."""
from lightning_saliency.evidence.artifacts import ArtifactCrossing, ArtifactRow, ArtifactTable, CrossRow, cross
from lightning_saliency.evidence.causal import CausalCandidate, CausalCheck, CausalSettings, FlipTest, confirm_suspects
from lightning_saliency.evidence.timeline import SuspectTimeline, step_run_due, update_timeline

__all__ = [
    "ArtifactCrossing", "ArtifactRow", "ArtifactTable", "CausalCandidate", "CausalCheck", "CausalSettings",
    "CrossRow", "FlipTest", "SuspectTimeline", "confirm_suspects", "cross", "step_run_due", "update_timeline",
]
