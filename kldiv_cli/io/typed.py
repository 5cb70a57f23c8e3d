"""The typed-columns API (``drift``, ``estimate``'s sequence ids): named columns of any
type, as a :class:`Table`, never converted to floats here.

A table format is read by the function its :class:`~.formats.Format` names
(``columns``); an array becomes columns ``"0"``, ``"1"``, ... Parquet is read column by
column when large (:class:`LazyColumns`: a ten-million-row reference holds one column
in memory, never the table), whole when small (per-column reads of a file with
thousands of columns would re-read its footer for every column).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, Protocol

from ..errors import InputError, UsageError
from .base import STDIN, ReadOptions
from .columns import arrow_error, check_unique
from .formats import opener, table_reader
from .paths import Resolved, dataset_files, reject_empty, resolve

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
        self.column_names: list[str] = list(table.column_names)
        self.num_rows: int = table.num_rows

    def column(self, name: str) -> Any:
        """The column, as pyarrow holds it."""
        return self.table.column(name)


class LazyColumns:
    """Parquet data read one column at a time (``read(name)`` gives a ChunkedArray)."""

    def __init__(self, label: str, names: list[str], rows: int, read: Callable[[str], Any]) -> None:
        self.label = label
        self.column_names = names
        self.num_rows = rows
        self._read = read

    def column(self, name: str) -> Any:
        """The column, read now."""
        import pyarrow as pa

        try:
            return self._read(name)
        except (pa.ArrowException, OSError) as exc:
            raise arrow_error(self.label, "Parquet", exc) from None


def open_parquet(label: str, files: list[str]) -> Table:
    """One Parquet file or several (read in order, through their own footers, never
    through pyarrow.dataset, which loads pandas): whole when small, else column by
    column."""
    import pyarrow as pa

    from . import fs
    from .parquet import DatasetReader

    for f in files:
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
        raise arrow_error(label, "Parquet", exc) from None


def read_table(path: str, options: ReadOptions, stdin: bytes | None = None) -> Any:
    """A whole file as a pyarrow table of named columns, of any type.

    Arrays become columns "0", "1", ... (a 1-D array is one column). Column names are
    unique (else an error).
    """
    return _read(resolve(path, options.fmt, stdin, options.format_option), options)


def _read(where: Resolved, options: ReadOptions) -> Any:
    table = _read_any(where, options)
    check_unique(where.label, table.column_names)
    return table


def _read_any(where: Resolved, options: ReadOptions) -> Any:
    import pyarrow as pa

    label, fmt, file, data = where.label, where.fmt, where.path, where.data
    try:
        reader = table_reader(fmt)
        if reader is not None:
            return reader(label, file, data, fmt, options)
        arr = opener(fmt)(
            label, file, data, fmt, ReadOptions(fmt, options.key, key_option=options.key_option)
        ).read()
        arr = arr.reshape(-1, 1) if arr.ndim < 2 else arr.reshape(arr.shape[0], -1)
        return pa.table({str(j): arr[:, j] for j in range(arr.shape[1])})
    except (InputError, UsageError):
        raise
    except (pa.ArrowException, OSError) as exc:
        raise arrow_error(label, fmt.capitalize(), exc) from None


def open_columns(path: str, options: ReadOptions, stdin: bytes | None = None) -> Table:
    """Named columns of any type: a Parquet file or dataset through :func:`open_parquet`
    (lazily when large); anything else read whole (see :func:`read_table`)."""
    if path != STDIN:
        files = dataset_files(path)
        if files is not None:
            return open_parquet(path, files)
    where = resolve(path, options.fmt, stdin, options.format_option)
    if where.fmt == "parquet" and where.path is not None:
        reject_empty(where.label, where.path)
        return open_parquet(where.label, [where.path])
    return WholeTable(where.label, _read(where, options))
