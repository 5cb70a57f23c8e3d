"""The numeric API (``compute``, ``inspect``): any input opened as a :class:`~.base.Source`
of floats, by the opener :mod:`.formats` names for its format."""

from __future__ import annotations

from ..errors import InputError, UsageError
from ..redact import redact
from .base import MISSING_POLICIES, ReadOptions, Source
from .formats import ARRAY_KINDS, KEYED, extensions_text, get, opener
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
