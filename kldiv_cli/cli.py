"""The ``kldiv`` command line: a thin layer over the library.

Only Typer is imported at start-up; NumPy, pyarrow and Rich load inside the
commands that need them, so ``kldiv --help`` and ``--version`` stay fast.
Every command runs inside :func:`error_boundary`, the one place that maps
exceptions to exit codes (:class:`~kldiv_cli.errors.ExitCode`).
"""

import functools
import os
import sys
from typing import Annotated

import typer

from ._version import __version__
from .errors import ExitCode, KldivError

# kldiv runs its own threads over cache-sized chunks; OpenBLAS's threads (which
# spin between calls) would only compete with them for the cores. Must be set
# before NumPy loads; a user's own setting wins.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

app = typer.Typer(
    name="kldiv",
    help=(
        "PyTorch's KL-divergence loss (torch.nn.KLDivLoss) for data files, without PyTorch.\n\n"
        "  kldiv compute student.npy teacher.parquet -r batchmean\n\n"
        "  kldiv inspect logits.npy\n\n"
        "Exit codes: 0 success, 1 a check failed (--fail-above), 2 error, 130 interrupted."
    ),
    rich_markup_mode=None,
    add_completion=False,
    pretty_exceptions_enable=False,
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)


# ------------------------------------------------------------------ messages


class Messages:
    """Everything that is not data goes to stderr; ``--quiet`` keeps only errors."""

    quiet = False

    @classmethod
    def warn(cls, text: str) -> None:
        if not cls.quiet:
            sys.stderr.write(f"kldiv: warning: {text}\n")

    @classmethod
    def note(cls, text: str) -> None:
        if not cls.quiet:
            sys.stderr.write(f"kldiv: {text}\n")

    @staticmethod
    def error(text: str) -> None:
        sys.stderr.write(f"kldiv: error: {text}\n")


def _silence_stdout() -> None:
    """After a closed pipe, point stdout at /dev/null so the final flush stays quiet."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def error_boundary(command):
    """Map whatever a command raises to one line on stderr and an exit code."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        debug = kwargs.get("debug", False)
        Messages.quiet = kwargs.get("quiet", False)
        try:
            return command(*args, **kwargs)
        except typer.Exit:
            raise
        except BrokenPipeError:
            _silence_stdout()
            raise typer.Exit(ExitCode.OK) from None
        except KeyboardInterrupt:
            Messages.error("interrupted")
            raise typer.Exit(ExitCode.INTERRUPTED) from None
        except KldivError as exc:
            if debug:
                raise
            Messages.error(str(exc))
            raise typer.Exit(exc.exit_code) from None
        except MemoryError:
            if debug:
                raise
            Messages.error("out of memory; try a smaller file or a scalar reduction")
            raise typer.Exit(ExitCode.ERROR) from None
        except Exception as exc:  # the boundary: no traceback without --debug
            if debug:
                raise
            text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            Messages.error(
                f"unexpected {type(exc).__name__}{': ' + text if text else ''} "
                "(run with --debug for a traceback)"
            )
            raise typer.Exit(ExitCode.ERROR) from None

    return wrapper


# ------------------------------------------------------------------ options shared by commands

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


def _color_choice(no_color: bool) -> bool | None:
    if no_color or os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb":
        return False
    if os.environ.get("FORCE_COLOR"):
        return True
    return None


def _emit(report, fmt: str, output: str | None, no_color: bool) -> None:
    from .render import print_report, resolve_format

    if output and output != "-":
        from .writers import write_report

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
    from .readers import read_stdin

    return read_stdin()


# ------------------------------------------------------------------ commands


def _version_callback(value: bool) -> None:
    if value:
        sys.stdout.write(f"{__version__}\n")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool,
        typer.Option(
            "--version", "-V", callback=_version_callback, is_eager=True, help="Print the version."
        ),
    ] = False,
) -> None:
    """PyTorch's KL-divergence loss for data files."""


@app.command(no_args_is_help=True)
@error_boundary
def compute(
    input: Annotated[
        str,
        typer.Argument(
            metavar="INPUT",
            help="The model's log-probabilities log q (or logits/probabilities with --input-transform); '-' for stdin.",
            show_default=False,
        ),
    ],
    target: Annotated[
        str,
        typer.Argument(
            metavar="TARGET",
            help="The observed distribution p (log p with --log-target); '-' for stdin.",
            show_default=False,
        ),
    ],
    reduction: Annotated[
        str,
        typer.Option(
            "--reduction",
            "-r",
            metavar="[mean|batchmean|sum|none]",
            help="As torch: mean (default, divides by every element; warns), batchmean "
            "(divides by the batch size: the KL per sample), sum, none (pointwise).",
        ),
    ] = "mean",
    log_target: Annotated[bool, typer.Option("--log-target", help="TARGET holds log p.")] = False,
    input_transform: Annotated[
        str,
        typer.Option(
            "--input-transform",
            metavar="[none|softmax|log-softmax|log|exp]",
            help="Convert INPUT first, e.g. log-softmax for logits, log for probabilities.",
        ),
    ] = "none",
    target_transform: Annotated[
        str,
        typer.Option(
            "--target-transform",
            metavar="[none|softmax|log-softmax|log|exp]",
            help="Convert TARGET first, e.g. softmax for teacher logits.",
        ),
    ] = "none",
    dim: Annotated[int, typer.Option("--dim", help="Axis of the (log-)softmax.")] = -1,
    temperature: Annotated[
        float,
        typer.Option(
            "--temperature", "-T", help="Divide logits by T before a (log-)softmax, on both sides."
        ),
    ] = 1.0,
    t2_scale: Annotated[
        bool,
        typer.Option("--t2-scale", help="Multiply the loss by T^2 (the distillation convention)."),
    ] = False,
    per_row: Annotated[
        bool, typer.Option("--per-row", help="One KL value per row (sum over the last axis).")
    ] = False,
    top: Annotated[
        int | None,
        typer.Option("--top", metavar="K", help="Show the K rows with the largest KL."),
    ] = None,
    target_labels: Annotated[
        bool,
        typer.Option(
            "--target-labels",
            help="TARGET holds integer class indices; one-hot them to INPUT's width.",
        ),
    ] = False,
    input_format: Annotated[
        str | None,
        typer.Option(
            "--input-format",
            metavar="FMT",
            help="npy, npz, csv, tsv, parquet or arrow (default: by extension).",
        ),
    ] = None,
    target_format: Annotated[
        str | None, typer.Option("--target-format", metavar="FMT", help="As --input-format.")
    ] = None,
    input_key: Annotated[
        str | None, typer.Option("--input-key", help="Array name inside an INPUT .npz.")
    ] = None,
    target_key: Annotated[
        str | None, typer.Option("--target-key", help="Array name inside a TARGET .npz.")
    ] = None,
    input_columns: Annotated[
        str | None,
        typer.Option(
            "--input-columns",
            metavar="COLS",
            help="Comma-separated names, globs (s_*) or 0-based indices; default: all numeric columns.",
        ),
    ] = None,
    target_columns: Annotated[
        str | None, typer.Option("--target-columns", metavar="COLS", help="As --input-columns.")
    ] = None,
    delimiter: DelimiterOpt = None,
    missing: MissingOpt = "error",
    format: FormatOpt = "auto",
    output: Annotated[
        str | None,
        typer.Option(
            "--output",
            "-o",
            metavar="PATH",
            help="Write the result to .npy, .csv, .json or .parquet ('-': stdout), atomically.",
        ),
    ] = None,
    fail_above: Annotated[
        float | None,
        typer.Option(
            "--fail-above",
            metavar="X",
            help="Exit 1 if the loss (the largest row with --per-row) is above X or NaN.",
        ),
    ] = None,
    strict: Annotated[
        bool, typer.Option("--strict", help="Treat diagnostics (suspicious data) as errors.")
    ] = False,
    threads: Annotated[
        int | None,
        typer.Option("--threads", metavar="N", help="Threads for the sums (default: all cores)."),
    ] = None,
    chunk_rows: Annotated[
        int | None,
        typer.Option(
            "--chunk-rows",
            metavar="N",
            help="Rows per streamed block (default: about 500k values).",
        ),
    ] = None,
    quiet: QuietOpt = False,
    no_color: NoColorOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Compute KL(TARGET || INPUT), exactly as torch.nn.functional.kl_div(INPUT, TARGET).

    The argument order is torch's: INPUT (the model, log q) first, TARGET (the
    data, p) second, although the maths writes KL(p || q) with the target first.

    Examples:

      kldiv compute student.npy teacher.npy -r batchmean

      kldiv compute student_logits.npy teacher_logits.parquet --input-transform log-softmax
      --target-transform softmax -T 2 --t2-scale -r batchmean

      kldiv compute pred.csv labels.csv --target-labels --per-row --top 5

      kldiv compute a.npy b.npy -r batchmean --fail-above 0.05 -q
    """
    from .compute import ComputeRequest
    from .compute import compute as run
    from .readers import ReadOptions
    from .render import resolve_format
    from .reports import compute_report

    resolve_format(format, False)
    streamed = False  # reduction "none" written to the file block by block
    if output and output != "-":
        from .writers import STREAMED_KINDS, output_kind

        kind = output_kind(output)
        streamed = reduction == "none" and kind in STREAMED_KINDS
    request = ComputeRequest(
        input=input,
        target=target,
        input_options=ReadOptions(input_format, input_key, input_columns, delimiter, missing),
        target_options=ReadOptions(target_format, target_key, target_columns, delimiter, missing),
        reduction=reduction,
        log_target=log_target,
        input_transform=input_transform,
        target_transform=target_transform,
        dim=dim,
        temperature=temperature,
        t2_scale=t2_scale,
        per_row=per_row,
        top=top,
        target_labels=target_labels,
    )
    request.validate()
    for name, value in (("--threads", threads), ("--chunk-rows", chunk_rows)):
        if value is not None and value < 1:
            from .errors import UsageError

            raise UsageError(f"{name} must be at least 1, got {value}")
    stdin = _read_stdin_if_needed(input, target)

    def check(result) -> None:
        if strict and result.diagnostics:
            from .errors import UsageError

            raise UsageError(f"--strict: {result.diagnostics[0]}")

    with _progress(quiet) as progress:
        options = {"threads": threads, "chunk_rows": chunk_rows, "progress": progress}
        if streamed:
            # Block by block into the file: memory stays bounded for large inputs.
            from .writers import BlockWriter, report_writer, write_output

            def write(f):
                sink = BlockWriter(kind, f)
                result = run(request, stdin, sink=sink, **options)
                check(result)  # before the file replaces an existing one
                if result.loss is None:
                    sink.close()
                else:
                    report_writer(kind, compute_report(result))(f)
                return result

            result = write_output(output, write)
        else:
            result = run(request, stdin, **options)
    for text in result.warnings:
        Messages.warn(text)
    check(result)
    for text in result.diagnostics:
        Messages.warn(text)
    if streamed:
        Messages.note(f"wrote {output}")
    else:
        _emit(compute_report(result), format, output, no_color)
    if fail_above is not None:
        value = result.gate_value
        what = "largest row" if per_row else "loss"
        if not value <= fail_above:
            # Not an error, but never silenced: it is why the exit code is 1.
            verdict = (
                f"is NaN (--fail-above {fail_above:g})"
                if value != value
                else f"{value:.6g} is above --fail-above {fail_above:g}"
            )
            sys.stderr.write(f"kldiv: check failed: {what} {verdict}\n")
            raise typer.Exit(ExitCode.CHECK_FAILED)


@app.command(no_args_is_help=True)
@error_boundary
def inspect(
    file: Annotated[
        str, typer.Argument(metavar="FILE", help="A data file ('-' for stdin).", show_default=False)
    ],
    file_format: Annotated[
        str | None,
        typer.Option("--file-format", metavar="FMT", help="npy, npz, csv, tsv, parquet or arrow."),
    ] = None,
    key: Annotated[str | None, typer.Option("--key", help="Array name inside a .npz.")] = None,
    columns: Annotated[
        str | None,
        typer.Option("--columns", metavar="COLS", help="Names, globs or 0-based indices."),
    ] = None,
    delimiter: DelimiterOpt = None,
    missing: MissingOpt = "error",
    format: FormatOpt = "auto",
    quiet: QuietOpt = False,
    no_color: NoColorOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Describe a data file: shape, dtype, NaN/inf counts, range, row sums, and what it
    looks like (probabilities, log-probabilities, logits, labels), with the flags to use.

    Example:

      kldiv inspect sample_data/teacher_logits.npy
    """
    from .inspection import inspect_source
    from .readers import ReadOptions, open_source
    from .render import resolve_format
    from .reports import inspect_report

    resolve_format(format, False)
    source = open_source(
        file,
        ReadOptions(file_format, key, columns, delimiter, missing),
        _read_stdin_if_needed(file),
    )
    _emit(inspect_report(inspect_source(source)), format, None, no_color)


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


def _check_bins(bins: int, binning: str) -> None:
    from .errors import UsageError

    if bins < 2:
        raise UsageError(f"--bins must be at least 2, got {bins}")
    if binning not in ("quantile", "uniform"):
        raise UsageError(f"unknown binning {binning!r}; choose quantile or uniform")


@app.command(no_args_is_help=True)
@error_boundary
def drift(
    reference: Annotated[
        str,
        typer.Argument(
            metavar="REFERENCE",
            help="Reference table (CSV/TSV, Parquet, Arrow, 2-D .npy) or a profile from "
            "'kldiv profile'.",
            show_default=False,
        ),
    ],
    current: Annotated[
        str,
        typer.Argument(metavar="CURRENT", help="Today's table; '-' for stdin.", show_default=False),
    ],
    columns: ColumnsOpt = None,
    bins: BinsOpt = 10,
    binning: BinningOpt = "quantile",
    epsilon: Annotated[
        float,
        typer.Option("--epsilon", help="Added to both sides' shares, then renormalised; 0: exact."),
    ] = 1e-4,
    metric: Annotated[
        str,
        typer.Option(
            "--metric", metavar="[kl|kl_reverse|psi|js]", help="What the threshold gates."
        ),
    ] = "kl",
    base: Annotated[
        str, typer.Option("--base", metavar="[e|2]", help="Logarithm base: nats (e) or bits (2).")
    ] = "e",
    threshold: Annotated[
        float, typer.Option("--threshold", help="Drift when a column's metric is above this.")
    ] = 0.1,
    thresholds: Annotated[
        str | None,
        typer.Option(
            "--thresholds",
            metavar="TOML",
            help="Per-column thresholds: [thresholds] column = value (and default = value).",
        ),
    ] = None,
    fail_on: Annotated[
        str,
        typer.Option(
            "--fail-on",
            metavar="RULE",
            help="Dataset verdict: any (default), share:F (a share of columns), count:N.",
        ),
    ] = "any",
    format: FormatOpt = "auto",
    output: Annotated[
        str | None,
        typer.Option(
            "--output", "-o", metavar="PATH", help="Write the report (.json, .csv), atomically."
        ),
    ] = None,
    junit: Annotated[
        str | None,
        typer.Option("--junit", metavar="PATH", help="JUnit XML: a testcase per column."),
    ] = None,
    html: Annotated[
        str | None,
        typer.Option(
            "--html", metavar="PATH", help="A self-contained HTML report with histograms."
        ),
    ] = None,
    delimiter: DelimiterOpt = None,
    quiet: QuietOpt = False,
    no_color: NoColorOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Data drift, column by column: KL(reference || current) of binned values.

    Bins come from the reference only (10 quantile bins, open-ended; categories plus an
    "unseen" bucket for strings, booleans and columns with at most 20 values), shares are
    smoothed by --epsilon on both sides, and each column drifts when its metric is above
    the threshold. Reverse KL, PSI and Jensen-Shannon are reported beside it.

    Examples:

      kldiv drift sample_data/drift/reference.csv sample_data/drift/current.csv

      kldiv profile reference.parquet -o ref.profile.json

      kldiv drift ref.profile.json today.parquet --format markdown --html drift.html

    Exit codes: 0 no drift, 1 drift, 2 error (also when a column could not be compared).
    """
    import math

    from . import drift as d
    from .errors import UsageError
    from .readers import ReadOptions, open_columns
    from .render import resolve_format
    from .reports import drift_report
    from .writers import atomic_write, check_destination, output_kind

    resolve_format(format, False)
    _check_bins(bins, binning)
    if metric not in d.METRICS:
        raise UsageError(f"unknown metric {metric!r}; choose one of {', '.join(d.METRICS)}")
    bases = {"e": math.e, "2": 2.0, "10": 10.0}
    if base not in bases:
        raise UsageError(f"--base takes e, 2 or 10, got {base!r}")
    if not (math.isfinite(epsilon) and 0 <= epsilon < 1):
        raise UsageError(f"--epsilon must be in [0, 1), got {epsilon}")
    if not threshold >= 0:
        raise UsageError(f"--threshold must be >= 0, got {threshold}")
    try:
        d.parse_fail_on(fail_on)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if output and output != "-":
        output_kind(output)
    for path in (junit, html):
        if path:
            check_destination(path)
    default, per_column = d.load_thresholds(thresholds) if thresholds else (None, {})
    stdin = _read_stdin_if_needed(reference, current)
    options = ReadOptions(delimiter=delimiter)
    cur_table = open_columns(current, options, stdin)
    if reference.lower().endswith(".json") and reference != "-":
        profile = d.load_profile(reference)
        if (bins, binning) != (10, "quantile") and (bins, binning) != (
            profile.bins,
            profile.binning,
        ):
            raise UsageError(
                f"{reference}: the profile was built with {profile.bins} {profile.binning} bins; "
                "drop --bins/--binning or build a new profile"
            )
        names = d.shared_columns(list(profile.columns), cur_table.column_names, columns, reference)
    else:
        ref_table = open_columns(reference, options, stdin)
        names = d.shared_columns(ref_table.column_names, cur_table.column_names, columns, reference)
        profile = d.build_profile(ref_table, reference, bins, binning, names)
        del ref_table
    opts = d.DriftOptions(
        metric=metric,
        threshold=default if default is not None else threshold,
        thresholds=per_column,
        epsilon=epsilon,
        base=bases[base],
        fail_on=fail_on,
    )
    result = d.check(profile, cur_table, opts, names)
    result.update(reference=reference, current=current)
    for c in result["columns"]:
        if c.get("error"):
            Messages.warn(f"column {c['name']!r}: {c['error']}")
        elif c.get("warning"):
            Messages.warn(f"column {c['name']!r}: {c['warning']}")
    if junit:
        from .drift_report import junit_xml

        xml = junit_xml(result)
        atomic_write(junit, lambda f: f.write(xml))
    if html:
        from .drift_report import html_page

        page = html_page(result, reference, current)
        atomic_write(html, lambda f: f.write(page))
    _emit(drift_report(result), format, output, no_color)
    if result["drift"]:
        Messages.note(f"drift in {result['n_drifted']} of {result['n_columns']} columns")
        raise typer.Exit(ExitCode.CHECK_FAILED)
    if result["n_errors"]:
        raise typer.Exit(ExitCode.ERROR)


@app.command(no_args_is_help=True)
@error_boundary
def profile(
    reference: Annotated[
        str,
        typer.Argument(
            metavar="REFERENCE", help="Reference table; '-' for stdin.", show_default=False
        ),
    ],
    output: Annotated[
        str | None,
        typer.Option(
            "--output", "-o", metavar="PATH", help="Where the profile goes (.json); default stdout."
        ),
    ] = None,
    columns: ColumnsOpt = None,
    bins: BinsOpt = 10,
    binning: BinningOpt = "quantile",
    delimiter: DelimiterOpt = None,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Store a reference's bins and counts, so drift checks need not read it again.

    'kldiv drift ref.profile.json CURRENT' gives exactly the results of the raw reference.

    Example:

      kldiv profile sample_data/drift/reference.csv -o ref.profile.json
    """
    import json

    from . import drift as d
    from .readers import ReadOptions, open_columns, select_columns
    from .writers import atomic_write, output_kind

    _check_bins(bins, binning)
    if output and output != "-":
        output_kind(output)
    table = open_columns(
        reference, ReadOptions(delimiter=delimiter), _read_stdin_if_needed(reference)
    )
    names = table.column_names
    chosen = [names[i] for i in select_columns(reference, names, columns, [True] * len(names))]
    doc = d.build_profile(table, reference, bins, binning, chosen).to_json()
    text = (json.dumps(doc, indent=1, allow_nan=False) + "\n").encode()
    if output and output != "-":
        atomic_write(output, lambda f: f.write(text))
        Messages.note(f"wrote {output}: {len(chosen)} columns, {doc['rows']} rows")
    else:
        sys.stdout.write(text.decode())


def main(argv: list[str] | None = None) -> None:
    """Console entry point: usage errors in the house style, quiet closed pipes."""
    try:
        code = app(args=argv, prog_name="kldiv", standalone_mode=False)
    except typer.TyperException as exc:  # click's usage errors
        Messages.error(f"{exc.format_message()} (see 'kldiv --help')")
        code = ExitCode.ERROR
    except typer.Abort:
        Messages.error("aborted")
        code = ExitCode.INTERRUPTED
    except KeyboardInterrupt:
        code = ExitCode.INTERRUPTED
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        _silence_stdout()
    sys.exit(int(code or 0))
