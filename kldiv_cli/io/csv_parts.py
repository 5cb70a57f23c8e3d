"""A large CSV of float columns parsed in parts on threads, straight into one NumPy array.

The file is cut at line ends into a few parts per thread (:func:`cuts`); each part is
parsed by its own single-threaded pyarrow reader, block by block, and every block is
copied into its rows of one column-major float64 array while it is still in the cache.
The rows of each part are known before any is parsed: the line ends in it (a row of
floats cannot hold one, and a part that does not have exactly that many rows is read
again whole, see :func:`read_parts`). The table returned views that array, one chunk
per column, so the columns reach the sums without another copy.

Against one pyarrow read of the whole file, which then joins a hundred chunks per
column on one thread: the join is gone (each block is copied while in the cache, on
the part's thread), and the reader's blocks are freed, and their pages reused, as soon
as they are copied. Peak memory stays that of the file's mapping and the array
(378 MB against 365 MB for the 225 MB of two 200,000 x 50 CSVs, see docs/inputs.md).
"""

from __future__ import annotations

import mmap
from typing import Any

import numpy as np

from .csv_text import memory_pool

#: The bytes counted at a time for line ends (a buffer that stays in the cache).
_COUNT_BLOCK = 1 << 20


def cuts(path: str, parts: int) -> list[int]:
    """Offsets cutting the file into about ``parts`` ranges of whole lines, the first
    holding the header."""
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
        size = len(m)
        offsets = [0]
        for k in range(1, parts):
            end = m.find(b"\n", max(size * k // parts, offsets[-1]))
            if end < 0 or end + 1 >= size:
                break
            if end + 1 > offsets[-1]:
                offsets.append(end + 1)
    return [*offsets, size]


def line_ends(data: Any) -> int:
    """The number of ``\\n`` bytes in a buffer (counted a cache-sized block at a time)."""
    view = np.frombuffer(data, dtype=np.uint8)
    return sum(
        int(np.count_nonzero(view[i : i + _COUNT_BLOCK] == 10))
        for i in range(0, view.size, _COUNT_BLOCK)
    )


class _NotRows(Exception):
    """A part holds more or fewer rows than line ends: blank lines, a line end in a
    quoted field, or lines ended by a lone carriage return."""


def read_parts(
    path: str, names: list[str], read_opts: Any, parse_opts: Any, convert: Any
) -> Any | None:
    """A file of float columns parsed in parts, one single-threaded read per part on
    as many threads as pyarrow's CPU pool, into one float64 array in file order,
    returned as a table of one chunk per column; None (read it whole then) when it
    cannot be cut, a part does not parse, or a part's rows are not its lines.

    Every part is read with the float64 columns fixed (``convert``), so a part cannot
    infer a type the others do not; each value is parsed by the same converter as in a
    whole read. A quoted field may hold a line end, so a cut may fall inside a row; the
    part before it then ends in a value holding a line end, which no float64 parses, and
    the file is read whole. (When every part parses, no value holds a line end, so every
    cut, and every block boundary of a whole read, ends a row.) A missing value is a
    null, as in a whole read.
    """
    from concurrent.futures import ThreadPoolExecutor

    import pyarrow as pa
    import pyarrow.csv as pcsv

    threads = pa.cpu_count()
    offsets = cuts(path, 2 * threads)
    if len(offsets) < 3:
        return None
    data = pa.memory_map(path).read_buffer()
    pieces = [data.slice(a, b - a) for a, b in zip(offsets, offsets[1:])]
    with ThreadPoolExecutor(threads) as pool:
        lines = list(pool.map(line_ends, pieces))
    # Rows: a row per line end, but the header's; and the last line without one.
    lines[0] -= 0 if read_opts.autogenerate_column_names else 1
    lines[-1] += 0 if np.frombuffer(pieces[-1], dtype=np.uint8)[-1] == 10 else 1
    starts = np.concatenate([[0], np.cumsum(lines)]).tolist()
    out = _floats(starts[-1], len(names))
    first = pcsv.ReadOptions(
        autogenerate_column_names=read_opts.autogenerate_column_names,
        use_threads=False,
        block_size=read_opts.block_size,
    )
    rest = pcsv.ReadOptions(column_names=names, use_threads=False, block_size=read_opts.block_size)

    def part(k: int) -> dict[int, list[tuple[int, np.ndarray]]]:
        """Part ``k`` into its rows of ``out``; the validity of each block with nulls,
        by column."""
        reader = pcsv.open_csv(
            pa.BufferReader(pieces[k]),
            read_options=first if k == 0 else rest,
            parse_options=parse_opts,
            convert_options=convert,
            memory_pool=memory_pool(),
        )
        if reader.schema.types != [pa.float64()] * len(names):
            raise _NotRows
        row, end = starts[k], starts[k + 1]
        nulls: dict[int, list[tuple[int, np.ndarray]]] = {}
        for batch in reader:
            n = batch.num_rows
            if row + n > end:
                raise _NotRows
            # The values buffers as they are (a null's slot is the validity's business):
            # a few attribute reads per column, as a file has ~100 blocks of 50 columns.
            for j, column in enumerate(batch.columns):
                at, values = column.offset, column.buffers()[1]
                if n and values is not None:
                    out[row : row + n, j] = np.frombuffer(values, np.float64, at + n)[at:]
                if column.null_count:
                    nulls.setdefault(j, []).append((row, _valid(column)))
            row += n
        if row != end:
            raise _NotRows
        return nulls

    try:
        with ThreadPoolExecutor(threads) as pool:
            found = list(pool.map(part, range(len(pieces))))
    except (pa.ArrowInvalid, _NotRows):
        return None
    return pa.Table.from_arrays(_columns(out, found), names=names)


def _floats(rows: int, columns: int) -> np.ndarray:
    """An uninitialised column-major float64 array from the readers' pool, not NumPy's
    allocator: NumPy asks for transparent huge pages for large arrays, slow to fault in
    on a virtual machine (see :func:`.csv_text.memory_pool`)."""
    import pyarrow as pa

    memory = pa.allocate_buffer(rows * columns * 8, memory_pool=memory_pool())
    by_column = np.frombuffer(memory, dtype=np.float64).reshape(columns, rows)
    return np.transpose(by_column)


def _valid(column: Any) -> np.ndarray:
    """The validity of an Arrow array with nulls, as booleans (from its bitmap: no
    ``to_numpy``, which imports pandas when installed)."""
    n, offset = len(column), column.offset
    bits = np.frombuffer(column.buffers()[0], dtype=np.uint8)
    return np.unpackbits(bits, count=offset + n, bitorder="little")[offset:].astype(bool)


def _columns(out: np.ndarray, found: list[dict[int, list[tuple[int, np.ndarray]]]]) -> list[Any]:
    """The columns of ``out`` as pyarrow arrays viewing it, with a validity bitmap where
    a part found nulls."""
    import pyarrow as pa

    rows = len(out)
    valid: dict[int, np.ndarray] = {}
    for nulls in found:
        for j, blocks in nulls.items():
            mask = valid.setdefault(j, np.ones(rows, dtype=bool))
            for row, bits in blocks:
                mask[row : row + len(bits)] = bits
    arrays = []
    for j in range(out.shape[1]):
        bitmap, missing = None, 0
        if j in valid:
            bitmap = pa.py_buffer(np.packbits(valid[j], bitorder="little"))
            missing = rows - int(np.count_nonzero(valid[j]))
        values = pa.py_buffer(out[:, j])
        arrays.append(pa.Array.from_buffers(pa.float64(), rows, [bitmap, values], missing))
    return arrays
