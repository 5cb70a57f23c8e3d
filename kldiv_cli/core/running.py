"""Sums over values that arrive in blocks, with the bits of the whole-array sum.

:class:`BlockSum` gives ``np.sum(a, dtype=out)`` of a 1-D array ``a`` read block by
block, bit for bit: it cuts the stream where NumPy's own summation cuts the array.
:class:`ColumnSums` gives ``a.sum(axis=0)`` of a table ``a`` read block of rows by
block, bit for bit. :class:`ExactSums` gives :func:`.engine.combine` (``math.fsum``) of
each column of such a table, exactly, keeping a few floats per column, and
:func:`exact_total` that of every value of a stream of blocks, in one pass.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from itertools import chain

import numpy as np

from .engine import combine

__all__ = ["BlockSum", "ColumnSums", "ExactSums", "exact_total"]

#: NumPy's pairwise summation sums blocks of at most this many values with eight
#: accumulators and splits longer runs in two (``numpy/_core/src/umath/loops_utils.h``).
PAIRWISE_BLOCK = 128
#: Values summed per leaf of the pairwise tree here (memory: this many, times the
#: itemsize); any leaf of at least :data:`PAIRWISE_BLOCK` values gives the same bits.
LEAF = 1 << 20


def _halves(n: int) -> tuple[int, int]:
    """Where NumPy's pairwise sum splits ``n`` values: the first part a multiple of 8."""
    n2 = n // 2
    n2 -= n2 % 8
    return n2, n - n2


def _leaves(n: int, limit: int) -> list[int]:
    """The sizes of the nodes of NumPy's pairwise tree over ``n`` values that hold at
    most ``limit`` values, in order (each is summed by NumPy in one call)."""
    if n <= limit:
        return [n]
    a, b = _halves(n)
    return _leaves(a, limit) + _leaves(b, limit)


def _tree(n: int, limit: int, sums: Iterator[np.generic]) -> np.generic:
    """The pairwise tree over ``n`` values evaluated from its leaves' sums, in order."""
    if n <= limit:
        return next(sums)
    a, b = _halves(n)
    left = _tree(a, limit, sums)
    total: np.generic = np.add(left, _tree(b, limit, sums))
    return total


class BlockSum:
    """``np.sum(a, dtype=out)`` of a 1-D array ``a`` of ``n`` values of ``dtype``,
    given as consecutive blocks, with NumPy's bits.

    Without a cast (``dtype == out``) NumPy sums the whole array pairwise: the blocks
    are cut into the nodes of that tree (:func:`_leaves`), each summed by NumPy, and
    the tree is evaluated from them. With a cast (float32 values summed in float64)
    NumPy converts and sums buffers of ``np.getbufsize()`` values one after another:
    so are the blocks cut. Memory: one leaf (:data:`LEAF` values) or one buffer.

    Parameters
    ----------
    n : int
        The number of values to come.
    dtype, out : numpy.dtype
        The values' dtype and the sum's.
    limit : int, optional
        Values per leaf of the pairwise tree (at least :data:`PAIRWISE_BLOCK`; default
        :data:`LEAF`).
    """

    def __init__(self, n: int, dtype: np.dtype, out: np.dtype, limit: int | None = None) -> None:
        self.n = n
        self.dtype, self.out = np.dtype(dtype), np.dtype(out)
        self.limit = max(LEAF if limit is None else limit, PAIRWISE_BLOCK)
        self.cast = self.dtype != self.out
        self._sizes = [np.getbufsize()] if self.cast else _leaves(n, self.limit) if n else []
        self._next = 0  # the leaf to fill next (pairwise)
        self._sums: list[np.generic] = []
        self._acc = self.out.type(0)
        self._carry: list[np.ndarray] = []
        self._held = 0

    def _size(self) -> int:
        if self.cast:
            return self._sizes[0]
        return self._sizes[self._next] if self._next < len(self._sizes) else 0

    def _take(self, values: np.ndarray) -> None:
        s = np.add.reduce(values, dtype=self.out)
        if self.cast:
            self._acc = self._acc + s
        else:
            self._sums.append(s)
            self._next += 1

    def add(self, block: np.ndarray) -> None:
        """The next values, in order (any block size)."""
        values = np.asarray(block, dtype=self.dtype).reshape(-1)
        start = 0
        while start < values.size:
            size = self._size()
            if size == 0:
                raise ValueError(f"BlockSum: more than the {self.n} values announced")
            need = size - self._held
            piece = values[start : start + need]
            start += piece.size
            if self._held == 0 and piece.size == size:
                self._take(piece)
                continue
            self._carry.append(piece.copy())
            self._held += piece.size
            if self._held == size:
                self._take(np.concatenate(self._carry))
                self._carry, self._held = [], 0

    def total(self) -> float:
        """The sum of everything added, as NumPy gives it for the whole array."""
        if self._held:
            if not self.cast:
                raise ValueError(f"BlockSum: fewer than the {self.n} values announced")
            self._take(np.concatenate(self._carry))
            self._carry, self._held = [], 0
        if self.cast:
            return float(self._acc)
        if self._next != len(self._sizes):
            raise ValueError(f"BlockSum: fewer than the {self.n} values announced")
        if self.n == 0:
            return float(np.add.reduce(np.empty(0, self.dtype), dtype=self.out))
        return float(_tree(self.n, self.limit, iter(self._sums)))


class ColumnSums:
    """``a.sum(axis=0)`` of a C-contiguous float64 table ``a`` of ``n`` rows given as
    consecutive blocks of rows, with NumPy's bits.

    NumPy sums the rows of a table of several columns one after another (the columns
    are its inner loop): each block continues from the running sums, as one more row
    in front of it. A table of one column is one contiguous run, summed pairwise
    (:class:`BlockSum`).
    """

    def __init__(self, n: int, columns: int) -> None:
        self._one = (
            BlockSum(n, np.dtype(np.float64), np.dtype(np.float64)) if columns == 1 else None
        )
        self._sums = np.zeros(columns, np.float64)
        self._started = False

    def add(self, rows: np.ndarray) -> None:
        """The next block of rows (2-D, float64)."""
        if self._one is not None:
            self._one.add(rows)
            return
        if not len(rows):
            return
        ahead = np.concatenate([self._sums[None], rows]) if self._started else rows
        self._sums = np.add.reduce(ahead, axis=0)
        self._started = True

    def totals(self) -> np.ndarray:
        """Each column's sum (float64)."""
        if self._one is not None:
            return np.array([self._one.total()])
        return self._sums


class ExactSums:
    """:func:`.engine.combine` of each column of a table given block of rows by block:
    the exact sum, rounded once, of each column's values (``math.fsum``), with NaN and
    infinities as the plain sum gives them.

    Each column keeps a short list of floats whose exact sum is the column's so far (a
    non-overlapping expansion, at most about forty floats, usually two or three), so
    memory is a few floats per column, whatever the number of rows.
    """

    def __init__(self, columns: int) -> None:
        self._parts: list[list[float]] = [[] for _ in range(columns)]
        self._nan = np.zeros(columns, bool)
        self._pos = np.zeros(columns, bool)
        self._neg = np.zeros(columns, bool)

    def add(self, rows: np.ndarray) -> None:
        """The next block of rows (2-D: rows x columns, float64)."""
        block = np.asarray(rows, dtype=np.float64)
        finite = np.isfinite(block)
        if not finite.all():
            self._nan |= np.isnan(block).any(axis=0)
            self._pos |= np.isposinf(block).any(axis=0)
            self._neg |= np.isneginf(block).any(axis=0)
            block = np.where(finite, block, 0.0)
        for j, column in enumerate(block.T.tolist()):
            self._parts[j] = _expansion(self._parts[j] + column)

    def totals(self) -> np.ndarray:
        """Each column's sum (float64)."""
        out = np.array([combine(p) for p in self._parts], dtype=np.float64)
        with np.errstate(invalid="ignore"):
            out[self._pos] = np.inf
            out[self._neg] = np.where(self._pos[self._neg], np.nan, -np.inf)
        out[self._nan] = np.nan
        return out


def _expansion(values: list[float]) -> list[float]:
    """Floats whose exact sum is that of ``values``: the rounded sum, then what it
    left out, and so on (each ``math.fsum`` is exact, rounded once)."""
    out: list[float] = []
    rest = values
    while True:
        try:
            s = math.fsum(rest)
        except OverflowError:  # beyond float64: keep the values themselves
            return values
        if s == 0.0 or not math.isfinite(s):
            return out if s == 0.0 else values
        out.append(s)
        rest = values + [-v for v in out]
        if len(out) > 64:  # cannot happen for float64 (at most ~40 parts); stay bounded
            return values


def exact_total(blocks: Iterable[np.ndarray]) -> float:
    """:func:`.engine.combine` of every value of ``blocks``, consumed lazily: one
    ``math.fsum`` over the stream of finite values (exact, rounded once), so the bits
    are those of the whole array's, and memory is one block.

    A NaN, or infinities of both signs, give NaN; an infinity gives itself; finite
    values whose sum overflows give the plain sum's infinity (as ``combine``).
    """
    seen = {"nan": False, "pos": False, "neg": False}
    plain = [0.0]

    def finite(block: np.ndarray) -> list[float]:
        values = np.asarray(block, dtype=np.float64).reshape(-1)
        ok = np.isfinite(values)
        if not ok.all():
            seen["nan"] = seen["nan"] or bool(np.isnan(values).any())
            seen["pos"] = seen["pos"] or bool(np.isposinf(values).any())
            seen["neg"] = seen["neg"] or bool(np.isneginf(values).any())
            values = values[ok]
        with np.errstate(over="ignore", invalid="ignore"):
            plain[0] += float(values.sum())
        out: list[float] = values.tolist()
        return out

    try:
        total = math.fsum(chain.from_iterable(map(finite, blocks)))
    except OverflowError:
        for _ in map(finite, blocks):  # the rest of the stream, for its infinities
            pass
        total = plain[0]
    if seen["nan"] or (seen["pos"] and seen["neg"]):
        return math.nan
    if seen["pos"] or seen["neg"]:
        return math.inf if seen["pos"] else -math.inf
    return total
