"""The HTML report of ``compare`` and ``estimate`` (``--html report.html``): one page,
self-contained (inline styles and SVG only, no script, no URL; the policy and the
checks of :func:`~kldiv_cli.render.files.html_document`), that reads on a laptop and on
a phone (tables scroll sideways, figures scale with the page).

The pieces are generic: :func:`svg_cdf` (empirical CDFs on a log axis), :func:`svg_bars`
(grouped bars), :func:`svg_scatter` (a value against a size), :func:`table` and
:func:`page`. Every name from data or paths goes through :func:`~kldiv_cli.text.clean`
and ``html.escape``.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..text import clean
from .files import html_document

if TYPE_CHECKING:
    import numpy as np

__all__ = ["PALETTE", "fmt", "page", "svg_bars", "svg_cdf", "svg_scatter", "table"]

#: One color per series (candidates, estimators), in order; then repeated.
PALETTE = ("#4c78dd", "#f08a24", "#3aa663", "#d6453d", "#8e5cc4", "#1fa2a6", "#c9a227", "#7a7f8c")
#: Points drawn per CDF (ranks spaced evenly; the minimum and maximum always).
CDF_POINTS = 400
#: Decades a log axis spans at most (values below its left edge are drawn on it).
DECADES = 10

_CSS = """
body{font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;background:#f6f7f9;color:#1d2330}
header{background:#1d2330;color:#fff;padding:18px 24px}
header h1{margin:0;font-size:21px;font-weight:600}
header p{margin:6px 0 0;color:#c9d1e0;font-size:13px;overflow-wrap:anywhere}
header code{color:#fff;background:#2e3648;padding:1px 6px;border-radius:4px}
main{padding:20px 24px;max-width:1280px;box-sizing:border-box}
h2{font-size:17px;margin:26px 0 8px}
.scroll{overflow-x:auto;background:#fff;border-radius:8px;box-shadow:0 1px 2px rgba(0,0,0,.08)}
table{border-collapse:collapse;width:100%}
th,td{padding:6px 10px;text-align:left;border-bottom:1px solid #eceef2;font-variant-numeric:tabular-nums;
font-size:14px;white-space:nowrap}
th{background:#fafbfc;font-weight:600;color:#4a5468}
td.num,th.num{text-align:right}
.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(min(100%,540px),1fr));gap:18px}
.card{background:#fff;border-radius:8px;padding:14px 16px;box-shadow:0 1px 2px rgba(0,0,0,.08);min-width:0}
.card h3{margin:0 0 2px;font-size:15px}
.note{color:#4a5468;font-size:12px;margin:4px 0 0}
.legend{font-size:13px;color:#1d2330;margin:4px 0}
.legend span{display:inline-block;width:11px;height:11px;border-radius:2px;margin:0 5px 0 12px;vertical-align:-1px}
.legend span:first-child{margin-left:0}
.pass{color:#17663a;font-weight:600}.fail{color:#a4161a;font-weight:600}
"""

_TEXT = 'font-size="13" fill="#4a5468"'
_GRID = 'stroke="#e3e6ec"'


def fmt(value: Any) -> str:
    """A number as people read it (6 significant digits), anything else as text."""
    if isinstance(value, bool) or value is None:
        return "-" if value is None else str(value).lower()
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return f"{value:.6g}" if math.isfinite(value) else str(value)
    return str(value)


def _esc(text: Any) -> str:
    return html.escape(clean(str(text)))


def table(head: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A table (numbers right-aligned), in a box that scrolls sideways on a narrow screen."""

    def cell(tag: str, v: Any) -> str:
        num = isinstance(v, (int, float)) and not isinstance(v, bool)
        return f"<{tag}{' class=num' if num else ''}>{_esc(fmt(v))}</{tag}>"

    th = "".join(f"<th>{_esc(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(cell("td", v) for v in row) + "</tr>" for row in rows)
    return f'<div class="scroll"><table><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table></div>'


def legend(labels: Sequence[str], colors: Sequence[int] = ()) -> str:
    items = "".join(
        f'<span style="background:{PALETTE[(colors[i] if colors else i) % len(PALETTE)]}"></span>'
        f"{_esc(label)}"
        for i, label in enumerate(labels)
    )
    return f'<div class="legend">{items}</div>'


def _svg(width: int, height: int, label: str, body: list[str]) -> str:
    return (
        f'<svg viewBox="0 0 {width} {height}" width="100%" role="img" aria-label="{_esc(label)}" '
        f'font-family="system-ui,sans-serif">{"".join(body)}</svg>'
    )


def _decades(values: Sequence[np.ndarray]) -> tuple[int, int]:
    """The log10 range of a log axis: the decades of the positive values (at most
    :data:`DECADES`, the largest kept)."""

    positive = [v[v > 0] for v in values]
    lows = [float(v.min()) for v in positive if v.size]
    highs = [float(v.max()) for v in positive if v.size]
    if not highs:
        return -6, 0
    hi = math.ceil(math.log10(max(highs)))
    lo = math.floor(math.log10(min(lows)))
    lo = max(lo, hi - DECADES)
    return (lo, hi) if hi > lo else (hi - 1, hi)


def _nice(top: float) -> float:
    """The smallest 1, 2, 2.5 or 5 × 10^k at or above ``top`` (> 0): a round axis end."""
    if not (math.isfinite(top) and top > 0):
        return 1.0
    scale = 10.0 ** math.floor(math.log10(top))
    return next(
        m * scale
        for m in (1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10)
        if m * scale >= top * (1 - 1e-12)
    )


def _tick(v: float) -> str:
    return f"{v:.3g}"


def _power(exponent: int) -> str:
    return {0: "1", 1: "10", -1: "0.1"}.get(exponent, f"1e{exponent}")


def svg_cdf(
    series: Sequence[tuple[str, np.ndarray]], what: str, colors: Sequence[int] = ()
) -> tuple[str, str]:
    """Empirical CDFs (share of rows ≤ x) of each series on a log x axis; the SVG and a
    note (how many values sit at or below the axis's left edge: 0 has no logarithm).
    ``colors``: each series' index in :data:`PALETTE` (default: its own index)."""
    import numpy as np

    values = [np.sort(np.asarray(v, dtype=np.float64)[np.isfinite(v)]) for _, v in series]
    lo, hi = _decades(values)
    width, height, left, right, top, base = 480, 266, 44, 12, 10, 216
    span = width - left - right

    def x_of(v: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore"):
            logs = np.log10(np.maximum(v, 10.0**lo))
        out: np.ndarray = left + (np.minimum(logs, hi) - lo) / (hi - lo) * span
        return out

    body = []
    for d in range(lo, hi + 1):
        x = left + (d - lo) / (hi - lo) * span
        body.append(f'<line x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{base}" {_GRID}/>')
        body.append(
            f'<text x="{x:.1f}" y="{base + 16}" text-anchor="middle" {_TEXT}>{_power(d)}</text>'
        )
    for share in (0, 0.25, 0.5, 0.75, 1):
        y = base - share * (base - top)
        body.append(f'<line x1="{left}" y1="{y:.1f}" x2="{width - right}" y2="{y:.1f}" {_GRID}/>')
        body.append(
            f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" {_TEXT}>{share:.0%}</text>'
        )
    clipped = 0
    for i, v in enumerate(values):
        n = len(v)
        if n == 0:
            continue
        clipped += int(np.count_nonzero(v < 10.0**lo))
        ranks = np.unique(np.linspace(0, n - 1, min(n, CDF_POINTS)).round().astype(np.int64))
        xs, ys = x_of(v[ranks]), base - (ranks + 1) / n * (base - top)
        # A step plot: the share reaches (rank+1)/n at the value.
        points = " ".join(f"{x:.1f},{y:.1f}" for x, y in zip(xs, ys))
        color = PALETTE[i % len(PALETTE)]
        body.append(
            f'<polyline points="{x_of(v[:1])[0]:.1f},{base} {points}" fill="none" stroke="{color}" stroke-width="2"><title>{_esc(series[i][0])}</title></polyline>'
        )
    body.append(
        f'<text x="{left + span / 2:.1f}" y="{height - 2}" text-anchor="middle" {_TEXT}>{_esc(what)} (log scale)</text>'
    )
    note = (
        f"{clipped} values at or below {_power(lo)} (0 included) drawn at the left edge."
        if clipped
        else ""
    )
    return _svg(width, height, f"cumulative distribution of {what}", body), note


def svg_bars(
    groups: Sequence[str], series: Sequence[tuple[str, Sequence[float]]], what: str
) -> str:
    """Grouped bars: for each group (a position band, a confidence bucket), one bar per
    series; NaN (an empty group) draws nothing. Linear y from 0."""
    finite = [v for _, vals in series for v in vals if math.isfinite(v)]
    top_value = _nice(max(finite, default=0.0))
    width, height, left, right, top, base = 480, 250, 50, 8, 10, 196
    slot = (width - left - right) / max(len(groups), 1)
    bar = slot * 0.8 / max(len(series), 1)
    body = []
    for share in (0, 0.25, 0.5, 0.75, 1):
        y = base - share * (base - top)
        body.append(f'<line x1="{left}" y1="{y:.1f}" x2="{width - right}" y2="{y:.1f}" {_GRID}/>')
        body.append(
            f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" {_TEXT}>{_tick(share * top_value)}</text>'
        )
    for g, group in enumerate(groups):
        x0 = left + g * slot + slot * 0.1
        for s, (label, vals) in enumerate(series):
            v = vals[g]
            if not math.isfinite(v):
                continue
            h = (base - top) * max(v, 0.0) / top_value
            body.append(
                f'<rect x="{x0 + s * bar:.1f}" y="{base - h:.1f}" width="{max(bar - 1, 1):.1f}" height="{h:.1f}" '
                f'fill="{PALETTE[s % len(PALETTE)]}"><title>{_esc(label)}, {_esc(group)}: {fmt(v)}</title></rect>'
            )
        cx = left + g * slot + slot / 2
        body.append(
            f'<text x="{cx:.1f}" y="{base + 14}" text-anchor="end" transform="rotate(-30 {cx:.1f} {base + 14})" '
            f"{_TEXT}>{_esc(group)}</text>"
        )
    return _svg(width, height, f"{what} by group", body)


def _size_text(n: float) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{n:.0f} B"


def svg_scatter(points: Sequence[tuple[str, float, float]], what: str) -> str:
    """``(label, size in bytes, value)`` points: the value against the size, each labelled."""
    width, height, left, right, top, base = 480, 260, 50, 16, 24, 214
    sizes = [p[1] for p in points]
    values = [p[2] for p in points if math.isfinite(p[2])]
    x_lo, x_hi = min(sizes), max(sizes)
    if x_hi == x_lo:
        x_lo, x_hi = x_lo * 0.9, x_hi * 1.1 + 1
    y_hi = _nice(max(values, default=0.0))
    span = width - left - right
    body = []
    for share in (0, 0.25, 0.5, 0.75, 1):
        y = base - share * (base - top)
        body.append(f'<line x1="{left}" y1="{y:.1f}" x2="{width - right}" y2="{y:.1f}" {_GRID}/>')
        body.append(
            f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" {_TEXT}>{_tick(share * y_hi)}</text>'
        )
    for share in (0, 0.5, 1):
        x = left + share * span
        anchor = "start" if share == 0 else "end" if share == 1 else "middle"
        body.append(
            f'<text x="{x:.1f}" y="{base + 18}" text-anchor="{anchor}" {_TEXT}>{_size_text(x_lo + share * (x_hi - x_lo))}</text>'
        )
    ordered = sorted((p for p in points if math.isfinite(p[2])), key=lambda p: p[1])
    coords = [
        (left + (s - x_lo) / (x_hi - x_lo) * span, base - v / y_hi * (base - top))
        for _, s, v in ordered
    ]
    if len(coords) > 1:
        body.append(
            '<polyline points="'
            + " ".join(f"{x:.1f},{y:.1f}" for x, y in coords)
            + '" fill="none" stroke="#c9d1e0" stroke-width="1.5"/>'
        )
    for i, ((label, size, value), (x, y)) in enumerate(zip(ordered, coords)):
        color = PALETTE[i % len(PALETTE)]
        anchor = "end" if x > left + span * 0.8 else "start"
        dx = -8 if anchor == "end" else 8
        body.append(
            f'<circle cx="{x:.1f}" cy="{y:.1f}" r="5" fill="{color}"><title>{_esc(label)}: {_size_text(size)}, {fmt(value)}</title></circle>'
            f'<text x="{x + dx:.1f}" y="{y - 8:.1f}" text-anchor="{anchor}" font-size="13" fill="#1d2330">{_esc(label)}</text>'
        )
    body.append(
        f'<text x="{left + span / 2:.1f}" y="{height - 4}" text-anchor="middle" {_TEXT}>size (bytes)</text>'
    )
    return _svg(width, height, f"{what} against size", body)


def card(
    title: str, svg: str, labels: Sequence[str] = (), note: str = "", colors: Sequence[int] = ()
) -> str:
    """One figure: a title, a legend of ``labels`` (in ``colors``), the SVG and a note."""
    return (
        f'<section class="card"><h3>{_esc(title)}</h3>'
        + (legend(labels, colors) if labels else "")
        + svg
        + (f'<p class="note">{_esc(note)}</p>' if note else "")
        + "</section>"
    )


def page(title: str, facts: Sequence[str], sections: Sequence[tuple[str, str]]) -> bytes:
    """The whole page: a header (``title``, one line per fact: text, escaped here) and
    ``(heading, html)`` sections (their markup built by the functions above)."""
    import datetime as dt

    when = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    lines = "".join(f"<p>{_esc(f)}</p>" for f in [*facts, f"written {when}"])
    body = "".join(f"<h2>{_esc(h)}</h2>{content}" for h, content in sections)
    text = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{_esc(title)}</title><style>{_CSS}</style></head>
<body><header><h1>{_esc(title)}</h1>{lines}</header><main>{body}</main></body></html>
"""
    return html_document(text)
