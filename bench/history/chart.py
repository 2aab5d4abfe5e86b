"""An inline SVG trend chart: run medians as a polyline over runs, commits as x labels, change points
marked (a dashed line at a step, a shaded band over a drift, labelled with the change's size). Pure
text out: no plotting library, no script, no external file, so the page opens from file://.

    python -c "from bench.history.chart import trend_svg; print(trend_svg([1, 1.1], ['a', 'b'], [], ['a', 'b']))"
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence

from bench.history.changepoints import Change

WIDTH, HEIGHT = 960, 340  # px of the viewBox; the SVG scales to the page width
MARGIN_LEFT, MARGIN_RIGHT, MARGIN_TOP, MARGIN_BOTTOM = 80, 20, 44, 90
MAX_X_LABELS = 24  # commit labels shown at most (evenly spaced)
SLOWER_COLOUR, FASTER_COLOUR, LINE_COLOUR = "#c0392b", "#1e8449", "#2c5d8f"
SPARK_MIN_SPAN = 0.10  # a sparkline spans at least +-10% of its middle value


def _nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """About `count` round tick values covering [low, high]."""
    if high <= low:
        high = low + (abs(low) or 1.0) * 0.1
    step = (high - low) / count
    magnitude = 10 ** math.floor(math.log10(step))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= step)
    first = math.floor(low / step) * step
    ticks, value = [first], first
    while value < high:
        value += step
        ticks.append(round(value, 12))
    return ticks


def _change_label(change: Change) -> str:
    text = f"{change.ratio - 1:+.1%}"
    if not math.isnan(change.ci_low):
        text += f" [{change.ci_low - 1:+.1%}, {change.ci_high - 1:+.1%}]"
    return text + (" drift" if change.kind == "drift" else "")


def trend_svg(
    medians: Sequence[float],
    labels: Sequence[str],
    changes: Sequence[Change],
    tooltips: Sequence[str],
    title: str = "",
) -> str:
    """The chart of medians in ms as an <svg> element. `labels[i]` names run i (its commit); `tooltips[i]`
    is shown on hover of its point; `changes` index the same runs (as in bench.history.changepoints)."""
    n = len(medians)
    if n == 0:
        return '<svg class="trend" viewBox="0 0 10 10" role="img"><title>no runs</title></svg>'
    low, high = min(medians), max(medians)
    pad = (high - low) * 0.08 or abs(high) * 0.05 or 1.0
    ticks = _nice_ticks(max(0.0, low - pad), high + pad)
    y_min, y_max = ticks[0], ticks[-1]
    plot_w = WIDTH - MARGIN_LEFT - MARGIN_RIGHT
    plot_h = HEIGHT - MARGIN_TOP - MARGIN_BOTTOM

    def x(i: float) -> float:
        return MARGIN_LEFT + (plot_w * (i / (n - 1)) if n > 1 else plot_w / 2)

    def y(v: float) -> float:
        return MARGIN_TOP + plot_h * (1 - (v - y_min) / (y_max - y_min))

    esc = html.escape
    parts = [
        f'<svg class="trend" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" xmlns="http://www.w3.org/2000/svg">',
        f"<title>{esc(title or 'trend of run medians')}</title>",
        f'<rect x="{MARGIN_LEFT}" y="{MARGIN_TOP}" width="{plot_w}" height="{plot_h}" fill="#fafbfc" stroke="#d0d7de"/>',
    ]
    for t in ticks:
        parts.append(
            f'<line x1="{MARGIN_LEFT}" x2="{WIDTH - MARGIN_RIGHT}" y1="{y(t):.1f}" y2="{y(t):.1f}" stroke="#e5e8eb"/>'
            f'<text x="{MARGIN_LEFT - 6}" y="{y(t) + 4:.1f}" text-anchor="end" class="tick">{t:.4g}</text>'
        )
    parts.append(
        f'<text x="14" y="{MARGIN_TOP + plot_h / 2:.0f}" transform="rotate(-90 14 {MARGIN_TOP + plot_h / 2:.0f})" '
        f'text-anchor="middle" class="axis">median ms</text>'
    )
    for k, c in enumerate(changes):
        colour = SLOWER_COLOUR if c.slower else FASTER_COLOUR
        x0, x1 = x(c.first - 0.5), x(c.last - 0.5)
        if c.kind == "drift":
            parts.append(
                f'<rect class="change" x="{x0:.1f}" y="{MARGIN_TOP}" width="{max(x1 - x0, 2):.1f}" '
                f'height="{plot_h}" fill="{colour}" fill-opacity="0.12"/>'
            )
        parts.append(
            f'<line class="change" x1="{x1:.1f}" x2="{x1:.1f}" y1="{MARGIN_TOP}" y2="{MARGIN_TOP + plot_h}" '
            f'stroke="{colour}" stroke-width="2" stroke-dasharray="6 4"/>'
        )
        right = x1 > MARGIN_LEFT + plot_w * 0.6  # a label near the right edge runs leftwards
        label_x, anchor = (x1 - 4, "end") if right else (x1 + 4, "start")
        label_y = MARGIN_TOP - 8 - 16 * (k % 2)  # neighbouring changes' labels on alternate rows
        parts.append(
            f'<text x="{label_x:.1f}" y="{label_y}" text-anchor="{anchor}" fill="{colour}" '
            f'class="change-label">{esc(_change_label(c))}</text>'
        )
    points = " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in enumerate(medians))
    parts.append(f'<polyline points="{points}" fill="none" stroke="{LINE_COLOUR}" stroke-width="1.8"/>')
    if n <= 400:  # hoverable dots; a longer series keeps only the line
        for i, v in enumerate(medians):
            parts.append(
                f'<circle cx="{x(i):.1f}" cy="{y(v):.1f}" r="3.2" fill="{LINE_COLOUR}">'
                f"<title>{esc(tooltips[i])}</title></circle>"
            )
    every = max(1, math.ceil(n / MAX_X_LABELS))
    for i in range(0, n, every):
        bx, by = x(i), MARGIN_TOP + plot_h + 10
        parts.append(
            f'<text x="{bx:.1f}" y="{by:.1f}" transform="rotate(-40 {bx:.1f} {by:.1f})" text-anchor="end" '
            f'class="xlabel">{esc(labels[i])}</text>'
        )
    parts.append("</svg>")
    return "\n".join(parts)


def sparkline_svg(
    medians: Sequence[float], changes: Sequence[Change], width: int = 90, height: int = 22
) -> str:
    """A small inline trend for a table cell: the medians as a line, each change as a coloured tick."""
    n = len(medians)
    if n < 2:
        return ""
    middle = sorted(medians)[n // 2]
    # at least +-SPARK_MIN_SPAN around the middle: run-to-run noise of a percent stays a flat line
    low, high = (
        min(min(medians), middle * (1 - SPARK_MIN_SPAN)),
        max(max(medians), middle * (1 + SPARK_MIN_SPAN)),
    )
    span = (high - low) or 1.0

    def x(i: float) -> float:
        return 1 + (width - 2) * i / (n - 1)

    def y(v: float) -> float:
        return height - 2 - (height - 4) * (v - low) / span

    points = " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in enumerate(medians))
    ticks = "".join(
        f'<line x1="{x(c.last - 0.5):.1f}" x2="{x(c.last - 0.5):.1f}" y1="0" y2="{height}" '
        f'stroke="{SLOWER_COLOUR if c.slower else FASTER_COLOUR}" stroke-width="1.5"/>'
        for c in changes
        if c.last >= 1
    )
    return (
        f'<svg class="spark" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        f'xmlns="http://www.w3.org/2000/svg" aria-hidden="true">{ticks}'
        f'<polyline points="{points}" fill="none" stroke="{LINE_COLOUR}" stroke-width="1.2"/></svg>'
    )
