"""Output files that never lose data.

Every output is written atomically: a temporary file in the destination's folder,
fsync, then ``os.replace``. On any failure (Ctrl-C, SIGTERM and SIGHUP included) the
temporary files are removed and existing files keep their old content. Before any
work, :func:`check_outputs` refuses a run whose outputs would replace one of its
inputs or each other; :func:`write_all` writes several outputs so that either all
of them are replaced or none is.
"""

from __future__ import annotations

import errno
import math
import os
import re
import signal
import stat
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from types import FrameType
from typing import TYPE_CHECKING, Any, BinaryIO, TypeVar

from ..errors import OutputError, UsageError
from ..text import clean
from . import fs
from .formats import (
    OUTPUT_EXTENSION,
    OUTPUT_EXTENSIONS,
    PAGE_EXTENSIONS,
    output_extension_kind,
)
from .paths import dataset_files

if TYPE_CHECKING:
    import numpy as np

T = TypeVar("T")


#: Signals that remove the temporary files before the process dies of them.
CLEANUP_SIGNALS = ("SIGINT", "SIGTERM", "SIGHUP")
#: Room the temporary name needs beside the file's own name: ``.`` NAME ``.`` 8 random
#: characters ``.tmp``.
_TEMP_EXTRA = len("..") + 8 + len(".tmp")


#: Names of the process's own descriptors: written to the descriptor, never reopened
#: (reopening ``/dev/stdout`` would truncate a file that ``>>`` appends to).
_DESCRIPTOR = re.compile(r"/(?:dev|proc/self)/fd/([0-9]+)")
_STANDARD = {"-": 1, "/dev/stdout": 1, "/dev/stderr": 2}


def stream_fd(path: str) -> int | None:
    """The descriptor ``path`` names (``-`` and ``/dev/stdout`` 1, ``/dev/stderr`` 2,
    ``/dev/fd/N`` and ``/proc/self/fd/N`` N), else None."""
    if path in _STANDARD:
        return _STANDARD[path]
    match = _DESCRIPTOR.fullmatch(path)
    return int(match.group(1)) if match else None


def is_stream(path: str) -> bool:
    """An output written as a stream, in place: a descriptor (:func:`stream_fd`) or an
    existing file that is neither regular nor a folder (``/dev/null``, a terminal, a
    FIFO). Its kind comes from ``--format``, not from an extension it does not have."""
    if stream_fd(path) is not None:
        return True
    if fs.is_remote(path):
        return False
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return not (stat.S_ISREG(mode) or stat.S_ISDIR(mode))


def check_page(path: str, option: str = "--html") -> None:
    """``path`` names an HTML page (:data:`~.formats.PAGE_EXTENSIONS`), or is a stream
    (whatever its name)."""
    if path == "-" or is_stream(path):
        return
    if os.path.splitext(path)[1].lower() not in PAGE_EXTENSIONS:
        raise UsageError(
            f"{option} writes {' or '.join(PAGE_EXTENSIONS)} files, got {clean(path)!r}"
        )


def output_kind(
    path: str,
    allowed: Sequence[str] | None = None,
    option: str = "--output",
    fmt: str | None = None,
) -> str:
    """How the output ``path`` will be written, checked before any work is done.

    Parameters
    ----------
    path : str
        The output path; ``-`` is stdout.
    allowed : sequence of str, optional
        The kinds (values of :data:`OUTPUT_EXTENSIONS`) the command can write, e.g.
        ``("json",)`` for a profile. Default: every kind.
    option : str
        The option's name, for the message.
    fmt : str, optional
        The run's ``--format``: the kind of a stream (:func:`is_stream`), when it is one
        the command writes; otherwise a stream gets the kind its extension names (a FIFO
        ``out.csv``), else the first of ``allowed`` (JSON when every kind is allowed).

    Returns
    -------
    str
        ``"stdout"`` or one of :data:`OUTPUT_EXTENSIONS`' values.

    Raises
    ------
    UsageError
        The extension names a kind the command does not write (``profile -o out.npy``).
    OutputError
        An unknown extension, or a destination :func:`check_destination` refuses.
    """
    if path == "-":
        return "stdout"
    check_destination(path)
    choices = sorted(set(OUTPUT_EXTENSIONS.values()) if allowed is None else allowed)
    kind = output_extension_kind(path)
    if is_stream(path):
        if fmt in choices:
            return str(fmt)
        return kind if kind in choices else (allowed[0] if allowed else "json")
    if kind is None or kind not in choices:
        names = ", ".join(OUTPUT_EXTENSION[k] for k in choices)
        if kind is None:
            raise OutputError(f"{clean(path)}: unknown output type; name it {names}")
        raise UsageError(f"{clean(path)}: {option} writes {names}, not .{kind}")
    return kind


def guard(
    outputs: Sequence[str | None],
    inputs: Sequence[str | None],
    allowed: Sequence[str] | None = None,
    option: str = "--output",
) -> None:
    """Check a command's outputs before any work: the main output's kind, then that no
    output can destroy an input or another output.

    Parameters
    ----------
    outputs : sequence of str or None
        Every file the run will write; the first is the one ``option`` names (None when
        not given). Files of other options (``--junit``) are the caller's to type.
    inputs : sequence of str or None
        Every path the run reads, as :func:`check_outputs` takes them.
    allowed : sequence of str, optional
        The kinds the first output may be, as :func:`output_kind` takes them. Default:
        every kind.
    option : str
        The first output's option, for the message.

    Raises
    ------
    UsageError, OutputError
        As :func:`output_kind` (the first output) and :func:`check_outputs`.
    """
    if outputs and outputs[0] is not None:
        output_kind(outputs[0], allowed, option)
    check_outputs(outputs, inputs)


def _identity(path: str) -> tuple[int, int] | str:
    """The file ``path`` names: (device, inode) through symlinks and hard links, or, for a
    file not yet there, its absolute path with every symlink resolved (an object in a
    store: its URL)."""
    if fs.is_remote(path):
        return path
    try:
        st = os.stat(path)
    except OSError:
        return os.path.realpath(path)
    return (st.st_dev, st.st_ino)


def check_outputs(outputs: Sequence[str | None], inputs: Sequence[str | None]) -> None:
    """Refuse, before any work, a run whose outputs could destroy its inputs or each other.

    Parameters
    ----------
    outputs : sequence of str or None
        Every file the run will write (None and ``-`` are skipped).
    inputs : sequence of str or None
        Every path it reads (data, profiles, threshold files; None skipped). ``-``
        counts when stdin is redirected from a file; a folder or a glob counts as every
        file of its dataset.

    Raises
    ------
    OutputError
        An output is the same file as an input (compared by device and inode, so a
        symlink or a hard link to an input counts), two outputs are the same file, or
        an output fails :func:`check_destination`.
    """
    ids: dict[tuple[int, int] | str, str] = {}
    for path in inputs:
        if path == "-":
            # ``kldiv compute x.npy - -o t.npy < t.npy``: stdin redirected from a file.
            try:
                st = os.fstat(0)
            except OSError:
                continue
            if stat.S_ISREG(st.st_mode):
                ids.setdefault((st.st_dev, st.st_ino), "stdin")
        elif path:
            # A folder or a glob is every file of the dataset it names.
            members = None if fs.is_remote(path) else dataset_files(path)
            for member in members if members is not None else [path]:
                ids.setdefault(_identity(member), member)
    seen: dict[tuple[int, int] | str, str] = {}
    for path in outputs:
        if not path or path == "-":
            continue
        check_destination(path)
        if is_stream(path):
            continue  # written in place, never replaced: ``-o /dev/null --junit /dev/null``
        key = _identity(path)
        if key in ids:
            also = "" if ids[key] == path else f" ({clean(ids[key])})"
            raise OutputError(
                f"{clean(path)}: is also an input of this command{also}; write somewhere else"
            )
        if key in seen:
            raise OutputError(
                f"{clean(path)}: is named as two outputs; give each output its own file"
            )
        seen[key] = path


def _name_max(folder: str) -> int:
    try:
        return os.pathconf(folder, "PC_NAME_MAX")
    except (OSError, ValueError):
        return 255


def _open_stream(path: str) -> BinaryIO:
    """A stream output opened for writing: a copy of the descriptor it names, or the
    device or FIFO itself."""
    fd = stream_fd(path)
    if fd is not None:
        return os.fdopen(os.dup(fd), "wb")
    return open(path, "wb")


def check_destination(path: str) -> None:
    """A file can be created at ``path``: not a directory, a name the file system takes,
    in a folder that exists and is writable (an object in a store: a key in a bucket
    that exists, see :func:`.fs.check_destination`). Checked before any work is done.

    Raises
    ------
    OutputError
        Naming what is wrong with ``path``.
    """
    if fs.is_remote(path):
        fs.check_destination(path)
        return
    shown = clean(path)
    fd = stream_fd(path)
    if fd is not None:
        try:
            os.fstat(fd)
        except OSError:
            raise OutputError(f"{shown}: descriptor {fd} is not open") from None
        return
    if os.path.isdir(path):
        raise OutputError(f"{shown}: is a directory; give a file name")
    if is_stream(path):
        if not os.access(path, os.W_OK):
            raise OutputError(f"{shown}: is not writable")
        return
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise OutputError(f"{shown}: folder {clean(parent)} does not exist")
    if not os.access(parent, os.W_OK):
        raise OutputError(f"{shown}: folder {clean(parent)} is not writable")
    size, limit = len(os.fsencode(os.path.basename(path))), _name_max(parent)
    if size > limit:
        raise OutputError(
            f"{shown}: the file name is too long ({size} bytes; the limit is {limit})"
        )


# --- temporary files, removed when a signal ends the process -------------------------

_live: set[str] = set()
_previous: dict[int, Any] = {}


def _remove(temps: Iterable[str]) -> None:
    for tmp in list(temps):
        if tmp in _live:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            _live.discard(tmp)


def _on_signal(signum: int, frame: FrameType | None) -> None:
    """Remove the temporary files, then die of the signal as if kldiv had not caught it."""
    previous = _previous.get(signum)
    if callable(previous):
        # Python's own SIGINT handler raises KeyboardInterrupt: write_all removes its
        # temporary files while the exception unwinds, and the error boundary exits 130.
        previous(signum, frame)
        return
    _remove(_live)
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)
    os._exit(128 + signum)  # only if the signal did not end the process


@contextmanager
def _signals_remove_temps() -> Iterator[None]:
    """While inside, SIGINT/SIGTERM/SIGHUP remove the temporary files first. Only the main
    thread can set handlers; ignored signals stay ignored; handlers are restored after."""
    if threading.current_thread() is not threading.main_thread() or _previous:
        yield
        return
    for name in CLEANUP_SIGNALS:
        signum = getattr(signal, name, None)
        if signum is None:
            continue
        previous = signal.getsignal(signum)
        if previous is signal.SIG_IGN or previous is None:
            continue
        _previous[signum] = previous
        signal.signal(signum, _on_signal)
    try:
        yield
    finally:
        for signum, previous in _previous.items():
            signal.signal(signum, previous)
        _previous.clear()


def _temp_for(target: str) -> tuple[int, str]:
    """A new temporary file beside ``target`` whose name fits the file system's limit."""
    parent, name = os.path.split(target)
    room = _name_max(parent or ".") - _TEMP_EXTRA
    raw = os.fsencode(name)
    if len(raw) > room:
        # Cut on a character boundary; mkstemp's random part keeps the name unique.
        name = raw[: max(room, 1)].decode(errors="ignore") or "o"
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=parent or ".")
    _live.add(tmp)
    return fd, tmp


def _keep_mode(fd: int, target: str) -> None:
    """Give the new file the mode (and, where allowed, the owner) of the file it replaces;
    a new file gets the usual 0666 minus the umask."""
    try:
        st = os.stat(target)
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)
        return
    os.fchmod(fd, stat.S_IMODE(st.st_mode))
    try:
        os.fchown(fd, st.st_uid, st.st_gid)
    except OSError:
        pass


def _output_error(path: str, exc: OSError) -> OutputError:
    reason = os.strerror(exc.errno) if exc.errno else (str(exc).strip().splitlines() or [""])[0]
    reason = reason[:1].lower() + reason[1:]
    if exc.errno == errno.ENAMETOOLONG:
        reason = "the file name is too long"
    return OutputError(f"{clean(path)}: cannot write ({clean(reason)}); nothing was replaced")


def _not_about_output(exc: OSError, paths: Sequence[str]) -> bool:
    """An OSError raised inside a writer that names another file (an input read while
    streaming) is that file's error, not the output's."""
    name = getattr(exc, "filename", None)
    return name is not None and os.fspath(name) not in paths


def write_all(items: Sequence[tuple[str, Callable[[BinaryIO], Any]]]) -> list[Any]:
    """Write several output files so that either every one is replaced or none is.

    Each ``(path, write)`` pair gets a temporary file beside its destination, filled by
    ``write(f)``, flushed and fsynced, with the mode of the file it replaces. Only when
    every writer succeeded are the temporary files renamed over their destinations
    (a symlink is followed: its target is replaced). A destination that exists and is
    not a regular file (``/dev/null``, a FIFO) and a descriptor (``/dev/stdout``,
    ``/dev/fd/3``) are written in place, and an object in a
    store (``s3://...``) uploaded whole by :func:`.fs.write_remote`, after all the
    temporary files are ready.

    Parameters
    ----------
    items : sequence of (str, callable)
        Output paths (already accepted by :func:`check_outputs`) and writers.

    Returns
    -------
    list
        What each writer returned, in order.

    Raises
    ------
    OutputError
        One line naming the path and the reason (no space left, permission denied...);
        existing files are untouched and no temporary file is left.
    """
    results: list[Any] = [None] * len(items)
    temps: list[tuple[str, str, str]] = []  # (temporary file, destination, path as given)
    special: list[int] = []  # devices, pipes and objects in a store: written last
    current = ""
    with _signals_remove_temps():
        try:
            for i, (path, write) in enumerate(items):
                current = path
                if fs.is_remote(path) or is_stream(path):
                    special.append(i)
                    continue
                target = os.path.realpath(path)
                try:
                    fd, tmp = _temp_for(target)
                except OSError as exc:  # the message names the output, not the temporary file
                    raise _output_error(path, exc) from None
                temps.append((tmp, target, path))
                with os.fdopen(fd, "wb") as f:
                    results[i] = write(f)
                    f.flush()
                    os.fsync(f.fileno())
                    _keep_mode(f.fileno(), target)
            for i in special:
                current, write = items[i]
                if fs.is_remote(current):  # one upload: the store shows it whole or not
                    results[i] = fs.write_remote(current, write)
                    continue
                with _open_stream(current) as f:
                    results[i] = write(f)
            for tmp, target, path in temps:
                current = path
                os.replace(tmp, target)
                _live.discard(tmp)
        except BaseException as exc:
            _remove(t for t, _, _ in temps)
            if isinstance(exc, BrokenPipeError) and not temps:
                # A reader that closed its end early (`-o /dev/stdout | head`): the
                # boundary's quiet end of a closed pipe, as for stdout itself. With a
                # file among the outputs, that file was not written: an error then.
                raise
            if not isinstance(exc, OSError) or _not_about_output(
                exc, [p for p, _ in items] + [t for t, _, _ in temps]
            ):
                raise
            raise _output_error(current, exc) from None
    return results


def atomic_write(path: str, write: Callable[[BinaryIO], T]) -> T:
    """Write one output file atomically (see :func:`write_all`); returns what ``write`` did."""
    result: T = write_all([(path, write)])[0]
    return result


class BlockWriter:
    """An array written to an open file block of rows by block (``reduction="none"``
    streamed), in the layout :func:`kldiv_cli.render.files.write_report` gives the whole
    array: the same .npy and .csv bytes, the same Parquet columns (one row group per
    block).

    The layout is the one of every output format: the last axis across, named ``c0``,
    ``c1``, ..., every other axis down (a 1-D array is one column). A CSV cell is a
    NumPy scalar's ``str``, the shortest text that reads back to the same value in its
    own dtype, as ``render.format_number`` writes it; names and numbers need no quoting.
    """

    def __init__(self, kind: str, f: BinaryIO) -> None:
        self.kind, self.f = kind, f
        self.started = False
        self._parquet: Any = None

    def write(self, block: np.ndarray, shape: tuple[int, ...]) -> None:
        import numpy as np

        if block.ndim <= 1:
            flat = block.reshape(-1, 1)
        else:
            flat = block.reshape(math.prod(block.shape[:-1]), block.shape[-1])
        columns = [f"c{j}" for j in range(flat.shape[1])]
        if self.kind == "npy":
            if not self.started:
                header = np.lib.format.header_data_from_array_1_0(block)
                # Blocks go in row after row, whatever their own memory order.
                header.update(shape=tuple(shape), fortran_order=False)
                np.lib.format.write_array_header_1_0(self.f, header)
            self.f.write(np.ascontiguousarray(block).tobytes())
        elif self.kind == "csv":
            lines = [",".join(columns)] if not self.started else []
            lines.extend(",".join(map(str, row)) for row in flat)
            self.f.write("".join(line + "\n" for line in lines).encode())
        else:
            import pyarrow as pa
            import pyarrow.parquet as pq

            table = pa.table({name: flat[:, j] for j, name in enumerate(columns)})
            if self._parquet is None:
                self._parquet = pq.ParquetWriter(self.f, table.schema)
            self._parquet.write_table(table)
        self.started = True

    def close(self) -> None:
        if self._parquet is not None:
            self._parquet.close()
