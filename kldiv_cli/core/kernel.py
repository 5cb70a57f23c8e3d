"""The fused exact kernel: each chunk's loss sum in one pass, compiled or in NumPy, same bits.

Per element, ``t`` and ``x`` are widened exactly to float64 and the term ``t * (log t - x)``
is formed with a logarithm of kldiv's own, so that it is the same on every machine:
``t = 2^e m`` with ``m`` in [0.75, 1.5); ``m`` against the nearest of the points
``c_i = 1 + (i - 5)/21`` (``c_5 = 1``, so ``log t`` near 1 keeps its relative accuracy)
through a 29-bit reciprocal, which makes ``r = m inv_i - 1`` exact (float32 and float16
targets have 24-bit mantissas; float64 targets are not taken, see :func:`fused_pair`);
``log1p(r)`` as ``r + r^2 q(r)``, ``q`` a degree-7 fit evaluated by Estrin's scheme
(``|r| <= 1/32``, error below 2^-55 ``|r|``); and ``e ln2_hi + log(1/inv_i)``, which sums
exactly (the reciprocals were chosen so that their logarithms need no low part), plus
``e ln2_lo``. The result is within about half a float64 ulp of ``log t``, as NumPy's float64
``log``. Element ``j`` of a chunk goes to lane ``j % 16``, each lane is summed in order, and
the chunk's value is the exact sum (``math.fsum``) of its 16 lanes. A ``+0`` target gives
a zero term (torch's ``xlogy`` rule). float64 targets keep NumPy's ``log``; the kernel then
only subtracts, multiplies and sums (:func:`log_lanes`).

Two implementations give the same bits: ``klkernel.c`` (built into a shared library by the
build hook when a C compiler is present; AVX-512, AVX2 or generic code chosen at run time
for the CPU, the same operations in each, no FMA contraction) and :func:`_numpy_chunk`, the
same IEEE operations as whole-array NumPy steps. ``KLDIV_KERNEL=numpy`` forces the NumPy one
(``generic``, ``avx2`` or ``avx512`` a compiled variant). The library is loaded on the first
chunk of a large input; small inputs take the NumPy steps and never load it.

Targets that are negative, ``-0``, infinite or NaN, and inputs that are not finite, are
flagged (:func:`flagged`): the caller sums such chunks with torch's special-value rules.
"""

from __future__ import annotations

import math
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from . import half

if TYPE_CHECKING:
    from numpy.typing import NDArray

__all__ = [
    "BAD",
    "LANES",
    "LOG_BLOCK",
    "LOG_LANES",
    "OUT",
    "SMALL",
    "TABLE_VALUES",
    "accelerator",
    "chunk_table",
    "flagged",
    "fused_pair",
    "log_lanes",
    "make_table",
    "reset",
]

LANES = 16
#: Doubles written per chunk: the 16 lane sums, then the largest target key.
OUT = LANES + 1
#: Lanes and block length of :func:`log_lanes`.
LOG_LANES, LOG_BLOCK = 64, 4096
#: A target key (as float64 bits) at or above this is not a finite non-negative value.
BAD = 0x7FF0000000000000
_TABLE = 16
_KEYS = {np.dtype(np.float16): np.uint16, np.dtype(np.float32): np.uint32}
_ISAS = {"generic": 0, "avx2": 1, "avx512": 2}
_KINDS = {np.dtype(np.float16): 0, np.dtype(np.float32): 1, np.dtype(np.float64): 2}
#: Elements per NumPy step: its buffers stay in the core's cache.
_STEP = 1 << 14
#: Elements per NumPy step of :func:`log_lanes` (16 of its blocks): four passes a step, each
#: a few calls, so longer steps than :data:`_STEP` (the calls' own cost matters).
_LOG_STEP = 1 << 16
#: Below this many elements the NumPy steps cost less than loading the library (ctypes
#: and the shared library take a few milliseconds): small jobs start no slower.
SMALL = 1 << 15

_LOCK = threading.Lock()
_STATE: dict[str, Any] = {}


def fused_pair(x_dtype: np.dtype, t_dtype: np.dtype) -> bool:
    """Whether the kernel takes an input of ``x_dtype`` against targets of ``t_dtype``.

    Inputs of float16, float32 or float64 against float16 or float32 targets. float64
    targets keep NumPy's ``log`` (the engine's other path), so that an input computed as
    ``np.log(t)`` gives exactly 0, as in torch: the table reciprocals are exact only for
    mantissas of 24 bits, and no logarithm of kldiv's own would match NumPy's bits.
    """
    return x_dtype in _KINDS and t_dtype in _KINDS and t_dtype != np.float64


def _parts(*hexes: str) -> list[float]:
    return [float.fromhex(h) for h in hexes]


#: The numerators of the table's reciprocals, ``inv_i = k_i / 2^28`` for ``i < 5`` (above 1),
#: ``k_i / 2^29`` from 5 on, found by ``scripts/kernel_table.py``: ``-log(inv_i)`` is within
#: 2^-61 of a multiple of 2^-42.
RECIPROCALS = (
    *(348384074, 331126897, 312705843, 296712056, 280515518, 536870912, 511470372),
    *(487314752, 471233172, 450008049, 434735221, 417719988, 397850658, 384371851),
    *(376252452, 360341676),
)


def _inverse(i: int) -> float:
    return RECIPROCALS[i] / (1 << (28 if i < 5 else 29))


#: klkernel.c's table, made by :func:`make_table` (a test checks they agree): the
#: reciprocals, ``log(1/inv_i)`` rounded to a multiple of 2^-42, ``ln 2`` in two parts of 42
#: bits, and ``q(r)``'s coefficients, highest degree first (a Chebyshev fit of
#: ``(log1p(r) - r) / r^2`` on ``|r| <= 1/32``, error 2^-55 ``|r|`` in ``log1p(r)``).
TABLE_VALUES = (
    [_inverse(i) for i in range(_TABLE)]
    + _parts(
        *("-0x1.0af3a39bce000p-2 -0x1.addb6d25de000p-3 -0x1.38a1d94f62000p-3").split(),
        *("-0x1.9a38a129f0000p-4 -0x1.6899963378000p-5 0x0p+0").split(),
        *("0x1.8d0ccd31e8000p-5 0x1.8cafeb0020000p-4 0x1.0b1197c480000p-3").split(),
        *("0x1.6974bf4d56000p-3 0x1.b02b86bcea000p-3 0x1.00f814d5ce000p-2").split(),
        *("0x1.32df91c3ea000p-2 0x1.562ab12a8c000p-2 0x1.6c077eff52000p-2").split(),
        *("0x1.98461f6a58000p-2").split(),
    )
    + _parts("0x1.62e42fefa38p-1", "0x1.ef35793c768p-45")
    + _parts(
        *("0x1.c7d6d69f5669p-4 -0x1.006683cfff5f5p-3 0x1.24923a9360504p-3").split(),
        *("-0x1.5555454f4fa3dp-3 0x1.9999999a54161p-3 -0x1.000000006690ap-2").split(),
        *("0x1.555555555554ap-2 -0x1.ffffffffffff3p-2").split(),
    )
)


_TABLE_ARRAY = np.array(TABLE_VALUES, dtype=np.float64)


def make_table() -> list[float]:
    """The reciprocals, logarithms and ``ln 2`` parts of :data:`TABLE_VALUES`, computed
    from :data:`RECIPROCALS` to 50 digits."""
    from decimal import Context
    from fractions import Fraction

    ctx = Context(prec=50)
    scale = 1 << 42
    logs = [ctx.minus(ctx.ln(ctx.create_decimal_from_float(_inverse(i)))) for i in range(_TABLE)]
    ln2 = ctx.ln(2)
    ln2_hi = Fraction(round(ln2 * scale), scale)
    rest = Fraction(ln2) - ln2_hi
    unit = Fraction(2) ** (math.frexp(float(rest))[1] - 42)  # 42 significant bits
    return [
        *(_inverse(i) for i in range(_TABLE)),
        *(float(Fraction(round(v * scale), scale)) for v in logs),
        float(ln2_hi),
        float(round(rest / unit) * unit),
    ]


def _library() -> tuple[Any, int] | None:
    """The compiled library and the instruction set to run (None: the NumPy fallback)."""
    import ctypes

    choice = os.environ.get("KLDIV_KERNEL", "").strip().lower()
    if choice == "numpy":
        return None
    path = Path(__file__).with_name("klkernel.so")
    # The C signatures, a letter an argument: p pointer, i int, q int64.
    kinds = {"p": ctypes.c_void_p, "i": ctypes.c_int, "q": ctypes.c_int64}
    try:
        lib = ctypes.CDLL(str(path))
        for name, args in (("kl_isa", ""), ("kl_chunks", "pipiqqppi"), ("kl_log_lanes", "ppipqpi")):
            function = getattr(lib, name)
            function.restype = ctypes.c_int
            function.argtypes = [kinds[a] for a in args]
    except (OSError, AttributeError):  # no library, or one built from older sources
        return None
    best = int(lib.kl_isa())
    isa = min(best, _ISAS.get(choice, best))
    return lib, isa


def reset() -> None:
    """Forget the loaded kernel: the next chunk reads ``KLDIV_KERNEL`` again (for tests)."""
    with _LOCK:
        _STATE.clear()


def _state() -> dict[str, Any]:
    """The library, loaded once, on the first large chunk summed."""
    if not _STATE:
        with _LOCK:
            if not _STATE:
                _STATE["library"] = _library()
    return _STATE


def accelerator() -> str:
    """Which kernel sums chunks: ``"accelerator: avx512"`` (or avx2, generic), or
    ``"numpy fallback (no compiled kernel)"``."""
    found = _state()["library"]
    if found is None:
        return "numpy fallback (no compiled kernel)"
    names = {v: k for k, v in _ISAS.items()}
    return f"accelerator: {names[found[1]]}"


def chunk_table(x: np.ndarray, t: np.ndarray, chunk: int) -> NDArray[np.float64]:
    """Each ``chunk`` elements of 1-D ``x`` and ``t`` (dtypes as :func:`fused_pair` takes):
    a row of :data:`OUT` values, the 16 lane sums, then the target of the largest bit
    pattern (read as an unsigned integer of the target's width), widened to float64. Where
    that key's bits (as uint64) are at or above :data:`BAD` (a negative, ``-0``, infinite or
    NaN target), or a lane sum is not finite (an infinite or NaN input, too), the chunk is
    one the fast path cannot take."""
    n = x.size
    out = np.empty((-(-n // chunk), OUT), dtype=np.float64)
    found = None if n < SMALL and not _STATE else _state()["library"]
    table = _TABLE_ARRAY
    if found is not None:
        lib, isa = found
        x, t = np.ascontiguousarray(x), np.ascontiguousarray(t)
        status = lib.kl_chunks(
            x.ctypes.data,
            _KINDS[x.dtype],
            t.ctypes.data,
            _KINDS[t.dtype],
            n,
            chunk,
            table.ctypes.data,
            out.ctypes.data,
            isa,
        )
        if status == 0:
            return out
    for row, start in enumerate(range(0, n, chunk)):
        _numpy_chunk(x[start : start + chunk], t[start : start + chunk], table, out[row])
    return out


def log_lanes(
    log_t: NDArray[np.float64], x: np.ndarray, t: NDArray[np.float64]
) -> tuple[NDArray[np.float64], int]:
    """Sums of ``t * (log_t - x)`` over 1-D float64 targets ``t`` (one chunk): for each block
    of :data:`LOG_BLOCK` elements (the last one ragged), 64 lanes, element ``j`` of the block
    into lane ``j % 64``, each lane in order (64 terms at most: short sums, which the caller
    adds pairwise). Also the number of zero targets (0 if there were zeros but ``log_t`` held
    finite values there, in the NumPy steps). ``log_t`` is NumPy's ``log`` of the targets
    (any value where ``t == 0``: it reads as 0 there, torch's ``xlogy`` rule, which gives NaN
    against an infinite or NaN input); ``x`` is float16, float32 or float64. Compiled
    (``klkernel.c``'s ``kl_log_lanes``) or in NumPy, the same bits."""
    n = t.size
    found = None if n < SMALL and not _STATE else _state()["library"]
    out = np.zeros(-(-n // LOG_BLOCK) * LOG_LANES + 1)
    if found is not None:
        lib, isa = found
        x = np.ascontiguousarray(x)
        args = (log_t.ctypes.data, x.ctypes.data, _KINDS[x.dtype], t.ctypes.data, n)
        if lib.kl_log_lanes(*args, out.ctypes.data, isa) == 0:
            return out[:-1], int(out[-1])
    s, zeros, sums = _scratch(), 0, out[:-1].reshape(-1, LOG_LANES)
    for start in range(0, n, _LOG_STEP):
        m = min(_LOG_STEP, n - start)
        x64 = _widen(x[start : start + m], s.x64[:m])
        ts, a, terms = t[start : start + m], log_t[start : start + m], s.log_terms[:m]
        step = sums[start // LOG_BLOCK : -(-(start + m) // LOG_BLOCK)]
        with np.errstate(all="ignore"):
            np.multiply(ts, np.subtract(a, x64, out=terms), out=terms)
            _block_lanes(terms, step)
            # Only a zero target's -inf logarithm (or a non-finite value) makes a sum so.
            zero = s.zero[:m]
            if not np.isfinite(step).all() and np.equal(ts, 0, out=zero).any():
                zeros += int(np.count_nonzero(zero))
                np.subtract(a, x64, out=terms)
                np.subtract(0.0, x64, out=terms, where=zero)
                np.multiply(ts, terms, out=terms)
                _block_lanes(terms, step)
    return out[:-1], zeros


def _block_lanes(terms: NDArray[np.float64], out: NDArray[np.float64]) -> None:
    """The 64 lane sums of each block of ``terms`` into the rows of ``out``, each lane from
    0 and in order (row by row: NumPy adds along the first axes in order)."""
    whole = terms.size - terms.size % LOG_BLOCK
    blocks = terms[:whole].reshape(-1, LOG_BLOCK // LOG_LANES, LOG_LANES)
    np.add.reduce(blocks, axis=1, out=out[: whole // LOG_BLOCK], initial=0.0)
    if whole < terms.size:
        rest, last = terms[whole:], out[-1]
        rows = rest.size - rest.size % LOG_LANES
        np.add.reduce(rest[:rows].reshape(-1, LOG_LANES), axis=0, out=last, initial=0.0)
        last[: rest.size - rows] += rest[rows:]


def flagged(rows: NDArray[np.float64]) -> NDArray[np.bool_]:
    """Which rows of :func:`chunk_table` the fast path cannot take: a target key at or above
    :data:`BAD`, or a lane sum that is not finite (an infinite or NaN input makes its lane's
    sum so, and so may a sum beyond float64's range)."""
    keys = rows[:, LANES].view(np.uint64)
    return (keys >= BAD) | ~np.isfinite(rows[:, :LANES]).all(axis=1)


def _widen(a: np.ndarray, out: NDArray[np.float64]) -> NDArray[np.float64]:
    if a.dtype == np.float64:
        return a
    if a.dtype == np.float16:
        return half.widen(a, np.float64)
    np.copyto(out, a)
    return out


class _Scratch:
    """One thread's buffers for :func:`_numpy_chunk` and :func:`log_lanes`."""

    def __init__(self) -> None:
        self.f = [np.empty(_STEP) for _ in range(7)]
        self.u = [np.empty(_STEP, dtype=np.uint64) for _ in range(2)]
        self.lanes = np.empty((_STEP // LANES + 1, LANES))
        self.x64, self.log_terms = np.empty(_LOG_STEP), np.empty(_LOG_STEP)
        self.zero = np.empty(_LOG_STEP, dtype=bool)

    def terms(self, n: int) -> NDArray[np.float64]:
        """The buffer for a step's ``n`` terms."""
        return self.lanes[1:].reshape(-1)[:n]

    def add_lanes(self, acc: NDArray[np.float64], n: int) -> None:
        """Add the step's ``n`` terms to the 16 lane sums ``acc``: each lane its elements in
        order, as the compiled loops do (row 0 holds the sums so far)."""
        whole = n - n % LANES
        self.lanes[0] = acc
        np.add.reduce(self.lanes[: 1 + whole // LANES], axis=0, out=acc)
        acc[: n - whole] += self.lanes[1:].reshape(-1)[whole:n]


_LOCAL = threading.local()


def _scratch() -> _Scratch:
    """This thread's buffers."""
    s: _Scratch | None = getattr(_LOCAL, "scratch", None)
    if s is None:
        s = _LOCAL.scratch = _Scratch()
    return s


def _numpy_chunk(
    x: np.ndarray, t: np.ndarray, table: NDArray[np.float64], out: NDArray[np.float64]
) -> None:
    """One chunk's row of :func:`chunk_table`, with NumPy: klkernel.c's operations, in its
    order, one whole-array step at a time."""
    s = _scratch()
    acc = np.zeros(LANES)
    for start in range(0, t.size, _STEP):
        n = min(_STEP, t.size - start)
        f = [b[:n] for b in s.f]
        u = [b[:n] for b in s.u]
        t64 = _widen(t[start : start + n], f[0])
        x64 = _widen(x[start : start + n], f[1])
        with np.errstate(all="ignore"):
            _terms(t64, x64, t64.view(np.uint64), table, f[2:], u, s.terms(n))
        s.add_lanes(acc, n)
    out[:LANES] = acc
    bits = t.view(_KEYS[t.dtype])
    out[LANES] = float(np.array(bits.max(initial=0), dtype=bits.dtype).view(t.dtype))


_MANT = np.uint64(0x000FFFFFFFFFFFFF)
_ONE = np.uint64(0x3FF0000000000000)
_EXP_BIAS = np.uint64(0x4330000000000000)
#: 2^52 + 1023: subtracted from the double spelt by 0x433 and the exponent field.
_UNBIAS = float.fromhex("0x1.00000000003ffp52")
_LN2 = 2 * _TABLE
_Q = 2 * _TABLE + 2


def _terms(
    t64: NDArray[np.float64],
    x64: NDArray[np.float64],
    tb: NDArray[np.uint64],
    table: NDArray[np.float64],
    f: list[NDArray[np.float64]],
    u: list[NDArray[np.uint64]],
    out: NDArray[np.float64],
) -> None:
    """``t * (log t - x)`` into ``out``: the values klkernel.c's ``term1`` computes (the
    same exponent, mantissa and index, from fewer whole-array steps), then its floating-point
    operations in its order."""
    a, b, c, d, e = f
    v, w = u
    # m >= 1.5 (the top mantissa bit) is halved against the entries below 1, e raised.
    np.right_shift(tb, 51, out=w)
    np.bitwise_and(w, 1, out=w)
    np.right_shift(tb, 52, out=v)
    np.add(v, w, out=v)
    np.bitwise_or(v, _EXP_BIAS, out=v)
    np.subtract(v.view(np.float64), _UNBIAS, out=a)  # a: the exponent
    mb = np.bitwise_and(tb, _MANT, out=b.view(np.uint64))
    np.bitwise_or(mb, _ONE, out=mb)
    np.left_shift(w, 52, out=w)
    np.subtract(mb, w, out=mb)  # b: m in [0.75, 1.5)
    np.multiply(b, 21.0, out=d)
    np.subtract(d, 16.0, out=d)
    index = w.view(np.intp)
    np.copyto(index, np.rint(d, out=d), casting="unsafe")  # exact: no ties in range
    np.take(table[:_TABLE], index, out=c, mode="wrap")  # c: the reciprocal
    np.multiply(b, c, out=d)
    np.subtract(d, 1.0, out=d)  # d: r, exact
    q = table[_Q : _Q + 8]
    np.multiply(d, d, out=c)  # c: r^2
    np.multiply(c, c, out=b)  # b: r^4
    np.multiply(d, q[0], out=e)
    np.add(e, q[1], out=e)
    np.multiply(e, c, out=e)
    g = out  # the terms' buffer, free until the last step
    np.multiply(d, q[2], out=g)
    np.add(g, q[3], out=g)
    np.add(e, g, out=e)
    np.multiply(e, b, out=e)  # e: ((c0 r + c1) r^2 + (c2 r + c3)) r^4
    np.multiply(d, q[4], out=g)
    np.add(g, q[5], out=g)
    np.multiply(g, c, out=g)
    np.multiply(d, q[6], out=b)
    np.add(b, q[7], out=b)
    np.add(g, b, out=g)
    np.add(e, g, out=e)  # e: q(r), by Estrin's scheme as in klkernel.c
    np.multiply(c, e, out=c)
    np.add(d, c, out=c)  # c: log1p(r)
    np.multiply(a, table[_LN2 + 1], out=d)  # exact: e has at most 11 bits, ln2_lo 42
    np.add(c, d, out=c)  # c: log1p(r) + e ln2_lo
    np.take(table[_TABLE : 2 * _TABLE], index, out=b, mode="wrap")
    np.multiply(a, table[_LN2], out=a)
    np.add(a, b, out=b)  # b: e ln2_hi + logc, exact
    np.add(b, c, out=b)  # b: log t
    np.subtract(b, x64, out=b)
    np.multiply(t64, b, out=out)
