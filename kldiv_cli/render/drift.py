"""Drift results for people and for CI: a report (table, plain, JSON, CSV, markdown), a
coloured terminal table, JUnit XML and a self-contained HTML page.

Every name that comes from the data (column names, categories, bin labels) passes
:func:`kldiv_cli.text.clean` (and Rich's escape, ``html.escape``, or XML escaping where it
goes); :func:`~kldiv_cli.render.files.html_document` and
:func:`~kldiv_cli.render.files.xml_document` make the pages' bytes safe whatever the data
holds (no URL, valid Unicode and XML). The HTML page is :mod:`.drift_html`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import IO, Any
from xml.etree import ElementTree as ET

from ..jobs.drift_measures import METRIC_TABLE, P_METRICS
from ..jobs.drift_report import (
    ColumnResult,
    DriftReport,
    Reason,
    Settings,
    State,
)
from ..text import clean, markup
from . import Report
from .files import xml_document

_STYLE = {
    State.DRIFT: "bold red",
    State.ERROR: "yellow",
    State.WARNING: "yellow",
    State.WEAK: "magenta",
    State.WARN: "yellow",
    State.OK: "green",
    State.SKIPPED: "dim",
}


def number_text(value: Any) -> str:
    """A number to 4 significant digits (``-`` for none, ``nan``, ``inf``)."""
    if value is None:
        return "-"
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return f"{value:.4g}"
    return str(value)


def share_text(share: float) -> str:
    """A share as a percentage to one decimal."""
    return f"{share:.1%}"


def missing_text(c: ColumnResult) -> str:
    """``0.0% → 10.0% (+10.0 pts)``: the missing share of rows on each side, and the
    change when there is one."""
    m = c.missing
    text = f"{share_text(m.reference_share)} → {share_text(m.current_share)}"
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
            text = f"{c.metric} {number_text(c.value)} > {number_text(c.threshold)}{learned}"
            if c.metric in P_METRICS:
                corrected = (
                    f" ({settings.correction}: {number_text(c.p_adjusted)})"
                    if settings.correction != "none"
                    else ""
                )
                text = f"{c.metric} p-value {number_text(c.value)}{corrected} < alpha {number_text(c.threshold)}"
            if c.top_bins:
                b = c.top_bins[0]
                text += (
                    f", most from {clean(b.label)}: "
                    f"{share_text(b.reference_share)} → {share_text(b.current_share)}"
                )
            parts.append(text)
        elif reason is Reason.MISSING:
            change = 100 * c.missing.change
            parts.append(f"missing {change:+.1f} pts > {100 * settings.max_missing_change:g} pts")
        elif reason is Reason.NEW_CATEGORIES:
            parts.append(
                f"new categories {share_text(c.new_category_share or 0)} > "
                f"{share_text(settings.max_new_category_share or 0)}"
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
        parts.append(
            f"warn: {c.metric} {number_text(c.value)} > warn threshold {number_text(c.warn_threshold)}"
        )
    if c.weak:
        parts.append(noise_text(c))
    return "; ".join(parts)


def noise_text(c: ColumnResult) -> str:
    """Why a column's verdict is weak: its threshold is below what noise reaches."""
    needs = f"; needs ≈ {c.rows_needed} rows per side" if c.rows_needed else ""
    sizes = f"{c.n_reference}/{c.n_current} values"
    if c.state is State.WEAK:
        head = (
            f"{c.metric} {number_text(c.value)} > {number_text(c.threshold)} but within the noise bound "
            f"{number_text(c.noise_bound)} of {sizes}: too few to tell"
        )
    else:
        head = f"weak: noise reaches {number_text(c.noise_bound)} with {sizes}, above the threshold"
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
    if report.grouping is not None and report.ungrouped_rows:
        count, first = report.unparsed
        column = clean(report.grouping.column)
        why = f"no value in {column!r}"
        if count:
            text = f"text that is not a date/time in {column!r}, such as {first}"
            why = text if count == report.ungrouped_rows else f"{why}, or for {count}: {text}"
        lines.append(
            f"{report.ungrouped_rows} current row(s) have no {report.grouping.kind} "
            f"({why}): left out of every one"
        )
    new = report.new_groups
    if new:
        shown = ", ".join(f"{g.label} ({g.rows} rows)" for g in new[:5])
        lines.append(
            f"{len(new)} segment(s) only in the current data, not compared (no reference rows): "
            f"{shown}{', ...' if len(new) > 5 else ''}; "
            "drop --reference-segment to compare them with the whole reference"
        )
    weak = _weak_warning(report)
    return lines + ([weak] if weak else [])


def _weak_warning(report: DriftReport) -> str | None:
    """The one line that says which columns cannot tell noise from drift, if any."""
    weak = report.weak
    if not weak:
        return None
    names = list(dict.fromkeys(c.name for c in weak))
    where = ""
    if report.grouping is not None:
        groups = len({c.group for c in weak})
        where = f" in {groups} {report.grouping.kind}(s)"
    return (
        f"{len(names)} column(s) ({_listing(names)}){where} have thresholds below "
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

    key = report.group_key
    grouped: dict[str, Sequence[Any]] = {key: [group_text(c) for c in cols]} if key else {}
    table: dict[str, Sequence[Any]] = {
        **grouped,
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
        where = f"{plain_group(c)} " if key else ""
        plain.append(
            f"{c.state.value} {number_text(c.value)} {reasons_text(c) or '-'} {where}{clean(c.name)}"
        )
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


def group_text(c: ColumnResult) -> str:
    """The window or segment of a row (``(all)`` for a row of no group: a schema change)."""
    return "(all)" if c.group is None else clean(c.group)


def plain_group(c: ColumnResult) -> str:
    """:func:`group_text` as one field of a plain line: white space as ``_``."""
    return "_".join(group_text(c).split()) or "-"


def title(report: DriftReport) -> str:
    verdict = "DRIFT" if report.drift else "no drift"
    skipped = report.count(State.SKIPPED)
    weak = report.count(State.WEAK)
    warn = report.count(State.WARN)
    schema = len(report.schema_changes)
    if report.grouping is None:
        what = f"{report.n_drifted} of {len(report.columns)} columns drifted"
    else:
        kind = report.grouping.kind
        drifted = report.drifted_groups
        names = f": {_listing(drifted)}" if drifted else ""
        what = (
            f"{len(drifted)} of {len(report.groups)} {kind}s drifted{names}; "
            f"{report.n_drifted} of {len(report.columns)} checks"
        )
    return (
        f"kldiv drift: {verdict} ({what}"
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
    key = report.group_key
    for name in ([key] if key else []) + [
        "column",
        "role",
        "state",
        "value",
        "missing",
        "new categories",
        "why",
    ]:
        table.add_column(name, overflow="fold")
    s = report.settings
    for c in report.columns:
        table.add_row(
            *([markup(group_text(c))] if key else []),
            markup(c.name),
            c.role.value,
            Text(c.state.value, style=_STYLE[c.state]),
            number_text(c.value),
            Text(missing_text(c), style="red" if Reason.MISSING in c.reasons else ""),
            Text(new_text(c, 3), style="red" if c.n_new_categories else ""),
            Text(explain(c, s)),
        )
    console.print(table)


# ----------------------------------------------------------------- JUnit


def junit_xml(report: DriftReport) -> bytes:
    """One testcase per column: drifted columns fail, uncomparable ones are errors,
    identifiers, date/times and skipped columns are skipped (with the reason). Grouped
    rows (``--window``, ``--segment``) make one testsuite per window or segment."""
    suites: list[tuple[str, Sequence[ColumnResult]]] = [("kldiv drift", report.columns)]
    if report.grouping is not None:
        kind = report.grouping.kind
        suites = [(f"kldiv drift {kind} {g.label}", report.rows_of(g.label)) for g in report.groups]
        lone = report.rows_of(None)
        if lone:
            suites.append(("kldiv drift (all)", lone))
    root = ET.Element("testsuites", {"name": "kldiv"})
    totals = {"tests": 0, "failures": 0, "errors": 0}
    for name, rows in suites:
        suite = _suite(name, rows, report)
        root.append(suite)
        for key in totals:
            totals[key] += int(suite.get(key, "0"))
    root.attrib.update({k: str(v) for k, v in totals.items()})
    return xml_document(root)


def _suite(name: str, cols: Sequence[ColumnResult], report: DriftReport) -> ET.Element:
    s = report.settings
    states = [c.state for c in cols]
    counts = {
        "tests": str(len(cols)),
        "failures": str(states.count(State.DRIFT)),
        "errors": str(states.count(State.ERROR)),
        "skipped": str(states.count(State.SKIPPED) + states.count(State.WARNING)),
    }
    seconds = report.seconds if name == "kldiv drift" else 0.0
    suite = ET.Element("testsuite", {"name": clean(name), "time": f"{seconds:.3f}", **counts})
    for c in cols:
        case = ET.SubElement(suite, "testcase", classname="kldiv.drift", name=clean(c.name))
        why = explain(c, s)
        if c.state is State.DRIFT:
            details = [why] + [
                f"bin {clean(b.label)}: reference {b.reference_share:.3%}, current "
                f"{b.current_share:.3%}, contribution {number_text(b.contribution)}"
                for b in c.top_bins
            ]
            ET.SubElement(case, "failure", message=why, type=reasons_text(c)).text = "\n".join(
                details
            )
        elif c.state is State.ERROR:
            ET.SubElement(case, "error", message=clean(c.error)).text = clean(c.error)
        elif c.state in (State.SKIPPED, State.WARNING):
            ET.SubElement(case, "skipped", message=why)
        ET.SubElement(case, "system-out").text = "\n".join(_case_lines(c, why))
    return suite


def _case_lines(c: ColumnResult, why: str) -> list[str]:
    out = [f"role={c.role.value} state={c.state.value}"]
    if c.state in (State.WEAK, State.WARN, State.OK) and why:
        out.append(why)
    if c.measures is not None:
        shown = ((key, measure(c, key)) for key in measure_columns())
        out.append(
            " ".join(f"{key}={number_text(value)}" for key, value in shown if value is not None)
            + f" (threshold {number_text(c.threshold)}, {c.threshold_origin}, on {c.metric})"
        )
    out.append(f"missing {missing_text(c)}")
    if c.n_new_categories:
        out.append(f"new categories {share_text(c.new_category_share or 0)}: {new_text(c)}")
    return out
