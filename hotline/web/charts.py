"""Charts as server-rendered SVG, pure: no script, no inline style (the guard's CSP
forbids both), colours from classes in ``dashboard.css``. Each mark carries
``class="bar"`` or ``class="point"`` and a ``<title>`` (the exact figure on hover
or a long press); the ``viewBox`` lets CSS scale it to a wall screen or a phone.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

#: Width of a chart's viewBox: its type stays readable from a phone (390 px) to a
#: tile of a wall screen.
WIDTH = 480
ROW = 26  # height of one horizontal bar's row


def _num(value: float) -> str:
    return f"{value:.1f}".rstrip("0").rstrip(".")


def _fmt(value: float) -> str:
    return f"{value:,.0f}".replace(",", "\u202f") if float(value).is_integer() else f"{value:g}"


def _nice_max(value: float) -> float:
    if value <= 0:
        return 1.0
    step = 10 ** (len(str(int(value))) - 1)
    for m in (1, 2, 2.5, 5, 10):
        if value <= m * step:
            return float(m * step)
    return float(10 * step)


def _svg(name: str, title: str, width: int, height: int, body: list[str]) -> str:
    label = escape(title)
    return (f'<svg id="chart-{escape(name)}" class="chart" viewBox="0 0 {width} {height}" '
            f'role="img" aria-label="{label}" xmlns="http://www.w3.org/2000/svg">'
            f"<title>{label}</title>{''.join(body)}</svg>")


def bar_chart(name: str, title: str, labels: Sequence[str], values: Sequence[float],
              *, label_every: int = 1, width: int = WIDTH) -> str:
    """Vertical bars, one per label."""
    height, left, bottom, top = 240, 52, 28, 10
    plot_w, plot_h = width - left - 8, height - bottom - top
    peak = _nice_max(max(values, default=0))
    body = [f'<line class="axis" x1="{left}" y1="{top + plot_h}" x2="{width - 8}" '
            f'y2="{top + plot_h}"/>']
    for frac in (0.5, 1.0):
        y = top + plot_h * (1 - frac)
        body.append(f'<line class="grid" x1="{left}" y1="{_num(y)}" x2="{width - 8}" '
                    f'y2="{_num(y)}"/><text class="tick" x="{left - 4}" y="{_num(y + 4)}" '
                    f'text-anchor="end">{_fmt(peak * frac)}</text>')
    n = max(len(values), 1)
    slot = plot_w / n
    bar_w = max(slot * 0.75, 1.0)
    for i, (label, value) in enumerate(zip(labels, values, strict=True)):
        h = plot_h * value / peak
        x = left + i * slot + (slot - bar_w) / 2
        body.append(f'<rect class="bar" x="{_num(x)}" y="{_num(top + plot_h - h)}" '
                    f'width="{_num(bar_w)}" height="{_num(h)}"><title>{escape(label)}: '
                    f"{_fmt(value)}</title></rect>")
        if i % label_every == 0:
            body.append(f'<text class="label" x="{_num(x + bar_w / 2)}" y="{height - 10}" '
                        f'text-anchor="middle">{escape(label)}</text>')
    return _svg(name, title, width, height, body)


def line_chart(name: str, title: str, labels: Sequence[str], values: Sequence[float],
               *, label_every: int = 7, width: int = WIDTH) -> str:
    """A line through one point per label."""
    height, left, bottom, top = 220, 52, 28, 10
    plot_w, plot_h = width - left - 12, height - bottom - top
    peak = _nice_max(max(values, default=0))
    n = len(values)
    step = plot_w / max(n - 1, 1)
    points = [(left + i * step, top + plot_h * (1 - v / peak)) for i, v in enumerate(values)]
    body = [f'<line class="axis" x1="{left}" y1="{top + plot_h}" x2="{width - 12}" '
            f'y2="{top + plot_h}"/>',
            f'<text class="tick" x="{left - 4}" y="{top + 4}" text-anchor="end">'
            f"{_fmt(peak)}</text>"]
    if points:
        path = " ".join(f"{_num(x)},{_num(y)}" for x, y in points)
        body.append(f'<polyline class="line" points="{path}"/>')
    for i, ((x, y), label, value) in enumerate(zip(points, labels, values, strict=True)):
        body.append(f'<circle class="point" cx="{_num(x)}" cy="{_num(y)}" r="3">'
                    f"<title>{escape(label)}: {_fmt(value)}</title></circle>")
        if i % label_every == 0:
            body.append(f'<text class="label" x="{_num(x)}" y="{height - 10}" '
                        f'text-anchor="middle">{escape(label[5:] if len(label) == 10 else label)}'
                        "</text>")
    return _svg(name, title, width, height, body)


def hbar_chart(name: str, title: str, labels: Sequence[str], values: Sequence[float],
               *, suffix: str = "", width: int = WIDTH) -> str:
    """Horizontal bars, one per label, the figure at each bar's end."""
    left, top = min(width * 3 // 8, 260), 6
    height = top * 2 + ROW * max(len(values), 1)
    peak = _nice_max(max(values, default=0))
    plot_w = width - left - 80
    room = left // 8  # characters of a label that fit
    body = []
    for i, (label, value) in enumerate(zip(labels, values, strict=True)):
        y = top + i * ROW
        w = plot_w * value / peak
        short = label if len(label) <= room else label[:room - 1] + "…"
        body.append(
            f'<text class="label" x="{left - 6}" y="{y + 17}" text-anchor="end">'
            f"{escape(short)}</text>"
            f'<rect class="bar" x="{left}" y="{y + 4}" width="{_num(w)}" height="{ROW - 8}">'
            f"<title>{escape(label)}: {_fmt(value)}{escape(suffix)}</title></rect>"
            f'<text class="value" x="{_num(left + w + 6)}" y="{y + 17}">'
            f"{_fmt(value)}{escape(suffix)}</text>")
    return _svg(name, title, width, height, body)
