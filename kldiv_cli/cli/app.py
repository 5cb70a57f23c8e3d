"""The Typer application, its global options, and the process's entry point.

:func:`run` is the boundary of a whole run: it sets the :class:`~.boundary.Environment`,
turns Click's usage errors into one line that names the subcommand's help, and makes
sure a failing stdout (a full disk, a closed pipe) ends in one line, never a traceback.
"""

import functools
import importlib
import os
import sys
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import typer

# Typer 0.27 carries its own Click (pinned in pyproject); its usage errors carry the context.
from typer._click import exceptions as click
from typer._click.core import Command as ClickCommand
from typer._click.core import Context, Parameter
from typer.core import TyperCommand, TyperGroup
from typer.main import get_params_convertors_ctx_param_name_from_function

from .._version import __version__
from ..errors import ExitCode
from .boundary import (
    Environment,
    current,
    exit_code_for,
    flush_stdout,
    restore,
    silence_stdout,
    standard_streams,
    use,
)
from .groups import GROUPS
from .options import DebugOpt, NoColorOpt, QuietOpt

# kldiv runs its own threads over cache-sized chunks; OpenBLAS's threads (which
# spin between calls) would only compete with them for the cores. Must be set
# before NumPy loads; a user's own setting wins.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


CommandFunction = TypeVar("CommandFunction", bound=Callable[..., Any])


def _flags() -> Any:
    """The flags of every command and of the app, as Typer parameters."""

    def flags(
        quiet: QuietOpt = False, no_color: NoColorOpt = False, debug: DebugOpt = False
    ) -> None:
        """The boundary applies them (:func:`.boundary.error_boundary`)."""

    return flags


def _params_of(group: Callable[..., Any]) -> list[Parameter]:
    """The Click parameters Typer makes of a group's signature (see :mod:`.groups`)."""
    return list(get_params_convertors_ctx_param_name_from_function(group)[0])


class Command(TyperCommand):
    """A kldiv command: the options of its groups (:func:`.groups.uses`) after its own,
    then ``--quiet``, ``--no-color`` and ``--debug`` (also accepted before the command:
    ``kldiv -q compute ...``).

    Its usage line names its arguments as the help and docs write them,
    ``INPUT TARGET``: Typer 0.27 wraps required ones in braces (``{INPUT} {TARGET}``)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        declared = {p.name for p in self.params}
        extra = [p for g in getattr(self.callback, GROUPS, ()) for p in _params_of(g)]
        flags = [p for p in _params_of(_flags()) if p.name not in declared]
        self.params = [*self.params, *extra, *flags]

    def collect_usage_pieces(self, ctx: Context) -> list[str]:
        return [
            p[1:-1] if p.startswith("{") and p.endswith("}") else p
            for p in super().collect_usage_pieces(ctx)
        ]


#: Each command and the module of this package that defines it, in the order ``--help``
#: lists them. A run imports only its command's module and builds only its command
#: (:class:`Commands`): the other modules' source and Typer's reading of their options
#: were a third of a small job's start-up.
COMMANDS = {
    "compare": "compare",
    "compute": "compute",
    "drift": "drift",
    "profile": "drift",
    "estimate": "estimate",
    "gaussian": "gaussian",
    "inspect": "inspect",
    "topk": "topk",
}


class Commands(TyperGroup):
    """kldiv's group of commands, each loaded from :data:`COMMANDS` when first asked for
    (every one for ``--help``, a misspelt name's suggestions, and completion)."""

    def list_commands(self, ctx: Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: Context, cmd_name: str) -> ClickCommand | None:
        if cmd_name not in self.commands:
            # An unknown name loads every command, for Click's suggestions.
            for name in [cmd_name] if cmd_name in COMMANDS else COMMANDS:
                self._load(name)
        return self.commands.get(cmd_name)

    def _load(self, name: str) -> None:
        if name in self.commands:
            return
        importlib.import_module(f"{__package__}.{COMMANDS[name]}")  # registers it on app
        for info in app.registered_commands:
            if info.callback is None:
                continue
            if (info.name or typer.main.get_command_name(info.callback.__name__)) == name:
                command = typer.main.get_command_from_info(
                    info,
                    pretty_exceptions_short=app.pretty_exceptions_short,
                    rich_markup_mode=app.rich_markup_mode,
                )
                self.add_command(command)


class Application(typer.Typer):
    """kldiv's Typer application: every command is a :class:`Command`."""

    def command(
        self, *args: Any, cls: type[TyperCommand] | None = None, **kwargs: Any
    ) -> Callable[[CommandFunction], CommandFunction]:
        return super().command(*args, cls=cls or Command, **kwargs)


app = Application(
    name="kldiv",
    help=(
        "KL divergence for data files: PyTorch's KLDivLoss, model comparison, RL estimators, "
        "Gaussian KL and data drift, without PyTorch.\n\n"
        "  kldiv compute student.npy teacher.parquet -r batchmean\n\n"
        "  kldiv inspect logits.npy\n\n"
        "Exit codes: 0 success, 1 a check failed (a gate such as --fail-above, drift found), "
        "2 error, 130 interrupted."
    ),
    rich_markup_mode=None,
    cls=Commands,
    add_completion=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)


def _version_callback(value: bool) -> None:
    if value:
        env = current()
        env.stdout.write(f"{__version__}\n")
        if "--verbose" in env.argv:
            # Eager --version runs before --verbose is processed: read the command line.
            from ..core.kernel import accelerator

            env.stdout.write(f"kernel: {accelerator()}\n")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool,
        typer.Option(
            "--version", "-V", callback=_version_callback, is_eager=True, help="Print the version."
        ),
    ] = False,
    quiet: QuietOpt = False,
    no_color: NoColorOpt = False,
    debug: DebugOpt = False,
    verbose: Annotated[
        bool,
        typer.Option(
            "--verbose",
            help="With --version: also the summation kernel in use (compiled or NumPy).",
        ),
    ] = False,
) -> None:
    """KL divergence for data files."""


@functools.cache
def click_command() -> ClickCommand:
    """The Click group of :data:`app`, built once per process. Typer builds it anew on
    every call of ``app``, with every command whose module is loaded: a process that runs
    many commands (the tests run thousands in one) spent 5-10 ms on each rebuild."""
    return typer.main.get_command(app)


def _usage_error(exc: click.UsageError, env: Environment, bare: bool) -> ExitCode:
    """One line naming the help of the command that was misused; the short usage first
    when the command got no arguments at all (``bare``)."""
    ctx = exc.ctx
    path = ctx.command_path if ctx is not None else "kldiv"
    if ctx is not None and bare:
        env.show(ctx.get_usage() + "\n")
    message = exc.format_message().rstrip(".")
    if isinstance(exc, click.MissingParameter):
        message = message[0].lower() + message[1:]
    elif message == "Missing command" and ctx is not None:
        commands = ctx.command.list_commands(ctx) if isinstance(ctx.command, TyperGroup) else []
        message = f"missing command; choose one of {', '.join(commands)}"
    env.error(f"{message} (see '{path} --help')")
    return ExitCode.ERROR


def run(argv: list[str] | None = None, env: Environment | None = None) -> ExitCode:
    """Run the command line ``argv`` in ``env`` (this process's streams by default) and
    return the exit code. The tests call this in-process."""
    env = env or Environment.from_process()
    args = sys.argv[1:] if argv is None else argv
    env.argv = list(args)
    token = use(env)
    try:
        try:
            code = click_command()(args=argv, prog_name="kldiv", standalone_mode=False)
        except click.UsageError as exc:
            code = _usage_error(exc, env, bare=len(args) <= 1)
        except typer.Abort:
            env.error("interrupted")
            code = ExitCode.INTERRUPTED
        except click.ClickException as exc:
            env.error(exc.format_message())
            code = ExitCode.ERROR
        except KeyboardInterrupt as exc:
            code = exit_code_for(exc, env)
        except SystemExit as exc:
            # Typer ends a run whose help or usage met a closed pipe with sys.exit(1); a
            # closed pipe is exit 0, quietly, everywhere else.
            if not isinstance(exc.__context__, BrokenPipeError):
                raise
            code = ExitCode.OK
            silence_stdout()
        except OSError as exc:  # outside a command: Click printing help or usage to stdout
            code = exit_code_for(OSError(exc.errno, exc.strerror, "stdout"), env)
            silence_stdout()
        try:
            flush_stdout(env)
        except OSError as exc:  # a full disk or a closed pipe under stdout
            code = exit_code_for(exc, env) if code == ExitCode.OK else code
            silence_stdout()
        return ExitCode(int(code or 0))
    finally:
        restore(token)


def main(argv: list[str] | None = None) -> None:
    """The ``kldiv`` console script: the process's streams made safe, then the run."""
    standard_streams()
    leave(int(run(argv)))


def leave(code: int) -> None:
    """End the process with ``code`` once the run is over.

    With pyarrow loaded, the interpreter's own teardown is skipped: Arrow's C++ thread
    pools destroyed at exit can abort a process whose work is done and written
    ("terminate called without an active exception", exit -6; apache/arrow#34314, seen
    here on a loaded machine). Everything kldiv opens (output files, Dask clients and
    scratch folders) is closed before :func:`run` returns; the standard streams are
    flushed here, and a flush that fails leaves the exit code as it is.
    """
    if "pyarrow" not in sys.modules:
        sys.exit(code)
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)
