"""The probe set every task reads its examples into, and the answers of scored sequences."""
from lightning_saliency.probes.probe_set import ProbeSet, describe_tokens, text_probe

__all__ = ["ProbeSet", "describe_tokens", "text_probe"]
