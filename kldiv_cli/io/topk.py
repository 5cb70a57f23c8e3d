"""Top-K (sparse) reference files: read block of rows by block, and written.

The layout (one row per position, as distillation pipelines store teacher logits):

* ``indices``: list<int32>, the K most probable classes, most probable first;
* ``logprobs``: list<float32>, their log-probabilities under the full distribution;
* ``tail_logprob``: float64, the log of the mass of every other class;
* ``token`` (optional): the position's next-token id; ``sequence``, ``position``
  (optional, written by ``kldiv topk`` when the input's rows are positions of sequences).

In Parquet these are columns (any list type of fixed length K: list, large_list,
fixed_size_list); in a ``.npz`` or safetensors file, arrays of shape (rows, K) or
(sequences, positions, K) named by ``--indices-key``/``--logprobs-key`` (default
``indices``, ``logprobs``), with ``tail_logprob`` and ``token`` taken when present
(a missing ``tail_logprob`` is ``log(1 − Σ exp(logprobs))``, which loses digits when
the K classes hold nearly all the mass).

A Parquet file written by ``kldiv topk`` records how in its schema metadata, under keys
``kldiv.<name>`` (:data:`METADATA_PREFIX`): ``temperature``, ``k``, ``source_dtype``,
``version``; :attr:`TopKSource.metadata` gives them back (empty for other files).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

import numpy as np

from ..errors import InputError
from .base import ReadOptions
from .formats import KEYED, extensions_text, get
from .paths import resolve
from .writers import atomic_write, output_kind

__all__ = [
    "COLUMNS",
    "METADATA_PREFIX",
    "TopKBlock",
    "TopKSource",
    "is_topk",
    "open_topk",
    "topk_bytes",
    "write_topk",
]

#: The columns every top-K file has.
COLUMNS: tuple[str, str, str] = ("indices", "logprobs", "tail_logprob")
#: The prefix of the schema metadata keys ``kldiv topk`` writes.
METADATA_PREFIX = "kldiv."
#: Values of ``indices`` read from the file at once (then cut into the blocks asked for).
_READ_VALUES = 1 << 20
#: Log-probabilities above this are not log-probabilities (float32 rounding of 0 is far below).
_SLACK = 1e-3


@dataclass
class TopKBlock:
    """Consecutive rows of a top-K file, as NumPy arrays."""

    indices: np.ndarray  # rows × K, int64
    logprobs: np.ndarray  # rows × K, float64 (widened from the file's float32)
    tail: np.ndarray  # rows, float64
    token: np.ndarray | None = None  # rows, int64
    sequence: np.ndarray | None = None
    position: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.indices)

    def slice(self, start: int, stop: int) -> TopKBlock:
        """Rows ``start:stop`` (views)."""

        def cut(a: np.ndarray | None) -> np.ndarray | None:
            return None if a is None else a[start:stop]

        return TopKBlock(
            self.indices[start:stop],
            self.logprobs[start:stop],
            self.tail[start:stop],
            cut(self.token),
            cut(self.sequence),
            cut(self.position),
        )


def is_topk(
    path: str,
    indices_key: str | None,
    stdin: bytes | None = None,
    logprobs_key: str | None = None,
) -> bool:
    """Whether ``path`` is a top-K file: a Parquet file with ``indices`` and ``logprobs``
    columns, or a ``.npz``/safetensors file given ``indices_key`` or ``logprobs_key``
    (either one names the top-K reading) or holding arrays named ``indices`` and
    ``logprobs``. Anything unreadable is not (its own reader says why)."""
    try:
        where = resolve(path, None, stdin)
    except (InputError, OSError):
        return False
    if where.fmt == "parquet":
        try:
            names = set(_parquet(where.label, where.path, where.data).schema_arrow.names)
        except InputError:
            return False
        return {"indices", "logprobs"} <= names
    if get(where.fmt).kind == KEYED:
        if indices_key is not None or logprobs_key is not None:
            return True
        try:
            _array(path, "indices", stdin)
            _array(path, "logprobs", stdin)
        except InputError:
            return False
        return True
    return False


def _parquet(label: str, path: str | None, data: bytes | None) -> Any:
    import pyarrow as pa

    from .parquet import parquet_file

    source: Any = path if path is not None else pa.BufferReader(data)
    return parquet_file(label, source, pre_buffer=False)


def _array(path: str, key: str, stdin: bytes | None) -> Any:
    from .numeric import open_source

    return open_source(path, ReadOptions(key=key, key_option="--indices-key"), stdin)


def _named(path: str, keys: tuple[str, str], stdin: bytes | None) -> list[Any]:
    """The indices and logprobs arrays named ``keys``; a missing one is an error naming
    both options (either may have been left at its default name)."""
    out = []
    for key in keys:
        try:
            out.append(_array(path, key, stdin))
        except InputError as e:
            if repr(key) not in str(e):  # not a missing name: the reader's own error
                raise
            raise InputError(
                e.source,
                f"{str(e).split(': ', 1)[1]}; name the top-K arrays with --indices-key "
                "and --logprobs-key (defaults: indices, logprobs)",
            ) from None
    return out


class TopKSource:
    """One opened top-K file: ``rows``, ``k``, what it holds, and its blocks."""

    def __init__(
        self,
        path: str,
        stdin: bytes | None,
        indices_key: str | None = None,
        logprobs_key: str | None = None,
    ) -> None:
        where = resolve(path, None, stdin)
        self.label, self.fmt = where.label, where.fmt
        self._where = where
        self._keys = (indices_key or "indices", logprobs_key or "logprobs")
        self._path, self._stdin = path, stdin
        self.notes: list[str] = []
        #: How the file was written (``temperature``, ``k``...), from its schema metadata.
        self.metadata: dict[str, str] = {}
        if self.fmt == "parquet":
            self._open_parquet()
        elif get(self.fmt).kind == KEYED:
            self._open_arrays()
        else:
            keyed = extensions_text([KEYED])
            raise InputError(self.label, f"a top-K reference is Parquet, {keyed}, not {self.fmt}")

    def _open_parquet(self) -> None:
        self._file = _parquet(self.label, self._where.path, self._where.data)
        schema = self._file.schema_arrow
        missing = [c for c in COLUMNS if c not in schema.names]
        if missing:
            raise InputError(self.label, f"is not a top-K file: no column {', '.join(missing)}")
        self.rows = int(self._file.metadata.num_rows)
        self.metadata = {
            key.decode()[len(METADATA_PREFIX) :]: value.decode()
            for key, value in (schema.metadata or {}).items()
            if key.startswith(METADATA_PREFIX.encode())
        }
        self.extra = [c for c in ("token", "sequence", "position") if c in schema.names]
        first = next(self._file.iter_batches(batch_size=1, columns=["indices"]), None)
        self.k = 0 if first is None or first.num_rows == 0 else _lengths(first.column(0))[0]
        self.shape: tuple[int, ...] = (self.rows, self.k)

    def _open_arrays(self) -> None:
        self._sources = _named(self._path, self._keys, self._stdin)
        shapes = [tuple(s.shape) for s in self._sources]
        if len(shapes[0]) < 2 or shapes[0] != shapes[1]:
            raise InputError(
                self.label,
                f"indices {shapes[0]} and logprobs {shapes[1]} must have one shape "
                "(rows, K) or (sequences, positions, K)",
            )
        self.k = shapes[0][-1]
        self.rows = math.prod(shapes[0][:-1])
        self._lead = shapes[0][:-1]
        self.shape = shapes[0]
        self._optional: dict[str, np.ndarray] = {}
        for name in ("tail_logprob", "token"):
            try:
                values = np.asarray(_array(self._path, name, self._stdin).read()).reshape(-1)
            except InputError:
                continue
            if len(values) != self.rows:
                raise InputError(
                    self.label, f"{name} has {len(values)} values for {self.rows} rows"
                )
            self._optional[name] = values
        if "tail_logprob" not in self._optional:
            self.notes.append(
                f"{self.label} has no tail_logprob array: the tail is log(1 - sum of the K "
                "probabilities), which loses digits when they hold nearly all the mass"
            )
        self.extra = ["token"] if "token" in self._optional else []
        if len(self._lead) == 2:
            self.extra += ["sequence", "position"]

    def describe(self) -> dict[str, Any]:
        """The file as the JSON reports it."""
        return {"path": self.label, "format": f"topk-{self.fmt}", "rows": self.rows, "k": self.k}

    def blocks(self, rows: int) -> Iterator[TopKBlock]:
        """Blocks of at most ``rows`` rows, checked (see :func:`_check`). The file is read
        in pieces of about :data:`_READ_VALUES` values (a few rows of a wide dense block
        are thousands of top-K rows), each cut into blocks of ``rows``."""
        step = max(rows, _READ_VALUES // max(self.k, 1))
        source = self._parquet_blocks(step) if self.fmt == "parquet" else self._array_blocks(step)
        start = 0
        for piece in source:
            _check(self.label, piece, start, self.k)
            start += len(piece)
            for first in range(0, len(piece), rows):
                yield piece.slice(first, first + rows)

    def _parquet_blocks(self, rows: int) -> Iterator[TopKBlock]:
        columns = [*COLUMNS, *self.extra]
        for batch in self._file.iter_batches(batch_size=rows, columns=columns):
            n = batch.num_rows
            got = {name: batch.column(i) for i, name in enumerate(batch.schema.names)}
            if got["tail_logprob"].null_count:
                raise InputError(self.label, "tail_logprob has missing values")
            yield TopKBlock(
                indices=_list_values(self.label, "indices", got["indices"], self.k).astype(
                    np.int64
                ),
                logprobs=_list_values(self.label, "logprobs", got["logprobs"], self.k).astype(
                    np.float64
                ),
                tail=np.asarray(
                    got["tail_logprob"].to_numpy(zero_copy_only=False), dtype=np.float64
                ),
                **{name: _ints(self.label, name, got[name], n) for name in self.extra},
            )

    def _array_blocks(self, rows: int) -> Iterator[TopKBlock]:
        streams = [s.iter_rows(rows) for s in self._sources]
        start = 0
        per_sequence = self._lead[1] if len(self._lead) == 2 else 0
        for idx, lp in zip(*streams):
            n = len(idx)
            stop = start + n
            lp = np.asarray(lp, dtype=np.float64)
            if "tail_logprob" in self._optional:
                tail = np.asarray(self._optional["tail_logprob"][start:stop], dtype=np.float64)
            else:
                with np.errstate(divide="ignore", invalid="ignore"):
                    tail = np.log1p(-np.minimum(np.exp(lp).sum(axis=1), 1.0))
            whole = np.isfinite(idx) & (idx == np.round(idx))
            if not whole.all():
                raise InputError(self.label, "indices must be whole numbers")
            extra: dict[str, np.ndarray] = {}
            if "token" in self._optional:
                extra["token"] = self._optional["token"][start:stop].astype(np.int64)
            if per_sequence:
                extra["sequence"], extra["position"] = np.divmod(
                    np.arange(start, stop), per_sequence
                )
            yield TopKBlock(idx.astype(np.int64), lp, tail, **extra)
            start = stop


def _lengths(column: Any) -> list[int]:
    import pyarrow.compute as pc

    if column.null_count:
        return [-1]
    lengths = pc.list_value_length(column).to_numpy(zero_copy_only=False)
    return [int(v) for v in np.unique(lengths)]


def _list_values(label: str, name: str, column: Any, k: int) -> np.ndarray:
    """A list column of ``k`` values per row as a rows × k array."""
    lengths = _lengths(column)
    if lengths != [k]:
        what = "missing rows" if -1 in lengths else f"lists of lengths {lengths[:5]}"
        raise InputError(label, f"{name} has {what}; every row needs the same K = {k}")
    values = column.flatten()
    if values.null_count:
        raise InputError(label, f"{name} has missing values")
    return np.asarray(values.to_numpy(zero_copy_only=False)).reshape(len(column), k)


def _ints(label: str, name: str, column: Any, n: int) -> np.ndarray:
    if column.null_count:
        raise InputError(label, f"{name} has missing values")
    return np.asarray(column.to_numpy(zero_copy_only=False)).astype(np.int64).reshape(n)


def _check(label: str, block: TopKBlock, start: int, k: int) -> None:
    """Indices non-negative and distinct within a row; log-probabilities not NaN and at
    most 0 (:data:`_SLACK`); the tail too."""
    if len(block) == 0:
        return
    bad_rows = (block.indices < 0).any(axis=1)
    if k > 1:
        ordered = np.sort(block.indices, axis=1)
        bad_rows |= (ordered[:, 1:] == ordered[:, :-1]).any(axis=1)
    with np.errstate(invalid="ignore"):
        bad_rows |= ~(block.logprobs <= _SLACK).all(axis=1)
        bad_rows |= ~(block.tail <= _SLACK)
    if bad_rows.any():
        i = int(np.argmax(bad_rows))
        raise InputError(
            label,
            f"row {start + i} is not a top-K row (negative or repeated indices, or "
            "log-probabilities that are NaN or above 0)",
        )


def topk_bytes(blocks: Iterable[TopKBlock]) -> int:
    """The bytes of a Parquet top-K file of ``blocks``, written in memory."""
    import pyarrow as pa

    sink = pa.BufferOutputStream()
    _write(sink, blocks)
    return int(sink.getvalue().size)


def _table(block: TopKBlock) -> Any:
    import pyarrow as pa

    n, k = block.indices.shape
    offsets = pa.array(np.arange(0, n * k + 1, k, dtype=np.int32))
    columns: dict[str, Any] = {
        "indices": pa.ListArray.from_arrays(
            offsets, pa.array(block.indices.reshape(-1).astype(np.int32))
        ),
        "logprobs": pa.ListArray.from_arrays(
            offsets, pa.array(block.logprobs.reshape(-1).astype(np.float32))
        ),
        "tail_logprob": pa.array(block.tail.astype(np.float64)),
    }
    for name in ("token", "sequence", "position"):
        value = getattr(block, name)
        if value is not None:
            columns[name] = pa.array(value.astype(np.int64))
    return pa.table(columns)


def _concat(blocks: list[TopKBlock]) -> TopKBlock:
    def join(name: str) -> Any:
        values = [getattr(b, name) for b in blocks]
        return None if values[0] is None else np.concatenate(values)

    return TopKBlock(
        *(join(n) for n in ("indices", "logprobs", "tail", "token", "sequence", "position"))
    )


def _groups(blocks: Iterable[TopKBlock]) -> Iterator[TopKBlock]:
    """``blocks`` joined into row groups of about :data:`_READ_VALUES` indices: a block
    of a wide input is a few rows, and a row group per few rows reads 20x slower."""
    pending: list[TopKBlock] = []
    values = 0
    for block in blocks:
        pending.append(block)
        values += block.indices.size
        if values >= _READ_VALUES:
            yield _concat(pending)
            pending, values = [], 0
    if pending:
        yield _concat(pending)


def _write(sink: Any, blocks: Iterable[TopKBlock], metadata: dict[str, str] | None = None) -> int:
    import pyarrow.parquet as pq

    recorded = {f"{METADATA_PREFIX}{k}": v for k, v in (metadata or {}).items()}

    writer = None
    rows = 0
    try:
        for block in _groups(blocks):
            table = _table(block).replace_schema_metadata(recorded)
            if writer is None:
                # Class indices and log-probabilities rarely repeat: no dictionary pages.
                writer = pq.ParquetWriter(sink, table.schema, use_dictionary=False)
            writer.write_table(table)
            rows += len(block)
        if writer is None:  # no rows: the columns still say what the file is
            empty = np.empty((0, 0))
            table = _table(TopKBlock(empty.astype(np.int64), empty, np.empty(0)))
            table = table.replace_schema_metadata(recorded)
            writer = pq.ParquetWriter(sink, table.schema)
            writer.write_table(table)
    finally:
        if writer is not None:
            writer.close()
    return rows


def write_topk(
    path: str, blocks: Iterable[TopKBlock], metadata: dict[str, str] | None = None
) -> int:
    """Write ``blocks`` to the Parquet file ``path`` atomically, in row groups of about
    :data:`_READ_VALUES` indices (memory: one row group); returns the rows written.
    ``metadata`` (how the file was made) goes to the schema metadata, each key prefixed
    with :data:`METADATA_PREFIX`."""
    output_kind(path, ("parquet",), "-o")

    def write(f: BinaryIO) -> int:
        return _write(f, blocks, metadata)

    return atomic_write(path, write)


def open_topk(
    path: str,
    stdin: bytes | None = None,
    indices_key: str | None = None,
    logprobs_key: str | None = None,
) -> TopKSource:
    """Open a top-K file (see the module's docstring for the layouts)."""
    return TopKSource(path, stdin, indices_key, logprobs_key)
