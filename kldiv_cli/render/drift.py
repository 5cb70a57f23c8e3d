"""Drift results as a report (table, plain, JSON...) and as files for CI: JUnit XML and a
self-contained HTML page.

The HTML page has no scripts, fonts or links to anything outside it: the
histograms are inline SVG, the styles are inline CSS.
"""

from __future__ import annotations

import html
import math
from typing import Any
from xml.etree import ElementTree as ET

from . import Report, format_number


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return f"{value:.4g}"
    return str(value)


def junit_xml(result: dict) -> bytes:
    """One testcase per column: drifted columns fail, columns that could not be
    compared are errors."""
    columns = result["columns"]
    suite = ET.Element(
        "testsuite",
        name="kldiv drift",
        tests=str(len(columns)),
        failures=str(sum(1 for c in columns if c["drift"])),
        errors=str(sum(1 for c in columns if c.get("error"))),
        skipped="0",
    )
    for c in columns:
        case = ET.SubElement(suite, "testcase", classname="kldiv.drift", name=str(c["name"]))
        if c.get("error"):
            ET.SubElement(case, "error", message=c["error"]).text = c["error"]
        elif c["drift"]:
            message = f"{c['metric']} {_fmt(c['value'])} > threshold {_fmt(c['threshold'])}"
            details = [message] + [
                f"bin {b['bin']}: reference {b['reference_share']:.3%}, current "
                f"{b['current_share']:.3%}, contribution {_fmt(b['contribution'])}"
                for b in c.get("top_bins", [])
            ]
            ET.SubElement(case, "failure", message=message).text = "\n".join(details)
        out = (
            f"{c['metric']}={_fmt(c.get('value'))} kl={_fmt(c.get('kl'))} psi={_fmt(c.get('psi'))}"
        )
        ET.SubElement(case, "system-out").text = out
    root = ET.Element(
        "testsuites",
        name="kldiv",
        tests=suite.get("tests"),
        failures=suite.get("failures"),
        errors=suite.get("errors"),
    )
    root.append(suite)
    ET.indent(root)
    return b'<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="utf-8") + b"\n"


_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;background:#f6f7f9;color:#1d2330}
header{background:#1d2330;color:#fff;padding:20px 32px}
header h1{margin:0;font-size:20px;font-weight:600}
header p{margin:4px 0 0;color:#b8c0d0}
main{padding:24px 32px;max-width:1200px}
.verdict{display:inline-block;padding:4px 12px;border-radius:999px;font-weight:600}
.ok{background:#dcf5e4;color:#17663a}.bad{background:#fde2e1;color:#a4161a}.err{background:#fff1cc;color:#7a5200}
table{border-collapse:collapse;width:100%;background:#fff;border-radius:8px;overflow:hidden;
box-shadow:0 1px 2px rgba(0,0,0,.06)}
th,td{padding:8px 12px;text-align:left;border-bottom:1px solid #eceef2;font-variant-numeric:tabular-nums}
th{background:#fafbfc;font-weight:600;color:#4a5468}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(360px,1fr));gap:16px;margin-top:24px}
.card{background:#fff;border-radius:8px;padding:16px;box-shadow:0 1px 2px rgba(0,0,0,.06);border-top:3px solid #d7dbe3}
.card.state-drift{border-top-color:#d6453d}.card.state-error{border-top-color:#e0a800}
.card h3{margin:0 0 4px;font-size:15px}.card .meta{color:#5b6578;font-size:12px;margin-bottom:8px}
.legend span{display:inline-block;width:10px;height:10px;border-radius:2px;margin:0 4px 0 10px}
.note{color:#7a5200;font-size:12px}
"""
_REF, _CUR = "#5b8def", "#f28b30"


def _short(label: str) -> str:
    """Axis text: a numeric bin by its lower edge ("<e" for the first), a category as is."""
    if label.startswith("[") and label.endswith(")") and ", " in label:
        low, high = (f"{float(v):.3g}" for v in label[1:-1].split(", "))
        return f"<{high}" if low == "-inf" else low
    return label if len(label) <= 12 else label[:11] + "…"


def _svg_histogram(hist: dict) -> str:
    """Reference and current shares per bin, side by side, as inline SVG."""
    labels, ref, cur = hist["bins"], hist["reference"], hist["current"]
    n_ref, n_cur = sum(ref) or 1, sum(cur) or 1
    shares = [(r / n_ref, c / n_cur) for r, c in zip(ref, cur)]
    top = max(max(s) for s in shares) or 1
    width, height, pad, base = 360, 200, 40, 140
    slot = (width - pad) / max(len(labels), 1)
    bar = max(2.0, slot * 0.38)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
        f'width="100%" role="img" aria-label="histogram">',
        f'<line x1="{pad}" y1="{base}" x2="{width}" y2="{base}" stroke="#c9ced8"/>',
        f'<text x="{pad - 4}" y="14" font-size="10" text-anchor="end" fill="#5b6578">{top:.0%}</text>',
    ]
    for i, (label, (r, c)) in enumerate(zip(labels, shares)):
        x = pad + i * slot + slot * 0.1
        for j, (share, color, n) in enumerate(((r, _REF, ref[i]), (c, _CUR, cur[i]))):
            h = (base - 10) * share / top
            tip = html.escape(f"{label}: {'reference' if j == 0 else 'current'} {share:.2%} ({n})")
            parts.append(
                f'<rect x="{x + j * bar:.1f}" y="{base - h:.1f}" width="{bar:.1f}" height="{h:.1f}" '
                f'fill="{color}" rx="1"><title>{tip}</title></rect>'
            )
        if len(labels) <= 12:
            short = html.escape(_short(label))
            parts.append(
                f'<text x="{x + bar:.1f}" y="{base + 12}" font-size="8" fill="#5b6578" '
                f'text-anchor="end" transform="rotate(-35 {x + bar:.1f} {base + 12})">{short}</text>'
            )
    parts.append("</svg>")
    return "".join(parts)


def html_page(result: dict, reference: str, current: str) -> bytes:
    esc = html.escape
    columns = result["columns"]
    verdict = (
        '<span class="verdict bad">drift</span>'
        if result["drift"]
        else '<span class="verdict ok">no drift</span>'
    )
    rows = []
    for c in columns:
        state = (
            '<span class="verdict err">error</span>'
            if c.get("error")
            else '<span class="verdict bad">drift</span>'
            if c["drift"]
            else '<span class="verdict ok">ok</span>'
        )
        rows.append(
            "<tr>"
            + "".join(
                f"<td>{v}</td>"
                for v in (
                    esc(str(c["name"])),
                    esc(c["kind"]),
                    state,
                    _fmt(c.get("value")),
                    _fmt(c["threshold"]),
                    _fmt(c.get("kl")),
                    _fmt(c.get("kl_reverse")),
                    _fmt(c.get("psi")),
                    _fmt(c.get("js")),
                    _fmt(c.get("n_reference")),
                    _fmt(c.get("n_current")),
                )
            )
            + "</tr>"
        )
    cards = []
    legend = (
        f'<div class="meta legend"><span style="background:{_REF};margin-left:0"></span>reference'
        f'<span style="background:{_CUR}"></span>current</div>'
    )
    for c in columns:
        state = "error" if c.get("error") else "drift" if c["drift"] else "ok"
        if c.get("error"):
            body = f'<p class="note">{esc(c["error"])}</p>'
        else:
            note = f'<p class="note">{esc(c["warning"])}</p>' if c.get("warning") else ""
            body = legend + _svg_histogram(c["histogram"]) + note
        nan = ""
        if c.get("nan_share_reference") or c.get("nan_share_current"):
            nan = f" · NaN {c.get('nan_share_reference') or 0:.1%} → {c.get('nan_share_current') or 0:.1%}"
        cards.append(
            f'<section class="card state-{state}"><h3>{esc(str(c["name"]))}</h3>'
            f'<div class="meta">{esc(c["kind"])} · {esc(c["metric"])} {_fmt(c.get("value"))} '
            f"(threshold {_fmt(c['threshold'])}){nan}</div>{body}</section>"
        )
    head = (
        "<th>column</th><th>kind</th><th>state</th><th>value</th><th>threshold</th><th>KL</th>"
        "<th>reverse KL</th><th>PSI</th><th>JS</th><th>n ref</th><th>n cur</th>"
    )
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>kldiv drift report</title><style>{_CSS}</style></head>
<body><header><h1>kldiv drift report {verdict}</h1>
<p>reference {esc(reference)} · current {esc(current)} · metric {esc(result["metric"])} ·
{result["n_drifted"]} of {result["n_columns"]} columns drifted · {result["bins"]} {esc(result["binning"])} bins ·
epsilon {_fmt(result["epsilon"])}</p></header>
<main><table><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>
<div class="cards">{"".join(cards)}</div></main></body></html>
"""
    return page.encode()


def drift_report(result: dict) -> Report:
    columns = result["columns"]
    verdict = "DRIFT" if result["drift"] else "no drift"
    title = (
        f"kldiv drift: {verdict} ({result['n_drifted']} of {result['n_columns']} columns, "
        f"{result['metric']}, fail-on {result['fail_on']})"
    )

    def state(c: dict) -> str:
        return "error" if c.get("error") else "drift" if c["drift"] else "ok"

    def note(c: dict) -> str:
        if c.get("error"):
            return c["error"]
        if c["drift"] and c.get("top_bins"):
            b = c["top_bins"][0]
            return f"most from {b['bin']}: {b['reference_share']:.1%} -> {b['current_share']:.1%}"
        return c.get("warning", "")

    table = {
        "column": [c["name"] for c in columns],
        "kind": [c["kind"] for c in columns],
        "state": [state(c) for c in columns],
        "value": [c.get("value") for c in columns],
        "threshold": [c["threshold"] for c in columns],
        "kl": [c.get("kl") for c in columns],
        "kl_reverse": [c.get("kl_reverse") for c in columns],
        "psi": [c.get("psi") for c in columns],
        "js": [c.get("js") for c in columns],
        "n_reference": [c.get("n_reference") for c in columns],
        "n_current": [c.get("n_current") for c in columns],
        "note": [note(c) for c in columns],
    }
    plain = [
        f"{c['name']}\t{state(c)}\t{format_number(c.get('value')) if c.get('value') is not None else '-'}"
        for c in columns
    ]
    notes = [f"{c['name']}: {c['warning']}" for c in columns if c.get("warning")]
    return Report(
        title=title,
        document=result,
        table=table,
        plain=plain,
        notes=notes,
        digits=4,
        terminal_columns=["column", "kind", "state", "value", "threshold", "psi", "note"],
    )
