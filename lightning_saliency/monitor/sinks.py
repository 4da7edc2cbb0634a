"""Where a run's outputs can go: the :class:`Sink` protocol and the sinks for Lightning loggers and
TensorBoard writers (W&B and MLflow sinks are in :mod:`lightning_saliency.monitor.loggers`).

A sink is anything with the :class:`Sink` methods: :class:`LoggerSink` wraps a Lightning logger
(scalars only), :class:`TensorBoardSink` a ``SummaryWriter`` (images, text, layout and, when it
is the only route, scalars). The adapters build the sinks; the publisher only receives them.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import numpy as np

from lightning_saliency.presentation import render


class Sink(Protocol):
    takes_images: bool

    def scalars(self, values: dict[str, float], step: int) -> None: ...
    def image(self, tag: str, image: np.ndarray, step: int) -> None: ...
    def text(self, tag: str, markdown: str, step: int) -> None: ...
    def table(self, tag: str, header: list[str], rows: list[list[Any]], step: int) -> None: ...
    def tags(self, values: dict[str, str]) -> None: ...
    def artifact(self, path: Path, folder: str) -> None: ...
    def layout(self, layout: dict) -> None: ...
    def flush(self) -> None: ...


class NullSink:
    """Takes nothing: the base of sinks that take only some kinds of output."""

    takes_images = False

    def scalars(self, values: dict[str, float], step: int) -> None:
        pass

    def image(self, tag: str, image: np.ndarray, step: int) -> None:
        pass

    def text(self, tag: str, markdown: str, step: int) -> None:
        pass

    def table(self, tag: str, header: list[str], rows: list[list[Any]], step: int) -> None:
        pass

    def tags(self, values: dict[str, str]) -> None:
        pass

    def artifact(self, path: Path, folder: str) -> None:
        pass

    def layout(self, layout: dict) -> None:
        pass

    def flush(self) -> None:
        pass


class LoggerSink(NullSink):
    """A Lightning logger: scalars through ``log_metrics`` (CSV, MLflow, W&B, TensorBoard ...)."""

    def __init__(self, logger: Any) -> None:
        self.logger = logger

    def scalars(self, values: dict[str, float], step: int) -> None:
        self.logger.log_metrics(values, step=step)
        self.logger.save()


class TensorBoardSink(NullSink):
    """A ``SummaryWriter``: images, markdown, the custom-scalar layout, and scalars when
    ``with_scalars`` (off when a Lightning logger already sends them to the same writer)."""

    takes_images = True

    def __init__(self, writer: Any, with_scalars: bool = False) -> None:
        self.writer, self.with_scalars = writer, with_scalars
        self._layout_written = False

    def scalars(self, values: dict[str, float], step: int) -> None:
        if self.with_scalars:
            for tag, value in values.items():
                self.writer.add_scalar(tag, value, step)

    def image(self, tag: str, image: np.ndarray, step: int) -> None:
        self.writer.add_image(tag, image, step, dataformats="HWC")

    def text(self, tag: str, markdown: str, step: int) -> None:
        self.writer.add_text(tag, markdown, step)

    def table(self, tag: str, header: list[str], rows: list[list[Any]], step: int) -> None:
        self.writer.add_text(tag, render.markdown_table(header, rows), step)

    def layout(self, layout: dict) -> None:
        if not self._layout_written:  # TensorBoard keeps one custom-scalar layout per writer
            self.writer.add_custom_scalars(layout)
            self._layout_written = True

    def flush(self) -> None:
        self.writer.flush()
