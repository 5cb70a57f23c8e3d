"""Distribution summaries of per-row values: mean ± standard error and percentiles.

The names and formulas are llama.cpp's (``llama-perplexity --kl-divergence``), so
numbers can be checked against it; the sums are exact (``math.fsum``), so the
summary of float64 values is their float64 statistic, rounded once or twice.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .engine import as_float64, combine

__all__ = [
    "FRAC_ABOVE",
    "PERCENTILES",
    "TRIM",
    "correlation",
    "frac_above",
    "frac_key",
    "mean_stderr",
    "percentiles",
    "proportion",
    "robust",
    "summary",
    "trimmed_mean",
]

#: Summary keys and the fraction each percentile sits at, in the order they are reported.
PERCENTILES: tuple[tuple[str, float], ...] = (
    ("min", 0.0),
    ("p0.1", 0.001),
    ("p1", 0.01),
    ("p5", 0.05),
    ("p10", 0.1),
    ("median", 0.5),
    ("p90", 0.9),
    ("p95", 0.95),
    ("p99", 0.99),
    ("p99.9", 0.999),
    ("max", 1.0),
)


#: The share cut at each end by :func:`trimmed_mean`.
TRIM = 0.01
#: The default thresholds of :func:`frac_above`.
FRAC_ABOVE: tuple[float, ...] = (0.01, 0.1, 1.0)


def _as_values(values: np.ndarray) -> np.ndarray:
    """``values`` flattened to float64; booleans count as 0 and 1."""
    return as_float64(values, "summary", bools=True).reshape(-1)


def mean_stderr(values: np.ndarray) -> tuple[float, float]:
    r"""Mean and its standard error, ``sqrt((E[x²] − E[x]²)/(N − 1))``.

    The variance ``E[x²] − E[x]²`` is evaluated as ``E[(x−m)²] − (E[x−m])²``
    about the float64 mean ``m`` (the same quantity, without the cancellation of
    the textbook form); both sums are exact.

    Edge cases
    ----------
    * ``N = 0``: both NaN. ``N = 1``: the mean, and a NaN standard error.
    * A NaN value makes both NaN; an infinite value gives an infinite mean and a
      NaN standard error.
    * A variance that rounds below zero is reported as 0.
    """
    a = _as_values(values)
    n = a.size
    if n == 0:
        return math.nan, math.nan
    mean = combine(a) / n
    if n == 1 or not math.isfinite(mean):
        return mean, math.nan
    d = a - mean
    var = combine(d * d) / n - (combine(d) / n) ** 2
    return mean, math.sqrt(max(var, 0.0) / (n - 1))


def percentiles(values: np.ndarray, fractions: tuple[float, ...]) -> list[float]:
    """Percentiles by linear interpolation at ``frac·(N−1)`` (NumPy's default method).

    Empty input gives NaN for each fraction; NaN values make every percentile NaN.
    """
    a = _as_values(values)
    if a.size == 0:
        return [math.nan] * len(fractions)
    if np.isnan(a).any():
        return [math.nan] * len(fractions)
    return [float(v) for v in np.quantile(a, fractions)]


def summary(values: np.ndarray, extra: tuple[tuple[str, float], ...] = ()) -> dict[str, float]:
    """``mean, stderr, min, p0.1, p1, p5, p10, median, p90, p95, p99, p99.9, max`` of ``values``.

    Parameters
    ----------
    values
        Any real array; flattened and widened to float64.
    extra
        More ``(name, fraction)`` percentiles, e.g. ``(("p25", 0.25),)``, merged
        into the result in order of their fraction.

    Returns
    -------
    dict
        ``mean`` and ``stderr`` as in :func:`mean_stderr`, the percentiles as in
        :func:`percentiles` (``min`` and ``max`` are the 0 and 1 fractions). Every
        value is a Python float; NaN where ``values`` is empty.
    """
    mean, stderr = mean_stderr(values)
    points = sorted(PERCENTILES + tuple(extra), key=lambda kv: kv[1])
    out: dict[str, float] = {"mean": mean, "stderr": stderr}
    out.update(zip((k for k, _ in points), percentiles(values, tuple(f for _, f in points))))
    return out


def proportion(p_hat: float, n: int) -> tuple[float, float]:
    """A proportion and its standard error ``sqrt(p(1−p)/(N−1))``.

    ``n < 2`` gives a NaN standard error (``n = 0``: the proportion is NaN too).
    """
    if n < 0:
        raise ValueError(f"proportion: n must be >= 0, got {n}")
    if n == 0:
        return math.nan, math.nan
    p = float(p_hat)
    if n == 1:
        return p, math.nan
    return p, math.sqrt(max(p * (1.0 - p), 0.0) / (n - 1))


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    r"""Pearson's correlation of paired values, ``cov(a, b)/(σ_a σ_b)``.

    Moments about the float64 means, with exact sums (as :func:`mean_stderr`);
    llama.cpp's ``Cor(ln(PPL(Q)), ln(PPL(base)))`` is this correlation of the
    per-token negative log-likelihoods. NaN for fewer than 2 pairs, a constant side,
    or a NaN value.
    """
    x, y = _as_values(a), _as_values(b)
    if x.size != y.size:
        raise ValueError(f"correlation: {x.size} values against {y.size}")
    n = x.size
    if n < 2:
        return math.nan
    mx, my = combine(x) / n, combine(y) / n
    if not (math.isfinite(mx) and math.isfinite(my)):
        return math.nan
    dx, dy = x - mx, y - my
    sx, sy = combine(dx) / n, combine(dy) / n
    cov = combine(dx * dy) / n - sx * sy
    vx = combine(dx * dx) / n - sx * sx
    vy = combine(dy * dy) / n - sy * sy
    if not (vx > 0 and vy > 0):
        return math.nan
    return max(-1.0, min(1.0, cov / math.sqrt(vx * vy)))


def trimmed_mean(values: np.ndarray, cut: float = TRIM) -> float:
    r"""The mean of ``values`` without the ``g = ⌊cut·N⌋`` smallest and ``g`` largest.

    The rule of ``scipy.stats.trim_mean`` (a 1 % cut leaves every value below 100
    values); the sum of the ``N − 2g`` values kept is exact (``math.fsum``).

    Edge cases: empty input or a NaN value gives NaN; ``cut`` must be in [0, 0.5).
    """
    if not 0.0 <= cut < 0.5:
        raise ValueError(f"trimmed_mean: cut must be in [0, 0.5), got {cut}")
    a = _as_values(values)
    if a.size == 0 or np.isnan(a).any():
        return math.nan
    g = int(cut * a.size)
    kept = np.sort(a)[g : a.size - g]
    return combine(kept) / kept.size


def frac_key(threshold: float) -> str:
    """How a threshold names its share: ``0.01``, ``0.1``, ``1`` (``format(t, 'g')``)."""
    return format(threshold, "g")


def frac_above(values: np.ndarray, thresholds: tuple[float, ...] = FRAC_ABOVE) -> dict[str, float]:
    """The share of ``values`` strictly above each threshold, keyed by :func:`frac_key`.

    Counts over N, so the share is exact to one rounding. Empty input or a NaN value
    gives NaN for every threshold (as the other statistics).
    """
    a = _as_values(values)
    if a.size == 0 or np.isnan(a).any():
        return {frac_key(t): math.nan for t in thresholds}
    return {frac_key(t): int(np.count_nonzero(a > t)) / a.size for t in thresholds}


def robust(values: np.ndarray, thresholds: tuple[float, ...] = FRAC_ABOVE) -> dict[str, Any]:
    """``trimmed_mean`` (:data:`TRIM` cut at each end) and ``frac_above`` (a dict)."""
    return {"trimmed_mean": trimmed_mean(values), "frac_above": frac_above(values, thresholds)}
