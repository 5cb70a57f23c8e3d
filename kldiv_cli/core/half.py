"""float16 to and from float32/float64, exactly, through the bits.

NumPy's float16 casts run element by element, and far slower still on subnormals: its
float32 -> float16 cast of softmax probabilities (many of them subnormal in float16) costs
more than everything else kldiv does with them. Here the same conversions are a handful of
whole-array integer operations, with the same bits: :func:`widen` is exact, and
:func:`narrow` rounds to nearest even exactly as NumPy's cast (NaN payloads included).
"""

from __future__ import annotations

import struct
import threading

import numpy as np

__all__ = ["any_sign", "narrow", "one_sign", "value", "widen"]

#: float16 bits shifted into a float32's place give the value times 2^-112, exactly
#: (subnormals included); this factor restores it.
_SCALE = 2.0**112
_INF = 0x7C00
_SIGN = 0x8000
_NEG_INF = 0xFC00
_SUBNORMAL_END = 0x0400
#: Elements converted per step: the scratch buffers stay in cache.
_BLOCK = 1 << 18

_LOCAL = threading.local()


def _scratch(size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Three uint32 buffers of this thread, kept between calls."""
    bufs: tuple[np.ndarray, ...] | None = getattr(_LOCAL, "bufs", None)
    if bufs is None or bufs[0].size < size:
        bufs = _LOCAL.bufs = tuple(np.empty(size, np.uint32) for _ in range(3))
    return bufs[0][:size], bufs[1][:size], bufs[2][:size]


def value(code: int) -> float:
    """The float16 whose bits are ``code``, as a Python float (no NumPy scalar detour)."""
    return float(struct.unpack("<e", struct.pack("<H", code))[0])


def one_sign(codes: np.ndarray, lo: int, hi: int, u: np.ndarray, out: np.ndarray) -> bool:
    """Widen float16 ``codes`` (their bits, uint16) exactly into ``out`` when all values
    are finite and of one sign, given the smallest and largest code; else return False.
    ``out`` is float64, or float32 with ``u`` its bits (``out.view(np.uint32)``); ``u`` is
    a uint32 buffer like ``codes``.

    The bits shifted left by 13 sit where a float32's exponent and mantissa are, so the
    float32 they spell is the value times 2^-112 (subnormals included); one multiply
    restores it. A negative code's sign bit lands on exponent bit 5 (a factor 2^32): with
    no zero or subnormal among them the factor is -2^80; otherwise the sign bit is
    shifted out first. In place, one dtype per ufunc: a cast inside a ufunc costs
    several times a copyto.
    """
    if hi < _INF:
        scale = _SCALE
    elif lo >= _SIGN and hi < _NEG_INF:
        scale = -_SCALE
    else:
        return False
    f = u.view(np.float32)
    np.copyto(u, codes)
    if scale > 0 or lo >= _SIGN + _SUBNORMAL_END:
        np.left_shift(u, 13, out=u)
        scale = scale if scale > 0 else -(2.0**80)
    else:
        np.left_shift(u, 17, out=u)
        np.right_shift(u, 4, out=u)
    np.multiply(f, np.float32(scale), out=f)
    if out.dtype != np.float32:
        np.copyto(out, f)
    return True


def any_sign(codes: np.ndarray, u: np.ndarray, w: np.ndarray, out: np.ndarray) -> None:
    """Widen any float16 ``codes`` exactly into ``out`` (as for :func:`one_sign`; ``w``:
    another uint32 buffer): mixed signs, inf and NaN too. The sign bit is moved to a
    float32's; infinities and NaNs (whose float32 comes out finite) are taken from NumPy's
    cast."""
    f = u.view(np.float32)
    np.copyto(u, codes)
    np.right_shift(u, 15, out=w)
    np.left_shift(w, 31, out=w)
    np.left_shift(u, 17, out=u)
    np.right_shift(u, 4, out=u)
    special = int(u.max()) >= _INF << 13
    np.bitwise_or(u, w, out=u)
    np.multiply(f, np.float32(_SCALE), out=f)
    if out.dtype != np.float32:
        np.copyto(out, f)
    if special:
        bad = (codes & 0x7FFF) >= _INF
        out[bad] = codes[bad].view(np.float16)


def widen(a: np.ndarray, dtype: type[np.floating] = np.float64) -> np.ndarray:
    """``a`` as ``dtype`` (float32 or float64); ``a`` itself when it already has that
    dtype. float16 goes through its bits, exactly; anything else through NumPy's cast.

    For the transforms: logits widened before a float64 log-softmax, or float16 logits
    computed in float32 as torch does; and for torch's float16 arithmetic.
    """
    a = np.asarray(a)
    if a.dtype == dtype:
        return a
    out = np.empty(a.shape, dtype=dtype)
    if a.dtype != np.float16:
        np.copyto(out, a)
        return out
    flat, dest = np.ascontiguousarray(a).reshape(-1).view(np.uint16), out.reshape(-1)
    for i in range(0, flat.size, _BLOCK):
        codes, into = flat[i : i + _BLOCK], dest[i : i + _BLOCK]
        u, w, _ = _scratch(codes.size)
        if dtype == np.float32:
            u = into.view(np.uint32)
        if not one_sign(codes, int(codes.min()), int(codes.max()), u, into):
            any_sign(codes, u, w, into)
    return out


def narrow(a: np.ndarray) -> np.ndarray:
    """float32 ``a`` rounded to float16, to nearest even: bit for bit NumPy's
    ``a.astype(np.float16)`` (NaN payloads too), without its floating-point warnings.

    Normal results: the bits below the float16 mantissa decide, by adding 0xFFF plus the
    mantissa's last bit before the shift (round half to even), and the exponent is
    rebiased (an overflow carries into infinity). Subnormal and zero results
    (``|a| < 2^-14``): adding 0.5 in float32 rounds at the 2^-24 grid, so the float16
    code is what the sum's bits exceed 0.5's by. Overflow and infinity give infinity; a
    NaN keeps the top of its payload and stays a NaN.
    """
    shape = np.shape(a)
    bits = np.ascontiguousarray(a, dtype=np.float32).reshape(-1).view(np.uint32)
    out = np.empty(bits.size, dtype=np.uint16)
    for i in range(0, bits.size, _BLOCK):
        v = bits[i : i + _BLOCK]
        mag, res, tmp = _scratch(v.size)
        np.bitwise_and(v, 0x7FFFFFFF, out=mag)
        np.right_shift(mag, 13, out=res)
        np.bitwise_and(res, 1, out=res)
        np.add(res, 0xFFF, out=res)
        np.add(res, mag, out=res)
        np.subtract(res, np.uint32(0x38000000), out=res)  # wraps below the normal range
        np.right_shift(res, 13, out=res)
        small = mag < 0x38800000
        if small.any():
            with np.errstate(invalid="ignore"):  # NaN lanes, replaced below
                np.add(mag.view(np.float32), np.float32(0.5), out=tmp.view(np.float32))
            np.subtract(tmp, np.uint32(0x3F000000), out=tmp)
            np.copyto(res, tmp, where=small)
        big = mag >= 0x47800000
        if big.any():
            nan = mag > 0x7F800000
            payload = np.maximum(((mag & 0x7FFFFF) >> 13) | _INF, _INF + 1)
            np.copyto(res, np.where(nan, payload, _INF).astype(np.uint32), where=big)
        np.right_shift(v, 16, out=mag)
        np.bitwise_and(mag, _SIGN, out=mag)
        np.bitwise_or(res, mag, out=res)
        np.copyto(out[i : i + _BLOCK], res, casting="unsafe")
    result = out.view(np.float16).reshape(shape)
    return result[()] if isinstance(a, np.generic) else result  # a scalar stays a scalar
