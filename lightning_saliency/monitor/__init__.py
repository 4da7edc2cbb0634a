"""The framework-free monitor, in the order data flows through one run:

``engine`` (plans and sequences a run) -> ``runner`` (the model passes, sharded by ``distributed``)
-> ``analysis`` (drift, suspects; numerics in ``metrics``) -> ``evidence`` (causal checks, artifact
table, timeline) -> ``recording`` (the typed record) -> ``publishing`` (sinks, files, on ``worker``).

Nothing is imported here, so that the torch-free parts (the report's presentation) stay light.
"""
