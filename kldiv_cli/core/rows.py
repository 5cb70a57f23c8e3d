"""The last-axis softmax and log-softmax of :mod:`.transforms`, on cache-sized blocks of
rows shared among threads.

Each step (the widening, the division by the temperature, a row's maximum, ``exp``, a
row's sum, ``log``) is the NumPy call the whole-array passes make, on the same rows, so
the bits are theirs for any block size and any thread count; the block's float64 values
stay in a core's cache through all of them.
"""

from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING

import numpy as np

from .engine import default_threads

if TYPE_CHECKING:
    from collections.abc import Callable
    from concurrent.futures import ThreadPoolExecutor

__all__ = ["ROW_BLOCK", "applies", "by_rows", "log_softmax_rows", "softmax_rows"]

#: Elements of the block of rows a last-axis (log-)softmax works on at once: its float64
#: values (512 KiB) stay in a core's cache through the five passes over them, where
#: passes over the whole array went to memory each time.
ROW_BLOCK = 1 << 16
#: From this many elements, the rows are shared among threads.
PARALLEL_ROWS = 1 << 18
_POOLS: dict[int, ThreadPoolExecutor] = {}
_POOL_PREFIX = "kldiv-rows"


def applies(a: np.ndarray, axis: int, out: np.dtype) -> bool:
    """Whether :func:`by_rows` computes this (log-)softmax: along the last axis of a
    C-contiguous array of values, returned in the dtype it is computed in (float16
    keeps its own widening and rounding)."""
    return (
        a.ndim > 0
        and a.size > 0
        and axis in (-1, a.ndim - 1)
        and a.flags.c_contiguous
        and a.dtype != np.float16
        and out != np.float16
    )


def by_rows(
    a: np.ndarray,
    temperature: float,
    work: np.dtype,
    kernel: Callable[[np.ndarray, np.ndarray], None],
    threads: int | None,
) -> np.ndarray:
    """``kernel(block, scratch)`` run in place on blocks of rows of ``a`` widened to
    ``work`` (exactly: float32 to float64 is exact) and divided by ``temperature``, about
    :data:`ROW_BLOCK` elements at a time, the blocks shared among threads.

    Every value of a row depends only on that row (its maximum, its sum, taken by the
    same NumPy calls on the same row), so the result has the same bits as the passes
    over the whole array, for any block and any thread count.
    """
    width = a.shape[-1]
    rows = a.reshape(-1, width)
    result = np.empty(rows.shape, dtype=work)
    per = max(1, ROW_BLOCK // max(1, width))
    starts = range(0, len(rows), per)
    scale = work.type(temperature)

    def run(first: int, last: int) -> None:
        scratch = np.empty((min(per, len(rows)), width), dtype=work)
        for i in starts[first:last]:
            block = result[i : i + per]
            np.copyto(block, rows[i : i + per])
            if temperature != 1.0:
                np.divide(block, scale, out=block)
            kernel(block, scratch[: len(block)])

    count = 1 if threading.current_thread().name.startswith(_POOL_PREFIX) else threads
    count = min(default_threads() if count is None else max(1, count), len(starts))
    if count == 1 or a.size < PARALLEL_ROWS:
        run(0, len(starts))
    else:
        bounds = np.linspace(0, len(starts), count + 1).astype(int).tolist()
        list(_pool(count).map(run, bounds[:-1], bounds[1:]))
    return result.reshape(a.shape)


def _pool(threads: int) -> ThreadPoolExecutor:
    """A long-lived pool per thread count (a block of rows takes less time than
    starting threads)."""
    pool = _POOLS.get(threads)
    if pool is None:
        from concurrent.futures import ThreadPoolExecutor

        pool = _POOLS[threads] = ThreadPoolExecutor(threads, thread_name_prefix=_POOL_PREFIX)
    return pool


if hasattr(os, "register_at_fork"):
    # A forked child has none of the parent's threads (waiting on them would hang): it
    # starts its own pools.
    os.register_at_fork(after_in_child=_POOLS.clear)


def log_softmax_rows(block: np.ndarray, scratch: np.ndarray) -> None:
    """``block`` (rows of logits) replaced by its log-softmax along the rows: the steps
    of :func:`.transforms.log_softmax`, with the ``exp`` written into ``scratch``."""
    with np.errstate(invalid="ignore"):
        np.subtract(block, np.max(block, axis=-1, keepdims=True), out=block)
    total = np.sum(np.exp(block, out=scratch), axis=-1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        np.subtract(block, np.log(total), out=block)


def softmax_rows(block: np.ndarray, scratch: np.ndarray) -> None:
    """``block`` (rows of logits) replaced by its softmax along the rows: the steps of
    :func:`.transforms.softmax` (``scratch`` is not needed)."""
    with np.errstate(invalid="ignore"):
        np.subtract(block, np.max(block, axis=-1, keepdims=True), out=block)
    np.exp(block, out=block)
    with np.errstate(invalid="ignore"):
        np.divide(block, np.sum(block, axis=-1, keepdims=True), out=block)
