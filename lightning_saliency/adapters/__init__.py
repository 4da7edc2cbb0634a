"""The training-loop adapters: thin callbacks over :mod:`lightning_saliency.monitor`.

``lightning`` holds :class:`~lightning_saliency.SaliencyMonitor` (a Lightning ``Callback``),
``transformers`` the Hugging Face ``TrainerCallback``; ``common`` what both share (the constructor
and the framework-free setup). Import each submodule explicitly: each imports its framework.
"""
