"""The typed-columns API (``drift``): named columns of any type, as pyarrow tables,
never converted to floats here."""

from __future__ import annotations

from typing import Any

from ..errors import InputError, UsageError
from .base import ARRAY_FORMATS, STDIN, ReadOptions
from .columns import arrow_error, check_unique
from .numeric import opener
from .paths import Resolved, dataset_files, reject_empty, resolve


def read_table(path: str, options: ReadOptions, stdin: bytes | None = None) -> Any:
    """A whole file as a pyarrow table of named columns, of any type (for drift).

    Arrays (.npy, .npz, safetensors, .kld) become columns "0", "1", ... (a 1-D array is
    one column).
    Column names are unique (else an error).
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
        if fmt in ("csv", "tsv"):
            from .csv import read_csv_table

            return read_csv_table(label, file, data, fmt, options, strings_can_be_null=True)[0]
        if fmt in ARRAY_FORMATS:
            arr = opener(fmt)(label, file, data, fmt, ReadOptions(fmt, options.key)).read()
            arr = arr.reshape(-1, 1) if arr.ndim < 2 else arr.reshape(arr.shape[0], -1)
            return pa.table({str(j): arr[:, j] for j in range(arr.shape[1])})
        if fmt == "parquet":
            from .parquet import read_parquet

            return read_parquet(label, file, data)
        from .arrow import read_ipc

        return read_ipc(label, file, data)
    except (InputError, UsageError):
        raise
    except (pa.ArrowException, OSError) as exc:
        raise arrow_error(label, fmt.capitalize(), exc) from None


class ParquetColumns:
    """A Parquet file seen as a table whose columns are read one at a time, on demand:
    a drift profile then holds one column in memory, not the whole reference."""

    def __init__(self, path: str) -> None:
        from .parquet import parquet_file

        self.path = path
        self._file = parquet_file(path, path, pre_buffer=False)
        self.column_names = list(self._file.schema_arrow.names)
        check_unique(path, self.column_names)
        self.num_rows = self._file.metadata.num_rows

    def column(self, name: str) -> Any:
        """One column, whole, as a pyarrow ChunkedArray."""
        import pyarrow as pa

        try:
            return self._file.read(columns=[name], use_threads=True).column(0)
        except (pa.ArrowException, OSError) as exc:
            raise arrow_error(self.path, "Parquet", exc) from None


def open_columns(path: str, options: ReadOptions, stdin: bytes | None = None) -> Any:
    """Named columns of any type (for drift): a Parquet file lazily, column by column
    (:class:`ParquetColumns`); anything else read whole (see :func:`read_table`)."""
    if path != STDIN and dataset_files(path) is not None:
        return read_table(path, options, stdin)
    where = resolve(path, options.fmt, stdin, options.format_option)
    if where.fmt == "parquet" and where.path is not None:
        reject_empty(path, path)
        return ParquetColumns(path)
    return _read(where, options)
