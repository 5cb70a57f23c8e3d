"""Drift's measures, one entry each in :data:`METRIC_TABLE`, and the noise they carry.

A :class:`Metric` says everything the rest of kldiv needs about a measure: its formula
(on the smoothed shares of a column's bins, on the values of a binned column, or on a
categorical column's counts as profiled), each bin's contribution, how noise scales it
(relative to KL's noise bound), how it grows with the sample sizes (for learned
thresholds), what it is gated on where it does not apply, and its label. The request's
``--metric`` choices, the JSON ``measures``, the report's columns, the profile's
calibrated measures and the CLI help are all read from the table, so a new measure is
one entry (ARCHITECTURE.md shows one).

Noise: plug-in KL between two samples (n, m values) of one distribution averages about
``(k' - 1)/2 * (1/n + 1/m)`` for the ``k'`` bins the reference fills, and ``2 n m/(n + m)
KL`` is about chi-square (the G-test): :func:`noise_bound` is its 99.99 % quantile. A
metric's noise is KL's scaled by its entry (``noise_scale``, ``growth``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # NumPy is imported where it is used: the CLI reads the table at startup
    import numpy as np

MIN_VALUES = 10
#: Bins expected to hold fewer values than this on the smaller side (from both sides'
#: counts) are joined before comparing: a bin expected to hold 10 values on a side is
#: empty there by chance with probability e^-10 (4.5e-5); with 3 it is 5 %, and an
#: empty bin alone scores ~ (c/n) ln(c k / (n epsilon)), above 0.1 for small n.
MIN_BIN_COUNT = 10
#: A column drifts on its distribution only when its metric is above the value that
#: noise alone exceeds with probability 1 - NOISE_LEVEL (per column): see noise_bound.
NOISE_LEVEL = 0.9999
#: The standard normal quantile at NOISE_LEVEL (for the Wilson-Hilferty approximation).
Z_NOISE = 3.719016485455709
#: Evidently's floor on the reference's standard deviation when norming Wasserstein.
MIN_STD = 0.001
#: When K-S is not the gate, its p-value is exact only while both sides hold at most this
#: many values (a few milliseconds a column), else the limit distribution's: the exact
#: one made 20 columns of 9,000 x 8,000 values take 5.9 s of CPU instead of 0.3 s.
KS_QUICK_N = 1_000

#: Where a metric is computed: the smoothed shares of the joined bins, a binned column's
#: values (reference sketch and current finite values), a categorical column's counts
#: as profiled (before rare bins are joined).
BINS, VALUES, COUNTS = "bins", "values", "counts"


@dataclass(frozen=True)
class Test:
    """A two-sample test's statistic, p-value and details (K-S method, chi-square dof)."""

    statistic: float
    p_value: float
    details: tuple[tuple[str, Any], ...] = ()


@dataclass(frozen=True)
class ValueSample:
    """A binned column's values for the measures on values: the reference's sorted
    sketch (standing for ``size`` values, standard deviation ``std``), the current finite
    values, and whether the measure gates the column (exact K-S p-values then)."""

    sketch: np.ndarray
    size: int
    std: float
    current: np.ndarray
    gate: bool


def _logs(p: np.ndarray, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    import numpy as np

    with np.errstate(divide="ignore"):
        return np.log(p), np.log(q)


def _kl(p: np.ndarray, q: np.ndarray) -> float:
    """KL(p || q) in nats, torch's ``kl_div(log q, p, reduction="sum")``."""
    from ..core import kl_div

    return float(kl_div(_logs(p, q)[1], p, reduction="sum"))


def _kl_terms(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    import numpy as np

    lp, lq = _logs(p, q)
    with np.errstate(invalid="ignore"):
        out: np.ndarray = np.where(p > 0, p * (lp - lq), 0.0)
    return out


def _js(p: np.ndarray, q: np.ndarray) -> float:
    import numpy as np

    from ..core import kl_div

    log_m = np.log((p + q) / 2)
    return 0.5 * (
        float(kl_div(log_m, p, reduction="sum")) + float(kl_div(log_m, q, reduction="sum"))
    )


def _js_terms(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    m = (p + q) / 2
    out: np.ndarray = 0.5 * (_kl_terms(p, m) + _kl_terms(q, m))
    return out


def _hellinger(p: np.ndarray, q: np.ndarray) -> float:
    import numpy as np

    # The difference form: exactly 0 for identical shares (1 - sum sqrt(pq) is not).
    return math.sqrt(0.5 * float(np.sum((np.sqrt(p) - np.sqrt(q)) ** 2)))


def _hellinger_terms(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """The terms of its square divided by it: they add up to the distance."""
    import numpy as np

    squares = 0.5 * (np.sqrt(p) - np.sqrt(q)) ** 2
    total = math.sqrt(float(squares.sum()))
    out: np.ndarray = squares / total if total > 0 else np.zeros_like(p)
    return out


def _wasserstein(v: ValueSample) -> float:
    from ..core.twosample import wasserstein_1d

    return wasserstein_1d(v.sketch, v.current) / max(v.std, MIN_STD)


def _ks(v: ValueSample) -> Test:
    from ..core.twosample import KS_EXACT_N, ks_2samp

    limit = KS_EXACT_N if v.gate else KS_QUICK_N
    statistic, p_value = ks_2samp(v.sketch, v.current, size_a=v.size, exact_limit=limit)
    method = "exact" if max(v.size, v.current.size) <= limit else "asymp"
    return Test(statistic, p_value, (("method", method),))


def _chi2(p_counts: np.ndarray, q_counts: np.ndarray) -> Test:
    from ..core.twosample import chi2_contingency_2xk

    statistic, p_value, dof = chi2_contingency_2xk(p_counts, q_counts)
    return Test(statistic, p_value, (("dof", dof),))


@dataclass(frozen=True)
class Metric:
    """One measure (see the module's docstring). ``formula`` takes, by ``source``: the
    smoothed shares ``(p, q)`` of the bins either side fills (:data:`BINS`; in nats when
    ``log``, shown in ``--base`` units), a :class:`ValueSample` (:data:`VALUES`), or the
    counts ``(p, q)`` as profiled (:data:`COUNTS`); a :class:`Test` makes the metric a
    p-value test gated by ``--alpha``."""

    name: str
    label: str
    source: str
    formula: Callable[..., Any]
    #: Each bin's term, adding up to the value (metrics not on the bins show KL's).
    terms: Callable[[np.ndarray, np.ndarray], np.ndarray] = _kl_terms
    #: A divergence in nats, shown in --base units.
    log: bool = False
    #: Under no change the metric is about ``(noise_scale * KL) ** growth``: its noise
    #: bound follows KL's (None: no noise bound; a test is its own).
    noise_scale: float | None = None
    #: The metric grows with ``(1/n + 1/m) ** growth`` under no change (learned thresholds
    #: are scaled by it from the calibration's halves to the check's sizes).
    growth: float = 1.0
    #: Whether ``profile --calibrate`` learns it (a threshold, not a p-value).
    calibrated: bool = True
    #: The metric a column is gated on where this one does not apply (categories for a
    #: metric on values, binned columns for one on counts).
    instead: str | None = None
    #: A p-value test (its formula gives a :class:`Test`), gated by ``--alpha``.
    test: bool = False

    @property
    def terms_in_nats(self) -> bool:
        """Its bin terms are in nats (shown in --base units): a divergence's, or KL's
        for a metric not on the bins."""
        return self.log or self.source != BINS

    def applies(self, categorical: bool) -> bool:
        return self.source == BINS or (self.source == COUNTS) == categorical


#: Every measure of a column; the first is the default gate. Order is the JSON's.
METRIC_TABLE: tuple[Metric, ...] = (
    Metric("kl", "KL(reference || current)", BINS, _kl, log=True, noise_scale=1.0),
    Metric(
        "kl_reverse",
        "KL(current || reference)",
        BINS,
        lambda p, q: _kl(q, p),
        terms=lambda p, q: _kl_terms(q, p),
        log=True,
        noise_scale=1.0,
    ),
    Metric(
        "psi",
        "population stability index: KL both ways",
        BINS,
        lambda p, q: _kl(p, q) + _kl(q, p),
        terms=lambda p, q: _kl_terms(p, q) + _kl_terms(q, p),
        log=True,
        noise_scale=2.0,
    ),
    Metric("js", "Jensen-Shannon divergence", BINS, _js, _js_terms, log=True, noise_scale=0.25),
    # Hellinger's square is about a quarter of KL under small changes (both are
    # sum (p - q)^2 / p to second order, over 8 and 2).
    Metric(
        "hellinger",
        "Hellinger distance",
        BINS,
        _hellinger,
        _hellinger_terms,
        noise_scale=0.25,
        growth=0.5,
    ),
    Metric(
        "wasserstein",
        "Wasserstein distance of the values / the reference's std",
        VALUES,
        _wasserstein,
        growth=0.5,
        instead="js",
    ),
    Metric(
        "ks",
        "Kolmogorov-Smirnov test p-value",
        VALUES,
        _ks,
        calibrated=False,
        instead="chi2",
        test=True,
    ),
    Metric(
        "chi2",
        "chi-square test p-value",
        COUNTS,
        _chi2,
        calibrated=False,
        instead="ks",
        test=True,
    ),
)
METRIC_BY_NAME: Mapping[str, Metric] = {m.name: m for m in METRIC_TABLE}
METRICS = tuple(METRIC_BY_NAME)
#: Metrics that are p-values: a column drifts when its (corrected) p-value is below alpha.
P_METRICS = tuple(m.name for m in METRIC_TABLE if m.test)
#: The measures ``kldiv profile --calibrate`` learns (in nats for the divergences).
CALIBRATED = tuple(m.name for m in METRIC_TABLE if m.calibrated)


@dataclass(frozen=True)
class Measures:
    """Every measure of a column, by metric name: numbers, and :class:`Test` results."""

    values: Mapping[str, float] = field(default_factory=dict)
    tests: Mapping[str, Test] = field(default_factory=dict)

    def get(self, metric: str) -> float | None:
        """The value a metric gates: the p-value of a test, else the measure."""
        if metric in self.tests:
            return self.tests[metric].p_value
        value = self.values.get(metric)
        return None if value is None else float(value)

    def statistic(self, metric: str) -> float | None:
        """The measure itself (a test's statistic), None when not computed."""
        if metric in self.tests:
            return self.tests[metric].statistic
        return self.values.get(metric)

    def merged(self, found: Mapping[str, float | Test]) -> Measures:
        values, tests = dict(self.values), dict(self.tests)
        for name, got in found.items():
            if isinstance(got, Test):
                tests[name] = got
            else:
                values[name] = got
        return Measures(values, tests)

    def to_json(self) -> dict[str, Any]:
        """Every measure computed, in the table's order (tests as statistic and p-value)."""
        doc: dict[str, Any] = {}
        for m in METRIC_TABLE:
            if m.name in self.values:
                doc[m.name] = self.values[m.name]
            elif m.name in self.tests:
                t = self.tests[m.name]
                doc[m.name] = {"statistic": t.statistic, "p_value": t.p_value, **dict(t.details)}
        return doc


def column_metric(metric: str, categorical: bool) -> str:
    """The metric a column is gated on: the table's ``instead`` when the one asked for
    does not apply (``ks`` on categories is ``chi2`` and the other way round;
    ``wasserstein`` on categories is ``js``, as Evidently's defaults)."""
    entry = METRIC_BY_NAME[metric]
    if entry.applies(categorical) or entry.instead is None:
        return metric
    return entry.instead


def smoothed(counts: np.ndarray, epsilon: float) -> np.ndarray:
    """Shares with ``epsilon`` spread over the bins: ``(c/n + epsilon/k) / (1 + epsilon)``."""
    # Arithmetic on an untyped-dtype array is typed Any in NumPy's stubs: a float array.
    share: np.ndarray = counts / counts.sum()
    if epsilon == 0:
        return share
    out: np.ndarray = (share + epsilon / share.size) / (1 + epsilon)
    return out


def bin_measures(
    p_counts: np.ndarray, q_counts: np.ndarray, epsilon: float, base: float
) -> Measures:
    """The table's measures on the bins of two histograms, after :func:`smoothed` (the
    divergences in ``base`` units)."""
    p, q = smoothed(p_counts, epsilon), smoothed(q_counts, epsilon)
    used = (p > 0) | (q > 0)
    p, q = p[used], q[used]
    scale = 1 / math.log(base)
    return Measures(
        {
            m.name: float(m.formula(p, q)) * (scale if m.log else 1.0)
            for m in METRIC_TABLE
            if m.source == BINS
        }
    )


def value_measures(
    sketch: Sequence[float], size: int, std: float, values: np.ndarray, gate: str = ""
) -> dict[str, float | Test]:
    """The table's measures on values, between a binned column's reference sketch
    (standing for ``size`` values of standard deviation ``std``) and its current values
    (the finite ones); empty without a sketch or current finite values. ``gate``: the
    metric the column is gated on (a gating K-S test's p-value is exact up to SciPy's
    ``KS_EXACT_N`` values, else only up to :data:`KS_QUICK_N`)."""
    import numpy as np

    finite = values[np.isfinite(values)]
    if not sketch or finite.size == 0:
        return {}
    ordered = np.asarray(sketch, dtype=np.float64)
    return {
        m.name: m.formula(ValueSample(ordered, size, std, finite, m.name == gate))
        for m in METRIC_TABLE
        if m.source == VALUES
    }


def count_measures(p_counts: np.ndarray, q_counts: np.ndarray) -> dict[str, float | Test]:
    """The table's measures on a categorical column's counts as profiled (categories,
    "other", new values): Pearson's chi-square test of homogeneity on the 2 x k table, as
    ``scipy.stats.chi2_contingency``."""
    return {m.name: m.formula(p_counts, q_counts) for m in METRIC_TABLE if m.source == COUNTS}


def contributions(
    p_counts: np.ndarray, q_counts: np.ndarray, epsilon: float, metric: str
) -> np.ndarray:
    """Each bin's term of the metric (what makes a column drift), in nats for the
    divergences; the terms add up to the metric (a metric not on the bins shows KL's)."""
    import numpy as np

    p, q = smoothed(p_counts, epsilon), smoothed(q_counts, epsilon)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = METRIC_BY_NAME[metric].terms(p, q)
    out: np.ndarray = np.nan_to_num(terms, nan=np.inf)
    return out


def noise_floor(filled: int, n: int, m: int) -> float:
    """Mean plug-in KL of two samples (n, m values) of one distribution over ``filled`` bins."""
    return (filled - 1) / 2 * (1 / n + 1 / m) if n and m else math.inf


def chi2_quantile(dof: int, z: float = Z_NOISE) -> float:
    """The chi-square quantile with ``dof`` degrees of freedom at the standard normal
    quantile ``z`` (Wilson-Hilferty: ``dof (1 - 2/(9 dof) + z sqrt(2/(9 dof)))^3``;
    within 3 % of the exact value at the 99.9 % level for every dof, above it for 1 and 2)."""
    if dof < 1:
        return 0.0
    c = 2 / (9 * dof)
    return float(dof * (1 - c + z * math.sqrt(c)) ** 3)


def noise_dof(filled: int, binned: bool) -> int:
    """Degrees of freedom of a column's noise: one less than the bins the reference
    fills, plus the two bins outside a numeric reference's range (the current side puts
    about ``m / (n + 1)`` values in each by chance, and KL counts them fully)."""
    return max(0, filled - 1) + (2 if binned else 0)


def noise_bound(dof: int, n: int, m: int) -> float:
    """The plug-in KL that two samples (n, m values) of one distribution exceed with
    probability about ``1 - NOISE_LEVEL``, for ``dof`` degrees of freedom.

    Under no change, ``2 n m / (n + m) * KL`` is approximately chi-square with
    ``dof`` degrees of freedom (the G-test of homogeneity; KL's second-order term is
    Pearson's statistic), so the bound is that quantile times ``(1/n + 1/m) / 2``.
    Bins are joined first (:func:`merge_rare`) so that each holds enough values for the
    approximation; the level is high (1 in 10,000 per column) because at a few hundred
    values the statistic's tail is heavier than chi-square's."""
    if not (n and m):
        return math.inf
    return chi2_quantile(dof) / 2 * (1 / n + 1 / m)


def rows_needed(dof: int, threshold_nats: float) -> int | None:
    """Rows per side at which :func:`noise_bound` (n = m) falls to the threshold: noise
    alone then crosses it with probability about ``1 - NOISE_LEVEL``."""
    if threshold_nats <= 0 or not math.isfinite(threshold_nats):
        return None
    return max(MIN_VALUES, math.ceil(chi2_quantile(dof) / threshold_nats))


@dataclass(frozen=True)
class Noise:
    """A column's noise in its metric's units: the bound noise exceeds with probability
    ``1 - NOISE_LEVEL``, the mean (floor), and the rows per side the threshold needs
    (when it is below the bound); all None for a metric without noise bound."""

    bound: float | None = None
    floor: float | None = None
    rows_needed: int | None = None


def metric_noise(
    metric: str, dof: int, filled: int, n: int, m: int, threshold: float, nats: float
) -> Noise:
    """KL's :func:`noise_bound` and :func:`noise_floor` in the metric's units (its
    entry's ``noise_scale`` and ``growth``; ``nats``: ln of the --base for divergences)."""
    entry = METRIC_BY_NAME[metric]
    if entry.noise_scale is None:
        return Noise()
    unit = nats if entry.log else 1.0
    scale, power = entry.noise_scale, entry.growth

    def units(kl: float) -> float:
        if power == 1:
            return kl * (scale / unit)
        return math.pow(scale * kl, power) / unit

    bound = units(noise_bound(dof, n, m))
    needed = None
    if threshold < bound:
        needed = rows_needed(dof, (threshold * unit) ** (1 / power) / scale)
    return Noise(bound, units(noise_floor(filled, n, m)), needed)


def merge_rare(
    p: np.ndarray,
    q: np.ndarray,
    labels: list[str],
    need: int,
    adjacent: bool,
    members: Sequence[int] = (),
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Bins (reference counts ``p``, current ``q``) joined until each bin the reference
    fills holds at least ``need`` values of both sides together.

    Rarity is decided on the two sides' **added** counts: under no change they say
    nothing about how the values split between the sides, whereas choosing bins by the
    reference's counts alone picks those the reference happened to fill more (they then
    look emptier in the current data: a bias of its own).

    Numeric bins (``adjacent``) are joined with their neighbours from the left, the
    inner bins only (a last group still short joins the one before); the bins below and
    above the reference's range stay as they are. Rare categories are pooled into one
    bin, with the new values (the last bin: seen 0 times rather than a few; the
    reference's rare categories foretell them, as in Good-Turing), and the pool joins
    the smallest other category while it is short. The "other" bin of categories beyond
    ``--max-categories`` (``members``: categories per bin) is rare when its categories
    hold fewer than ``need`` values on average. Bins outside a numeric reference's range
    are never joined, nor new values when no category is rare, so a total change still
    scores at least ``ln(1 + 1/epsilon) / (1 + epsilon)`` unless the reference holds only
    rare categories (a column whose categories say nothing at this size).
    """
    import numpy as np

    size = p.size
    both = p + q
    if adjacent:
        groups = _adjacent_groups(both, need)
    else:
        found = _category_groups(p, both, need, list(members) or [1] * size)
        if found is None:
            return p, q, labels
        groups = found
    if len(groups) == size:
        return p, q, labels
    merged_p = np.array([int(p[g].sum()) for g in groups], dtype=np.int64)
    merged_q = np.array([int(q[g].sum()) for g in groups], dtype=np.int64)
    return merged_p, merged_q, [_joined([labels[i] for i in g], adjacent) for g in groups]


def _adjacent_groups(both: np.ndarray, need: int) -> list[list[int]]:
    size = both.size
    groups: list[list[int]] = [[0]]
    inner: list[list[int]] = []
    total = 0
    for i in range(1, size - 1):
        if not inner or total >= need:
            inner.append([])
            total = 0
        inner[-1].append(i)
        total += int(both[i])
    if len(inner) > 1 and total < need:
        inner[-2].extend(inner.pop())
    return [*groups, *inner, [size - 1]]


def _category_groups(
    p: np.ndarray, both: np.ndarray, need: int, per: list[int]
) -> list[list[int]] | None:
    size = p.size
    filled = [i for i in range(size - 1) if p[i] > 0]
    rare = [i for i in filled if both[i] < need * max(1, per[i])]
    if not rare:
        return None
    rare.append(size - 1)
    is_rare = set(rare)
    common = [i for i in filled if i not in is_rare]
    if int(both[rare].sum()) < need and common:
        smallest = min(common, key=lambda i: (int(both[i]), -i))
        rare = sorted([*rare, smallest])
    pooled = set(rare)
    groups = [[i] for i in range(size) if i not in pooled]
    groups.insert(sum(1 for g in groups if g[0] < rare[0]), rare)
    return groups


def _joined(labels: list[str], numeric: bool) -> str:
    """The label of joined bins: a numeric range, or the categories (at most five)."""
    if len(labels) == 1:
        return labels[0]
    if numeric:
        return f"{labels[0].split(', ')[0]}, {labels[-1].split(', ')[-1]}"
    shown = " + ".join(labels[:5])
    return f"({shown}{f' + {len(labels) - 5} more' if len(labels) > 5 else ''})"
