"""Task objects: what is attributed for each kind of model (see :class:`~.base.Task`).

Adding a task is one file here (a :class:`Task` subclass under ``@register_task``) plus its tests;
third-party tasks register the same way before the callback is built.
"""
from lightning_saliency.tasks.base import TASKS, Task, get_task, register_task, task_names
from lightning_saliency.tasks import (  # noqa: F401  (registers them)
    causal_lm,
    classification,
    completion,
    multiple_choice,
    seq2seq,
    token_classification,
)

__all__ = ["TASKS", "Task", "get_task", "register_task", "task_names"]
