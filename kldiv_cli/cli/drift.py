"""``kldiv drift`` and ``kldiv profile``: data drift, column by column."""

from typing import TYPE_CHECKING, Annotated, Any

import typer

from ..choices import OutputFormat
from ..errors import ExitCode, UsageError
from ..io import formats
from ..jobs.drift_measures import METRICS
from .app import app
from .boundary import Messages, current, error_boundary
from .options import (
    BinningOpt,
    BinsOpt,
    ColumnsOpt,
    DebugOpt,
    DelimiterOpt,
    EngineOpt,
    FormatOpt,
    NoColorOpt,
    QuietOpt,
    SchedulerFileOpt,
    SchedulerOpt,
    StorageOpt,
    StrictOpt,
    TimeoutOpt,
    WorkersOpt,
)
from .output import emit
from .runner import (
    configure_storage,
    read_stdin_if_needed,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from contextlib import AbstractContextManager

    from ..jobs.drift import ColumnRules, DriftReport, DriftRequest, Profiler
    from ..jobs.drift_groups import Grouping
ExcludeOpt = Annotated[
    list[str] | None,
    typer.Option("--exclude", metavar="COLS", help="Leave these columns out (names or globs)."),
]
CategoricalOpt = Annotated[
    list[str] | None,
    typer.Option("--categorical", metavar="COLS", help="Compare these columns as categories."),
]
NumericOpt = Annotated[
    list[str] | None,
    typer.Option("--numeric", metavar="COLS", help="Compare these columns as numbers (binned)."),
]
SkipOpt = Annotated[
    list[str] | None,
    typer.Option("--skip", metavar="COLS", help="List these columns as skipped, unchecked."),
]
DatetimeOpt = Annotated[
    str,
    typer.Option(
        "--datetime",
        metavar="[skip|numeric]",
        help="Date/time columns: skipped (default) or binned as numbers.",
    ),
]
MaxCategoriesOpt = Annotated[
    int,
    typer.Option(
        "--max-categories", help="Keep the most frequent reference categories; pool the rest."
    ),
]


def _rules(
    columns: str | None,
    exclude: list[str] | None,
    categorical: list[str] | None,
    numeric: list[str] | None,
    skip: list[str] | None,
    datetime: str,
    bins: int,
    binning: str,
    max_categories: int,
) -> "ColumnRules":
    from ..jobs.drift import ColumnRules

    return ColumnRules(
        columns=columns,
        exclude=tuple(exclude or ()),
        categorical=tuple(categorical or ()),
        numeric=tuple(numeric or ()),
        skip=tuple(skip or ()),
        datetime=datetime,
        bins=bins,
        binning=binning,
        max_categories=max_categories,
    )


def _engine(
    engine: str,
    reference: "Sequence[str]",
    scheduler: str | None,
    scheduler_file: str | None,
    workers: int | None,
    timeout: float,
) -> "AbstractContextManager[Profiler | None]":
    """The reference's profiler for ``--engine`` (its entry in engines.registry): None
    locally; with dask, tasks on the cluster for a Parquet reference, open while the job
    runs."""
    from ..engines.registry import engine as named
    from ..jobs.compute import EngineOptions

    options = EngineOptions(scheduler, scheduler_file, workers, timeout)
    return named(engine).profiler(reference, options, Messages.note)


def _grouping(
    window: str | None,
    segment: str | None,
    reference_segment: bool,
    max_segments: int,
    option: str = "--window",
) -> "Grouping | None":
    """``--window``/``--segment`` as the request's grouping (one of them at most)."""
    from ..jobs.drift_groups import Grouping, parse_window

    if window is not None and segment is not None:
        raise UsageError("give --window or --segment, not both")
    if reference_segment and segment is None:
        raise UsageError("--reference-segment needs --segment COL")
    if window is not None:
        column, period = parse_window(window, option)
        return Grouping(column, period)
    if segment is not None:
        return Grouping(segment, None, reference_segment, max_segments)
    return None


@app.command()
@error_boundary
def drift(
    tables: Annotated[
        list[str],
        typer.Argument(
            metavar="REFERENCE CURRENT...",
            help="The reference (a file of any format, a Parquet folder or quoted glob, or a "
            f"profile {formats.kinds_text(('json',))}), "
            "then the current data (the same kinds, or several Parquet files); '-' for stdin.",
            show_default=False,
        ),
    ],
    columns: ColumnsOpt = None,
    exclude: ExcludeOpt = None,
    categorical: CategoricalOpt = None,
    numeric: NumericOpt = None,
    skip: SkipOpt = None,
    datetime: DatetimeOpt = "skip",
    bins: BinsOpt = 10,
    binning: BinningOpt = "quantile",
    max_categories: MaxCategoriesOpt = 50,
    epsilon: Annotated[
        float,
        typer.Option("--epsilon", help="Smoothing mass spread over a column's bins; 0: exact."),
    ] = 1e-4,
    metric: Annotated[
        str,
        typer.Option(
            "--metric",
            metavar=f"[{'|'.join(METRICS)}]",
            help="What the threshold gates (ks, chi2: a p-value test gated by --alpha; ks on "
            "numbers, chi2 on categories, either for both; wasserstein on categories is js).",
        ),
    ] = "kl",
    alpha: Annotated[
        float | None,
        typer.Option(
            "--alpha",
            help="With --metric ks or chi2: drift when a column's p-value is below this "
            "(after --correction). Default 0.05.",
        ),
    ] = None,
    correction: Annotated[
        str,
        typer.Option(
            "--correction",
            metavar="[none|bonferroni|bh]",
            help="With --metric ks or chi2: correct the p-values for the number of columns "
            "tested (Bonferroni, or Benjamini-Hochberg's false discovery rate).",
        ),
    ] = "none",
    base: Annotated[
        str,
        typer.Option(
            "--base", metavar="[e|2|10]", help="Logarithm base: nats (e), bits (2) or 10."
        ),
    ] = "e",
    threshold: Annotated[
        str,
        typer.Option(
            "--threshold",
            metavar="X|learned[:K]",
            help="Drift when a column's metric is above this; learned[:K]: at the mean + K "
            "standard deviations (K = 3) a profile made with --calibrate learned for it.",
        ),
    ] = "0.1",
    warn_threshold: Annotated[
        str | None,
        typer.Option(
            "--warn-threshold",
            metavar="X|learned[:K]",
            help="A third tier: a column above this but not drifted is 'warn' (never fails).",
        ),
    ] = None,
    thresholds: Annotated[
        str | None,
        typer.Option(
            "--thresholds",
            metavar="TOML",
            help="Per-column thresholds: default = X and a [thresholds] table of column = X.",
        ),
    ] = None,
    max_missing_change: Annotated[
        float,
        typer.Option(
            "--max-missing-change",
            help="Drift when a column's missing share of rows moves by more (1 turns it off).",
        ),
    ] = 0.05,
    max_new_category_share: Annotated[
        float | None,
        typer.Option(
            "--max-new-category-share",
            help="Drift when more of a column's current values are new categories (off by default).",
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
    schema: Annotated[
        str,
        typer.Option(
            "--schema",
            metavar="[fail|warn]",
            help="Schema changes (a column removed, added, of another type): fail the check "
            "(default) or list them as warnings.",
        ),
    ] = "fail",
    window: Annotated[
        str | None,
        typer.Option(
            "--window",
            metavar="COL:PERIOD",
            help="A verdict per window of the current data: COL a date/time column, PERIOD "
            "a count and a unit (s, min, h, d, w, mo, y), such as 1h, 1d, 7d, 1mo.",
        ),
    ] = None,
    segment: Annotated[
        str | None,
        typer.Option(
            "--segment",
            metavar="COL",
            help="A verdict per segment: each of COL's most frequent values in the current "
            "data (--max-segments), the rest pooled as '(other)'.",
        ),
    ] = None,
    reference_segment: Annotated[
        bool,
        typer.Option(
            "--reference-segment",
            help="With --segment: each segment against its own reference segment (default: "
            "against the whole reference).",
        ),
    ] = False,
    max_segments: Annotated[
        int, typer.Option("--max-segments", help="With --segment: how many values are segments.")
    ] = 10,
    format: FormatOpt = OutputFormat.AUTO,
    output: Annotated[
        str | None,
        typer.Option(
            "--output",
            "-o",
            metavar="PATH",
            help=f"Write the report ({formats.kinds_text(('json', 'csv'))}).",
        ),
    ] = None,
    junit: Annotated[
        str | None,
        typer.Option("--junit", metavar="PATH", help="JUnit XML (.xml): a testcase per column."),
    ] = None,
    html: Annotated[
        str | None,
        typer.Option("--html", metavar="PATH", help="A self-contained HTML report (.html)."),
    ] = None,
    delimiter: DelimiterOpt = None,
    engine: EngineOpt = "local",
    scheduler: SchedulerOpt = None,
    scheduler_file: SchedulerFileOpt = None,
    workers: WorkersOpt = None,
    timeout: TimeoutOpt = 10.0,
    storage_option: StorageOpt = None,
    strict: StrictOpt = False,
    quiet: QuietOpt = False,
    no_color: NoColorOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Data drift, column by column: KL(reference || current) of binned values, missing
    shares and new categories.

    Examples:

      kldiv drift sample_data/drift/users_reference.parquet sample_data/drift/users_current/

      kldiv drift ref.parquet 'days/2026-11-*.parquet' --exclude user_id --html drift.html

      kldiv profile reference.parquet -o ref.profile.json

      kldiv drift ref.profile.json today/ --format markdown --junit drift.xml

      kldiv drift ref.parquet week.parquet --window created_at:1d --html drift.html

      kldiv drift ref.parquet week.parquet --segment country --reference-segment

      kldiv drift s3://bucket/reference/ today/ --engine dask --scheduler tcp://HOST:8786

    Row keys (unique integers or text, named like a key or monotone) and date/time
    columns are listed as skipped; free text (most values distinct) is compared by its
    lengths; numbers get 10 quantile bins of the reference plus a bin below and one above
    its range; text, booleans and numbers with at most 20 values (each seen twice on
    average) are categories (the 50 most frequent, the rest pooled as "other", plus a bin
    for new values). A column drifts when its metric is above the threshold and above
    what noise gives at its sample sizes (else it is "weak": too few values to tell), or
    its missing share moves by more than --max-missing-change and than chance, or (when
    set) too many values are new categories. A column removed, added or of another type fails the
    check too (--schema warn lists it without failing).

    Plain output (the default when piped): one line per column, "state value reasons
    name" separated by spaces ("-" for none; the name last, as it may hold spaces),
    followed by an indented line saying why when there is something to say (skipped,
    weak, drift, schema change, error).

    --engine dask profiles a Parquet reference's numeric columns (exact quantile bins,
    exact counts) by tasks on a Dask cluster, with the local bits; text, booleans, dates,
    --categorical columns and the current data are read here, a column at a time.

    Exit codes: 0 no drift, 1 drift, 2 error (also when a column could not be compared).
    """
    import shlex

    from .._version import __version__
    from ..io import fs
    from ..jobs.diagnostics import refuse_if_strict
    from ..jobs.drift import DriftRequest, run_drift
    from ..jobs.drift_request import parse_threshold
    from ..redact import redact_argv
    from ..render.drift import failure_text, run_warnings

    configure_storage(storage_option)
    fixed, learned = parse_threshold(threshold)
    warn_fixed, warn_learned = (
        parse_threshold(warn_threshold, "--warn-threshold") if warn_threshold else (None, None)
    )
    request = DriftRequest(
        reference=tuple(tables[:1]),
        current=tuple(tables[1:]),
        rules=_rules(
            columns, exclude, categorical, numeric, skip, datetime, bins, binning, max_categories
        ),
        metric=metric,
        base=base,
        epsilon=epsilon,
        threshold=fixed,
        learned=learned,
        warn_threshold=None if warn_learned is not None else warn_fixed,
        warn_learned=warn_learned,
        thresholds=thresholds,
        fail_on=fail_on,
        max_missing_change=max_missing_change,
        max_new_category_share=max_new_category_share,
        schema=schema,
        alpha=alpha,
        correction=correction,
        grouping=_grouping(window, segment, reference_segment, max_segments),
        delimiter=delimiter,
        output=None if output == "-" else output,
        junit=junit,
        html=html,
        command=shlex.join(["kldiv", *redact_argv(current().argv, fs.option_names())]),
    )
    request.validate()  # before stdin is read
    if engine == "dask" and metric in ("ks", "wasserstein"):
        raise UsageError(
            f"--metric {metric} needs the reference's values, which --engine dask does not "
            "keep; use --engine local, or a profile made with it"
        )
    with _engine(
        engine, request.reference, scheduler, scheduler_file, workers, timeout
    ) as profiler:
        report = run_drift(request, read_stdin_if_needed(*tables), __version__, profiler)
    warnings = run_warnings(report)
    refuse_if_strict(strict, warnings)  # before any output: nothing written it doubts
    for warning in warnings:
        Messages.warn(warning)
    _write_files(request, report, format)
    _show(report, format, output, no_color)
    if report.n_errors:
        # Never silent, even with -q: an uncompared column is an error (exit 2 unless drift
        # elsewhere already fails the check, exit 1).
        failed = [c for c in report.columns if c.error]
        first = failed[0]
        current().error(
            f"{len(failed)} column{'s' if len(failed) > 1 else ''} could not be compared: "
            f"{', '.join(c.name for c in failed)} ({first.name}: {first.error})"
        )
    if report.drift:
        current().check_failed(failure_text(report))
        raise typer.Exit(ExitCode.CHECK_FAILED)
    if report.n_errors:
        raise typer.Exit(ExitCode.ERROR)


def _write_files(request: "DriftRequest", report: "DriftReport", fmt: str) -> None:
    """-o, --junit and --html: all of them replaced, or none (``fmt``: the kind of an -o
    that is a stream, such as /dev/stdout)."""
    from ..io.writers import output_kind, write_all
    from ..render.drift import drift_report, junit_xml
    from ..render.drift_html import html_page
    from ..render.files import report_writer

    items: list[tuple[str, Callable[[Any], Any]]] = []
    if request.output:
        kind = output_kind(request.output, ("json", "csv"), fmt=fmt)
        items.append((request.output, report_writer(kind, drift_report(report))))
    for path, render in ((request.junit, junit_xml), (request.html, html_page)):
        if path:
            items.append((path, _bytes_writer(render(report))))
    if items:
        write_all(items)
        for path, _ in items:
            Messages.note(f"wrote {path}")


def _bytes_writer(data: bytes) -> "Callable[[Any], Any]":
    return lambda f: f.write(data)


def _show(report: "DriftReport", fmt: str, output: str | None, no_color: bool) -> None:
    """The report on stdout (a coloured table on a terminal), unless it went to -o."""
    from ..render import resolve_format
    from ..render.drift import drift_report, print_table

    if output and output != "-":
        return
    env = current()
    if resolve_format(fmt, env.stdout_isatty) == "table":
        env.no_color = env.no_color or no_color
        print_table(report, env.stdout, env.color)
        return
    emit(drift_report(report), fmt, None, no_color)


@app.command()
@error_boundary
def profile(
    reference: Annotated[
        list[str],
        typer.Argument(
            metavar="REFERENCE...",
            help="Reference table, Parquet folder, quoted glob or files; '-' for stdin.",
            show_default=False,
        ),
    ],
    output: Annotated[
        str | None,
        typer.Option(
            "--output",
            "-o",
            metavar="PATH",
            help=f"Where the profile goes ({formats.kinds_text(('json',))}); default stdout.",
        ),
    ] = None,
    columns: ColumnsOpt = None,
    exclude: ExcludeOpt = None,
    categorical: CategoricalOpt = None,
    numeric: NumericOpt = None,
    skip: SkipOpt = None,
    datetime: DatetimeOpt = "skip",
    bins: BinsOpt = 10,
    binning: BinningOpt = "quantile",
    max_categories: MaxCategoriesOpt = 50,
    calibrate: Annotated[
        int,
        typer.Option(
            "--calibrate",
            metavar="N",
            help="Learn each column's thresholds: its measures between N random halves of "
            "the reference (mean and standard deviation), for 'drift --threshold learned'.",
        ),
    ] = 0,
    calibrate_seed: Annotated[
        int, typer.Option("--calibrate-seed", help="Seed of the --calibrate splits.")
    ] = 0,
    calibrate_by: Annotated[
        str | None,
        typer.Option(
            "--calibrate-by",
            metavar="COL:PERIOD",
            help="Learn from consecutive time chunks instead: the last N periods of COL, each "
            "against the whole reference (as NannyML's reference chunks).",
        ),
    ] = None,
    delimiter: DelimiterOpt = None,
    engine: EngineOpt = "local",
    scheduler: SchedulerOpt = None,
    scheduler_file: SchedulerFileOpt = None,
    workers: WorkersOpt = None,
    timeout: TimeoutOpt = 10.0,
    storage_option: StorageOpt = None,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Store a reference's roles, bins and counts, so drift checks need not read it again.

    'kldiv drift ref.profile.json CURRENT' gives exactly the results of the raw reference.

    Examples:

      kldiv profile sample_data/drift/users_reference.parquet -o ref.profile.json

      kldiv profile 'days/*.parquet' -o ref.profile.json --engine dask --workers 2

    --engine dask: the numeric columns of a Parquet reference are profiled by tasks on a
    Dask cluster (the same profile, bit for bit); other columns here.
    """
    from ..io.writers import atomic_write
    from ..jobs.profile import ProfileRequest, run_profile

    configure_storage(storage_option)
    request = ProfileRequest(
        reference=tuple(reference),
        rules=_rules(
            columns, exclude, categorical, numeric, skip, datetime, bins, binning, max_categories
        ),
        delimiter=delimiter,
        output=None if output == "-" else output,
        calibrate=calibrate,
        calibrate_seed=calibrate_seed,
        calibrate_by=_grouping(calibrate_by, None, False, 0, "--calibrate-by"),
    )
    request.validate()  # before stdin is read
    with _engine(
        engine, request.reference, scheduler, scheduler_file, workers, timeout
    ) as profiler:
        built = run_profile(request, read_stdin_if_needed(*reference), profiler)
    text = built.dumps().encode()
    if request.output:
        atomic_write(request.output, lambda f: f.write(text))
        Messages.note(f"wrote {request.output}: {len(built.columns)} columns, {built.rows} rows")
    else:
        current().stdout.write(text.decode())
