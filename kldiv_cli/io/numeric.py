"""The numeric API (``compute``, ``inspect``): any input opened as a :class:`~.base.Source`
of floats, by the opener :mod:`.formats` names for its format."""

from __future__ import annotations

import os

from ..errors import InputError, UsageError
from ..redact import redact
from .base import MISSING_POLICIES, ReadOptions, Source
from .formats import ARRAY_KINDS, KEYED, by_path, extensions_text, get, names, opener
from .paths import dataset_files, resolve


def open_source(path: str, options: ReadOptions, stdin: bytes | None = None) -> Source:
    """Open ``path`` as numbers: a file, a Parquet dataset (folder or glob), a stream
    (FIFO, device, ``/dev/fd/N``, buffered now), or the buffered ``stdin`` bytes when
    ``path == '-'``.

    Raises
    ------
    UsageError
        For options that do not apply to the format (a key for a table, columns for
        an array) or an unknown missing-value policy.
    InputError
        For anything wrong with the input, naming it; never an unexpected exception.
    """
    if options.missing not in MISSING_POLICIES:
        raise UsageError(f"unknown missing-value policy {options.missing!r}")
    if path != "-":
        files = dataset_files(path)
        if files is not None:
            from .parquet import open_dataset

            return open_dataset(redact(path), files, options)
    where = resolve(path, options.fmt, stdin, options.format_option)
    label, fmt = where.label, where.fmt
    kind = get(fmt).kind
    if options.key is not None and kind != KEYED:
        raise UsageError(
            f"{label}: a key selects an array in a {extensions_text([KEYED])} file, but this is {fmt}"
        )
    if options.columns is not None and kind in ARRAY_KINDS:
        raise UsageError(f"{label}: columns select from a table; this is a .{fmt} array")
    try:
        return opener(fmt)(label, where.path, where.data, fmt, options)
    except (InputError, UsageError):
        raise
    except MemoryError:
        raise InputError(label, "is too large to load into memory") from None
    except OSError as exc:
        raise InputError(label, exc.strerror or str(exc)) from None


#: Two inputs are opened at once when both are text files of at least this size.
TOGETHER_ABOVE = 8 << 20


def open_pair(
    first: tuple[str, ReadOptions], second: tuple[str, ReadOptions], stdin: bytes | None = None
) -> tuple[Source, Source]:
    """:func:`open_source` of two inputs, ``(path, options)`` each; the first one's error
    is raised first, as when they are opened one after the other.

    Two large text files (CSV, TSV: parsed when opened) are opened at once, the second
    on a thread: each parse already keeps the cores busy, but its first and last steps
    (the layout, the head's types, the table's columns) run on one, and so does the
    end of its last part; the other file's parse fills them.
    """
    if not (_parsed_when_opened(*first) and _parsed_when_opened(*second)):
        return open_source(*first, stdin), open_source(*second, stdin)
    from concurrent.futures import ThreadPoolExecutor

    pool = ThreadPoolExecutor(1, thread_name_prefix="kldiv-open")
    later = pool.submit(open_source, *second, stdin)
    try:
        return open_source(*first, stdin), later.result()
    finally:
        # Not waiting: after an error or Ctrl-C, the other parse is left to finish alone.
        pool.shutdown(wait=False)


def _parsed_when_opened(path: str, options: ReadOptions) -> bool:
    """Whether ``path`` is a large local file of a text format (read whole when opened)."""
    fmt = get(options.fmt) if options.fmt in names() else by_path(path)
    if fmt is None or not fmt.text:
        return False
    try:
        return os.path.isfile(path) and os.path.getsize(path) >= TOGETHER_ABOVE
    except (OSError, ValueError):
        return False
