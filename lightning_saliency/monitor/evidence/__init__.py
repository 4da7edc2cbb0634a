"""From suspicion to evidence: causal checks of suspects, dataset artifacts, and their timeline.

Import the modules themselves (``evidence.causal``, ``evidence.artifacts``, ...): this package
imports nothing, so that the torch-free ``evidence.tables`` loads without the model code."""
