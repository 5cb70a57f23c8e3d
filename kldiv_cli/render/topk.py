"""``topk`` results -> :class:`~kldiv_cli.render.Report`: the file written, or the
sweep over K (one row per K)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from .._version import __version__
from . import Report

if TYPE_CHECKING:
    from ..jobs.topk import SweepResult, WriteResult

__all__ = ["sweep_report", "write_report"]

#: What the sparse means are: what the JSON and the notes say of them.
LOWER_BOUND = (
    "sparse_kl_mean: KL on the K classes and one tail bucket, a lower bound of the dense KL "
    "(data-processing inequality)"
)


def _num(v: float) -> str:
    return f"{v:.6g}" if math.isfinite(v) else str(v)


def _share(v: float) -> str:
    """A top-K mass: 6 decimals, more when those would show one that is not 1 as 1
    (0.9999996; or 1.0000004, float32 rounding of the stored log-probabilities)."""
    if not math.isfinite(v):
        return str(v)
    for places in range(6, 13):
        text = f"{v:.{places}f}"
        if v == 1 or float(text) != 1:
            break
    return text


def write_report(result: WriteResult) -> Report:
    """The file written: rows, K, bytes (and per position), the reference's top-K mass."""
    per = result.bytes / result.rows if result.rows else math.nan
    doc: dict[str, Any] = {
        "output": result.output,
        "rows": result.rows,
        "k": result.k,
        "bytes": result.bytes,
        "bytes_per_position": per,
        "coverage": result.coverage,
        "input": result.input,
        "tokens": result.tokens,
        "kldiv_version": __version__,
    }
    plain = [
        f"wrote {result.output}: {result.rows} rows, K = {result.k}, {result.bytes} bytes "
        f"({_num(per)} per position); top-K mass mean {_share(result.coverage['mean'])}, "
        f"min {_share(result.coverage['min'])}"
    ]
    table: dict[str, list[Any]] = {
        "statistic": ["rows", "k", "bytes", "bytes_per_position", "coverage.mean", "coverage.min"],
        "value": [
            result.rows,
            result.k,
            result.bytes,
            per,
            result.coverage["mean"],
            result.coverage["min"],
        ],
    }
    return Report(title="kldiv topk", document=doc, table=table, plain=plain, digits=6)


def sweep_report(result: SweepResult) -> Report:
    """One row per K: ``k``, ``sparse_kl_mean``, ``dense_kl_mean``, ``relative_error``,
    ``coverage_mean``, ``coverage_min``, ``bytes_per_position``."""
    rows = result.sweep
    table: dict[str, list[Any]] = {key: [r[key] for r in rows] for key in rows[0]} if rows else {}
    doc: dict[str, Any] = {
        "rows": result.rows,
        "tail": result.tail,
        "lower_bound": result.tail == "bucket",
        "sweep": rows,
        "reference": result.reference,
        "candidate": result.candidate,
        "kldiv_version": __version__,
    }
    plain = [
        f"K={r['k']}: sparse mean KL {_num(r['sparse_kl_mean'])}, dense {_num(r['dense_kl_mean'])}, "
        f"relative error {_num(r['relative_error'])}, coverage mean {_share(r['coverage_mean'])} "
        f"min {_share(r['coverage_min'])}, {_num(r['bytes_per_position'])} bytes per position"
        for r in rows
    ]
    notes = [LOWER_BOUND] if result.tail == "bucket" else []
    return Report(
        title="kldiv topk --sweep", document=doc, table=table, plain=plain, notes=notes, digits=6
    )
