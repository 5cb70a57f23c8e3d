"""The tables drift reads: one file, a list of Parquet files, a folder or a glob of them.

Drift needs named columns of any type (text, booleans, timestamps), one at a time, so
that a ten-million-row reference holds one column in memory, never the table. A small
Parquet file (and any non-Parquet file) is read whole, once: per-column reads of a file
with thousands of columns would re-read its footer for every column.

Errors name drift's own arguments (REFERENCE, CURRENT), never another command's options.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from ..errors import InputError
from ..redact import redact
from ..text import clean
from . import fs
from .base import EXTENSIONS

#: Parquet files (or datasets) whose uncompressed data is below this are read whole.
WHOLE_BELOW = 64 << 20


class Table(Protocol):
    """Named columns, read on demand."""

    label: str
    column_names: list[str]
    num_rows: int

    def column(self, name: str) -> Any:
        """The column as a pyarrow ChunkedArray."""
        ...


class WholeTable:
    """A pyarrow table already in memory."""

    def __init__(self, label: str, table: Any) -> None:
        self.label = label
        self.table = table
        self.column_names = list(table.column_names)
        self.num_rows = table.num_rows

    def column(self, name: str) -> Any:
        return self.table.column(name)


class LazyColumns:
    """Parquet data read one column at a time (``read(name)`` gives a ChunkedArray)."""

    def __init__(self, label: str, names: list[str], rows: int, read: Callable[[str], Any]) -> None:
        self.label = label
        self.column_names = names
        self.num_rows = rows
        self._read = read

    def column(self, name: str) -> Any:
        import pyarrow as pa

        try:
            return self._read(name)
        except (pa.ArrowException, OSError) as exc:
            raise _arrow_error(self.label, exc) from None


def _arrow_error(label: str, exc: Exception) -> InputError:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return InputError(label, f"cannot be read as Parquet ({clean(text)})")


def is_parquet(path: str) -> bool:
    """Whether ``path`` is named as a Parquet file."""
    return EXTENSIONS.get(os.path.splitext(path)[1].lower()) == "parquet"


def expand(paths: Sequence[str]) -> tuple[str, list[str] | None]:
    """A label for messages, and the Parquet files of a dataset (None: one plain file).

    ``paths`` is one path (a file, a folder, a glob) or several files (as a shell
    expands an unquoted glob).
    """
    from .paths import dataset_files

    if len(paths) == 1:
        if paths[0] == "-":
            return "<stdin>", None
        return redact(paths[0]), dataset_files(paths[0])
    label = f"{redact(paths[0])} (and {len(paths) - 1} more)"
    files: list[str] = []
    for path in paths:
        found = dataset_files(path) if path != "-" else None
        if found is None:
            if path == "-" or not is_parquet(path):
                raise InputError(path, "a list of files must be Parquet files (.parquet)")
            if not fs.is_remote(path) and not os.path.isfile(path):
                raise InputError(path, "no such file")
            found = [path]
        files.extend(f for f in found if f not in files)
    return label, files


def _open_parquet(label: str, files: list[str]) -> Table:
    """One Parquet file or several (read in order, through their own footers, never
    through pyarrow.dataset, which loads pandas): whole when small, else column by
    column."""
    import pyarrow as pa

    from .columns import check_unique
    from .parquet import DatasetReader

    for f in files:
        if not is_parquet(f):
            raise InputError(f, "is not a Parquet file; a dataset holds only .parquet files")
        if not fs.is_remote(f) and os.path.isfile(f) and os.path.getsize(f) == 0:
            raise InputError(f, "is empty")
    try:
        reader = DatasetReader(label, files)
        names = list(reader.schema.names)
        check_unique(label, names)
        if reader.decoded_bytes < WHOLE_BELOW:
            return WholeTable(label, reader.read_table(names))
        return LazyColumns(
            label, names, reader.num_rows, lambda n: reader.read_table([n]).column(0)
        )
    except (pa.ArrowException, OSError) as exc:
        raise _arrow_error(label, exc) from None


def open_table(paths: Sequence[str], delimiter: str | None, stdin: bytes | None) -> Table:
    """One side of a drift check, as named columns (see the module's docstring)."""
    from .base import ReadOptions
    from .typed import open_columns

    label, files = expand(paths)
    if files is not None:
        return _open_parquet(label, files)
    path = paths[0]
    if path != "-":
        remote = fs.is_remote(path)
        if not remote and os.path.isdir(path):
            raise InputError(path, "is a directory and holds no .parquet files")
        if not remote and not os.path.lexists(path):
            raise InputError(path, "no such file")
        if is_parquet(path) and (remote or os.path.isfile(path)):
            return _open_parquet(label, [path])
    return WholeTable(label, open_columns(path, ReadOptions(delimiter=delimiter), stdin))
