"""How the loss is summed: fixed chunks, float64 partial sums, ordered combine."""

from __future__ import annotations

import math

import numpy as np

from .core import pointwise

CHUNK = 1 << 16


def total_loss(x: np.ndarray, t: np.ndarray, log_target: bool, dtype: np.dtype) -> float:
    """The float64 sum of torch's pointwise loss (each term rounded to ``dtype``)."""
    with np.errstate(all="ignore"):
        return _total(x, t, log_target, dtype)


def _total(x: np.ndarray, t: np.ndarray, log_target: bool, dtype: np.dtype) -> float:
    if x.shape != t.shape:
        return float(pointwise(x, t, log_target, dtype).sum(dtype=np.float64))
    xf = x.reshape(-1)
    tf = t.reshape(-1)
    parts = [
        pointwise(xf[i : i + CHUNK], tf[i : i + CHUNK], log_target, dtype).sum(dtype=np.float64)
        for i in range(0, xf.size, CHUNK)
    ]
    return combine(parts)


def combine(parts) -> float:
    """Ordered, exact combination of float64 partial sums (the same bits for any chunking
    of the work into those parts). fsum refuses inf - inf; torch gives nan there."""
    arr = np.asarray(parts, dtype=np.float64)
    if np.isfinite(arr).all():
        return math.fsum(arr.tolist())
    return float(arr.sum())
