"""The KL-divergence loss of ``torch.nn.functional.kl_div``, in NumPy.

Everything here follows PyTorch 2.13's *code* (not its docstring): the
pointwise formula, the NaN/inf pattern, the reductions (including the
``batchmean`` divisor under broadcasting), dtype promotion and the gradients.
"""

from __future__ import annotations

import math
import warnings
from typing import TYPE_CHECKING, Literal

import numpy as np

from .engine import total_loss
from .pointwise import (
    DTypeError,
    broadcast_shape,
    in_own_dtype,
    operands,
    pointwise,
    result_dtype,
    torch_op,
)

if TYPE_CHECKING:
    from numpy.typing import ArrayLike

__all__ = [
    "REDUCTIONS",
    "DTypeError",
    "KLDivLoss",
    "broadcast_shape",
    "kl_div",
    "kl_div_grad",
    "pointwise",
    "result_dtype",
]

Reduction = Literal["none", "mean", "batchmean", "sum"]
REDUCTIONS: tuple[str, ...] = ("none", "mean", "batchmean", "sum")

# Torch glues three literals without spaces; we keep its words and fix the spacing.
MEAN_WARNING = (
    "reduction: 'mean' divides the total loss by both the batch size and the support size. "
    "'batchmean' divides only by the batch size, and aligns with the KL div math definition. "
    "'mean' will be changed to behave the same as 'batchmean' in the next major release."
)
_LEGACY_WARNING = (
    "size_average and reduce args will be deprecated, please use reduction='{}' instead."
)


def resolve_reduction(
    reduction: str,
    size_average: bool | None = None,
    reduce: bool | None = None,
    *,
    warn: bool = True,
) -> tuple[str, bool]:
    """Map torch's arguments to ``(base reduction, divide by input.shape[0])``.

    Mirrors ``torch.nn.functional.kl_div`` line by line: legacy arguments win
    over ``reduction`` (with a warning), yet ``reduction="batchmean"`` still
    divides the legacy result by the batch size, as torch does.
    """
    if size_average is not None or reduce is not None:
        size_average = True if size_average is None else size_average
        reduce = True if reduce is None else reduce
        base = "mean" if size_average and reduce else "sum" if reduce else "none"
        warnings.warn(_LEGACY_WARNING.format(base), UserWarning, stacklevel=3)
    elif reduction == "batchmean":
        base = "sum"
    elif reduction == "elementwise_mean":
        warnings.warn(
            "reduction='elementwise_mean' is deprecated. Please use reduction='mean' instead.",
            UserWarning,
            stacklevel=3,
        )
        base = "mean"
    elif reduction in ("none", "mean", "sum"):
        if reduction == "mean" and warn:
            warnings.warn(MEAN_WARNING, UserWarning, stacklevel=3)
        base = reduction
    else:
        raise ValueError(f"{reduction} is not a valid value for reduction")
    return base, reduction == "batchmean"


def finish_reduction(
    total: float,
    count: int,
    base: str,
    batch: int | None,
    dtype: np.dtype,
    scale: float = 1.0,
) -> np.generic:
    """Turn a float64 sum into torch's scalar result, rounding once where torch can.

    ``batch`` is ``input.shape[0]`` for ``batchmean`` on a dimensioned input,
    else None. Where torch's own rounded sum overflows (float16), its result
    is that infinity, and so is ours. ``scale`` (distillation's T^2) multiplies the
    float64 value before its one rounding to ``dtype``: scaling the rounded loss would
    round twice.
    """
    dtype = np.dtype(dtype)
    with np.errstate(all="ignore"):
        if base == "mean":
            value = total / count if count else math.nan
        else:
            value = total
        # ``dtype.type`` of a dtype[Any] is typed Any; it is a NumPy float scalar type.
        if batch is not None:
            rounded: np.generic = dtype.type(value)
            if not np.isfinite(rounded):
                return rounded
            value = np.float64(value) / np.float64(batch)
        result: np.generic = dtype.type(np.float64(value) * np.float64(scale))
        return result


def kl_div(
    input: ArrayLike,
    target: ArrayLike,
    reduction: Reduction | str = "mean",
    log_target: bool = False,
    *,
    size_average: bool | None = None,
    reduce: bool | None = None,
) -> np.ndarray | np.generic:
    r"""Kullback-Leibler divergence loss, as ``torch.nn.functional.kl_div``.

    Parameters
    ----------
    input : array_like
        Log-probabilities ``log q`` of the model (float16/32/64).
    target : array_like
        The observed distribution ``p``, or ``log p`` when ``log_target``.
        Broadcast against ``input`` with the usual rules.
    reduction : {'mean', 'batchmean', 'sum', 'none'}, optional
        ``'none'``: the pointwise loss in the broadcast shape. ``'sum'``: its
        sum. ``'mean'`` (default, as torch): the sum over the number of
        elements of the broadcast output; warns because it is not the KL.
        ``'batchmean'``: the sum over ``input.shape[0]`` (the *input's* first
        dimension, even under broadcasting; no division for 0-d input).
    log_target : bool, optional
        Whether ``target`` is given in log space.
    size_average, reduce : bool, optional
        Deprecated torch arguments; they override ``reduction`` and warn.

    Returns
    -------
    numpy.ndarray or numpy scalar
        Of the promoted dtype (a 0-d operand does not widen it, as in torch).

    Notes
    -----
    The pointwise loss is KL(p || q) term by term; the target comes first in
    the maths and second in the call:

    .. math::

        \ell = \operatorname{xlogy}(t, t) - t\,x
        \quad\text{or, with log\_target,}\quad
        \ell = e^{t}\,(t - x)

    There is no masking: ``t = 0`` with ``x = -inf`` gives NaN (``0 * inf``),
    negative targets give NaN, ``t = +inf`` gives inf or NaN. Empty
    inputs give 0 (``sum``), NaN (``mean``) and 0/0 or 0/B (``batchmean``),
    without NumPy warnings.

    Two promises:

    * **Pointwise is torch's.** ``reduction='none'`` gives torch's terms, with
      torch's operations in torch's order and dtypes (``xlogy(t, t)`` and
      ``exp(t)`` in the target's own dtype, float16 rounded after each op),
      the same NaN/±inf pattern and sign of zero.
    * **Every aggregate is exact.** ``'sum'``, ``'mean'`` and ``'batchmean'``
      are the float64 value of the data as given, rounded once to the result
      dtype: each term :math:`t(\log t - x)` (or :math:`e^t (t - x)`) is
      computed from ``t`` and ``x`` widened exactly to float64, the terms are
      summed in float64 (fixed chunks, combined exactly with ``math.fsum``,
      so the bits do not depend on threads or block sizes), and the sum (or
      the quotient of the float64 sum by the count) is rounded once. For a
      float32 or float16 result that is within 1 ulp of that dtype of the
      exact value of the data; for float64, within float64's rounding of the
      terms (about 1e-15 relative to the sum of their magnitudes). torch's
      own number is within torch's rounding error of this (its float32 sum of
      float32 terms is typically 1e-4 relative away on near-identical
      distributions, where a KL is a small difference of large terms). The
      NaN/±inf pattern is torch's, decided by torch's own terms: a zero target
      contributes 0 against a finite input (``xlogy``), and a term that torch
      would see overflow the result dtype makes the result what torch's does.

    Raises
    ------
    ValueError
        Unknown reduction, or shapes that do not broadcast.
    TypeError
        Integer, bool, complex or other non-float operands.
    """
    # torch resolves (and warns about) the reduction before it looks at the operands.
    base, per_batch = resolve_reduction(reduction, size_average, reduce)
    x, t, dtype, shape = operands(input, target)
    batch = x.shape[0] if per_batch and x.ndim else None
    if base == "none":
        out = pointwise(x, t, log_target, dtype)
        if batch is not None:
            with np.errstate(all="ignore"):
                out = np.divide(out, dtype.type(batch), dtype=dtype)
        return out
    total = total_loss(x, t, log_target, dtype)
    return finish_reduction(total, math.prod(shape), base, batch, dtype)


def _unbroadcast(grad: np.ndarray, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """Sum ``grad`` back to an operand's ``shape`` (float64 sums, one rounding)."""
    lead = grad.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(
        lead + i for i, n in enumerate(shape) if n == 1 and grad.shape[lead + i] != 1
    )
    if axes:
        grad = grad.sum(axis=axes, dtype=np.float64, keepdims=True)
        grad = grad.reshape(grad.shape[lead:]) if lead else grad
    return np.asarray(grad.reshape(shape), dtype=dtype)


def kl_div_grad(
    input: ArrayLike,
    target: ArrayLike,
    reduction: Reduction | str = "mean",
    log_target: bool = False,
    grad_output: ArrayLike | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    r"""Gradients of :func:`kl_div` with respect to ``input`` and ``target``.

    Parameters
    ----------
    input, target, reduction, log_target
        As for :func:`kl_div`.
    grad_output : array_like, optional
        The upstream gradient: a scalar for the reducing modes, an array
        broadcastable to the output shape for ``'none'``. Defaults to ones.

    Returns
    -------
    (grad_input, grad_target) : tuple of numpy.ndarray
        Each of its operand's own shape and dtype, summed over broadcast
        dimensions.

    Notes
    -----
    With scale ``s`` (1 for sum, 1/numel for mean, 1/input.shape[0] for
    batchmean, ``grad_output`` for none), the closed forms of torch's autograd:

    .. math::

        \partial_x = -s\,t,\quad \partial_t = s\,(\log t + 1 - x)

    NaN at ``t == 0``, ``t < 0`` and ``t = inf`` (torch's ``t / t`` term);
    with ``log_target``: :math:`\partial_x = -s e^t`,
    :math:`\partial_t = s e^t (t - x + 1)`, NaN at ``t = -inf``.
    """
    x, t, dtype, shape = operands(input, target)
    base, per_batch = resolve_reduction(reduction, warn=False)
    g = np.asarray(1 if grad_output is None else grad_output, dtype=dtype)
    with np.errstate(all="ignore"):
        if base == "none":
            g = np.broadcast_to(g, shape)
        elif g.ndim:
            raise ValueError(f"grad_output must be a scalar for reduction={reduction!r}")
        elif base == "mean":
            g = g / dtype.type(math.prod(shape))
        elif per_batch and x.ndim:
            g = g / dtype.type(x.shape[0])
        # torch's autograd graph, op by op. exp(t) and xlogy(t, t) live at the
        # target's own shape and dtype: the upstream gradient is summed down to
        # that shape before their backward runs (so a t == 0 gives NaN even when
        # the broadcast output is empty), and each operand's gradient is
        # accumulated in its own dtype.
        td = t.dtype

        def to_t(a: np.ndarray) -> np.ndarray:
            return _unbroadcast(np.broadcast_to(a, shape), t.shape, dtype).astype(td)

        if log_target:
            e = in_own_dtype(np.exp, t, dtype)
            grad_d = torch_op(np.multiply, g, e, dtype)  # d(out)/d(t - x)
            grad_e = to_t(torch_op(np.multiply, g, torch_op(np.subtract, t, x, dtype), dtype))
            grad_x = -grad_d
            grad_t = torch_op(np.add, torch_op(np.multiply, grad_e, e, td), to_t(grad_d), td)
        else:
            g_t = to_t(g)  # d(out)/d(xlogy(t, t))
            # torch: d/dself = xlogy(grad, other) zeroed where self == 0 (so a zero
            # gradient gives 0, not 0 * log(negative)); d/dother = grad * self / other.
            log_t = in_own_dtype(np.log, t, dtype)
            from_self = np.where(g_t == 0, td.type(0), torch_op(np.multiply, g_t, log_t, td))
            from_self = np.where(np.isnan(t), td.type(np.nan), from_self)
            from_self = np.where(t == 0, td.type(0), from_self)
            from_xlogy = torch_op(
                np.add, from_self, torch_op(np.divide, torch_op(np.multiply, g_t, t, td), t, td), td
            )
            grad_x = -torch_op(np.multiply, g, t, dtype)
            grad_t = torch_op(np.add, from_xlogy, to_t(-torch_op(np.multiply, g, x, dtype)), td)
        return (
            _unbroadcast(np.broadcast_to(grad_x, shape), x.shape, dtype).astype(x.dtype),
            np.asarray(grad_t, dtype=td).reshape(t.shape),
        )


class KLDivLoss:
    """The object form of :func:`kl_div`, as ``torch.nn.KLDivLoss``.

    Examples
    --------
    >>> import numpy as np
    >>> loss = KLDivLoss(reduction="batchmean")
    >>> float(loss(np.log([[0.5, 0.5]]), np.array([[0.25, 0.75]])))  # doctest: +ELLIPSIS
    0.1308...
    """

    __slots__ = ("_log_target", "_reduction")

    def __init__(
        self,
        reduction: Reduction | str = "mean",
        log_target: bool = False,
        *,
        size_average: bool | None = None,
        reduce: bool | None = None,
    ) -> None:
        if size_average is not None or reduce is not None:
            reduction, _ = resolve_reduction(reduction, size_average, reduce)
        self._reduction = reduction
        self._log_target = bool(log_target)

    @property
    def reduction(self) -> str:
        return self._reduction

    @property
    def log_target(self) -> bool:
        return self._log_target

    def forward(self, input: ArrayLike, target: ArrayLike) -> np.ndarray | np.generic:
        return kl_div(input, target, self._reduction, self._log_target)

    __call__ = forward

    def __repr__(self) -> str:
        return f"KLDivLoss(reduction={self._reduction!r}, log_target={self._log_target})"
