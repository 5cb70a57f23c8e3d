"""Conversions between logits, probabilities and log-probabilities."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from numpy.typing import ArrayLike

__all__ = ["TRANSFORMS", "apply_transform", "log_softmax", "softmax"]

TRANSFORMS: tuple[str, ...] = ("none", "softmax", "log-softmax", "log", "exp")


def _prepare(x: ArrayLike, axis: int, temperature: float) -> tuple[np.ndarray, np.dtype]:
    a = np.asarray(x)
    if a.dtype.kind not in "f" or a.dtype.itemsize not in (2, 4, 8):
        raise TypeError(f"softmax: expected a float16/32/64 array, got dtype {a.dtype}")
    if not (math.isfinite(temperature) and temperature > 0):
        raise ValueError(f"temperature must be a finite number > 0, got {temperature}")
    if a.ndim and not -a.ndim <= axis < a.ndim:
        raise ValueError(f"axis {axis} is out of bounds for an array of dimension {a.ndim}")
    dtype = a.dtype
    # Like torch on CPU, float16 is computed in float32 and rounded once.
    if dtype == np.float16:
        a = a.astype(np.float32)
    if temperature != 1.0:
        a = a / a.dtype.type(temperature)
    return a, dtype


def _shifted(a: np.ndarray, axis: int) -> np.ndarray:
    """``a - max(a)`` along ``axis``: the shift that keeps exp from overflowing."""
    with np.errstate(invalid="ignore"):
        return a - np.max(a, axis=axis, keepdims=True)


def log_softmax(x: ArrayLike, axis: int = -1, temperature: float = 1.0) -> np.ndarray:
    r"""Log of the softmax of ``x / temperature`` along ``axis``, as ``F.log_softmax``.

    Computed as ``z - log(sum(exp(z)))`` with ``z = x/T - max(x/T)``, so large
    logits neither overflow nor lose precision.

    Edge cases
    ----------
    * ``-inf`` logits (masked classes) get exactly ``-inf``.
    * A row whose logits are all ``-inf`` has no distribution: every entry is
      NaN, as in torch (``-inf - (-inf)``). A ``+inf`` or NaN logit also makes
      its row NaN.
    * A 0-d array is treated as one row of one class (result ``0``); an empty
      axis gives an empty result.
    """
    a, dtype = _prepare(x, axis, temperature)
    if a.ndim == 0:
        return log_softmax(a.reshape(1), 0).reshape(()).astype(dtype)
    if a.size == 0:
        return a.astype(dtype)
    z = _shifted(a, axis)
    total = np.sum(np.exp(z), axis=axis, keepdims=True)
    if dtype == np.float16 and axis in (-1, a.ndim - 1):
        # torch's last-axis float16 kernel keeps the sum in a float16 buffer.
        total = total.astype(np.float16).astype(np.float32)
    with np.errstate(divide="ignore", invalid="ignore"):
        return (z - np.log(total)).astype(dtype, copy=False)


def softmax(x: ArrayLike, axis: int = -1, temperature: float = 1.0) -> np.ndarray:
    r"""Softmax of ``x / temperature`` along ``axis``, as ``F.softmax``.

    ``exp(z) / sum(exp(z))`` with ``z = x/T - max(x/T)``. ``-inf`` logits give
    exactly 0; a row that is entirely ``-inf`` (or holds ``+inf`` or NaN) is
    all NaN, as in torch. A 0-d array gives ``1``.
    """
    a, dtype = _prepare(x, axis, temperature)
    if a.ndim == 0:
        return softmax(a.reshape(1), 0).reshape(()).astype(dtype)
    if a.size == 0:
        return a.astype(dtype)
    e = np.exp(_shifted(a, axis))
    with np.errstate(invalid="ignore"):
        return (e / np.sum(e, axis=axis, keepdims=True)).astype(dtype, copy=False)


def apply_transform(
    name: str, x: np.ndarray, axis: int = -1, temperature: float = 1.0
) -> np.ndarray:
    """Apply one of :data:`TRANSFORMS` (the temperature only scales (log-)softmax)."""
    if name == "none":
        return x
    if name == "softmax":
        return softmax(x, axis, temperature)
    if name == "log-softmax":
        return log_softmax(x, axis, temperature)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        if name == "log":
            return np.log(x)
        if name == "exp":
            return np.exp(x)
    raise ValueError(f"unknown transform {name!r}; choose one of {', '.join(TRANSFORMS)}")
