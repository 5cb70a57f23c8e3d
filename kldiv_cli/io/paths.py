"""Where the bytes come from: files, stdin, FIFOs and devices, Parquet datasets.

A regular file is read where it lies (the readers seek and memory-map). Everything
that cannot seek — stdin, a FIFO, a character device, a ``/dev/fd/N`` pipe such as
the shell's ``<(gen_logits)`` — is buffered once into memory, bounded by the memory
the machine has available, and then read like stdin. :class:`Resolved` carries the
result: a label for messages and reports (the path, credentials redacted), the format,
and either a path or the bytes.
"""

from __future__ import annotations

import io
import os
import stat
import sys
from typing import IO, NamedTuple

from ..errors import InputError, UsageError
from ..redact import redact
from . import formats
from .base import STDIN

STDIN_LABEL = "<stdin>"
#: How much of a stream is looked at before buffering the rest.
_HEAD_BYTES = 1 << 16


class Resolved(NamedTuple):
    """One input located: ``path`` to read from, or ``data`` already buffered.

    (A record, not a frozen dataclass: a dataclass is compiled at every start.)"""

    label: str
    fmt: str
    path: str | None = None
    data: bytes | None = None


def memory_available() -> int:
    """Bytes of memory the system can give without swapping (``MemAvailable``).

    Falls back to the free physical pages when /proc/meminfo is missing (not Linux).
    """
    try:
        with open("/proc/meminfo", "rb") as f:
            for line in f:
                if line.startswith(b"MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 1 << 62


def stream_limit() -> int:
    """The most bytes buffered from one stream: half the available memory, since the
    bytes are then decoded into arrays of about the same size."""
    return memory_available() // 2


def check_format(override: str) -> str:
    """A ``--*-format`` value, checked."""
    if override not in formats.names():
        choices = ", ".join(formats.names())
        raise UsageError(f"unknown format {override!r}; choose one of {choices}")
    return override


def detect_format(
    path: str, override: str | None, format_option: str | None = None, head: bytes = b""
) -> str:
    """The format of a file: the override, else what its first bytes ``head`` hold when
    they are binary data its name does not promise (:func:`.formats.identify`: a
    ``.csv`` or ``.bin`` that is a ``.npy``), else its extension."""
    if override:
        return check_format(override)
    found = formats.identify(formats.by_path(path), head)
    if found is None:
        ext = os.path.splitext(path)[1].lower()
        what = f"extension {ext!r}" if ext else "no extension"
        raise InputError(
            path,
            f"unknown file type ({what}); name it {formats.extensions_text()}"
            + (f", or give {format_option}" if format_option else ""),
        )
    return found.name


def dataset_files(path: str) -> list[str] | None:
    """The Parquet files of a partitioned dataset: a folder (searched recursively) or a
    glob pattern. None when ``path`` is not one. A path that exists is used as given:
    a file whose name holds ``*`` is that file, not a pattern.

    Symbolic links to folders are not followed, so a link loop cannot make the
    search endless (``glob``'s own ``**`` follows them, exponentially).
    """
    import glob

    if is_remote(path):
        from . import fs

        return fs.list_parquet(path)
    if os.path.isdir(path):
        found = [
            os.path.join(root, name)
            for root, _, names in os.walk(path)
            for name in names
            if formats.is_parquet(name) and not name.startswith((".", "_"))
        ]
        if not found:
            raise InputError(path, "is a directory, not a file, and holds no .parquet files")
        return sorted(found)
    if os.path.lexists(path) or not any(c in path for c in "*?["):
        return None
    if "**" in path.split(os.sep):
        matches = _globstar(path)
    else:
        matches = glob.glob(path)
    found = sorted(p for p in matches if os.path.isfile(p))
    if not found:
        raise InputError(path, "no such file (the pattern matches no files)")
    return found


def _globstar(pattern: str) -> list[str]:
    """Paths matching a pattern with ``**`` (any number of folders), found by walking
    from its fixed leading folders without following symbolic links to folders.
    Hidden names (``.x``) match only a pattern part that starts with a dot, as in
    ``glob``."""
    parts = pattern.split(os.sep)
    fixed = 0
    while fixed < len(parts) - 1 and not any(c in parts[fixed] for c in "*?["):
        fixed += 1
    prefix = os.sep.join(parts[:fixed]) or (os.sep if fixed else "")
    found = []
    for folder, dirs, names in os.walk(prefix or "."):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        rel = os.path.relpath(folder, prefix or ".")
        below = [] if rel == "." else rel.split(os.sep)
        for name in names:
            if _match([*below, name], parts[fixed:]):
                found.append(os.path.join(prefix, *below, name))
    return found


def _match(names: list[str], pattern: list[str]) -> bool:
    """Whether path components match pattern components (``**``: zero or more)."""
    import fnmatch

    if not pattern:
        return not names
    head, tail = pattern[0], pattern[1:]
    if head == "**":
        visible = next((k for k, n in enumerate(names) if n.startswith(".")), len(names))
        return any(_match(names[k:], tail) for k in range(visible + 1))
    if not names or (names[0].startswith(".") and not head.startswith(".")):
        return False
    return fnmatch.fnmatchcase(names[0], head) and _match(names[1:], tail)


def check_path(path: str) -> os.stat_result:
    """``os.stat`` of an input that must be readable, or a one-line error."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise InputError(path, "no such file") from None
    except PermissionError:
        raise InputError(path, "permission denied") from None
    except OSError as exc:
        raise InputError(path, exc.strerror or str(exc)) from None
    if not os.access(path, os.R_OK):
        raise InputError(path, "permission denied")
    return info


def read_limited(path: str, limit: int) -> bytes:
    """All of a small file (a profile, a thresholds file): at most ``limit`` bytes, from a
    local path, a stream (FIFO, ``/dev/fd/N``) or an object in a store.

    Raises
    ------
    InputError
        One line: missing, unreadable or a directory (as :func:`check_path` words it),
        or larger than ``limit`` bytes (checked before reading when the size is known).
    """
    too_large = f"is larger than {limit:,} bytes"
    if is_remote(path):
        from . import fs

        if fs.size(path) > limit:
            raise InputError(path, too_large)
        with fs.open_input(path) as remote:
            data = remote.read(limit + 1)
    else:
        info = check_path(path)
        if stat.S_ISDIR(info.st_mode):
            raise InputError(path, "is a directory, not a file")
        if stat.S_ISREG(info.st_mode) and info.st_size > limit:
            raise InputError(path, too_large)
        try:
            with open(path, "rb") as f:
                data = f.read(limit + 1)
        except OSError as exc:
            raise InputError(path, exc.strerror or str(exc)) from None
    if len(data) > limit:
        raise InputError(path, too_large)
    return data


def open_binary(path: str | None, data: bytes | None) -> tuple[IO[bytes], int]:
    """A resolved input (:class:`Resolved`'s ``path`` or buffered ``data``) opened for
    reading, and its size in bytes. The caller closes it."""
    if path is None:
        assert data is not None
        return io.BytesIO(data), len(data)
    f = open(path, "rb")  # noqa: SIM115 (the caller owns it)
    try:
        return f, os.fstat(f.fileno()).st_size
    except OSError:
        f.close()
        raise


def read_exact(f: IO[bytes], offset: int, nbytes: int, label: str) -> bytes:
    """``nbytes`` bytes at ``offset``; a short read (a file cut while read) is an error."""
    f.seek(offset)
    data = f.read(nbytes)
    if len(data) != nbytes:
        raise InputError(label, f"is truncated: {nbytes} bytes expected at offset {offset}")
    return data


#: Names that are not UTF-8 -> the /dev/fd/N alias pyarrow reads them through.
_ALIASES: dict[str, str] = {}


def readable_path(path: str) -> str:
    """``path`` as pyarrow can take it: itself, or, for a name that is not UTF-8 (bytes
    Python carries as lone surrogates, which pyarrow cannot encode), ``/dev/fd/N`` of
    the file opened here once and kept open for the rest of the run. Messages keep
    naming ``path``."""
    try:
        path.encode()
        return path
    except UnicodeEncodeError:
        pass
    alias = _ALIASES.get(path)
    if alias is None:
        alias = _ALIASES[path] = f"/dev/fd/{os.open(path, os.O_RDONLY)}"
    return alias


def reject_empty(label: str, path: str | None) -> None:
    """A zero-byte file is empty, whatever its extension says (pyarrow's own messages
    for it are about missing magic bytes)."""
    if path is not None and os.path.getsize(path) == 0:
        raise InputError(label, "is empty")


def is_stream(path: str, info: os.stat_result) -> bool:
    """Whether ``path`` must be buffered: anything but a regular file, or an open file
    descriptor (``/dev/fd/N``, ``/proc/self/fd/N``), whose offset is shared."""
    return not stat.S_ISREG(info.st_mode) or path.startswith(("/dev/fd/", "/proc/self/fd/"))


def read_bounded(fp: IO[bytes], label: str, expected: str | None) -> bytes:
    """All of a stream, at most :func:`stream_limit` bytes.

    The first 64 KiB are checked before the rest is read, so an endless binary stream
    (``/dev/zero``) that cannot be the ``expected`` format (by default: the one its
    first bytes suggest) fails at once.
    """
    limit = stream_limit()
    head = fp.read(_HEAD_BYTES)
    if not head:
        raise InputError(label, "is empty")
    _check_head(label, head, expected)
    parts = [head]
    size = len(head)
    while size <= limit:
        block = fp.read(min(1 << 24, limit + 1 - size))
        if not block:
            return b"".join(parts)
        parts.append(block)
        size += len(block)
    raise InputError(
        label,
        f"is a stream larger than the {limit:,} bytes kldiv buffers "
        "(half the available memory); save it to a file first",
    )


def _check_head(label: str, head: bytes, expected: str | None) -> None:
    """Fail early on a stream that cannot be what it is read as."""
    fmt = formats.get(expected or formats.sniff(head))
    if fmt.magic and fmt.check_magic and not head.startswith(fmt.magic):
        name = fmt.name
        raise InputError(label, f"is not {name} data (its first bytes are not a {name} header)")
    if fmt.text and b"\x00" in head:
        raise InputError(label, "is not a text file (it holds binary data)")


def read_stdin(stream: IO[bytes] | None = None) -> bytes:
    """All of stdin (or of ``stream``, a binary stdin given by the caller): np.load and
    Parquet need to seek, so a pipe is buffered first (bounded by :func:`stream_limit`)."""
    if stream is None:
        text = sys.stdin
        if text is None:  # fd 0 was closed when Python started
            raise InputError(STDIN_LABEL, "is not open (file descriptor 0 is closed)")
        stream = text.buffer
    try:
        return read_bounded(stream, STDIN_LABEL, None)
    except OSError as exc:
        raise InputError(STDIN_LABEL, f"cannot be read ({exc.strerror or exc})") from None


def _head(path: str) -> bytes:
    """A regular file's first bytes (none when it cannot be read: its reader says why)."""
    try:
        with open(path, "rb") as fp:
            return fp.read(formats.HEAD)
    except OSError:
        return b""


def is_remote(path: str) -> bool:
    """:func:`.fs.is_remote`, without loading :mod:`.fs` for a local path (every remote
    path holds ``://``): a small job's start-up is mostly compiling modules."""
    if "://" not in path:
        return False
    from . import fs

    return fs.is_remote(path)


def resolve(
    path: str, override: str | None, stdin: bytes | None, format_option: str | None = None
) -> Resolved:
    """Locate one input: stdin's buffered bytes, a stream buffered now, or a file path."""
    if path == STDIN:
        if stdin is None:
            raise UsageError("stdin was not read")
        return Resolved(
            STDIN_LABEL, check_format(override) if override else formats.sniff(stdin), None, stdin
        )
    if is_remote(path):
        from . import fs

        # An object in a store is fetched once, like a stream (ranged reads are the Dask
        # engine's: its tasks read only their rows).
        data = fs.read_bytes(path)
        fmt = detect_format(path, override, format_option, data[: formats.HEAD])
        return Resolved(redact(path), fmt, None, data)
    info = check_path(path)
    if stat.S_ISDIR(info.st_mode):
        raise InputError(path, "is a directory, not a file")
    if not is_stream(path, info):
        fmt = detect_format(path, override, format_option, b"" if override else _head(path))
        return Resolved(redact(path), fmt, readable_path(path), None)
    known = formats.by_path(path)
    named = check_format(override) if override else known.name if known else None
    try:
        with open(path, "rb") as fp:
            data = read_bounded(fp, path, named)
    except OSError as exc:
        raise InputError(path, exc.strerror or str(exc)) from None
    return Resolved(redact(path), named or formats.sniff(data), None, data)
