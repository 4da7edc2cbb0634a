"""Small inline SVG line charts (no JavaScript, no external library)."""
from __future__ import annotations

import html
from typing import Optional, Sequence

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b")


def _esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def line_chart(title: str, labels: Sequence[str], series: dict[str, Sequence[Optional[float]]],
               width: int = 340, height: int = 170) -> str:
    """One line per series over ``labels``; gaps where a value is missing; a legend below."""
    left, right, top, bottom = 38, 10, 22, 42
    values = [v for points in series.values() for v in points if v is not None]
    low, high = (min(values), max(values)) if values else (0.0, 1.0)
    if high - low < 1e-9:
        low, high = low - 0.5, high + 0.5
    span_x = max(len(labels) - 1, 1)

    def x(i: int) -> float:
        return left + (width - left - right) * (i / span_x if len(labels) > 1 else 0.5)

    def y(v: float) -> float:
        return top + (height - top - bottom) * (1 - (v - low) / (high - low))

    parts = [f'<text x="{left}" y="14" class="chart-title">{_esc(title)}</text>']
    for value in (low, (low + high) / 2, high):
        parts.append(f'<line x1="{left}" x2="{width - right}" y1="{y(value):.1f}" y2="{y(value):.1f}" class="grid"/>')
        parts.append(f'<text x="{left - 4}" y="{y(value) + 3:.1f}" class="tick" text-anchor="end">{value:.2f}</text>')
    for i, label in enumerate(labels):
        parts.append(f'<text x="{x(i):.1f}" y="{height - bottom + 12}" class="tick" text-anchor="middle">{_esc(label)}</text>')
    for k, (name, points) in enumerate(series.items()):
        color = PALETTE[k % len(PALETTE)]
        segment: list[str] = []
        for i, value in enumerate(list(points) + [None]):
            if value is not None:
                segment.append(f"{x(i):.1f},{y(value):.1f}")
                parts.append(f'<circle cx="{x(i):.1f}" cy="{y(value):.1f}" r="2.5" fill="{color}">'
                             f'<title>{_esc(name)} at {_esc(labels[i])}: {value:.3f}</title></circle>')
            elif segment:
                parts.append(f'<polyline points="{" ".join(segment)}" fill="none" stroke="{color}" stroke-width="1.5"/>')
                segment = []
        parts.append(f'<rect x="{left + 140 * k}" y="{height - 16}" width="10" height="10" fill="{color}"/>'
                     f'<text x="{left + 140 * k + 14}" y="{height - 7}" class="tick">{_esc(name)}</text>')
    return (f'<svg class="chart" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" '
            f'aria-label="{_esc(title)}">{"".join(parts)}</svg>')
