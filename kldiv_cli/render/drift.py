"""Drift results for people and for CI: a report (table, plain, JSON, CSV, markdown), a
coloured terminal table, JUnit XML and a self-contained HTML page.

Every name that comes from the data (column names, categories, bin labels) passes
:func:`kldiv_cli.text.clean` (and Rich's escape, ``html.escape``, or XML escaping where it
goes); :func:`~kldiv_cli.render.files.html_document` and
:func:`~kldiv_cli.render.files.xml_document` make the pages' bytes safe whatever the data
holds (no URL, valid Unicode and XML). The HTML page has no scripts, fonts or links:
histograms are inline SVG with at most :data:`MAX_BARS` bins each, for at most
:data:`MAX_CARDS` columns, so its size does not grow with the rows or the categories.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from typing import IO, Any
from xml.etree import ElementTree as ET

from ..jobs.drift_measures import METRIC_TABLE, P_METRICS
from ..jobs.drift_report import (
    ColumnResult,
    DriftReport,
    Histogram,
    Reason,
    Settings,
    State,
)
from ..text import clean, markup
from . import Report
from .files import html_document, xml_document

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
_STYLE = {
    State.DRIFT: "bold red",
    State.ERROR: "yellow",
    State.WARNING: "yellow",
    State.WEAK: "magenta",
    State.WARN: "yellow",
    State.OK: "green",
    State.SKIPPED: "dim",
}


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return f"{value:.4g}"
    return str(value)


def _pct(share: float) -> str:
    return f"{share:.1%}"


def missing_text(c: ColumnResult) -> str:
    """``0.0% → 10.0% (+10.0 pts)``: the missing share of rows on each side, and the
    change when there is one."""
    m = c.missing
    text = f"{_pct(m.reference_share)} → {_pct(m.current_share)}"
    return text + (f" ({100 * m.change:+.1f} pts)" if m.change else "")


def new_text(c: ColumnResult, limit: int = 10) -> str:
    """``smart_tv (1203), vr (2)``: new categories by name, with counts."""
    shown = ", ".join(f"{clean(n.value)} ({n.count})" for n in c.new_categories[:limit])
    more = c.n_new_categories - min(limit, len(c.new_categories))
    return shown + (f", +{more} more" if more > 0 else "")


def reasons_text(c: ColumnResult) -> str:
    return ",".join(r.value for r in (*c.reasons, *c.warnings))


def explain(c: ColumnResult, settings: Settings) -> str:
    """One sentence per reason, or why the column was not compared."""
    parts = []
    for reason in c.reasons:
        if reason is Reason.DISTRIBUTION:
            learned = " (learned)" if c.threshold_origin == "learned" else ""
            text = f"{c.metric} {_fmt(c.value)} > {_fmt(c.threshold)}{learned}"
            if c.metric in P_METRICS:
                corrected = (
                    f" ({settings.correction}: {_fmt(c.p_adjusted)})"
                    if settings.correction != "none"
                    else ""
                )
                text = f"{c.metric} p-value {_fmt(c.value)}{corrected} < alpha {_fmt(c.threshold)}"
            if c.top_bins:
                b = c.top_bins[0]
                text += (
                    f", most from {clean(b.label)}: "
                    f"{_pct(b.reference_share)} → {_pct(b.current_share)}"
                )
            parts.append(text)
        elif reason is Reason.MISSING:
            change = 100 * c.missing.change
            parts.append(f"missing {change:+.1f} pts > {100 * settings.max_missing_change:g} pts")
        elif reason is Reason.NEW_CATEGORIES:
            parts.append(
                f"new categories {_pct(c.new_category_share or 0)} > "
                f"{_pct(settings.max_new_category_share or 0)}"
            )
    if c.missing_weak:
        m = c.missing
        parts.append(
            f"missing {100 * m.change:+.1f} pts > {100 * settings.max_missing_change:g} pts but "
            f"within the noise bound {100 * (c.missing_bound or 0):.1f} pts of "
            f"{m.reference_rows}/{m.current_rows} rows: too few to tell"
        )
    if c.schema_change:
        warned = " (--schema warn)" if c.warnings else ""
        parts.append(f"schema change{warned}: {clean(c.schema_change)}")
    if c.error:
        parts.append(clean(c.error))
    if c.skip_reason and c.state is not State.OK:
        parts.append(clean(c.skip_reason))
    if c.state is State.WARN:
        parts.append(f"warn: {c.metric} {_fmt(c.value)} > warn threshold {_fmt(c.warn_threshold)}")
    if c.weak:
        parts.append(noise_text(c))
    return "; ".join(parts)


def noise_text(c: ColumnResult) -> str:
    """Why a column's verdict is weak: its threshold is below what noise reaches."""
    needs = f"; needs ≈ {c.rows_needed} rows per side" if c.rows_needed else ""
    sizes = f"{c.n_reference}/{c.n_current} values"
    if c.state is State.WEAK:
        head = (
            f"{c.metric} {_fmt(c.value)} > {_fmt(c.threshold)} but within the noise bound "
            f"{_fmt(c.noise_bound)} of {sizes}: too few to tell"
        )
    else:
        head = f"weak: noise reaches {_fmt(c.noise_bound)} with {sizes}, above the threshold"
    return head + needs


def _listing(names: Sequence[str]) -> str:
    return ", ".join(clean(n) for n in names[:5]) + (", ..." if len(names) > 5 else "")


def run_warnings(report: DriftReport) -> list[str]:
    """What the run says on stderr besides the verdict: each kind of warning once."""
    lines = []
    warned = [c.name for c in report.schema_changes if c.warnings]
    if warned:
        lines.append(
            f"{len(warned)} schema change(s), not failing (--schema warn): {_listing(warned)}"
        )
    if report.unknown_thresholds:
        lines.append(
            f"--thresholds names column(s) not checked: {_listing(report.unknown_thresholds)}"
        )
    weak = _weak_warning(report)
    return lines + ([weak] if weak else [])


def _weak_warning(report: DriftReport) -> str | None:
    """The one line that says which columns cannot tell noise from drift, if any."""
    weak = report.weak
    if not weak:
        return None
    return (
        f"{len(weak)} column(s) ({_listing([c.name for c in weak])}) have thresholds below "
        "their noise bound: too few values to tell a change of that size from chance, so "
        "only a larger one drifts (each says how many rows it needs)"
    )


def measure_columns() -> list[str]:
    """The report's columns of measures, from the metric table: each metric, and a test's
    p-value after its statistic (``ks``, ``ks_p_value``)."""
    return [k for m in METRIC_TABLE for k in (m.name, *((f"{m.name}_p_value",) if m.test else ()))]


def measure(c: ColumnResult, key: str) -> float | None:
    """A column's measure by report column (:func:`measure_columns`), None when not computed."""
    if c.measures is None:
        return None
    if key.endswith("_p_value"):
        test = c.measures.tests.get(key[: -len("_p_value")])
        return None if test is None else float(test.p_value)
    value = c.measures.statistic(key)
    return None if value is None else float(value)


def drift_report(report: DriftReport) -> Report:
    """The report for ``--format`` plain, json, csv and markdown (and ``-o``)."""
    cols = report.columns
    s = report.settings

    table: dict[str, Sequence[Any]] = {
        "column": [clean(c.name) for c in cols],
        "role": [c.role.value for c in cols],
        "state": [c.state.value for c in cols],
        "reasons": [reasons_text(c) for c in cols],
        "value": [c.value for c in cols],
        "threshold": [c.threshold for c in cols],
        "threshold_origin": [c.threshold_origin for c in cols],
        "warn_threshold": [c.warn_threshold for c in cols],
        **{key: [measure(c, key) for c in cols] for key in measure_columns()},
        "n_reference": [c.n_reference for c in cols],
        "n_current": [c.n_current for c in cols],
        "missing_reference": [c.missing.reference_share for c in cols],
        "missing_current": [c.missing.current_share for c in cols],
        "missing_change": [c.missing.change for c in cols],
        "new_category_share": [c.new_category_share for c in cols],
        "new_categories": [new_text(c) for c in cols],
        "noise_bound": [c.noise_bound for c in cols],
        "rows_needed": [c.rows_needed for c in cols],
        "note": [explain(c, s) for c in cols],
    }
    plain = []
    for c in cols:
        plain.append(f"{c.state.value} {_fmt(c.value)} {reasons_text(c) or '-'} {clean(c.name)}")
        why = explain(c, s)
        if why:  # the reason, on an indented line: the name stays the line's last field
            plain.append(f"  {why}")
    return Report(
        title=title(report),
        document=report.to_json(),
        table=table,
        plain=plain,
        digits=4,
    )


def title(report: DriftReport) -> str:
    verdict = "DRIFT" if report.drift else "no drift"
    skipped = report.count(State.SKIPPED)
    weak = report.count(State.WEAK)
    warn = report.count(State.WARN)
    schema = len(report.schema_changes)
    return (
        f"kldiv drift: {verdict} ({report.n_drifted} of {len(report.columns)} columns drifted"
        f"{f', {schema} schema changes' if schema else ''}"
        f"{f', {weak} weak' if weak else ''}"
        f"{f', {warn} warn' if warn else ''}"
        f"{f', {skipped} skipped' if skipped else ''}; {report.settings.metric}, "
        f"fail-on {report.settings.fail_on})"
    )


def print_table(report: DriftReport, stream: IO[str], color: bool | None) -> None:
    """A terminal table: the state in colour (drift red, ok green) unless colour is off."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    console = Console(file=stream, no_color=color is False, force_terminal=color or None)
    style = "bold red" if report.drift else "bold green"
    table = Table(title=Text(title(report), style=style), title_justify="left")
    for name in ("column", "role", "state", "value", "missing", "new categories", "why"):
        table.add_column(name, overflow="fold")
    s = report.settings
    for c in report.columns:
        table.add_row(
            markup(c.name),
            c.role.value,
            Text(c.state.value, style=_STYLE[c.state]),
            _fmt(c.value),
            Text(missing_text(c), style="red" if Reason.MISSING in c.reasons else ""),
            Text(new_text(c, 3), style="red" if c.n_new_categories else ""),
            Text(explain(c, s)),
        )
    console.print(table)


# ----------------------------------------------------------------- JUnit


def junit_xml(report: DriftReport) -> bytes:
    """One testcase per column: drifted columns fail, uncomparable ones are errors,
    identifiers, date/times and skipped columns are skipped (with the reason)."""
    cols = report.columns
    s = report.settings
    counts = {
        "tests": str(len(cols)),
        "failures": str(report.n_drifted),
        "errors": str(report.n_errors),
        "skipped": str(report.count(State.SKIPPED) + report.count(State.WARNING)),
    }
    suite = ET.Element(
        "testsuite", {"name": "kldiv drift", "time": f"{report.seconds:.3f}", **counts}
    )
    for c in cols:
        case = ET.SubElement(suite, "testcase", classname="kldiv.drift", name=clean(c.name))
        why = explain(c, s)
        if c.state is State.DRIFT:
            details = [why] + [
                f"bin {clean(b.label)}: reference {b.reference_share:.3%}, current "
                f"{b.current_share:.3%}, contribution {_fmt(b.contribution)}"
                for b in c.top_bins
            ]
            ET.SubElement(case, "failure", message=why, type=reasons_text(c)).text = "\n".join(
                details
            )
        elif c.state is State.ERROR:
            ET.SubElement(case, "error", message=clean(c.error)).text = clean(c.error)
        elif c.state in (State.SKIPPED, State.WARNING):
            ET.SubElement(case, "skipped", message=why)
        out = [f"role={c.role.value} state={c.state.value}"]
        if c.state in (State.WEAK, State.WARN, State.OK) and why:
            out.append(why)
        if c.measures is not None:
            shown = ((key, measure(c, key)) for key in measure_columns())
            out.append(
                " ".join(f"{key}={_fmt(value)}" for key, value in shown if value is not None)
                + f" (threshold {_fmt(c.threshold)}, {c.threshold_origin}, on {c.metric})"
            )
        out.append(f"missing {missing_text(c)}")
        if c.n_new_categories:
            out.append(f"new categories {_pct(c.new_category_share or 0)}: {new_text(c)}")
        ET.SubElement(case, "system-out").text = "\n".join(out)
    root = ET.Element(
        "testsuites", {"name": "kldiv", **{k: v for k, v in counts.items() if k != "skipped"}}
    )
    root.append(suite)
    return xml_document(root)


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
    cells = [
        f"<td>{esc(clean(c.name))}</td>",
        f"<td>{c.role.value}</td>",
        f"<td>{_pill(c.state)}</td>",
        f'<td class="num">{_fmt(c.value)}</td>',
        f'<td class="num">{_fmt(c.threshold) if c.role.compared else "-"}</td>',
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
        share = _pct(c.new_category_share or 0)
        flags.append((f"New categories ({share} of current values): {esc(new_text(c))}", True))
    if c.outside_range_share and c.outside_range_share >= 0.001:
        share = _pct(c.outside_range_share)
        flags.append((f"{share} of current values outside the reference's range", False))
    flag_html = "".join(
        f'<div class="{"flag" if hot else "meta"}">{text}</div>' for text, hot in flags
    )
    meta = (
        f"{c.role.value} · {esc(c.metric)} {_fmt(c.value)} (threshold {_fmt(c.threshold)}) · "
        f"{c.n_reference} reference and {c.n_current} current values"
    )
    if c.weak:
        meta += f" · noise bound {_fmt(c.noise_bound)}: weak evidence"
    body = ""
    if c.histogram is not None:
        body = (
            f'<div class="meta legend"><span style="background:{_REF};margin-left:0"></span>reference'
            f'<span style="background:{_CUR}"></span>current</div>' + svg_histogram(c.histogram)
        )
    s = report.settings
    why = explain(c, s)
    return (
        f'<section class="card {c.state.value}"><h3>{esc(clean(c.name))} {_pill(c.state)}</h3>'
        f'<div class="meta">{meta}</div>'
        + (f'<div class="meta"><b>{esc(why)}</b></div>' if why else "")
        + flag_html
        + body
        + "</section>"
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
    compared = [c for c in cols if c.histogram is not None]
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
<p>{report.n_drifted} of {len(report.columns)} columns drifted ({report.n_errors} errors,
{report.count(State.SKIPPED)} skipped) · reference {esc(clean(report.reference))} ({report.reference_rows} rows) ·
current {esc(clean(report.current))} ({report.current_rows} rows)</p>
<p>{esc(s.metric)} threshold {_fmt(s.threshold)} · {s.bins} {esc(s.binning)} bins · at most
{s.max_categories} categories · epsilon {_fmt(s.epsilon)} · missing change above
{100 * s.max_missing_change:.1f} pts · fail-on {esc(s.fail_on)}</p>
<p>run {when} in {report.seconds:.2f} s · kldiv {esc(report.version)} ·
<code>{esc(clean(report.command))}</code></p>{schema}</header>
<main><table><thead><tr>{head}</tr></thead><tbody>{"".join(_summary_row(c, report) for c in cols)}</tbody></table>
<div class="cards">{"".join(_card(c, report) for c in compared)}</div>{more}</main></body></html>
"""
    return html_document(page)
