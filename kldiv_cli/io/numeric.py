"""The numeric API (``compute``, ``inspect``): any input opened as a :class:`~.base.Source`
of floats. One line per format in :data:`OPENERS`."""

from __future__ import annotations

from collections.abc import Callable

from ..errors import InputError, UsageError
from .arrow import open_arrow
from .base import MISSING_POLICIES, ReadOptions, Source
from .csv import open_csv
from .npy import NpySource
from .npz import open_npz
from .parquet import open_dataset, open_parquet
from .paths import dataset_files, resolve

#: ``(label, path or None, buffered bytes or None, format, options) -> Source``
Opener = Callable[[str, "str | None", "bytes | None", str, ReadOptions], Source]

OPENERS: dict[str, Opener] = {
    "npy": lambda label, path, data, fmt, options: NpySource(label, path, data),
    "npz": lambda label, path, data, fmt, options: open_npz(label, path, data, options),
    "csv": open_csv,
    "tsv": open_csv,
    "parquet": lambda label, path, data, fmt, options: open_parquet(label, path, data, options),
    "arrow": lambda label, path, data, fmt, options: open_arrow(label, path, data, options),
}


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
            return open_dataset(path, files, options)
    where = resolve(path, options.fmt, stdin)
    label, fmt = where.label, where.fmt
    if options.key is not None and fmt != "npz":
        raise UsageError(f"{label}: a key selects an array in a .npz file, but this is {fmt}")
    if options.columns is not None and fmt in ("npy", "npz"):
        raise UsageError(f"{label}: columns select from a table; this is a .{fmt} array")
    try:
        return OPENERS[fmt](label, where.path, where.data, fmt, options)
    except (InputError, UsageError):
        raise
    except MemoryError:
        raise InputError(label, "is too large to load into memory") from None
    except OSError as exc:
        raise InputError(label, exc.strerror or str(exc)) from None
