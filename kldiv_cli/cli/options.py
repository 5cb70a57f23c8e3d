"""Options declared once and shared by the commands, and the output helpers they share."""

import os
import sys
from typing import Annotated

import typer

from .boundary import Messages

FormatOpt = Annotated[
    str,
    typer.Option(
        "--format",
        "-f",
        metavar="[auto|plain|json|csv|table|markdown]",
        help="Output format. auto: a table on a terminal, plain (bare numbers) otherwise.",
    ),
]
QuietOpt = Annotated[
    bool, typer.Option("--quiet", "-q", help="Print nothing on stderr except errors.")
]
NoColorOpt = Annotated[
    bool, typer.Option("--no-color", help="No colour (also NO_COLOR=1; FORCE_COLOR=1 forces it).")
]
DebugOpt = Annotated[bool, typer.Option("--debug", help="Show a traceback on errors.")]
MissingOpt = Annotated[
    str,
    typer.Option(
        "--missing",
        metavar="[error|nan]",
        help="Missing cells in CSV/Parquet: an error naming the first one (default), or NaN.",
    ),
]
DelimiterOpt = Annotated[
    str | None,
    typer.Option("--delimiter", help="CSV delimiter (default ',' for .csv, tab for .tsv)."),
]

BinsOpt = Annotated[
    int, typer.Option("--bins", help="Bins per numeric column, from the reference only.")
]
BinningOpt = Annotated[
    str,
    typer.Option("--binning", metavar="[quantile|uniform]", help="Quantile or equal-width bins."),
]
ColumnsOpt = Annotated[
    str | None,
    typer.Option(
        "--columns", metavar="COLS", help="Columns to check: names, globs or 0-based indices."
    ),
]


def _color_choice(no_color: bool) -> bool | None:
    if no_color or os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb":
        return False
    if os.environ.get("FORCE_COLOR"):
        return True
    return None


def _emit(report, fmt: str, output: str | None, no_color: bool) -> None:
    from ..render import print_report, resolve_format

    if output and output != "-":
        from ..io.writers import write_report

        write_report(output, report)
        Messages.note(f"wrote {output}")
        return
    resolved = resolve_format(fmt, sys.stdout.isatty())
    print_report(report, resolved, sys.stdout, _color_choice(no_color))
    sys.stdout.flush()


class _progress:
    """A Rich progress bar on stderr, for people: only on a terminal, never with --quiet,
    and only once a job turns out to be large."""

    MIN_ROWS_SHOWN = 200_000

    def __init__(self, quiet: bool) -> None:
        self.enabled = not quiet and sys.stderr.isatty()
        self.bar = None

    def __enter__(self):
        return self.update if self.enabled else None

    def update(self, done: int, total: int) -> None:
        if self.bar is None:
            if 0 <= total < self.MIN_ROWS_SHOWN or done >= total >= 0:
                return
            from rich.console import Console
            from rich.progress import Progress

            self.bar = Progress(console=Console(stderr=True), transient=True)
            self.bar.start()
            self.task = self.bar.add_task("rows", total=total if total >= 0 else None)
        self.bar.update(self.task, completed=done)

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.stop()


def _read_stdin_if_needed(*paths: str) -> bytes | None:
    if "-" not in paths:
        return None
    from ..io.sources import read_stdin

    return read_stdin()
