"""The dashboard's charts: hand-written SVG (no plotting library, nothing fetched to view).

Each function returns an HTML fragment, an ``<svg>`` or a one-line note when there is
nothing to draw; every text in it is escaped here, so the page marks them safe as they are.
Colours come from the page's CSS classes (``bar-kept``, ``bar-rej``, ``thr``...).
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from typing import Any

from flows.dashboard.model import Histogram


def fmt(value: float | int | None, digits: int = 3) -> str:
    """Counts with thousands separators, other numbers with ``digits`` significant digits."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    if isinstance(value, int) or float(value).is_integer() and abs(value) >= 1000:
        return f"{int(value):,}"
    return f"{value:.{digits}g}"


def esc(text: Any) -> str:
    """``text`` as HTML text or attribute value (quotes escaped too)."""
    return html.escape(str(text), quote=True)


_SERIES_CLASS = {"kept": "bar-kept", "rejected": "bar-rej", "all": "bar-acc"}


def svg_hbars(
    rows: Sequence[tuple[str, Sequence[tuple[str, float]]]],
    *,
    width: int = 620,
    label_width: int = 170,
    row_height: int = 22,
    title: str = "",
) -> str:
    """Horizontal stacked bars: each row a label and (series, value) segments."""
    if not rows:
        return '<p class="note">Nothing to show.</p>'
    total_max = max((sum(v for _, v in segs) for _, segs in rows), default=0) or 1
    plot = width - label_width - 80
    height = row_height * len(rows) + 6
    out = [
        f'<svg viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
        f'aria-label="{esc(title)}">'
    ]
    for i, (label, segments) in enumerate(rows):
        y = 3 + i * row_height
        short = label if len(label) <= 26 else label[:25] + "…"
        out.append(
            f'<text x="{label_width - 6}" y="{y + row_height * 0.65:.1f}" '
            f'text-anchor="end">{esc(short)}</text>'
        )
        x = float(label_width)
        for series, value in segments:
            w = plot * value / total_max
            if w > 0:
                out.append(
                    f'<rect class="{_SERIES_CLASS.get(series, "bar-acc")}" x="{x:.1f}" '
                    f'y="{y + 2}" width="{max(w, 1):.1f}" height="{row_height - 6}">'
                    f"<title>{esc(label)}: {series} {fmt(value)}</title></rect>"
                )
            x += w
        total = sum(v for _, v in segments)
        out.append(f'<text x="{x + 5:.1f}" y="{y + row_height * 0.65:.1f}">{fmt(total)}</text>')
    out.append("</svg>")
    return "".join(out)


def svg_histogram(
    hist: Histogram,
    *,
    xlabel: str,
    thresholds: Sequence[tuple[str, float]] = (),
    median: float | None = None,
    width: int = 400,
    height: int = 200,
) -> str:
    """Stacked histogram (kept, then rejected) with threshold and median lines."""
    if hist.empty:
        return f'<p class="note">{esc(xlabel)}: no values.</p>'
    left, right, top, bottom = 44, 12, 16, 34
    plot_w, plot_h = width - left - right, height - top - bottom
    bins = len(hist.edges) - 1
    totals = [sum(c[i] for c in hist.counts.values()) for i in range(bins)]
    peak = max(totals) or 1
    lo, hi = hist.edges[0], hist.edges[-1]

    def xpos(value: float) -> float:
        return left + plot_w * (value - lo) / (hi - lo)

    out = [
        f'<svg viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
        f'aria-label="{esc(xlabel)} histogram">',
        f'<line class="grid" x1="{left}" y1="{top}" x2="{left + plot_w}" y2="{top}"/>',
        f'<text x="{left - 4}" y="{top + 4}" text-anchor="end">{fmt(peak)}</text>',
        f'<text x="{left - 4}" y="{top + plot_h}" text-anchor="end">0</text>',
    ]
    bar_w = plot_w / bins
    for i in range(bins):
        base = top + plot_h
        for series in ("kept", "rejected", *[s for s in hist.counts if s not in _SERIES_CLASS]):
            count = hist.counts.get(series, [0] * bins)[i]
            if not count:
                continue
            h = plot_h * count / peak
            base -= h
            out.append(
                f'<rect class="{_SERIES_CLASS.get(series, "bar-acc")}" x="{left + i * bar_w:.1f}" '
                f'y="{base:.1f}" width="{max(bar_w - 1, 1):.1f}" height="{h:.1f}">'
                f"<title>{fmt(hist.edges[i])} – {fmt(hist.edges[i + 1])}: {series} {count:,}"
                f"</title></rect>"
            )
    axis_y = top + plot_h
    out.append(f'<line class="axis" x1="{left}" y1="{axis_y}" x2="{left + plot_w}" y2="{axis_y}"/>')
    for j in range(5):
        value = lo + (hi - lo) * j / 4
        x = xpos(value)
        out.append(
            f'<line class="axis" x1="{x:.1f}" y1="{axis_y}" x2="{x:.1f}" y2="{axis_y + 4}"/>'
        )
        out.append(f'<text x="{x:.1f}" y="{axis_y + 15}" text-anchor="middle">{fmt(value)}</text>')
    out.append(
        f'<text x="{left + plot_w / 2:.1f}" y="{height - 3}" text-anchor="middle">'
        f"{esc(xlabel)}</text>"
    )
    if median is not None and lo <= median <= hi:
        x = xpos(median)
        out.append(
            f'<line class="med" x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{axis_y}">'
            f"<title>median {fmt(median)}</title></line>"
        )
    for kind, value in thresholds:
        x = xpos(value)
        anchor = "end" if x > left + plot_w * 0.8 else "start"
        dx = -4 if anchor == "end" else 4
        out.append(
            f'<line class="thr" x1="{x:.1f}" y1="{top - 6}" x2="{x:.1f}" y2="{axis_y}">'
            f"<title>threshold: {kind} {fmt(value)}</title></line>"
            f'<text x="{x + dx:.1f}" y="{top - 4}" text-anchor="{anchor}">'
            f"{kind} {fmt(value)}</text>"
        )
    out.append("</svg>")
    return "".join(out)


_LINE_COLOURS = ("#2c5fa8", "#c2452d", "#2f7d4f", "#8a4fb0", "#d18a00", "#3a8f9a")


def svg_lines(
    labels: Sequence[str],
    series: dict[str, Sequence[float | None]],
    *,
    ylabel: str,
    width: int = 400,
    height: int = 190,
    percent: bool = False,
) -> str:
    """One line per series over the version labels (gaps where a value is missing)."""
    values = [v for vs in series.values() for v in vs if v is not None]
    if not values:
        return f'<p class="note">{esc(ylabel)}: no values.</p>'
    left, right, top, bottom = 48, 12, 14, 40
    plot_w, plot_h = width - left - right, height - top - bottom
    lo, hi = min(min(values), 0.0), max(values)
    if hi - lo < 1e-12:
        hi = lo + 1
    step = plot_w / max(len(labels) - 1, 1)

    def point(i: int, v: float) -> tuple[float, float]:
        x = left + (i * step if len(labels) > 1 else plot_w / 2)
        return x, top + plot_h * (1 - (v - lo) / (hi - lo))

    def label(v: float) -> str:
        return f"{v:.0%}" if percent else fmt(v)

    out = [
        f'<svg viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
        f'aria-label="{esc(ylabel)} per version">',
        f'<line class="axis" x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" '
        f'y2="{top + plot_h}"/>',
        f'<text x="{left - 4}" y="{top + 4}" text-anchor="end">{label(hi)}</text>',
        f'<text x="{left - 4}" y="{top + plot_h}" text-anchor="end">{label(lo)}</text>',
    ]
    for i, name in enumerate(labels):
        x, _ = point(i, lo)
        out.append(
            f'<text x="{x:.1f}" y="{top + plot_h + 14}" text-anchor="middle">{esc(name)}</text>'
        )
    for n, (name, vs) in enumerate(series.items()):
        colour = _LINE_COLOURS[n % len(_LINE_COLOURS)]
        segments: list[list[tuple[float, float]]] = [[]]
        for i, v in enumerate(vs):
            if v is None:
                segments.append([])
                continue
            x, y = point(i, v)
            segments[-1].append((x, y))
            out.append(
                f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{colour}">'
                f"<title>{esc(name)} {esc(labels[i])}: {label(v)}</title></circle>"
            )
        for seg in segments:
            if len(seg) > 1:
                pts = " ".join(f"{x:.1f},{y:.1f}" for x, y in seg)
                out.append(f'<polyline class="line" stroke="{colour}" points="{pts}"/>')
        out.append(
            f'<rect x="{left + n * 90}" y="{height - 14}" width="10" height="10" '
            f'fill="{colour}"/><text x="{left + n * 90 + 14}" y="{height - 5}">{esc(name)}</text>'
        )
    out.append("</svg>")
    return "".join(out)
