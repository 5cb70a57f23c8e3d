"""Two-sample tests and distances for drift checks, without SciPy.

Each function states the SciPy function whose numbers it gives (checked against SciPy by
``tests/golden/make_drift_measures.py``), its maths and its edge cases:

* :func:`chi2_sf`: ``scipy.stats.chi2.sf`` through the regularized upper incomplete gamma
  function ``Q(d/2, x/2)`` (``scipy.special.gammaincc``).
* :func:`kolmogorov_sf`: ``scipy.special.kolmogorov`` (``scipy.stats.kstwobign.sf``), the
  limit distribution of ``sqrt(n) D``.
* :func:`ks_2samp`: ``scipy.stats.ks_2samp(a, b)`` (two-sided, ``method="auto"``): the
  statistic, and the exact p-value when both samples hold at most :data:`KS_EXACT_N`
  values.
* :func:`wasserstein_1d`: ``scipy.stats.wasserstein_distance(a, b)``.
* :func:`chi2_contingency_2xk`: ``scipy.stats.chi2_contingency(table)`` (default
  ``correction=True``: Yates' correction when the table has one degree of freedom).
"""

from __future__ import annotations

import math

import numpy as np

__all__ = [
    "KS_EXACT_N",
    "adjust_p_values",
    "chi2_contingency_2xk",
    "chi2_sf",
    "ks_2samp",
    "kolmogorov_sf",
    "wasserstein_1d",
]

#: ``ks_2samp``'s ``method="auto"`` is exact while both samples hold at most this many values.
KS_EXACT_N = 10_000
_EPS = 1e-16
_TINY = 1e-300
_MAX_ITER = 10_000


def _gamma_p_series(a: float, x: float) -> float:
    """``P(a, x)`` by its series ``e^-x x^a / Gamma(a+1) * sum x^k / ((a+1)...(a+k))``."""
    term = total = 1.0 / a
    ap = a
    for _ in range(_MAX_ITER):
        ap += 1.0
        term *= x / ap
        total += term
        if abs(term) < abs(total) * _EPS:
            break
    return total * math.exp(-x + a * math.log(x) - math.lgamma(a))


def _gamma_q_fraction(a: float, x: float) -> float:
    """``Q(a, x)`` by its continued fraction (modified Lentz), for ``x >= a + 1``."""
    b = x + 1.0 - a
    c = 1.0 / _TINY
    d = 1.0 / b
    h = d
    for i in range(1, _MAX_ITER):
        an = -i * (i - a)
        b += 2.0
        d = an * d + b
        d = _TINY if abs(d) < _TINY else d
        c = b + an / c
        c = _TINY if abs(c) < _TINY else c
        d = 1.0 / d
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < _EPS:
            break
    return math.exp(-x + a * math.log(x) - math.lgamma(a)) * h


def chi2_sf(x: float, dof: float) -> float:
    """Survival function of the chi-square distribution, ``P(X > x)``.

    ``Q(dof/2, x/2)``, the regularized upper incomplete gamma function: its series below
    ``x/2 < dof/2 + 1`` (as ``1 - P``), its continued fraction above (Numerical Recipes'
    ``gammq``). Equals ``scipy.stats.chi2.sf(x, dof)`` to about 1e-13 relative.

    Parameters
    ----------
    x : float
        The statistic; ``x <= 0`` gives 1, ``inf`` gives 0, NaN gives NaN.
    dof : float
        Degrees of freedom, > 0 (``dof <= 0`` gives 1 for ``x >= 0``: no freedom, no
        evidence).
    """
    if math.isnan(x) or math.isnan(dof):
        return math.nan
    if x <= 0 or dof <= 0:
        return 1.0
    if math.isinf(x):
        return 0.0
    a, half = dof / 2.0, x / 2.0
    if half < a + 1.0:
        return max(0.0, 1.0 - _gamma_p_series(a, half))
    return _gamma_q_fraction(a, half)


def kolmogorov_sf(x: float) -> float:
    """Survival function of the Kolmogorov distribution (of ``sup |B(t)|``, B a Brownian
    bridge): ``2 sum_{k>=1} (-1)^(k-1) exp(-2 k^2 x^2)``.

    Below ``x = 1`` the alternating series converges slowly, so the CDF's dual form
    ``sqrt(2 pi)/x sum_{k>=1} exp(-(2k-1)^2 pi^2 / (8 x^2))`` is used there. Equals
    ``scipy.special.kolmogorov(x)`` to about 1e-14. ``x <= 0`` gives 1.
    """
    if math.isnan(x):
        return math.nan
    if x <= 0:
        return 1.0
    if x < 1.0:
        return 1.0 - _kolmogorov_cdf_small(x)
    total = 0.0
    for k in range(1, 101):
        term = math.exp(-2.0 * k * k * x * x)
        total += term if k % 2 else -term
        if term < 1e-18:
            break
    return min(1.0, max(0.0, 2.0 * total))


def _kolmogorov_cdf_small(x: float) -> float:
    w = math.pi * math.pi / (8.0 * x * x)
    total = 0.0
    for k in range(1, 101):
        term = math.exp(-((2 * k - 1) ** 2) * w)
        total += term
        if term < 1e-18 * total:
            break
    return math.sqrt(2.0 * math.pi) / x * total


def _ecdf_gaps(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Both empirical CDFs at every value of the pooled sample, and the pooled sorted values."""
    pooled = np.sort(np.concatenate([a, b]))
    fa = np.searchsorted(a, pooled, side="right") / a.size
    fb = np.searchsorted(b, pooled, side="right") / b.size
    return pooled, fa, fb


def _sorted(values: np.ndarray, name: str) -> np.ndarray:
    out = np.sort(np.asarray(values, dtype=np.float64).reshape(-1))
    if out.size == 0:
        raise ValueError(f"{name} is empty")
    if not np.isfinite(out).all():
        raise ValueError(f"{name} holds a NaN or infinite value")
    return out


def _ks_exact_square(n: int, h: int) -> float:
    """``P(D >= h/n)`` for two samples of n values (SciPy's Horner form of the
    alternating binomial sum, without cancellation)."""
    p = 0.0
    for k in range(n // h, -1, -1):
        j = np.arange(h, dtype=np.float64)
        term = float(np.prod((n - k * h - j) / (n + k * h + j + 1.0)))
        p = term * (1.0 - p)
    return 2.0 * p


def _ks_exact_outside(n: int, m: int, h: int) -> float:
    """Share of the monotone lattice paths from (0, 0) to (n, m) that leave the band
    ``|i/n - j/m| < h / lcm(n, m)``, ``P(D >= h / lcm)`` (Hodges 1958).

    Row ``i`` of the counts of paths that stayed inside is the running sum of row
    ``i - 1`` over the row's band ``[lo_i, hi_i]``; rows are rescaled (their logarithm
    kept) so that nothing overflows, and the band only moves right, so a row costs its
    width (about ``2 D m``), not m. A path leaves the band once, first either by a step
    in i to the left of the next row's band or by a step in j past ``hi_i``; the
    p-value is the sum over those first exits of ``paths to it * paths from it to
    (n, m) / C(n + m, n)``: positive terms, without the cancellation of ``1 - inside``
    (p-values down to 1e-300 keep their relative precision, about 1e-10)."""
    g = math.gcd(n, m)
    ng, mg = n // g, m // g  # i/n - j/m in units of 1/lcm: i*mg - j*ng
    log_fact = np.concatenate([[0.0], np.cumsum(np.log(np.arange(1, n + m + 1, dtype=np.float64)))])
    log_total = log_fact[n + m] - log_fact[n] - log_fact[m]

    def log_rest(i: int, j: np.ndarray) -> np.ndarray:
        """log C((n - i) + (m - j), n - i): paths from (i, j) to (n, m)."""
        out: np.ndarray = log_fact[n - i + m - j] - log_fact[n - i] - log_fact[m - j]
        return out

    # Extended precision where the platform has it (x86: exponents to 1e-4951): the
    # counts near the band's lower edge are tiny beside the row's largest, below
    # float64's 1e-308 for p-values under about 1e-60 at n = 4000.
    row = np.zeros(m + 1, dtype=np.longdouble)
    lo, hi = 0, min(m, -((-h) // ng) - 1)
    row[: hi + 1] = 1.0
    log_scale = 0.0
    outside = 0.0
    if hi < m:  # along j in row 0, past the band
        outside += math.exp(log_rest(0, np.array([hi + 1]))[0] - log_total)
    for i in range(1, n + 1):
        new_lo = max(0, (i * mg - h) // ng + 1)
        new_hi = min(m, -(-(i * mg + h) // ng) - 1)
        left = np.arange(lo, min(hi, new_lo - 1) + 1)
        if left.size:  # a step in i from row i - 1 lands left of row i's band
            live = row[left] > 0
            logs = np.log(row[left][live]).astype(np.float64)
            terms = logs + log_scale + log_rest(i, left[live]) - log_total
            outside += float(np.exp(terms).sum())
            row[left] = 0.0
        lo, hi = new_lo, new_hi
        if lo > hi:
            break
        band = np.cumsum(row[lo : hi + 1])
        top = band.max()
        if top == 0:
            break
        row[lo : hi + 1] = band / top
        log_scale += float(np.log(top))
        if hi < m and row[hi] > 0:  # a step in j from (i, hi) leaves the band
            term = float(np.log(row[hi])) + log_scale + log_rest(i, np.array([hi + 1]))[0]
            outside += math.exp(term - log_total)
    return outside


def ks_2samp(
    a: np.ndarray, b: np.ndarray, size_a: int | None = None, exact_limit: int = KS_EXACT_N
) -> tuple[float, float]:
    """Two-sided two-sample Kolmogorov-Smirnov test: ``(D, p-value)``.

    ``D = max_x |F_a(x) - F_b(x)|`` over the pooled values, with right-continuous
    empirical CDFs (``searchsorted(..., side="right")``), as ``scipy.stats.ks_2samp``.

    The p-value is SciPy's ``method="auto"``: **exact** when both samples hold at most
    :data:`KS_EXACT_N` values, ``P(D_{n,m} >= D)`` under the null, from the lattice-path
    count of Hodges (1958) with ``D`` rounded to a multiple of ``1/lcm(n, m)``
    (Horner's form of the alternating sum for ``n = m``). Above that, SciPy uses
    ``kstwo.sf(D, round(nm/(n+m)))``; this function uses the limit distribution,
    ``kolmogorov_sf(D * sqrt(nm/(n+m)))`` (``scipy.special.kolmogorov``), which is
    above SciPy's value by a relative O(1/sqrt(nm/(n+m))) (conservative).

    Parameters
    ----------
    a, b : array_like
        Finite values (not empty).
    size_a : int, optional
        How many values ``a`` stands for, when it is a sketch of evenly spaced order
        statistics of a larger sample (default ``len(a)``): the p-value is that of the
        larger sample's size (``D`` is then within about ``1/len(a)`` of the full
        sample's).
    exact_limit : int, optional
        The exact p-value only while both sizes are at most this (default
        :data:`KS_EXACT_N`, SciPy's); a lower limit trades the exact p-value for the
        limit distribution's, which costs nothing (the exact one costs about
        ``n * 2 D m`` operations: 0.3 s at 9,000 x 8,000 values).

    Raises
    ------
    ValueError
        An empty sample, or a NaN or infinite value.
    """
    x, y = _sorted(a, "a"), _sorted(b, "b")
    _, fx, fy = _ecdf_gaps(x, y)
    d = float(np.max(np.abs(fx - fy)))
    n, m = x.size if size_a is None else size_a, y.size
    if max(n, m) > min(exact_limit, KS_EXACT_N):
        en = n * m / (n + m)
        return d, kolmogorov_sf(d * math.sqrt(en))
    lcm = n // math.gcd(n, m) * m
    h = int(round(d * lcm))
    d = h / lcm
    if h == 0:
        return d, 1.0
    p = _ks_exact_square(n, h) if n == m else _ks_exact_outside(n, m, h)
    return d, min(1.0, max(0.0, p))


def wasserstein_1d(a: np.ndarray, b: np.ndarray) -> float:
    """The first Wasserstein (earth mover's) distance between two samples:
    ``integral |F_a(x) - F_b(x)| dx`` over the pooled values, as
    ``scipy.stats.wasserstein_distance(a, b)`` (equal weights). Raises ValueError on an
    empty sample or a value that is not finite."""
    x, y = _sorted(a, "a"), _sorted(b, "b")
    pooled, fx, fy = _ecdf_gaps(x, y)
    return float(np.sum(np.abs(fx - fy)[:-1] * np.diff(pooled)))


def chi2_contingency_2xk(first: np.ndarray, second: np.ndarray) -> tuple[float, float, int]:
    """Pearson's chi-square test of homogeneity on the 2 x k table of two count rows:
    ``(statistic, p-value, degrees of freedom)``.

    Columns empty in both rows are dropped (SciPy refuses a zero expected count), leaving
    k' columns and ``k' - 1`` degrees of freedom. Expected counts ``E = row total *
    column total / total``; with one degree of freedom each observed count moves
    ``min(0.5, |E - O|)`` towards E first (Yates). The statistic is ``sum (O - E)^2 / E``
    and the p-value :func:`chi2_sf`. This is ``scipy.stats.chi2_contingency(table)`` with
    its defaults (``correction=True``, ``lambda_=None``); ``k' <= 1`` gives
    ``(0, 1, 0)``, as SciPy does.

    Raises
    ------
    ValueError
        A row with no counts, or a negative count.
    """
    table = np.vstack([np.asarray(first, dtype=np.float64), np.asarray(second, dtype=np.float64)])
    if (table < 0).any() or (table.sum(axis=1) == 0).any():
        raise ValueError("each row needs counts >= 0, not all 0")
    table = table[:, table.sum(axis=0) > 0]
    dof = table.shape[1] - 1
    if dof <= 0:
        return 0.0, 1.0, 0
    expected = np.outer(table.sum(axis=1), table.sum(axis=0)) / table.sum()
    observed = table
    if dof == 1:
        diff = expected - observed
        observed = observed + np.minimum(0.5, np.abs(diff)) * np.sign(diff)
    stat = float(np.sum((observed - expected) ** 2 / expected))
    return stat, chi2_sf(stat, dof), dof


def adjust_p_values(p_values: np.ndarray, method: str) -> np.ndarray:
    """p-values corrected for testing ``m = len(p_values)`` hypotheses at once.

    * ``"none"``: as they are.
    * ``"bonferroni"``: ``min(1, m p)`` (controls the chance of any false discovery).
    * ``"bh"``: Benjamini-Hochberg, ``min(1, min_{j >= i} m p_(j) / j)`` for the i-th
      smallest (controls the false discovery rate); equals
      ``scipy.stats.false_discovery_control(p, method="bh")``.

    Raises ValueError on another method.
    """
    p: np.ndarray = np.array(p_values, dtype=np.float64).reshape(-1)
    m = p.size
    if method == "none" or m == 0:
        return p
    if method == "bonferroni":
        out: np.ndarray = np.minimum(1.0, p * m)
        return out
    if method != "bh":
        raise ValueError(f"unknown correction {method!r}")
    order = np.argsort(p, kind="stable")
    scaled = p[order] * m / np.arange(1, m + 1)
    running = np.minimum.accumulate(scaled[::-1])[::-1]
    adjusted = np.empty(m)
    adjusted[order] = np.minimum(1.0, running)
    return adjusted
