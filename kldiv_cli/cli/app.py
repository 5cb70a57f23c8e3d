"""The Typer application, its global options, and the console entry point."""

import os
import sys
from typing import Annotated

import typer

from .._version import __version__
from ..errors import ExitCode
from .boundary import Messages, _silence_stdout

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
