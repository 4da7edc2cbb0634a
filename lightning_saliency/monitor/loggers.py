"""Sinks for Weights & Biases and MLflow, the loggers Lightning users reach for besides TensorBoard.

Scalars reach every Lightning logger through :class:`~lightning_saliency.monitor.publishing.LoggerSink`;
these sinks add what each service shows best. Nothing here imports ``wandb`` or ``mlflow`` until
such a logger is attached (install them with ``pip install lightning-saliency[wandb]`` /
``[mlflow]``).

* W&B: heatmaps with ``log_image``, the top-word table as a ``wandb.Table``, markdown (alerts, the
  most drifted examples) as one-cell text tables, suspects in the run summary, and each record file
  saved with the run.
* MLflow: heatmaps as image artifacts (``saliency/images/<tag>/step_NNNNNN.png``), markdown as text
  artifacts, the records as artifacts under ``saliency/``, and suspects as run tags.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

from lightning_saliency.monitor.sinks import NullSink
from lightning_saliency.registry import Registry
from lightning_saliency.presentation import render
from lightning_saliency.presentation.tables import plain_cell


class WandbSink(NullSink):
    """Images, tables, text, summary and files of a Lightning ``WandbLogger``."""

    takes_images = True

    def __init__(self, logger: Any) -> None:
        self.logger = logger

    def image(self, tag: str, image: np.ndarray, step: int) -> None:
        self.logger.log_image(key=tag, images=[image], step=step)

    def table(self, tag: str, header: list[str], rows: list[list[Any]], step: int) -> None:
        self.logger.log_table(key=tag, columns=list(header), data=[[plain_cell(c) for c in row] for row in rows],
                              step=step)

    def text(self, tag: str, markdown: str, step: int) -> None:
        self.logger.log_text(key=tag, columns=["markdown"], data=[[markdown]], step=step)

    def tags(self, values: dict[str, str]) -> None:
        self.logger.experiment.summary.update(values)

    def artifact(self, path: Path, folder: str) -> None:
        # Saved with the run, under the same relative path as on disk (saliency/epoch_NNN.json).
        self.logger.experiment.save(str(path), base_path=str(Path(path).parent.parent), policy="now")


class MLflowSink(NullSink):
    """Image and text artifacts, record artifacts and tags of a Lightning ``MLFlowLogger``."""

    takes_images = True

    def __init__(self, logger: Any) -> None:
        self.logger = logger

    @property
    def _run(self) -> Optional[str]:
        return self.logger.run_id

    def image(self, tag: str, image: np.ndarray, step: int) -> None:
        self.logger.experiment.log_image(self._run, image, artifact_file=f"saliency/images/{tag}/step_{step:06d}.png")

    def text(self, tag: str, markdown: str, step: int) -> None:
        self.logger.experiment.log_text(self._run, markdown, artifact_file=f"saliency/text/{tag}/step_{step:06d}.md")

    def table(self, tag: str, header: list[str], rows: list[list[Any]], step: int) -> None:
        self.text(tag, render.markdown_table(header, rows), step)

    def tags(self, values: dict[str, str]) -> None:
        for key, value in values.items():
            self.logger.experiment.set_tag(self._run, key, value)

    def artifact(self, path: Path, folder: str) -> None:
        self.logger.experiment.log_artifact(self._run, str(path), artifact_path=folder)


# Sinks per Lightning logger class name. Keyed by name, not class, so that ``wandb`` and ``mlflow``
# are never imported for a run that uses neither.
SINK_FACTORIES: "Registry[Callable[[Any], Any]]" = Registry("sink", "register one with register_sink")
SINK_FACTORIES.add("WandbLogger", WandbSink)
SINK_FACTORIES.add("MLFlowLogger", MLflowSink)


def register_sink(logger_class: str) -> Callable[[Callable[[Any], Any]], Callable[[Any], Any]]:
    """Decorator: build this sink (a class or factory taking the logger) for every Lightning logger
    whose class is named ``logger_class``, beside the scalars that every logger gets.

    Args:
        logger_class: the logger's class name, e.g. ``"CSVLogger"``.

    Returns:
        The decorator, which returns the factory unchanged.

    Raises:
        ValueError: a sink is already registered for that logger class.

    Example:
        >>> from lightning_saliency.monitor.sinks import NullSink
        >>> @register_sink("MyLogger")
        ... class Alerts(NullSink):
        ...     def __init__(self, logger): self.said = []
        ...     def text(self, tag, markdown, step): self.said.append(markdown)
    """
    return lambda factory: SINK_FACTORIES.add(logger_class, factory)


def logger_sinks(logger: Any) -> list[Any]:
    """The extra sinks for one Lightning logger (none for loggers without one registered)."""
    factory = SINK_FACTORIES.get(type(logger).__name__)
    return [factory(logger)] if factory is not None else []
