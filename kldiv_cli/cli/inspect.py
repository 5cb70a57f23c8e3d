"""``kldiv inspect``: what a data file holds, and the flags to use with it."""

from typing import Annotated

import typer

from .app import app
from .boundary import error_boundary
from .options import (
    DebugOpt,
    DelimiterOpt,
    FormatOpt,
    NoColorOpt,
    OutputOpt,
    QuietOpt,
    StorageOpt,
    configure_storage,
    emit,
    progress,
    read_options,
    read_stdin_if_needed,
)


@app.command()
@error_boundary
def inspect(
    file: Annotated[
        str, typer.Argument(metavar="FILE", help="A data file ('-' for stdin).", show_default=False)
    ],
    file_format: Annotated[
        str | None,
        typer.Option(
            "--file-format",
            metavar="FMT",
            help="npy, npz, csv, tsv, parquet, arrow, safetensors or kld.",
        ),
    ] = None,
    key: Annotated[
        str | None, typer.Option("--key", help="Array (.npz) or tensor (.safetensors) name.")
    ] = None,
    columns: Annotated[
        str | None,
        typer.Option("--columns", metavar="COLS", help="Names, globs or 0-based indices."),
    ] = None,
    delimiter: DelimiterOpt = None,
    missing: Annotated[
        str,
        typer.Option(
            "--missing",
            metavar="[nan|error]",
            help="Missing cells of the numeric columns: counted as NaN (default), or an error.",
        ),
    ] = "nan",
    storage_option: StorageOpt = None,
    output: OutputOpt = None,
    format: FormatOpt = "auto",
    quiet: QuietOpt = False,
    no_color: NoColorOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Describe a data file: shape, dtype, NaN/inf counts, range, row sums, and what it
    looks like (probabilities, log-probabilities, logits, labels), with the flags to use.
    For a table, every column: its type, missing cells, whether compute/compare use it
    (and why not) and the role drift gives it (and why).

    Example:

      kldiv inspect sample_data/teacher_logits.npy

      kldiv inspect titanic.csv -o columns.csv
    """
    from ..jobs.inspect import InspectRequest
    from ..jobs.inspect import inspect as run
    from ..render import resolve_format
    from ..render.reports import inspect_report

    resolve_format(format, False)
    options = read_options(
        file_format,
        key,
        columns,
        delimiter,
        missing,
        key_option="--key",
        format_option="--file-format",
    )
    request = InspectRequest(file, options, output if output != "-" else None)
    request.validate()  # before stdin is read
    configure_storage(storage_option)
    with progress(quiet) as on_progress:
        result = run(request, read_stdin_if_needed(file), on_progress)
    emit(inspect_report(result), format, output, no_color)
