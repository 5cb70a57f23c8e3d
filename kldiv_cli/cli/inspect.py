"""``kldiv inspect``: what a data file holds, and the flags to use with it."""

from functools import partial
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ..choices import Missing
from ..io import formats
from .app import app
from .boundary import error_boundary
from .groups import Output, Side, Storage, inputs, output, storage, uses
from .output import emit
from .runner import run_command

if TYPE_CHECKING:
    from ..io.base import ReadOptions
    from ..jobs.gates import Verdict

SIDES = inputs(
    Side(
        "--file-format",
        "--key",
        "--columns",
        format_help=formats.format_help(),
        key_help=formats.key_help("FILE"),
        columns_help="Names, globs or 0-based indices.",
    ),
    missing=Missing.NAN,
    missing_help="Missing cells of the numeric columns: counted as NaN (default), or an error.",
)


@app.command()
@error_boundary
@uses(sides=SIDES, out=output(), storage=storage())
def inspect(
    file: Annotated[
        str, typer.Argument(metavar="FILE", help="A data file ('-' for stdin).", show_default=False)
    ],
    *,
    sides: "tuple[ReadOptions]",
    out: Output,
    storage: Storage,
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

    request = InspectRequest(file, *sides, out.file)
    run_command(request, run, partial(_show, out), storage)


def _show(out: Output, info: "dict[str, Any]") -> "Verdict":
    from ..jobs.gates import Verdict
    from ..render.reports import inspect_report

    emit(inspect_report(info), out.format, out.path)
    return Verdict()
