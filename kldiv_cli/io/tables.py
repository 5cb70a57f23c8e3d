"""Numeric sources over Arrow tables: :class:`TableSource` applies the column selection
and converts to NumPy for every format implementing :class:`~.base.TableReader`
(Parquet file, Parquet dataset, Arrow IPC).
"""

from __future__ import annotations

from collections.abc import Iterator
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
    select_columns,
    table_to_array,
    usable_types,
)


class TableSource(Source):
    """A numeric :class:`Source` over a :class:`TableReader`.

    Without ``--*-columns``, every numeric column in file order; when there is none,
    a single list column (one distribution per row). The data can be read whole,
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
        usable = usable_types(types)
        if options.columns is None and not any(usable):
            lists = [i for i, t in enumerate(types) if is_list(t)]
            if len(lists) == 1:
                usable = [i == lists[0] for i in range(len(names))]
        chosen = select_columns(label, names, options.columns, usable)
        if not chosen:
            raise InputError(label, "has no numeric columns")
        if reader.num_rows == 0:
            raise InputError(label, "has no rows")
        if len(chosen) > 1 and any(is_list(types[i]) for i in chosen):
            raise UsageError(f"{label}: a list column must be the only column selected")
        picked = [names[i] for i in chosen]
        width: int | None
        if len(chosen) == 1 and is_list(types[chosen[0]]):
            t = types[chosen[0]]
            width = t.list_size if pa.types.is_fixed_size_list(t) else None
            self._list = True
            dtype = arrow_dtype([t.value_type])
        else:
            width = len(chosen)
            self._list = False
            dtype = arrow_dtype([types[i] for i in chosen])
        shape = (reader.num_rows, width if width is not None else -1)
        super().__init__(label, fmt, shape, dtype, picked)
        self._reader = reader
        self._options = options
        self._width = width
        self.columnar = not self._list
        self._grouped: GroupedTableReader | None = None
        if not self._list and isinstance(reader, GroupedTableReader):
            self._grouped = reader
            self.row_groups = reader.row_groups

    def read(self) -> np.ndarray:
        table = self._reader.read_table(self._picked)
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
