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

The standard streams are taken as they really are (:func:`standard_streams`, once per
process): a closed stdout (``>&-``) is an error only for a command that writes to it, a
closed stderr swallows messages without changing the exit code, and every write to
stdout either lands whole or is an error (a short write under ``ulimit -f`` raises
``EFBIG``). A command's stdout is held until it ends (:class:`HeldOutput`): a command
that fails leaves nothing on stdout beside its error line.
"""

import contextvars
import errno
import functools
import inspect
import io
import os
import signal
import sys
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import IO, Any, ParamSpec, TypeVar, cast

import typer
from typer._click.globals import get_current_context

from ..errors import ExitCode, KldivError
from ..redact import redact
from ..text import clean, clean_lines, shorten
from .limits import check_numbers


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
        """This process's streams (as they are now: a test runner may have replaced them);
        a stream that Python found closed at start-up (None) is a :class:`ClosedStream`."""
        return cls(
            stdout=sys.stdout if sys.stdout is not None else _closed("stdout"),
            stderr=sys.stderr if sys.stderr is not None else _closed("stderr"),
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

    def show(self, text: str) -> None:
        """``text`` on stderr as it is (a usage, a traceback). A message that cannot be
        shown (stderr closed, a full disk, a closed pipe) does not become an error of its
        own: the exit code says what happened."""
        try:
            self.stderr.write(text)
            self.stderr.flush()
        except (OSError, ValueError):
            pass

    def _line(self, text: str) -> None:
        self.show(text + "\n")

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
        """Why the exit code is 1: not an error, and never silenced by ``--quiet``. The
        output it judges is written first: if stdout cannot take it, that is the one
        error line (exit 2), with no verdict beside it."""
        if isinstance(self.stdout, HeldOutput):
            self.stdout.commit()
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
    env.show(clean_lines(redact(text)))


class ClosedStream(io.TextIOBase):
    """A standard stream whose descriptor was closed when the process started (``>&-``,
    ``2>&-``). Writing text to a closed stdout is an ``EBADF`` error naming it (exit 2,
    one line); a closed stderr takes messages and drops them. Writing nothing, and
    flushing, are fine: a command whose output goes to ``-o`` never needs stdout."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self.stream = name

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        if text and self.stream == "stdout":
            raise OSError(errno.EBADF, "is closed", "stdout")
        return len(text)

    def isatty(self) -> bool:
        return False


def _closed(name: str) -> IO[str]:
    # io.TextIOBase is a text stream, but not typing.IO[str] to typeshed.
    return cast("IO[str]", ClosedStream(name))


class HeldOutput(io.TextIOBase):
    """A command's stdout, held until the command ends: :meth:`commit` writes it (a
    command that returns, or exits with its own code), :meth:`discard` drops it (a
    command that fails), so an error line never stands beside half an output. Holds
    the strings it is given, not copies: a report written in one piece costs nothing
    more."""

    def __init__(self, target: IO[str]) -> None:
        super().__init__()
        self.target = target
        self._parts: list[str] = []

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self._parts.append(text)
        return len(text)

    def flush(self) -> None:
        """Nothing to do until :meth:`commit`."""

    def isatty(self) -> bool:
        return _isatty(self.target)

    def fileno(self) -> int:
        return self.target.fileno()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self.target, "encoding", None) or "utf-8"

    def discard(self) -> None:
        self._parts.clear()

    def commit(self) -> None:
        """Write what was held, then flush; a failure names stdout (a BrokenPipeError
        stays one: a closed pipe is not an error)."""
        parts, self._parts = self._parts, []
        try:
            for part in parts:
                self.target.write(part)
            self.target.flush()
        except BrokenPipeError:
            raise
        except OSError as exc:
            raise OSError(exc.errno, exc.strerror, "stdout") from None


def standard_streams() -> None:
    """Make this process's standard streams safe to rely on; the console script calls it
    once, before anything else.

    - A descriptor 0, 1 or 2 that is closed gets ``/dev/null``, opened so that it still
      cannot be written (1, 2) or read (0): no file kldiv opens later takes its number
      and receives output meant for the terminal. ``sys.stdout``/``sys.stderr`` become
      :class:`ClosedStream` objects.
    - stdout is rewrapped buffered, with ``errors="backslashreplace"``: a buffered
      writer retries short writes, so a file-size limit (``ulimit -f``) or a full disk
      raises instead of cutting the output silently (an unbuffered stdout, as
      ``PYTHONUNBUFFERED`` makes it, drops the rest of a short write), and a name an
      ASCII locale cannot encode (``LC_ALL=C``) is shown escaped, never a crash.
    - ``SIGXFSZ`` is ignored, so exceeding the limit is an ``EFBIG`` error, not death.
    """
    closed = []
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            closed.append(fd)
    for fd in closed:
        # /dev/null opened the wrong way round: the number is taken, and a write to
        # descriptor 1 (``-o /dev/stdout``) still fails as on a closed one.
        spare = os.open(os.devnull, os.O_WRONLY if fd == 0 else os.O_RDONLY)
        if spare != fd:
            os.dup2(spare, fd)
            os.close(spare)
    if hasattr(signal, "SIGXFSZ"):
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    if 1 in closed or sys.stdout is None:
        sys.stdout = ClosedStream("stdout")
    elif isinstance(sys.stdout, io.TextIOWrapper) and _fileno(sys.stdout) is not None:
        old = sys.stdout
        old.flush()
        sys.stdout = io.TextIOWrapper(
            io.BufferedWriter(io.FileIO(old.fileno(), "w", closefd=False)),
            encoding=old.encoding,
            errors="backslashreplace",
            line_buffering=old.isatty(),
        )
    if 2 in closed or sys.stderr is None:
        sys.stderr = ClosedStream("stderr")
    elif isinstance(sys.stderr, io.TextIOWrapper):
        sys.stderr.reconfigure(errors="backslashreplace")


def _fileno(stream: Any) -> int | None:
    """The descriptor under ``stream``, or None (a test runner's capture has none)."""
    try:
        return int(stream.fileno())
    except (AttributeError, ValueError, OSError):
        return None


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
    errno.EFBIG: "file too large (a file size limit, ulimit -f?)",
    errno.EPIPE: "broken pipe",
}


def _os_error_text(exc: OSError) -> str:
    if exc.errno == errno.EBADF and exc.filename == "stdout":
        return "stdout: is closed; give -o FILE, or leave stdout open"
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

    Every command gets the flags ``--quiet``, ``--debug`` and ``--no-color``
    (:class:`.app.Command` adds them; also given before the command, ``kldiv -q
    compute``); the boundary copies them into the run's :class:`Environment` before the
    command starts, and hands them to the command only if it declares them. Python
    warnings become one ``kldiv: warning:`` line each; NumPy's floating-point warnings
    are silenced (the diagnostics say where a NaN or inf came from, in words).
    """
    declared = set(inspect.signature(command).parameters)

    @functools.wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        flags = {name: bool(kwargs.get(name)) for name in FLAGS}
        for name in FLAGS:
            if name not in declared:
                kwargs.pop(name, None)
        env = _CURRENT.get(None)
        if env is not None:
            return _run_command(command, env, flags, args, kwargs)
        # Called without run() (Typer's test runner): this process's streams, for this call.
        token = _CURRENT.set(Environment.from_process())
        try:
            return _run_command(command, _CURRENT.get(), flags, args, kwargs)
        finally:
            _CURRENT.reset(token)

    return wrapper


#: The flags every command takes (:func:`error_boundary`).
FLAGS = ("quiet", "debug", "no_color")


def _app_flags() -> dict[str, bool]:
    """The flags given before the command (``kldiv --quiet compute``): the app's own."""
    ctx = get_current_context(silent=True)
    params = ctx.find_root().params if ctx is not None else {}
    return {name: bool(params.get(name)) for name in FLAGS}


def _run_command(
    command: Callable[..., R],
    env: Environment,
    flags: dict[str, bool],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> R:
    before = _app_flags()
    env.quiet = flags["quiet"] or before["quiet"]
    env.debug = flags["debug"] or before["debug"]
    env.no_color = flags["no_color"] or before["no_color"]
    real = env.stdout
    held = HeldOutput(real)
    env.stdout = cast("IO[str]", held)
    try:
        check_numbers(kwargs)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                warnings.showwarning = lambda message, *_a, **_k: env.warn(str(message))
                result = command(*args, **kwargs)
        except (typer.Exit, SystemExit):
            held.commit()  # the command's own exit code: its output is complete
            raise
        held.commit()
        return result
    except (typer.Exit, SystemExit):
        raise
    except BaseException as exc:
        held.discard()
        raise typer.Exit(exit_code_for(exc, env)) from None
    finally:
        env.stdout = real


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
