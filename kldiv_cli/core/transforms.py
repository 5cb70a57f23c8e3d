"""Conversions between logits, probabilities and log-probabilities."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from .engine import CHUNK
from .half import narrow, widen

if TYPE_CHECKING:
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
    from . import rows  # only where a softmax runs: start-up compiles less

    given, out, work = _checked(x, axis, temperature, dtype)
    if rows.applies(given, axis, out):
        return rows.by_rows(given, temperature, work, rows.log_softmax_rows, threads)
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
    from . import rows  # only where a softmax runs: start-up compiles less

    given, out, work = _checked(x, axis, temperature, dtype)
    if rows.applies(given, axis, out):
        return rows.by_rows(given, temperature, work, rows.softmax_rows, threads)
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
