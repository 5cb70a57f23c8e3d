"""How the loss is summed: float64 terms, fixed chunks, float64 partial sums, an exact combine.

The promise of every aggregate (a sum, a mean, a per-row value): it is the float64 value of
the data as given, rounded once to the result dtype. Each term ``t * (log t - x)`` (or
``exp(t) * (t - x)`` with ``log_target``) is computed from ``t`` and ``x`` widened exactly to
float64, terms are summed in float64, and nothing is rounded to the result dtype before the
end. float32 terms are not good enough: on near-identical distributions a KL is a small
difference of large terms, and a float32 ``log`` (not correctly rounded, its errors biased)
leaves percent-level errors in it.

The work is split into chunks whose boundaries depend only on the position in the
flattened data (never on the thread count or on how a stream was cut into blocks); each
chunk gives one float64 partial sum, and the partials are combined exactly
(``math.fsum``). So the same data gives the same bits for any number of threads and any
block sizes, and a distributed engine (Dask, Spark) can run :func:`partial_sums` on its own
partitions and :func:`combine` the results.

Per chunk, without ``log_target``: float16 or float32 targets take the fused kernel
(:mod:`.kernel`: one pass that widens, takes kldiv's own float64 logarithm and sums the terms
in 16 fixed lanes), float64 targets NumPy's ``log`` and then one pass of the kernel's that
subtracts, multiplies and sums in short lanes (compiled when available, else NumPy: same bits).
Otherwise (``log_target``, and chunks the kernel flags), the operands are widened into this
thread's float64 buffers (float16 bit by bit, :mod:`.half`), ``log`` (or ``exp``) and a
subtraction run in place and BLAS ``ddot`` sums the products on short slices (all release the
GIL, so threads run in parallel). Zero targets get torch's ``xlogy`` rule, 0 against a finite
input. Wherever torch's own terms would not be finite (a zero target against an infinite
input, negative, NaN or infinite values, terms that overflow in torch's dtypes, found from the
chunk's extremes), the chunk's sum is that of torch's non-finite terms, so the NaN/±inf
pattern is torch's. :func:`row_sums` gives exact values per row (by the general path).

The pointwise loss (``reduction="none"``) is not computed here: it stays torch's, term by
term, in :mod:`.pointwise`.
"""

from __future__ import annotations

import math
import os
import threading
from typing import TYPE_CHECKING

import numpy as np

from . import half, kernel
from .pointwise import pointwise
from .sums import as_float64, combine, combine_rows, dot, fsum_or_inf, row_dots

if TYPE_CHECKING:
    from collections.abc import Iterator
    from concurrent.futures import ThreadPoolExecutor


__all__ = [
    "CHUNK",
    "Accumulator",
    "as_float64",
    "chunk_sum",
    "column_partials",
    "combine",
    "combine_rows",
    "default_threads",
    "partial_sums",
    "row_sums",
    "total_loss",
]

#: Elements per chunk: large enough that the fixed cost of a chunk's dozen NumPy calls
#: (more for float16) disappears, small enough that its buffers stay in cache.
CHUNK = 1 << 18
#: Below this many elements, threads cost more than they save.
PARALLEL_MIN = 1 << 20


def default_threads() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


def _threads(threads: int | None) -> int:
    """The thread count to use: 1 inside a worker of our own pools, whose waiting on the
    pool it runs in could deadlock it."""
    if threading.current_thread().name.startswith(_POOL_PREFIX):
        return 1
    return default_threads() if threads is None else max(1, threads)


class _Buffers:
    """One thread's scratch space: float64 buffers for the widened operands and the
    terms, uint32 buffers for the float16 bit widening, and a boolean mask."""

    def __init__(self, size: int) -> None:
        self.a = np.empty(size, dtype=np.float64)
        self.b = np.empty(size, dtype=np.float64)
        self.t = np.empty(size, dtype=np.float64)
        self.x = np.empty(size, dtype=np.float64)
        self.u = np.empty(size, dtype=np.uint32)
        self.w = np.empty(size, dtype=np.uint32)
        self.m = np.empty(size, dtype=bool)


_LOCAL = threading.local()


def _buffers(size: int) -> _Buffers:
    """This thread's scratch buffers, kept between calls: fresh pages for every streamed
    block cost page faults."""
    buffers: _Buffers | None = getattr(_LOCAL, "buffers", None)
    if buffers is None or buffers.a.size < size:
        buffers = _LOCAL.buffers = _Buffers(size)
    return buffers


class _Operand:
    """One chunk operand: as given, widened exactly to float64, and its extremes (known for
    free after the float16 widening, else found by one reduction when first asked)."""

    __slots__ = ("_hi", "_lo", "a", "a64")

    def __init__(self, a: np.ndarray, out: np.ndarray, buf: _Buffers) -> None:
        self.a = a
        self._lo: float | None = None
        self._hi: float | None = None
        self.a64 = self._widen(out, buf)

    def _widen(self, out: np.ndarray, buf: _Buffers) -> np.ndarray:
        """``a`` (1-D) as float64: ``a`` itself when it is float64, else in ``out``."""
        a = self.a
        n = a.size
        if a.dtype == np.float64:
            return a
        if a.dtype != np.float16 or not n:
            np.copyto(out, a)
            return out
        codes = a.view(np.uint16)
        lo, hi = int(codes.min()), int(codes.max())
        if half.one_sign(codes, lo, hi, buf.u[:n], out):
            # One sign: the extreme codes are the extreme values (backwards if negative).
            self._lo, self._hi = sorted((half.value(lo), half.value(hi)))
        else:
            half.any_sign(codes, buf.u[:n], buf.w[:n], out)
        return out

    @property
    def dtype(self) -> np.dtype:
        return self.a.dtype

    @property
    def size(self) -> int:
        return self.a.size

    def _reduced(self) -> np.ndarray:
        # float16 reductions are slow in NumPy; the widened copy has the same extremes.
        return self.a64 if self.a.dtype == np.float16 else self.a

    def hi(self) -> float:
        if self._hi is None:
            self._hi = float(self._reduced().max())
        return self._hi

    def lo(self) -> float:
        if self._lo is None:
            self._lo = float(self._reduced().min())
        return self._lo


class _Known:
    """A chunk operand of the fused kernel: its extremes as the kernel found them, else
    (the input's, needed only for targets above 1) found from the data when first asked."""

    def __init__(self, a: np.ndarray, lo: float | None = None, hi: float | None = None) -> None:
        self.a, self.dtype, self.size, self._lo, self._hi = a, a.dtype, a.size, lo, hi

    def lo(self) -> float:
        return float(self.a.min()) if self._lo is None else self._lo

    def hi(self) -> float:
        return float(self.a.max()) if self._hi is None else self._hi


def _fits(x: _Operand | _Known, t: _Operand | _Known, log_target: bool, dtype: np.dtype) -> bool:
    """Whether none of torch's intermediate results can overflow on this chunk (finite
    operands, and non-negative targets unless ``log_target``: the caller's float64 sum
    was finite).

    torch computes ``xlogy(t, t)`` and ``exp(t)`` in the target's own dtype and the rest
    (``- t * x``, ``* (t - x)``) in the result dtype; a value that overflows there makes
    its term infinite (or NaN) although the float64 value is finite. Probabilities
    (``t <= 1``) against an input of at most the result dtype's width cannot overflow:
    ``|t x| <= |x|`` and ``|xlogy(t, t)| <= 1/e``. Otherwise bounds from the chunk's
    extremes, with a factor 2 of margin.
    """
    if not x.size or (dtype == np.float64 and t.dtype == np.float64):
        return True
    t_hi = t.hi()
    if not log_target and t_hi <= 1 and x.dtype.itemsize <= dtype.itemsize:
        return True
    limit = float(np.finfo(dtype).max) / 2
    own_limit = float(np.finfo(t.dtype).max) / 2
    x_abs = max(-x.lo(), x.hi())
    if log_target:
        if t_hi > math.log(min(limit, own_limit)):
            return False
        return math.exp(t_hi) * max(1.0, max(-t.lo(), t_hi) + x_abs) < limit
    xlogy = t_hi * math.log(t_hi) if t_hi > 1 else 0.0
    return xlogy < own_limit and t_hi * x_abs + xlogy + 1.0 < limit


def _torch_special(x: np.ndarray, t: np.ndarray, log_target: bool, dtype: np.dtype) -> float | None:
    """The sum of torch's non-finite terms (nan, or ±inf), or None when all are finite."""
    terms = pointwise(x, t, log_target, dtype)
    bad = ~np.isfinite(terms)
    if not bad.any():
        return None
    with np.errstate(invalid="ignore"):
        return float(terms[bad].sum(dtype=np.float64))


def _factors(
    x: np.ndarray,
    t: np.ndarray,
    log_target: bool,
    out: np.ndarray,
    scratch: np.ndarray,
    mask: np.ndarray,
    zeros: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """Two float64 arrays whose elementwise product is the terms of float64 operands:
    ``(log t - x, t)``, or ``(t - x, exp(t))`` with ``log_target``; computed in place
    into ``out`` (and ``scratch``; ``mask``: a boolean buffer).

    ``zeros``: the targets may hold zeros, which get torch's ``xlogy`` rule, 0 against a
    finite input and nan against an infinite or nan one (``0 * x``): their log is taken
    of 1 instead, which is also much faster than NumPy's log of 0.
    """
    if log_target:
        np.subtract(t, x, out=out)
        return out, np.exp(t, out=scratch)
    source = t
    if zeros and np.equal(t, 0, out=mask).any():
        np.copyto(scratch, t)
        np.copyto(scratch, 1.0, where=mask)
        source = scratch
    np.log(source, out=out)
    return np.subtract(out, x, out=out), t


def chunk_sum(x: np.ndarray, t: np.ndarray, log_target: bool, dtype: np.dtype) -> float:
    """The float64 loss sum of one chunk of same-shape 1-D float operands (any dtypes).

    ``dtype`` is the result dtype: it only decides where torch's own terms would overflow
    (so that the NaN/inf pattern stays torch's); the value is that of the data in float64.
    """
    if t.dtype == np.float64 and not log_target:
        return _log_sum(x, t)
    n = x.size
    buf = _buffers(n)
    with np.errstate(all="ignore"):
        # Extremes right after each widening, while the chunk is in cache: zero targets
        # take the xlogy rule, and _fits needs the target's maximum (with log_target, every
        # extreme).
        narrow = dtype != np.float64 or t.dtype != np.float64
        to = _Operand(t, buf.t[:n], buf)
        zeros = not log_target and not to.lo() > 0
        if narrow:
            to.lo(), to.hi()
        xo = _Operand(x, buf.x[:n], buf)
        if narrow and log_target:
            xo.lo(), xo.hi()
        t64, x64, a, b = to.a64, xo.a64, buf.a[:n], buf.b[:n]
        total = dot(*_factors(x64, t64, log_target, a, b, buf.m[:n], zeros))
        if math.isfinite(total) and _fits(xo, to, log_target, dtype):
            return total
    special = _torch_special(x, t, log_target, dtype)
    return total if special is None else special


def _log_sum(x: np.ndarray, t: np.ndarray) -> float:
    """:func:`chunk_sum` of float64 targets (so a float64 result) without ``log_target``:
    NumPy's ``log`` of the targets, then one pass (:func:`kernel.log_lanes`) that subtracts,
    multiplies and sums in 64 lanes a block of 4096 (where NumPy would take three passes), applying the
    ``xlogy`` rule to zero targets. NumPy's ``log`` of 0 is several times slower than of
    other values: after a chunk with zero targets, this thread's next chunks take the
    logarithm of 1 in their place (which is only faster; the result is the same)."""
    n = t.size
    buf = _buffers(n)
    with np.errstate(all="ignore"):
        source, seen = t, False
        if getattr(_LOCAL, "zeros", False) and np.equal(t, 0, out=buf.m[:n]).any():
            source, seen = buf.b[:n], True
            np.copyto(source, t)
            np.copyto(source, 1.0, where=buf.m[:n])
        lanes, zeros = kernel.log_lanes(np.log(source, out=buf.a[:n]), x, t)
        _LOCAL.zeros = seen or zeros > 0
        total = float(lanes.sum())  # pairwise, over sums of 64 terms at most
    if math.isfinite(total):
        return total
    special = _torch_special(x, t, False, np.dtype(np.float64))
    return total if special is None else special


def flat_pair(x: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both operands flattened in row-major order (copied only if they are not
    C-contiguous): the bits of a loss then depend on the values and the shape, never on
    the memory layout or on how the rows were cut into blocks."""
    return np.ascontiguousarray(x).reshape(-1), np.ascontiguousarray(t).reshape(-1)


def partial_sums(
    x: np.ndarray,
    t: np.ndarray,
    log_target: bool,
    dtype: np.dtype,
    threads: int | None = None,
    chunk: int = CHUNK,
) -> list[float]:
    """One float64 partial sum per ``chunk`` elements of same-shape operands (flattened).

    The partials depend only on the data and ``chunk``, never on ``threads``.
    """
    xf, tf = flat_pair(x, t)
    dtype = np.dtype(dtype)
    starts = range(0, xf.size, chunk)
    threads = _threads(threads)
    if threads == 1 or xf.size < PARALLEL_MIN:
        return _run(xf, tf, starts, log_target, dtype, chunk)

    # Each worker takes a contiguous run of chunks; the partials keep their chunk order.
    bounds = np.linspace(0, len(starts), threads + 1).astype(int)

    def work(k: int) -> list[float]:
        return _run(xf, tf, starts[bounds[k] : bounds[k + 1]], log_target, dtype, chunk)

    return [p for run in _pool(threads).map(work, range(threads)) for p in run]


def _run(
    xf: np.ndarray, tf: np.ndarray, starts: range, log_target: bool, dtype: np.dtype, chunk: int
) -> list[float]:
    """The partial sums of the chunks at ``starts``: by the fused kernel (one pass each)
    where it applies, else, and for chunks it flags, by :func:`chunk_sum`."""
    if not starts:
        return []
    fused = not log_target and kernel.fused_pair(xf.dtype, tf.dtype)
    rows, flagged = None, None
    if fused:
        end = min(starts[-1] + chunk, xf.size)
        rows = kernel.chunk_table(xf[starts[0] : end], tf[starts[0] : end], chunk)
        flagged = kernel.flagged(rows)
    parts = []
    for k, i in enumerate(starts):
        x, t = xf[i : i + chunk], tf[i : i + chunk]
        value = None
        if rows is not None and flagged is not None and not flagged[k]:
            value = _fused_value(rows[k], x, t, dtype)
        parts.append(chunk_sum(x, t, log_target, dtype) if value is None else value)
    return parts


def _fused_value(row: np.ndarray, x: np.ndarray, t: np.ndarray, dtype: np.dtype) -> float | None:
    """A chunk's sum from its row of :func:`kernel.chunk_table` (one it did not flag): the
    exact sum of its lanes, or None where torch's terms would overflow in its dtypes."""
    total = fsum_or_inf(row[: kernel.LANES].tolist())
    tk = _Known(t, 0.0, float(row[kernel.LANES]))
    return total if math.isfinite(total) and _fits(_Known(x), tk, False, dtype) else None


def column_partials(
    pairs: list[tuple[np.ndarray, np.ndarray]],
    log_target: bool,
    dtype: np.dtype,
    threads: int | None = None,
) -> list[float]:
    """:func:`partial_sums` of several pairs of same-shape arrays (table columns), in
    order. Several pairs run one per thread; a single pair is split across the threads.
    Either way the partials are the same."""
    threads = _threads(threads)
    if threads == 1 or len(pairs) == 1:
        return [p for x, t in pairs for p in partial_sums(x, t, log_target, dtype, threads)]

    def one(pair: tuple[np.ndarray, np.ndarray]) -> list[float]:
        return partial_sums(pair[0], pair[1], log_target, dtype, 1)

    return [p for part in _pool(threads).map(one, pairs) for p in part]


def _broadcast_blocks(
    x: np.ndarray, t: np.ndarray, size: int
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Same-shape blocks of broadcast ``x`` and ``t``, in row-major order: slices of about
    ``size`` elements along the first axis, materialised one at a time."""
    shape = np.broadcast_shapes(x.shape, t.shape)
    bx, bt = np.broadcast_to(x, shape), np.broadcast_to(t, shape)
    if not shape:
        yield bx, bt
        return
    per = max(1, size // max(1, math.prod(shape[1:])))
    for i in range(0, shape[0], per):
        yield np.ascontiguousarray(bx[i : i + per]), np.ascontiguousarray(bt[i : i + per])


class Accumulator:
    """The loss sum over blocks of rows that arrive one after another (a stream).

    Blocks are cut into chunks at fixed positions of the whole flattened data
    (a block's tail waits for the next block), so the result has the same bits
    as :func:`total_loss` on everything at once, whatever the block sizes.
    Broadcast operands are materialised a slice at a time.
    """

    def __init__(self, log_target: bool, threads: int | None = None, chunk: int = CHUNK) -> None:
        self.log_target = log_target
        self.threads = threads
        self.chunk = chunk
        self.partials: list[float] = []
        self._carry: tuple[np.ndarray, np.ndarray] | None = None
        self._dtype: np.dtype = np.dtype(np.float64)

    def add(self, x: np.ndarray, t: np.ndarray, dtype: np.dtype) -> None:
        self._dtype = np.dtype(dtype)
        if x.shape != t.shape:
            for bx, bt in _broadcast_blocks(x, t, 8 * self.chunk):
                self.add(bx, bt, dtype)
            return
        xf, tf = flat_pair(x, t)
        start = 0
        if self._carry is not None:
            # Complete the chunk left open by the previous block (a small copy).
            cx, ct = self._carry
            start = min(self.chunk - cx.size, xf.size)
            cx, ct = np.concatenate([cx, xf[:start]]), np.concatenate([ct, tf[:start]])
            self._carry = None
            if cx.size < self.chunk:
                self._carry = (cx, ct)
                return
            self.partials += partial_sums(cx, ct, self.log_target, dtype, 1, self.chunk)
        xf, tf = xf[start:], tf[start:]
        whole = xf.size - xf.size % self.chunk
        if whole:
            self.partials += partial_sums(
                xf[:whole], tf[:whole], self.log_target, dtype, self.threads, self.chunk
            )
        if whole < xf.size:
            self._carry = (xf[whole:].copy(), tf[whole:].copy())

    def _flush(self) -> None:
        if self._carry is not None:
            x, t = self._carry
            self.partials += partial_sums(x, t, self.log_target, self._dtype, 1, self.chunk)
            self._carry = None

    def total(self) -> float:
        self._flush()
        return combine(self.partials)


def total_loss(
    x: np.ndarray,
    t: np.ndarray,
    log_target: bool,
    dtype: np.dtype,
    threads: int | None = None,
    chunk: int = CHUNK,
) -> float:
    """The float64 sum of the loss over broadcast ``x`` and ``t`` (float64 terms)."""
    acc = Accumulator(log_target, threads, chunk)
    acc.add(x, t, np.dtype(dtype))
    return acc.total()


def _rows_of_block(x: np.ndarray, t: np.ndarray, log_target: bool, dtype: np.dtype) -> np.ndarray:
    """float64 row sums of one same-shape 2-D block, torch's pattern for non-finite rows."""
    rows, width = x.shape
    n = x.size
    buf = _buffers(n)
    with np.errstate(all="ignore"):
        to = _Operand(t.reshape(-1), buf.t[:n], buf)
        xo = _Operand(x.reshape(-1), buf.x[:n], buf)
        x64, t64, a, b = xo.a64, to.a64, buf.a[:n], buf.b[:n]
        zeros = not log_target and not to.lo() > 0
        f, g = _factors(x64, t64, log_target, a, b, buf.m[:n], zeros)
        sums = row_dots(f.reshape(rows, width), g.reshape(rows, width))
        if np.isfinite(sums).all() and _fits(xo, to, log_target, dtype):
            return sums
    # Torch's terms decide which rows are nan or ±inf.
    with np.errstate(all="ignore"):
        torch_terms = pointwise(x, t, log_target, dtype)
        bad = ~np.isfinite(torch_terms)
        special = np.where(bad, torch_terms, 0).sum(axis=-1, dtype=np.float64)
    return np.where(bad.any(axis=-1), special, sums)


def row_sums(
    x: np.ndarray,
    t: np.ndarray,
    log_target: bool,
    dtype: np.dtype,
    threads: int | None = None,
    scale: float = 1.0,
) -> np.ndarray:
    """The KL of each row: the loss summed over the last axis, exactly, rounded once.

    Parameters
    ----------
    x, t : numpy.ndarray
        Input (log q) and target (p, or log p with ``log_target``) of any float dtypes,
        of the same shape or broadcastable (``np.broadcast_shapes``).
    log_target : bool
        Whether ``t`` holds log-probabilities.
    dtype : numpy.dtype
        The result dtype (torch's :func:`~.pointwise.result_dtype` of the operands).
    threads : int, optional
        Threads to use; the values do not depend on it.
    scale : float, optional
        A factor applied to the float64 values before their rounding (distillation's
        ``T^2``), so that a scaled row is still rounded once.

    Returns
    -------
    numpy.ndarray
        Of ``dtype`` and the broadcast shape without its last axis:
        :math:`\\sum_j t_j (\\log t_j - x_j)` (or :math:`\\sum_j e^{t_j} (t_j - x_j)`)
        with every term from ``t`` and ``x`` widened to float64, summed in float64
        (pairwise) and rounded once: within 1 ulp of ``dtype`` of the float64 value.
        A zero target contributes 0 against a finite input (``xlogy``); a row where any of
        torch's terms is not finite gets torch's value (nan or ±inf). An empty last axis
        gives 0.

    Notes
    -----
    Temporaries are slices of about :data:`CHUNK` elements, so memory beyond the result
    is bounded by the caller's block, never by the data. A 0-d or 1-d broadcast shape is
    one row.
    """
    x, t = np.asarray(x), np.asarray(t)
    dtype = np.dtype(dtype)
    shape = np.broadcast_shapes(x.shape, t.shape) or (1,)
    width, lead = shape[-1], shape[:-1]
    out = np.zeros(math.prod(lead), dtype=np.float64)
    if width and out.size:
        # Broadcast operands are materialised a slice of rows at a time.
        blocks = (
            [(np.ascontiguousarray(x), np.ascontiguousarray(t))]
            if x.shape == t.shape == shape
            else _broadcast_blocks(x.reshape(x.shape or (1,)), t, 8 * CHUNK)
        )
        done = 0
        for bx, bt in blocks:
            sums = _same_shape_rows(
                bx.reshape(-1, width), bt.reshape(-1, width), log_target, dtype, threads
            )
            out[done : done + sums.size] = sums
            done += sums.size
    with np.errstate(over="ignore", invalid="ignore"):
        return (out * scale if scale != 1.0 else out).astype(dtype).reshape(lead)


def _same_shape_rows(
    x: np.ndarray, t: np.ndarray, log_target: bool, dtype: np.dtype, threads: int | None
) -> np.ndarray:
    """float64 row sums of C-contiguous 2-D operands, in slices of about CHUNK elements
    (one row per task, so the values do not depend on the threads)."""
    rows, width = x.shape
    out = np.empty(rows, dtype=np.float64)
    per = max(1, CHUNK // width)

    def one(i: int) -> None:
        out[i : i + per] = _rows_of_block(x[i : i + per], t[i : i + per], log_target, dtype)

    starts = range(0, rows, per)
    threads = _threads(threads)
    if threads == 1 or x.size < PARALLEL_MIN:
        for i in starts:
            one(i)
    else:
        list(_pool(threads).map(one, starts))
    return out


_POOLS: dict[int, ThreadPoolExecutor] = {}
_POOL_PREFIX = "kldiv-engine"


def _pool(threads: int) -> ThreadPoolExecutor:
    """A long-lived pool per thread count: starting threads on every call would cost more
    than a small input's whole sum."""
    pool = _POOLS.get(threads)
    if pool is None:
        # Imported here: small inputs never need it, and the CLI starts faster without it.
        from concurrent.futures import ThreadPoolExecutor

        pool = _POOLS[threads] = ThreadPoolExecutor(threads, thread_name_prefix=_POOL_PREFIX)
    return pool


if hasattr(os, "register_at_fork"):
    # A forked child has none of the parent's threads (waiting on them would hang): it
    # starts its own pools.
    os.register_at_fork(after_in_child=_POOLS.clear)
