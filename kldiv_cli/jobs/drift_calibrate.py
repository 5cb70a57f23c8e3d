"""Thresholds learned from the reference: ``kldiv profile --calibrate N`` and
``kldiv drift PROFILE CUR --threshold learned[:K]`` (the user's version is ``docs/drift.md``).

For each compared column, N random halves of the reference (rows shuffled by a generator
seeded with ``--calibrate-seed`` and the column's name, so a column's numbers do not
depend on the others) are compared with each other exactly as ``drift`` compares a
current table with a reference: counts in the reference's bins, rare bins joined, the
same smoothing (rare bins judged as in a check of the whole reference against a
current table of its size, so that the bins are those of such a check); and, for binned
columns, Wasserstein on the values. The profile stores
each measure's mean and standard deviation over the N splits, with the halves' sizes.

At check time a column's threshold is ``(mean + K sigma)`` scaled from the halves' sizes
(a, b values) to the check's (n reference, m current values): under no change the
divergences grow with ``s = 1/n + 1/m`` (their mean is ``(k - 1)/2 * s``), so they are
multiplied by ``s / (1/a + 1/b)`` to the power of the metric's ``growth`` (Hellinger and
Wasserstein grow with ``sqrt(s)``).
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass

import numpy as np

from .drift_measures import (
    CALIBRATED,
    METRIC_BY_NAME,
    MIN_BIN_COUNT,
    MIN_VALUES,
    bin_measures,
    merge_rare,
    value_measures,
)
from .drift_profile import Calibration, ColumnProfile, Role
from .drift_roles import bin_labels, current_counts, value_sketch
from .drift_values import Column

#: At least this many splits give a learned threshold; fewer (or a column with fewer
#: than 2 * MIN_VALUES values) keep the fixed one.
MIN_RESAMPLES = 2


@dataclass(frozen=True)
class Learned:
    """A column's threshold and where it came from (``learned``, ``file`` or ``fixed``)."""

    threshold: float
    origin: str


def _half(col: Column, rows: np.ndarray) -> Column:
    """The column restricted to ``rows``."""
    from dataclasses import replace

    import pyarrow as pa

    data = col.data.take(pa.array(rows))
    return replace(col, data=data, rows=len(rows), null_count=data.null_count, _numbers=None)


def calibrate(
    ref: ColumnProfile, col: Column, resamples: int, seed: int, epsilon: float
) -> Calibration | None:
    """Each measure's mean and standard deviation over ``resamples`` random halves of a
    reference column (``col``: its values; ``ref``: its profile); None for a
    column not compared or with too few values."""
    if not ref.role.compared or resamples < MIN_RESAMPLES or ref.values < 2 * MIN_VALUES:
        return None
    rng = np.random.default_rng([seed, zlib.crc32(ref.name.encode("utf-8", "surrogatepass"))])
    found: dict[str, list[float]] = {m: [] for m in CALIBRATED}
    sizes: list[tuple[int, int]] = []
    labels = bin_labels(ref)
    members = [1] * len(ref.categories) + ([len(ref.pooled)] if ref.pooled else []) + [0]
    for _ in range(resamples):
        order = rng.permutation(col.rows)
        one, two = _half(col, order[: col.rows // 2]), _half(col, order[col.rows // 2 :])
        first, second = current_counts(ref, one), current_counts(ref, two)
        p, a, a_values = first.counts, first.values, first.present
        q, b, b_values = second.counts, second.values, second.present
        if min(a, b) < MIN_VALUES:
            continue
        # The bins a check against a current table of the reference's size joins: there
        # a bin's two sides add up to about twice its count here.
        need = math.ceil(MIN_BIN_COUNT * (a + b) / min(a, b) / 2)
        p, q, _ = merge_rare(p, q, labels, need, ref.role.binned, members)
        measures = bin_measures(p, q, epsilon, math.e)
        if a_values is not None and b_values is not None:
            finite = a_values[np.isfinite(a_values)]
            sketch = value_sketch(finite) if finite.size else {}
            measures = measures.merged(
                value_measures(
                    sketch.get("sketch", ()),
                    sketch.get("finite", 0),
                    sketch.get("std", 0.0),
                    b_values,
                )
            )
        for m in CALIBRATED:
            value = measures.values.get(m)
            if value is not None:
                found[m].append(value)
        sizes.append((a, b))
    return _summary(found, sizes, seed)


def calibrate_chunks(
    ref: ColumnProfile, chunks: list[Column], epsilon: float, by: str
) -> Calibration | None:
    """Each measure's mean and standard deviation over consecutive time ``chunks`` of a
    reference column, each compared with the whole reference (``ref``: its profile, bins
    and sketch) exactly as ``drift`` compares a current table with it (NannyML's
    reference chunks); None for a column not compared or with fewer than
    :data:`MIN_RESAMPLES` chunks of at least ``MIN_VALUES`` values."""
    if not ref.role.compared:
        return None
    found: dict[str, list[float]] = {m: [] for m in CALIBRATED}
    sizes: list[tuple[int, int]] = []
    labels = bin_labels(ref)
    members = [1] * len(ref.categories) + ([len(ref.pooled)] if ref.pooled else []) + [0]
    whole = np.asarray(ref.counts, dtype=np.int64)
    if ref.role is Role.CATEGORICAL:
        whole = np.append(whole, 0)
    for chunk in chunks:
        counted = current_counts(ref, chunk)
        b = counted.values
        if b < MIN_VALUES or ref.values < MIN_VALUES:
            continue
        need = math.ceil(MIN_BIN_COUNT * (ref.values + b) / min(ref.values, b))
        p, q, _ = merge_rare(whole, counted.counts, labels, need, ref.role.binned, members)
        measures = bin_measures(p, q, epsilon, math.e)
        if counted.present is not None:
            std = float(ref.std or 0.0)
            measures = measures.merged(value_measures(ref.sketch, ref.finite, std, counted.present))
        for m in CALIBRATED:
            value = measures.values.get(m)
            if value is not None:
                found[m].append(value)
        sizes.append((ref.values, b))
    return _summary(found, sizes, 0, by)


def _summary(
    found: dict[str, list[float]], sizes: list[tuple[int, int]], seed: int, by: str = ""
) -> Calibration | None:
    """The calibration of the measures ``found`` over splits of ``sizes`` values."""
    if len(sizes) < MIN_RESAMPLES:
        return None
    stats = {
        m: (float(np.mean(v)), float(np.std(v, ddof=1)))
        for m, v in found.items()
        if len(v) >= MIN_RESAMPLES
    }
    a_mean = float(np.mean([s[0] for s in sizes]))
    b_mean = float(np.mean([s[1] for s in sizes]))
    return Calibration(len(sizes), seed, (a_mean, b_mean), stats, by)


def learned_threshold(
    calibration: Calibration | None, metric: str, n: int, m: int, k: float, base: float
) -> float | None:
    """``(mean + k sigma)`` of ``metric`` over the calibration's halves, scaled to n
    reference and m current values (module docstring) and to ``base`` (divergences); None
    when the profile learned nothing for it."""
    if calibration is None or metric not in calibration.metrics or not (n and m):
        return None
    mean, sigma = calibration.metrics[metric]
    a, b = calibration.sizes
    factor = (1 / n + 1 / m) / (1 / a + 1 / b)
    entry = METRIC_BY_NAME[metric]
    grown = factor if entry.growth == 1 else math.pow(factor, entry.growth)
    return (mean + k * sigma) * grown / (math.log(base) if entry.log else 1.0)


def column_threshold(
    ref: ColumnProfile,
    metric: str,
    fixed: float,
    from_file: bool,
    learned_k: float | None,
    n_current: int,
    base: float,
) -> Learned:
    """The threshold a column is gated at: learned when asked and known, else the
    ``--thresholds`` file's or the fixed one."""
    if learned_k is not None and ref.role is not Role.SKIPPED:
        value = learned_threshold(ref.calibration, metric, ref.values, n_current, learned_k, base)
        if value is not None:
            return Learned(value, "learned")
    return Learned(fixed, "file" if from_file else "fixed")
