"""The ``compute`` job: read -> convert -> compute. No printing here (see render/writers).

:func:`compute` opens both sources, :func:`plan` names the path from their headers
(:class:`Plan`), and the plan's executor runs it (:data:`EXECUTORS`).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Any, BinaryIO

import numpy as np

from ..core import REDUCTIONS, broadcast_shape, pointwise, result_dtype
from ..core.transforms import TRANSFORMS, apply_transform
from ..errors import InputError, UsageError
from ..io.roles import choose_hint, one_class
from ..io.sources import ReadOptions, Source, column_array, open_source
from .blocks import prefetch, rebatch
from .diagnostics import Diagnostics, refuse_if_strict, strict_notes

if TYPE_CHECKING:
    from ..io.writers import BlockWriter

#: ``progress(done, total)``: input elements summed so far, and in all (-1 while unknown).
Progress = Callable[[int, int], None]
#: A block of input rows and the matching block of target rows.
BlockPair = tuple[np.ndarray, np.ndarray]
#: ``(first_column, input_columns, target_columns)``: a group of matching 1-D columns;
#: ``first_column`` 0 starts new rows.
ColumnGroup = tuple[int, list[np.ndarray], list[np.ndarray]]


#: Where the sums run: this process, or tasks on a Dask cluster (:mod:`kldiv_cli.engines.dask`).
ENGINES: tuple[str, ...] = ("local", "dask")


#: The most rows of no values (shape (N, 0)) read: each is still a row of the result.
EMPTY_ROWS = 1 << 31


@dataclass(frozen=True)
class EngineOptions:
    """Which Dask cluster ``engine="dask"`` runs on (see :class:`kldiv_cli.engines.dask.Cluster`)."""

    #: A running scheduler (``tcp://HOST:8786``); None: ``DASK_SCHEDULER_ADDRESS``, else a
    #: local cluster.
    scheduler: str | None = None
    scheduler_file: str | None = None
    #: Workers of the local cluster.
    workers: int | None = None
    #: Seconds to wait for the scheduler (``--timeout``).
    timeout: float = 10.0


@dataclass(frozen=True)
class ComputeRequest:
    input: str
    target: str
    input_options: ReadOptions = ReadOptions()
    target_options: ReadOptions = ReadOptions()
    reduction: str = "mean"
    log_target: bool = False
    input_transform: str = "none"
    target_transform: str = "none"
    dim: int = -1
    temperature: float = 1.0
    t2_scale: bool = False
    per_row: bool = False
    top: int | None = None
    target_labels: bool = False
    #: ``--fail-above``: the result's gate fails above this (or on NaN).
    fail_above: float | None = None
    #: ``--strict``: a diagnostic (suspicious data) is an error.
    strict: bool = False
    #: Where the result goes. With ``reduction="none"`` and a .npy/.csv/.parquet file, a
    #: job that streams writes straight into it (see :func:`compute`).
    output: str | None = None
    threads: int | None = None
    chunk_rows: int | None = None
    #: One of :data:`ENGINES`.
    engine: str = "local"
    engine_options: EngineOptions = EngineOptions()

    def validate(self) -> None:
        if self.engine not in ENGINES:
            raise UsageError(f"unknown engine {self.engine!r}; choose {' or '.join(ENGINES)}")
        if self.reduction not in REDUCTIONS:
            raise UsageError(
                f"unknown reduction {self.reduction!r}; choose one of {', '.join(REDUCTIONS)}"
            )
        for name in (self.input_transform, self.target_transform):
            if name not in TRANSFORMS:
                raise UsageError(
                    f"unknown transform {name!r}; choose one of {', '.join(TRANSFORMS)}"
                )
        if not (math.isfinite(self.temperature) and self.temperature > 0):
            raise UsageError(f"--temperature must be a finite number > 0, got {self.temperature}")
        if self.top is not None and self.top < 1:
            raise UsageError(f"--top must be at least 1, got {self.top}")
        if self.input == "-" and self.target == "-":
            raise UsageError("only one of INPUT and TARGET can be '-' (stdin)")
        if self.target_labels and self.log_target:
            raise UsageError("--target-labels gives probabilities (one-hot); drop --log-target")
        if self.fail_above is not None and math.isnan(self.fail_above):
            raise UsageError("--fail-above must be a number, got nan (a gate that never passes)")
        for name, value in (("--threads", self.threads), ("--chunk-rows", self.chunk_rows)):
            if value is not None and value < 1:
                raise UsageError(f"{name} must be at least 1, got {value}")
        if self.output is not None and self.output != "-":
            from ..io.writers import guard

            guard([self.output], [self.input, self.target])
        if self.engine == "dask":
            from ..engines.dask import check_request

            check_request(self)


@dataclass
class ComputeResult:
    request: ComputeRequest
    loss: np.generic | np.ndarray | None
    input: dict[str, Any]
    target: dict[str, Any]
    dtype: str
    shape: tuple[int, ...]
    per_row: np.ndarray | None = None
    top: list[tuple[int, float]] = field(default_factory=list)
    diagnostics: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    #: With ``reduction="none"`` streamed into a sink, ``loss`` is None and this is
    #: the largest value written (NaN if any was NaN).
    streamed_max: float | None = None
    #: The path the job took.
    plan: Plan | None = None
    #: The output file the job wrote itself (the streamed pointwise loss), else None.
    written: str | None = None
    #: Why the ``--fail-above`` gate failed, or None.
    failed_check: str | None = None

    @property
    def gate_value(self) -> float | None:
        """What ``--fail-above`` compares: the loss, or the largest row with ``--per-row``."""
        if self.loss is None:
            return self.streamed_max
        values = self.per_row if self.per_row is not None else np.asarray(self.loss)
        values = np.asarray(values, dtype=np.float64)
        if values.size == 0:
            return float(np.nan) if values.ndim == 0 else 0.0
        if np.isnan(values).any():
            return math.nan
        return float(values.max())


def _one_hot(
    labels: np.ndarray, lead: tuple[int, ...], width: int, label: str, first_row: int = 0
) -> np.ndarray:
    """One-hot rows of ``width`` classes for ``labels``: one column of class indices, or
    an array of INPUT's leading shape ``lead`` (a (B, T) batch beside (B, T, V) logits),
    flattened in the same row-major order as INPUT's rows. Beside a rank-3+ INPUT the
    result takes INPUT's shape."""
    one_column = labels.ndim <= 1 or labels.shape[-1] == 1
    if not (one_column or labels.shape == lead):
        raise InputError(
            label,
            "--target-labels needs one column of class indices or INPUT's leading shape "
            f"{lead}, got shape {labels.shape}",
        )
    flat = labels.reshape(-1)
    bad = ~np.isfinite(flat) | (flat != np.round(flat))
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise InputError(
            label, f"row {first_row + row}: label {flat[row]:g} is not an integer class index"
        )
    out_of_range = (flat < 0) | (flat >= width)
    if out_of_range.any():
        row = int(np.flatnonzero(out_of_range)[0])
        raise InputError(
            label,
            f"row {first_row + row}: label {int(flat[row])} is out of range for {width} classes "
            f"(0..{width - 1})",
        )
    hot = np.zeros((flat.size, width), dtype=np.float64)
    hot[np.arange(flat.size), flat.astype(np.intp)] = 1.0
    if len(lead) > 1 and flat.size == math.prod(lead):
        return hot.reshape(*lead, width)
    return hot


def open_sources(request: ComputeRequest, stdin: bytes | None) -> tuple[Source, Source]:
    """Validate ``request`` and open both sides; refuse a distribution of one class."""
    request.validate()
    sx = open_source(request.input, request.input_options, stdin)
    st = open_source(request.target, request.target_options, stdin)
    for side in (sx, st):
        if 0 in side.shape and math.prod(n for n in side.shape if n > 0) > EMPTY_ROWS:
            # Rows of no values are computed (an empty result), row block by row block:
            # an .npy header declaring 10**15 of them would loop for ever.
            raise InputError(
                side.label,
                f"holds no values in more than {EMPTY_ROWS:,} rows (shape {tuple(side.shape)})",
            )
    check_classes(request, sx, st)
    return sx, st


def check_classes(request: ComputeRequest, sx: Source, st: Source) -> None:
    """No silent degenerate answer: a (log-)softmax over an axis of one class is always
    1 (0), and a table whose column selection left one column makes a "distribution" of
    one class, whatever the reduction. Both are usage errors naming the columns and the
    option that chooses them; one column chosen by name may still be summed pointwise.
    """
    sides = (
        ("input", sx, request.input_transform, request.input_options),
        ("target", st, request.target_transform, request.target_options),
    )
    for side, src, transform, options in sides:
        if transform not in ("softmax", "log-softmax") or not src.shape:
            continue
        if -len(src.shape) <= request.dim < len(src.shape) and src.shape[request.dim] == 1:
            raise UsageError(
                f"{side}: {transform} over 1 class ({one_class(src, request.dim)}) is always "
                f"{'1' if transform == 'softmax' else '0'}; a distribution needs >= 2 classes: "
                f"{choose_hint(src, options)}"
            )
    if request.reduction == "none" and not request.per_row and request.top is None:
        return
    # Labels are one column by design: the classes are then the input's.
    classes = sides[:1] if request.target_labels else sides
    if max((src.shape[-1] for _, src, _, _ in classes if src.shape), default=0) != 1:
        return
    for side, src, _, options in classes:
        if src.roles is not None and options.columns is None and src.shape[-1] == 1:
            raise UsageError(
                f"{side}: 1 class ({one_class(src, -1)}); a distribution needs >= 2 "
                f"classes: {choose_hint(src, options)}"
            )


def convert(
    request: ComputeRequest, x: np.ndarray, t: np.ndarray, labels_source: str, first_row: int = 0
) -> BlockPair:
    """Labels to one-hot, then the requested transforms (temperature on (log-)softmax only).
    ``first_row`` numbers the rows of a streamed block in messages."""
    if request.target_labels:
        t = _one_hot(t, x.shape[:-1], x.shape[-1] if x.ndim else 1, labels_source, first_row)
    x = _transform(request.input_transform, x, request)
    t = _transform(request.target_transform, t, request)
    return x, t


def _transform(name: str, a: np.ndarray, request: ComputeRequest) -> np.ndarray:
    """A transform as torch computes it for ``-r none`` (its pointwise terms are torch's),
    and in float64 for every aggregate (nothing rounded before the KL is summed)."""
    if name == "none":
        return a
    if a.ndim and not -a.ndim <= request.dim < a.ndim:
        raise UsageError(f"--dim {request.dim} is out of range for data of shape {a.shape}")
    exact = np.float64 if request.reduction != "none" else None
    # Row-major first: a softmax's sums then have the same bits whatever the file's layout
    # (a Parquet table read whole is column-major; its streamed blocks are row-major).
    a = np.ascontiguousarray(a)
    return apply_transform(name, a, request.dim, request.temperature, dtype=exact)


def result_dtype_for(request: ComputeRequest, sx: Source, st: Source) -> np.dtype:
    """The dtype torch gives this job's result: transforms keep their operand's dtype
    (the float64 used for exact aggregates is not torch's), labels become float64 one-hot
    rows, a 0-d operand is weak."""
    x = np.empty((0,) * len(sx.shape), sx.dtype)
    if request.target_labels:
        t = np.empty((0, 0), np.float64)
    else:
        t = np.empty((0,) * len(st.shape), st.dtype)
    return result_dtype(x, t)


#: Elements per streamed block on each side: about 2 MB of float32, cache-friendly and bounded.
BLOCK_ELEMENTS = 1 << 19


class Plan(Enum):
    """How a compute job runs. :func:`plan` picks one from the sources' headers, before any
    data is read; each has one executor (see :data:`EXECUTORS`)."""

    #: Both sides read whole, then summed in blocks of rows (views, no copies).
    WHOLE = "whole"
    #: Blocks of rows read from both sides as they are summed (a reader thread ahead):
    #: large .npy, CSV and Parquet datasets; ``-r none`` streamed into an output file.
    ROW_BLOCKS = "row-blocks"
    #: Two Parquet files with the same row groups: row group by row group, column groups
    #: straight from Arrow's buffers, a reader thread per side.
    ROW_GROUPS = "row-groups"
    #: Two plain numeric tables read whole, summed column by column (a column per thread).
    COLUMNS = "columns"


def plan(request: ComputeRequest, sx: Source, st: Source, into_file: bool = False) -> Plan:
    """The execution path for ``request`` on these two sources.

    ``into_file``: the pointwise loss (``reduction="none"``) is to be written to a file
    that can take it block by block, so it may stream.
    """
    streams = _stream_shape(request, sx, st, into_file) is not None
    if _columns_allowed(request, sx, st):
        if sx.row_groups is not None and sx.row_groups == st.row_groups:
            return Plan.ROW_GROUPS
        if not streams and sx.columnar and st.columnar:
            return Plan.COLUMNS
    return Plan.ROW_BLOCKS if streams else Plan.WHOLE


@dataclass(frozen=True)
class _Run:
    """What every executor gets: the request, both sources and the execution options."""

    request: ComputeRequest
    sx: Source
    st: Source
    progress: Progress | None
    #: torch's result dtype (see :func:`result_dtype_for`).
    dtype: np.dtype


def compute(
    request: ComputeRequest,
    stdin: bytes | None = None,
    *,
    progress: Progress | None = None,
    note: Callable[[str], None] | None = None,
) -> ComputeResult:
    """Run a compute job: open both sources, :func:`plan` the path, execute it; with
    ``engine="dask"``, :func:`kldiv_cli.engines.dask.run_compute_dask` does (``note``
    then receives its line announcing a local cluster; ``stdin`` and ``progress`` are
    not used).

    ``progress``, if given, is called with the number of input elements done so far and
    the total (-1 while unknown). With ``request.output`` naming a .npy/.csv/.parquet
    file and ``reduction="none"``, a job that streams writes each block of the pointwise
    loss straight into that (atomic) file; the result then says so in ``written`` and its
    ``loss`` is None. Every other result is returned whole, for the caller to render.
    """
    if request.engine == "dask":
        from ..engines.dask import run_compute_dask

        options = request.engine_options
        return run_compute_dask(
            request,
            options.scheduler,
            options.scheduler_file,
            options.workers,
            timeout=options.timeout,
            note=note,
        )
    sx, st = open_sources(request, stdin)
    strict_notes(request.strict, (sx, st))
    # The output file the pointwise loss may stream into, if any.
    into = request.output if request.output is not None and _streamable_output(request) else None
    chosen = plan(request, sx, st, into is not None)
    run = _Run(request, sx, st, progress, result_dtype_for(request, sx, st))
    if chosen is Plan.ROW_BLOCKS and into is not None:
        from ..io.writers import BlockWriter, atomic_write, output_kind

        def write(f: BinaryIO) -> ComputeResult:
            sink = BlockWriter(output_kind(into), f)
            result = _run_row_blocks(run, sink)
            _check_strict(request, result)  # before the file replaces an existing one
            sink.close()
            return result

        result = atomic_write(into, write)
        result.written = into
    else:
        result = EXECUTORS[chosen](run)
    return finish(request, sx, st, chosen, result)


def finish(
    request: ComputeRequest, sx: Source, st: Source, chosen: Plan, result: ComputeResult
) -> ComputeResult:
    """What every engine does with the result of ``chosen``: record the plan, add the
    shape warnings, apply ``--strict`` and the ``--fail-above`` gate.

    Raises
    ------
    UsageError
        ``--strict`` and a diagnostic.
    """
    result.plan = chosen
    result.warnings = [*sx.notes, *st.notes, *result.warnings, *_shape_warnings(request, sx, st)]
    _check_strict(request, result)
    result.failed_check = _gate(request, result)
    return result


def _streamable_output(request: ComputeRequest) -> bool:
    from ..io.writers import STREAMED_KINDS, output_kind

    assert request.output is not None
    return request.reduction == "none" and output_kind(request.output) in STREAMED_KINDS


def _check_strict(request: ComputeRequest, result: ComputeResult) -> None:
    refuse_if_strict(request.strict, result.diagnostics)


def _gate(request: ComputeRequest, result: ComputeResult) -> str | None:
    """Why ``--fail-above`` fails (a sentence), or None when it passes or is not asked."""
    if request.fail_above is None:
        return None
    value = result.gate_value
    if value is not None and value <= request.fail_above:
        return None
    what = "largest row" if request.per_row else "loss"
    limit = f"--fail-above {request.fail_above:g}"
    if value is None or value != value:
        return f"{what} is NaN ({limit})"
    return f"{what} {value:.6g} is above {limit}"


def _shape_warnings(request: ComputeRequest, sx: Source, st: Source) -> list[str]:
    """A one-column TARGET against a wider INPUT broadcasts silently in torch; it is
    almost always a file of labels."""
    if request.target_labels or len(sx.shape) < 2 or len(st.shape) < 2:
        return []
    if st.shape[-1] == 1 and sx.shape[-1] > 1:
        return [
            f"TARGET has one column and INPUT has {sx.shape[-1]}: the target is broadcast "
            "across INPUT's columns, as torch does; if TARGET holds class indices, add "
            "--target-labels"
        ]
    return []


def _run_whole(run: _Run) -> ComputeResult:
    request, sx, st = run.request, run.sx, run.st
    x, t = convert(request, sx.read(), st.read(), st.label)

    def blocks() -> Iterator[BlockPair]:
        if request.reduction == "none" or x.ndim < 2 or x.shape != t.shape:
            return iter([(x, t)])
        # Blocks of rows (views): the exact row sums and the diagnostics then need
        # block-sized temporaries, not ten times the data.
        rows = block_rows(request.chunk_rows, math.prod(x.shape[1:]))
        return ((x[i : i + rows], t[i : i + rows]) for i in range(0, len(x), rows))

    return _reduce_blocks(run, blocks, x.shape, x.size)


def _run_row_blocks(run: _Run, sink: BlockWriter | None = None) -> ComputeResult:
    request, sx, st = run.request, run.sx, run.st
    shape = _stream_shape(request, sx, st, sink is not None)
    assert shape is not None
    rows_total, width = shape
    rows = block_rows(request.chunk_rows, width)

    def blocks() -> Iterator[BlockPair]:
        pairs = prefetch(_zip_blocks(sx, st, rows))
        return _converted(request, pairs, st.label)

    # Rows are -1 until counted (a streamed CSV).
    total = rows_total * width if rows_total >= 0 else -1
    return _reduce_blocks(run, blocks, tuple(sx.shape), total, sink)


def _run_row_groups(run: _Run) -> ComputeResult:
    sx, st = run.sx, run.st

    def pairs() -> Iterator[ColumnGroup]:
        # A reader thread per side: one thread reading both sides keeps the cores half idle.
        xs, ts = prefetch(sx.iter_groups(GROUP_BYTES)), prefetch(st.iter_groups(GROUP_BYTES))
        for (first, x_cols), (_, t_cols) in zip(xs, ts):
            yield first, x_cols, t_cols
            del x_cols, t_cols

    return _compute_columnar(run, pairs)


def _run_columns(run: _Run) -> ComputeResult:
    sx, st = run.sx, run.st

    def whole() -> Iterator[ColumnGroup]:
        from ..core.engine import default_threads

        x_cols, t_cols = sx.read_columns(), st.read_columns()
        # Plan.COLUMNS is chosen only for two columnar sources.
        assert x_cols is not None and t_cols is not None
        # As many columns at a time as threads: each column is summed on its own thread,
        # while the reader thread joins the next columns' chunks.
        k = default_threads()
        for j in range(0, len(x_cols), k):
            yield (
                j,
                [column_array(c, sx.dtype) for c in x_cols[j : j + k]],
                [column_array(c, st.dtype) for c in t_cols[j : j + k]],
            )

    return _compute_columnar(run, lambda: prefetch(whole()))


#: The one executor of each plan.
EXECUTORS: dict[Plan, Callable[[_Run], ComputeResult]] = {
    Plan.WHOLE: _run_whole,
    Plan.ROW_BLOCKS: _run_row_blocks,
    Plan.ROW_GROUPS: _run_row_groups,
    Plan.COLUMNS: _run_columns,
}


def block_rows(chunk_rows: int | None, width: int) -> int:
    """Rows per block of rows ``width`` elements wide: ``--chunk-rows``, or about
    :data:`BLOCK_ELEMENTS` elements. Every engine blocks rows by it, so its partial sums
    (and their bits) are the same everywhere."""
    return chunk_rows or max(1, BLOCK_ELEMENTS // max(width, 1))


#: Bytes per column group read from a Parquet row group, each side: memory stays
#: bounded, and a group holds enough columns to keep every core busy.
GROUP_BYTES = 16 << 20


def _columns_allowed(request: ComputeRequest, sx: Source, st: Source) -> bool:
    """Whether a request can be summed column by column, straight from a table's columns
    (no row-major copy): a scalar reduction of untransformed, same-shape tables."""
    return (
        request.reduction != "none"
        and not (request.per_row or request.top or request.target_labels)
        and request.input_transform == "none"
        and request.target_transform == "none"
        and tuple(sx.shape) == tuple(st.shape)
    )


def _compute_columnar(run: _Run, groups: Callable[[], Iterable[ColumnGroup]]) -> ComputeResult:
    """The loss of two tables from matching column groups: ``groups()`` gives
    ``(first_column, xs, ts)`` for each group, where ``first_column`` 0 starts new rows.

    The partial sums come per column, in the order of the groups, so the bits depend
    on the data and its layout in the files, never on the number of threads.
    """
    from ..core import finish_reduction
    from ..core.engine import column_partials, combine

    request, sx, st, progress = run.request, run.sx, run.st, run.progress
    dtype = run.dtype
    rows, width = sx.shape
    diagnostics, base, per_batch, caught = begin(request)
    partials: list[float] = []
    row_sums: np.ndarray | None = None
    done = 0
    for first, xs, ts in groups():
        partials += column_partials(list(zip(xs, ts)), request.log_target, dtype, request.threads)
        for xc, tc in zip(xs, ts):
            diagnostics.update_values(xc, tc)
        if progress is not None:
            done += len(xs) * len(xs[0])
            progress(done, rows * width)
        if request.log_target:
            continue
        if first == 0:
            if row_sums is not None:
                diagnostics.update_rows(row_sums)
            # The target's dtype: a float64 accumulator would cast every value (3x slower).
            row_sums = np.zeros(len(ts[0]), st.dtype)
        # Every row group's first column group starts it (first == 0).
        assert row_sums is not None
        for tc in ts:
            np.add(row_sums, tc, out=row_sums)
    if row_sums is not None and width:
        diagnostics.update_rows(row_sums)
    loss = finish_reduction(
        combine(partials), rows * width, base, rows if per_batch else None, dtype
    )
    if not np.isfinite(loss):
        for _, xs, ts in groups():
            for xc, tc in zip(xs, ts):
                diagnostics.explain(xc, tc)
    return build_result(request, sx, st, loss, None, dtype, (rows, width), diagnostics, caught)


def _stream_shape(
    request: ComputeRequest, sx: Source, st: Source, sink: bool = False
) -> tuple[int, int] | None:
    """(rows, width) when both sides can be read block by block, else None.

    Rows may be -1 (unknown until read: a streamed CSV); _zip_blocks checks that
    both sides hold the same number of rows. ``reduction="none"`` streams only into a
    sink, and only when the rows are known (a .npy header needs them first).
    """
    if request.reduction == "none" and not (sink and -1 not in (sx.shape[0], st.shape[0])):
        return None
    if not (sx.streamable and st.streamable):
        return None
    if not (sx.should_stream() or st.should_stream()):
        return None
    if len(sx.shape) < 2 or -1 in sx.shape[1:] or -1 in st.shape[1:]:
        return None
    if len(sx.shape) > 2 and (request.target_labels or tuple(st.shape) != tuple(sx.shape)):
        return None  # rank 3+ streams as rows of its last axis, both sides alike
    if -1 not in (sx.shape[0], st.shape[0]) and sx.shape[0] != st.shape[0]:
        # Known from the headers: say so before reading anything.
        what = "labels" if request.target_labels else "shapes"
        raise InputError(
            f"{sx.label} and {st.label}",
            f"{what} do not match: input {tuple(sx.shape)}, target {tuple(st.shape)}",
        )
    if request.target_labels:
        if len(st.shape) > 2 or (len(st.shape) == 2 and st.shape[1] != 1):
            return None
    elif tuple(st.shape[1:]) != tuple(sx.shape[1:]):
        return None
    transforms = request.input_transform != "none" or request.target_transform != "none"
    if transforms and request.dim not in (-1, len(sx.shape) - 1):
        return None  # a softmax across rows needs every row at once
    if len(sx.shape) > 2:
        # Leading axes flattened into rows: a (1, 2040, 32000) tensor is 2040 rows.
        return sx.flat_rows, sx.shape[-1]
    return max(sx.shape[0], st.shape[0]), sx.shape[1]


def _converted(
    request: ComputeRequest, pairs: Iterable[BlockPair], labels_source: str
) -> Iterator[BlockPair]:
    first_row = 0
    for xb, tb in pairs:
        converted = convert(request, xb, tb, labels_source, first_row)
        first_row += len(xb)
        del xb, tb  # generators keep loop variables alive: drop the raw blocks now
        yield converted
        del converted


def _zip_blocks(sx: Source, st: Source, rows: int) -> Iterator[BlockPair]:
    xs = rebatch(sx.iter_rows(rows), rows)
    ts = rebatch(st.iter_rows(rows), rows)
    for xb in xs:
        tb = next(ts, None)
        if tb is None or len(tb) != len(xb):
            raise InputError(f"{sx.label} and {st.label}", "hold different numbers of rows")
        pair = (xb, tb)
        del xb, tb
        yield pair
        del pair
    if next(ts, None) is not None:
        raise InputError(f"{sx.label} and {st.label}", "hold different numbers of rows")


def _reduce_blocks(
    run: _Run,
    blocks: Callable[[], Iterable[BlockPair]],
    input_shape: tuple[int, ...],
    total: int,
    sink: BlockWriter | None = None,
) -> ComputeResult:
    """Sum (or, for ``reduction="none"``, collect or stream) the loss over ``blocks()``,
    pairs of converted blocks of rows, with the diagnostics and the per-row values.
    ``total`` counts the input elements for progress (-1 while unknown)."""
    from ..core import finish_reduction
    from ..core.engine import Accumulator

    request, sx, st, progress = run.request, run.sx, run.st, run.progress
    diagnostics, base, per_batch, caught = begin(request)
    accumulator = Accumulator(request.log_target, request.threads)
    row_values: list[np.ndarray] = []
    loss: np.ndarray | np.generic | None = None
    shape: tuple[int, ...] = ()
    dtype: np.dtype | None = None
    count = 0
    rows_done = 0
    done = 0
    streamed_max: float | None = None  # reduction "none" into a sink: the largest value written
    finite = True
    want_rows = request.per_row or request.top
    for x, t in blocks():
        try:
            shape = broadcast_shape(x.shape, t.shape)
        except ValueError:
            raise InputError(
                f"{sx.label} and {st.label}",
                f"shapes do not match: input {x.shape}, target {t.shape}",
            ) from None
        dtype = run.dtype
        diagnostics.update(x, t)
        terms = pointwise(x, t, request.log_target, dtype) if base == "none" else None
        if want_rows:
            row_values.append(_row_kl(x, t, request, dtype))
        if terms is None:
            accumulator.add(x, t, dtype)
        elif sink is None:
            loss = terms
        else:
            terms = _scaled(terms, request, dtype)
            sink.write(terms, _whole_shape(input_shape, shape))
            finite = finite and bool(np.isfinite(terms).all())
            streamed_max = _running_max(streamed_max, terms)
        count += int(np.prod(shape))
        rows_done += x.shape[0] if x.ndim else 1
        done += x.size
        del x, t, terms  # let the next block reuse the memory
        if progress is not None:
            progress(done, total)
    if dtype is None:
        raise InputError(sx.label, "has no rows")
    if input_shape and input_shape[0] == -1:
        input_shape = (rows_done, *input_shape[1:])
    if base != "none":
        batch = input_shape[0] if per_batch and len(input_shape) else None
        loss = finish_reduction(accumulator.total(), count, base, batch, dtype)
    if not (finite if loss is None else np.isfinite(loss).all()) or (
        row_values and not np.isfinite(np.concatenate(row_values)).all()
    ):
        # A second pass, only now: what made the NaN or inf.
        for x, t in blocks():
            diagnostics.explain(x, t)
    per_row = np.concatenate(row_values) if row_values else None
    if len(shape) and len(input_shape) >= len(shape):
        shape = _whole_shape(input_shape, shape)
    result = build_result(request, sx, st, loss, per_row, dtype, tuple(shape), diagnostics, caught)
    if loss is None:
        result.streamed_max = 0.0 if streamed_max is None else streamed_max
    return result


def _whole_shape(input_shape: tuple[int, ...], block: tuple[int, ...]) -> tuple[int, ...]:
    """The shape of the whole loss from a block's: the input's rows, the block's other
    axes; a rank 3+ input streamed as rows of its last axis keeps its own shape."""
    if len(input_shape) > len(block):
        return input_shape
    return (input_shape[0], *block[1:])


def _running_max(so_far: float | None, values: np.ndarray) -> float | None:
    """The largest value seen, NaN as soon as one value is NaN (as ``max`` of it all)."""
    if not values.size:
        return so_far
    top = float(values.max())
    return top if so_far is None else float(np.maximum(so_far, top))  # NaN wins


def begin(
    request: ComputeRequest,
) -> tuple[Diagnostics, str, bool, list[warnings.WarningMessage]]:
    """What every way of computing begins with (any executor, any engine): the
    diagnostics for this request, the reduction resolved as torch does (the base
    reduction and whether it divides by the batch), and torch's warning kept for stderr.
    """
    from ..core import resolve_reduction

    diagnostics = Diagnostics(
        request.log_target,
        input_transformed=request.input_transform != "none",
        target_transformed=request.target_transform != "none" or request.target_labels,
    )
    # With --per-row or --top the rows are the answer: the 'mean' warning is noise there.
    warn = not (request.per_row or request.top)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        base, per_batch = resolve_reduction(request.reduction, warn=warn)
    return diagnostics, base, per_batch, caught


def build_result(
    request: ComputeRequest,
    sx: Source,
    st: Source,
    loss: np.ndarray | np.generic | None,
    per_row: np.ndarray | None,
    dtype: np.dtype,
    shape: tuple[int, ...],
    diagnostics: Diagnostics,
    caught: list[warnings.WarningMessage],
) -> ComputeResult:
    """The :class:`ComputeResult` of a finished sum (any executor, any engine): the T^2
    factor applied to ``loss`` and ``per_row``, the top rows, the sources described,
    the diagnostics and the warnings ``caught`` by :func:`begin`."""
    if loss is not None:
        loss = _scaled(np.asarray(loss), request, dtype)[()]
    per_row = None if per_row is None else _scaled(per_row, request, dtype)
    top: list[tuple[int, float]] = []
    if request.top and per_row is not None:
        order = np.argsort(-np.nan_to_num(per_row.astype(np.float64), nan=np.inf), kind="stable")
        top = [(int(i), float(per_row[i])) for i in order[: request.top]]
    return ComputeResult(
        request=request,
        loss=loss,
        input=sx.describe(),
        target=st.describe(),
        dtype=str(dtype),
        shape=shape,
        per_row=per_row,
        top=top,
        diagnostics=diagnostics.messages(),
        warnings=[str(w.message) for w in caught],
    )


def _scaled(values: np.ndarray, request: ComputeRequest, dtype: np.dtype) -> np.ndarray:
    """``values`` times T^2 when ``--t2-scale`` asks for it (rounded to ``dtype``)."""
    if not request.t2_scale or request.temperature == 1.0:
        return values
    with np.errstate(over="ignore"):  # T = 1e300: T^2 is inf, and so is the scaled loss
        scale = np.square(np.float64(request.temperature))
        # ``dtype.type`` of a dtype[Any] is typed Any, and so is this product: an array.
        scaled: np.ndarray = (values * dtype.type(scale)).astype(dtype)
    return scaled


def _row_kl(x: np.ndarray, t: np.ndarray, request: ComputeRequest, dtype: np.dtype) -> np.ndarray:
    """KL per row (a sum over the last axis), exact: float64 terms, one rounding."""
    from ..core.engine import row_sums

    if x.ndim == 0 and t.ndim == 0:
        return pointwise(x, t, request.log_target, dtype).reshape(1)
    return row_sums(x, t, request.log_target, dtype, request.threads).reshape(-1)
