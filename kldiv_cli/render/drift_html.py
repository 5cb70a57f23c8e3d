"""The drift report as one self-contained HTML page: the verdict, the run's settings, a
summary table, a columns x windows (or segments) heat map for ``--window``/``--segment``,
and a card with a histogram per compared column.

The page has no scripts, fonts or links: histograms are inline SVG with at most
:data:`MAX_BARS` bins each, for at most :data:`MAX_CARDS` columns, so its size does not
grow with the rows or the categories; :func:`~kldiv_cli.render.files.html_document`
makes its bytes safe whatever the data holds.
"""

from __future__ import annotations

import html
import math

from ..jobs.drift_report import ColumnResult, DriftReport, Histogram, Reason, State
from ..text import clean
from .drift import explain, group_text, missing_text, new_text, number_text, share_text
from .files import html_document

#: Bins drawn per histogram in the HTML page (more are merged or cut, as stated there).
MAX_BARS = 40
#: Histograms in the HTML page (the first columns in its order; the table lists all).
MAX_CARDS = 60
#: Order of columns in the HTML page: what needs attention first.
_ORDER = {
    State.DRIFT: 0,
    State.ERROR: 1,
    State.WARNING: 2,
    State.WEAK: 3,
    State.WARN: 4,
    State.OK: 5,
    State.SKIPPED: 6,
}
# ----------------------------------------------------------------- HTML

_CSS = """
body{font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;background:#f6f7f9;color:#1d2330}
header{background:#1d2330;color:#fff;padding:20px 32px}
header h1{margin:0;font-size:22px;font-weight:600}
header p{margin:6px 0 0;color:#c9d1e0;font-size:13px}
header code{color:#fff;background:#2e3648;padding:1px 6px;border-radius:4px;word-break:break-all}
main{padding:24px 32px;max-width:1280px;box-sizing:border-box}
.pill{display:inline-block;padding:2px 10px;border-radius:999px;font-weight:600;font-size:13px}
.ok{background:#dcf5e4;color:#17663a}.drift{background:#fde2e1;color:#a4161a}
.error{background:#fff1cc;color:#7a5200}.skipped{background:#eceef2;color:#4a5468}
.warning{background:#fff1cc;color:#7a5200}.weak{background:#f3e5f7;color:#6a1b7a}.warn{background:#fff1cc;color:#7a5200}
table{border-collapse:collapse;width:100%;background:#fff;border-radius:8px;overflow:hidden;
box-shadow:0 1px 2px rgba(0,0,0,.08)}
th,td{padding:7px 10px;text-align:left;border-bottom:1px solid #eceef2;font-variant-numeric:tabular-nums;
vertical-align:top;font-size:14px}
th{background:#fafbfc;font-weight:600;color:#4a5468}
td.num{text-align:right}
.hot{color:#a4161a;font-weight:600}header .hot{color:#ffb4ae}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(560px,1fr));gap:18px;margin-top:24px}
.card{background:#fff;border-radius:8px;padding:16px 18px;box-shadow:0 1px 2px rgba(0,0,0,.08);
border-top:4px solid #d7dbe3}
.card.drift{border-top-color:#d6453d}.card.error{border-top-color:#e0a800}.card.ok{border-top-color:#3aa663}
.card h3{margin:0 0 4px;font-size:17px;word-break:break-all}
.meta{color:#4a5468;font-size:13px;margin-bottom:6px}
.flag{background:#fde2e1;color:#a4161a;border-radius:6px;padding:6px 10px;margin:6px 0;font-size:13px}
.legend span{display:inline-block;width:11px;height:11px;border-radius:2px;margin:0 5px 0 12px;vertical-align:-1px}
.note{color:#4a5468;font-size:12px}
h2{font-size:17px;margin:0 0 10px}
.hm-wrap{overflow-x:auto;margin-bottom:24px}
table.heat{width:auto}table.heat th{white-space:nowrap}
td.hm{text-align:center;font-size:12px;min-width:44px;padding:5px 6px}
th.hm-h{vertical-align:bottom;height:110px;padding:4px}
th.hm-h span{writing-mode:vertical-rl;transform:rotate(180deg);white-space:nowrap;font-weight:500}
"""
_REF, _CUR = "#4c78dd", "#f08a24"


def _bars(h: Histogram) -> tuple[list[str], list[float], list[float], str]:
    """At most :data:`MAX_BARS` bins: numeric bins merged in neighbouring groups,
    categories cut to the largest (the other and new bins always kept)."""
    labels, ref, cur = list(h.labels), list(h.reference), list(h.current)
    n_ref, n_cur = sum(ref) or 1, sum(cur) or 1
    note = ""
    k = len(labels)
    if k > MAX_BARS and labels[0].startswith("< "):
        group = math.ceil((k - 2) / (MAX_BARS - 2))
        merged_l, merged_r, merged_c = [labels[0]], [ref[0]], [cur[0]]
        for i in range(1, k - 1, group):
            j = min(i + group, k - 1)
            merged_l.append(f"{labels[i].split(',')[0]}, …")
            merged_r.append(sum(ref[i:j]))
            merged_c.append(sum(cur[i:j]))
        labels, ref, cur = merged_l + [labels[-1]], merged_r + [ref[-1]], merged_c + [cur[-1]]
        note = f"{k} bins drawn as {len(labels)} (neighbours merged)"
    elif k > MAX_BARS:
        fixed = [i for i, label in enumerate(labels) if label.startswith("(")]
        rest = sorted(
            (i for i in range(k) if i not in fixed),
            key=lambda i: -max(ref[i] / n_ref, cur[i] / n_cur),
        )
        keep = sorted(rest[: MAX_BARS - len(fixed)]) + fixed
        labels, ref, cur = [labels[i] for i in keep], [ref[i] for i in keep], [cur[i] for i in keep]
        note = f"the {len(keep)} largest of {k} bins"
    return labels, [r / n_ref for r in ref], [c / n_cur for c in cur], note


def _axis_label(label: str) -> str:
    """A numeric bin by its lower edge (the first and last by their bound), a category
    as it is; at most 16 characters."""
    if label.startswith("[") and ", " in label:
        label = label[1:].split(", ")[0]
    text = clean(label)
    return text if len(text) <= 16 else text[:15] + "…"


def svg_histogram(h: Histogram) -> str:
    """Reference and current shares per bin, side by side, with a y scale in percent."""
    labels, ref, cur, note = _bars(h)
    top = max(max(ref), max(cur), 1e-12)
    width, height, left, base = 560, 260, 64, 170
    slot = (width - left - 6) / len(labels)
    bar = max(1.5, slot * 0.4)
    esc = html.escape
    parts = [
        f'<svg viewBox="0 0 {width} {height}" width="100%" '
        'role="img" aria-label="histogram of reference and current shares" overflow="visible" font-family="system-ui,sans-serif">'
    ]
    for tick in (0, 0.5, 1):
        y = base - (base - 12) * tick
        parts.append(
            f'<line x1="{left}" y1="{y:.1f}" x2="{width - 6}" y2="{y:.1f}" stroke="#e3e6ec"/>'
            f'<text x="{left - 5}" y="{y + 4:.1f}" font-size="11" text-anchor="end" fill="#4a5468">'
            f"{top * tick:.0%}</text>"
        )
    step = max(1, math.ceil(len(labels) / 16))
    for i, label in enumerate(labels):
        x = left + i * slot + slot * 0.1
        for j, (share, color) in enumerate(((ref[i], _REF), (cur[i], _CUR))):
            hgt = (base - 12) * share / top
            side = "reference" if j == 0 else "current"
            parts.append(
                f'<rect x="{x + j * bar:.1f}" y="{base - hgt:.1f}" width="{bar:.1f}" '
                f'height="{hgt:.1f}" fill="{color}"><title>{esc(clean(label))}: {side} '
                f"{share:.2%}</title></rect>"
            )
        if i % step == 0:
            cx = x + bar
            parts.append(
                f'<text x="{cx:.1f}" y="{base + 14}" font-size="11" fill="#1d2330" text-anchor="end" '
                f'transform="rotate(-35 {cx:.1f} {base + 14})">{esc(_axis_label(label))}</text>'
            )
    parts.append("</svg>")
    if note:
        parts.append(f'<p class="note">{esc(note)}</p>')
    return "".join(parts)


def _pill(state: State) -> str:
    return f'<span class="pill {state.value}">{state.value}</span>'


def _summary_row(c: ColumnResult, report: DriftReport) -> str:
    esc = html.escape
    s = report.settings
    hot_missing = Reason.MISSING in c.reasons
    group = [f"<td>{esc(group_text(c))}</td>"] if report.grouping is not None else []
    cells = [
        *group,
        f"<td>{esc(clean(c.name))}</td>",
        f"<td>{c.role.value}</td>",
        f"<td>{_pill(c.state)}</td>",
        f'<td class="num">{number_text(c.value)}</td>',
        f'<td class="num">{number_text(c.threshold) if c.role.compared else "-"}</td>',
        f'<td class="{"hot" if hot_missing else ""}">{esc(missing_text(c))}</td>',
        f'<td class="{"hot" if c.n_new_categories else ""}">{esc(new_text(c, 5)) or "-"}</td>',
        f"<td>{esc(explain(c, s))}</td>",
    ]
    return "<tr>" + "".join(cells) + "</tr>"


def _card(c: ColumnResult, report: DriftReport) -> str:
    esc = html.escape
    # (text, highlighted): missing-share changes and new categories always stand out.
    flags: list[tuple[str, bool]] = []
    if c.missing.change:
        flags.append((f"Missing values {esc(missing_text(c))}", True))
    if c.n_new_categories:
        share = share_text(c.new_category_share or 0)
        flags.append((f"New categories ({share} of current values): {esc(new_text(c))}", True))
    if c.outside_range_share and c.outside_range_share >= 0.001:
        share = share_text(c.outside_range_share)
        flags.append((f"{share} of current values outside the reference's range", False))
    flag_html = "".join(
        f'<div class="{"flag" if hot else "meta"}">{text}</div>' for text, hot in flags
    )
    meta = (
        f"{c.role.value} · {esc(c.metric)} {number_text(c.value)} (threshold {number_text(c.threshold)}) · "
        f"{c.n_reference} reference and {c.n_current} current values"
    )
    if c.weak:
        meta += f" · noise bound {number_text(c.noise_bound)}: weak evidence"
    body = ""
    if c.histogram is not None:
        body = (
            f'<div class="meta legend"><span style="background:{_REF};margin-left:0"></span>reference'
            f'<span style="background:{_CUR}"></span>current</div>' + svg_histogram(c.histogram)
        )
    s = report.settings
    why = explain(c, s)
    return (
        f'<section class="card {c.state.value}"><h3>{esc(clean(c.name))}{_in_group(c)} '
        f"{_pill(c.state)}</h3>"
        f'<div class="meta">{meta}</div>'
        + (f'<div class="meta"><b>{esc(why)}</b></div>' if why else "")
        + flag_html
        + body
        + "</section>"
    )


#: Rows of the summary table of a grouped report: the ones that need attention first.
MAX_ROWS = 500


def heat_map(report: DriftReport) -> str:
    """A columns x windows (or segments) table: each cell the column's value in that
    group, coloured by its state (hover: why); the last row each group's verdict."""
    if report.grouping is None or not report.groups:
        return ""
    esc = html.escape
    cells = {(c.name, c.group): c for c in report.columns if c.group is not None}
    names = list(dict.fromkeys(c.name for c in report.columns if c.group is not None))
    labels = [g.label for g in report.groups]
    head = "".join(f'<th class="hm-h"><span>{esc(clean(x))}</span></th>' for x in labels)
    rows = []
    for name in names:
        row = [f"<th>{esc(clean(name))}</th>"]
        for label in labels:
            c = cells.get((name, label))
            if c is None:
                row.append('<td class="hm"></td>')
                continue
            why = explain(c, report.settings) or c.state.value
            row.append(
                f'<td class="hm {c.state.value}" title="{esc(why)}">{number_text(c.value)}</td>'
            )
        rows.append("<tr>" + "".join(row) + "</tr>")
    verdicts = "".join(
        f'<td class="hm">{_pill(State.DRIFT if report.group_drift(x) else State.OK)}</td>'
        for x in labels
    )
    rows.append(f"<tr><th>{esc(report.grouping.kind)} verdict</th>{verdicts}</tr>")
    sizes = "".join(f'<td class="hm note">{g.rows}</td>' for g in report.groups)
    rows.append(f"<tr><th>current rows</th>{sizes}</tr>")
    kind = esc(report.grouping.kind)
    return (
        f"<h2>columns × {kind}s ({esc(clean(report.grouping.column))})</h2>"
        f'<div class="hm-wrap"><table class="heat"><thead><tr><th>column</th>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table></div>"
    )


def html_page(report: DriftReport) -> bytes:
    """The whole report as one page: verdict, run facts, a summary table, then one card per
    compared column (drifted first)."""
    import datetime as dt

    esc = html.escape
    s = report.settings
    cols = sorted(report.columns, key=lambda c: _ORDER[c.state])
    verdict = _pill(State.DRIFT) if report.drift else _pill(State.OK)
    when = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    head = "".join(
        f"<th>{h}</th>"
        for h in (
            "column",
            "role",
            "state",
            "value",
            "threshold",
            "missing (ref → cur)",
            "new categories",
            "why",
        )
    )
    grouped = report.grouping is not None
    if grouped:
        head = "<th>" + esc(report.group_key) + "</th>" + head
    compared = [c for c in cols if c.histogram is not None]
    if grouped:  # a card per drifted (column, group) only: the heat map shows the rest
        compared = [c for c in compared if c.state is State.DRIFT]
    listed = cols
    if grouped and len(cols) > MAX_ROWS:
        listed = [c for c in cols if c.state not in (State.OK, State.SKIPPED)][:MAX_ROWS]
    schema = "".join(
        f'<p class="hot">schema change: {esc(clean(c.name))}: {esc(clean(c.schema_change))}</p>'
        for c in report.schema_changes
    )
    more = ""
    if len(compared) > MAX_CARDS:
        more = (
            f'<p class="note">Histograms of the first {MAX_CARDS} of {len(compared)} compared '
            "columns; the table above lists every column.</p>"
        )
        compared = compared[:MAX_CARDS]
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>kldiv drift report</title><style>{_CSS}</style></head>
<body><header><h1>kldiv drift report {verdict}</h1>
<p>{esc(_headline(report))} ({report.n_errors} errors,
{report.count(State.SKIPPED)} skipped) · reference {esc(clean(report.reference))} ({report.reference_rows} rows) ·
current {esc(clean(report.current))} ({report.current_rows} rows)</p>
<p>{esc(s.metric)} threshold {number_text(s.threshold)} · {s.bins} {esc(s.binning)} bins · at most
{s.max_categories} categories · epsilon {number_text(s.epsilon)} · missing change above
{100 * s.max_missing_change:.1f} pts · fail-on {esc(s.fail_on)}</p>
<p>run {when} in {report.seconds:.2f} s · kldiv {esc(report.version)} ·
<code>{esc(clean(report.command))}</code></p>{schema}</header>
<main>{heat_map(report)}<table><thead><tr>{head}</tr></thead><tbody>{"".join(_summary_row(c, report) for c in listed)}</tbody></table>{_cut_note(cols, listed)}
<div class="cards">{"".join(_card(c, report) for c in compared)}</div>{more}</main></body></html>
"""
    return html_document(page)


def _in_group(c: ColumnResult) -> str:
    return "" if c.group is None else f" · {html.escape(group_text(c))}"


def _headline(report: DriftReport) -> str:
    if report.grouping is None:
        return f"{report.n_drifted} of {len(report.columns)} columns drifted"
    drifted = report.drifted_groups
    shown = ", ".join(clean(x) for x in drifted[:10]) + (", ..." if len(drifted) > 10 else "")
    kind = report.grouping.kind
    return (
        f"{len(drifted)} of {len(report.groups)} {kind}s drifted{': ' + shown if shown else ''}"
        f" · {report.n_drifted} of {len(report.columns)} checks"
    )


def _cut_note(cols: list[ColumnResult], listed: list[ColumnResult]) -> str:
    if len(listed) == len(cols):
        return ""
    return (
        f'<p class="note">The {len(listed)} of {len(cols)} rows that are not ok or skipped; '
        "the heat map shows every one.</p>"
    )
