"""Turn each command's result into a :class:`~kldiv_cli.render.Report`."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np

from .._version import __version__
from ..jobs.compute import ComputeResult
from . import Report, as_rows, format_number

if TYPE_CHECKING:
    from . import Column


def _array_lines(values: np.ndarray) -> list[str]:
    """Arrays as CSV rows: one row per line, the last axis across."""
    if values.ndim == 0:
        return [format_number(values[()])]
    return [",".join(format_number(v) for v in row) for row in as_rows(values)]


def compute_report(result: ComputeResult) -> Report:
    req = result.request
    loss = result.loss
    doc: dict[str, Any] = {
        "loss": loss,
        "reduction": req.reduction,
        "log_target": req.log_target,
        "input_transform": req.input_transform,
        "target_transform": req.target_transform,
        "temperature": req.temperature,
        "t2_scale": req.t2_scale,
        "dim": req.dim,
        "target_labels": req.target_labels,
        "dtype": result.dtype,
        "shape": list(result.shape),
        "input": result.input,
        "target": result.target,
        "diagnostics": result.diagnostics,
        "kldiv_version": __version__,
    }
    notes = list(result.diagnostics)
    table: Mapping[str, Column]
    plain: list[str] | Callable[[], list[str]]
    if result.per_row is not None:
        doc["per_row"] = result.per_row
    if result.top:
        doc["top"] = [{"row": r, "value": v} for r, v in result.top]
        picked = [r for r, _ in result.top]
        # In the per-row values' own dtype: the same digits as --per-row prints.
        values = (
            result.per_row[picked]
            if result.per_row is not None
            else np.array([v for _, v in result.top])
        )
        table = {"row": picked, "kl": values}
        # The loss first, as without --top, then one "row,value" line per top row.
        plain = [format_number(loss)] + [f"{r},{format_number(v)}" for r, v in zip(picked, values)]
        array = values
        title = f"Top {len(result.top)} rows by KL(target || input)"
        notes.insert(0, f"loss ({req.reduction}): {format_number(loss)}")
    elif result.per_row is not None:
        rows = result.per_row
        table = {"row": np.arange(rows.size), "kl": rows}
        plain = partial(_array_lines, rows)
        array = rows
        title = "KL(target || input) per row"
    elif loss is not None and np.ndim(loss):
        values = np.asarray(loss)
        flat = as_rows(values)
        table = {f"c{j}": flat[:, j] for j in range(flat.shape[1])}
        plain = partial(_array_lines, values)
        array = values
        title = f"Pointwise KL loss, shape {values.shape}"
    else:
        table = {
            "loss": [loss],
            "reduction": [req.reduction],
            "log_target": [req.log_target],
            "input": [result.input["path"]],
            "target": [result.target["path"]],
        }
        plain = [format_number(loss)]
        array = np.asarray(loss)
        title = "KL divergence loss (torch.nn.KLDivLoss)"
    return Report(title=title, document=doc, table=table, plain=plain, array=array, notes=notes)


#: How inspect words each column role.
_ROLE_WORDS = {
    "class": "used, a class",
    "distribution": "used, one distribution per row",
    "key": "left out, a row key",
    "metadata": "left out, metadata",
    "unused": "left out",
}


def _column_words(c: dict[str, Any]) -> str:
    """One column of ``inspect`` in words: ``type, N missing; compute: ...; drift: ...``."""
    role = str(_ROLE_WORDS.get(c["role"], c["role"]))
    role += f" ({c['reason']})" if c["reason"] else ""
    if "type" not in c:
        return role
    drift = str(c["drift_role"]) + (f" ({c['drift_reason']})" if c["drift_reason"] else "")
    return f"{c['type']}, {c['missing']} missing; compute: {role}; drift: {drift}"


def inspect_report(info: dict[str, Any]) -> Report:
    rows = [(k, v) for k, v in info.items() if not isinstance(v, (dict, list))]
    rows += [
        (k, ", ".join(map(str, v)))
        for k, v in info.items()
        if isinstance(v, list) and k not in ("suggestions", "column_roles")
    ]
    # One line per column: what compute/compare make of it and why; of a table also its
    # type, missing cells and drift's role (the classes of an array: only under "columns").
    rows += [
        (f"column {c['name']}", _column_words(c))
        for c in info.get("column_roles", [])
        if c["role"] != "class" or "type" in c
    ]
    table = {"property": [k for k, _ in rows], "value": [v for _, v in rows]}
    plain = [f"{k}: {format_number(v) if not isinstance(v, str) else v}" for k, v in rows]
    plain += [f"suggestion: {s}" for s in info.get("suggestions", [])]
    return Report(
        title=f"kldiv inspect {info['path']}",
        document=info,
        table=table,
        plain=plain,
        notes=[f"suggestion: {s}" for s in info.get("suggestions", [])],
    )
