"""Pure metric functions on attribution vectors: drift, concentration, shortcuts."""
from lightning_saliency.monitor.metrics.concentration import concentration
from lightning_saliency.monitor.metrics.drift import (
    DRIFT_METRICS,
    drift,
    jensen_shannon,
    kendall,
    sign_agreement,
    spearman,
    summarize,
    topk_overlap,
)
from lightning_saliency.monitor.metrics.shortcut import (
    AttributedExamples,
    ShortcutRules,
    Suspect,
    TokenStat,
    association_z,
    find_suspects,
    pair_statistics,
    shortcut_suspects,
    strongest_first,
    token_statistics,
)

__all__ = [
    "DRIFT_METRICS",
    "AttributedExamples",
    "ShortcutRules",
    "Suspect",
    "TokenStat",
    "association_z",
    "concentration",
    "drift",
    "find_suspects",
    "jensen_shannon",
    "kendall",
    "pair_statistics",
    "shortcut_suspects",
    "sign_agreement",
    "spearman",
    "strongest_first",
    "summarize",
    "token_statistics",
    "topk_overlap",
]
