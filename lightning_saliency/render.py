"""Token heatmaps as images (matplotlib Agg, no display) and markdown tables for TensorBoard.

TensorBoard's text plugin escapes HTML, so colored tokens are drawn as images and tables are
written as markdown.
"""
from __future__ import annotations

from dataclasses import dataclass
import math
from typing import Optional, Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.cm import ScalarMappable
from matplotlib.colors import LinearSegmentedColormap, Normalize
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

# Red for negative, white for zero, green for positive evidence (captum's visualize_text convention).
ATTRIBUTION_CMAP = LinearSegmentedColormap.from_list("saliency", ["#c0392b", "#f7f7f7", "#1e8449"])
# Unsigned scores (gradient norms, attention) from 0: white to green, so no token looks "negative".
MAGNITUDE_CMAP = LinearSegmentedColormap.from_list("saliency_magnitude", ["#f7f7f7", "#1e8449"])
_CHAR_INCHES = 0.085  # DejaVu Sans Mono advance at 10 pt
_LINE_CHARS = 72
# matplotlib falls back along this list per glyph; it ships DejaVu only, so CJK, Hebrew and Arabic
# tokens need a Noto font installed (Debian: fonts-noto-cjk fonts-noto-core), else they show as boxes.
_FAMILIES = ["DejaVu Sans Mono", "Noto Sans Mono CJK JP", "Noto Sans CJK JP", "Noto Sans Hebrew", "Noto Sans Arabic"]
_FONT = {"family": _FAMILIES, "size": 10}


@dataclass
class HeatmapRow:
    """One example to draw: its tokens, their scores and the caption shown above them."""

    tokens: Sequence[str]
    scores: Sequence[float]
    caption: str


def _layout(tokens: Sequence[str], line_chars: int) -> list[tuple[int, int, int]]:
    """(line, start column, width in characters) per token, wrapping at ``line_chars``."""
    placed, line, column = [], 0, 0
    for token in tokens:
        width = max(len(token), 1) + 1
        if column and column + width > line_chars:
            line, column = line + 1, 0
        placed.append((line, column, width))
        column += width
    return placed


def _draw_tokens(ax, row: HeatmapRow, norm: Normalize, line_chars: int, cmap=ATTRIBUTION_CMAP) -> None:
    placed = _layout(row.tokens, line_chars)
    lines = (placed[-1][0] + 1) if placed else 1
    for token, score, (line, column, width) in zip(row.tokens, row.scores, placed):
        color = cmap(norm(score))
        ax.add_patch(
            Rectangle(
                (column, -line - 0.9), width - 0.2, 0.8, facecolor=color, edgecolor="#bbbbbb", linewidth=0.4
            )
        )
        ax.text(column + 0.4, -line - 0.5, token, va="center", ha="left", fontdict=_FONT)
    ax.set_xlim(0, line_chars)
    ax.set_ylim(-lines - 0.1, 0.1)
    ax.set_axis_off()
    ax.set_title(row.caption, loc="left", fontsize=9, fontfamily="DejaVu Sans")


def _to_array(figure: Figure) -> np.ndarray:
    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def _lines_needed(row: HeatmapRow, line_chars: int) -> int:
    placed = _layout(row.tokens, line_chars)
    return (placed[-1][0] + 1) if placed else 1


def line_scale(scores: Sequence[float], special: Sequence[bool]) -> float:
    """The largest finite |score| over the non-special tokens of one example (0 when none)."""
    return max((abs(v) for v, sp in zip(scores, special) if not sp and math.isfinite(v)), default=0.0)


def _symmetric_limit(scores: Sequence[float]) -> float:
    largest = float(np.max(np.abs(np.asarray(scores, dtype=float)))) if len(scores) else 0.0
    return largest if largest > 0 else 1.0


def grid_and_row_images(
    rows: Sequence[HeatmapRow], title: str, line_chars: int = _LINE_CHARS, shared_limit: Optional[float] = None,
    signed: bool = True,
) -> tuple[np.ndarray, list[np.ndarray]]:
    """The grid image and, cut from the same drawing, one image per example (its band plus the
    shared colorbar). Drawing text dominates the cost (~0.2 s per example), so each example is
    drawn once rather than once for the grid and once on its own.

    ``shared_limit``: one scale for every row (the run's largest |score|), so that a near-zero
    example looks pale; ``None`` scales each row to its own largest |score|. ``signed=False`` draws
    magnitudes from 0 (white) to the limit (green)."""
    heights = [0.3 * _lines_needed(row, line_chars) + 0.35 for row in rows]
    total = sum(heights) + 1.25
    dpi = 100
    figure = Figure(figsize=(line_chars * _CHAR_INCHES + 0.4, total), dpi=dpi)
    figure.text(0.01, 1 - 0.25 / total, title, fontsize=11, fontweight="bold", va="center")
    top = total - 0.5
    norm, cmap = (Normalize(-1.0, 1.0), ATTRIBUTION_CMAP) if signed else (Normalize(0.0, 1.0), MAGNITUDE_CMAP)
    sign = "±" if signed else "0–"
    bands = []
    for row, height in zip(rows, heights):
        limit = shared_limit if shared_limit and shared_limit > 0 else _symmetric_limit(row.scores)
        caption = row.caption if shared_limit else f"{row.caption} | scale {sign}{limit:.2g}"
        scaled = HeatmapRow(row.tokens, [float(s) / limit for s in row.scores], caption)
        ax = figure.add_axes((0.01, (top - height + 0.05) / total, 0.98, (height - 0.35) / total))
        _draw_tokens(ax, scaled, norm, line_chars, cmap)
        bands.append((total - top, total - top + height))  # inches from the top edge
        top -= height
    bar_ax = figure.add_axes((0.25, 0.35 / total, 0.5, 0.12 / total))
    label = (f"attribution; one scale for the run: {sign}{shared_limit:.3g}" if shared_limit
             else "attribution / max |attribution| of the example")
    figure.colorbar(ScalarMappable(norm=norm, cmap=cmap), cax=bar_ax, orientation="horizontal").set_label(label, fontsize=8)
    bar_ax.tick_params(labelsize=7)
    image = _to_array(figure)
    pixels = image.shape[0] / total
    colorbar = image[int(round((total - 0.75) * pixels)):]
    crops = [np.concatenate([image[int(a * pixels): int(round(b * pixels))], colorbar]) for a, b in bands]
    return image, crops


def escape_markdown(text: str) -> str:
    """Make token text safe inside a markdown table cell."""
    for char in "\\|`*_[]<>#":
        text = text.replace(char, "\\" + char)
    return text.replace("\n", " ")


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def top_tokens(tokens: Sequence[str], scores: Sequence[float], special: Sequence[bool], k: int) -> list[tuple[str, float]]:
    """The ``k`` non-special tokens with the largest |score|, largest first."""
    order = sorted((i for i in range(len(tokens)) if not special[i]), key=lambda i: -abs(scores[i]))
    return [(tokens[i], float(scores[i])) for i in order[:k]]


def format_top(pairs: Sequence[tuple[str, float]], escape: bool = True) -> str:
    """``token (score), ...``; escaped for a markdown cell unless ``escape=False`` (plain tables)."""
    # Significant digits, not fixed decimals: a gradient of 3e-5 must not read "+0.000".
    return ", ".join(f"{escape_markdown(t) if escape else t} ({s:+.3g})" for t, s in pairs)
