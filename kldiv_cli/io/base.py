"""What every reader shares: the read options, the size limits and the :class:`Source` base.

A numeric reader (one module per format: :mod:`.npy`, :mod:`.npz`, :mod:`.csv`,
:mod:`.parquet`, :mod:`.arrow`, :mod:`.safetensors`, :mod:`.kld`) returns a :class:`Source`: a label for messages, the
shape and dtype it will produce, and the data either whole (:meth:`Source.read`) or in
pieces. A subclass implements :meth:`Source.read` and, where its format allows, the
optional capabilities:

- ``iter_chunks(rows)`` with ``streamable = True``: blocks of whole rows (bounded memory);
  :meth:`Source.iter_rows` gives the same data as rows of the last axis (a rank-3 tensor
  streams along its leading axes), read straight from the file by the array formats;
- ``read_columns()`` with ``columnar = True``: the whole table as checked numeric Arrow
  columns (see :func:`.columns.column_array`);
- ``iter_groups(budget)`` with ``row_groups`` set: Parquet row groups, a few columns at a time.

A table format implements the smaller :class:`TableReader` protocol instead (schema,
row count, whole and block reads of named columns; :class:`GroupedTableReader` adds
row groups) and gets its :class:`Source` from :class:`.tables.TableSource`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

MISSING_POLICIES: tuple[str, ...] = ("error", "nan")
#: Tables larger than this (once read) are streamed instead of read whole.
STREAM_ABOVE = 256 << 20
STDIN = "-"


@dataclass(frozen=True)
class ReadOptions:
    """How to read one side: format override, key (a .npz array, a safetensors tensor),
    column selection, CSV delimiter, and what a missing value (empty CSV cell, Parquet
    null) means."""

    fmt: str | None = None
    key: str | None = None
    columns: str | None = None
    delimiter: str | None = None
    missing: str = "error"
    #: Booleans read as 0 and 1 (a mask); refused otherwise.
    booleans: bool = False
    #: The command's own options for a key and a format, named in hints (None: none).
    key_option: str | None = None
    format_option: str | None = None
    #: The command's option choosing this input's columns, named in notes and errors
    #: about the column selection (None: ``--columns``).
    columns_option: str | None = None
    #: Memory before speed: a CSV above :data:`STREAM_ABOVE` is parsed block by block
    #: (one thread) rather than whole (all of them), as ``inspect`` reads it.
    stream: bool = False
    #: Describing, not computing (``inspect``): a text column with numbers among its
    #: words is left out as text instead of being chosen and refused at its first word.
    describe: bool = False


@dataclass(frozen=True)
class ColumnRole:
    """One column of a table and what the column selection made of it (:mod:`.roles`)."""

    name: str
    #: ``class`` (one class of the distribution), ``distribution`` (a list column: a
    #: whole distribution per row), ``key`` (a row key, left out), ``metadata`` (beside a
    #: list column, left out) or ``unused`` (not numeric, or not chosen).
    role: str
    reason: str = ""


class Source:
    """One opened numeric input: what it holds, and how to get it.

    Parameters
    ----------
    label : str
        The name used in messages (a path, ``<stdin>``, ``file.npz[key]``).
    fmt : str
        A format's name (:func:`.formats.names`).
    shape : tuple of int
        The shape :meth:`read` returns; rows are -1 while unknown (a streamed CSV),
        columns are -1 for a list column of varying width.
    dtype : numpy.dtype
        The float dtype the data is read as.
    columns : list of str, optional
        The selected column names (tables only).
    """

    #: :meth:`iter_chunks` reads block by block from the file (otherwise it slices the
    #: whole array).
    streamable: bool = False
    #: Read block by block even when small (cheap for .npy; a whole Parquet read is
    #: faster, multi-threaded, while it fits comfortably in memory).
    stream_always: bool = False
    #: :meth:`read_columns` gives the whole table as numeric Arrow columns.
    columnar: bool = False
    #: Rows in each row group, when :meth:`iter_groups` can read group by group.
    row_groups: tuple[int, ...] | None = None

    def __init__(
        self,
        label: str,
        fmt: str,
        shape: tuple[int, ...],
        dtype: np.dtype,
        columns: list[str] | None = None,
    ) -> None:
        self.label = label
        self.fmt = fmt
        self.shape = shape
        self.dtype = dtype
        self.columns = columns
        #: What the column selection left out, and why (one sentence each, for stderr).
        self.notes: list[str] = []
        #: Every column of a table with its role (see :mod:`.roles`); None for arrays.
        self.roles: list[ColumnRole] | None = None

    def read(self) -> np.ndarray:
        """The whole array (rows x columns for tables)."""
        raise NotImplementedError

    def iter_chunks(self, rows: int) -> Iterator[np.ndarray]:
        """Consecutive blocks of whole rows (first axis), each at most ``rows`` long.

        The default slices the whole array; streamable sources read block by block.
        """
        whole = self.read()
        if whole.ndim == 0:
            yield whole
            return
        for start in range(0, max(len(whole), 1), rows):
            yield whole[start : start + rows]

    def iter_rows(self, rows: int) -> Iterator[np.ndarray]:
        """Blocks of at most ``rows`` rows of the last axis, 2-D: every leading axis is
        flattened into rows (a ``(1, 2040, 32000)`` tensor is 2040 rows of 32000), a 1-D
        or 0-d array is one row.

        The default reads :meth:`iter_chunks` a few leading slices at a time (bounded by
        one slice of the first axis); formats whose rows lie contiguous in the file
        (.npy, .npz members, safetensors) read exactly ``rows`` rows at a time.
        """
        shape = self.shape
        if len(shape) <= 1:
            yield self.read().reshape(1, -1)
            return
        if len(shape) == 2:
            yield from self.iter_chunks(rows)
            return
        inner = math.prod(shape[1:-1])
        for block in self.iter_chunks(max(1, rows // max(inner, 1))):
            flat = block.reshape(-1, shape[-1])
            for start in range(0, len(flat), rows):
                yield flat[start : start + rows]
            del block, flat

    @property
    def flat_rows(self) -> int:
        """Rows of :meth:`iter_rows` (every axis but the last; -1 while unknown)."""
        if len(self.shape) <= 1:
            return 1
        lead = self.shape[:-1]
        return -1 if -1 in lead else math.prod(lead)

    def read_columns(self) -> list[Any] | None:
        """The whole table as checked numeric pyarrow columns, or None when not columnar."""
        return None

    def iter_groups(self, budget: int) -> Iterator[tuple[int, list[np.ndarray]]]:
        """Row group by row group, ``(first_column, arrays)`` of checked 1-D arrays, about
        ``budget`` bytes each; ``first_column`` 0 starts the next row group."""
        raise NotImplementedError(f"{self.label}: not stored in row groups")

    def table_blocks(self, rows: int) -> Iterator[Any] | None:
        """Every column of a table (selected or not, of any type) as pyarrow tables of
        about ``rows`` rows, block by block (memory: a block); None for arrays."""
        return None

    @property
    def nbytes(self) -> int:
        """Size of the data once read (rows x columns x itemsize)."""
        return math.prod(abs(n) for n in self.shape) * self.dtype.itemsize

    def should_stream(self) -> bool:
        """Whether to read block by block: streamable, and cheap or large enough to."""
        return self.streamable and (self.stream_always or self.nbytes > STREAM_ABOVE)

    def describe(self) -> dict[str, Any]:
        """The source as it appears in JSON reports."""
        return {
            "path": self.label,
            "format": self.fmt,
            "shape": list(self.shape),
            "dtype": str(self.dtype),
            **({"columns": self.columns} if self.columns is not None else {}),
            **({"left_out": left_out} if (left_out := self.left_out()) else {}),
        }

    def left_out(self) -> list[dict[str, str]]:
        """The table's columns the selection left out, with their role and why."""
        return [
            {"name": r.name, "role": r.role, "reason": r.reason}
            for r in self.roles or []
            if r.role not in ("class", "distribution")
        ]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.label!r}, {self.fmt}, shape={self.shape})"


@runtime_checkable
class TableReader(Protocol):
    """What a table format gives :class:`.tables.TableSource`.

    ``schema`` and ``num_rows`` are known without reading data. The readers take the
    selected column names.
    """

    schema: Any
    num_rows: int

    def read_table(self, names: list[str]) -> Any:
        """The selected columns, whole, as one pyarrow table."""
        ...

    def iter_tables(self, names: list[str], rows: int) -> Iterator[Iterable[Any]]:
        """Blocks of about ``rows`` rows, each as one or more tables of adjacent columns."""
        ...


@runtime_checkable
class GroupedTableReader(TableReader, Protocol):
    """A :class:`TableReader` stored in row groups (a Parquet file)."""

    #: Rows in each row group.
    row_groups: tuple[int, ...]

    def read_groups(self, names: list[str], budget: int) -> Iterator[Iterable[Any]]:
        """Row group by row group, tables of adjacent columns of about ``budget`` bytes."""
        ...
