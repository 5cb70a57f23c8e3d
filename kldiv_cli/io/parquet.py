"""Parquet: one file (read whole in parallel, by blocks, or row group by row group), and
a dataset of many files read as one table.

Everything goes through ``pyarrow.parquet.ParquetFile``: ``pyarrow.parquet.read_table``
and ``pyarrow.dataset`` import ``pyarrow._dataset``, which imports pandas when it is
installed (half a second at start-up).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from ..errors import InputError, UsageError
from . import fs
from .base import ReadOptions
from .columns import NOT_UTF8, arrow_error, is_list, schema_names
from .paths import readable_path, reject_empty
from .tables import TableSource

#: Bytes of decoded columns per piece when a block of rows is read from a row group.
_BLOCK_BUDGET = 1 << 21
#: The read buffer of a list column streamed page by page.
_PAGE_BUFFER = 1 << 20


def parquet_file(
    label: str, source: Any, pre_buffer: bool, what: str = "Parquet", buffer_size: int = 0
) -> Any:
    """``pyarrow.parquet.ParquetFile`` of a path or buffer; a damaged file is one line.
    ``buffer_size``: read column chunks through a buffer of this many bytes, page by
    page (0: each column chunk of a row group whole)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        if isinstance(source, str):
            source = readable_path(source)
        file = pq.ParquetFile(source, pre_buffer=pre_buffer, buffer_size=buffer_size)
    except (pa.ArrowException, OSError) as exc:
        raise arrow_error(label, what, exc) from None
    except UnicodeDecodeError:
        # pyarrow decodes the column paths while opening: a name that is not UTF-8.
        raise InputError(label, NOT_UTF8) from None
    schema_names(label, file.schema_arrow)
    return file


class ParquetReader:
    """One Parquet file (or buffered bytes), as a :class:`~.tables.TableReader`."""

    def __init__(self, label: str, path: str | None, data: bytes | None) -> None:
        import pyarrow as pa

        reject_empty(label, path)
        self.label = label
        self._source: Any = path if path is not None else pa.BufferReader(data)
        # pre_buffer=False: pre-buffering reads ahead whole row groups, and RSS grows
        # with the file; whole reads open the file again, pre-buffered (below).
        self._file = parquet_file(label, self._source, pre_buffer=False)
        meta = self._file.metadata
        self.schema = self._file.schema_arrow
        self.num_rows = meta.num_rows
        self.row_groups: tuple[int, ...] = tuple(
            meta.row_group(g).num_rows for g in range(meta.num_row_groups)
        )

    def _fail(self, exc: Exception) -> Exception:
        return arrow_error(self.label, "Parquet", exc)

    def read_table(self, names: list[str] | None) -> Any:
        """The columns ``names`` (all when None), whole."""
        import pyarrow as pa

        try:
            # Pre-buffered and decoded in parallel: a whole read is I/O bound otherwise.
            whole = self._file
            if isinstance(self._source, str):
                whole = parquet_file(self.label, self._source, pre_buffer=True)
            return whole.read(columns=names, use_threads=True)
        except (pa.ArrowException, OSError) as exc:
            raise self._fail(exc) from None

    def _column_groups(self, group: int, names: list[str], budget: int) -> Iterator[Any]:
        import pyarrow as pa

        step = max(1, budget // max(self._file.metadata.row_group(group).num_rows * 8, 1))
        try:
            for k in range(0, len(names), step):
                yield self._file.read_row_group(group, columns=names[k : k + step])
        except (pa.ArrowException, OSError) as exc:
            raise self._fail(exc) from None

    def read_groups(self, names: list[str], budget: int) -> Iterator[Iterable[Any]]:
        # Row group by row group, a few columns at a time: pyarrow's batch iterator
        # holds whole decoded row groups, so its memory grows with the file.
        import pyarrow as pa

        pool = pa.default_memory_pool()
        for group in range(self._file.metadata.num_row_groups):
            yield self._column_groups(group, names, budget)
            # Hand decoded pages back to the OS instead of keeping them cached.
            pool.release_unused()

    def iter_tables(self, names: list[str], rows: int) -> Iterator[Iterable[Any]]:
        if len(names) == 1 and is_list(self.schema.field(names[0]).type):
            return self._list_batches(names, rows)
        return self.read_groups(names, _BLOCK_BUDGET)

    def _list_batches(self, names: list[str], rows: int) -> Iterator[Iterable[Any]]:
        """A list column (rows of thousands of values) in batches of ``rows`` rows,
        decoded page by page through a buffered stream: memory is a batch and a page,
        however large the row groups (a writer's default is one for the whole file)."""
        import pyarrow as pa

        paged = parquet_file(self.label, self._source, False, buffer_size=_PAGE_BUFFER)
        try:
            for batch in paged.iter_batches(batch_size=rows, columns=names, use_threads=False):
                yield [pa.Table.from_batches([batch])]
                del batch
        except (pa.ArrowException, OSError) as exc:
            raise self._fail(exc) from None


class DatasetReader:
    """Many Parquet files read as one table, in the given (sorted) order, as a
    :class:`~.tables.TableReader`. The schema is the first file's; the others are
    promoted to it where Arrow can."""

    def __init__(self, label: str, files: list[str]) -> None:
        self.label = label
        self._paths = list(files)
        self._files = [
            parquet_file(f, fs.open_input(f) if fs.is_remote(f) else f, False, "Parquet dataset")
            for f in files
        ]
        self.schema = self._files[0].schema_arrow
        self.num_rows = sum(f.metadata.num_rows for f in self._files)

    @property
    def decoded_bytes(self) -> int:
        """Bytes of the data once decoded, from the files' footers."""
        return sum(
            f.metadata.row_group(i).total_byte_size
            for f in self._files
            for i in range(f.metadata.num_row_groups)
        )

    def _check_columns(self, names: list[str]) -> None:
        """Every file holds every chosen column (Arrow would give a file without them
        zero columns, not an error)."""
        for path, f in zip(self._paths, self._files):
            have = set(f.schema_arrow.names)
            missing = [n for n in names if n not in have]
            if missing:
                raise InputError(
                    path,
                    f"has no column {missing[0]!r}, which the dataset's first file has "
                    f"({self.label})",
                )

    def read_table(self, names: list[str]) -> Any:
        import pyarrow as pa

        self._check_columns(names)
        try:
            tables = [f.read(columns=names, use_threads=True) for f in self._files]
            return pa.concat_tables(tables, promote_options="permissive")
        except (pa.ArrowException, OSError) as exc:
            raise arrow_error(self.label, "Parquet dataset", exc) from None

    def iter_tables(self, names: list[str], rows: int) -> Iterator[Iterable[Any]]:
        import pyarrow as pa

        self._check_columns(names)
        try:
            # One file and one batch at a time: memory stays flat however many files.
            for f in self._files:
                for batch in f.iter_batches(batch_size=rows, columns=names):
                    yield [pa.Table.from_batches([batch])]
        except (pa.ArrowException, OSError) as exc:
            raise arrow_error(self.label, "Parquet dataset", exc) from None


def open_parquet(
    label: str, path: str | None, data: bytes | None, fmt: str, options: ReadOptions
) -> TableSource:
    """A Parquet file as a numeric source."""
    return TableSource(label, "parquet", ParquetReader(label, path, data), options)


def open_dataset(label: str, files: list[str], options: ReadOptions) -> TableSource:
    """The Parquet files of a dataset (see :func:`.paths.dataset_files`) as one source."""
    if options.key is not None:
        raise UsageError(
            f"{label}: a key selects an array in a .npz file, but this is a Parquet dataset"
        )
    return TableSource(label, "parquet", DatasetReader(label, files), options)


def read_columns(
    label: str, path: str | None, data: bytes | None, fmt: str, options: ReadOptions
) -> Any:
    """A whole Parquet file as a pyarrow table of any column types."""
    return ParquetReader(label, path, data).read_table(None)
