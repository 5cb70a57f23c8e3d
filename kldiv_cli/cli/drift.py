"""``kldiv drift`` and ``kldiv profile``: data drift, column by column.

Each command builds its request from its options (parsed once: thresholds, --fail-on,
--window, the choices) and hands it to :func:`.runner.run_command`, which validates it,
reads stdin, runs the job with the engine's profiler and ends with the report's verdict.
"""

from functools import partial
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ..choices import Base, Binning, Correction, DatetimeRule, SchemaRule
from ..io import formats
from ..jobs.drift_measures import METRICS
from .app import app
from .boundary import Messages, current, error_boundary
from .groups import Cluster, Output, Side, Storage, cluster, inputs, output, storage, uses
from .options import BinsOpt, ColumnsOpt, ParsedType, StrictOpt, choice
from .output import emit
from .runner import run_command

if TYPE_CHECKING:
    from collections.abc import Callable

    from ..io.base import ReadOptions
    from ..jobs.drift import DriftReport, DriftRequest
    from ..jobs.drift_groups import Period
    from ..jobs.gates import Verdict
    from ..jobs.profile import Profile, ProfileRequest


def _threshold(option: str) -> "Callable[[str], tuple[float, float | None]]":
    def parse(text: str) -> tuple[float, float | None]:
        from ..jobs.drift_request import parse_threshold

        return parse_threshold(text, option)

    return parse


def _fail_on(text: str) -> str:
    from ..jobs.drift_request import parse_fail_on

    parse_fail_on(text)  # checked here; the report keeps the rule's text
    return text


def _metric(text: str) -> str:
    from ..errors import UsageError

    if text not in METRICS:
        raise UsageError(f"unknown metric {text!r}; choose one of {', '.join(METRICS)}")
    return text


def _window(option: str) -> "Callable[[str], tuple[str, Period]]":
    def parse(text: str) -> "tuple[str, Period]":
        from ..jobs.drift_groups import parse_window

        return parse_window(text, option)

    return parse


def column_rules() -> "Callable[..., Any]":
    """The options that say which columns are checked and how each is binned (drift's
    and profile's), as one ``ColumnRules``."""

    def build(
        columns: ColumnsOpt = None,
        exclude: Annotated[
            list[str] | None,
            typer.Option(
                "--exclude", metavar="COLS", help="Leave these columns out (names or globs)."
            ),
        ] = None,
        categorical: Annotated[
            list[str] | None,
            typer.Option(
                "--categorical", metavar="COLS", help="Compare these columns as categories."
            ),
        ] = None,
        numeric: Annotated[
            list[str] | None,
            typer.Option(
                "--numeric", metavar="COLS", help="Compare these columns as numbers (binned)."
            ),
        ] = None,
        skip: Annotated[
            list[str] | None,
            typer.Option(
                "--skip", metavar="COLS", help="List these columns as skipped, unchecked."
            ),
        ] = None,
        datetime: Annotated[
            DatetimeRule,
            choice(
                DatetimeRule,
                "--datetime",
                help="Date/time columns: skipped (default) or binned as numbers.",
            ),
        ] = DatetimeRule.SKIP,
        bins: BinsOpt = 10,
        binning: Annotated[
            Binning, choice(Binning, "--binning", help="Quantile or equal-width bins.")
        ] = Binning.QUANTILE,
        max_categories: Annotated[
            int,
            typer.Option(
                "--max-categories",
                help="Keep the most frequent reference categories; pool the rest.",
            ),
        ] = 50,
    ) -> Any:
        from ..jobs.drift_request import ColumnRules

        return ColumnRules(
            columns=columns,
            exclude=tuple(exclude or ()),
            categorical=tuple(categorical or ()),
            numeric=tuple(numeric or ()),
            skip=tuple(skip or ()),
            datetime=datetime.value,
            bins=bins,
            binning=binning.value,
            max_categories=max_categories,
        )

    return build


def _profiler(where: Cluster, request: "DriftRequest | ProfileRequest") -> Any:
    """The reference's profiler for ``--engine`` (its entry in engines.registry): None
    locally; with dask, tasks on the cluster for a Parquet reference, open while the job
    runs."""
    from ..engines.registry import engine as named

    return named(where.engine).profiler(request.reference, where.options, Messages.note)


@app.command()
@error_boundary
@uses(
    rules=column_rules(),
    sides=inputs(
        Side(key="--key", key_help=formats.key_help("REFERENCE and CURRENT")),
        Side(key="--reference-key", key_help="As --key, for REFERENCE only."),
        Side(key="--current-key", key_help="As --key, for CURRENT only."),
        missing=None,
    ),
    out=output(f"Write the report ({formats.kinds_text(('json', 'csv'))})."),
    where=cluster(),
    storage=storage(),
)
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
    epsilon: Annotated[
        float,
        typer.Option("--epsilon", help="Smoothing mass spread over a column's bins; 0: exact."),
    ] = 1e-4,
    metric: Annotated[
        str,
        typer.Option(
            "--metric",
            click_type=ParsedType("metric", _metric, f"[{'|'.join(METRICS)}]", METRICS),
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
        Correction,
        choice(
            Correction,
            "--correction",
            help="With --metric ks or chi2: correct the p-values for the number of columns "
            "tested (Bonferroni, or Benjamini-Hochberg's false discovery rate).",
        ),
    ] = Correction.NONE,
    base: Annotated[
        Base, choice(Base, "--base", help="Logarithm base: nats (e), bits (2) or 10.")
    ] = Base.E,
    threshold: Annotated[
        Any,
        typer.Option(
            "--threshold",
            click_type=ParsedType(
                "threshold", _threshold("--threshold"), "X|learned[:K]", ("learned",)
            ),
            help="Drift when a column's metric is above this; learned[:K]: at the mean + K "
            "standard deviations (K = 3) a profile made with --calibrate learned for it.",
        ),
    ] = "0.1",
    warn_threshold: Annotated[
        Any,
        typer.Option(
            "--warn-threshold",
            click_type=ParsedType(
                "threshold", _threshold("--warn-threshold"), "X|learned[:K]", ("learned",)
            ),
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
            click_type=ParsedType("rule", _fail_on, "RULE"),
            help="Dataset verdict: any (default), share:F (a share of columns), count:N.",
        ),
    ] = "any",
    schema: Annotated[
        SchemaRule,
        choice(
            SchemaRule,
            "--schema",
            help="Schema changes (a column removed, added, of another type): fail the check "
            "(default) or list them as warnings.",
        ),
    ] = SchemaRule.FAIL,
    window: Annotated[
        Any,
        typer.Option(
            "--window",
            click_type=ParsedType("window", _window("--window"), "COL:PERIOD"),
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
    junit: Annotated[
        str | None,
        typer.Option("--junit", metavar="PATH", help="JUnit XML (.xml): a testcase per column."),
    ] = None,
    html: Annotated[
        str | None,
        typer.Option("--html", metavar="PATH", help="A self-contained HTML report (.html)."),
    ] = None,
    strict: StrictOpt = False,
    *,
    rules: Any,
    sides: "tuple[ReadOptions, ...]",
    out: Output,
    where: Cluster,
    storage: Storage,
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

    from ..io import fs
    from ..jobs.drift import DriftRequest
    from ..jobs.drift_groups import grouping_of
    from ..redact import redact_argv

    fixed, learned = threshold
    warn_fixed, warn_learned = warn_threshold if warn_threshold is not None else (None, None)
    request = DriftRequest(
        reference=tuple(tables[:1]),
        current=tuple(tables[1:]),
        rules=rules,
        metric=metric,
        base=base.value,
        epsilon=epsilon,
        threshold=fixed,
        learned=learned,
        warn_threshold=None if warn_learned is not None else warn_fixed,
        warn_learned=warn_learned,
        thresholds=thresholds,
        fail_on=fail_on,
        max_missing_change=max_missing_change,
        max_new_category_share=max_new_category_share,
        schema=schema.value,
        alpha=alpha,
        correction=correction.value,
        grouping=grouping_of(window, segment, reference_segment, max_segments),
        delimiter=sides[0].delimiter,
        key=sides[0].key,
        reference_key=sides[1].key,
        current_key=sides[2].key,
        output=out.file,
        junit=junit,
        html=html,
        command=shlex.join(["kldiv", *redact_argv(current().argv, fs.option_names())]),
    )
    run_command(
        request,
        partial(_run_drift, where),
        partial(_show, out, strict, request),
        storage,
        check=partial(_check, where),
    )


def _check(where: Cluster, request: "DriftRequest") -> None:
    from ..errors import UsageError

    request.validate()
    if where.engine == "dask" and request.metric in ("ks", "wasserstein"):
        raise UsageError(
            f"--metric {request.metric} needs the reference's values, which --engine dask "
            "does not keep; use --engine local, or a profile made with it"
        )


def _run_drift(where: Cluster, request: "DriftRequest", stdin: bytes | None, on: Any) -> Any:
    from .._version import __version__
    from ..jobs.drift import run_drift

    with _profiler(where, request) as profiler:
        return run_drift(request, stdin, __version__, profiler, on)


def _show(out: Output, strict: bool, request: "DriftRequest", report: "DriftReport") -> "Verdict":
    """Warnings (each an error with --strict, before any output), the output files, the
    report on stdout; the verdict."""
    from ..jobs.diagnostics import refuse_if_strict
    from ..render.drift import run_warnings

    warnings = run_warnings(report)
    refuse_if_strict(strict, warnings)  # before any output: nothing written it doubts
    for warning in warnings:
        Messages.warn(warning)
    _write_files(request, report, out.format)
    _print(report, out)
    return report.verdict


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


def _print(report: "DriftReport", out: Output) -> None:
    """The report on stdout (a coloured table on a terminal), unless it went to -o."""
    from ..render import resolve_format
    from ..render.drift import drift_report, print_table

    if out.file:
        return
    env = current()
    if resolve_format(out.format, env.stdout_isatty) == "table":
        print_table(report, env.stdout, env.color)
        return
    emit(drift_report(report), out.format, None)


@app.command()
@error_boundary
@uses(
    rules=column_rules(),
    side=inputs(Side(key="--key", key_help=formats.key_help("REFERENCE")), missing=None),
    where=cluster(),
    storage=storage(),
)
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
        Any,
        typer.Option(
            "--calibrate-by",
            click_type=ParsedType("window", _window("--calibrate-by"), "COL:PERIOD"),
            help="Learn from consecutive time chunks instead: the last N periods of COL, each "
            "against the whole reference (as NannyML's reference chunks).",
        ),
    ] = None,
    *,
    rules: Any,
    side: "tuple[ReadOptions, ...]",
    where: Cluster,
    storage: Storage,
) -> None:
    """Store a reference's roles, bins and counts, so drift checks need not read it again.

    'kldiv drift ref.profile.json CURRENT' gives exactly the results of the raw reference.

    Examples:

      kldiv profile sample_data/drift/users_reference.parquet -o ref.profile.json

      kldiv profile 'days/*.parquet' -o ref.profile.json --engine dask --workers 2

    --engine dask: the numeric columns of a Parquet reference are profiled by tasks on a
    Dask cluster (the same profile, bit for bit); other columns here.
    """
    from ..jobs.drift_groups import chunks_of
    from ..jobs.profile import ProfileRequest

    request = ProfileRequest(
        reference=tuple(reference),
        rules=rules,
        delimiter=side[0].delimiter,
        key=side[0].key,
        output=None if output == "-" else output,
        calibrate=calibrate,
        calibrate_seed=calibrate_seed,
        calibrate_by=chunks_of(calibrate_by, "--calibrate-by"),
    )
    run_command(request, partial(_run_profile, where), partial(_write_profile, request), storage)


def _run_profile(where: Cluster, request: "ProfileRequest", stdin: bytes | None, _: Any) -> Any:
    from ..jobs.profile import run_profile

    with _profiler(where, request) as profiler:
        return run_profile(request, stdin, profiler)


def _write_profile(request: "ProfileRequest", built: "Profile") -> "Verdict":
    from ..io.writers import atomic_write
    from ..jobs.gates import Verdict

    text = built.dumps().encode()
    target = request.output
    if target:
        atomic_write(target, lambda f: f.write(text))
        Messages.note(f"wrote {target}: {len(built.columns)} columns, {built.rows} rows")
    else:
        current().stdout.write(text.decode())
    return Verdict()
