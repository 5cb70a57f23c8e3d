"""Arrow IPC files (Feather v2) and IPC streams, read whole (memory-mapped for files)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from .base import ReadOptions
from .columns import arrow_error, schema_names
from .paths import reject_empty
from .tables import TableSource


def read_ipc(label: str, path: str | None, data: bytes | None) -> Any:
    """A whole Arrow IPC file, or an IPC stream, as a pyarrow table."""
    import pyarrow as pa
    import pyarrow.ipc as ipc

    reject_empty(label, path)
    raw = pa.memory_map(path) if path is not None else pa.BufferReader(data)
    try:
        try:
            table = ipc.open_file(raw).read_all()
        except pa.ArrowInvalid:
            raw.seek(0)
            table = ipc.open_stream(raw).read_all()
    except (pa.ArrowException, OSError) as exc:
        raise arrow_error(label, "Arrow/Feather", exc) from None
    schema_names(label, table.schema)
    return table


class ArrowReader:
    """An Arrow table in memory as a :class:`~.tables.TableReader` (no row groups)."""

    def __init__(self, table: Any) -> None:
        self._table = table
        self.schema = table.schema
        self.num_rows = table.num_rows

    def read_table(self, names: list[str]) -> Any:
        return self._table.select(names)

    def iter_tables(self, names: list[str], rows: int) -> Iterator[Iterable[Any]]:
        sub = self._table.select(names)
        for start in range(0, sub.num_rows, rows):
            yield [sub.slice(start, rows)]


def open_arrow(
    label: str, path: str | None, data: bytes | None, fmt: str, options: ReadOptions
) -> TableSource:
    """An Arrow/Feather file as a numeric source."""
    return TableSource(label, "arrow", ArrowReader(read_ipc(label, path, data)), options)


def read_columns(
    label: str, path: str | None, data: bytes | None, fmt: str, options: ReadOptions
) -> Any:
    """A whole Arrow IPC file or stream as a pyarrow table of any column types."""
    return read_ipc(label, path, data)
