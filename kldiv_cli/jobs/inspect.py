"""``kldiv inspect``: what a file holds, and which flags it needs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..io.sources import ReadOptions, Source, open_source

__all__ = ["InspectRequest", "classify", "inspect", "inspect_source"]

TOL = 1e-3
#: The column roles (:class:`kldiv_cli.io.base.ColumnRole`) that are the distribution.
USED = ("class", "distribution")


def classify(a: np.ndarray) -> tuple[str, list[str]]:
    """Name what the numbers look like, with the flags that fit (as input / as target)."""
    finite = a[np.isfinite(a)]
    if a.size == 0 or finite.size == 0:
        return "empty" if a.size == 0 else "no finite values", []
    rows = a.reshape(-1, a.shape[-1]) if a.ndim > 1 else a.reshape(1, -1)
    integral = bool(np.all(finite == np.round(finite))) and finite.min() >= 0
    if integral and (a.ndim == 1 or a.shape[-1] == 1) and finite.max() > 1:
        return "integer labels (class indices)", [
            "as TARGET: --target-labels (one-hot rows as wide as INPUT)"
        ]
    with np.errstate(all="ignore"):
        sums = rows.sum(axis=-1, dtype=np.float64)
        lse = np.log(np.exp(rows - rows.max(axis=-1, keepdims=True)).sum(axis=-1)) + rows.max(
            axis=-1
        )
    lo, hi = float(finite.min()), float(finite.max())
    if lo >= 0 and hi <= 1 and np.all(np.abs(sums - 1) <= TOL):
        return "probabilities (rows sum to 1)", [
            "as TARGET: no flag needed",
            "as INPUT: --input-transform log",
        ]
    if hi <= 0 and np.all(np.abs(lse[np.isfinite(lse)]) <= TOL):
        return "log-probabilities (rows log-sum-exp to 0)", [
            "as INPUT: no flag needed",
            "as TARGET: --log-target (or --target-transform exp)",
        ]
    if lo >= 0:
        return "non-negative values whose rows do not sum to 1", [
            "as TARGET: normalise the rows first, or --target-transform softmax if these are scores",
        ]
    return "logits (unnormalised scores)", [
        "as INPUT: --input-transform log-softmax",
        "as TARGET: --target-transform softmax",
    ]


@dataclass(frozen=True)
class InspectRequest:
    """The file to describe (``-``: stdin) and how to read it."""

    path: str
    options: ReadOptions = ReadOptions()


def inspect(request: InspectRequest, stdin: bytes | None = None) -> dict[str, Any]:
    """Open ``request.path`` and describe it (:func:`inspect_source`)."""
    return inspect_source(open_source(request.path, request.options, stdin))


def inspect_source(source: Source) -> dict[str, Any]:
    """Shape, dtype, NaN/inf counts, range, row sums, and what the numbers look like
    (:func:`classify`) with the flags that fit."""
    a = source.read()
    info: dict[str, Any] = {
        "path": source.label,
        "format": source.fmt,
        "shape": list(a.shape),
        "dtype": str(a.dtype),
    }
    if source.columns is not None:
        info["columns"] = source.columns
    if source.roles is not None:
        # Which columns compute and compare use, and why the others are left out.
        info["column_roles"] = [
            {"name": r.name, "role": r.role, "used": r.role in USED, "reason": r.reason}
            for r in source.roles
        ]
    with np.errstate(all="ignore"):
        info["elements"] = int(a.size)
        info["nan"] = int(np.count_nonzero(np.isnan(a)))
        info["posinf"] = int(np.count_nonzero(np.isposinf(a)))
        info["neginf"] = int(np.count_nonzero(np.isneginf(a)))
        finite = a[np.isfinite(a)]
        info["min"] = float(finite.min()) if finite.size else None
        info["max"] = float(finite.max()) if finite.size else None
        info["negative"] = int(np.count_nonzero(a < 0))
        info["zeros"] = int(np.count_nonzero(a == 0))
        if a.ndim >= 1 and a.size:
            rows = a.reshape(-1, a.shape[-1]) if a.ndim > 1 else a.reshape(1, -1)
            sums = rows.sum(axis=-1, dtype=np.float64)
            info["rows"] = int(rows.shape[0])
            info["row_sum_min"] = float(np.nanmin(sums)) if not np.isnan(sums).all() else None
            info["row_sum_mean"] = float(np.nanmean(sums)) if not np.isnan(sums).all() else None
            info["row_sum_max"] = float(np.nanmax(sums)) if not np.isnan(sums).all() else None
    kind, suggestions = classify(a)
    info["looks_like"] = kind
    info["suggestions"] = suggestions
    return info
