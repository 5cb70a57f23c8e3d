"""How the loss is summed: fixed chunks, float64 partial sums, ordered combine."""

from __future__ import annotations

import math

import numpy as np

from .core import pointwise

CHUNK = 1 << 16


def total_loss(x: np.ndarray, t: np.ndarray, log_target: bool, dtype: np.dtype) -> float:
    """The float64 sum of torch's pointwise loss (each term rounded to ``dtype``)."""
    if x.shape != t.shape:
        return float(pointwise(x, t, log_target, dtype).sum(dtype=np.float64))
    xf = x.reshape(-1)
    tf = t.reshape(-1)
    parts = [
        pointwise(xf[i : i + CHUNK], tf[i : i + CHUNK], log_target, dtype).sum(dtype=np.float64)
        for i in range(0, xf.size, CHUNK)
    ]
    return math.fsum(parts)
