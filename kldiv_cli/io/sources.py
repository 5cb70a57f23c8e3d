"""Reading distributions from .npy, .npz, CSV/TSV, Parquet and Arrow files (or stdin).

Every reader gives a :class:`Source`: a label for messages, the shape and dtype
it will produce, and the data either whole (:meth:`Source.read`) or as chunks of
whole rows (:meth:`Source.iter_chunks`), so that large files stream with
bounded memory. Problems raise :class:`~kldiv_cli.errors.InputError` naming the
file and, where it applies, the column and row. NumPy and pyarrow are imported
here, lazily, by the CLI.
"""

from __future__ import annotations

import fnmatch
import io
import math
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from ..errors import InputError, UsageError

FORMATS: tuple[str, ...] = ("npy", "npz", "csv", "tsv", "parquet", "arrow")
EXTENSIONS = {
    ".npy": "npy",
    ".npz": "npz",
    ".csv": "csv",
    ".tsv": "tsv",
    ".tab": "tsv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".arrow": "arrow",
    ".feather": "arrow",
    ".ipc": "arrow",
}
MISSING_POLICIES: tuple[str, ...] = ("error", "nan")
#: Tables larger than this (once read) are streamed instead of read whole.
STREAM_ABOVE = 256 << 20
#: CSV files larger than this are streamed. pyarrow's streaming CSV reader is ~3x
#: slower than its parallel whole-file reader, so it is kept for files that would
#: not fit comfortably in memory.
CSV_STREAM_ABOVE = 2 << 30
STDIN = "-"
_NPY_MAGIC = b"\x93NUMPY"


@dataclass(frozen=True)
class ReadOptions:
    """How to read one side: format override, .npz key, column selection, CSV delimiter."""

    fmt: str | None = None
    key: str | None = None
    columns: str | None = None
    delimiter: str | None = None
    missing: str = "error"


@dataclass
class Source:
    """One opened input: what it holds, and how to get it."""

    label: str
    fmt: str
    shape: tuple[int, ...]
    dtype: np.dtype
    columns: list[str] | None = None
    _read: object = field(default=None, repr=False)
    _chunks: object = field(default=None, repr=False)
    #: Read block by block even when small (cheap for .npy; a whole Parquet read is
    #: faster, multi-threaded, while it fits comfortably in memory).
    stream_always: bool = False
    #: Tables: the whole data as checked numeric pyarrow columns (see
    #: :func:`column_array`). None when the source is not a plain numeric table.
    _columns: object = field(default=None, repr=False)
    #: Tables stored in row groups (a Parquet file): the rows in each group, and
    #: ``_groups(budget)``, which yields ``(first_column, arrays)`` for each group a
    #: few columns at a time, about ``budget`` bytes each.
    row_groups: tuple[int, ...] | None = None
    _groups: object = field(default=None, repr=False)

    @property
    def columnar(self) -> bool:
        """Whether :meth:`read_columns` can give the whole table as numeric columns."""
        return self._columns is not None

    def read_columns(self) -> list | None:
        return self._columns() if self._columns is not None else None

    def iter_groups(self, budget: int) -> Iterator[tuple[int, list[np.ndarray]]]:
        """Row group by row group, column groups of checked 1-D arrays (zero-copy
        where Arrow allows); ``first_column`` 0 starts the next row group."""
        return self._groups(budget)

    def read(self) -> np.ndarray:
        """The whole array (rows x columns for tables)."""
        return self._read()

    def iter_chunks(self, rows: int) -> Iterator[np.ndarray]:
        """Consecutive blocks of whole rows (first axis), each at most ``rows`` long."""
        if self._chunks is not None:
            yield from self._chunks(rows)
            return
        whole = self.read()
        for start in range(0, max(len(whole), 1) if whole.ndim else 1, rows):
            yield whole[start : start + rows] if whole.ndim else whole

    @property
    def streamable(self) -> bool:
        return self._chunks is not None

    @property
    def nbytes(self) -> int:
        """Size of the data once read (rows x columns x itemsize)."""
        return math.prod(abs(n) for n in self.shape) * self.dtype.itemsize

    def should_stream(self) -> bool:
        return self.streamable and (self.stream_always or self.nbytes > STREAM_ABOVE)

    def describe(self) -> dict:
        return {
            "path": self.label,
            "format": self.fmt,
            "shape": list(self.shape),
            "dtype": str(self.dtype),
            **({"columns": self.columns} if self.columns is not None else {}),
        }


# ---------------------------------------------------------------- dispatch


def read_stdin() -> bytes:
    """All of stdin: np.load and Parquet need to seek, so a pipe is buffered first."""
    data = sys.stdin.buffer.read()
    if not data:
        raise InputError("<stdin>", "is empty")
    return data


def sniff(data: bytes) -> str:
    """The format of bytes from stdin: npy/npz/Parquet/Arrow by magic bytes, else CSV."""
    if data.startswith(_NPY_MAGIC):
        return "npy"
    if data.startswith(b"PK\x03\x04") or data.startswith(b"PK\x05\x06"):
        return "npz"
    if data.startswith(b"PAR1"):
        return "parquet"
    if data.startswith(b"ARROW1") or data.startswith(b"\xff\xff\xff\xff"):
        return "arrow"
    first = data.split(b"\n", 1)[0]
    return "tsv" if b"\t" in first and b"," not in first else "csv"


def detect_format(path: str, override: str | None) -> str:
    if override:
        if override not in FORMATS:
            raise UsageError(f"unknown format {override!r}; choose one of {', '.join(FORMATS)}")
        return override
    ext = os.path.splitext(path)[1].lower()
    fmt = EXTENSIONS.get(ext)
    if fmt is None:
        what = f"extension {ext!r}" if ext else "no extension"
        raise InputError(
            path,
            f"unknown file type ({what}); name it .npy, .npz, .csv, .tsv, .parquet or .arrow, "
            "or give --input-format/--target-format",
        )
    return fmt


def dataset_files(path: str) -> list[str] | None:
    """The Parquet files of a partitioned dataset: a folder (searched recursively) or a
    glob pattern. None when ``path`` is not one. A path that exists is used as given:
    a file whose name holds ``*`` is that file, not a pattern."""
    import glob

    if os.path.isdir(path):
        found = [
            os.path.join(root, name)
            for root, _, names in os.walk(path)
            for name in names
            if os.path.splitext(name)[1].lower() in (".parquet", ".pq")
            and not name.startswith((".", "_"))
        ]
        if not found:
            raise InputError(path, "is a directory, not a file, and holds no .parquet files")
        return sorted(found)
    if os.path.lexists(path) or not any(c in path for c in "*?["):
        return None
    found = sorted(p for p in glob.glob(path, recursive=True) if os.path.isfile(p))
    if not found:
        raise InputError(path, "no such file (the pattern matches no files)")
    return found


def _open_dataset(label: str, files: list[str], options: ReadOptions) -> Source:
    """Many Parquet files read as one table, in file order, streamed by record batches."""
    import pyarrow as pa
    import pyarrow.dataset as ds

    if options.key is not None:
        raise UsageError(
            f"{label}: a key selects an array in a .npz file, but this is a Parquet dataset"
        )
    try:
        dataset = ds.dataset(files, format="parquet")
        schema = dataset.schema
        num_rows = dataset.count_rows()
    except (pa.ArrowException, OSError) as exc:
        raise _arrow_error(label, "Parquet dataset", exc) from None

    def read_table(cols):
        try:
            return dataset.to_table(columns=[schema.names[i] for i in cols])
        except (pa.ArrowException, OSError) as exc:
            raise _arrow_error(label, "Parquet dataset", exc) from None

    def iter_tables(cols, rows):
        names = [schema.names[i] for i in cols]
        try:
            # One fragment and one batch ahead: memory stays flat however many files.
            for batch in dataset.to_batches(
                columns=names, batch_size=rows, batch_readahead=1, fragment_readahead=1
            ):
                yield [pa.Table.from_batches([batch])]
        except (pa.ArrowException, OSError) as exc:
            raise _arrow_error(label, "Parquet dataset", exc) from None

    return _table_source(label, "parquet", schema, num_rows, options, read_table, iter_tables)


def _check_path(path: str) -> None:
    try:
        os.stat(path)
    except FileNotFoundError:
        raise InputError(path, "no such file") from None
    except PermissionError:
        raise InputError(path, "permission denied") from None
    except OSError as exc:
        raise InputError(path, exc.strerror or str(exc)) from None
    if not os.access(path, os.R_OK):
        raise InputError(path, "permission denied")


def open_source(path: str, options: ReadOptions, stdin: bytes | None = None) -> Source:
    """Open ``path`` (or the buffered ``stdin`` bytes when ``path == '-'``)."""
    if options.missing not in MISSING_POLICIES:
        raise UsageError(f"unknown missing-value policy {options.missing!r}")
    if path == STDIN:
        if stdin is None:
            raise UsageError("stdin was not read")
        fmt = options.fmt or sniff(stdin)
        label = "<stdin>"
    else:
        files = dataset_files(path)
        if files is not None:
            return _open_dataset(path, files, options)
        _check_path(path)
        fmt = detect_format(path, options.fmt)
        label = path
    opener = {
        "npy": _open_npy,
        "npz": _open_npz,
        "csv": _open_csv,
        "tsv": _open_csv,
        "parquet": _open_parquet,
        "arrow": _open_arrow,
    }[fmt]
    if options.key is not None and fmt != "npz":
        raise UsageError(f"{label}: a key selects an array in a .npz file, but this is {fmt}")
    if options.columns is not None and fmt in ("npy", "npz"):
        raise UsageError(f"{label}: columns select from a table; this is a .{fmt} array")
    try:
        return opener(label, path if stdin is None or path != STDIN else None, stdin, fmt, options)
    except (InputError, UsageError):
        raise
    except MemoryError:
        raise InputError(label, "is too large to load into memory") from None
    except OSError as exc:
        raise InputError(label, exc.strerror or str(exc)) from None


# ---------------------------------------------------------------- arrays


def _numeric_dtype(label: str, dtype: np.dtype) -> np.dtype:
    """The float dtype kldiv computes in for stored ``dtype``; errors for the rest."""
    if dtype.hasobject:
        raise InputError(
            label, "holds Python objects (a pickled array); kldiv never unpickles data"
        )
    if dtype.names is not None:
        raise InputError(label, "holds a structured (record) array, not plain numbers")
    kind = dtype.kind
    if kind == "f":
        if dtype.itemsize not in (2, 4, 8):
            raise InputError(label, f"holds {dtype} numbers; use float16, float32 or float64")
        return dtype.newbyteorder("=")
    if kind in "iu":
        return np.dtype(np.float64)
    if kind == "c":
        raise InputError(
            label, f"holds complex numbers ({dtype}); KL divergence needs real numbers"
        )
    if kind == "b":
        raise InputError(label, "holds booleans, not numbers")
    if kind in "US":
        raise InputError(label, f"holds text ({dtype}), not numbers")
    raise InputError(label, f"holds {dtype} data, not numbers")


def _npy_header(label: str, fp, available: int) -> tuple[tuple[int, ...], bool, np.dtype, int]:
    """Parse and check a .npy header without reading the data.

    A header can declare any shape: comparing its byte count with what the file
    holds makes a "trillion elements" header fail at once, with no allocation.
    """
    fmt = np.lib.format
    start = fp.tell()
    head = fp.read(len(_NPY_MAGIC))
    if len(head) < len(_NPY_MAGIC):
        raise InputError(label, "is empty or truncated: no .npy header")
    if head != _NPY_MAGIC:
        raise InputError(label, "is not a .npy file (no NumPy magic bytes)")
    fp.seek(start)
    try:
        version = fmt.read_magic(fp)
        reader = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
        shape, fortran, dtype = reader(fp)
    except Exception as exc:  # numpy parses the header with Python's tokenizer: anything goes
        if "EOF" in str(exc) and "multi-line" not in str(exc):
            raise InputError(label, "is truncated inside its .npy header") from None
        detail = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
        raise InputError(label, f"has a malformed .npy header ({detail})") from None
    offset = fp.tell()
    if dtype.hasobject:
        raise InputError(
            label, "holds Python objects (a pickled array); kldiv never unpickles data"
        )
    need = math.prod(shape) * dtype.itemsize
    have = available - offset
    if need > have:
        raise InputError(
            label,
            f"is truncated: its header declares shape {tuple(shape)} ({need:,} bytes of data) "
            f"but only {max(have, 0):,} bytes follow",
        )
    return tuple(shape), fortran, dtype, offset


def _from_bytes(buf: bytes | bytearray | memoryview, dtype: np.dtype, shape, fortran: bool):
    arr = np.frombuffer(buf, dtype=dtype).reshape(shape, order="F" if fortran else "C")
    return arr


def _open_npy(label: str, path: str | None, data: bytes | None, fmt: str, options: ReadOptions):
    if path is not None:
        size = os.path.getsize(path)
        with open(path, "rb") as fp:
            shape, fortran, dtype, offset = _npy_header(label, fp, size)
    else:
        fp = io.BytesIO(data)
        shape, fortran, dtype, offset = _npy_header(label, fp, len(data))
    out_dtype = _numeric_dtype(label, dtype)
    count = math.prod(shape)
    row_items = math.prod(shape[1:]) if shape else 1

    def convert(raw: np.ndarray) -> np.ndarray:
        return raw.astype(out_dtype, copy=False)

    def read() -> np.ndarray:
        nbytes = count * dtype.itemsize
        if path is None:
            raw = data[offset : offset + nbytes]
        else:
            with open(path, "rb") as f:
                f.seek(offset)
                raw = f.read(nbytes)
        return convert(_from_bytes(raw, dtype, shape, fortran)).copy()

    chunks = None
    if shape and not (fortran and len(shape) > 1):

        def chunks(rows: int) -> Iterator[np.ndarray]:
            step = rows * row_items * dtype.itemsize
            f = open(path, "rb") if path is not None else io.BytesIO(data)
            with f:
                f.seek(offset)
                for start in range(0, shape[0], rows):
                    n = min(rows, shape[0] - start)
                    raw = f.read(min(step, n * row_items * dtype.itemsize))
                    yield convert(_from_bytes(raw, dtype, (n, *shape[1:]), False))

    return Source(label, fmt, shape, out_dtype, None, read, chunks, stream_always=True)


def _open_npz(label: str, path: str | None, data: bytes | None, fmt: str, options: ReadOptions):
    import zipfile
    import zlib

    try:
        zf = zipfile.ZipFile(path if path is not None else io.BytesIO(data))
    except zipfile.BadZipFile:
        raise InputError(label, "is not a valid .npz file (not a zip archive)") from None
    except NotImplementedError as exc:  # a zip feature Python cannot read (version 6.4...)
        raise InputError(label, f"is a .npz file Python cannot read ({exc})") from None
    with zf:
        members = {n[:-4]: n for n in zf.namelist() if n.endswith(".npy")}
        if not members:
            raise InputError(label, "holds no arrays")
        key = options.key
        if key is None:
            if len(members) > 1:
                raise InputError(
                    label,
                    f"holds {len(members)} arrays ({', '.join(sorted(members))}); "
                    "choose one with --input-key/--target-key",
                )
            key = next(iter(members))
        elif key not in members:
            raise InputError(label, f"has no array {key!r}; it holds: {', '.join(sorted(members))}")
        inner = f"{label}[{key}]"
        info = zf.getinfo(members[key])
        try:
            with zf.open(info) as fp:
                shape, fortran, dtype, offset = _npy_header(inner, fp, info.file_size)
                out_dtype = _numeric_dtype(inner, dtype)
                raw = fp.read(math.prod(shape) * dtype.itemsize)
        except (zipfile.BadZipFile, zlib.error, EOFError, RuntimeError, NotImplementedError) as exc:
            raise InputError(label, f"is a damaged .npz file ({exc})") from None
    arr = _from_bytes(raw, dtype, shape, fortran).astype(out_dtype)
    return Source(inner, fmt, shape, out_dtype, None, lambda: arr, None)


# ---------------------------------------------------------------- tables


def select_columns(label: str, names: list[str], spec: str | None, usable: list[bool]) -> list[int]:
    """Resolve a ``--*-columns`` spec (names, globs, 0-based indices) to column indices."""
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
            listing = ", ".join(names[:20]) + (", ..." if len(names) > 20 else "")
            raise UsageError(f"{label}: no column matches {token!r}; columns are: {listing}")
        chosen.extend(h for h in hits if h not in chosen)
    return chosen


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _table_to_array(
    label: str,
    table,
    names: list[str],
    options: ReadOptions,
    row_word: str = "row",
    first_row: int = 0,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Selected numeric (or one list) columns of a pyarrow table as a 2-D float array
    (written into ``out`` when given)."""

    columns = [table.column(i) for i in range(table.num_columns)]
    if len(columns) == 1 and _is_list(columns[0].type):
        return _list_column_to_array(label, names[0], columns[0], options, row_word, first_row)
    arrays = _checked_columns(label, columns, names, options, row_word, first_row)
    if not arrays:
        return np.empty((table.num_rows, 0))
    dtype = np.result_type(*(_column_dtype(c.type) for c in arrays))
    # Column-major, chunk by chunk: each piece lands with one contiguous copy (a
    # row-major target would scatter every value; 10x slower for wide tables).
    if out is None:
        out = np.empty((table.num_rows, len(arrays)), dtype=dtype, order="F")
    for j, col in enumerate(arrays):
        pos = 0
        for chunk in col.chunks:
            n = len(chunk)
            out[pos : pos + n, j] = chunk.to_numpy(zero_copy_only=False)
            pos += n
    return out


def _checked_columns(label, columns, names, options, row_word="row", first_row=0) -> list:
    """The columns as numeric pyarrow arrays, or an error naming the first bad cell."""
    import pyarrow as pa

    arrays = []
    for name, col in zip(names, columns):
        t = col.type
        if pa.types.is_null(t):
            col = col.cast(pa.float64())
            t = col.type
        if not (pa.types.is_floating(t) or pa.types.is_integer(t) or pa.types.is_decimal(t)):
            bad = _first_non_number(col)
            where = f"{row_word} {first_row + bad[0]}: " if bad else ""
            shown = f"{bad[1]!r} is not a number" if bad else f"is of type {t}, not numeric"
            raise InputError(label, f"column {name!r}: {where}{shown}")
        if col.null_count and options.missing == "error":
            raise _missing_value(label, name, f"{row_word} {first_row + _first_null(col)}")
        arrays.append(col)
    return arrays


def _first_null(col) -> int:
    """Position of the first null (the column has one). pyarrow.compute costs 75 ms
    to import, so only an error pays for it."""
    import pyarrow.compute as pc

    return int(pc.index(pc.is_null(col), True).as_py())


def _missing_value(label: str, column: str, where: str) -> InputError:
    return InputError(
        label,
        f"column {column!r}: {where} is missing a value "
        "(use --missing nan to read missing values as NaN)",
    )


def column_array(column, dtype: np.dtype) -> np.ndarray:
    """One checked column as a 1-D NumPy array of ``dtype``: zero-copy for a float
    column in one chunk without nulls; several chunks (a CSV read gives hundreds) are
    joined by Arrow, 25% faster than joining them in NumPy."""
    if column.num_chunks != 1:
        column = column.combine_chunks()
    else:
        column = column.chunk(0)
    return column.to_numpy(zero_copy_only=False).astype(dtype, copy=False)


def _column_dtype(t) -> np.dtype:
    """float16/32/64 columns keep their dtype; integers and decimals become float64."""
    import pyarrow as pa

    if pa.types.is_floating(t):
        return np.dtype(t.to_pandas_dtype())
    return np.dtype(np.float64)


def _first_non_number(col) -> tuple[int, str] | None:
    for i, value in enumerate(col.to_pylist()):
        if value is not None and not (isinstance(value, str) and _is_number(value)):
            return i, value
    return None


def _is_list(t) -> bool:
    import pyarrow as pa

    return pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t)


def _list_column_to_array(label, name, col, options, row_word, first_row) -> np.ndarray:
    """A list column: one distribution per row; every row must have the same length."""
    import pyarrow as pa
    import pyarrow.compute as pc

    col = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    n = len(col)
    if col.null_count:
        raise InputError(
            label, f"column {name!r}: {row_word} {first_row + _first_null(col)} is null"
        )
    lengths = pc.list_value_length(col).to_numpy(zero_copy_only=False)
    width = int(lengths[0]) if n else 0
    ragged = np.flatnonzero(lengths != width)
    if ragged.size:
        r = int(ragged[0])
        raise InputError(
            label,
            f"column {name!r}: {row_word} {first_row + r} has {int(lengths[r])} values, "
            f"but {row_word} {first_row} has {width} (ragged lists)",
        )
    values = pc.list_flatten(col)
    t = values.type
    if not (pa.types.is_floating(t) or pa.types.is_integer(t)):
        raise InputError(label, f"column {name!r} holds lists of {t}, not numbers")
    if values.null_count and options.missing == "error":
        flat = _first_null(values)
        raise _missing_value(label, name, f"{row_word} {first_row + flat // max(width, 1)}")
    arr = values.to_numpy(zero_copy_only=False)
    if arr.dtype.kind != "f":
        arr = arr.astype(np.float64)
    return arr.reshape(n, width)


def _usable(schema_types) -> list[bool]:
    import pyarrow as pa

    return [
        pa.types.is_floating(t) or pa.types.is_integer(t) or pa.types.is_decimal(t)
        for t in schema_types
    ]


def _table_source(
    label, fmt, schema, num_rows, options, read_table, iter_tables, row_groups=None
) -> Source:
    """A Source over a pyarrow table reader, with the column selection applied.

    ``row_groups``, if given, is ``(rows per group, read_groups)``, where
    ``read_groups(cols, budget)`` yields per row group an iterator of column-group tables.
    """
    import pyarrow as pa

    names = list(schema.names)
    types = [schema.field(i).type for i in range(len(names))]
    usable = _usable(types)
    if options.columns is None and not any(usable):
        lists = [i for i, t in enumerate(types) if _is_list(t)]
        if len(lists) == 1:
            usable = [i == lists[0] for i in range(len(names))]
    chosen = select_columns(label, names, options.columns, usable)
    if not chosen:
        raise InputError(label, "has no numeric columns")
    if num_rows == 0:
        raise InputError(label, "has no rows")
    if len(chosen) > 1 and any(_is_list(types[i]) for i in chosen):
        raise UsageError(f"{label}: a list column must be the only column selected")
    picked = [names[i] for i in chosen]
    if len(chosen) == 1 and _is_list(types[chosen[0]]):
        t = types[chosen[0]]
        width = t.list_size if pa.types.is_fixed_size_list(t) else None
        value_type = t.value_type
    else:
        width = len(chosen)
        value_type = None
    dtype = _arrow_dtype([types[i] for i in chosen] if value_type is None else [value_type])

    def read() -> np.ndarray:
        table = read_table(chosen)
        return _table_to_array(label, table, picked, options)

    def chunks(rows: int) -> Iterator[np.ndarray]:
        """Blocks of rows; a reader may deliver each block as several column groups,
        converted one at a time into the block (bounded memory for wide row groups)."""
        first = 0
        for groups in iter_tables(chosen, rows):
            block, col, n = None, 0, 0
            for table in groups:
                n, k = table.num_rows, table.num_columns
                if block is None:
                    if k == (width or k):
                        block = _table_to_array(
                            label, table, list(table.column_names), options, first_row=first
                        )
                        break
                    block = np.empty((n, width), dtype=dtype, order="F")
                _table_to_array(
                    label,
                    table,
                    list(table.column_names),
                    options,
                    first_row=first,
                    out=block[:, col : col + k],
                )
                col += k
                del table
            if n:
                yield block
            del block
            first += n

    def columns() -> list:
        return _checked_columns(label, read_table(chosen).columns, picked, options)

    def groups(budget: int) -> Iterator[tuple[int, list[np.ndarray]]]:
        first = 0
        for n, tables in zip(row_groups[0], row_groups[1](chosen, budget)):
            col = 0
            for table in tables:
                k = table.num_columns
                checked = _checked_columns(
                    label, table.columns, picked[col : col + k], options, first_row=first
                )
                yield col, [column_array(c, dtype) for c in checked]
                col += k
                del table
            first += n

    grouped = groups if row_groups is not None and value_type is None else None
    shape = (num_rows, width) if width is not None else (num_rows, -1)
    return Source(
        label,
        fmt,
        shape,
        dtype,
        picked,
        read,
        chunks if iter_tables else None,
        _columns=None if value_type is not None else columns,
        row_groups=None if grouped is None else row_groups[0],
        _groups=grouped,
    )


def _arrow_dtype(types) -> np.dtype:
    return np.result_type(*(_column_dtype(t) for t in types)) if types else np.dtype(np.float64)


def _reject_empty(label: str, path: str | None) -> None:
    """A zero-byte file is empty, whatever its extension says (pyarrow's own messages
    for it are about missing magic bytes)."""
    if path is not None and os.path.getsize(path) == 0:
        raise InputError(label, "is empty")


def _ipc_table(label: str, path: str | None, data: bytes | None):
    """A whole Arrow IPC file (Feather v2), or an IPC stream."""
    import pyarrow as pa
    import pyarrow.ipc as ipc

    _reject_empty(label, path)
    raw = pa.memory_map(path) if path is not None else pa.BufferReader(data)
    try:
        try:
            return ipc.open_file(raw).read_all()
        except pa.ArrowInvalid:
            raw.seek(0)
            return ipc.open_stream(raw).read_all()
    except (pa.ArrowException, OSError) as exc:
        raise _arrow_error(label, "Arrow/Feather", exc) from None


def _numbers_in(column) -> bool:
    """Whether a text column holds numbers among its first 1,000 values: then it is a
    numeric column with stray words (an error later), not a column of names."""
    return any(isinstance(v, str) and _is_number(v) for v in column.slice(0, 1000).to_pylist())


def _arrow_error(label: str, what: str, exc: Exception) -> InputError:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return InputError(label, f"is not a readable {what} file ({text})")


def _open_parquet(label, path, data, fmt, options):
    import pyarrow as pa
    import pyarrow.parquet as pq

    _reject_empty(label, path)
    try:
        # pre_buffer=False: the default reads ahead whole row groups, and RSS grows with the file.
        pf = pq.ParquetFile(path if path is not None else pa.BufferReader(data), pre_buffer=False)
        schema = pf.schema_arrow
        num_rows = pf.metadata.num_rows
    except (pa.ArrowException, OSError) as exc:
        raise _arrow_error(label, "Parquet", exc) from None

    def read_table(cols):
        columns = [schema.names[i] for i in cols]
        try:
            if path is not None:  # read_table pre-buffers and decodes in parallel
                return pq.read_table(path, columns=columns, use_threads=True)
            return pf.read(columns=columns, use_threads=True)
        except (pa.ArrowException, OSError) as exc:
            raise _arrow_error(label, "Parquet", exc) from None

    def column_groups(group: int, names: list[str], budget: int):
        step = max(1, budget // max(pf.metadata.row_group(group).num_rows * 8, 1))
        try:
            for k in range(0, len(names), step):
                yield pf.read_row_group(group, columns=names[k : k + step])
        except (pa.ArrowException, OSError) as exc:
            raise _arrow_error(label, "Parquet", exc) from None

    def read_groups(cols, budget: int):
        # Row group by row group, a few columns at a time: pyarrow's batch iterator
        # holds whole decoded row groups and its RSS grew past 500 MB on 1.8 GB files.
        names = [schema.names[i] for i in cols]
        pool = pa.default_memory_pool()
        for group in range(pf.metadata.num_row_groups):
            yield column_groups(group, names, budget)
            # Hand decoded pages back to the OS instead of keeping them cached.
            pool.release_unused()

    def iter_tables(cols, rows):
        return read_groups(cols, 1 << 21)

    meta = pf.metadata
    sizes = tuple(meta.row_group(g).num_rows for g in range(meta.num_row_groups))
    return _table_source(
        label, fmt, schema, num_rows, options, read_table, iter_tables, (sizes, read_groups)
    )


def _open_arrow(label, path, data, fmt, options):
    table = _ipc_table(label, path, data)

    def read_table(cols):
        return table.select(cols)

    def iter_tables(cols, rows):
        sub = table.select(cols)
        for start in range(0, sub.num_rows, rows):
            yield [sub.slice(start, rows)]

    return _table_source(label, fmt, table.schema, table.num_rows, options, read_table, iter_tables)


def _csv_layout(label, path, data, fmt, options) -> tuple[str, bool]:
    """(delimiter, has a header) from the first 64 KiB; errors for empty or binary files."""
    if path is not None:
        with open(path, "rb") as f:
            head = f.read(1 << 16)
    else:
        head = data[: 1 << 16]
    if not head.strip():
        raise InputError(label, "is empty")
    if b"\x00" in head:
        raise InputError(label, "is not a text file (it holds binary data)")
    try:
        text = head.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 4:
            raise InputError(label, "is not UTF-8 text (it holds binary data)") from None
        text = head[: exc.start].decode("utf-8-sig")
    delimiter = options.delimiter or ("\t" if fmt == "tsv" else ",")
    if delimiter in ("\\t", "tab"):
        delimiter = "\t"
    if len(delimiter) != 1:
        raise UsageError(f"the delimiter must be one character, got {delimiter!r}")
    import csv

    first_line = text.splitlines()[0] if text.splitlines() else ""
    first = next(csv.reader([first_line], delimiter=delimiter), [])
    return delimiter, not all(_is_number(c) or not c.strip() for c in first)


def _read_csv_table(label, path, data, fmt, options, strings_can_be_null: bool = False):
    """The whole CSV/TSV as a pyarrow table, with its header detected; names are the
    header's or 0-based indices. Returns (table, header)."""
    import pyarrow as pa
    import pyarrow.csv as pcsv

    delimiter, header = _csv_layout(label, path, data, fmt, options)
    read_opts = pcsv.ReadOptions(autogenerate_column_names=not header)
    parse_opts = pcsv.ParseOptions(delimiter=delimiter)
    convert = pcsv.ConvertOptions(null_values=[""], strings_can_be_null=strings_can_be_null)
    source = path if path is not None else pa.BufferReader(data)
    try:
        table = pcsv.read_csv(
            source, read_options=read_opts, parse_options=parse_opts, convert_options=convert
        )
    except pa.ArrowInvalid as exc:
        raise _csv_error(label, path, data, delimiter, header, exc) from None
    if table.num_rows == 0:
        raise InputError(label, "has a header but no data rows" if header else "has no data rows")
    if not header:
        table = table.rename_columns([str(i) for i in range(table.num_columns)])
    return table, header


def _open_csv(label, path, data, fmt, options):
    import pyarrow as pa

    if path is not None and os.path.getsize(path) > CSV_STREAM_ABOVE:
        return _open_csv_stream(label, path, fmt, options)
    table, header = _read_csv_table(label, path, data, fmt, options)
    first_line_no = 2 if header else 1
    names = table.column_names
    # Text columns (ids, labels) are skipped unless chosen; a column of numbers with
    # a stray word in it is an error, reported by _table_to_array.
    types = [table.schema.field(i).type for i in range(table.num_columns)]
    usable = [
        ok or pa.types.is_null(t) or _numbers_in(table.column(i))
        for i, (ok, t) in enumerate(zip(_usable(types), types))
    ]
    chosen = select_columns(label, names, options.columns, usable)
    if not chosen:
        raise InputError(label, "has no numeric columns")
    picked = [names[i] for i in chosen]
    sub = table.select(chosen)
    arr_holder: dict[str, np.ndarray] = {}

    def read() -> np.ndarray:
        if "a" not in arr_holder:
            arr_holder["a"] = _table_to_array(
                label, sub, picked, options, row_word="line", first_row=first_line_no
            )
        return arr_holder["a"]

    def columns() -> list:
        return _checked_columns(label, sub.columns, picked, options, "line", first_line_no)

    return Source(
        label,
        fmt,
        (table.num_rows, len(chosen)),
        np.dtype(np.float64),
        picked,
        read,
        _columns=columns,
    )


def _open_csv_stream(label: str, path: str, fmt: str, options: ReadOptions) -> Source:
    """A large CSV read with pyarrow's streaming reader: column types are taken from
    the first block, then fixed (float64) for the rest. The row count is not known
    until the end (shape[0] is -1)."""
    import pyarrow as pa
    import pyarrow.csv as pcsv

    delimiter, header = _csv_layout(label, path, None, fmt, options)
    read_opts = pcsv.ReadOptions(autogenerate_column_names=not header, block_size=1 << 22)
    parse_opts = pcsv.ParseOptions(delimiter=delimiter)
    try:
        probe = pcsv.open_csv(path, read_options=read_opts, parse_options=parse_opts)
        schema = probe.schema
        first_block = probe.read_next_batch()
        probe.close()
    except StopIteration:
        raise InputError(
            label, "has a header but no data rows" if header else "has no data rows"
        ) from None
    except pa.ArrowInvalid as exc:
        raise _csv_error(label, path, None, delimiter, header, exc) from None
    raw_names = schema.names
    names = raw_names if header else [str(i) for i in range(len(raw_names))]
    # As for whole files: text columns are skipped, numbers with a stray word are an error.
    usable = [
        ok or pa.types.is_null(t) or _numbers_in(first_block.column(i))
        for i, (ok, t) in enumerate(zip(_usable(schema.types), schema.types))
    ]
    chosen = select_columns(label, names, options.columns, usable)
    if not chosen:
        raise InputError(label, "has no numeric columns")
    picked = [names[i] for i in chosen]
    convert = pcsv.ConvertOptions(
        null_values=[""],
        strings_can_be_null=False,
        column_types={raw_names[i]: pa.float64() for i in chosen},
        include_columns=[raw_names[i] for i in chosen],
    )

    def batches():
        reader = None
        while True:
            try:
                if reader is None:
                    reader = pcsv.open_csv(
                        path,
                        read_options=read_opts,
                        parse_options=parse_opts,
                        convert_options=convert,
                    )
                batch = reader.read_next_batch()
            except StopIteration:
                return
            except pa.ArrowInvalid as exc:
                text = str(exc).strip().splitlines()[0]
                raise InputError(label, f"has a cell that is not a number ({text})") from None
            yield pa.Table.from_batches([batch]).rename_columns(picked)

    def chunks(rows: int) -> Iterator[np.ndarray]:
        first = 2 if header else 1
        for table in batches():
            if table.num_rows:
                yield _table_to_array(
                    label, table, picked, options, row_word="line", first_row=first
                )
            first += table.num_rows

    def read() -> np.ndarray:
        parts = list(chunks(1 << 20))
        if not parts:
            raise InputError(label, "has no data rows")
        return np.concatenate(parts)

    return Source(
        label,
        fmt,
        (-1, len(chosen)),
        np.dtype(np.float64),
        picked,
        read,
        chunks,
        stream_always=True,
    )


def _csv_error(label, path, data, delimiter, header, exc) -> InputError:
    """Find the line behind a pyarrow CSV parse error (it does not say which)."""
    import csv

    raw = open(path, "rb").read() if path is not None else data
    text = raw.decode("utf-8-sig", errors="replace")
    width = None
    for lineno, row in enumerate(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter), 1):
        if not row:
            continue
        if width is None:
            width = len(row)
        elif len(row) != width:
            return InputError(label, f"line {lineno} has {len(row)} fields, expected {width}")
    message = str(exc).strip().splitlines()[0]
    return InputError(label, f"is not valid CSV ({message})")


def read_table(path: str, options: ReadOptions, stdin: bytes | None = None):
    """A whole file as a pyarrow table of named columns, of any type (for drift).

    .npy/.npz arrays become columns "0", "1", ... (a 1-D array is one column).
    """
    import pyarrow as pa

    if path == STDIN:
        if stdin is None:
            raise UsageError("stdin was not read")
        fmt, label, file = options.fmt or sniff(stdin), "<stdin>", None
    else:
        _check_path(path)
        fmt, label, file = detect_format(path, options.fmt), path, path
    try:
        if fmt in ("csv", "tsv"):
            return _read_csv_table(label, file, stdin, fmt, options, strings_can_be_null=True)[0]
        if fmt in ("npy", "npz"):
            source = open_source(path, ReadOptions(fmt, options.key), stdin)
            arr = source.read()
            arr = arr.reshape(-1, 1) if arr.ndim < 2 else arr.reshape(arr.shape[0], -1)
            return pa.table({str(j): arr[:, j] for j in range(arr.shape[1])})
        if fmt == "parquet":
            import pyarrow.parquet as pq

            _reject_empty(label, file)
            return pq.read_table(file if file is not None else pa.BufferReader(stdin))
        return _ipc_table(label, file, stdin)
    except (InputError, UsageError):
        raise
    except (pa.ArrowException, OSError) as exc:
        raise _arrow_error(label, fmt.capitalize(), exc) from None


class ParquetColumns:
    """A Parquet file seen as a table whose columns are read one at a time, on demand:
    a drift profile then holds one column in memory, not the whole reference."""

    def __init__(self, path: str) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            meta = pq.ParquetFile(path)
            self.column_names = list(meta.schema_arrow.names)
            self.num_rows = meta.metadata.num_rows
        except (pa.ArrowException, OSError) as exc:
            raise _arrow_error(path, "Parquet", exc) from None
        self.path = path

    def column(self, name: str):
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            return pq.read_table(self.path, columns=[name]).column(0)
        except (pa.ArrowException, OSError) as exc:
            raise _arrow_error(self.path, "Parquet", exc) from None


def open_columns(path: str, options: ReadOptions, stdin: bytes | None = None):
    """Named columns of any type (for drift): a Parquet file lazily, column by column;
    anything else read whole (see :func:`read_table`)."""
    if path != STDIN and options.fmt in (None, "parquet") and dataset_files(path) is None:
        _check_path(path)
        if detect_format(path, options.fmt) == "parquet":
            _reject_empty(path, path)
            return ParquetColumns(path)
    return read_table(path, options, stdin)
