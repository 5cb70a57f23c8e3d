"""The numeric API (``compute``, ``inspect``): any input opened as a :class:`~.base.Source`
of floats. One line per format in :data:`OPENERS`."""

from __future__ import annotations

import importlib
from collections.abc import Callable

from ..errors import InputError, UsageError
from ..redact import redact
from .base import ARRAY_FORMATS, KEYED_FORMATS, MISSING_POLICIES, ReadOptions, Source
from .paths import dataset_files, resolve

#: ``(label, path or None, buffered bytes or None, format, options) -> Source``
Opener = Callable[[str, "str | None", "bytes | None", str, ReadOptions], Source]

#: format -> (module of this package, its opener). A module is imported only when a
#: file of its format is opened (start-up pays for the formats it reads).
OPENERS: dict[str, tuple[str, str]] = {
    "npy": ("npy", "open_npy"),
    "npz": ("npz", "open_npz"),
    "csv": ("csv", "open_csv"),
    "tsv": ("csv", "open_csv"),
    "parquet": ("parquet", "open_parquet"),
    "arrow": ("arrow", "open_arrow"),
    "safetensors": ("safetensors", "open_safetensors"),
    "kld": ("kld", "open_kld"),
}


def opener(fmt: str) -> Opener:
    """The opener of a format of :data:`OPENERS`."""
    module, name = OPENERS[fmt]
    found: Opener = getattr(importlib.import_module(f".{module}", __package__), name)
    return found


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
    if options.key is not None and fmt not in KEYED_FORMATS:
        raise UsageError(
            f"{label}: a key selects an array in a .npz file or a tensor in a .safetensors "
            f"file, but this is {fmt}"
        )
    if options.columns is not None and fmt in ARRAY_FORMATS:
        raise UsageError(f"{label}: columns select from a table; this is a .{fmt} array")
    try:
        return opener(fmt)(label, where.path, where.data, fmt, options)
    except (InputError, UsageError):
        raise
    except MemoryError:
        raise InputError(label, "is too large to load into memory") from None
    except OSError as exc:
        raise InputError(label, exc.strerror or str(exc)) from None
