"""Charts drawn on the server as SVG (no script, no CDN): a bar per value, or a
line with a point per value. Every bar and point carries ``data-label`` and
``data-value`` so that a test (or a screen reader's title) can read it."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

WIDTH, HEIGHT, PAD = 900, 240, 36


def _scale(values: Sequence[float | None]) -> float:
    top = max((v for v in values if v is not None), default=0.0)
    return top if top > 0 else 1.0


def _fmt(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:g}"


def bar_chart(title: str, labels: Sequence[str], values: Sequence[float | None]) -> str:
    top = _scale(values)
    n = max(len(values), 1)
    slot = (WIDTH - 2 * PAD) / n
    width = max(slot * 0.8, 1.0)
    bars = []
    for i, (label, value) in enumerate(zip(labels, values, strict=True)):
        h = (HEIGHT - 2 * PAD) * (value or 0) / top
        x = PAD + i * slot + (slot - width) / 2
        y = HEIGHT - PAD - h
        bars.append(
            f'<rect class="bar" x="{x:.1f}" y="{y:.1f}" width="{width:.1f}" height="{h:.1f}" '
            f'data-label="{escape(label)}" data-value="{_fmt(value)}">'
            f"<title>{escape(label)}: {_fmt(value)}</title></rect>")
    return _frame(title, top, "".join(bars), labels)


def line_chart(title: str, labels: Sequence[str],
               series: Sequence[tuple[str, Sequence[float | None]]]) -> str:
    """Several lines over the same labels; a missing value has no point (the line
    joins its neighbours)."""
    top = _scale([v for _, values in series for v in values])
    n = max(len(labels), 1)
    step = (WIDTH - 2 * PAD) / max(n - 1, 1)
    parts = []
    for k, (name, values) in enumerate(series):
        points, path = [], []
        for i, (label, value) in enumerate(zip(labels, values, strict=True)):
            if value is None:
                continue
            x = PAD + i * step if n > 1 else WIDTH / 2
            y = HEIGHT - PAD - (HEIGHT - 2 * PAD) * value / top
            path.append(f"{x:.1f},{y:.1f}")
            points.append(
                f'<circle class="point s{k}" cx="{x:.1f}" cy="{y:.1f}" r="3" '
                f'data-series="{escape(name)}" data-label="{escape(label)}" '
                f'data-value="{_fmt(value)}"><title>{escape(name)} {escape(label)}: '
                f"{_fmt(value)}</title></circle>")
        if len(path) > 1:
            parts.append(f'<polyline class="line s{k}" fill="none" points="{" ".join(path)}"/>')
        parts.extend(points)
    legend = "".join(
        f'<text class="legend s{k}" x="{PAD + 160 * k}" y="14">{escape(name)}</text>'
        for k, (name, _) in enumerate(series))
    return _frame(title, top, legend + "".join(parts), labels)


def _frame(title: str, top: float, body: str, labels: Sequence[str]) -> str:
    first = escape(labels[0]) if labels else ""
    last = escape(labels[-1]) if labels else ""
    return (
        f'<svg class="chart" role="img" aria-label="{escape(title)}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" preserveAspectRatio="none" '
        f'xmlns="http://www.w3.org/2000/svg"><title>{escape(title)}</title>'
        f'<line class="axis" x1="{PAD}" y1="{HEIGHT - PAD}" x2="{WIDTH - PAD}" '
        f'y2="{HEIGHT - PAD}"/><text class="tick" x="2" y="{PAD}">{_fmt(round(top, 1))}</text>'
        f'<text class="tick" x="{PAD}" y="{HEIGHT - 8}">{first}</text>'
        f'<text class="tick end" x="{WIDTH - PAD}" y="{HEIGHT - 8}" text-anchor="end">'
        f"{last}</text>{body}</svg>")
