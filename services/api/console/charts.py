"""Small SVG charts drawn on the server: no script, nothing the page's Content-Security-Policy has to allow."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

_WIDTH, _HEIGHT, _PAD = 600, 160, 28


@dataclass(frozen=True, slots=True)
class Series:
    name: str
    values: Sequence[float | None]
    css_class: str


def _scale(series: Sequence[Series]) -> float:
    top = max((v for s in series for v in s.values if v is not None), default=0.0)
    return top if top > 0 else 1.0


def _frame(title: str, unit: str, top: float, labels: Sequence[str], body: str) -> Markup:
    left, right = labels[0] if labels else "", labels[-1] if labels else ""
    return Markup(  # noqa: S704 - every text put into the markup is escaped
        f'<svg class="chart" viewBox="0 0 {_WIDTH} {_HEIGHT + 20}" role="img" aria-label="{escape(title)}">'
        f"<title>{escape(title)}</title>"
        f'<line class="axis" x1="{_PAD}" y1="{_HEIGHT}" x2="{_WIDTH}" y2="{_HEIGHT}"/>'
        f'<text class="tick" x="0" y="12">{escape(_number(top))} {escape(unit)}</text>'
        f'<text class="tick" x="0" y="{_HEIGHT}">0</text>'
        f'<text class="tick" x="{_PAD}" y="{_HEIGHT + 16}">{escape(left)}</text>'
        f'<text class="tick" x="{_WIDTH}" y="{_HEIGHT + 16}" text-anchor="end">{escape(right)}</text>'
        f"{body}</svg>"
    )


def _number(value: float) -> str:
    return f"{value:.0f}" if value >= 10 else f"{value:.2g}"


def bars(title: str, unit: str, labels: Sequence[str], series: Sequence[Series]) -> Markup:
    """Stacked bars, one per label (a minute), each series a colour."""
    count = max(len(labels), 1)
    top = max((sum(s.values[i] or 0 for s in series) for i in range(len(labels))), default=0.0) or 1.0
    step = (_WIDTH - _PAD) / count
    parts = []
    for i in range(len(labels)):
        base = 0.0
        for s in series:
            value = s.values[i] or 0
            if value <= 0:
                continue
            height = value / top * (_HEIGHT - 20)
            y = _HEIGHT - (base + height)
            parts.append(
                f'<rect class="{s.css_class}" x="{_PAD + i * step:.1f}" y="{y:.1f}" '
                f'width="{max(step - 1, 1):.1f}" height="{height:.1f}"><title>{escape(labels[i])}: '
                f"{escape(s.name)} {value:g}</title></rect>"
            )
            base += height
    return _frame(title, unit, top, labels, "".join(parts))


def lines(title: str, unit: str, labels: Sequence[str], series: Sequence[Series]) -> Markup:
    """One polyline per series; a minute without a value breaks the line."""
    count = max(len(labels) - 1, 1)
    top = _scale(series)
    step = (_WIDTH - _PAD) / count
    parts = []
    for s in series:
        segment: list[str] = []
        segments: list[list[str]] = [segment]
        for i, value in enumerate(s.values):
            if value is None:
                segment = []
                segments.append(segment)
                continue
            segment.append(f"{_PAD + i * step:.1f},{_HEIGHT - value / top * (_HEIGHT - 20):.1f}")
        for points in segments:
            if len(points) == 1:
                x, y = points[0].split(",")
                parts.append(f'<circle class="{s.css_class}" cx="{x}" cy="{y}" r="2"/>')
            elif points:
                parts.append(f'<polyline class="{s.css_class}" points="{" ".join(points)}"/>')
    return _frame(title, unit, top, labels, "".join(parts))
