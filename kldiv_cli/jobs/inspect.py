"""``kldiv inspect``: what a file holds, and which flags it needs."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from ..io.sources import ReadOptions, Source, open_source
from .checks import Checked

__all__ = ["InspectRequest", "classify", "describe_columns", "inspect", "inspect_source"]

TOL = 1e-3
#: The column roles (:class:`kldiv_cli.io.base.ColumnRole`) that are the distribution.
USED = ("class", "distribution")
#: Elements per block read: a few MB, with about ten block-sized temporaries.
BLOCK_ELEMENTS = 1 << 19
#: What ``inspect -o`` writes (by the output's extension).
OUTPUT_KINDS = ("json", "csv", "markdown")
#: Rows per block when every column of a table is counted (any type, so by rows).
TABLE_ROWS = 1 << 16

#: ``progress(done, total)``: elements read so far, and in all (-1 while unknown).
Progress = Callable[[int, int], None]


class _Scan:
    """Everything :func:`inspect_source` and :func:`classify` report, gathered block of
    rows by block: counts, the finite range, and per row (the last axis) the sum and
    whether its log-sum-exp is 0. Only the row sums are kept (the per-row results);
    the rest are running counts, so the numbers are those of the whole array."""

    def __init__(self) -> None:
        self.elements = self.nan = self.posinf = self.neginf = 0
        self.negative = self.zeros = self.finite = 0
        self.lo: float | None = None
        self.hi: float | None = None
        self.integral = True
        self.sums: list[np.ndarray] = []
        #: Every row sums to 1 / log-sum-exps to 0, within TOL (rows with a finite one).
        self.sum_one = True
        self.lse_zero = True

    def values(self, a: np.ndarray, labels: bool = True) -> None:
        """The element counts and the finite range of ``a`` (any shape); ``labels``:
        whether the verdict may still look at integrality (one column or one row)."""
        with np.errstate(all="ignore"):
            self.elements += int(a.size)
            fin = np.isfinite(a)
            count = int(np.count_nonzero(fin))
            finite = a
            if count < a.size:
                self.nan += int(np.count_nonzero(np.isnan(a)))
                self.posinf += int(np.count_nonzero(np.isposinf(a)))
                self.neginf += int(np.count_nonzero(np.isneginf(a)))
                finite = a[fin]
            del fin
            self.negative += int(np.count_nonzero(a < 0))
            self.zeros += int(np.count_nonzero(a == 0))
            if count:
                self.finite += count
                lo, hi = float(finite.min()), float(finite.max())
                self.lo = lo if self.lo is None else min(self.lo, lo)
                self.hi = hi if self.hi is None else max(self.hi, hi)
                if labels and self.integral and self.lo >= 0:
                    self.integral = bool(np.all(finite == np.round(finite)))

    def rows(self, rows: np.ndarray, labels: bool) -> None:
        """Whole rows (2-D, the last axis across): their values, sums and log-sum-exps;
        ``labels``: the data are one column or one row (they may be class indices).

        The tests of the verdict that the values so far rule out are skipped: row sums
        of 1 once a value lies outside [0, 1], log-sum-exps once one is above 0."""
        self.values(rows, labels)
        if not rows.size:
            return
        with np.errstate(all="ignore"):
            sums = rows.sum(axis=-1, dtype=np.float64)
            self.sums.append(sums)
            if self.sum_one and _within(self.lo, self.hi, 0.0, 1.0):
                self.sum_one = bool(np.all(np.abs(sums - 1) <= TOL))
            if self.lse_zero and _within(self.lo, self.hi, -np.inf, 0.0):
                top = rows.max(axis=-1)
                lse = np.log(np.exp(rows - top[:, None]).sum(axis=-1)) + top
                self.lse_zero = bool(np.all(np.abs(lse[np.isfinite(lse)]) <= TOL))

    def verdict(self, ndim: int, width: int) -> tuple[str, list[str]]:
        """What the numbers look like, with the flags that fit (as input / as target)."""
        if self.elements == 0 or self.finite == 0:
            return "empty" if self.elements == 0 else "no finite values", []
        assert self.lo is not None and self.hi is not None
        lo, hi = self.lo, self.hi
        if self.integral and lo >= 0 and (ndim == 1 or width == 1) and hi > 1:
            return "integer labels (class indices)", [
                "as TARGET: --target-labels (one-hot rows as wide as INPUT)"
            ]
        if lo >= 0 and hi <= 1 and self.sum_one:
            return "probabilities (rows sum to 1)", [
                "as TARGET: no flag needed",
                "as INPUT: --input-transform log",
            ]
        if hi <= 0 and self.lse_zero:
            return "log-probabilities (rows log-sum-exp to 0)", [
                "as INPUT: no flag needed",
                "as TARGET: --log-target (or --target-transform exp)",
            ]
        if lo >= 0:
            return "non-negative values whose rows do not sum to 1", [
                "as TARGET: normalise the rows first, or --target-transform softmax if "
                "these are scores",
            ]
        return "logits (unnormalised scores)", [
            "as INPUT: --input-transform log-softmax",
            "as TARGET: --target-transform softmax",
        ]


def _within(lo: float | None, hi: float | None, low: float, high: float) -> bool:
    """Whether the finite values seen so far (none: ``lo`` None) lie in [low, high]."""
    return lo is None or (hi is not None and low <= lo and hi <= high)


def classify(a: np.ndarray) -> tuple[str, list[str]]:
    """Name what the numbers look like, with the flags that fit (as input / as target)."""
    scan = _Scan()
    labels = a.ndim <= 1 or a.shape[-1] == 1
    scan.rows(a.reshape(-1, a.shape[-1]) if a.ndim > 1 else a.reshape(1, -1), labels)
    return scan.verdict(a.ndim, a.shape[-1] if a.ndim else 1)


@dataclass(frozen=True)
class InspectRequest(Checked):
    """The file to describe (``-``: stdin) and how to read it."""

    path: str
    options: ReadOptions = ReadOptions()
    #: The report's file (-o; None: stdout), of a kind of :data:`OUTPUT_KINDS`.
    output: str | None = None

    @property
    def inputs(self) -> tuple[str]:
        """The path the job reads."""
        return (self.path,)

    def check(self) -> None:
        """The output's kind, and that it is not the input: before anything is read."""
        from ..io.writers import guard

        guard([self.output], [self.path], OUTPUT_KINDS)


def inspect(
    request: InspectRequest, stdin: bytes | None = None, progress: Progress | None = None
) -> dict[str, Any]:
    """Open ``request.path`` and describe it (:func:`inspect_source`); a large CSV is
    parsed block by block (memory before speed), and a text column with numbers among
    its words is described as text, not refused."""
    request.validate()
    options = replace(request.options, stream=True, describe=True)
    return inspect_source(open_source(request.path, options, stdin), progress)


def inspect_source(source: Source, progress: Progress | None = None) -> dict[str, Any]:
    """Shape, dtype, NaN/inf counts, range, row sums, and what the numbers look like
    (:func:`classify`) with the flags that fit.

    The file is read block of rows by block (``progress(done, total)`` after each):
    memory is a block and one float per row (the row sums), and every number is the
    one the whole array gives, bit for bit. A 1-D array is one row: its sum is cut
    where NumPy's summation cuts it (:class:`~kldiv_cli.core.running.BlockSum`), and
    its log-sum-exp, when the verdict needs it, takes a second pass.
    """
    shape = tuple(source.shape)
    scan = _Scan()
    total = math.prod(shape) if -1 not in shape else -1
    done = 0
    if -1 in shape[1:]:  # a list column of rows of varying width: read whole (an error)
        whole = source.read()
        shape = whole.shape
        scan.rows(whole.reshape(-1, shape[-1]), shape[-1] == 1)
    elif len(shape) <= 1:
        _scan_one_row(source, scan, progress)
    else:
        rows = max(1, BLOCK_ELEMENTS // max(shape[-1], 1))
        count = 0
        for block in source.iter_rows(rows):
            scan.rows(block, shape[-1] == 1)
            count += len(block)
            done += block.size
            if progress is not None:
                progress(done, total)
            del block
        if shape[0] == -1:  # a streamed CSV: its rows are known now
            shape = (count, *shape[1:])
    info: dict[str, Any] = {
        "path": source.label,
        "format": source.fmt,
        "shape": list(shape),
        "dtype": str(source.dtype),
    }
    if source.columns is not None:
        info["columns"] = source.columns
    if source.roles is not None:
        # Which columns compute and compare use, and why the others are left out; with
        # each column's type, missing cells and drift's role where the file is a table.
        info["column_roles"] = [
            {"name": r.name, "role": r.role, "used": r.role in USED, "reason": r.reason}
            for r in source.roles
        ]
        table = describe_columns(source)
        if table is not None:
            details, rows, sample = table
            for entry in info["column_roles"]:
                entry.update(details.get(entry["name"], {}))
            info["missing"] = sum(d["missing"] for d in details.values())
            info["table_rows"] = rows
            # drift decides roles on the first block only: say so when that is not all.
            info["drift_roles_from"] = (
                f"the first {sample} of {rows} rows" if sample < rows else "all rows"
            )
    info["elements"] = scan.elements
    info["nan"], info["posinf"], info["neginf"] = scan.nan, scan.posinf, scan.neginf
    info["min"], info["max"] = scan.lo, scan.hi
    info["negative"], info["zeros"] = scan.negative, scan.zeros
    if len(shape) >= 1 and scan.elements:
        with np.errstate(all="ignore"):
            sums = np.concatenate(scan.sums)
            info["rows"] = int(sums.shape[0])
            known = not np.isnan(sums).all()
            info["row_sum_min"] = float(np.nanmin(sums)) if known else None
            info["row_sum_mean"] = float(np.nanmean(sums)) if known else None
            info["row_sum_max"] = float(np.nanmax(sums)) if known else None
    kind, suggestions = scan.verdict(len(shape), shape[-1] if shape else 1)
    info["looks_like"] = kind
    info["suggestions"] = suggestions
    return info


def _scan_one_row(source: Source, scan: _Scan, progress: Progress | None) -> None:
    """A 0-d or 1-D array (one row), block by block: the values, the row's sum with
    NumPy's bits, and, only when the verdict would look at it, its log-sum-exp."""
    from ..core.running import BlockSum

    n = math.prod(source.shape)
    row_sum = BlockSum(n, source.dtype, np.dtype(np.float64))
    done = 0
    for block in source.iter_chunks(BLOCK_ELEMENTS):
        scan.values(block)
        row_sum.add(block)
        done += block.size
        if progress is not None:
            progress(done, n)
    if not scan.elements:
        return
    total = row_sum.total()
    scan.sums.append(np.array([total]))
    scan.sum_one = abs(total - 1) <= TOL
    if scan.hi is not None and scan.hi <= 0:
        # As the whole row: log(sum(exp(a - max))) + max, the sum in the data's dtype.
        top = source.dtype.type(np.nan if scan.nan else np.inf if scan.posinf else scan.hi)
        exps = BlockSum(n, source.dtype, source.dtype)
        with np.errstate(all="ignore"):
            for block in source.iter_chunks(BLOCK_ELEMENTS):
                exps.add(np.exp(block.reshape(-1) - top))
            lse = np.log(source.dtype.type(exps.total())) + top
        scan.lse_zero = not np.isfinite(lse) or abs(float(lse)) <= TOL


def describe_columns(source: Source) -> tuple[dict[str, dict[str, Any]], int, int] | None:
    """Every column of a table: its Arrow type, its missing cells, and the role ``drift``
    gives it with the reason; with the table's rows and the rows the roles were decided
    on (the first block: drift's rules look at values, and memory stays a block).

    A missing cell is a null (an empty CSV cell) or an empty string; NaN is a value here
    (counted as ``nan`` over the numeric columns). None for arrays.
    """
    blocks = source.table_blocks(TABLE_ROWS)
    if blocks is None:
        return None
    import pyarrow as pa

    # The numeric pass's blocks back to the OS first: the peak is one pass's, not two.
    pa.default_memory_pool().release_unused()
    first = None
    rows = 0
    missing: dict[str, int] = {}
    for block in blocks:
        if first is None:
            first = block
        rows += block.num_rows
        for name, column in zip(block.column_names, block.columns):
            missing[name] = missing.get(name, 0) + _missing(column)
        del block
    if first is None:
        return None
    drift = drift_roles(source.label, first)
    details = {
        field.name: {
            "type": str(field.type),
            "missing": missing[field.name],
            "drift_role": drift[field.name][0],
            "drift_reason": drift[field.name][1],
        }
        for field in first.schema
    }
    return details, rows, first.num_rows


def _is_text(t: Any) -> bool:
    import pyarrow as pa

    return bool(pa.types.is_string(t) or pa.types.is_large_string(t))


def _missing(column: Any) -> int:
    """Null cells, and empty strings (a CSV read keeps an empty text cell as "")."""
    import pyarrow.compute as pc

    n = int(column.null_count)
    if _is_text(column.type):
        n += int(pc.sum(pc.equal(column, "")).as_py() or 0)
    return n


def drift_roles(label: str, table: Any) -> dict[str, tuple[str, str]]:
    """The role ``drift`` gives each column of ``table`` (a pyarrow table) with its
    default rules, and why: :func:`kldiv_cli.jobs.drift_roles.build_profile` on these rows,
    empty strings read as missing as drift reads a CSV. A column drift cannot read is
    ``skipped`` with the reason."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from ..errors import InputError, UsageError
    from ..io.drift_tables import WholeTable
    from .drift_request import ColumnRules
    from .drift_roles import build_profile

    columns = [
        pc.if_else(pc.equal(c, ""), pa.scalar(None, c.type), c) if _is_text(c.type) else c
        for c in table.columns
    ]
    whole = WholeTable(label, pa.table(columns, names=table.column_names))
    rules = ColumnRules()
    roles: dict[str, tuple[str, str]] = {}
    for name in table.column_names:
        try:
            (profile,) = build_profile(whole, rules, [name])
        except (InputError, UsageError) as exc:
            roles[name] = ("skipped", str(exc))
            continue
        reason = profile.reason
        if not reason and profile.role.value == "numeric":
            reason = f"numbers, compared in {rules.bins} {rules.binning} bins"
        elif not reason and profile.role.value == "categorical":
            reason = f"{len(profile.categories) + len(profile.pooled)} distinct values"
        roles[name] = (profile.role.value, reason)
    return roles
