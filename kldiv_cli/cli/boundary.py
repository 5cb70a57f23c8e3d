"""The one error boundary: every exception a command raises becomes one line and an exit code."""

import functools
import os
import sys

import typer

from ..errors import ExitCode, KldivError


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
