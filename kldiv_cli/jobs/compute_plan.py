"""The compute job's request, result and plan, and the steps every engine shares.

Below both the job (:mod:`.compute`, which picks an engine) and the engines
(:mod:`kldiv_cli.engines.local`, :mod:`kldiv_cli.engines.dask`): :func:`open_sources`
opens both sides, :func:`plan` names the path from their headers (:class:`Plan`),
:func:`convert` applies labels and transforms, :func:`begin` and :func:`build_result`
open and close every sum, :func:`finish` records the plan, the warnings, ``--strict``
and the ``--fail-above`` gate. Nothing here knows an engine.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import numpy as np

from ..choices import Reduction, Tail, Transform, coerce
from ..core import result_dtype
from ..errors import InputError, UsageError
from ..io.sources import ReadOptions, Source, open_source
from .checks import Checked, temperature
from .diagnostics import Diagnostics, refuse_if_strict
from .gates import Gate, Verdict, gate_failure

#: ``progress(done, total)``: input elements summed so far, and in all (-1 while unknown).
Progress = Callable[[int, int], None]
#: A block of input rows and the matching block of target rows.
BlockPair = tuple[np.ndarray, np.ndarray]

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
class ComputeRequest(Checked):
    input: str
    target: str
    input_options: ReadOptions = ReadOptions()
    target_options: ReadOptions = ReadOptions()
    reduction: Reduction = Reduction.MEAN
    log_target: bool = False
    input_transform: Transform = Transform.NONE
    target_transform: Transform = Transform.NONE
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
    #: The engine's name in :data:`kldiv_cli.engines.registry.ENGINES` (checked, with the
    #: engine's own limits, by :func:`kldiv_cli.jobs.compute.check`).
    engine: str = "local"
    engine_options: EngineOptions = EngineOptions()
    #: A top-K TARGET (:mod:`.compute_topk`): the tail's treatment
    #: (:data:`kldiv_cli.core.topk.TAILS`), and the arrays of a .npz/safetensors one.
    tail: str = "bucket"
    indices_key: str | None = None
    logprobs_key: str | None = None

    def __post_init__(self) -> None:
        # Words parsed once, when the request is made (a library caller may pass text).
        coerce(self, reduction=Reduction, input_transform=Transform, target_transform=Transform)
        temperature(self.temperature)

    @property
    def per_element(self) -> bool:
        """``-r none``: the loss of every element, not a sum."""
        return self.reduction is Reduction.NONE

    @property
    def inputs(self) -> tuple[str, str]:
        """The paths the job reads."""
        return (self.input, self.target)

    def check(self) -> None:
        # core.topk.TAILS's words (a test checks they agree), without loading the top-K
        # modules (31 KB of source) into every dense job.
        tails = Tail.words()
        if self.tail not in tails:
            raise UsageError(f"--tail: unknown {self.tail!r}; choose one of {', '.join(tails)}")
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
    def verdict(self) -> Verdict:
        """The exit code's reason: the gate."""
        return Verdict(failed=self.failed_check)

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
    """Open both sides of a checked ``request``; refuse a distribution of one class."""
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
            from ..io.roles import choose_hint, one_class

            raise UsageError(
                f"{side}: {transform} over 1 class ({one_class(src, request.dim)}) is always "
                f"{'1' if transform == 'softmax' else '0'}; a distribution needs >= 2 classes: "
                f"{choose_hint(src, options)}"
            )
    if request.per_element and not request.per_row and request.top is None:
        return
    # Labels are one column by design: the classes are then the input's.
    classes = sides[:1] if request.target_labels else sides
    if max((src.shape[-1] for _, src, _, _ in classes if src.shape), default=0) != 1:
        return
    for side, src, _, options in classes:
        if src.roles is not None and options.columns is None and src.shape[-1] == 1:
            from ..io.roles import choose_hint, one_class

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


def _transform(name: Transform, a: np.ndarray, request: ComputeRequest) -> np.ndarray:
    """A transform as torch computes it for ``-r none`` (its pointwise terms are torch's),
    and in float64 for every aggregate (nothing rounded before the KL is summed)."""
    if name is Transform.NONE:
        return a
    if a.ndim and not -a.ndim <= request.dim < a.ndim:
        raise UsageError(f"--dim {request.dim} is out of range for data of shape {a.shape}")
    exact = np.float64 if not request.per_element else None
    # Row-major first: a softmax's sums then have the same bits whatever the file's layout
    # (a Parquet table read whole is column-major; its streamed blocks are row-major).
    a = np.ascontiguousarray(a)
    from ..core.transforms import apply_transform  # a job without transforms never loads it

    return apply_transform(
        name, a, request.dim, request.temperature, dtype=exact, threads=request.threads
    )


def fused_logits(request: ComputeRequest, sx: Source, st: Source) -> bool:
    """Whether the job is distillation's KL on logits taken row by row in one pass
    (:func:`kldiv_cli.core.softmaxkl.row_kl`): a log-softmax input against a softmax target
    along the last axis, summed (not ``-r none``, whose terms are torch's), of float16 or
    float32 logits of one shape. float64 logits keep the materialised float64 transforms:
    their float64 result has no slack for another order of operations."""
    if not (
        request.input_transform is Transform.LOG_SOFTMAX
        and request.target_transform is Transform.SOFTMAX
        and not (request.per_element or request.log_target or request.target_labels)
        and len(sx.shape) >= 1
        and tuple(sx.shape) == tuple(st.shape)
        and request.dim in (-1, len(sx.shape) - 1)
    ):
        return False
    # Only now: a job without both transforms never compiles the kernel's module.
    from ..core.softmaxkl import takes

    return takes(sx.dtype, st.dtype)


def logit_rows(request: ComputeRequest, x: np.ndarray, t: np.ndarray) -> np.ndarray:
    """The float64 KL of each row (last axis, leading axes flattened) of blocks of raw
    logits of a :func:`fused_logits` job. Rows the one-pass kernel does not take (a NaN,
    a ``+inf``, a student ``-inf``, a teacher of ``-inf`` only, no values) are transformed and summed as every other job is: their values, NaN and inf
    included, are that path's."""
    from ..core.engine import row_sums
    from ..core.softmaxkl import row_kl

    width = x.shape[-1] if x.ndim else 1
    xs = np.ascontiguousarray(x).reshape(-1, width)
    ts = np.ascontiguousarray(t).reshape(-1, width)
    values, taken = row_kl(xs, ts, request.temperature, request.threads)
    if not taken.all():
        rest = ~taken
        cx, ct = convert(request, xs[rest], ts[rest], "")
        values[rest] = row_sums(cx, ct, False, np.dtype(np.float64), request.threads)
    return values


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


BLOCK_ELEMENTS = 1 << 19


class Plan(Enum):
    """How a compute job runs. :func:`plan` picks one from the sources' headers, before any
    data is read. Every engine runs each plan its own way with the same partial sums
    (the local executors: :data:`kldiv_cli.engines.local.EXECUTORS`)."""

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
    streams = stream_shape(request, sx, st, into_file) is not None
    if _columns_allowed(request, sx, st):
        if sx.row_groups is not None and sx.row_groups == st.row_groups:
            return Plan.ROW_GROUPS
        if not streams and sx.columnar and st.columnar:
            return Plan.COLUMNS
    return Plan.ROW_BLOCKS if streams else Plan.WHOLE


def block_rows(chunk_rows: int | None, width: int) -> int:
    """Rows per block of rows ``width`` elements wide: ``--chunk-rows``, or about
    :data:`BLOCK_ELEMENTS` elements. Every engine blocks rows by it, so its partial sums
    (and their bits) are the same everywhere."""
    return chunk_rows or max(1, BLOCK_ELEMENTS // max(width, 1))


def _columns_allowed(request: ComputeRequest, sx: Source, st: Source) -> bool:
    """Whether a request can be summed column by column, straight from a table's columns
    (no row-major copy): a scalar reduction of untransformed, same-shape tables."""
    return (
        not request.per_element
        and not (request.per_row or request.top or request.target_labels)
        and request.input_transform is Transform.NONE
        and request.target_transform is Transform.NONE
        and tuple(sx.shape) == tuple(st.shape)
    )


def stream_shape(
    request: ComputeRequest, sx: Source, st: Source, sink: bool = False
) -> tuple[int, int] | None:
    """(rows, width) when both sides can be read block by block, else None.

    Rows may be -1 (unknown until read: a streamed CSV); the local engine checks
    that both sides hold the same number of rows. ``reduction="none"`` streams only into a
    sink, and only when the rows are known (a .npy header needs them first).
    """
    if request.per_element and not (sink and -1 not in (sx.shape[0], st.shape[0])):
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
    factor applied to a pointwise ``loss`` (a reduced loss and ``per_row`` come with it,
    applied before their one rounding: :func:`t2_factor`), the top rows, the sources
    described, the diagnostics and the warnings ``caught`` by :func:`begin`."""
    if loss is not None and request.per_element:
        loss = scaled(np.asarray(loss), request, dtype)[()]
    top = top_rows(per_row, request.top)
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


def top_rows(per_row: np.ndarray | None, n: int | None) -> list[tuple[int, float]]:
    """The ``n`` rows of largest KL as (row, value), largest first (NaN first: a NaN row
    is the one to look at); none without ``n`` or per-row values."""
    if not n or per_row is None:
        return []
    order = np.argsort(-np.nan_to_num(per_row.astype(np.float64), nan=np.inf), kind="stable")
    return [(int(i), float(per_row[i])) for i in order[:n]]


def t2_factor(request: ComputeRequest) -> float:
    """The factor ``--t2-scale`` asks for (T^2, else 1), for the float64 value of a
    reduced loss or of a row's KL before its one rounding."""
    if not request.t2_scale:
        return 1.0
    with np.errstate(over="ignore"):  # T = 1e300: T^2 is inf, and so is the scaled loss
        return float(np.square(np.float64(request.temperature)))


def scaled(values: np.ndarray, request: ComputeRequest, dtype: np.dtype) -> np.ndarray:
    """Pointwise ``values`` (already in ``dtype``, torch's terms) times T^2 in ``dtype``
    when ``--t2-scale`` asks for it, as torch's ``loss * T**2`` does."""
    if not request.t2_scale or request.temperature == 1.0:
        return values
    with np.errstate(over="ignore"):  # T = 1e300: T^2 is inf, and so is the scaled loss
        scale = np.square(np.float64(request.temperature))
        # ``dtype.type`` of a dtype[Any] is typed Any, and so is this product: an array.
        out: np.ndarray = (values * dtype.type(scale)).astype(dtype)
    return out


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
    return settle(request, result)


def settle(request: ComputeRequest, result: ComputeResult) -> ComputeResult:
    """``--strict`` (a diagnostic is an error) and the ``--fail-above`` gate, on a
    finished result (any engine, any target).

    Raises
    ------
    UsageError
        ``--strict`` and a diagnostic.
    """
    check_strict(request, result)
    result.failed_check = _gate(request, result)
    return result


def check_strict(request: ComputeRequest, result: ComputeResult) -> None:
    """``--strict``: the result's first diagnostic is an error (before an output file is
    replaced, for an engine that writes one)."""
    refuse_if_strict(request.strict, result.diagnostics)


def _gate(request: ComputeRequest, result: ComputeResult) -> str | None:
    """Why ``--fail-above`` fails (a sentence), or None when it passes or is not asked."""
    if request.fail_above is None:
        return None
    what = "largest row" if request.per_row else "loss"
    return gate_failure(Gate(what, "above", request.fail_above), result.gate_value, what)


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
