r"""compare's fused path: the per-row measures of two blocks of logits, one pass per row.

The measures of :mod:`kldiv_cli.core.compare` for rows whose logits are all finite and
span at most 600 (after the temperature), computed by ``cmpkernel.c`` (compiled into
kldiv's accelerator library) or by the same IEEE operations as NumPy steps, in the same
order: the same bits either way, on every machine (``exp``, ``expm1`` and ``log1p`` are
kldiv's own: :func:`exp_`, :func:`expm1_`, :func:`log1p_`, within 2 ulp). With
``z = (x − max x)/T``, ``δ = (y − x − (max y − max x))/T``, ``e = expm1(δ)``,
``S = Σ e^z``, ``C = Σ e^z·e / S``, ``c = log1p(C)``, the log-ratio is
``d = log q − log p = δ − c`` and ``ed = expm1(d) = (e − C)/(1 + C)``; then, with
``L = log1p(ed/2)``, each divergence is a sum of terms that are each ≥ 0:

* KL(p ‖ q) ``= Σ p·(ed − d)`` (``Σ p·ed = Σ q − Σ p = 0``: no cancellation across classes,
  and an error in ``c`` changes it only to second order);
* KL(q ‖ p) ``= Σ p·(ed·d − (ed − d))`` ``(= Σ q·d − Σ q + Σ p)``;
* JS ``= ½ Σ p·((1 + ed)·d − (2 + ed)·L)`` (``= ½ Σ q·d − (p + q)·L``);
* TV ``= ½ Σ p·|ed|``.

A row's terms are summed in :func:`lane_width` lanes (element ``j`` to lane ``j mod w``,
in order), the lanes added by halves, the sum divided by ``S``. Each row depends on itself
alone, so the bits depend on neither the block nor the thread. Top classes and ranks are
those of :func:`~kldiv_cli.core.compare.rank_measures` (compiled: one pass per row). Rows
that are not clean (``±inf``, NaN, a wider span) get :func:`~kldiv_cli.core.compare.pair`
and its companions. The NumPy steps are several times slower than the compiled pass (and
than ``pair``): they exist so that a machine without a C compiler gets the same numbers.
"""

from __future__ import annotations

import ctypes
import threading
from pathlib import Path
from typing import Any

import numpy as np

from .compare import (
    OVERLAP_K,
    Scratch,
    pair,
    rank_measures,
    reference_top,
    row_measures,
    token_measures,
)

__all__ = [
    "SPAN",
    "accelerated",
    "exp_",
    "expm1_",
    "lane_width",
    "log1p_",
    "logit_measures",
    "reference_tops",
    "reset",
    "row_range",
]

LANES = 16
#: The largest span of a row's (tempered) logits taken here: ``e^z`` stays a normal
#: number, and ``expm1(d) = q/p − 1`` finite (``d ≤ SPAN + log V``).
SPAN = 600.0
_KINDS = {np.dtype(np.float32): 1, np.dtype(np.float64): 2}
_LOCK = threading.Lock()
_STATE: dict[str, Any] = {}
_P = ctypes.c_void_p
_I = ctypes.c_int64
_C = ctypes.c_int


def _load() -> tuple[Any, int] | None:
    """cmpkernel.c's functions in the library :mod:`.kernel` loads (one rule for
    ``KLDIV_KERNEL`` and the CPU's instruction set), and the instruction set to run; None:
    the NumPy steps (no library, a forced fallback, or one built without these)."""
    from . import kernel

    found = kernel.accelerator()
    if not found.startswith("accelerator: "):
        return None
    isa = {"generic": 0, "avx2": 1, "avx512": 2}[found.removeprefix("accelerator: ")]
    try:
        lib = ctypes.CDLL(str(Path(kernel.__file__).with_name("klkernel.so")))
        signatures = {
            "cmp_range": [_P, _C, _I, _I, _P],
            "cmp_rows": [_P, _P, _C, _I, _I, _P, _P, ctypes.c_double, _C, _P, _P],
            "cmp_top": [_P, _C, _I, _I, _C, _P],
            "cmp_rank": [_P, _C, _I, _I, _P, _P],
        }
        for name, args in signatures.items():
            fn = getattr(lib, name)
            fn.restype = None
            fn.argtypes = [*args, _C]
    except (OSError, AttributeError):
        return None
    return lib, isa


def _lib() -> tuple[Any, int] | None:
    if not _STATE:
        with _LOCK:
            if not _STATE:
                _STATE["lib"] = _load()
    found: tuple[Any, int] | None = _STATE["lib"]
    return found


def accelerated() -> bool:
    """Whether the compiled passes run (else their NumPy twins: the same bits)."""
    return _lib() is not None


def reset() -> None:
    """Forget the loaded library: the next block reads ``KLDIV_KERNEL`` again (tests)."""
    from . import kernel

    with _LOCK:
        _STATE.clear()
    kernel.reset()


def _ptr(a: np.ndarray) -> int:
    address: int = a.ctypes.data
    return address


def _compiled(*arrays: np.ndarray) -> tuple[Any, int] | None:
    """The library, if it takes these arrays (C-contiguous, one float kind)."""
    found = _lib()
    if found is None:
        return None
    kinds = {a.dtype for a in arrays}
    ok = len(kinds) == 1 and kinds <= _KINDS.keys() and all(a.flags.c_contiguous for a in arrays)
    return found if ok else None


#: Each row's largest and smallest value (float64) and whether it holds a NaN.
Range = tuple[np.ndarray, np.ndarray, np.ndarray]


def row_range(a: np.ndarray) -> Range:
    """:data:`Range` of each row of ``a`` (a ``-0`` largest value counts as ``+0``; the
    values of a row with a NaN are arbitrary)."""
    found = _compiled(a)
    if found is None:
        with np.errstate(invalid="ignore"):
            hi = np.max(a, axis=-1).astype(np.float64) + 0.0
            return hi, np.min(a, axis=-1).astype(np.float64), np.isnan(hi)
    lib, isa = found
    out = np.empty((len(a), 3))
    lib.cmp_range(_ptr(a), _KINDS[a.dtype], len(a), a.shape[1], _ptr(out), isa)
    return out[:, 0] + 0.0, out[:, 1].copy(), out[:, 2] != 0.0


def _ranges(rx: Range, ry: Range, temperature: float) -> tuple[np.ndarray, ...]:
    """The rows the fused path takes (every logit finite on both sides, each side's span
    over ``temperature`` at most :data:`SPAN`), each row's largest ``x`` and largest ``y``
    − largest ``x``."""
    with np.errstate(all="ignore"):
        clean = np.ones(len(rx[0]), dtype=bool)
        for hi, lo, nan in (rx, ry):
            clean &= ~nan & np.isfinite(hi) & np.isfinite(lo) & ((hi - lo) / temperature <= SPAN)
        return clean, rx[0], ry[0] - rx[0]


def reference_tops(
    x: np.ndarray, finite: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`~kldiv_cli.core.compare.reference_top` of ``x``; compiled for the rows
    ``finite`` marks (no NaN)."""
    k = min(OVERLAP_K, x.shape[-1])
    found = _compiled(x)
    if found is None or finite is None or not finite.any():
        return reference_top(x)
    if finite.all():
        tops = _top(x, k, found)
    else:
        tops = np.empty((len(x), k), dtype=np.int64)
        tops[finite] = _top(x[finite], k, found)
        tops[~finite] = reference_top(x[~finite])[1]
    return tops[:, 0].copy(), tops


def _top(x: np.ndarray, k: int, found: tuple[Any, int]) -> np.ndarray:
    lib, isa = found
    x = np.ascontiguousarray(x)
    out = np.empty((len(x), k), dtype=np.int64)
    lib.cmp_top(_ptr(x), _KINDS[x.dtype], len(x), x.shape[1], k, _ptr(out), isa)
    return out


def _ranks(
    x: np.ndarray, y: np.ndarray, top: tuple[np.ndarray, np.ndarray]
) -> dict[str, np.ndarray]:
    """``top1_rank`` and ``top5_overlap`` of clean rows (see
    :func:`~kldiv_cli.core.compare.rank_measures`)."""
    found = _compiled(x, y)
    if found is None:
        return rank_measures(x, y, None, top)
    lib, isa = found
    best, tp = top
    best = np.ascontiguousarray(best, dtype=np.int64)
    rank = np.empty(len(y), dtype=np.int64)
    lib.cmp_rank(_ptr(y), _KINDS[y.dtype], len(y), y.shape[1], _ptr(best), _ptr(rank), isa)
    tq = _top(y, tp.shape[1], found)
    same = (tp[:, :, None] == tq[:, None, :]) & (tp[:, :, None] >= 0)
    common = np.count_nonzero(same.any(axis=-1), axis=-1)
    return {"top1_rank": rank, "top5_overlap": common / tp.shape[1]}


def lane_width(v: int) -> int:
    """Lanes a row of ``v`` classes is summed in: 256 for long rows (each lane adds a
    few dozen terms in order; the lanes then add up by halves), 16 for short ones."""
    return 256 if v >= 2048 else LANES


_U = np.uint64
_SHIFT = float.fromhex("0x1.8p52")
_INV_LN2 = float.fromhex("0x1.71547652b82fep0")
_LN2 = float.fromhex("0x1.62e42fefa38p-1"), float.fromhex("0x1.ef35793c7673p-45")
_LOG_LN2 = float.fromhex("0x1.62e42feep-1"), float.fromhex("0x1.a39ef35793c76p-33")
#: e^r − 1 = r + r² q(r): q's Taylor coefficients 1/2!, …, 1/13!, in pairs (c0 + c1 r).
_Q = [
    (float.fromhex(a), float.fromhex(b))
    for a, b in (
        ("0x1p-1", "0x1.5555555555555p-3"),
        ("0x1.5555555555555p-5", "0x1.1111111111111p-7"),
        ("0x1.6c16c16c16c17p-10", "0x1.a01a01a01a01ap-13"),
        ("0x1.a01a01a01a01ap-16", "0x1.71de3a556c734p-19"),
        ("0x1.27e4fb7789f5cp-22", "0x1.ae64567f544e4p-26"),
        ("0x1.1eed8eff8d898p-29", "0x1.6124613a86d09p-33"),
    )
]
#: fdlibm's log1p: the bounds of 1 + x in [√2/2, √2), then Lg1 … Lg7.
_NEAR = float.fromhex("-0x1.2bec333018867p-2"), float.fromhex("0x1.a827999fcef32p-2")
_LG = [
    float.fromhex(h)
    for h in (
        "0x1.5555555555593p-1",
        "0x1.999999997fa04p-2",
        "0x1.2492494229359p-2",
        "0x1.c71c51d8e78afp-3",
        "0x1.7466496cb03dep-3",
        "0x1.39a09d078c69fp-3",
        "0x1.2f112df3e5244p-3",
    )
]
_UNBIAS = float.fromhex("0x1.00000000003ffp52")


def _expm1_parts(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """cmpkernel.c's ``expm1_parts``: ``2^k`` and ``P = e^r − 1`` of ``x = k ln2 + r``."""
    ks = x * _INV_LN2 + _SHIFT
    kd = ks - _SHIFT
    r = (x - kd * _LN2[0]) - kd * _LN2[1]
    r2 = r * r
    r4 = r2 * r2
    a, b, c, d, e, f = (c0 + c1 * r for c0, c1 in _Q)
    q = (a + b * r2) + (c + d * r2) * r4 + (e + f * r2) * (r4 * r4)
    scale = ((ks.view(_U) + _U(1023)) << _U(52)).view(np.float64)
    return scale, r + r2 * q


def exp_(x: np.ndarray) -> np.ndarray:
    """kldiv's ``e^x`` for ``-1022 ln2 <= x <= 1023 ln2`` (cmpkernel.c's ``exp_``: within
    an ulp or so of the exact value, the same bits compiled or not)."""
    scale, p = _expm1_parts(x)
    out: np.ndarray = (1.0 + p) * scale
    return out


def expm1_(x: np.ndarray) -> np.ndarray:
    """kldiv's ``e^x − 1`` on the same range (cmpkernel.c's ``expm1_``)."""
    scale, p = _expm1_parts(x)
    out: np.ndarray = (scale - 1.0) + scale * p
    return out


def log1p_(x: np.ndarray) -> np.ndarray:
    """kldiv's ``log(1 + x)`` for finite ``x > −1`` (cmpkernel.c's ``log1p_``, fdlibm's
    method)."""
    u = 1.0 + x
    ub = u.view(_U)
    hu = (ub >> _U(32)) + _U(0x3FF00000 - 0x3FE6A09E)
    dk = ((hu >> _U(20)) | _U(0x4330000000000000)).view(np.float64) - _UNBIAS
    c = np.where(dk >= 2.0, 1.0 - (u - x), x - (u - 1.0)) / u
    bits = (((hu & _U(0x000FFFFF)) + _U(0x3FE6A09E)) << _U(32)) | (ub & _U(0xFFFFFFFF))
    near = (x >= _NEAR[0]) & (x < _NEAR[1])
    f = np.where(near, x, bits.view(np.float64) - 1.0)
    c = np.where(near | (dk >= 54.0), 0.0, c)
    dk = np.where(near, 0.0, dk)
    hfsq = 0.5 * f * f
    s = f / (2.0 + f)
    z = s * s
    w = z * z
    t1 = w * (_LG[1] + w * (_LG[3] + w * _LG[5]))
    t2 = z * (_LG[0] + w * (_LG[2] + w * (_LG[4] + w * _LG[6])))
    out: np.ndarray = s * (hfsq + (t2 + t1)) + (dk * _LOG_LN2[1] + c) - hfsq + f + dk * _LOG_LN2[0]
    return out


def _lanes(a: np.ndarray, w: int) -> np.ndarray:
    """Each row's ``w`` lane sums (rows × w), as cmpkernel.c adds them: element ``j`` to
    lane ``j mod w``, in order, from +0."""
    n, v = a.shape
    if v % w:
        a = np.concatenate([a, np.zeros((n, w - v % w))], axis=1)
    lanes: np.ndarray = np.add.reduce(a.reshape(n, -1, w), axis=1, initial=0.0)
    return lanes


def _tree(lanes: np.ndarray) -> np.ndarray:
    """The lanes of each row (last axis, a power of 2 wide) added by halves."""
    while lanes.shape[-1] > 1:
        h = lanes.shape[-1] // 2
        lanes = lanes[..., :h] + lanes[..., h:]
    return lanes[..., 0]


def _z_delta(
    x: np.ndarray, y: np.ndarray, ma: np.ndarray, dm: np.ndarray, temperature: float
) -> tuple[np.ndarray, np.ndarray]:
    """``z = (x − ma)/T`` and ``δ = ((y − x) − dm)/T`` in float64 (``ma``, ``dm`` per row,
    or per element)."""
    x64, y64 = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    z = x64 - ma
    delta = (y64 - x64) - dm
    if temperature != 1.0:
        z /= temperature
        delta /= temperature
    return z, delta


#: Elements of the rows the general formulas take at once (see :func:`logit_measures`).
_GENERAL = 1 << 17
#: Elements per piece of the NumPy steps: their temporaries come from the heap, not as
#: fresh pages (a new array of 128 KiB or more is page-faulted in anew: 10x the maths).
_PIECE = 1 << 13


def _piecewise(f: Any, a: np.ndarray, out: np.ndarray) -> np.ndarray:
    """``f`` (elementwise) of ``a`` into ``out``, a piece at a time."""
    flat, into = a.reshape(-1), out.reshape(-1)
    for i in range(0, flat.size, _PIECE):
        into[i : i + _PIECE] = f(flat[i : i + _PIECE])
    return out


def _rows_numpy(
    x: np.ndarray,
    y: np.ndarray,
    ma: np.ndarray,
    dm: np.ndarray,
    temperature: float,
    w: int,
    s: Scratch,
) -> np.ndarray:
    """cmpkernel.c's ``rows`` with NumPy: per row S, C, c and the four sums (the same
    operations on whole rows; elementwise ones a piece at a time)."""
    shape = x.shape
    z, delta = s.get("t_z", shape), s.get("t_delta", shape)
    np.subtract(x, ma[:, None], out=z, dtype=np.float64)
    np.subtract(y, x, out=delta, dtype=np.float64)
    np.subtract(delta, dm[:, None], out=delta)
    if temperature != 1.0:
        z /= temperature
        delta /= temperature
    ep = _piecewise(exp_, z, s.get("t_ep", shape))
    e = _piecewise(expm1_, delta, s.get("t_e", shape))
    t = s.get("t_t", shape)
    out = np.empty((len(x), 7))
    out[:, 0] = sp = _tree(_lanes(ep, w))
    out[:, 1] = big_c = _tree(_lanes(np.multiply(ep, e, out=t), w)) / sp
    out[:, 2] = c = log1p_(big_c)
    np.subtract(e, big_c[:, None], out=e)
    np.multiply(e, (1.0 / (1.0 + big_c))[:, None], out=e)  # e: ed
    d = np.subtract(delta, c[:, None], out=delta)
    a = np.subtract(e, d, out=z)
    half = _piecewise(log1p_, np.multiply(e, 0.5, out=t), t)
    u = s.get("t_u", shape)
    out[:, 3] = _tree(_lanes(np.multiply(ep, a, out=u), w))
    np.multiply(e, d, out=u)
    np.subtract(u, a, out=u)
    out[:, 4] = _tree(_lanes(np.multiply(ep, u, out=u), w))
    q = np.add(e, 1.0, out=a)
    np.multiply(q, d, out=u)
    np.add(q, 1.0, out=q)
    np.multiply(q, half, out=q)
    np.subtract(u, q, out=u)
    out[:, 5] = _tree(_lanes(np.multiply(ep, u, out=u), w))
    np.abs(e, out=u)
    out[:, 6] = _tree(_lanes(np.multiply(ep, u, out=u), w))
    return out


def _fused(
    x: np.ndarray, y: np.ndarray, ma: np.ndarray, dm: np.ndarray, temperature: float, s: Scratch
) -> np.ndarray:
    """Per clean row (``ma``: its largest ``x``, ``dm``: largest ``y`` − largest ``x``):
    ``S``, ``C``, ``c``, then the sums of KL, KL reverse, 2 JS and 2 TV, times ``S``."""
    n, v = x.shape
    w = lane_width(v)
    found = _compiled(x, y)
    with np.errstate(all="ignore"):
        if found is None:
            return _rows_numpy(x, y, ma, dm, temperature, w, s)
        lib, isa = found
        out = np.empty((n, 7))
        ma, dm = np.ascontiguousarray(ma), np.ascontiguousarray(dm)
        work = s.get("f_work", (3 * v,))
        lib.cmp_rows(
            _ptr(x),
            _ptr(y),
            _KINDS[x.dtype],
            n,
            v,
            _ptr(ma),
            _ptr(dm),
            temperature,
            w,
            _ptr(work),
            _ptr(out),
            isa,
        )
        return out


def logit_measures(
    x: np.ndarray,
    y: np.ndarray,
    temperature: float,
    scratch: Scratch,
    top: tuple[np.ndarray, np.ndarray],
    tokens: np.ndarray | None = None,
    rx: Range | None = None,
) -> dict[str, np.ndarray]:
    """Every per-row measure of reference logits ``x`` against candidate logits ``y``:
    those of :func:`~kldiv_cli.core.compare.row_measures` and
    :func:`~kldiv_cli.core.compare.rank_measures` (with the reference's top-1 probability
    and margin), and :func:`~kldiv_cli.core.compare.token_measures` with ``tokens`` (one
    valid class per row). ``top`` is :func:`reference_tops` of ``x``, ``rx`` its
    :func:`row_range` (when the caller has it)."""
    clean, ma, dm = _ranges(row_range(x) if rx is None else rx, row_range(y), temperature)
    if clean.all():
        return _clean_measures(x, y, (ma, dm), temperature, scratch, top, tokens)
    # The general formulas work in about ten arrays of a block's size: a few rows at once.
    step = max(1, _GENERAL // x.shape[1])
    dirty = np.flatnonzero(~clean)
    groups = [np.flatnonzero(clean)] + [dirty[i : i + step] for i in range(0, len(dirty), step)]
    parts = []
    for rows in groups:
        if not rows.size:
            continue
        sub_top = (top[0][rows], top[1][rows])
        t = None if tokens is None else tokens[rows]
        if clean[rows[0]]:
            at = (ma[rows], dm[rows])
            part = _clean_measures(x[rows], y[rows], at, temperature, scratch, sub_top, t)
        else:
            part = _general_measures(x[rows], y[rows], sub_top, temperature, scratch, t)
        parts.append((rows, part))
    out = {}
    for name, values in parts[0][1].items():
        out[name] = np.empty(len(x), dtype=values.dtype)
        for rows, part in parts:
            out[name][rows] = part[name]
    return out


def _general_measures(
    x: np.ndarray,
    y: np.ndarray,
    top: tuple[np.ndarray, np.ndarray],
    temperature: float,
    scratch: Scratch,
    tokens: np.ndarray | None,
) -> dict[str, np.ndarray]:
    """The measures of rows the fused path does not take (special values), by
    :func:`~kldiv_cli.core.compare.pair` and its companions."""
    pr = pair(x, y, "logits", "logits", temperature, scratch)
    out = row_measures(x, y, pr, scratch)
    out.update(rank_measures(x, y, pr.p, top))
    if tokens is not None:
        out.update(token_measures(pr, tokens))
    return out


def _clean_measures(
    x: np.ndarray,
    y: np.ndarray,
    at: tuple[np.ndarray, np.ndarray],
    temperature: float,
    s: Scratch,
    top: tuple[np.ndarray, np.ndarray],
    tokens: np.ndarray | None,
) -> dict[str, np.ndarray]:
    ma, dm = at
    sums = _fused(x, y, ma, dm, temperature, s)
    sp, big_c, c = sums[:, 0], sums[:, 1], sums[:, 2]
    with np.errstate(all="ignore"):
        kl, kl_reverse, js, tv = (sums[:, 3:] / sp[:, None]).T
        out = {"kl": kl + 0.0, "kl_reverse": kl_reverse.copy(), "js": 0.5 * js, "tv": 0.5 * tv}
        out.update(_ranks(x, y, top))
        out["agree"] = out["top1_rank"] == 1
        rows = np.arange(len(x))
        best, tp = top
        # The few elements the other measures read, formed again as the passes form them.
        cols = np.stack([best, tp[:, 1], best if tokens is None else tokens], axis=1)
        z, delta = _z_delta(
            x[rows[:, None], cols], y[rows[:, None], cols], ma[:, None], dm[:, None], temperature
        )
        p = exp_(z) / sp[:, None]
        out["reference_top1_prob"] = p[:, 0]
        out["reference_top1_margin"] = p[:, 0] - p[:, 1]
        if tokens is not None:
            lp = z[:, 2] - np.log(sp)
            out["nll_reference"] = -lp
            out["nll_candidate"] = -(lp + (delta[:, 2] - c))
            ed = (expm1_(delta[:, 2]) - big_c) * (1.0 / (1.0 + big_c))
            out["delta_p"] = p[:, 2] * ed
    return out
