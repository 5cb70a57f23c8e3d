"""``kldiv drift`` and ``kldiv profile``: data drift, column by column."""

import sys
from typing import Annotated

import typer

from ..errors import ExitCode
from .app import app
from .boundary import Messages, error_boundary
from .options import (
    BinningOpt,
    BinsOpt,
    ColumnsOpt,
    DebugOpt,
    DelimiterOpt,
    FormatOpt,
    NoColorOpt,
    QuietOpt,
    _emit,
    _read_stdin_if_needed,
)


def _check_bins(bins: int, binning: str) -> None:
    from ..errors import UsageError

    if bins < 2:
        raise UsageError(f"--bins must be at least 2, got {bins}")
    if binning not in ("quantile", "uniform"):
        raise UsageError(f"unknown binning {binning!r}; choose quantile or uniform")


@app.command()
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

    from ..errors import UsageError
    from ..io.sources import ReadOptions, open_columns
    from ..io.writers import atomic_write, check_destination, output_kind
    from ..jobs import drift as d
    from ..render import resolve_format
    from ..render.drift import drift_report

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
        from ..render.drift import junit_xml

        xml = junit_xml(result)
        atomic_write(junit, lambda f: f.write(xml))
    if html:
        from ..render.drift import html_page

        page = html_page(result, reference, current)
        atomic_write(html, lambda f: f.write(page))
    _emit(drift_report(result), format, output, no_color)
    if result["drift"]:
        Messages.note(f"drift in {result['n_drifted']} of {result['n_columns']} columns")
        raise typer.Exit(ExitCode.CHECK_FAILED)
    if result["n_errors"]:
        raise typer.Exit(ExitCode.ERROR)


@app.command()
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

    from ..io.sources import ReadOptions, open_columns, select_columns
    from ..io.writers import atomic_write, output_kind
    from ..jobs import drift as d

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
