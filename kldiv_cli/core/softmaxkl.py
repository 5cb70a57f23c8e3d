r"""Distillation's KL on logits, row by row in one pass: the KL of ``softmax(t / T)``
against ``log_softmax(s / T)`` without materialising either, compiled or in NumPy, same bits.

Per row, with the logits widened exactly to float64, ``zt = t/T - max(t/T)``,
``zs = s/T - max(s/T)`` and ``nu = zs - zt``:

.. math::

    W = \sum_j e^{zt_j}, \quad N = \sum_j e^{zt_j} \nu_j, \quad
    B = \sum_j e^{zt_j} \operatorname{expm1}(\nu_j), \qquad
    \mathrm{KL} = \operatorname{log1p}(B / W) - N / W,

which is :math:`\sum_j p_j (\log p_j - \log q_j)` exactly (``B / W = S_s / S_t - 1``
with ``S`` the sums of ``e^z``). Unlike ``log S_s - log S_t`` of two rounded sums,
``B`` carries no cancellation: on near-identical rows (a teacher within ``1e-4`` of its
student) both ``N / W`` and ``log1p(B / W)`` are about the mean of ``nu``, their error is
a few float64 ulps of it, and the KL (its square) keeps a relative error far below
float32's ulp. A rounding in ``W`` moves both terms alike and cancels to first order.

``exp`` and ``expm1`` are kldiv's own (a 16-entry table of ``2^(j/16)`` and a degree-7
minimax polynomial on ``|r| <= ln2/32``, see ``softmaxkl.c``), so that the compiled kernel
and :func:`_numpy_lanes` perform the same IEEE operations in the same order and give the
same bits on any machine. Element ``j`` of a row goes to lane ``j % 16``, each lane is
summed in order, and the 16 lanes of each sum are added by a fixed tree here, for both.

``zt`` is floored at -708: a teacher class below ``e^-708`` of the row's largest (a logit
masked with -1e9, a row spanning thousands) counts as ``e^-708``, which moves the KL by less
than ``n e^-708 |nu|`` (nothing a float32 or float16 result can show) and keeps
``e^{zt} expm1(nu) = e^{zs} - e^{zt}`` finite however far apart the rows are. Rows the
kernel does not take — a NaN or ``+inf`` on either side, a student ``-inf`` (the KL is
``+inf``, or NaN against a masked teacher class: torch's answers), a teacher row of ``-inf``
only, an empty row — are reported, for the caller to compute another way. A teacher class
masked with ``-inf`` (probability 0) is taken, as the floor of ``zt`` takes it. ``KLDIV_KERNEL=numpy`` forces the NumPy steps
(``generic``, ``avx2`` or ``avx512`` a compiled variant). The library is loaded on the
first large block; small inputs take the NumPy steps and never load it.
"""

from __future__ import annotations

import os
import threading
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .engine import default_threads
from .half import widen

if TYPE_CHECKING:
    from numpy.typing import NDArray

__all__ = [
    "SMALL",
    "TABLE_VALUES",
    "accelerator",
    "lanes",
    "loaded",
    "make_table",
    "reset",
    "row_kl",
    "table",
    "takes",
]

LANES = 16
#: Doubles per row from the kernel: the 16 lanes of W, of N and of B, and 1.0 for a row
#: it does not take.
ROW_OUT = 3 * LANES + 1
#: Below this many elements the NumPy steps cost less than loading the library.
SMALL = 1 << 15
#: Elements per task shared among threads (whole rows, at least one).
TASK = 1 << 17
_ISAS = {"generic": 0, "avx2": 1, "avx512": 2}
_KINDS = {np.dtype(np.float16): 0, np.dtype(np.float32): 1}
_TH, _TL, _INVL, _STEP, _QC = 0, 16, 32, 33, 34
_SHIFT = float.fromhex("0x1.8p52")
#: Elements per piece of the NumPy steps (a multiple of the lanes).
_PIECE = 1 << 13
_CLAMP = 708.0

_POOLS: dict[int, _Pool] = {}


def takes(s_dtype: np.dtype, t_dtype: np.dtype) -> bool:
    """Whether the kernel takes logits of these dtypes: float16 and float32 (their KL is
    returned as float16 or float32, so a float64 computation has ample slack; float64
    logits keep the materialised float64 path, whose result has none)."""
    return np.dtype(s_dtype) in _KINDS and np.dtype(t_dtype) in _KINDS


def _floats(text: str) -> list[float]:
    return [float.fromhex(h) for h in text.split()]


#: softmaxkl.c's table, made by :func:`make_table` (a test checks they agree): ``2^(j/16)``
#: for j < 16 in a high and a low part, ``16/ln2`` and ``ln2/16`` (each rounded once), and the
#: coefficients of ``q``, lowest degree first: a minimax fit (Remez, exact rational
#: arithmetic) of ``(expm1(r) - r) / r^2`` on ``|r| <= 1.0001 ln2/32``; with them rounded to
#: float64, ``r + r^2 q(r)`` is within 2^-58.8 ``|r|`` of ``expm1(r)`` (a test checks it).
TABLE_VALUES = _floats(
    "0x1p+0 0x1.0b5586cf9890fp+0 0x1.172b83c7d517bp+0 0x1.2387a6e756238p+0"
    " 0x1.306fe0a31b715p+0 0x1.3dea64c123422p+0 0x1.4bfdad5362a27p+0 0x1.5ab07dd485429p+0"
    " 0x1.6a09e667f3bcdp+0 0x1.7a11473eb0187p+0 0x1.8ace5422aa0dbp+0 0x1.9c49182a3f090p+0"
    " 0x1.ae89f995ad3adp+0 0x1.c199bdd85529cp+0 0x1.d5818dcfba487p+0 0x1.ea4afa2a490dap+0"
    " 0x0p+0 0x1.8a62e4adc610bp-54 -0x1.19041b9d78a76p-55 0x1.9b07eb6c70573p-54"
    " 0x1.6f46ad23182e4p-55 0x1.ada0911f09ebcp-55 0x1.d4397afec42e2p-56 0x1.6324c054647adp-54"
    " -0x1.bdd3413b26456p-54 -0x1.41577ee04992fp-55 0x1.6e9f156864b27p-54"
    " 0x1.c7c46b071f2bep-56 0x1.7a1cd345dcc81p-54 0x1.11065895048ddp-55"
    " 0x1.2ed02d75b3707p-55 -0x1.e9c23179c2893p-54"
    " 0x1.71547652b82fep+4 0x1.62e42fefa39efp-5"
    " 0x1.0000000000003p-1 0x1.5555555555555p-3 0x1.55555554acf28p-5 0x1.11111110f1079p-7"
    " 0x1.6c181f969199dp-10 0x1.a01adfe2003cbp-13"
)
_TABLE = np.array(TABLE_VALUES, dtype=np.float64)


def table() -> NDArray[np.float64]:
    """:data:`TABLE_VALUES` as the array the kernel reads."""
    return _TABLE


def make_table() -> list[float]:
    """The powers of 2 and the constants of :data:`TABLE_VALUES`, from 40-digit decimals."""
    from decimal import Context, Decimal
    from fractions import Fraction

    ctx = Context(prec=40)
    powers = [ctx.power(Decimal(2), ctx.divide(Decimal(j), Decimal(16))) for j in range(16)]
    hi = [float(p) for p in powers]
    lo = [float(Fraction(p) - Fraction(h)) for p, h in zip(powers, hi)]
    ln2 = ctx.ln(Decimal(2))
    return [*hi, *lo, float(ctx.divide(Decimal(16), ln2)), float(ctx.divide(ln2, Decimal(16)))]


@lru_cache(maxsize=1)
def _library() -> tuple[Any, int, str] | None:
    """This kernel's entry point in the library :mod:`.kernel` loads (one rule for
    ``KLDIV_KERNEL`` and the CPU's instruction set), the instruction set and its name;
    None: the NumPy steps (no library, a forced fallback, or a library built before this
    kernel existed)."""
    import ctypes

    from . import kernel

    found = kernel.accelerator()
    if not found.startswith("accelerator: "):
        return None
    name = found.removeprefix("accelerator: ")
    try:
        entry = ctypes.CDLL(str(Path(kernel.__file__).with_name("klkernel.so"))).skl_rows
    except (OSError, AttributeError):
        return None
    entry.restype = ctypes.c_int
    entry.argtypes = [
        ctypes.c_void_p,
        ctypes.c_int,
        ctypes.c_void_p,
        ctypes.c_int,
        ctypes.c_int64,
        ctypes.c_int64,
        ctypes.c_double,
        ctypes.c_void_p,
        ctypes.c_void_p,
        ctypes.c_int,
    ]
    return entry, _ISAS[name], name


def reset() -> None:
    """Forget the loaded kernels: the next block reads ``KLDIV_KERNEL`` again (for tests)."""
    from . import kernel

    _library.cache_clear()
    kernel.reset()


def loaded() -> bool:
    """Whether the library has been looked for (the first large block does it)."""
    return _library.cache_info().currsize > 0


def accelerator() -> str:
    """Which kernel computes the rows: ``"accelerator: avx512"`` (or avx2, generic), or
    ``"numpy fallback (no compiled kernel)"``."""
    found = _library()
    return "numpy fallback (no compiled kernel)" if found is None else f"accelerator: {found[2]}"


def lanes(
    s: np.ndarray, t: np.ndarray, temperature: float = 1.0, threads: int | None = None
) -> NDArray[np.float64]:
    """The kernel's output for 2-D C-contiguous logits ``s`` and ``t`` of one shape
    (dtypes as :func:`takes` allows): :data:`ROW_OUT` doubles per row, the 16 lanes of
    ``W``, ``N`` and ``B``, then 1.0 for a row not taken (its lanes 0). The same bits
    for any ``threads``, compiled or not."""
    rows, width = s.shape
    out = np.empty((rows, ROW_OUT), dtype=np.float64)
    if not rows:
        return out
    found = None if s.size < SMALL and not loaded() else _library()
    per = max(1, TASK // max(1, width))
    starts = list(range(0, rows, per))

    def run(i: int) -> None:
        block = slice(i, i + per)
        if found is None or not _compiled(found, s[block], t[block], temperature, out[block]):
            _numpy_lanes(s[block], t[block], temperature, out[block])

    count = default_threads() if threads is None else max(1, threads)
    count = min(count, len(starts))
    if count == 1 or threading.current_thread().name.startswith("kldiv-"):
        for i in starts:
            run(i)
    else:
        _pool(count).map(run, starts)
    return out


def _compiled(
    found: tuple[Any, int, str], s: np.ndarray, t: np.ndarray, temperature: float, out: np.ndarray
) -> bool:
    entry, isa, _ = found
    rows, width = s.shape
    status = entry(
        s.ctypes.data,
        _KINDS[s.dtype],
        t.ctypes.data,
        _KINDS[t.dtype],
        rows,
        width,
        float(temperature),
        table().ctypes.data,
        out.ctypes.data,
        isa,
    )
    return bool(status == 0)


class _Pool:
    """Daemon threads that run the calls :meth:`map` hands out: ``concurrent.futures``
    would import ``logging``, milliseconds of every large job's start."""

    def __init__(self, threads: int) -> None:
        import queue

        self._calls: queue.SimpleQueue[tuple[Any, ...]] = queue.SimpleQueue()
        for k in range(threads):
            name = f"kldiv-softmaxkl-{k}"
            threading.Thread(target=self._work, name=name, daemon=True).start()

    def _work(self) -> None:
        while True:
            fn, arg, results, index, done = self._calls.get()
            try:
                results[index] = (fn(arg), None)
            except BaseException as exc:  # raised in the caller
                results[index] = (None, exc)
            done.release()

    def map(self, fn: Any, args: list[int]) -> None:
        """``fn(arg)`` for every ``arg``, on the pool's threads; the first error is raised."""
        done = threading.Semaphore(0)
        results: list[tuple[Any, BaseException | None]] = [(None, None)] * len(args)
        for index, arg in enumerate(args):
            self._calls.put((fn, arg, results, index, done))
        for _ in args:
            done.acquire()
        for _, error in results:
            if error is not None:
                raise error


def _pool(threads: int) -> _Pool:
    """A long-lived pool per thread count (a block of rows takes less than starting threads)."""
    pool = _POOLS.get(threads)
    if pool is None:
        pool = _POOLS[threads] = _Pool(threads)
    return pool


if hasattr(os, "register_at_fork"):
    # A forked child has none of the parent's threads: it starts its own pools.
    os.register_at_fork(after_in_child=_POOLS.clear)


def _tree(a: NDArray[np.float64]) -> NDArray[np.float64]:
    """The 16 lanes of each row added by a fixed tree: (l_k + l_{k+8}), then halves again."""
    while a.shape[-1] > 1:
        half = a.shape[-1] // 2
        a = a[..., :half] + a[..., half:]
    return a[..., 0]


def row_kl(
    s: np.ndarray, t: np.ndarray, temperature: float = 1.0, threads: int | None = None
) -> tuple[NDArray[np.float64], NDArray[np.bool_]]:
    """The KL of ``softmax(t / T)`` against ``log_softmax(s / T)`` along each row of
    2-D C-contiguous float16/float32 logits of one shape, in float64, and which rows
    were taken (the others are NaN here: compute them another way).

    Every row's value depends on that row alone: the same for any ``threads`` and any
    grouping of the rows into blocks, compiled or not.
    """
    out = lanes(s, t, temperature, threads)
    taken = out[:, 3 * LANES] == 0.0
    w = _tree(out[:, :LANES])
    n = _tree(out[:, LANES : 2 * LANES])
    b = _tree(out[:, 2 * LANES : 3 * LANES])
    with np.errstate(all="ignore"):
        kl = np.log1p(b / w) - n / w
    kl[~taken] = np.nan
    return kl, taken


def _parts(
    x: NDArray[np.float64], tab: NDArray[np.float64]
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """``2^m``, ``th`` and ``V`` of ``x`` (softmaxkl.c's ``parts8``: ``k`` and its table
    index from the low bits of ``x·16/ln2 + 1.5·2^52``)."""
    ks = x * tab[_INVL]
    ks += _SHIFT
    kd = ks - _SHIFT
    r = x - kd * tab[_STEP]
    bits = ks.view(np.int64)
    c = tab[_QC : _QC + 6]
    r2 = r * r
    r4 = r2 * r2
    a = c[0] + c[1] * r
    b = c[2] + c[3] * r
    d = c[4] + c[5] * r
    q = (a + b * r2) + d * r4
    p = r + r2 * q
    j = bits & 15
    th = np.take(tab[_TH : _TH + 16], j)
    v = np.take(tab[_TL : _TL + 16], j)
    v += th * p
    # (bits >> 4) + 1023 ends in m + 1023: the bits of 1.5·2^52 >> 4 end in 12 zeros.
    scale = ((bits >> 4) + 1023) << 52
    return scale.view(np.float64), th, v


def _numpy_lanes(
    s: np.ndarray, t: np.ndarray, temperature: float, out: NDArray[np.float64]
) -> None:
    """:func:`lanes` of a block of rows with NumPy: softmaxkl.c's operations, in its order,
    on pieces of at most :data:`_PIECE` elements (whole rows, or a wide row's consecutive
    pieces), whose temporaries stay in cache and are never fresh pages."""
    rows, width = s.shape
    with np.errstate(all="ignore"):
        finite = np.isfinite(s).all(axis=1) & (np.isfinite(t) | (t == -np.inf)).all(axis=1)
        if width:
            ms, mt = s.max(axis=1).astype(np.float64), t.max(axis=1).astype(np.float64)
        else:
            ms = mt = np.zeros(rows)
        if temperature != 1.0:
            ms, mt = ms / temperature, mt / temperature
        ms, mt = ms + 0.0, mt + 0.0
        taken = finite & (mt > -np.inf) & (width > 0)
    out[:] = 0.0
    per = max(1, _PIECE // max(1, width))
    piece = (
        max(1, width) if per > 1 else _PIECE
    )  # a multiple of the lanes: only a row's last has a tail
    for i in range(0, rows, per):
        for j in range(0, width, piece):
            block = slice(i, i + per), slice(j, j + piece)
            terms = _numpy_terms(s[block], t[block], temperature, ms[i : i + per], mt[i : i + per])
            _add_lanes(terms, out[i : i + per])
    out[:, 3 * LANES] = np.where(taken, 0.0, 1.0)
    out[~taken, : 3 * LANES] = 0.0


def _numpy_terms(
    s: np.ndarray, t: np.ndarray, temperature: float, ms: np.ndarray, mt: np.ndarray
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """The terms of ``W``, ``N`` and ``B`` of a piece of rows (softmaxkl.c's ``one``)."""
    tab = table()
    s64, t64 = widen(s), widen(t)
    with np.errstate(all="ignore"):
        if temperature != 1.0:
            s64, t64 = s64 / temperature, t64 / temperature
        zt = np.maximum(t64 - mt[:, None], -_CLAMP)
        nu = (s64 - ms[:, None]) - zt
        scale, th, v = _parts(zt, tab)
        et = (th + v) * scale
        scale, th, v = _parts(np.maximum(nu, -_CLAMP), tab)
        em = (th * scale - 1.0) + v * scale
        return et, et * nu, et * em


def _add_lanes(terms: tuple[NDArray[np.float64], ...], out: NDArray[np.float64]) -> None:
    """Each term of a piece into its lane (element ``j`` of a row to lane ``j % 16``), after
    the sums so far in ``out``, in order: the running sums are the first row reduced."""
    rows, width = terms[0].shape
    whole = width - width % LANES
    buf = np.empty((rows, 1 + whole // LANES, LANES))
    for which, term in enumerate(terms):
        into = out[:, which * LANES : (which + 1) * LANES]
        buf[:, 0] = into
        buf[:, 1:] = term[:, :whole].reshape(rows, -1, LANES)
        np.add.reduce(buf, axis=1, out=into)
        into[:, : width - whole] += term[:, whole:]
