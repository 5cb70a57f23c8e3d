"""Columns of Arrow tables: the ``--*-columns`` selector, and the checked conversion
of numeric (or one list) columns to NumPy, shared by every table format.

Arrow arrays become NumPy arrays through their buffers (:func:`array_values`), never
through pyarrow's ``to_numpy``: with pandas installed, that imports pandas (half a
second) on the first call, whatever the array.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import InputError, UsageError
from ..text import listing
from .base import ReadOptions


def select_columns(label: str, names: list[str], spec: str | None, usable: list[bool]) -> list[int]:
    """Resolve a ``--*-columns`` spec (names, globs, 0-based indices) to column indices.

    Without a spec, every usable column in file order. A token that is a number is an
    index unless a column has that name; duplicates are kept once, in first order.
    """
    if spec is None:
        return [i for i, ok in enumerate(usable) if ok]
    chosen: list[int] = []
    for token in (s.strip() for s in spec.split(",")):
        if not token:
            continue
        if token.lstrip("-").isdigit() and token not in names:
            i = int(token)
            if not -len(names) <= i < len(names):
                raise UsageError(
                    f"{label}: column index {i} is out of range; the file has {len(names)} columns"
                )
            hits = [i % len(names)]
        elif any(c in token for c in "*?["):
            hits = [i for i, n in enumerate(names) if fnmatch.fnmatchcase(n, token)]
        else:
            hits = [i for i, n in enumerate(names) if n == token]
        if not hits:
            raise UsageError(
                f"{label}: no column matches {token!r}; columns are: {listing(names, 20)}"
            )
        chosen.extend(h for h in hits if h not in chosen)
    if not chosen:
        raise UsageError(f"{label}: the column selection {spec!r} names no column")
    return chosen


#: The error of a column name whose bytes are not UTF-8.
NOT_UTF8 = "has a column name that is not valid UTF-8"


def schema_names(label: str, schema: Any) -> list[str]:
    """The column names of an Arrow schema; a name that is not UTF-8 (a damaged or
    hostile file: pyarrow decodes names on access) is one line, not a crash later."""
    try:
        return list(schema.names)
    except UnicodeDecodeError:
        raise InputError(label, NOT_UTF8) from None


def check_unique(label: str, names: Sequence[str]) -> None:
    """Column names must be unique: a name would otherwise select one column or another."""
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise InputError(label, f"has two columns named {name!r}; column names must be unique")
        seen.add(name)


def is_number(text: str) -> bool:
    """Whether ``text`` parses as a float (``"1e3"``, ``" nan "``)."""
    try:
        float(text)
    except ValueError:
        return False
    return True


def is_list(t: Any) -> bool:
    """Whether an Arrow type is a list, large list or fixed-size list."""
    import pyarrow as pa

    return bool(pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t))


def usable_types(types: Sequence[Any]) -> list[bool]:
    """Which Arrow types are numbers kldiv reads (floats, integers, decimals)."""
    import pyarrow as pa

    return [
        bool(pa.types.is_floating(t) or pa.types.is_integer(t) or pa.types.is_decimal(t))
        for t in types
    ]


def column_dtype(t: Any) -> np.dtype:
    """float16/32/64 columns keep their dtype; integers and decimals become float64."""
    import pyarrow as pa

    if pa.types.is_floating(t):
        kept: np.dtype = np.dtype(t.to_pandas_dtype())
        return kept
    return np.dtype(np.float64)


def arrow_dtype(types: Sequence[Any]) -> np.dtype:
    """The dtype a table of these column types is read as."""
    return np.dtype(np.result_type(*(column_dtype(t) for t in types)) if types else np.float64)


def array_values(array: Any) -> np.ndarray:
    """One numeric Arrow ``Array`` (not chunked) as a 1-D NumPy array; nulls become NaN.

    Floats without nulls are a zero-copy view of the values buffer; integers keep their
    dtype unless they hold nulls (then float64); decimals and the null type are cast to
    float64 first.
    """
    import pyarrow as pa

    t = array.type
    if pa.types.is_decimal(t) or pa.types.is_null(t):
        array = array.cast(pa.float64())
        t = array.type
    dtype = np.dtype(t.to_pandas_dtype())
    n, offset = len(array), array.offset
    buffers = array.buffers()
    if n == 0 or buffers[1] is None:
        values = np.zeros(n, dtype=dtype)
    else:
        values = np.frombuffer(buffers[1], dtype=dtype, count=offset + n)[offset:]
    if not array.null_count:
        return values
    bits = np.frombuffer(buffers[0], dtype=np.uint8)
    valid = np.unpackbits(bits, bitorder="little", count=offset + n)[offset:].astype(bool)
    out = values.astype(dtype if dtype.kind == "f" else np.float64)
    out[~valid] = np.nan
    return out


def column_array(column: Any, dtype: np.dtype) -> np.ndarray:
    """One checked column as a 1-D NumPy array of ``dtype``: zero-copy for a float
    column in one chunk without nulls; several chunks (a CSV read gives hundreds) are
    joined by Arrow in one copy, without a NumPy array per chunk first."""
    if hasattr(column, "num_chunks"):
        column = column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
    return array_values(column).astype(dtype, copy=False)


def first_null(col: Any) -> int:
    """Position of the first null (the column has one). pyarrow.compute is slow to
    import, so only an error pays for it."""
    import pyarrow.compute as pc

    return int(pc.index(pc.is_null(col), True).as_py())


def missing_value(label: str, column: str, where: str) -> InputError:
    """The error for a missing value, with the option that reads it as NaN."""
    return InputError(
        label,
        f"column {column!r}: {where} is missing a value "
        "(use --missing nan to read missing values as NaN)",
    )


def first_non_number(col: Any) -> tuple[int, str] | None:
    """The first value of a text column that is not a number, and its position."""
    for i, value in enumerate(col.to_pylist()):
        if value is not None and not (isinstance(value, str) and is_number(value)):
            return i, value
    return None


def numbers_in(column: Any) -> bool:
    """Whether a text column holds numbers among its first 1,000 values: then it is a
    numeric column with stray words (an error later), not a column of names."""
    return any(isinstance(v, str) and is_number(v) for v in column.slice(0, 1000).to_pylist())


def arrow_error(label: str, what: str, exc: Exception) -> InputError:
    """An Arrow or OS error while reading, as one line naming the file."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return InputError(label, f"is not a readable {what} file ({text})")


def checked_columns(
    label: str,
    columns: Sequence[Any],
    names: Sequence[str],
    options: ReadOptions,
    row_word: str = "row",
    first_row: int = 0,
) -> list[Any]:
    """The columns as numeric pyarrow arrays, or an error naming the first bad cell.

    A column of the null type (all missing) is cast to float64; a text column is an
    error naming its first value that is not a number; nulls are an error unless
    ``options.missing`` is ``"nan"``.
    """
    import pyarrow as pa

    arrays = []
    for name, col in zip(names, columns):
        t = col.type
        if pa.types.is_null(t):
            col = col.cast(pa.float64())
            t = col.type
        if not (pa.types.is_floating(t) or pa.types.is_integer(t) or pa.types.is_decimal(t)):
            bad = first_non_number(col)
            where = f"{row_word} {first_row + bad[0]}: " if bad else ""
            shown = f"{bad[1]!r} is not a number" if bad else f"is of type {t}, not numeric"
            raise InputError(label, f"column {name!r}: {where}{shown}")
        if col.null_count and options.missing == "error":
            raise missing_value(label, name, f"{row_word} {first_row + first_null(col)}")
        arrays.append(col)
    return arrays


def table_to_array(
    label: str,
    table: Any,
    names: Sequence[str],
    options: ReadOptions,
    row_word: str = "row",
    first_row: int = 0,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Selected numeric (or one list) columns of a pyarrow table as a 2-D float array
    (written into ``out`` when given)."""
    columns = [table.column(i) for i in range(table.num_columns)]
    if len(columns) == 1 and is_list(columns[0].type):
        return list_column_to_array(label, names[0], columns[0], options, row_word, first_row)
    arrays = checked_columns(label, columns, names, options, row_word, first_row)
    if not arrays:
        return np.empty((table.num_rows, 0))
    dtype = np.result_type(*(column_dtype(c.type) for c in arrays))
    # Column-major, chunk by chunk: each piece lands with one contiguous copy (a
    # row-major target would scatter every value, worst for wide tables).
    if out is None:
        out = np.empty((table.num_rows, len(arrays)), dtype=dtype, order="F")
    for j, col in enumerate(arrays):
        pos = 0
        for chunk in col.chunks:
            n = len(chunk)
            out[pos : pos + n, j] = array_values(chunk)
            pos += n
    return out


def list_column_to_array(
    label: str, name: str, col: Any, options: ReadOptions, row_word: str, first_row: int
) -> np.ndarray:
    """A list column: one distribution per row; every row must have the same length."""
    import pyarrow as pa

    col = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    n = len(col)
    if col.null_count:
        raise InputError(
            label, f"column {name!r}: {row_word} {first_row + first_null(col)} is null"
        )
    if pa.types.is_fixed_size_list(col.type):
        lengths = np.full(n, col.type.list_size, dtype=np.int64)
    else:
        lengths = np.diff(array_values(col.offsets))
    width = int(lengths[0]) if n else 0
    ragged = np.flatnonzero(lengths != width)
    if ragged.size:
        r = int(ragged[0])
        raise InputError(
            label,
            f"column {name!r}: {row_word} {first_row + r} has {int(lengths[r])} values, "
            f"but {row_word} {first_row} has {width} (ragged lists)",
        )
    values = col.flatten()
    t = values.type
    if not (pa.types.is_floating(t) or pa.types.is_integer(t)):
        raise InputError(label, f"column {name!r} holds lists of {t}, not numbers")
    if values.null_count and options.missing == "error":
        flat = first_null(values)
        raise missing_value(label, name, f"{row_word} {first_row + flat // max(width, 1)}")
    arr = array_values(values)
    if arr.dtype.kind != "f":
        arr = arr.astype(np.float64)
    return arr.reshape(n, width)
