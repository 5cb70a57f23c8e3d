"""Conversions between logits, probabilities and log-probabilities."""

from __future__ import annotations

import math
import threading
from typing import TYPE_CHECKING

import numpy as np

from .engine import CHUNK, default_threads
from .half import narrow, widen

if TYPE_CHECKING:
    from collections.abc import Callable
    from concurrent.futures import ThreadPoolExecutor

    from numpy.typing import ArrayLike, DTypeLike

__all__ = ["TRANSFORMS", "apply_transform", "log_softmax", "softmax"]

TRANSFORMS: tuple[str, ...] = ("none", "softmax", "log-softmax", "log", "exp")


def _float_dtype(dtype: DTypeLike, what: str) -> np.dtype:
    d = np.dtype(dtype)
    if d.kind != "f" or d.itemsize not in (2, 4, 8):
        raise TypeError(f"{what}: expected a float16/32/64 dtype, got {d}")
    return d


def _checked(
    x: ArrayLike, axis: int, temperature: float, dtype: DTypeLike | None
) -> tuple[np.ndarray, np.dtype, np.dtype]:
    """``x`` as an array, the dtype to return and the dtype to compute in, after the
    checks of every (log-)softmax.

    ``dtype=None`` is torch's behaviour: the input's dtype, float16 computed in float32
    and rounded once. A given ``dtype`` is computed in (float16 again through float32)
    after an exact widening, so ``dtype=np.float64`` rounds nothing before the end.
    """
    a = np.asarray(x)
    _float_dtype(a.dtype, "softmax")
    out = a.dtype if dtype is None else _float_dtype(dtype, "softmax")
    if not (math.isfinite(temperature) and temperature > 0):
        raise ValueError(f"temperature must be a finite number > 0, got {temperature}")
    if a.ndim and not -a.ndim <= axis < a.ndim:
        raise ValueError(f"axis {axis} is out of bounds for an array of dimension {a.ndim}")
    work = np.dtype(np.float32) if out == np.float16 else out
    return a, out, work


def _prepare(
    a: np.ndarray, temperature: float, out: np.dtype, work: np.dtype
) -> tuple[np.ndarray, np.dtype, bool]:
    """The array to compute with (``a`` from :func:`_checked`, in ``work``), the dtype to
    return, and whether the array is a copy of our own (so that the next steps may
    overwrite it instead of allocating)."""
    given = a
    exact = work == np.float64 or a.dtype == np.float16
    a = widen(a, work.type) if exact else a.astype(work, copy=False)
    owned = a is not given
    if temperature != 1.0:
        a = np.divide(a, work.type(temperature), out=a if owned else None)
        owned = True
    return a, out, owned


def _shifted(a: np.ndarray, axis: int, owned: bool) -> np.ndarray:
    """``a - max(a)`` along ``axis`` (the shift that keeps exp from overflowing), in a
    new array, or in ``a`` itself when it is ``owned``."""
    with np.errstate(invalid="ignore"):
        # NumPy's stubs type a ufunc with an optional ``out`` as Any.
        shifted: np.ndarray = np.subtract(
            a, np.max(a, axis=axis, keepdims=True), out=a if owned else None
        )
    return shifted


def _as(a: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """``a`` (float32 or float64) in ``dtype``: float16 through :func:`.half.narrow`, the
    same rounding as NumPy's cast, which is very slow on subnormal results (softmax
    probabilities)."""
    return (
        narrow(a) if dtype == np.float16 and a.dtype == np.float32 else a.astype(dtype, copy=False)
    )


def _sum_exp(z: np.ndarray, axis: int) -> np.ndarray:
    """``sum(exp(z))`` along ``axis``, keeping the axis.

    Along the last axis of a C-contiguous array, a block of rows at a time through one
    small buffer: the same sums (each row is summed on its own either way) without a
    full-size temporary, whose fresh pages cost more than the ``exp`` itself.
    """
    if z.ndim == 0 or axis not in (-1, z.ndim - 1) or not z.flags.c_contiguous:
        # NumPy's stubs type a sum with ``keepdims`` as Any; it is an array.
        sums: np.ndarray = np.sum(np.exp(z), axis=axis, keepdims=True)
        return sums
    width = z.shape[-1]
    rows = z.reshape(-1, width)
    per = max(1, CHUNK // max(1, width))
    buf = np.empty((min(per, len(rows)), width), dtype=z.dtype)
    out = np.empty(len(rows), dtype=z.dtype)
    for i in range(0, len(rows), per):
        block = rows[i : i + per]
        e = np.exp(block, out=buf[: len(block)])
        np.sum(e, axis=-1, out=out[i : i + per])
    return out.reshape((*z.shape[:-1], 1))


#: Elements of the block of rows a last-axis (log-)softmax works on at once: its float64
#: values (256 KiB) stay in a core's cache through the five passes over them, where
#: passes over the whole array went to memory each time.
ROW_BLOCK = 1 << 15
#: From this many elements, the rows are shared among threads.
PARALLEL_ROWS = 1 << 18
_POOLS: dict[int, ThreadPoolExecutor] = {}
_POOL_PREFIX = "kldiv-rows"


def _by_rows_applies(a: np.ndarray, axis: int, out: np.dtype) -> bool:
    """Whether :func:`_by_rows` computes this (log-)softmax: along the last axis of a
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


def _by_rows(
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


def _log_softmax_rows(block: np.ndarray, scratch: np.ndarray) -> None:
    """``block`` (rows of logits) replaced by its log-softmax along the rows: the steps
    of :func:`log_softmax`, with the ``exp`` written into ``scratch``."""
    with np.errstate(invalid="ignore"):
        np.subtract(block, np.max(block, axis=-1, keepdims=True), out=block)
    total = np.sum(np.exp(block, out=scratch), axis=-1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        np.subtract(block, np.log(total), out=block)


def _softmax_rows(block: np.ndarray, scratch: np.ndarray) -> None:
    """``block`` (rows of logits) replaced by its softmax along the rows: the steps of
    :func:`softmax` (``scratch`` is not needed)."""
    with np.errstate(invalid="ignore"):
        np.subtract(block, np.max(block, axis=-1, keepdims=True), out=block)
    np.exp(block, out=block)
    with np.errstate(invalid="ignore"):
        np.divide(block, np.sum(block, axis=-1, keepdims=True), out=block)


def log_softmax(
    x: ArrayLike,
    axis: int = -1,
    temperature: float = 1.0,
    *,
    dtype: DTypeLike | None = None,
    threads: int | None = None,
) -> np.ndarray:
    r"""Log of the softmax of ``x / temperature`` along ``axis``, as ``F.log_softmax``.

    Computed as ``z - log(sum(exp(z)))`` with ``z = x/T - max(x/T)``, so large
    logits neither overflow nor lose precision.

    ``dtype`` is the dtype to compute in and return. ``None`` (the default) is
    torch's: the input's dtype (float16 computed in float32, with torch's float16
    row-sum buffer, and rounded once). ``dtype=np.float64`` widens the logits
    exactly and rounds nothing: what an exact aggregate needs, so that a
    log-softmax of float32 or float16 logits is never rounded before the KL.
    ``threads``: how many threads share the rows (None: every core); the result is
    the same for any number.

    Edge cases
    ----------
    * ``-inf`` logits (masked classes) get exactly ``-inf``.
    * A row whose logits are all ``-inf`` has no distribution: every entry is
      NaN, as in torch (``-inf - (-inf)``). A ``+inf`` or NaN logit also makes
      its row NaN.
    * A 0-d array is treated as one row of one class (result ``0``); an empty
      axis gives an empty result.
    """
    given, out, work = _checked(x, axis, temperature, dtype)
    if _by_rows_applies(given, axis, out):
        return _by_rows(given, temperature, work, _log_softmax_rows, threads)
    torch_f16 = dtype is None and given.dtype == np.float16
    a, dtype, owned = _prepare(given, temperature, out, work)
    if a.ndim == 0:
        return log_softmax(a.reshape(1), 0, dtype=dtype).reshape(())
    if a.size == 0:
        return a.astype(dtype)
    z = _shifted(a, axis, owned)
    total = _sum_exp(z, axis)
    if torch_f16 and axis in (-1, a.ndim - 1):
        # torch's last-axis float16 kernel keeps the sum in a float16 buffer.
        total = widen(narrow(total), np.float32)
    with np.errstate(divide="ignore", invalid="ignore"):
        return _as(np.subtract(z, np.log(total), out=z), dtype)


def softmax(
    x: ArrayLike,
    axis: int = -1,
    temperature: float = 1.0,
    *,
    dtype: DTypeLike | None = None,
    threads: int | None = None,
) -> np.ndarray:
    r"""Softmax of ``x / temperature`` along ``axis``, as ``F.softmax``.

    ``exp(z) / sum(exp(z))`` with ``z = x/T - max(x/T)``. ``-inf`` logits give
    exactly 0; a row that is entirely ``-inf`` (or holds ``+inf`` or NaN) is
    all NaN, as in torch. A 0-d array gives ``1``. ``dtype``: as for
    :func:`log_softmax` (``None``: torch's; ``np.float64``: exact widening, no
    rounding before the end), and so does ``threads``.
    """
    given, out, work = _checked(x, axis, temperature, dtype)
    if _by_rows_applies(given, axis, out):
        return _by_rows(given, temperature, work, _softmax_rows, threads)
    a, dtype, owned = _prepare(given, temperature, out, work)
    if a.ndim == 0:
        return softmax(a.reshape(1), 0, dtype=dtype).reshape(())
    if a.size == 0:
        return a.astype(dtype)
    e = _shifted(a, axis, owned)
    np.exp(e, out=e)
    with np.errstate(invalid="ignore"):
        return _as(np.divide(e, np.sum(e, axis=axis, keepdims=True), out=e), dtype)


def apply_transform(
    name: str,
    x: np.ndarray,
    axis: int = -1,
    temperature: float = 1.0,
    *,
    dtype: DTypeLike | None = None,
    threads: int | None = None,
) -> np.ndarray:
    """Apply one of :data:`TRANSFORMS` (the temperature only scales (log-)softmax).

    ``dtype``: the dtype ``softmax``, ``log-softmax``, ``log`` and ``exp`` compute in
    and return (``None``: torch's, the input's own). ``"none"`` returns ``x`` as it is
    whatever ``dtype``: the engine widens it exactly, chunk by chunk, and a copy would
    only cost memory. ``threads``: as for :func:`log_softmax`.
    """
    if name == "none":
        return x
    if name == "softmax":
        return softmax(x, axis, temperature, dtype=dtype, threads=threads)
    if name == "log-softmax":
        return log_softmax(x, axis, temperature, dtype=dtype, threads=threads)
    if name in ("log", "exp"):
        a = x
        if dtype is not None:
            d = _float_dtype(dtype, name)
            a = widen(x) if d == np.float64 else np.asarray(x).astype(d, copy=False)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            # A ufunc of an untyped-dtype array is typed Any in NumPy's stubs.
            result: np.ndarray = np.log(a) if name == "log" else np.exp(a)
        return result
    raise ValueError(f"unknown transform {name!r}; choose one of {', '.join(TRANSFORMS)}")
