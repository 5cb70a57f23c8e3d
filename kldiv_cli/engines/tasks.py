"""The task layout: which pieces of the data each task sums, and what it sends back.

Pure functions, no scheduler: :func:`describe` turns an opened side into a picklable
:class:`Side`, :func:`layout` names how the work is cut (from the local plan, so
that the partial sums are exactly those of the local engine), :func:`units` and
:func:`split` cut it into :class:`Task` s, and :func:`run_task` gives one task's
:class:`Partial` — float64 partial sums, an element count and the diagnostics.

The layouts, by the local plan they reproduce:

``GRID`` (``ROW_BLOCKS``)
    The row-major flattened data cut at every :data:`~kldiv_cli.core.engine.CHUNK`
    elements (the engine's ``Accumulator`` cuts a stream at the same positions).
    A task is a range of chunks ``[start, stop)``; it reads the whole rows that cover
    them (``.npy``: one ranged read at the header's data offset; Parquet: the row
    groups that hold them) and sums exactly those chunks. A side without ranged reads
    (CSV, ``.npz``, Arrow, a Fortran-ordered ``.npy``), a transform across rows, or
    broadcast operands make the whole grid one task.
``WHOLE`` (``WHOLE``)
    Inputs the local engine reads whole: one task, the local whole-data path; or the
    GRID when that gives the same partials (:func:`spreadable`: a large 3-D ``.npy``).
``GROUPS`` (``ROW_GROUPS``)
    Two Parquet inputs with the same row groups: a task is a range of row groups
    (counted across the files in sorted order); each column of a group gives the
    partial sums of its own chunks.
``COLUMNS`` (``COLUMNS``)
    Two plain tables read whole, summed column by column: one task.

``engine.combine`` of the partials of all tasks is exact and order-independent, so
any split of the units into tasks and any execution order give the local bits.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np

from ..core import broadcast_shape
from ..core.engine import CHUNK, column_partials, partial_sums
from ..errors import InputError, KldivError, OutputError, UsageError
from ..io import formats, fs
from ..io.npy import row_layout
from ..io.sources import ReadOptions, Source, column_array, open_source
from ..jobs.compute_plan import ComputeRequest, block_rows, convert, logit_rows
from ..jobs.diagnostics import Diagnostics

GRID = "grid"
WHOLE = "whole"
GROUPS = "groups"
COLUMNS = "columns"
#: Local plan (``jobs.compute_plan.Plan`` value) -> layout.
LAYOUTS = {"whole": WHOLE, "row-blocks": GRID, "row-groups": GROUPS, "columns": COLUMNS}


@dataclass(frozen=True)
class Side:
    """Everything a worker needs to read one operand (small and picklable).

    ``files`` and ``groups`` describe Parquet inputs: the files in sorted order and
    the rows of each row group of each file. ``npy`` is ``(data offset, stored dtype)``
    of a row-major ``.npy`` file, which tasks read by byte ranges.
    """

    path: str
    label: str
    fmt: str
    options: ReadOptions
    shape: tuple[int, ...]
    dtype: str
    columns: tuple[str, ...] | None = None
    files: tuple[str, ...] = ()
    groups: tuple[tuple[int, ...], ...] = ()
    npy: tuple[int, str] | None = None
    storage: tuple[tuple[str, str], ...] = ()

    @property
    def storage_options(self) -> dict[str, str]:
        return dict(self.storage)

    @property
    def ranged(self) -> bool:
        """Whether any block of rows can be read without reading the rest."""
        return self.npy is not None or bool(self.groups)


@dataclass(frozen=True)
class Job:
    """One compute request laid out: what every task of it shares."""

    request: ComputeRequest
    x: Side
    t: Side
    layout: str
    #: torch's result dtype, from the sources (``jobs.compute_plan.result_dtype_for``): the
    #: engine sums in it, whatever dtype the transforms computed in.
    dtype: str
    chunk: int = CHUNK
    #: Count the causes of NaN and inf too (the second pass, after a non-finite loss).
    explain: bool = False
    #: Distillation's KL on logits (``jobs.compute_plan.fused_logits``): the partials are
    #: the float64 KL of each row, as the local engine's.
    fused: bool = False


@dataclass(frozen=True)
class Task:
    """Units ``[start, stop)`` of a job: chunks (GRID), row groups (GROUPS), or the
    whole table (COLUMNS, one unit)."""

    start: int
    stop: int


@dataclass
class Partial:
    """What a task sends back: its float64 partial sums, the number of loss elements
    they cover, and its diagnostics (merged by :func:`merge_diagnostics`)."""

    partials: list[float]
    count: int
    diagnostics: Diagnostics


@dataclass(frozen=True)
class Failure:
    """A kldiv error raised in a task, sent back as data: the exceptions take two
    arguments and do not survive pickling, and an error in the data must not be
    retried as if a worker had died."""

    kind: str
    text: str
    source: str | None = None

    def error(self) -> KldivError:
        if self.kind == "input" and self.source is not None:
            return InputError(self.source, self.text)
        return {"usage": UsageError, "output": OutputError}.get(self.kind, KldivError)(self.text)


# ---------------------------------------------------------------- describing sides


def describe(source: Source, path: str, options: ReadOptions, storage: Mapping[str, str]) -> Side:
    """The :class:`Side` of an opened source: its header facts and, for ``.npy`` and
    Parquet, what ranged reads need (read from the headers and footers only)."""
    _check_rereadable(path)
    side = Side(
        path=path,
        label=source.label,
        fmt=source.fmt,
        options=options,
        shape=tuple(source.shape),
        dtype=str(source.dtype),
        columns=tuple(source.columns) if source.columns is not None else None,
        storage=tuple(sorted(storage.items())),
    )
    ranged = formats.get(source.fmt).ranged
    if ranged == "rows":
        return replace(side, npy=row_layout(path, storage))
    if ranged == "row_groups" and source.columnar:
        files = parquet_files(path, storage)
        groups = tuple(row_groups(f, storage) for f in files)
        return replace(side, files=tuple(files), groups=groups)
    return side


def _check_rereadable(path: str) -> None:
    """Tasks read their pieces again, elsewhere: stdin, FIFOs, devices and ``/dev/fd/N``
    (read once, into the client's memory) cannot be."""
    import os
    import stat

    if path == "-":
        raise UsageError("--engine dask reads files or object-store URLs, not stdin")
    if fs.is_remote(path) or not os.path.exists(path) or os.path.isdir(path):
        return  # an object, or a dataset (a folder or a glob pattern)
    if not stat.S_ISREG(os.stat(path).st_mode) or path.startswith(("/dev/fd/", "/proc/")):
        raise UsageError(
            f"--engine dask reads files or object-store URLs; {path} is a stream "
            "(save it to a file first)"
        )


def parquet_files(path: str, storage: Mapping[str, str]) -> list[str]:
    """The files of a Parquet input in sorted order (one, unless it is a dataset)."""
    from ..io.sources import dataset_files

    found = fs.list_parquet(path, storage) if fs.is_remote(path) else dataset_files(path)
    return found if found is not None else [path]


def row_groups(path: str, storage: Mapping[str, str]) -> tuple[int, ...]:
    """The rows of each row group of one Parquet file (its footer only)."""
    import pyarrow.parquet as pq

    with fs.open_input(path, storage) as f:
        meta = pq.ParquetFile(f).metadata
        return tuple(meta.row_group(g).num_rows for g in range(meta.num_row_groups))


# ---------------------------------------------------------------- the layout


def layout(plan_value: str) -> str:
    """The task layout that reproduces the local plan named ``plan_value``."""
    return LAYOUTS[plan_value]


def spreadable(request: ComputeRequest, x: Side, t: Side) -> bool:
    """Whether the local WHOLE plan's partials are also the GRID's, so the work can be
    spread: untransformed, same-shape, ranged sides of at least 2 dimensions (the local
    path then sums blocks of rows through the Accumulator, and its diagnostics look at
    rows, as the grid's tasks do)."""
    untransformed = request.input_transform == "none" and request.target_transform == "none"
    return (
        untransformed
        and not request.target_labels
        and x.ranged
        and t.ranged
        and len(x.shape) >= 2
        and x.shape == t.shape
    )


def _width(shape: tuple[int, ...]) -> int:
    return math.prod(shape[1:]) if len(shape) > 1 else 1


def loss_shape(job: Job) -> tuple[int, ...]:
    """The shape of the loss: the input's (one-hot labels and same-shape sides), or the
    broadcast shape."""
    if job.request.target_labels:
        return job.x.shape
    return tuple(broadcast_shape(job.x.shape, job.t.shape))


def _grid_in_one(job: Job) -> bool:
    """Whether the grid must be summed by one task: the WHOLE layout, a side without
    ranged reads, broadcast operands, 0-d data, or a transform along the rows' axis."""
    request, x, t = job.request, job.x, job.t
    if job.layout == WHOLE or not (x.ranged and t.ranged) or len(x.shape) == 0:
        return True
    if not request.target_labels and x.shape != t.shape:
        return True
    transformed = request.input_transform != "none" or request.target_transform != "none"
    return transformed and request.dim in (0, -len(x.shape))


def units(job: Job) -> int:
    """How many units the job's work has: the unit count :func:`split` cuts."""
    if job.layout == GROUPS:
        return sum(len(g) for g in job.x.groups)
    if job.layout == COLUMNS or _grid_in_one(job):
        return 1
    return max(1, -(-math.prod(loss_shape(job)) // job.chunk))


def split(job: Job, per_task: int) -> list[Task]:
    """The units cut into consecutive tasks of ``per_task`` units (the last shorter)."""
    n = units(job)
    per_task = max(1, per_task)
    return [Task(i, min(i + per_task, n)) for i in range(0, n, per_task)]


# ---------------------------------------------------------------- running a task


def run_task(job: Job, task: Task) -> Partial | Failure:
    """One task's :class:`Partial`, or the :class:`Failure` that stopped it."""
    try:
        if job.layout == GROUPS:
            return _run_groups(job, task)
        if job.layout == COLUMNS:
            return _run_columns(job)
        return _run_grid(job, task)
    except KldivError as exc:
        kind = (
            "input"
            if isinstance(exc, InputError)
            else "usage"
            if isinstance(exc, UsageError)
            else "output"
            if isinstance(exc, OutputError)
            else "other"
        )
        source = getattr(exc, "source", None)
        text = str(exc)[len(source) + 2 :] if source is not None else str(exc)
        return Failure(kind, text, source)


def _diagnostics(job: Job) -> Diagnostics:
    request = job.request
    return Diagnostics(
        request.log_target,
        input_transformed=request.input_transform != "none",
        target_transformed=request.target_transform != "none" or request.target_labels,
    )


def _run_grid(job: Job, task: Task) -> Partial:
    """The chunks ``[start, stop)`` of the row-major grid, from the rows that hold them.

    Rows are converted (labels, transforms) whole, then flattened, and exactly the
    task's elements are summed; the diagnostics look at the rows that *start* in the
    task, so each row is seen by one task.
    """
    request, x_side = job.request, job.x
    diagnostics = _diagnostics(job)
    if _grid_in_one(job):
        x, t = read_all(job.x), read_all(job.t)
        if job.fused:
            return _fused(job, x, t, diagnostics, math.prod(x.shape))
        x, t = convert(request, x, t, job.t.label)
        return _whole(job, x, t, diagnostics)
    n = math.prod(loss_shape(job))
    width = _width(x_side.shape)
    e0, e1 = task.start * job.chunk, min(task.stop * job.chunk, n)
    r0, r1 = e0 // width, -(-e1 // width)
    x, t = read_rows(job.x, r0, r1), read_rows(job.t, r0, r1)
    if job.fused:
        # The rows that start in the task: each row is one task's.
        own = slice(-(-e0 // width) - r0, -(-e1 // width) - r0)
        return _fused(job, x[own], t[own], diagnostics, e1 - e0)
    x, t = convert(request, x, t, job.t.label, r0)
    dtype = np.dtype(job.dtype)
    lo = e0 - r0 * width
    xf = np.ascontiguousarray(x).reshape(-1)[lo : lo + e1 - e0]
    tf = np.ascontiguousarray(t).reshape(-1)[lo : lo + e1 - e0]
    partials = partial_sums(xf, tf, request.log_target, dtype, threads=1, chunk=job.chunk)
    own = slice(-(-e0 // width) - r0, -(-e1 // width) - r0)
    if x[own].size:
        _check(job, diagnostics, x[own], t[own], r0 + own.start)
        if job.explain:
            diagnostics.explain(x[own], t[own])
    return Partial(partials, e1 - e0, diagnostics)


def _fused(job: Job, x: np.ndarray, t: np.ndarray, diagnostics: Diagnostics, count: int) -> Partial:
    """A fused job's rows of raw logits: the float64 KL of each row are the partials, as
    in the local engine (the count is the task's elements). The diagnostics look at the
    rows transformed, only to explain a loss that is not finite."""
    partials = logit_rows(job.request, x, t).tolist() if x.size else []
    if job.explain and x.size:
        diagnostics.explain(*convert(job.request, x, t, job.t.label))
    return Partial(partials, count, diagnostics)


def _check(job: Job, diagnostics: Diagnostics, x: np.ndarray, t: np.ndarray, first: int) -> None:
    """The cheap diagnostics of rows ``first...`` as the local engine gathers them: with
    ``log_target`` it sums rows (an exp pass) in its first block of rows only."""
    if not job.request.log_target:
        diagnostics.update(x, t)
        return
    head = max(block_rows(job.request.chunk_rows, _width(job.x.shape)) - first, 0)
    if head:
        diagnostics.update(x[:head], t[:head])
    if head < len(x):
        diagnostics.update_values(x[head:], t[head:])


def _whole(job: Job, x: np.ndarray, t: np.ndarray, diagnostics: Diagnostics) -> Partial:
    """Everything in one task, through the engine's Accumulator, as the local path."""
    from ..core.engine import Accumulator

    try:
        shape = broadcast_shape(x.shape, t.shape)
    except ValueError:
        raise InputError(
            f"{job.x.label} and {job.t.label}",
            f"shapes do not match: input {x.shape}, target {t.shape}",
        ) from None
    dtype = np.dtype(job.dtype)
    accumulator = Accumulator(job.request.log_target, 1, job.chunk)
    if x.ndim >= 2 and x.shape == t.shape:
        # The local path's blocks of rows (its diagnostics look at them one by one).
        rows = block_rows(job.request.chunk_rows, _width(x.shape))
        for i in range(0, len(x), rows):
            accumulator.add(x[i : i + rows], t[i : i + rows], dtype)
            diagnostics.update(x[i : i + rows], t[i : i + rows])
    else:
        accumulator.add(x, t, dtype)
        diagnostics.update(x, t)
    if job.explain:
        diagnostics.explain(x, t)
    accumulator.total()  # closes the last chunk
    return Partial(list(accumulator.partials), int(np.prod(shape)), diagnostics)


def _run_groups(job: Job, task: Task) -> Partial:
    """Row groups ``[start, stop)``: per column, the partial sums of its chunks (as the
    local row-group path), the value checks per column, the target's row sums per group."""
    diagnostics = _diagnostics(job)
    partials: list[float] = []
    count = 0
    for g in range(task.start, task.stop):
        count += _sum_columns(
            job, _group_columns(job.x, g), _group_columns(job.t, g), diagnostics, partials
        )
    return Partial(partials, count, diagnostics)


def _run_columns(job: Job) -> Partial:
    """The whole tables, column by column (as the local column path)."""
    diagnostics = _diagnostics(job)
    partials: list[float] = []
    count = _sum_columns(job, read_columns(job.x), read_columns(job.t), diagnostics, partials)
    return Partial(partials, count, diagnostics)


def _sum_columns(
    job: Job,
    xs: list[np.ndarray],
    ts: list[np.ndarray],
    diagnostics: Diagnostics,
    partials: list[float],
) -> int:
    """One group of matching columns (whole rows): their chunks' partial sums appended to
    ``partials``, the value checks per column, the target's row sums; the element count."""
    request = job.request
    partials += column_partials(list(zip(xs, ts)), request.log_target, np.dtype(job.dtype), 1)
    for xc, tc in zip(xs, ts):
        diagnostics.update_values(xc, tc)
        if job.explain:
            diagnostics.explain(xc, tc)
    if not request.log_target and ts:
        sums = np.zeros(len(ts[0]), job.t.dtype)
        for tc in ts:
            np.add(sums, tc, out=sums)
        diagnostics.update_rows(sums)
    return sum(c.size for c in xs)


# ---------------------------------------------------------------- reading


def _local_source(side: Side) -> Source:
    if fs.is_remote(side.path):
        raise UsageError(
            f"{side.label}: {side.fmt} files in object storage are read whole by the "
            f"local engine; --engine dask reads {formats.extensions_text(ranged=True)} there"
        )
    return open_source(side.path, side.options)


def read_all(side: Side) -> np.ndarray:
    """A whole side, as the local reader gives it."""
    if side.npy is not None:
        return read_rows(side, 0, side.shape[0]) if side.shape else _npy_scalar(side)
    if side.groups:
        # Column-major, as the local table reader gives a whole table: a transform's row
        # sums then add in the same order (NumPy sums the rows of a column-major array
        # column by column, those of a row-major one pairwise).
        return read_rows(side, 0, side.shape[0], order="F")
    return _local_source(side).read()


def _npy_scalar(side: Side) -> np.ndarray:
    assert side.npy is not None
    offset, stored = side.npy
    with fs.open_input(side.path, side.storage_options) as f:
        f.seek(offset)
        raw = f.read(np.dtype(stored).itemsize)
    return np.frombuffer(raw, dtype=stored).reshape(()).astype(side.dtype)


def read_rows(side: Side, r0: int, r1: int, order: Literal["C", "F"] = "C") -> np.ndarray:
    """Rows ``[r0, r1)`` of a side with ranged reads, in its compute dtype; a table's in
    ``order`` (see :func:`read_all`)."""
    r1 = min(r1, side.shape[0])
    if side.npy is not None:
        offset, stored = side.npy
        dt = np.dtype(stored)
        row_bytes = _width(side.shape) * dt.itemsize
        with fs.open_input(side.path, side.storage_options) as f:
            f.seek(offset + r0 * row_bytes)
            raw = f.read((r1 - r0) * row_bytes)
        if len(raw) != (r1 - r0) * row_bytes:
            raise InputError(side.label, "is shorter than its header says (changed while read?)")
        block = np.frombuffer(raw, dtype=dt).reshape((r1 - r0, *side.shape[1:]))
        return block.astype(side.dtype, copy=False)  # a view when stored as computed
    assert side.columns is not None
    out = np.empty((max(r1 - r0, 0), len(side.columns)), dtype=side.dtype, order=order)
    first = 0
    for f_index, sizes in enumerate(side.groups):
        for g, n in enumerate(sizes):
            if first < r1 and first + n > r0:
                a, z = max(r0 - first, 0), min(r1 - first, n)
                for j, col in enumerate(_read_group(side, f_index, g)):
                    out[first + a - r0 : first + z - r0, j] = col[a:z]
            first += n
    return out


def _group_columns(side: Side, g: int) -> list[np.ndarray]:
    """The columns of the ``g``-th row group counted across the side's files."""
    for f_index, sizes in enumerate(side.groups):
        if g < len(sizes):
            return _read_group(side, f_index, g)
        g -= len(sizes)
    raise InputError(side.label, "has fewer row groups than the other side")


def _read_group(side: Side, f_index: int, g: int) -> list[np.ndarray]:
    """One row group of one file: the selected columns, checked, in the compute dtype."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    assert side.columns is not None
    path = side.files[f_index]
    try:
        with fs.open_input(path, side.storage_options) as f:
            table = pq.ParquetFile(f).read_row_group(g, columns=list(side.columns))
    except (pa.ArrowException, OSError) as exc:
        raise InputError(
            side.label, f"is not a readable Parquet file ({type(exc).__name__})"
        ) from None
    first_row = sum(side.groups[f_index][:g])
    out = []
    for name, col in zip(side.columns, table.columns):
        if col.null_count and side.options.missing == "error":
            raise InputError(
                side.label,
                f"column {name!r}: a row of row group {g} of {path} (from row {first_row}) is "
                "missing a value (use --missing nan to read missing values as NaN)",
            )
        out.append(column_array(col, np.dtype(side.dtype)))
    return out


def read_columns(side: Side) -> list[np.ndarray]:
    """All columns of a table side, whole, in the compute dtype."""
    if side.groups:
        per_group = [
            _read_group(side, f, g)
            for f, sizes in enumerate(side.groups)
            for g in range(len(sizes))
        ]
        return [np.concatenate(parts) for parts in zip(*per_group)]
    columns = _local_source(side).read_columns() or []
    return [column_array(c, np.dtype(side.dtype)) for c in columns]


# ---------------------------------------------------------------- merging


def merge_diagnostics(parts: list[Diagnostics], into: Diagnostics) -> Diagnostics:
    """Add the tasks' diagnostics into ``into``: counts and rows add, ranges widen."""
    for d in parts:
        for key, n in d.counts.items():
            into.counts[key] = into.counts.get(key, 0) + n
        into.rows += d.rows
        into.row_sum_min = min(into.row_sum_min, d.row_sum_min)
        into.row_sum_max = max(into.row_sum_max, d.row_sum_max)
    return into


__all__ = [
    "COLUMNS",
    "GRID",
    "WHOLE",
    "GROUPS",
    "Failure",
    "Job",
    "Partial",
    "Side",
    "Task",
    "describe",
    "layout",
    "loss_shape",
    "merge_diagnostics",
    "read_all",
    "read_rows",
    "row_groups",
    "parquet_files",
    "run_task",
    "split",
    "spreadable",
    "units",
]
