"""Output formats, defined once and shared by every command.

A command builds a :class:`Report` (a JSON document, rows for tables and CSV, and
the bare plain-text lines); this module turns it into text. Rich is imported
only for the ``table`` format.

Names and values from data or paths can hold escape sequences, newlines, Rich markup,
spreadsheet formulas, HTML or Markdown. Every format makes them inert here, once, with
the encoders of :mod:`kldiv_cli.text`: :func:`~kldiv_cli.text.csv_text` for CSV headers
and cells (``=HYPERLINK(...)`` becomes ``'=HYPERLINK(...)``; numbers stay numbers),
:func:`~kldiv_cli.text.markdown_text` for markdown (no HTML, image or link from data),
:func:`~kldiv_cli.text.clean` wrapped in ``rich.text.Text`` (never parsed as markup, so
``[link=...]`` and ``[/]`` are plain text) for the Rich table,
:func:`~kldiv_cli.text.clean_lines` for plain text, and
:func:`~kldiv_cli.text.unicode_safe` for JSON (which escapes controls itself), so its
strings are valid Unicode even for a file name that is not UTF-8.
"""

from __future__ import annotations

import io
import math
import numbers
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Any

from ..text import clean, clean_lines, csv_text, markdown_text, unicode_safe
from ..text import format_number as format_number  # re-exported for the renderers

if TYPE_CHECKING:
    from typing import TypeAlias

    import numpy as np

    #: A table column: a list of cells or a 1-D NumPy array.
    Column: TypeAlias = Sequence[Any] | np.ndarray

OUTPUT_FORMATS: tuple[str, ...] = ("auto", "plain", "json", "csv", "table", "markdown")

#: How JSON carries non-finite numbers (JSON has no NaN or Infinity): as these
#: strings, the convention of protobuf's JSON mapping.
NON_FINITE = {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}


@dataclass
class Report:
    """What a command found, ready for any format.

    ``table`` is columnar (name -> values, NumPy arrays welcome) and feeds the
    csv, markdown, table and Parquet outputs; ``document`` feeds JSON; ``plain``
    is the bare, parseable text, as lines or a function that makes them (a million
    per-row values take seconds to format, and a .npy output never needs them);
    ``array`` (if any) is what a .npy file gets.
    """

    title: str
    document: dict[str, Any]
    table: Mapping[str, Column]
    plain: list[str] | Callable[[], list[str]]
    array: np.ndarray | None = None
    notes: list[str] = field(default_factory=list)
    #: Significant digits for floats in the formats people read (table, markdown);
    #: None keeps every digit. JSON, CSV and plain always keep every digit.
    digits: int | None = None
    #: The columns a terminal table shows (all when None): a screen is narrow.
    terminal_columns: list[str] | None = None

    @property
    def columns(self) -> list[str]:
        return list(self.table)

    @property
    def rows(self) -> Sequence[Sequence[Any]]:
        return list(zip(*self.table.values()))


def as_rows(values: np.ndarray) -> np.ndarray:
    """An array as a 2-D table: its last axis across, everything else down (a 1-D
    array is one column). The one layout of arrays in every output format; an array
    with no columns, e.g. (5, 0), is 5 empty rows."""
    if values.ndim <= 1:
        return values.reshape(-1, 1)
    return values.reshape(math.prod(values.shape[:-1]), values.shape[-1])


def resolve_format(fmt: str, is_terminal: bool) -> str:
    """``auto`` is a table for people (a terminal) and ``plain`` for pipes."""
    if fmt not in OUTPUT_FORMATS:
        from ..errors import UsageError

        raise UsageError(
            f"unknown output format {fmt!r}; choose one of {', '.join(OUTPUT_FORMATS)}"
        )
    if fmt == "auto":
        return "table" if is_terminal else "plain"
    return fmt


def json_safe(value: Any) -> Any:
    """Plain JSON values: NumPy scalars/arrays to Python, non-finite floats to strings,
    lone surrogates in strings (undecodable bytes of a file name) to ``\\xff``."""
    import numpy as np

    if isinstance(value, str):
        return unicode_safe(value)
    if isinstance(value, dict):
        return {unicode_safe(str(k)): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, np.ndarray):
        return json_safe(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return NON_FINITE[repr(value)]
    return value


def to_json(document: dict[str, Any]) -> str:
    import json

    return json.dumps(json_safe(document), indent=2, allow_nan=False) + "\n"


def _cell(value: Any, digits: int | None = None) -> str:
    """A table cell as text: numbers by :func:`format_number`, text made inert."""
    return clean(value) if isinstance(value, str) else format_number(value, digits)


def _csv_cell(value: Any) -> str:
    """A CSV cell: a number as :func:`format_number` writes it (``-0.5`` stays a number),
    anything else through :func:`~kldiv_cli.text.csv_text` (never a formula)."""
    if isinstance(value, numbers.Number):
        return format_number(value)
    return csv_text(value if isinstance(value, str) else format_number(value))


def to_csv(columns: Sequence[str], rows: Iterable[Iterable[Any]], header: bool = True) -> str:
    """RFC 4180 CSV (the csv module's quoting) of encoded names and cells: a name with a
    comma or quote is quoted, one with a newline or ESC is escaped visibly first, one
    that a spreadsheet would run (``=...``, ``+...``, ``-...``, ``@...``) starts with
    ``'``. ``rows`` may be a 2-D array (a streamed block)."""
    import csv

    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    if header:
        writer.writerow([csv_text(c) for c in columns])
    for row in rows:
        writer.writerow([_csv_cell(v) for v in row])
    return buf.getvalue()


def to_markdown(
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
    title: str = "",
    digits: int | None = None,
) -> str:
    def cell(v: Any) -> str:
        return markdown_text(_cell(v, digits))

    lines = [f"### {markdown_text(title)}", ""] if title else []
    lines.append("| " + " | ".join(markdown_text(c) for c in columns) + " |")
    lines.append("|" + "|".join(" --- " for _ in columns) + "|")
    lines.extend("| " + " | ".join(cell(v) for v in row) + " |" for row in rows)
    return "\n".join(lines) + "\n"


def render_text(report: Report, fmt: str) -> str:
    """Every format but ``table`` (which needs a console)."""
    if fmt == "json":
        return to_json(report.document)
    if fmt == "csv":
        return to_csv(report.columns, report.rows)
    if fmt == "markdown":
        return to_markdown(report.columns, report.rows, report.title, report.digits)
    lines = report.plain() if callable(report.plain) else report.plain
    return plain_text(lines)


def plain_text(lines: Sequence[str]) -> str:
    """Lines as text, one per line, every unsafe character escaped: a newline inside a
    line (a column name) is shown as ``\\n`` and cannot start a line of its own."""
    text = "\n".join(lines)
    if text.count("\n") != max(len(lines) - 1, 0):
        text = "\n".join(clean(line) for line in lines)
    else:  # the usual case, a million numbers: one scan of the whole text
        text = clean_lines(text)
    return text + "\n" if lines else ""


def print_report(report: Report, fmt: str, stream: IO[str], color: bool | None) -> None:
    """Write ``report`` to ``stream`` (stdout) in ``fmt`` (already resolved)."""
    if fmt != "table":
        stream.write(render_text(report, fmt))
        return
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    # emoji=False: a column named ":warning:" is shown as typed.
    console = Console(
        file=stream, no_color=color is False, force_terminal=color or None, emoji=False
    )
    # Text objects are never parsed as markup: names show exactly as clean() writes them.
    table = Table(title=Text(clean(report.title)), title_justify="left")
    columns, rows = report.columns, report.rows
    if report.terminal_columns:
        keep = [columns.index(c) for c in report.terminal_columns]
        columns = [columns[i] for i in keep]
        rows = [[row[i] for i in keep] for row in rows]
    if len(rows) == 1 and len(columns) > 2:
        # One record reads better as a list of fields.
        columns, rows = ["field", "value"], list(zip(columns, rows[0]))
    for name in columns:
        table.add_column(Text(clean(name)), justify="left", overflow="fold")
    for row in rows:
        table.add_row(*(Text(_cell(v, report.digits)) for v in row))
    console.print(table)
    for note in report.notes:
        console.print(Text(clean(note), style="dim"))
