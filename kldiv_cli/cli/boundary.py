"""The one error boundary, and the environment a command runs in.

:class:`Environment` is everything a command may touch outside its arguments: the
three streams, whether they are terminals, the environment variables, and the run's
``--quiet``/``--debug``/``--no-color``. :func:`kldiv_cli.cli.app.run` sets one per run
(tests inject their own); commands get it with :func:`current`.

:func:`error_boundary` wraps every command and :func:`exit_code_for` is the only place
that turns an exception into a message and an :class:`~kldiv_cli.errors.ExitCode`:
library errors are one line, ``OSError`` by errno, anything unexpected one line too
(a traceback only with ``--debug``). Every line it prints, tracebacks included, passes
:func:`shown`: credentials redacted, controls escaped, length bounded.
"""

import contextvars
import errno
import functools
import os
import sys
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import IO, Any, ParamSpec, TypeVar

import typer

from ..errors import ExitCode, KldivError
from ..redact import redact
from ..text import clean, clean_lines, shorten


@dataclass
class Environment:
    """Streams, terminal facts and settings of one run."""

    stdout: IO[str]
    stderr: IO[str]
    stdin: IO[bytes] | None
    stdout_isatty: bool
    stderr_isatty: bool
    environ: Mapping[str, str] = field(default_factory=dict)
    quiet: bool = False
    debug: bool = False
    no_color: bool = False
    #: The command line after ``kldiv`` (reports record how they were made).
    argv: list[str] = field(default_factory=lambda: sys.argv[1:])

    @classmethod
    def from_process(cls) -> "Environment":
        """This process's streams (as they are now: a test runner may have replaced them)."""
        return cls(
            stdout=sys.stdout,
            stderr=sys.stderr,
            stdin=_stdin_buffer(),
            stdout_isatty=_isatty(sys.stdout),
            stderr_isatty=_isatty(sys.stderr),
            environ=os.environ,
        )

    @property
    def color(self) -> bool | None:
        """False when colour is off (``--no-color``, ``NO_COLOR``, ``TERM=dumb``), True when
        ``FORCE_COLOR`` asks for it, None to let the terminal decide."""
        if self.no_color or self.environ.get("NO_COLOR") or self.environ.get("TERM") == "dumb":
            return False
        if self.environ.get("FORCE_COLOR"):
            return True
        return None

    def _line(self, text: str) -> None:
        self.stderr.write(text + "\n")
        self.stderr.flush()

    def warn(self, text: str) -> None:
        """A warning on stderr, unless ``--quiet``."""
        if not self.quiet:
            self._line(f"kldiv: warning: {shown(text)}")

    def note(self, text: str) -> None:
        """A note on stderr ("wrote out.npy"), unless ``--quiet``."""
        if not self.quiet:
            self._line(f"kldiv: {shown(text)}")

    def error(self, text: str) -> None:
        """An error: always shown, always one line."""
        self._line(f"kldiv: error: {shown(text)}")

    def check_failed(self, text: str) -> None:
        """Why the exit code is 1: not an error, and never silenced by ``--quiet``."""
        self._line(f"kldiv: check failed: {shown(text)}")


def shown(text: str) -> str:
    """A message as it may reach the user: credentials redacted (a URL's user-info or
    query values, an option's secret), then controls escaped, then names and paths and
    the whole line cut to a bounded length (middle elided)."""
    return shorten(clean(redact(text)))


def _traceback(exc: BaseException, env: Environment) -> None:
    """``--debug``'s traceback, redacted as every message is (an exception's arguments
    and the source lines shown can hold a path with a credential)."""
    import traceback

    text = "".join(traceback.format_exception(exc))
    env.stderr.write(clean_lines(redact(text)))
    env.stderr.flush()


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):
        return False


def _stdin_buffer() -> IO[bytes] | None:
    stream = sys.stdin
    if stream is None:  # fd 0 closed when Python started
        return None
    return getattr(stream, "buffer", None)


_CURRENT: contextvars.ContextVar[Environment] = contextvars.ContextVar("kldiv_environment")


def current() -> Environment:
    """The environment of the running command (the process's, if none was set)."""
    env = _CURRENT.get(None)
    return env if env is not None else Environment.from_process()


def use(env: Environment) -> contextvars.Token[Environment]:
    """Make ``env`` the environment of what runs next (undo with :func:`restore`)."""
    return _CURRENT.set(env)


def restore(token: contextvars.Token[Environment]) -> None:
    """Undo the :func:`use` that returned ``token``: the environment before it is current again."""
    _CURRENT.reset(token)


def silence_stdout() -> None:
    """After a closed pipe or a failed write, point stdout at /dev/null, so that the
    interpreter's final flush cannot fail a second time."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass


def flush_stdout(env: Environment) -> None:
    """Flush stdout; a failure (a full disk, say) names stdout in its message."""
    try:
        env.stdout.flush()
    except BrokenPipeError:
        raise
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror, "stdout") from None


_ERRNO_TEXT = {
    errno.ENOSPC: "no space left on device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.EISDIR: "is a directory",
    errno.ENOTDIR: "a part of the path is not a directory",
    errno.ENAMETOOLONG: "file name too long",
    errno.ENOENT: "no such file or directory",
    errno.EROFS: "read-only file system",
    errno.EIO: "input/output error",
    errno.EMFILE: "too many open files",
    errno.ELOOP: "too many levels of symbolic links",
    errno.EBADF: "bad file descriptor (a standard stream is closed?)",
}


def _os_error_text(exc: OSError) -> str:
    reason = _ERRNO_TEXT.get(exc.errno or 0) or (exc.strerror or type(exc).__name__).lower()
    where = exc.filename if exc.filename is not None else None
    return f"{where}: {reason}" if where is not None else reason


def exit_code_for(exc: BaseException, env: Environment) -> ExitCode:
    """Print what ``exc`` means for the user (one line) and return the exit code.

    With ``--debug`` the (redacted) traceback comes first, except for the outcomes that
    are not errors: a closed pipe (exit 0, quietly) and Ctrl-C (exit 130).
    """
    if isinstance(exc, BrokenPipeError):
        silence_stdout()
        return ExitCode.OK
    if isinstance(exc, KeyboardInterrupt):
        env.error("interrupted")
        return ExitCode.INTERRUPTED
    if env.debug:
        _traceback(exc, env)
    if isinstance(exc, KldivError):
        env.error(str(exc))
        return exc.exit_code
    if isinstance(exc, MemoryError):
        env.error("out of memory; try a smaller file or a scalar reduction")
        return ExitCode.ERROR
    if isinstance(exc, OSError):
        env.error(_os_error_text(exc))
        return ExitCode.ERROR
    text = str(exc).strip()
    first = text.splitlines()[0] if text else ""
    hint = "" if env.debug else " (run with --debug for a traceback)"
    env.error(f"unexpected {type(exc).__name__}{': ' + first if first else ''}{hint}")
    return ExitCode.ERROR


P = ParamSpec("P")
R = TypeVar("R")


def error_boundary(command: Callable[P, R]) -> Callable[P, R]:
    """Run a command inside the boundary.

    Every command declares the shared ``--quiet``, ``--debug`` (and, if it prints,
    ``--no-color``) options; the boundary copies them into the run's
    :class:`Environment` before the command starts. Python warnings become one
    ``kldiv: warning:`` line each; NumPy's floating-point warnings are silenced (the
    diagnostics say where a NaN or inf came from, in words).
    """

    @functools.wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        env = _CURRENT.get(None)
        if env is not None:
            return _run_command(command, env, args, kwargs)
        # Called without run() (Typer's test runner): this process's streams, for this call.
        token = _CURRENT.set(Environment.from_process())
        try:
            return _run_command(command, _CURRENT.get(), args, kwargs)
        finally:
            _CURRENT.reset(token)

    return wrapper


def _run_command(
    command: Callable[..., R], env: Environment, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> R:
    env.quiet = bool(kwargs.get("quiet", False))
    env.debug = bool(kwargs.get("debug", False))
    env.no_color = bool(kwargs.get("no_color", False))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            warnings.showwarning = lambda message, *_a, **_k: env.warn(str(message))
            result = command(*args, **kwargs)
            flush_stdout(env)
            return result
    except (typer.Exit, SystemExit):
        raise
    except BaseException as exc:
        raise typer.Exit(exit_code_for(exc, env)) from None


class Messages:
    """Shorthands for the running command's :class:`Environment` messages."""

    @staticmethod
    def warn(text: str) -> None:
        current().warn(text)

    @staticmethod
    def note(text: str) -> None:
        current().note(text)

    @staticmethod
    def check_failed(text: str) -> None:
        current().check_failed(text)
