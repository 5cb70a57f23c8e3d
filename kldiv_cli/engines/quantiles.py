"""Exact quantiles of partitioned data: bit-identical to ``np.quantile`` of all the values,
with only a bracket of them in memory.

``np.quantile(v, q)`` (the "linear" method) is ``lerp(v_(i), v_(i+1), g)`` with
``h = (n - 1) * q``, ``i = floor(h)``, ``g = h - i``, where ``v_(k)`` is the k-th smallest
value. So it needs only two order statistics per quantile, and those can be found without
sorting everything:

1. **Sketch pass** (per partition): a KLL sketch (``datasketches``), the count, min and max.
   Merged on the client, the sketch brackets each wanted rank ``k``: ``[lo, hi]`` holds
   ``v_(k)`` with high probability (``SLACK`` rank errors to each side).
2. **Count pass** (per partition): for each bracket, the number of values below ``lo``
   (strictly) and the values inside ``[lo, hi]``. Summed on the client, ``v_(k)`` is the
   ``(k - below)``-th smallest value inside, *if* that index falls inside; this is checked,
   and a bracket the sketch got wrong is widened (ten times, then to the whole range) for
   another count pass, so the result is always exact.
3. The client takes ``lerp`` as NumPy does, by ``np.quantile`` of the two order statistics
   at ``g`` (``(2 - 1) * g == g`` exactly), so the rounding is NumPy's own.

The passes are plain functions of one partition's values (:func:`sketch`, :func:`cut`),
mapped by any ``map``-like runner: the built-in ``map`` locally, ``client.map`` on Dask.
The values must be finite (as drift profiles bin them); ``-0.0`` and ``0.0`` compare equal,
so which of the two an edge shows may differ from NumPy's.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

P = TypeVar("P")
#: A runner: ``runner(function, items)`` gives ``[function(item) for item in items]``.
Runner = Callable[[Callable[[Any], Any], list[Any]], list[Any]]

#: KLL accuracy parameter: rank error ~0.14 % of n (99 % confidence), sketches ~40 KB.
K = 2000
#: Bracket half-width in rank errors: a miss (seen and redone, never wrong) is then rare.
SLACK = 2.0


@dataclass(frozen=True)
class Summary:
    """Pass 1 of one partition: its KLL sketch (serialized, with the exact min and max),
    its count and its dtype."""

    sketch: bytes
    count: int
    dtype: str


@dataclass(frozen=True)
class Brackets:
    """Value intervals ``[lo_j, hi_j]`` (sorted, disjoint) that hold the wanted ranks."""

    lo: np.ndarray
    hi: np.ndarray


@dataclass(frozen=True)
class Cut:
    """Pass 2 of one partition, per bracket ``[lo, hi]``: the count of values below ``lo``,
    of values equal to ``lo`` and to ``hi`` (ties travel as counts), and the values
    strictly between them."""

    below: np.ndarray
    at_lo: np.ndarray
    at_hi: np.ndarray
    between: list[np.ndarray]


def sketch(values: np.ndarray, k: int = K) -> Summary:
    """Pass 1 on one partition of finite values."""
    from datasketches import kll_doubles_sketch

    s = kll_doubles_sketch(k)
    values = np.asarray(values).reshape(-1)
    if values.size:
        s.update(values.astype(np.float64, copy=False))
    return Summary(s.serialize(), int(values.size), values.dtype.str)


def _ranks(n: int, qs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """NumPy's linear method: previous and next order statistics and the weight."""
    h = (n - 1) * qs
    i = np.floor(h)
    g = h - i
    i = i.astype(np.int64)
    return i, np.minimum(i + 1, n - 1), g


def merge(summaries: Sequence[Summary], k: int = K) -> Any:
    """The partitions' sketches merged into one."""
    from datasketches import kll_doubles_sketch

    merged = kll_doubles_sketch(k)
    for s in summaries:
        merged.merge(kll_doubles_sketch.deserialize(s.sketch))
    return merged


def brackets(merged: Any, n: int, ranks: np.ndarray, slack: float) -> Brackets:
    """Value intervals that hold the order statistics ``ranks`` of ``n`` values, by the
    merged sketch, ``slack`` rank errors to each side (ends at the sketch's min/max)."""
    eps = slack * merged.normalized_rank_error(False)
    p = (ranks + 0.5) / n
    lo = [merged.get_quantile(x - eps) if x - eps > 0 else merged.get_min_value() for x in p]
    hi = [merged.get_quantile(x + eps) if x + eps < 1 else merged.get_max_value() for x in p]
    return _disjoint(np.asarray(lo, np.float64), np.asarray(hi, np.float64))


def _disjoint(lo: np.ndarray, hi: np.ndarray) -> Brackets:
    """Overlapping intervals merged (each value is then shipped once)."""
    order = np.argsort(lo, kind="stable")
    out_lo: list[float] = []
    out_hi: list[float] = []
    for a, b in zip(lo[order], hi[order]):
        if out_hi and a <= out_hi[-1]:
            out_hi[-1] = max(out_hi[-1], b)
        else:
            out_lo.append(a)
            out_hi.append(b)
    return Brackets(np.asarray(out_lo, np.float64), np.asarray(out_hi, np.float64))


def cut(values: np.ndarray, b: Brackets) -> Cut:
    """Pass 2 on one partition: per bracket, the counts below and at its ends, and the
    values strictly inside (a bracket ``lo == hi`` counts its ties in ``at_lo``)."""
    ordered = np.sort(np.asarray(values).reshape(-1))
    lo_a = np.searchsorted(ordered, b.lo, side="left")
    lo_z = np.searchsorted(ordered, b.lo, side="right")
    hi_a = np.maximum(np.searchsorted(ordered, b.hi, side="left"), lo_z)
    hi_z = np.maximum(np.searchsorted(ordered, b.hi, side="right"), lo_z)
    return Cut(
        lo_a.astype(np.int64),
        (lo_z - lo_a).astype(np.int64),
        (hi_z - hi_a).astype(np.int64),
        [ordered[a:z] for a, z in zip(lo_z, hi_a)],
    )


def _order_statistics(
    ranks: np.ndarray, b: Brackets, cuts: Sequence[Cut], dtype: np.dtype
) -> tuple[np.ndarray, np.ndarray]:
    """The values of the order statistics ``ranks`` and whether each was in a bracket:
    bracket j, sorted, is ``at_lo`` copies of ``lo``, the values between, ``at_hi``
    copies of ``hi``, starting at global rank ``below``."""
    below = np.sum([c.below for c in cuts], axis=0)
    at_lo = np.sum([c.at_lo for c in cuts], axis=0)
    at_hi = np.sum([c.at_hi for c in cuts], axis=0)
    values = np.zeros(ranks.size, dtype)
    found = np.zeros(ranks.size, dtype=bool)
    for j in range(b.lo.size):
        between = np.concatenate([c.between[j] for c in cuts])
        local = ranks - below[j]
        first = local < at_lo[j]
        middle = (local >= at_lo[j]) & (local < at_lo[j] + between.size)
        last = (local >= at_lo[j] + between.size) & (local < at_lo[j] + between.size + at_hi[j])
        hit = (local >= 0) & (first | middle | last) & ~found
        values[hit & first] = b.lo[j]
        values[hit & last] = b.hi[j]
        pick = hit & middle
        if pick.any():
            index = local[pick] - at_lo[j]
            values[pick] = np.partition(between, np.unique(index))[index]
        found |= hit
    return values, found


def exact_quantiles(
    parts: Iterable[P],
    read: Callable[[P], np.ndarray],
    qs: Sequence[float] | np.ndarray,
    runner: Runner | None = None,
    k: int = K,
    summaries: list[Summary] | None = None,
) -> np.ndarray:
    """``np.quantile(all values, qs)`` of the partitions, bit for bit, in two passes.

    Parameters
    ----------
    parts : iterable
        Partition descriptions (picklable for a cluster runner).
    read : callable
        ``read(part)`` gives that partition's finite values (any float dtype, the same
        for all parts).
    qs : sequence of float
        Quantiles in ``[0, 1]``.
    runner : callable, optional
        ``runner(function, items) -> list``: ``map`` locally, ``client.map`` +
        ``gather`` on a cluster.
    summaries : list of Summary, optional
        The sketch pass, when the caller has run it already.

    Raises
    ------
    ValueError
        When the partitions hold no values (as ``np.quantile`` of an empty array).
    """
    items = list(parts)
    run: Runner = runner or _map
    q = np.asarray(qs, dtype=np.float64)
    if summaries is None:
        summaries = run(_Sketch(read, k), items)
    n = sum(s.count for s in summaries)
    if n == 0:
        raise ValueError("no values to take quantiles of")
    dtype = np.dtype(next(s.dtype for s in summaries if s.count))
    prev, nxt, g = _ranks(n, q)
    ranks = np.unique(np.concatenate([prev, nxt]))
    merged = merge(summaries, k)
    values = np.zeros(ranks.size, dtype)
    found = np.zeros(ranks.size, dtype=bool)
    # A bracket the sketch got wrong (beyond its error bound) is seen by the exact
    # counts; those ranks are bracketed again, wider, and at last by the whole range.
    for slack in (SLACK, 10 * SLACK, np.inf):
        todo = ranks[~found]
        b = brackets(merged, n, todo, slack)
        got, hit = _order_statistics(todo, b, run(_Cut(read, b), items), dtype)
        values[~found] = np.where(hit, got, values[~found])
        found[~found] = hit
        if found.all():
            break
    at = dict(zip(ranks.tolist(), values))
    pairs = [np.array([at[a], at[z]], dtype) for a, z in zip(prev.tolist(), nxt.tolist())]
    # NumPy's own lerp on the two order statistics: (2 - 1) * g is g exactly.
    return np.array([np.quantile(pair, w) for pair, w in zip(pairs, g)])


def _map(function: Callable[[Any], Any], items: list[Any]) -> list[Any]:
    return [function(item) for item in items]


def numeric_bins(
    parts: Iterable[P],
    read: Callable[[P], np.ndarray],
    bins: int,
    binning: str,
    runner: Runner | None = None,
    summaries: list[Summary] | None = None,
) -> tuple[np.ndarray, float, np.ndarray] | None:
    """A drift profile's numeric bins of partitioned data: ``(edges, maximum, counts)``
    equal to ``jobs.drift_roles.numeric_edges`` and ``bin_counts`` of all the values at once.

    ``read(part)`` gives a partition's values without NaN (infinities included: they
    are counted, not binned). The edges come from the finite values (exact quantiles or
    equal widths over the exact range); the counts are integer counts added across
    partitions. None when no value is finite. ``summaries``: the partitions' sketches of
    their finite values (:func:`sketch`, ``k=K``), when the caller has made them already.
    """
    items = list(parts)
    run: Runner = runner or _map
    if summaries is None:
        summaries = run(_FiniteSketch(read, K), items)
    n = sum(s.count for s in summaries)
    if n == 0:
        return None
    merged = merge(summaries)
    lo, hi = float(merged.get_min_value()), float(merged.get_max_value())
    b = min(bins, n)
    if binning == "quantile":
        qs = np.arange(1, b) / b
        inner = (
            exact_quantiles(items, _Finite(read), qs, run, summaries=summaries)
            if b > 1
            else np.empty(0)
        )
    else:
        inner = np.linspace(lo, hi, b + 1)[1:-1]
    edges = np.unique(np.concatenate([[lo], inner]))
    counts = np.sum(run(_Counts(read, edges, hi), items), axis=0).astype(np.int64)
    return edges, hi, counts


@dataclass(frozen=True)
class _Finite:
    """A partition's finite values."""

    read: Callable[[Any], np.ndarray]

    def __call__(self, part: Any) -> np.ndarray:
        values = self.read(part)
        # Boolean indexing is typed Any in NumPy's stubs; it gives a 1-D array.
        finite: np.ndarray = values[np.isfinite(values)]
        return finite


@dataclass(frozen=True)
class _FiniteSketch:
    read: Callable[[Any], np.ndarray]
    k: int

    def __call__(self, part: Any) -> Summary:
        return sketch(_Finite(self.read)(part), self.k)


@dataclass(frozen=True)
class _Counts:
    """A partition's bin counts (drift's bins; integers, added across partitions)."""

    read: Callable[[Any], np.ndarray]
    edges: np.ndarray
    maximum: float

    def __call__(self, part: Any) -> np.ndarray:
        from ..jobs.drift_roles import bin_counts

        return bin_counts(self.read(part), self.edges, self.maximum)


@dataclass(frozen=True)
class _Sketch:
    """Pass 1 as a picklable callable: read a partition, sketch it."""

    read: Callable[[Any], np.ndarray]
    k: int

    def __call__(self, part: Any) -> Summary:
        return sketch(self.read(part), self.k)


@dataclass(frozen=True)
class _Cut:
    """Pass 2 as a picklable callable: read a partition, cut it at the brackets."""

    read: Callable[[Any], np.ndarray]
    b: Brackets

    def __call__(self, part: Any) -> Cut:
        return cut(self.read(part), self.b)


@dataclass(frozen=True)
class ColumnPart:
    """One row group of one numeric column of a Parquet file (local or remote): the
    partition a profile of a partitioned reference reads."""

    path: str
    row_group: int
    column: str
    storage: tuple[tuple[str, str], ...] = ()


def parquet_parts(
    path: str, column: str, storage: dict[str, str] | None = None
) -> list[ColumnPart]:
    """The partitions of ``column`` in a Parquet file or dataset: its files in sorted
    order, each file's row groups."""
    from ..io import fs
    from .tasks import parquet_files, row_groups

    options = fs.current_options() if storage is None else storage
    settings = tuple(sorted(options.items()))
    return [
        ColumnPart(f, g, column, settings)
        for f in parquet_files(path, options)
        for g in range(len(row_groups(f, options)))
    ]


def read_part(part: ColumnPart) -> Any:
    """One :class:`ColumnPart` as it is stored: a pyarrow ChunkedArray."""
    import pyarrow.parquet as pq

    from ..io import fs

    with fs.open_input(part.path, dict(part.storage)) as f:
        table = pq.ParquetFile(f).read_row_group(part.row_group, columns=[part.column])
    return table.column(0)


def read_present(part: ColumnPart) -> np.ndarray:
    """The values of one :class:`ColumnPart` as float64, nulls and NaN dropped
    (infinities kept, as drift counts them)."""
    from ..io.sources import column_array

    values = column_array(read_part(part), np.dtype(np.float64))
    # Boolean indexing is typed Any in NumPy's stubs; it gives a 1-D array.
    present: np.ndarray = values[~np.isnan(values)]
    return present
