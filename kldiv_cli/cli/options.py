"""Options declared once: single options (``Annotated`` aliases a command's parameter
takes), the :func:`choice` type of every fixed-word option, and the option groups of
:mod:`.groups` are built from these.

Nothing here runs a job, prints or reads a file.
"""

from collections.abc import Callable, Sequence
from typing import Annotated, Any

import typer
from typer._click import Context, Parameter
from typer._click.exceptions import ClickException
from typer._click.shell_completion import CompletionItem
from typer._click.types import ParamType

from ..choices import Choice, Missing, OutputFormat
from ..errors import ExitCode, KldivError
from ..io import formats


class OptionError(ClickException):
    """An option value that does not parse (a word not among its choices, a clamp that
    is not LO,HI): the one line every usage error is (``kldiv: error: unknown reduction
    'avg'; choose one of ...``), exit 2, without Click's usage block; run in-process,
    :func:`.app.run` prints the same line."""

    exit_code = int(ExitCode.ERROR)

    def show(self, file: Any = None) -> None:
        from .boundary import current

        current().error(self.format_message())


class ParsedType(ParamType):
    """The Click type of an option parsed by ``parse`` (a :class:`~kldiv_cli.errors.UsageError`
    for a bad value, shown as :class:`OptionError`): the option receives the parsed
    value; ``metavar`` is its help's placeholder and ``words`` (or a function giving
    them, read only when completing) what the shell completes."""

    def __init__(
        self,
        name: str,
        parse: Callable[[str], Any],
        metavar: str,
        words: Sequence[str] | Callable[[], Sequence[str]] = (),
    ) -> None:
        self.name = name
        self.parse = parse
        self.metavar = metavar
        self.words = words

    def get_metavar(self, param: Parameter, ctx: Context) -> str:
        return self.metavar

    def convert(self, value: Any, param: Parameter | None, ctx: Context | None) -> Any:
        if not isinstance(value, str):
            return value
        try:
            return self.parse(value)
        except KldivError as exc:
            raise OptionError(str(exc)) from None

    def shell_complete(
        self, ctx: Context, param: Parameter, incomplete: str
    ) -> list[CompletionItem]:
        words = self.words() if callable(self.words) else self.words
        return [CompletionItem(w) for w in words if w.startswith(incomplete)]


def choice(choices: type[Choice], *names: str, help: str, **kwargs: Any) -> Any:
    """``typer.Option(*names)`` taking one of ``choices``' words (the parameter's type is
    the enum: it receives a member)."""
    words = choices.words()
    parsed = ParsedType(choices.__name__.lower(), choices.parse, f"[{'|'.join(words)}]", words)
    return typer.Option(*names, click_type=parsed, help=help, **kwargs)


def not_empty(value: str | None) -> str | None:
    """An option that names something cannot be given as an empty string."""
    if value is not None and not value.strip():
        raise typer.BadParameter("is empty")
    return value


# The flags of every command (and of the app: ``kldiv -q compute ...`` and
# ``kldiv compute ... -q`` are the same); :mod:`.app` adds them, the boundary applies them.
QuietOpt = Annotated[
    bool, typer.Option("--quiet", "-q", help="Print nothing on stderr except errors.")
]
NoColorOpt = Annotated[
    bool, typer.Option("--no-color", help="No colour (also NO_COLOR=1; FORCE_COLOR=1 forces it).")
]
DebugOpt = Annotated[bool, typer.Option("--debug", help="Show a traceback on errors.")]

FormatOpt = Annotated[
    OutputFormat,
    choice(
        OutputFormat,
        "--format",
        "-f",
        help="Output format. auto: a table on a terminal, plain otherwise (parseable lines: "
        "a bare number for a scalar, CSV rows for arrays; see the command's help).",
    ),
]
OutputOpt = Annotated[
    str | None,
    typer.Option(
        "--output",
        "-o",
        metavar="PATH",
        help=formats.output_help(),
    ),
]
DelimiterOpt = Annotated[
    str | None,
    typer.Option("--delimiter", help=formats.delimiter_help()),
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


def _engines() -> tuple[str, ...]:
    """The engine registry's names (:data:`kldiv_cli.engines.registry.ENGINES`), for
    completion only: the registry loads the engines (NumPy), which no help may pay for.
    The job checks the name (and the engine's limits), so a new engine is only its
    registry entry."""
    from ..engines.registry import ENGINES

    return tuple(ENGINES)


def format_type() -> ParsedType:
    """``--*-format NAME``: a format of the format registry (:mod:`kldiv_cli.io.formats`),
    completed from it; io checks the name (one line listing them), so a new format is
    only its registry entry."""
    return ParsedType("format", str, "FMT", formats.names)


EngineOpt = Annotated[
    str,
    typer.Option(
        "--engine",
        click_type=ParsedType("engine", str, "NAME", _engines),
        help="Where the sums run: this process (local, the default), or tasks on a Dask cluster "
        '(pip install "kldiv[dask]", or ".[dask]" from the source); the same bits either way.',
    ),
]
SchedulerOpt = Annotated[
    str | None,
    typer.Option(
        "--scheduler",
        metavar="ADDRESS",
        envvar="DASK_SCHEDULER_ADDRESS",
        callback=not_empty,
        help="A running Dask scheduler (tcp://HOST:8786); default: a local cluster on 127.0.0.1.",
    ),
]
SchedulerFileOpt = Annotated[
    str | None,
    typer.Option(
        "--scheduler-file",
        metavar="PATH",
        callback=not_empty,
        help="A Dask scheduler file to connect to.",
    ),
]
WorkersOpt = Annotated[
    int | None,
    typer.Option("--workers", metavar="N", help="Workers of the local Dask cluster."),
]
TimeoutOpt = Annotated[
    float,
    typer.Option(
        "--timeout",
        metavar="SECONDS",
        help="Seconds to wait for the Dask scheduler to answer and for a worker to join.",
    ),
]


def _thresholds(text: str) -> tuple[float, ...]:
    from ..jobs.gates import parse_thresholds

    return parse_thresholds(text)


#: The option receives the parsed thresholds (a tuple of floats); Typer is told only
#: the Click type, as it declares no tuple of any length.
FracAboveOpt = Annotated[
    Any,
    typer.Option(
        "--frac-above",
        click_type=ParsedType("thresholds", _thresholds, "T1,T2,..."),
        help="Report the share of rows (tokens) above each threshold in every measure block "
        "(frac_above.T, gateable: --fail-above kl.frac_above.0.1=0.05).",
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
MissingOpt = Annotated[
    Missing,
    choice(
        Missing,
        "--missing",
        help="Missing cells in CSV/Parquet: an error naming the first one (default), or NaN.",
    ),
]


def temperature_option(help: str) -> Any:
    """``-T/--temperature T``: softmax(logits / T); a finite number > 0 (checked by the
    request, :func:`kldiv_cli.jobs.checks.temperature`)."""
    return typer.Option("--temperature", "-T", help=help)


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
        # Checked with the other slices (jobs.slices); the words complete.
        click_type=ParsedType("by", str, "confidence|position:N", ("confidence", "position:")),
        help="Also report 5 buckets of the reference's confidence, or N bands of position. "
        "Gate a slice with --fail-above 'slices[last 64].kl.p99=0.1'.",
    ),
]
