r"""Closed-form KL of diagonal Gaussians: the VAE latent KL.

Per latent dimension, with :math:`d = \log\sigma^2 - \log\sigma_2^2`,

.. math::

    \mathrm{KL}\big(\mathcal N(\mu, \sigma^2) \,\|\, \mathcal N(\mu_2, \sigma_2^2)\big)
    = \tfrac12\Big[\frac{\sigma^2}{\sigma_2^2} - 1 - \log\frac{\sigma^2}{\sigma_2^2}
      + \frac{(\mu - \mu_2)^2}{\sigma_2^2}\Big]
    = \tfrac12\big[\operatorname{expm1}(d) - d + (\mu - \mu_2)^2 e^{-\log\sigma_2^2}\big],

and against the standard normal :math:`\tfrac12[\operatorname{expm1}(\log\sigma^2) -
\log\sigma^2 + \mu^2]`. ``expm1(d) − d`` is exactly 0 when the posterior equals the prior
and keeps its digits when they are nearly equal, where torch's ``var_ratio − 1 −
log(var_ratio)`` cancels (:func:`~.estimators.expm1_minus` sums its series for
|d| < ½). Values are float64; sums are exact (``math.fsum``), rounded once.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

import numpy as np

from .engine import as_float64, combine, combine_rows
from .estimators import expm1_minus

if TYPE_CHECKING:
    from numpy.typing import ArrayLike, NDArray

__all__ = [
    "GAUSSIAN_REDUCTIONS",
    "SCALE_PARAMS",
    "ActiveUnits",
    "GaussianReduction",
    "active_units",
    "gaussian_kl",
    "sample_rows",
    "to_logvar",
]

SCALE_PARAMS: tuple[str, ...] = ("logvar", "logstd", "std", "var")
GAUSSIAN_REDUCTIONS: tuple[str, ...] = ("batch-mean", "sum", "none", "per-dim", "per-row")
#: Reductions that ``free_bits`` applies to: it clamps each dimension's batch mean.
FREE_BITS_REDUCTIONS: tuple[str, ...] = ("batch-mean", "sum", "per-dim")
#: Burda et al. (2016): a latent dimension is active when Var_batch(μ) exceeds this.
ACTIVE_THRESHOLD = 0.01


def to_logvar(scale: ArrayLike, scale_param: str = "logvar") -> NDArray[np.float64]:
    """log σ² (float64) from a scale given as ``logvar``, ``logstd`` (log σ), ``std`` or ``var``.

    ``std``/``var`` of 0 give log σ² = −inf (an infinite KL).

    Raises
    ------
    ValueError
        An unknown ``scale_param``, or a negative ``std``/``var``.
    """
    s = as_float64(scale, "scale")
    if scale_param not in SCALE_PARAMS:
        raise ValueError(
            f"unknown scale parameter {scale_param!r}; choose one of {', '.join(SCALE_PARAMS)}"
        )
    if scale_param == "logvar":
        return s
    if scale_param == "logstd":
        return 2.0 * s
    if (s < 0).any():
        raise ValueError(f"a {scale_param} must be >= 0; found {float(s[s < 0].flat[0]):g}")
    with np.errstate(divide="ignore"):
        return 2.0 * np.log(s) if scale_param == "std" else np.log(s)


def pointwise_kl(
    mu: np.ndarray,
    logvar: np.ndarray,
    prior_mu: np.ndarray | None = None,
    prior_logvar: np.ndarray | None = None,
) -> np.ndarray:
    """The KL of each latent dimension (float64), ``logvar`` already log σ².

    The prior broadcasts onto the posterior's shape (e.g. one prior per dimension).
    """
    with np.errstate(over="ignore", invalid="ignore"):
        if prior_mu is None and prior_logvar is None:
            return np.asarray(0.5 * (expm1_minus(logvar) + mu * mu), np.float64)
        pm = 0.0 if prior_mu is None else prior_mu
        plv = 0.0 if prior_logvar is None else prior_logvar
        d = logvar - plv
        diff = mu - pm
        return np.asarray(0.5 * (expm1_minus(d) + diff * diff * np.exp(-plv)), np.float64)


def active_units(mu: ArrayLike, threshold: float = ACTIVE_THRESHOLD) -> int:
    """Latent dimensions whose posterior mean varies over the batch: Var_batch(μ) > threshold.

    The variance is the unbiased one (``ddof=1``, as He et al.'s reference code and
    ``torch.var``); a batch of one has no variance and no active unit.
    """
    m = sample_rows(as_float64(mu, "mu"))
    units = ActiveUnits(*m.shape)
    units.first(m)
    units.second(m)
    return units.count(threshold)


class ActiveUnits:
    """:func:`active_units` of a batch read in blocks of samples, in two passes (the
    means, then the squares about them), with the bits of the whole-array sums.

    Parameters
    ----------
    batch, dims : int
        Samples and latent dimensions (each sample flattened).
    """

    def __init__(self, batch: int, dims: int) -> None:
        from .running import ColumnSums

        self.batch = batch
        self._sums = ColumnSums(batch, dims)
        self._squares = ColumnSums(batch, dims)
        self._mean: np.ndarray | None = None

    def first(self, rows: np.ndarray) -> None:
        """The next block of samples (float64, samples x dims), first pass."""
        self._sums.add(rows)

    def second(self, rows: np.ndarray) -> None:
        """The same blocks again, in order, second pass."""
        if self._mean is None:
            self._mean = self._sums.totals() / self.batch if self.batch else self._sums.totals()
        centred = rows - self._mean
        self._squares.add(centred * centred)

    def count(self, threshold: float = ACTIVE_THRESHOLD) -> int:
        """Dimensions whose unbiased batch variance exceeds ``threshold``."""
        if self.batch < 2:
            return 0
        var = self._squares.totals() / (self.batch - 1)
        return int(np.count_nonzero(var > threshold))


def sample_rows(a: np.ndarray) -> np.ndarray:
    """[batch, latent dims]: a 1-D input is one sample; more axes are flattened into dims."""
    return a.reshape(1, -1) if a.ndim < 2 else a.reshape(a.shape[0], -1)


def gaussian_kl(
    mu: ArrayLike,
    logvar: ArrayLike,
    *,
    prior_mu: ArrayLike | None = None,
    prior_logvar: ArrayLike | None = None,
    scale_param: str = "logvar",
    reduction: str = "batch-mean",
    free_bits: float | None = None,
) -> float | np.ndarray | tuple[float | np.ndarray, float | np.ndarray]:
    r"""KL(N(μ, σ²) ‖ N(μ₂, σ₂²)) of diagonal Gaussians, per dimension and reduced.

    Parameters
    ----------
    mu, logvar : array_like
        The posterior, shape ``[batch, latent dims]`` (1-D: one sample). ``logvar``
        holds the scale as ``scale_param`` says.
    prior_mu, prior_logvar : array_like, optional
        The prior's mean and **log-variance** (whatever ``scale_param``), broadcast
        onto the posterior's shape; default N(0, 1).
    scale_param : {'logvar', 'logstd', 'std', 'var'}
        What ``logvar`` holds: log σ², log σ, σ or σ². Reading log σ as log σ² (or
        the reverse) is the most common VAE bug.
    reduction : {'batch-mean', 'sum', 'none', 'per-dim', 'per-row'}
        ``batch-mean`` (default, the usual VAE loss): sum over dimensions, mean over
        the batch. ``sum``: everything. ``none``: per element. ``per-dim``: the batch
        mean of each dimension. ``per-row``: the sum over dimensions of each sample.
    free_bits : float, optional
        λ: each dimension's batch-mean KL is clamped below at λ before the reduction
        (``batch-mean``: :math:`\sum_j \max(\lambda, \overline{KL}_j)`; ``sum``: B times
        that; ``per-dim``: :math:`\max(\lambda, \overline{KL}_j)`). Then the result
        is ``(kl, kl_free_bits)``.

    Returns
    -------
    float or numpy.ndarray, or a pair of them with ``free_bits``
        float64; sums exact and rounded once. Per element
        :math:`\tfrac12[\operatorname{expm1}(d) - d + (\mu-\mu_2)^2 e^{-\log\sigma_2^2}]`
        with :math:`d = \log\sigma^2 - \log\sigma_2^2`: exactly 0 where posterior and
        prior are equal. An empty batch gives NaN for ``batch-mean``/``per-dim``.

    Raises
    ------
    ValueError
        Shapes that differ (or a prior that does not broadcast), a negative
        ``std``/``var``, unknown names, ``free_bits`` with ``none``/``per-row`` or NaN.
    """
    if reduction not in GAUSSIAN_REDUCTIONS:
        raise ValueError(
            f"unknown reduction {reduction!r}; choose one of {', '.join(GAUSSIAN_REDUCTIONS)}"
        )
    if free_bits is not None:
        if reduction not in FREE_BITS_REDUCTIONS:
            raise ValueError(
                f"free bits clamp each dimension's batch mean; use one of "
                f"{', '.join(FREE_BITS_REDUCTIONS)}, not {reduction!r}"
            )
        if math.isnan(free_bits):
            raise ValueError("free bits must be a number, not NaN")
    m = as_float64(mu, "mu")
    lv = to_logvar(logvar, scale_param)
    if m.shape != lv.shape:
        raise ValueError(f"shapes do not match: mu {m.shape}, logvar {lv.shape}")
    prior = [
        None if p is None else as_float64(p, n)
        for p, n in ((prior_mu, "prior_mu"), (prior_logvar, "prior_logvar"))
    ]
    for p, name in zip(prior, ("prior_mu", "prior_logvar")):
        if p is not None and np.broadcast_shapes(p.shape, m.shape) != m.shape:
            raise ValueError(f"{name} of shape {p.shape} does not broadcast to {m.shape}")
    kl = pointwise_kl(m, lv, *prior)
    if reduction == "none":
        return kl
    rows = sample_rows(kl)
    return GaussianReduction(reduction, free_bits, rows.shape[1]).reduce([rows])


class GaussianReduction:
    """A reduction of :func:`gaussian_kl` over per-dimension KL values given block of
    samples by block: the same float64 values as on the whole batch, since every sum
    is exact (rows by ``math.fsum``, columns by :class:`~.running.ExactSums`, the
    total by :func:`~.running.exact_total`); memory is the per-row results
    (``per-row``) or a few floats per dimension.

    Parameters
    ----------
    reduction : str
        One of :data:`GAUSSIAN_REDUCTIONS` but ``none``.
    free_bits : float or None
        As in :func:`gaussian_kl`.
    dims : int
        Latent dimensions (each sample flattened).
    """

    def __init__(self, reduction: str, free_bits: float | None, dims: int) -> None:
        from .running import ExactSums

        self.reduction, self.free_bits = reduction, free_bits
        self.batch = 0
        self._rows: list[np.ndarray] = []
        need_dims = reduction == "per-dim" or free_bits is not None
        self._dims = ExactSums(dims) if need_dims else None

    def _seen(self, blocks: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        for rows in blocks:
            self.batch += len(rows)
            if self.reduction == "per-row":
                self._rows.append(combine_rows(rows))
            if self._dims is not None:
                self._dims.add(rows)
            yield rows

    def reduce(
        self, blocks: Iterable[np.ndarray]
    ) -> float | np.ndarray | tuple[float | np.ndarray, float | np.ndarray]:
        """Consume ``blocks`` of per-dimension KL values (float64, samples x dims) and
        return the reduction (a pair with ``free_bits``), as :func:`gaussian_kl` does."""
        from .running import exact_total

        total = math.nan
        if self.reduction in ("batch-mean", "sum"):
            total = exact_total(self._seen(blocks))
        else:
            for _ in self._seen(blocks):
                pass
        if self.reduction == "per-row":
            return np.concatenate(self._rows) if self._rows else np.empty(0)
        per_dim = None
        if self._dims is not None:
            sums = self._dims.totals()
            per_dim = sums / self.batch if self.batch else np.full(sums.shape, np.nan)
        if self.reduction == "per-dim":
            assert per_dim is not None
            fb = self.free_bits
            return per_dim if fb is None else (per_dim, np.maximum(per_dim, fb))
        batch = self.batch
        value = total if self.reduction == "sum" else (total / batch if batch else math.nan)
        if per_dim is None or self.free_bits is None:
            return value
        clamped = combine(np.maximum(per_dim, self.free_bits))
        return value, (clamped * batch if self.reduction == "sum" else clamped)
