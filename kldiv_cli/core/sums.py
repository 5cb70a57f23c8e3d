"""Exact float64 sums: partial sums combined exactly, row by row, and exact widening.

Shared by the loss engine (:mod:`.engine`, which re-exports these names) and the
statistics, estimators and Gaussian KL, whose partial sums are combined the same way.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from collections.abc import Iterable

    from numpy.typing import ArrayLike, NDArray

__all__ = ["DOT", "as_float64", "combine", "combine_rows", "dot", "fsum_or_inf", "row_dots"]


def combine(parts: Iterable[float]) -> float:
    """Exact, order-independent combination of float64 partial sums.

    ``fsum`` refuses ``inf - inf``; torch gives nan there, and so does the plain sum.
    """
    arr = np.asarray(list(parts), dtype=np.float64)
    if np.isfinite(arr).all():
        return fsum_or_inf(arr.tolist())
    with np.errstate(invalid="ignore"):
        return float(arr.sum())


def fsum_or_inf(values: list[float]) -> float:
    """``math.fsum``, except where finite values sum beyond float64 (fsum raises
    OverflowError there): then the plain sum's infinity, as torch's sum overflows too."""
    try:
        return math.fsum(values)
    except OverflowError:
        with np.errstate(over="ignore", invalid="ignore"):
            return float(np.sum(values))


def combine_rows(rows: np.ndarray) -> NDArray[np.float64]:
    """:func:`combine` of each row of a 2-D array: the exact float64 sum of every row.

    A row of finite values is summed by ``math.fsum`` (exact, rounded once); a row with
    a NaN or an infinity by the plain sum, so ``inf - inf`` is NaN as in torch (fsum
    would raise). A row of no values sums to 0.
    """
    w = np.asarray(rows, dtype=np.float64)
    out = np.empty(len(w), dtype=np.float64)
    finite = np.isfinite(w).all(axis=1)
    out[finite] = [fsum_or_inf(r) for r in w[finite].tolist()]
    with np.errstate(invalid="ignore"):
        out[~finite] = w[~finite].sum(axis=1)
    return out


def as_float64(value: ArrayLike, name: str, *, bools: bool = False) -> NDArray[np.float64]:
    """``value`` as a float64 array, widened exactly (no copy when it already is one).

    Integers and floats are real numbers; booleans only with ``bools`` (as 0 and 1).

    Raises
    ------
    TypeError
        Any other dtype (complex, strings, objects), named by ``name``.
    """
    a = np.asarray(value)
    if a.dtype.kind not in ("fiub" if bools else "fiu"):
        raise TypeError(f"{name}: expected real numbers, got dtype {a.dtype}")
    return a.astype(np.float64, copy=False)


#: Vector length of one BLAS dot: OpenBLAS runs ``ddot`` on one thread up to 10,000
#: elements and threads it above, where its pool serialises concurrent callers.
DOT = 8192


def row_dots(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``sum(a * b, axis=-1)`` of 2-D float64 arrays whose rows are contiguous.

    BLAS ``ddot`` on ``DOT``-long slices of each row, all in one ``matmul`` call (a stack
    of 1 x DOT by DOT x 1 products, with the GIL released), then each row's slices
    summed in order and its remainder added. Faster than a multiply and a pairwise sum or
    ``einsum``, and accurate far beyond what a result dtype can show; the bits depend on
    the row length only.
    """
    rows, width = a.shape
    whole = width - width % DOT
    out = np.zeros(rows)
    if whole:
        pieces = np.matmul(
            a[:, :whole].reshape(rows, -1, 1, DOT), b[:, :whole].reshape(rows, -1, DOT, 1)
        )
        out += pieces.reshape(rows, -1).sum(axis=1)
    if whole < width:
        out += np.matmul(a[:, None, whole:], b[:, whole:, None]).reshape(rows)
    return out


def dot(a: np.ndarray, b: np.ndarray) -> float:
    """``sum(a * b)`` of 1-D float64 arrays (:func:`row_dots` of one row)."""
    return float(row_dots(a.reshape(1, -1), b.reshape(1, -1))[0])
