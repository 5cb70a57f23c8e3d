"""CSV and TSV files: header and delimiter detected, read whole by pyarrow (float
columns without type inference, a large file of floats in parts on threads), or
streamed block by block when very large."""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from typing import Any

import numpy as np

from ..errors import InputError
from .base import STREAM_ABOVE, ColumnRole, ReadOptions, Source
from .columns import (
    checked_columns,
    numbers_in,
    table_to_array,
    usable_types,
)
from .csv_text import (
    MAX_CELL,
    Layout,
    block_size,
    check_header,
    csv_error,
    csv_layout,
    first_row,
    head_of,
    layout_of,
    memory_pool,
)
from .roles import Selection, choose_columns, float_keys, left_out_notes

#: CSV files larger than this are streamed. pyarrow's streaming CSV reader parses on
#: one thread, its whole-file reader on all of them, so streaming is kept for files
#: that would not fit comfortably in memory.
CSV_STREAM_ABOVE = 2 << 30
#: From this many columns, a CSV of plain numbers is parsed by NumPy (see :func:`read_wide`).
WIDE = 4000
#: CSV files of float columns from this size are parsed in parts (see
#: :func:`.csv_parts.read_parts`).
SPLIT_ABOVE = 8 << 20
#: The streaming reader's block (the whole-file reader keeps pyarrow's 1 MiB); a row
#: must fit in one block.
_BLOCK = 1 << 22


def _check_cells(label: str, table: Any, first_line: int) -> None:
    """No text cell longer than :data:`MAX_CELL` (read from the offsets, not the text)."""
    import pyarrow as pa

    for name, col in zip(table.column_names, table.columns):
        t = col.type
        if not (pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_binary(t)):
            continue
        wide = np.int64 if pa.types.is_large_string(t) else np.int32
        row = 0
        for chunk in col.chunks:
            offsets = np.frombuffer(
                chunk.buffers()[1], dtype=wide, count=len(chunk) + 1 + chunk.offset
            )
            lengths = np.diff(offsets[chunk.offset :])
            long = np.flatnonzero(lengths > MAX_CELL)
            if long.size:
                raise InputError(
                    label,
                    f"column {name!r}: line {first_line + row + int(long[0])} has a cell of "
                    f"{int(lengths[long[0]]):,} bytes (the limit is {MAX_CELL:,})",
                )
            row += len(chunk)


def _head_schema(head: bytes, read_opts: Any, parse_opts: Any, convert: Any) -> Any | None:
    """The schema type inference gives the whole lines of ``head`` (the file's first
    64 KiB); None when they do not parse.

    A column of floats in the head cannot be inferred as anything but float64 or text
    for the whole file, and the float64 converter is the one inference uses.
    """
    import pyarrow as pa
    import pyarrow.csv as pcsv

    end = head.rfind(b"\n")
    if end < 0:
        return None
    probe_opts = pcsv.ReadOptions(
        autogenerate_column_names=read_opts.autogenerate_column_names, use_threads=False
    )
    try:
        probe = pcsv.read_csv(
            pa.py_buffer(head[: end + 1]),
            read_options=probe_opts,
            parse_options=parse_opts,
            convert_options=convert,
        )
    except pa.ArrowInvalid:
        return None
    return probe.schema


def read_csv_table(
    label: str,
    path: str | None,
    data: bytes | None,
    fmt: str,
    options: ReadOptions,
    strings_can_be_null: bool = False,
) -> tuple[Any, bool]:
    """The whole CSV/TSV as a pyarrow table, with its header detected; names are the
    header's or 0-based indices. Returns (table, header)."""
    import pyarrow as pa
    import pyarrow.csv as pcsv

    head = head_of(path, data)
    delimiter, header, _ = layout_of(label, head, fmt, options)
    read_opts = pcsv.ReadOptions(
        autogenerate_column_names=not header, block_size=block_size(path, data)
    )
    parse_opts = pcsv.ParseOptions(delimiter=delimiter)
    convert = pcsv.ConvertOptions(null_values=[""], strings_can_be_null=strings_can_be_null)
    schema = _head_schema(head, read_opts, parse_opts, convert)
    floats = {} if schema is None else {f.name: f.type for f in schema if f.type == pa.float64()}

    def read(column_types: dict[str, Any]) -> Any:
        convert.column_types = column_types
        source = path if path is not None else pa.BufferReader(data)
        return pcsv.read_csv(
            source,
            read_options=read_opts,
            parse_options=parse_opts,
            convert_options=convert,
            memory_pool=memory_pool(),
        )

    table = None
    if (
        schema is not None
        and len(floats) == len(schema)
        and path is not None
        and pa.cpu_count() > 1
        and os.path.isfile(path)
        and os.path.getsize(path) >= SPLIT_ABOVE
    ):
        from .csv_parts import read_parts  # large files only: a small one never loads it

        convert.column_types = floats
        table = read_parts(path, schema.names, read_opts, parse_opts, convert)
    try:
        # The columns of floats in the head are read as float64 without type inference;
        # if one of them holds something else further on, that read fails and the file
        # is read again with inference, so types, values and errors are inference's.
        try:
            if table is None:
                table = read(floats)
        except pa.ArrowInvalid:
            if not floats:
                raise
            table = read({})
    except pa.ArrowInvalid as exc:
        raise csv_error(label, path, data, delimiter, exc) from None
    if table.num_rows == 0:
        raise InputError(label, "has a header but no data rows" if header else "has no data rows")
    if header:
        check_header(label, table.column_names)
    else:
        table = table.rename_columns([str(i) for i in range(table.num_columns)])
    _check_cells(label, table, 2 if header else 1)
    return table, header


def _usable(table_or_batch: Any, schema: Any, describe: bool = False) -> list[bool]:
    """Numeric columns, all-empty ones, and text columns holding numbers (a numeric
    column with a stray word: an error later, with its line; left out when only
    describing, ``describe``); other text columns (ids, labels) are skipped unless
    chosen."""
    import pyarrow as pa

    return [
        ok or pa.types.is_null(t) or (not describe and numbers_in(table_or_batch.column(i)))
        for i, (ok, t) in enumerate(zip(usable_types(schema.types), schema.types))
    ]


def _no_numeric_columns(label: str, names: list[str]) -> InputError:
    """The error for a table without numbers, with the likely delimiter when the whole
    header is one column holding another one (a ';'-separated file read with ',')."""
    if len(names) == 1:
        other = next((d for d in ";\t|" if d in names[0]), None)
        if other is not None:
            return InputError(
                label,
                f"has no numeric columns; is the delimiter {other!r}? (--delimiter {other!r})",
            )
    return InputError(label, "has no numeric columns")


def _choose(
    label: str, table_or_batch: Any, schema: Any, names: list[str], options: ReadOptions
) -> Selection:
    """The columns of a CSV that are the distribution (:func:`.roles.choose_columns`,
    on the whole table or the streamed reader's first block)."""
    # A dict, not names.index per column: 200,000 columns took minutes, quadratic.
    position = {n: i for i, n in enumerate(names)}
    selection = choose_columns(
        label,
        names,
        schema.types,
        _usable(table_or_batch, schema, options.describe),
        options,
        lambda wanted: {n: table_or_batch.column(position[n]) for n in wanted},
    )
    if not selection.chosen:
        raise _no_numeric_columns(label, names)
    return selection


class CsvSource(Source):
    """A CSV/TSV file read whole: as one array, or as Arrow columns."""

    columnar = True

    def __init__(
        self, label: str, fmt: str, path: str | None, data: bytes | None, options: ReadOptions
    ) -> None:
        table, header = read_csv_table(label, path, data, fmt, options)
        names = table.column_names
        selection = _choose(label, table, table.schema, names, options)
        chosen = selection.chosen
        picked = [names[i] for i in chosen]
        super().__init__(label, fmt, (table.num_rows, len(chosen)), np.dtype(np.float64), picked)
        self.notes = selection.notes
        self.roles = selection.roles
        self._table = table.select(chosen)
        self._whole = table
        self._options = options
        self._first_line = 2 if header else 1
        self._array: np.ndarray | None = None

    def read(self) -> np.ndarray:
        if self._array is None:
            self._array = table_to_array(
                self.label,
                self._table,
                self._picked,
                self._options,
                row_word="line",
                first_row=self._first_line,
            )
        return self._array

    @property
    def _picked(self) -> list[str]:
        assert self.columns is not None
        return self.columns

    def table_blocks(self, rows: int) -> Iterator[Any]:
        for start in range(0, self._whole.num_rows, rows):
            yield self._whole.slice(start, rows)

    def read_columns(self) -> list[Any]:
        return checked_columns(
            self.label, self._table.columns, self._picked, self._options, "line", self._first_line
        )


class WideCsvSource(Source):
    """A wide CSV of plain numbers, parsed by NumPy (see :func:`read_wide`), its row
    keys left out (:func:`.roles.float_keys`)."""

    def __init__(
        self, label: str, fmt: str, names: list[str], array: np.ndarray, flag: str
    ) -> None:
        keys = float_keys(names, array)
        if keys and len(keys) < len(names):
            keep = [j for j in range(len(names)) if j not in keys]
            array = np.asfortranarray(array[:, keep])
        else:
            keys = {}
        picked = [n for j, n in enumerate(names) if j not in keys]
        super().__init__(label, fmt, tuple(array.shape), array.dtype, picked)
        self.notes = left_out_notes(label, {names[j]: r for j, r in keys.items()}, {}, flag)
        self.roles = [
            ColumnRole(n, "key", keys[j]) if j in keys else ColumnRole(n, "class")
            for j, n in enumerate(names)
        ]
        self._array = array

    def read(self) -> np.ndarray:
        return self._array


def read_wide(
    label: str,
    path: str | None,
    data: bytes | None,
    fmt: str,
    layout: Layout,
    flag: str = "--columns",
) -> WideCsvSource | None:
    """A CSV whose every cell is a plain number, parsed by ``numpy.loadtxt``; None as soon
    as anything is not (a text column, an empty cell, a ragged line): pyarrow then
    reads the file and names the problem.

    pyarrow's reader pays per column of every block, NumPy per byte whatever the
    width, so from :data:`WIDE` columns NumPy is the faster at any length (and
    pyarrow's memory grows with the width). The values are
    the same, correctly rounded, but for one sign: pyarrow reads ``-0`` in a column of
    integers as 0, NumPy as -0.0.
    """
    import warnings

    names = first_row(label, path, data, layout.delimiter) if layout.header else []
    source: Any = path if path is not None else io.BytesIO(data or b"")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # loadtxt warns about a file without rows
            array = np.loadtxt(
                source,
                delimiter=layout.delimiter,
                skiprows=1 if layout.header else 0,
                ndmin=2,
                dtype=np.float64,
                comments=None,
                quotechar='"',
                encoding="utf-8-sig",
            )
    except ValueError:
        return None
    if not layout.header:
        names = [str(i) for i in range(array.shape[1])]
    if array.shape[0] == 0 or len(names) != array.shape[1]:
        return None
    check_header(label, names)
    return WideCsvSource(label, fmt, names, np.asfortranarray(array), flag)


class CsvStreamSource(Source):
    """A large CSV read with pyarrow's streaming reader: column types are taken from
    the first block, then fixed (float64) for the rest. The row count is not known
    until the end (shape[0] is -1)."""

    streamable = True
    stream_always = True

    def __init__(self, label: str, path: str, fmt: str, options: ReadOptions) -> None:
        import pyarrow as pa
        import pyarrow.csv as pcsv

        delimiter, header, _ = csv_layout(label, path, None, fmt, options)
        self._read_opts = pcsv.ReadOptions(
            autogenerate_column_names=not header, block_size=block_size(path, None, _BLOCK)
        )
        self._parse_opts = pcsv.ParseOptions(delimiter=delimiter)
        try:
            probe = pcsv.open_csv(
                path, read_options=self._read_opts, parse_options=self._parse_opts
            )
            schema = probe.schema
            first_block = probe.read_next_batch()
            probe.close()
        except StopIteration:
            raise InputError(
                label, "has a header but no data rows" if header else "has no data rows"
            ) from None
        except pa.ArrowInvalid as exc:
            raise csv_error(label, path, None, delimiter, exc) from None
        raw_names = schema.names
        names = raw_names if header else [str(i) for i in range(len(raw_names))]
        check_header(label, names)
        selection = _choose(label, first_block, schema, names, options)
        chosen = selection.chosen
        picked = [names[i] for i in chosen]
        super().__init__(label, fmt, (-1, len(chosen)), np.dtype(np.float64), picked)
        self.notes = selection.notes
        self.roles = selection.roles
        self._path = path
        self._options = options
        self._first_line = 2 if header else 1
        self._first_block = first_block
        self._names = names
        self._convert = pcsv.ConvertOptions(
            null_values=[""],
            strings_can_be_null=False,
            column_types={raw_names[i]: pa.float64() for i in chosen},
            include_columns=[raw_names[i] for i in chosen],
        )

    def _batches(self) -> Iterator[Any]:
        import pyarrow as pa
        import pyarrow.csv as pcsv

        reader = None
        while True:
            try:
                if reader is None:
                    reader = pcsv.open_csv(
                        self._path,
                        read_options=self._read_opts,
                        parse_options=self._parse_opts,
                        convert_options=self._convert,
                        memory_pool=memory_pool(),
                    )
                batch = reader.read_next_batch()
            except StopIteration:
                return
            except pa.ArrowInvalid as exc:
                text = str(exc).strip().splitlines()[0]
                raise InputError(self.label, f"has a cell that is not a number ({text})") from None
            yield pa.Table.from_batches([batch]).rename_columns(self.columns)

    def table_blocks(self, rows: int) -> Iterator[Any]:
        """Every column, block by block: the first block typed as inferred, the rest as
        text (all a missing-cell count needs, and no later cell can fail a type)."""
        import pyarrow as pa
        import pyarrow.csv as pcsv

        names = self._names
        yield pa.Table.from_batches([self._first_block]).rename_columns(names)
        convert = pcsv.ConvertOptions(
            null_values=[""],
            strings_can_be_null=True,
            column_types={name: pa.string() for name in self._first_block.schema.names},
        )
        # One thread: no blocks read ahead (a count needs no speed; memory is a block).
        read_opts = pcsv.ReadOptions(
            autogenerate_column_names=self._read_opts.autogenerate_column_names,
            block_size=self._read_opts.block_size,
            use_threads=False,
        )
        reader = pcsv.open_csv(
            self._path,
            read_options=read_opts,
            parse_options=self._parse_opts,
            convert_options=convert,
        )
        # The same block size cuts the same blocks: the first is the one above.
        batches = iter(reader)
        next(batches, None)
        for batch in batches:
            yield pa.Table.from_batches([batch]).rename_columns(names)

    def iter_chunks(self, rows: int) -> Iterator[np.ndarray]:
        first = self._first_line
        for table in self._batches():
            if table.num_rows:
                yield table_to_array(
                    self.label, table, table.column_names, self._options, "line", first
                )
            first += table.num_rows

    def read(self) -> np.ndarray:
        parts = list(self.iter_chunks(1 << 20))
        if not parts:
            raise InputError(self.label, "has no data rows")
        return np.concatenate(parts)


def open_csv(
    label: str, path: str | None, data: bytes | None, fmt: str, options: ReadOptions
) -> Source:
    """A CSV/TSV file as a numeric source: read whole, or streamed when very large (or
    above :data:`~.base.STREAM_ABOVE` when ``options.stream`` puts memory first)."""
    limit = STREAM_ABOVE if options.stream else CSV_STREAM_ABOVE
    if path is not None and os.path.getsize(path) > limit:
        return CsvStreamSource(label, path, fmt, options)
    layout = csv_layout(label, path, data, fmt, options)
    if layout.width >= WIDE and options.columns is None:
        wide = read_wide(label, path, data, fmt, layout, options.columns_option or "--columns")
        if wide is not None:
            return wide
    return CsvSource(label, fmt, path, data, options)


def read_columns(
    label: str, path: str | None, data: bytes | None, fmt: str, options: ReadOptions
) -> Any:
    """The whole CSV/TSV as a pyarrow table of any column types (an empty cell is missing)."""
    return read_csv_table(label, path, data, fmt, options, strings_can_be_null=True)[0]
