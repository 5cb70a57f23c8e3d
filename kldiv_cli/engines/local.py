"""The local engine: a compute plan run in this process, a thread or two ahead.

One executor per :class:`~kldiv_cli.jobs.compute_plan.Plan` (:data:`EXECUTORS`): whole
data summed in blocks of rows, blocks of rows streamed from both sides (and, for
``-r none``, streamed into an output file), matching Parquet row groups, or plain
tables column by column. The sums are the engine's exact partial sums
(:mod:`kldiv_cli.core.engine`), so every path, and every other engine, has the same
bits. ``drift`` and ``profile`` profile the reference in the job itself
(:func:`profiler` gives no profiler).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, BinaryIO

import numpy as np

from ..core import broadcast_shape, finish_reduction, pointwise
from ..core.engine import Accumulator, column_partials, combine, default_threads, row_sums
from ..errors import InputError
from ..io.sources import Source
from ..jobs.blocks import prefetch, rebatch
from ..jobs.compute_plan import (
    BlockPair,
    ComputeRequest,
    ComputeResult,
    EngineOptions,
    Plan,
    Progress,
    begin,
    block_rows,
    build_result,
    check_strict,
    convert,
    finish,
    fused_logits,
    logit_rows,
    open_sources,
    plan,
    result_dtype_for,
    scaled,
    stream_shape,
    t2_factor,
)
from ..jobs.diagnostics import Diagnostics, strict_notes

if TYPE_CHECKING:
    from ..io.writers import BlockWriter

#: ``(first_column, input_columns, target_columns)``: a group of matching 1-D columns;
#: ``first_column`` 0 starts new rows.
ColumnGroup = tuple[int, list[np.ndarray], list[np.ndarray]]

#: Bytes per column group read from a Parquet row group, each side: memory stays
#: bounded, and a group holds enough columns to keep every core busy.
GROUP_BYTES = 16 << 20


@dataclass(frozen=True)
class _Run:
    """What every executor gets: the request, both sources and the execution options."""

    request: ComputeRequest
    sx: Source
    st: Source
    progress: Progress | None
    #: torch's result dtype (see :func:`~kldiv_cli.jobs.compute_plan.result_dtype_for`).
    dtype: np.dtype
    #: Distillation's KL on logits, row by row in one pass
    #: (:func:`~kldiv_cli.jobs.compute_plan.fused_logits`): blocks stay raw logits.
    fused: bool = False


def compute(
    request: ComputeRequest,
    stdin: bytes | None = None,
    progress: Progress | None = None,
    note: Callable[[str], None] | None = None,
) -> ComputeResult:
    """The compute job in this process: open both sources, :func:`plan` the path, run
    its executor (``note`` is not used: nothing starts here).

    ``progress``, if given, is called with the number of input elements done so far and
    the total (-1 while unknown). With ``request.output`` naming a .npy/.csv/.parquet
    file and ``reduction="none"``, a job that streams writes each block of the pointwise
    loss straight into that (atomic) file; the result then says so in ``written`` and its
    ``loss`` is None. Every other result is returned whole, for the caller to render.
    """
    sx, st = open_sources(request, stdin)
    strict_notes(request.strict, (sx, st))
    # The output file the pointwise loss may stream into, if any.
    into = request.output if request.output is not None and _streamable_output(request) else None
    chosen = plan(request, sx, st, into is not None)
    run = _Run(
        request, sx, st, progress, result_dtype_for(request, sx, st), fused_logits(request, sx, st)
    )
    if chosen is Plan.ROW_BLOCKS and into is not None:
        from ..io.writers import BlockWriter, atomic_write, output_kind

        def write(f: BinaryIO) -> ComputeResult:
            sink = BlockWriter(output_kind(into), f)
            result = _run_row_blocks(run, sink)
            check_strict(request, result)  # before the file replaces an existing one
            sink.close()
            return result

        result = atomic_write(into, write)
        result.written = into
    else:
        result = EXECUTORS[chosen](run)
    return finish(request, sx, st, chosen, result)


def profiler(
    reference: Sequence[str], options: EngineOptions, note: Callable[[str], None] | None
) -> AbstractContextManager[Any]:
    """No profiler: ``drift`` and ``profile`` read the reference in the job itself."""
    return nullcontext(None)


def _streamable_output(request: ComputeRequest) -> bool:
    from ..io.formats import STREAMED_KINDS
    from ..io.writers import output_kind

    assert request.output is not None
    return request.per_element and output_kind(request.output) in STREAMED_KINDS


def _run_whole(run: _Run) -> ComputeResult:
    request, sx, st = run.request, run.sx, run.st
    x, t = sx.read(), st.read()
    if not run.fused:
        x, t = convert(request, x, t, st.label)

    def blocks() -> Iterator[BlockPair]:
        if request.per_element or x.ndim < 2 or x.shape != t.shape:
            return iter([(x, t)])
        # Blocks of rows (views): the exact row sums and the diagnostics then need
        # block-sized temporaries, not ten times the data.
        rows = block_rows(request.chunk_rows, math.prod(x.shape[1:]))
        return ((x[i : i + rows], t[i : i + rows]) for i in range(0, len(x), rows))

    return _reduce_blocks(run, blocks, x.shape, x.size)


def _run_row_blocks(run: _Run, sink: BlockWriter | None = None) -> ComputeResult:
    request, sx, st = run.request, run.sx, run.st
    shape = stream_shape(request, sx, st, sink is not None)
    assert shape is not None
    rows_total, width = shape
    rows = block_rows(request.chunk_rows, width)
    # One block of known rows on each side (a small job) has nothing to read ahead: no
    # reader thread, whose start alone cost a tiny compute 1-18 ms on a busy machine.
    one_block = 0 <= min(sx.flat_rows, st.flat_rows) and max(sx.flat_rows, st.flat_rows) <= rows

    def blocks() -> Iterator[BlockPair]:
        pairs = _zip_blocks(sx, st, rows)
        if not one_block:
            pairs = prefetch(pairs)
        return pairs if run.fused else _converted(request, pairs, st.label)

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
    from ..io.sources import column_array  # tables only: an array job never loads it

    sx, st = run.sx, run.st

    def whole() -> Iterator[ColumnGroup]:
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


def _compute_columnar(run: _Run, groups: Callable[[], Iterable[ColumnGroup]]) -> ComputeResult:
    """The loss of two tables from matching column groups: ``groups()`` gives
    ``(first_column, xs, ts)`` for each group, where ``first_column`` 0 starts new rows.

    The partial sums come per column, in the order of the groups, so the bits depend
    on the data and its layout in the files, never on the number of threads.
    """
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
        combine(partials),
        rows * width,
        base,
        rows if per_batch else None,
        dtype,
        t2_factor(request),
    )
    if not np.isfinite(loss):
        for _, xs, ts in groups():
            for xc, tc in zip(xs, ts):
                diagnostics.explain(xc, tc)
    return build_result(request, sx, st, loss, None, dtype, (rows, width), diagnostics, caught)


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


@dataclass
class _Sums:
    """What the blocks of :func:`_reduce_blocks` add up to so far: the exact sum (or, for
    ``reduction="none"``, the pointwise loss collected or streamed into ``sink``), the
    per-row values, the counts, the diagnostics."""

    run: _Run
    base: str
    diagnostics: Diagnostics
    sink: BlockWriter | None
    accumulator: Accumulator
    row_values: list[np.ndarray] = field(default_factory=list)
    #: A fused job's float64 KL of every row (combined exactly at the end).
    row_kl: list[np.ndarray] = field(default_factory=list)
    #: The pointwise loss (``reduction="none"`` without a sink).
    loss: np.ndarray | None = None
    #: The shape of the last block's loss.
    shape: tuple[int, ...] = ()
    blocks: int = 0
    count: int = 0
    rows: int = 0
    done: int = 0
    #: Into a sink: whether every value written was finite, and the largest one.
    finite: bool = True
    streamed_max: float | None = None

    def add(self, x: np.ndarray, t: np.ndarray, input_shape: tuple[int, ...]) -> None:
        """One block of converted rows of both sides."""
        request, dtype = self.run.request, self.run.dtype
        try:
            self.shape = broadcast_shape(x.shape, t.shape)
        except ValueError:
            raise InputError(
                f"{self.run.sx.label} and {self.run.st.label}",
                f"shapes do not match: input {x.shape}, target {t.shape}",
            ) from None
        self.diagnostics.update(x, t)
        if self.run.fused:
            self._fused(x, t)
        else:
            if request.per_row or request.top:
                self.row_values.append(_row_kl(x, t, request, dtype))
            if self.base != "none":
                self.accumulator.add(x, t, dtype)
            else:
                self._pointwise(pointwise(x, t, request.log_target, dtype), input_shape)
        self.blocks += 1
        self.count += int(np.prod(self.shape))
        self.rows += x.shape[0] if x.ndim else 1
        self.done += x.size

    def total(self) -> float:
        """The exact float64 sum of every block: the rows' KL of a fused job, else the
        accumulator's chunks."""
        if self.run.fused:
            return combine(np.concatenate(self.row_kl))
        return self.accumulator.total()

    def _fused(self, x: np.ndarray, t: np.ndarray) -> None:
        """A fused job's block of raw logits: the float64 KL of its rows, and the rows
        rounded once to the result's dtype when they are asked for."""
        values = logit_rows(self.run.request, x, t)
        self.row_kl.append(values)
        if self.run.request.per_row or self.run.request.top:
            with np.errstate(over="ignore", invalid="ignore"):
                scaled_rows = values * t2_factor(self.run.request)
                self.row_values.append(scaled_rows.astype(self.run.dtype))

    def _pointwise(self, terms: np.ndarray, input_shape: tuple[int, ...]) -> None:
        if self.sink is None:
            self.loss = terms
            return
        terms = scaled(terms, self.run.request, self.run.dtype)
        self.sink.write(terms, _whole_shape(input_shape, self.shape))
        self.finite = self.finite and bool(np.isfinite(terms).all())
        self.streamed_max = _running_max(self.streamed_max, terms)


def _reduce_blocks(
    run: _Run,
    blocks: Callable[[], Iterable[BlockPair]],
    input_shape: tuple[int, ...],
    total: int,
    sink: BlockWriter | None = None,
) -> ComputeResult:
    """Sum (or, for ``reduction="none"``, collect or stream) the loss over ``blocks()``,
    pairs of converted blocks of rows, with the diagnostics and the per-row values.
    ``total`` counts the input elements for progress (-1 while unknown). A loss that
    is not finite reads the blocks again, to say what made the NaN or inf."""
    request, sx, st, dtype = run.request, run.sx, run.st, run.dtype
    diagnostics, base, per_batch, caught = begin(request)
    sums = _Sums(run, base, diagnostics, sink, Accumulator(request.log_target, request.threads))
    for x, t in blocks():
        sums.add(x, t, input_shape)
        del x, t  # let the next block reuse the memory
        if run.progress is not None:
            run.progress(sums.done, total)
    if not sums.blocks:
        raise InputError(sx.label, "has no rows")
    if input_shape and input_shape[0] == -1:
        input_shape = (sums.rows, *input_shape[1:])
    loss: np.ndarray | np.generic | None = sums.loss
    if base != "none":
        batch = input_shape[0] if per_batch and len(input_shape) else None
        loss = finish_reduction(sums.total(), sums.count, base, batch, dtype, t2_factor(request))
    per_row = np.concatenate(sums.row_values) if sums.row_values else None
    finite = sums.finite if loss is None else np.isfinite(loss).all()
    if not finite or (per_row is not None and not np.isfinite(per_row).all()):
        for x, t in blocks():  # a second pass, only now: what made the NaN or inf
            if run.fused:
                x, t = convert(request, x, t, st.label)
            diagnostics.explain(x, t)
    shape = sums.shape
    if len(shape) and len(input_shape) >= len(shape):
        shape = _whole_shape(input_shape, shape)
    result = build_result(request, sx, st, loss, per_row, dtype, shape, diagnostics, caught)
    if loss is None:
        result.streamed_max = 0.0 if sums.streamed_max is None else sums.streamed_max
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


def _row_kl(x: np.ndarray, t: np.ndarray, request: ComputeRequest, dtype: np.dtype) -> np.ndarray:
    """KL per row (a sum over the last axis), exact: float64 terms, one rounding."""
    if x.ndim == 0 and t.ndim == 0:
        return scaled(pointwise(x, t, request.log_target, dtype), request, dtype).reshape(1)
    return row_sums(x, t, request.log_target, dtype, request.threads, t2_factor(request)).reshape(
        -1
    )
