"""Options declared once and shared by the commands, and the output helpers they share."""

import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ..errors import ExitCode
from .boundary import Messages, current

if TYPE_CHECKING:
    from ..io.base import ReadOptions
    from ..jobs.slices import Slices
    from ..render import Report

FormatOpt = Annotated[
    str,
    typer.Option(
        "--format",
        "-f",
        metavar="[auto|plain|json|csv|table|markdown]",
        help="Output format. auto: a table on a terminal, plain otherwise (parseable lines: a bare number for a scalar, CSV rows for arrays; see the command's help).",
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

EngineOpt = Annotated[
    str,
    typer.Option(
        "--engine",
        metavar="[local|dask]",
        help="Where the sums run: this process (local), or tasks on a Dask cluster "
        '(pip install "kldiv[dask]", or ".[dask]" from the source); the same bits either way.',
    ),
]


def _not_empty(value: str | None) -> str | None:
    """An option that names something cannot be given as an empty string."""
    if value is not None and not value.strip():
        raise typer.BadParameter("is empty")
    return value


SchedulerOpt = Annotated[
    str | None,
    typer.Option(
        "--scheduler",
        metavar="ADDRESS",
        envvar="DASK_SCHEDULER_ADDRESS",
        callback=_not_empty,
        help="A running Dask scheduler (tcp://HOST:8786); default: a local cluster on 127.0.0.1.",
    ),
]
SchedulerFileOpt = Annotated[
    str | None,
    typer.Option(
        "--scheduler-file",
        metavar="PATH",
        callback=_not_empty,
        help="A Dask scheduler file to connect to.",
    ),
]
TimeoutOpt = Annotated[
    float,
    typer.Option(
        "--timeout",
        metavar="SECONDS",
        help="Seconds to wait for the Dask scheduler to answer and for a worker to join.",
    ),
]
WorkersOpt = Annotated[
    int | None,
    typer.Option("--workers", metavar="N", help="Workers of the local Dask cluster."),
]
StorageOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--storage-option",
        metavar="KEY=VALUE",
        help="For s3://, gs://, abfs://, hdfs:// paths: endpoint, region, anonymous=true... "
        "(repeatable; credentials come from the environment only).",
    ),
]
OutputOpt = Annotated[
    str | None,
    typer.Option(
        "--output",
        "-o",
        metavar="PATH",
        help="Write the result to PATH, atomically; its extension picks the kind "
        "(.npy, .csv, .json, .parquet...; '-': stdout).",
    ),
]
# The gate pair (GateOpt): --fail-above NAME=X and --fail-below NAME=X, parsed by
# kldiv_cli.jobs.gates; a NaN never passes.
FailAboveOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--fail-above",
        metavar="NAME=X",
        help="Exit 1 if the number NAME of -f json (kl.p99, k3, diagnostics.chi2_token...) "
        "is above X or NaN. Repeatable.",
    ),
]
FailBelowOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--fail-below",
        metavar="NAME=X",
        help="Exit 1 if NAME (top1_agreement, diagnostics.ess...) is below X or NaN. Repeatable.",
    ),
]
StrictOpt = Annotated[
    bool,
    typer.Option(
        "--strict",
        help="Treat diagnostics (suspicious data: the warnings) as errors (exit 2).",
    ),
]
ThreadsOpt = Annotated[
    int | None,
    typer.Option("--threads", metavar="N", help="Threads (default: all cores)."),
]
ChunkRowsOpt = Annotated[
    int | None,
    typer.Option(
        "--chunk-rows",
        metavar="N",
        help="Rows per block (default: a few hundred thousand values' worth).",
    ),
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


def read_options(
    fmt: str | None,
    key: str | None,
    columns: str | None,
    delimiter: str | None,
    missing: str,
    *,
    key_option: str | None,
    format_option: str | None,
    columns_option: str | None = None,
    booleans: bool = False,
) -> "ReadOptions":
    """One input's :class:`~kldiv_cli.io.base.ReadOptions`, with the command's own names of
    its key, format and columns options (the ones hints name; None: the command has none)."""
    from ..io.base import ReadOptions

    return ReadOptions(
        fmt,
        key,
        columns,
        delimiter,
        missing,
        booleans=booleans,
        key_option=key_option,
        format_option=format_option,
        columns_option=columns_option,
    )


def emit(report: "Report", fmt: str, output: str | None, no_color: bool = False) -> None:
    """Render ``report`` to stdout in ``fmt``, or write it to the file ``output``."""
    from ..render import print_report, resolve_format

    if output and output != "-":
        from ..render.files import write_report

        write_report(output, report, fmt)
        Messages.note(f"wrote {output}")
        return
    env = current()
    env.no_color = env.no_color or no_color
    # Into the command's held stdout: the boundary writes it when the command ends.
    print_report(report, resolve_format(fmt, env.stdout_isatty), env.stdout, env.color)


def emit_with_notes(report: "Report", fmt: str, output: str | None, no_color: bool) -> None:
    """:func:`emit`, and the report's notes (diagnostics) on stderr wherever
    the output does not carry them: only a terminal table prints them and JSON holds
    their numbers."""
    from ..render import resolve_format

    emit(report, fmt, output, no_color)
    to_file = bool(output and output != "-")
    if to_file or resolve_format(fmt, current().stdout_isatty) not in ("table", "json"):
        for note in report.notes:
            Messages.note(note)


def exit_if_failed(text: str | None) -> None:
    """A failed check (``text``, the ``check failed`` line): say why on stderr, exit 1."""
    if text:
        Messages.check_failed(text)
        raise typer.Exit(ExitCode.CHECK_FAILED)


class progress:
    """A Rich progress bar on stderr, for people: only on a terminal, never with --quiet,
    and only once a job has run for :attr:`SHOW_AFTER` seconds without finishing (so
    wide files of few rows get one too; quick jobs never flash one)."""

    SHOW_AFTER = 1.0

    def __init__(self, quiet: bool) -> None:
        env = current()
        self.enabled = not (quiet or env.quiet) and env.stderr_isatty
        self.bar: Any = None
        self.task: Any = None
        self.started = time.monotonic()

    def __enter__(self) -> "Callable[[int, int], None] | None":
        return self.update if self.enabled else None

    def update(self, done: int, total: int) -> None:
        """``done`` of ``total`` units of work (elements; ``total`` -1 while unknown)."""
        if self.bar is None:
            if done >= total >= 0 or time.monotonic() - self.started < self.SHOW_AFTER:
                return
            from rich.console import Console
            from rich.progress import Progress

            self.bar = Progress(console=Console(file=current().stderr), transient=True)
            self.bar.start()
            self.task = self.bar.add_task("kldiv", total=total if total >= 0 else None)
        self.bar.update(self.task, completed=done)

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.stop()


def configure_storage(pairs: list[str] | None) -> None:
    """Apply ``--storage-option KEY=VALUE`` settings to every remote path of this run.

    Always called, with no settings too (they are cleared): a run in the same process
    (the tests, a library user) never inherits the previous run's settings. Nothing
    is set before :mod:`~kldiv_cli.io.fs` is loaded, so a run without settings does not
    load it (start-up).
    """
    if not pairs and "kldiv_cli.io.fs" not in sys.modules:
        return
    from ..io import fs

    fs.configure(fs.parse_options(pairs or ()))


def read_stdin_if_needed(*paths: str | None) -> bytes | None:
    """All of stdin when one of ``paths`` is ``-``, else None (None paths are unset options)."""
    if "-" not in paths:
        return None
    from ..io.sources import read_stdin

    return read_stdin(current().stdin)


FracAboveOpt = Annotated[
    str,
    typer.Option(
        "--frac-above",
        metavar="T1,T2,...",
        help="Report the share of rows (tokens) above each threshold in every measure block "
        "(frac_above.T, gateable: --fail-above kl.frac_above.0.1=0.05).",
    ),
]


# The slice options (compare, estimate): see kldiv_cli.jobs.slices.
PositionsOpt = Annotated[
    str | None,
    typer.Option(
        "--positions",
        metavar="A:B",
        help="Also report the statistics of positions A <= p < B of each sequence.",
    ),
]
LastOpt = Annotated[
    int | None,
    typer.Option("--last", metavar="K", help="Also report the last K positions of each sequence."),
]
TokenIdsOpt = Annotated[
    str | None,
    typer.Option(
        "--token-ids",
        metavar="IDS",
        help="Also report the rows whose token is one of IDS (2,13 or @FILE).",
    ),
]
ExcludeTokenIdsOpt = Annotated[
    str | None,
    typer.Option(
        "--exclude-token-ids",
        metavar="IDS",
        help="Also report the rows whose token is none of IDS (e.g. EOS, formatting tokens).",
    ),
]
ByOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--by",
        metavar="confidence|position:N",
        help="Also report 5 buckets of the reference's confidence, or N bands of position. "
        "Gate a slice with --fail-above 'slices[last 64].kl.p99=0.1'.",
    ),
]


def slices_of(
    positions: str | None,
    last: int | None,
    token_ids: str | None,
    exclude_token_ids: str | None,
    by: list[str] | None,
) -> "Slices":
    """The slice options as :class:`~kldiv_cli.jobs.slices.Slices`."""
    from ..jobs.slices import Slices

    return Slices(positions, last, token_ids, exclude_token_ids, tuple(by or ()))
