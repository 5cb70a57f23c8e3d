"""Numeric sources over Arrow tables: :class:`TableSource` applies the column selection
and converts to NumPy for every format implementing :class:`~.base.TableReader`
(Parquet file, Parquet dataset, Arrow IPC).
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial
from typing import Any

import numpy as np

from ..errors import InputError, UsageError
from .base import GroupedTableReader, ReadOptions, Source, TableReader
from .columns import (
    arrow_dtype,
    check_unique,
    checked_columns,
    column_array,
    is_list,
    table_to_array,
    usable_types,
)
from .roles import SAMPLE, choose_columns


class TableSource(Source):
    """A numeric :class:`Source` over a :class:`TableReader`.

    Without ``--*-columns``, the columns :func:`.roles.choose_columns` picks: the one
    list column (one distribution per row), or every numeric column but the row keys. The data can be read whole,
    in blocks of rows, as whole Arrow columns (plain numeric tables) and, when the
    reader has row groups, group by group.
    """

    streamable = True

    def __init__(self, label: str, fmt: str, reader: TableReader, options: ReadOptions) -> None:
        import pyarrow as pa

        schema = reader.schema
        names = list(schema.names)
        check_unique(label, names)
        types = [schema.field(i).type for i in range(len(names))]
        selection = choose_columns(
            label, names, types, usable_types(types), options, partial(first_block, reader)
        )
        chosen = selection.chosen
        if not chosen:
            raise InputError(label, "has no numeric columns")
        if reader.num_rows == 0:
            raise InputError(label, "has no rows")
        if len(chosen) > 1 and any(is_list(types[i]) for i in chosen):
            raise UsageError(f"{label}: a list column must be the only column selected")
        picked = [names[i] for i in chosen]
        width: int | None
        if selection.list_column:
            t = types[chosen[0]]
            width = (
                t.list_size
                if pa.types.is_fixed_size_list(t)
                # One row: SAMPLE rows of whole distributions (65,536 x the vocabulary)
                # is the memory a list column streams to stay below.
                else first_length(first_block(reader, picked, 1).get(picked[0]))
            )
            self._list = True
            dtype = arrow_dtype([t.value_type])
        else:
            width = len(chosen)
            self._list = False
            dtype = arrow_dtype([types[i] for i in chosen])
        shape = (reader.num_rows, width if width is not None else -1)
        super().__init__(label, fmt, shape, dtype, picked)
        self.notes = selection.notes
        self.roles = selection.roles
        self._reader = reader
        self._options = options
        self._width = width
        self.columnar = not self._list
        # A list column (wide rows: one distribution each) streams block by block, so
        # memory is a block of rows, never the table (its Arrow copy, then NumPy's).
        self.stream_always = self._list
        self._grouped: GroupedTableReader | None = None
        if not self._list and isinstance(reader, GroupedTableReader):
            self._grouped = reader
            self.row_groups = reader.row_groups

    def read(self) -> np.ndarray:
        table = self._reader.read_table(self._picked)
        if self._list:
            return self._list_rows(table, 0)
        return table_to_array(self.label, table, self._picked, self._options)

    @property
    def _picked(self) -> list[str]:
        assert self.columns is not None
        return self.columns

    def iter_chunks(self, rows: int) -> Iterator[np.ndarray]:
        """Blocks of rows; a reader may deliver each block as several column groups,
        converted one at a time into the block (bounded memory for wide row groups)."""
        first = 0
        for groups in self._reader.iter_tables(self._picked, rows):
            if self._list:
                # One column of lists: each piece is whole rows, checked for their width.
                for table in groups:
                    piece = self._list_rows(table, first)
                    first += len(piece)
                    if len(piece):
                        yield piece
                continue
            block: np.ndarray | None = None
            col = n = 0
            for table in groups:
                n, k = table.num_rows, table.num_columns
                names = list(table.column_names)
                if block is None:
                    if self._width is None or k == self._width:
                        block = table_to_array(
                            self.label, table, names, self._options, first_row=first
                        )
                        col = k
                        break
                    block = np.empty((n, self._width), dtype=self.dtype, order="F")
                table_to_array(
                    self.label,
                    table,
                    names,
                    self._options,
                    first_row=first,
                    out=block[:, col : col + k],
                )
                col += k
                del table
            if block is not None and self._width is not None and col < self._width:
                # Never hand on a block whose columns were not all filled.
                raise InputError(self.label, f"rows {first}..: {col} of {self._width} columns read")
            if n and block is not None:
                yield block
            del block
            first += n

    def _list_rows(self, table: Any, first: int) -> np.ndarray:
        """Rows of the list column; every row as long as the first row of the file."""
        piece = table_to_array(self.label, table, self._picked, self._options, first_row=first)
        if self._width is not None and len(piece) and piece.shape[1] != self._width:
            raise InputError(
                self.label,
                f"column {self._picked[0]!r}: row {first} has {piece.shape[1]} values, "
                f"but row 0 has {self._width} (ragged lists)",
            )
        return piece

    def table_blocks(self, rows: int) -> Iterator[Any]:
        names = list(self._reader.schema.names)
        for groups in self._reader.iter_tables(names, rows):
            # A block may come as several tables of adjacent columns: one table.
            block = None
            for table in groups:
                if block is None:
                    block = table
                    continue
                for name, column in zip(table.column_names, table.columns):
                    block = block.append_column(name, column)
            if block is not None:
                yield block
            del block

    def read_columns(self) -> list[Any] | None:
        if not self.columnar:
            return None
        table = self._reader.read_table(self._picked)
        return checked_columns(self.label, table.columns, self._picked, self._options)

    def iter_groups(self, budget: int) -> Iterator[tuple[int, list[np.ndarray]]]:
        if self._grouped is None:
            return super().iter_groups(budget)
        return self._groups(self._grouped, budget)

    def _groups(
        self, reader: GroupedTableReader, budget: int
    ) -> Iterator[tuple[int, list[np.ndarray]]]:
        first = 0
        picked = self._picked
        for n, tables in zip(reader.row_groups, reader.read_groups(picked, budget)):
            col = 0
            for table in tables:
                k = table.num_columns
                checked = checked_columns(
                    self.label, table.columns, picked[col : col + k], self._options, first_row=first
                )
                yield col, [column_array(c, self.dtype) for c in checked]
                col += k
                del table
            first += n


def first_block(reader: TableReader, names: list[str], rows: int = SAMPLE) -> dict[str, Any]:
    """The first block of about ``rows`` rows (a Parquet file's first row group, at most)
    of the columns ``names``, as Arrow columns by name."""
    columns: dict[str, Any] = {}
    for groups in reader.iter_tables(names, rows):
        for table in groups:
            columns.update(zip(table.column_names, table.columns))
        break
    return columns


def first_length(column: Any) -> int | None:
    """The length of the first list of a list column (None: no rows, or a null first)."""
    if column is None or not len(column) or not column[0].is_valid:
        return None
    return len(column[0])
