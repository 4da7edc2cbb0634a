"""Where results go: scalars to every Lightning logger, images and markdown to TensorBoard."""
from __future__ import annotations

from typing import Any, Optional

import numpy as np
from lightning.pytorch.loggers import Logger
from lightning.pytorch.utilities import rank_zero_warn


def tensorboard_writers(loggers: list[Logger]) -> list[Any]:
    """SummaryWriters of the TensorBoard loggers, without touching other loggers' ``experiment``."""
    from lightning.pytorch.loggers import TensorBoardLogger

    writers = []
    for logger in loggers:
        if isinstance(logger, TensorBoardLogger):
            writer = logger.experiment
            if hasattr(writer, "add_image"):
                writers.append(writer)
    return writers


class Sinks:
    """Fan-out of one run's outputs; warns once when images have nowhere to go."""

    def __init__(self) -> None:
        self._warned_no_tensorboard = False
        self._layouts_written: set[int] = set()

    def scalars(self, loggers: list[Logger], metrics: dict[str, float], step: int) -> None:
        clean = {k: float(v) for k, v in metrics.items() if v is not None and np.isfinite(v)}
        for logger in loggers:
            logger.log_metrics(clean, step=step)
        for logger in loggers:
            logger.save()

    def _writers(self, loggers: list[Logger]) -> list[Any]:
        writers = tensorboard_writers(loggers)
        if not writers and loggers and not self._warned_no_tensorboard:
            self._warned_no_tensorboard = True
            rank_zero_warn(
                "SaliencyMonitor: no TensorBoardLogger is attached, so heatmap images and markdown tables are not "
                "logged (scalars still go to every logger, full results to saliency/*.json). Add "
                "lightning.pytorch.loggers.TensorBoardLogger to Trainer(logger=[...]) to see them."
            )
        return writers

    def wants_images(self, loggers: list[Logger]) -> bool:
        """Whether any logger takes images and text (rendering costs ~0.2 s per heatmap: skip it otherwise)."""
        return bool(self._writers(loggers))

    def image(self, loggers: list[Logger], tag: str, image: np.ndarray, step: int) -> None:
        for writer in self._writers(loggers):
            writer.add_image(tag, image, step, dataformats="HWC")

    def text(self, loggers: list[Logger], tag: str, markdown: str, step: int) -> None:
        for writer in self._writers(loggers):
            writer.add_text(tag, markdown, step)

    def layout(self, loggers: list[Logger], layout: Optional[dict]) -> None:
        """``add_custom_scalars`` once per writer (TensorBoard allows a single layout per writer)."""
        if not layout:
            return
        for writer in self._writers(loggers):
            if id(writer) not in self._layouts_written:
                writer.add_custom_scalars(layout)
                self._layouts_written.add(id(writer))

    def flush(self, loggers: list[Logger]) -> None:
        for writer in tensorboard_writers(loggers):
            writer.flush()
