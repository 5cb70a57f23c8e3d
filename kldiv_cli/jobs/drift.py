"""Data drift between a reference table and a current one, column by column.

The rules (the user's version is ``docs/drift.md``):

* **Roles**, decided on the reference (overrides: ``--skip``, ``--categorical``,
  ``--numeric``, ``--datetime numeric``): Arrow date/time columns and text columns whose
  every value is ISO-8601 are *datetime*; row keys by :mod:`kldiv_cli.io.roles`' rule
  (unique integers or text, named like a key, monotone, or disjoint from the current
  values; looked at on the values of at most :data:`ID_SAMPLE` rows taken at even
  intervals) are *identifiers*; both are listed as skipped (only their missing share
  is checked). Text that is mostly distinct (:func:`text_reason`) is *text*, binned by
  its values' lengths like a numeric column. Booleans, other text, and numbers with at
  most :data:`NUMERIC_CATEGORIES` distinct (finite) values, each seen twice on average,
  are *categorical*; other numbers are *numeric*.
* **Numeric bins** from the reference only: ``b = min(bins, values)`` quantile edges
  ``np.quantile(ref, [1/b, ..., (b-1)/b])`` (NumPy's "linear" method) or equal-width
  edges over ``[min, max]``, with ``min`` as the first edge, duplicates merged. A value
  v is in bin ``searchsorted(edges, v, side="right")``: bin 0 holds values below the
  reference's minimum, bins ``[e_i, e_i+1)`` follow, the last inner bin is closed at the
  reference's maximum, and one more bin holds values above it. The reference has no
  values outside its own range, so values that move out of it count fully.
* **Categories**: the ``max_categories`` most frequent reference categories (ties by
  value), one "other" bin for the rest (listed in the profile), one "new" bin for
  values the reference never had. New values are reported by name (top 10).
* **Missing** values (null, NaN) are left out of the bins; each side's missing share
  of rows and its change are reported, and a change above ``max_missing_change``
  drifts the column (reason ``missing``).
* **Smoothing**: ``epsilon`` is spread over the ``k`` bins of a column,
  ``p_i = (c_i / n + epsilon / k) / (1 + epsilon)``, on both sides. The added mass is
  ``epsilon`` in total whatever ``k``, so it cannot drown a change: a column whose
  values all left the reference's bins scores ``KL >= ln(1 + 1/epsilon) / (1 + epsilon)``
  (9.2 nats for the default), and identical histograms score exactly 0.
* **Divergences**: KL(reference || current) is torch's ``kl_div(log q, p,
  reduction="sum")`` through :func:`kldiv_cli.kl_div`; reverse KL swaps the sides, PSI
  is their sum, Jensen-Shannon ``(KL(p||m) + KL(q||m)) / 2`` with ``m = (p + q) / 2``;
  nats, or bits with ``base="2"``.
* **Noise**: bins with fewer than :data:`MIN_BIN_COUNT` reference values (scaled by
  n/m) are joined first (:func:`merge_rare`). Plug-in KL between two samples of one
  distribution averages about ``(k' - 1)/2 * (1/n + 1/m)`` for the ``k'`` bins the
  reference fills (twice that for PSI, a quarter for JS), and ``2 n m/(n + m) KL`` is
  about chi-square: a column drifts on its distribution only above both its threshold
  and :func:`noise_bound` (the 99.99 % quantile); between the two it is *weak*.
* **More measures** (``measures`` in JSON, any of them the gate): Hellinger on the same
  bins; Wasserstein (normed by the reference's standard deviation) and the two-sample
  Kolmogorov-Smirnov test on the values (the profile's sketch: all of them up to
  ``SKETCH_SIZE``); chi-square on a categorical column's bins as profiled
  (:mod:`kldiv_cli.core.twosample`, SciPy's numbers). The tests gate on p-values below
  ``alpha``, corrected over the columns tested (:func:`apply_correction`).
* **Schema changes** (a column on one side only, values of another class) are reasons
  that fail the check, or warnings with ``schema="warn"``.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import InputError
from ..io.drift_tables import Table, expand, is_profile, open_table
from ..text import clean
from .drift_calibrate import column_threshold
from .drift_groups import Groups, segments_of, window_groups
from .drift_measures import (
    METRIC_BY_NAME,
    MIN_BIN_COUNT,
    MIN_VALUES,
    P_METRICS,
    Z_NOISE,
    bin_measures,
    column_metric,
    contributions,
    count_measures,
    merge_rare,
    metric_noise,
    noise_dof,
    value_measures,
)
from .drift_profile import (
    ColumnProfile,
    Profile,
    Role,
    Thresholds,
    load_profile,
    load_thresholds,
)
from .drift_report import (
    Bin,
    ColumnResult,
    DriftReport,
    Histogram,
    Missing,
    Reason,
    Settings,
)
from .drift_request import BASES, ColumnRules, DriftRequest
from .drift_roles import (
    Counted,
    Profiler,
    arrow_text,
    bin_labels,
    build_profile,
    current_counts,
    profile_column,
)
from .drift_schema import (
    check_profile_fits,
    compatible,
    lone_role,
    schema_change,
    shared_columns,
    skip_if_new,
    type_change,
    unmatched_columns,
    unreadable,
    with_changes,
)
from .drift_values import (
    KIND_WORDS,
    SKIPPED_BY_USER,
    Column,
    sampled_values,
)

#: What a caller of the drift jobs needs: the jobs, their requests and their results.
__all__ = [
    "ColumnResult",
    "ColumnRules",
    "DriftReport",
    "DriftRequest",
    "Profiler",
    "check_column",
    "run_drift",
]

THREADS = min(2, os.cpu_count() or 1)


# ----------------------------------------------------------------- the jobs


# ----------------------------------------------------------------- the check


def missing_bound(missing: Missing) -> float:
    """The change of missing share that chance exceeds with probability about
    ``1 - NOISE_LEVEL`` when both sides miss values at one rate: ``z`` standard errors
    of the difference of two proportions, ``sqrt(pi (1 - pi) (1/N + 1/M))`` with the
    pooled rate ``pi`` (N, M rows)."""
    n, m = missing.reference_rows, missing.current_rows
    if not (n and m):
        return math.inf
    pi = (missing.reference + missing.current) / (n + m)
    return Z_NOISE * math.sqrt(pi * (1 - pi) * (1 / n + 1 / m))


def _missing_reasons(missing: Missing, request: DriftRequest) -> tuple[Reason, ...]:
    """``missing`` when the share moved by more than ``--max-missing-change`` and more
    than chance moves it (:func:`missing_bound`)."""
    change = abs(missing.change)
    if change > request.max_missing_change and change > missing_bound(missing):
        return (Reason.MISSING,)
    return ()


def check_column(
    ref: ColumnProfile,
    col: Column,
    request: DriftRequest,
    threshold: float,
    origin: str = "fixed",
    group: str | None = None,
) -> ColumnResult:
    """One column against its reference profile (the rules are the module's docstring);
    ``origin``: where ``threshold`` came from (``fixed`` or ``file``), unless
    ``--threshold learned`` replaces it with the column's calibrated one. ``group``: the
    window or segment ``col`` holds; there, too few (or no) values is not an error: the
    column is skipped in that group (its missing share is still checked)."""
    base = ColumnResult(
        name=ref.name,
        role=ref.role,
        metric=column_metric(request.metric, ref.role is Role.CATEGORICAL),
        threshold=threshold,
        missing=Missing(ref.missing, ref.rows, 0, col.rows),
        threshold_origin=origin,
        group=group,
    )
    if ref.role is Role.SKIPPED and ref.reason == SKIPPED_BY_USER:
        return with_changes(base, skip_reason=ref.reason)
    missing = Missing(ref.missing, ref.rows, col.missing(), col.rows)
    reasons = _missing_reasons(missing, request)
    result = with_changes(
        base,
        missing=missing,
        missing_weak=not reasons and abs(missing.change) > request.max_missing_change,
        missing_bound=missing_bound(missing),
        reasons=reasons,
        n_reference=ref.values,
        n_current=col.rows - missing.current,
    )
    changed = type_change(ref, col.kind)
    if changed:
        return schema_change(result, Reason.TYPE_CHANGED, changed, request.schema)
    if not ref.role.compared:
        return with_changes(result, skip_reason=ref.reason)
    result = with_changes(result, role_reason=ref.reason)
    if not compatible(ref, col.kind):  # all missing now
        found = KIND_WORDS.get(col.kind, col.kind)
        return with_changes(
            result, error=f"is {ref.role.value} in the reference but {found} in the current data"
        )
    try:
        counted = current_counts(ref, col)
    except InputError as exc:
        return with_changes(result, error=str(exc))
    n_cur = counted.values
    result = with_changes(result, n_current=n_cur)
    # In a window or segment few values is no fault of the data: the column is skipped there.
    why = "skip_reason" if group is not None else "error"
    if n_cur == 0:
        return with_changes(result, **{why: "no values in the current data (all missing)"})
    if ref.values < MIN_VALUES or n_cur < MIN_VALUES:
        return with_changes(
            result,
            **{
                why: f"too few values to compare ({ref.values} reference, {n_cur} current; "
                f"at least {MIN_VALUES} each)"
            },
        )
    return _compare(ref, counted, request, _thresholds(ref, request, result, n_cur))


def _compare(
    ref: ColumnProfile, counted: Counted, request: DriftRequest, result: ColumnResult
) -> ColumnResult:
    """The distribution of a column with enough values on both sides: its measures, the
    noise at its sizes, and the verdict."""
    n_cur, cur = counted.values, counted.counts
    p = np.asarray(ref.counts, dtype=np.int64)
    if ref.role is Role.CATEGORICAL:
        p = np.append(p, 0)
    n_new_values = int(cur[-1])  # before joining: new values may join the rare categories
    # On the values, or the bins as profiled (before rare ones are joined).
    if counted.present is not None:
        raw = value_measures(
            ref.sketch, ref.finite, float(ref.std or 0.0), counted.present, result.metric
        )
    else:
        raw = count_measures(p, cur)
    need = math.ceil(MIN_BIN_COUNT * (ref.values + n_cur) / min(ref.values, n_cur))
    members = [1] * len(ref.categories) + ([len(ref.pooled)] if ref.pooled else []) + [0]
    p, cur, labels = merge_rare(p, cur, bin_labels(ref), need, ref.role.binned, members)
    measures = bin_measures(p, cur, request.epsilon, BASES[request.base]).merged(raw)
    metric, threshold = result.metric, result.threshold
    value = measures.get(metric)
    if value is None and ref.sketch:
        return with_changes(result, error=f"{metric}: no finite values in the current data")
    if value is None:
        return with_changes(
            result,
            error=f"{metric} needs the reference's values, which this profile does not hold "
            "(built before profile version 4, or by --engine dask); use the reference itself "
            "or rebuild the profile with 'kldiv profile'",
        )
    nats = math.log(BASES[request.base])
    filled = int(np.count_nonzero(p))
    noise = metric_noise(
        metric, noise_dof(filled, ref.role.binned), filled, ref.values, n_cur, threshold, nats
    )
    reasons = result.reasons
    if metric not in P_METRICS and not (
        value <= threshold or (noise.bound is not None and value <= noise.bound)
    ):
        reasons = (Reason.DISTRIBUTION, *reasons)
    new_share = None
    if ref.role is Role.CATEGORICAL:
        new_share = n_new_values / n_cur
        limit = request.max_new_category_share
        if limit is not None and new_share > limit:
            reasons = (*reasons, Reason.NEW_CATEGORIES)
    terms = contributions(p, cur, request.epsilon, metric)
    if METRIC_BY_NAME[metric].terms_in_nats:
        terms = terms / nats
    order = np.argsort(-terms, kind="stable")[: request.top]
    return with_changes(
        result,
        reasons=reasons,
        measures=measures,
        bins=int(p.size),
        noise_floor=noise.floor,
        noise_bound=noise.bound,
        rows_needed=noise.rows_needed,
        histogram=Histogram(tuple(labels), tuple(int(c) for c in p), tuple(int(c) for c in cur)),
        top_bins=tuple(
            Bin(labels[i], float(p[i]) / ref.values, float(cur[i]) / n_cur, float(terms[i]))
            for i in order
        ),
        new_categories=tuple(counted.new),
        n_new_categories=counted.n_new,
        new_category_share=new_share,
        outside_range_share=(float(cur[0] + cur[-1]) / n_cur if ref.role.binned else None),
    )


def _thresholds(
    ref: ColumnProfile, request: DriftRequest, result: ColumnResult, n_cur: int
) -> ColumnResult:
    """The column's threshold (learned, with ``--threshold learned``) and warn threshold."""
    metric, threshold, base = result.metric, result.threshold, BASES[request.base]
    if request.learned is not None:
        from_file = result.threshold_origin == "file"
        got = column_threshold(ref, metric, threshold, from_file, request.learned, n_cur, base)
        threshold = got.threshold
        result = with_changes(result, threshold=threshold, threshold_origin=got.origin)
    if request.warn_learned is not None or request.warn_threshold is not None:
        fixed = request.warn_threshold if request.warn_threshold is not None else threshold
        warn = column_threshold(ref, metric, fixed, False, request.warn_learned, n_cur, base)
        result = with_changes(result, warn_threshold=warn.threshold)
    return result


def apply_correction(results: list[ColumnResult], alpha: float, method: str) -> list[ColumnResult]:
    """The dataset's p-value tests: each tested column's p-value corrected over all of them
    (``method``: :func:`~kldiv_cli.core.twosample.adjust_p_values`); a column drifts on its
    distribution (reason ``distribution``) when the corrected p-value is below ``alpha``."""
    from ..core.twosample import adjust_p_values

    tested = [
        i
        for i, c in enumerate(results)
        if c.metric in P_METRICS and c.value is not None and not c.error
    ]
    adjusted = adjust_p_values(np.array([results[i].value for i in tested]), method)
    out = list(results)
    for i, p_adj in zip(tested, adjusted.tolist()):
        c = results[i]
        reasons = (Reason.DISTRIBUTION, *c.reasons) if p_adj < alpha else c.reasons
        out[i] = with_changes(c, p_adjusted=p_adj, reasons=reasons)
    return out


def _map_columns(
    work: Callable[[str], list[ColumnResult]],
    names: Sequence[str],
    progress: Callable[[int, int], None] | None = None,
) -> list[list[ColumnResult]]:
    """``work`` on every column, in order, on up to :data:`THREADS` threads: the heavy
    parts (Arrow's hashing and casts, NumPy's partition and comparisons) release the GIL,
    and each thread holds one column of each side. ``progress(done, total)`` is told of
    each column done (from this thread)."""
    from concurrent.futures import ThreadPoolExecutor

    out: list[list[ColumnResult]] = []
    threads = THREADS if len(names) > 1 else 1
    with ThreadPoolExecutor(threads) as pool:
        for rows in pool.map(work, names):
            out.append(rows)
            if progress is not None:
                progress(len(out), len(names))
    return out


@dataclass
class _Sides:
    """Both sides of a check, opened: the current table, the reference's table or
    profile, the columns to compare and those of one side only."""

    current: Table
    ref_label: str
    cur_label: str
    reference_table: Table | None
    profile: Profile | None
    reference_rows: int
    names: list[str]
    unmatched: tuple[tuple[str, ...], tuple[str, ...]]


REF_KEYS, CURRENT_KEYS = "--key (or --reference-key)", "--key (or --current-key)"


def _open_sides(request: DriftRequest, stdin: bytes | None) -> _Sides:
    key = request.current_key or request.key
    current = open_table(request.current, request.delimiter, stdin, key, CURRENT_KEYS)
    ref_label, _ = expand(request.reference)
    cur_label, _ = expand(request.current)
    reference_table: Table | None = None
    profile: Profile | None = None
    if is_profile(request.reference):
        profile = load_profile(request.reference[0])
        check_profile_fits(profile, request, ref_label)
        reference_names = [c.name for c in profile.columns]
        reference_rows = profile.rows
    else:
        key = request.reference_key or request.key
        reference_table = open_table(request.reference, request.delimiter, stdin, key, REF_KEYS)
        reference_names = reference_table.column_names
        reference_rows = reference_table.num_rows
    names = request.rules.select(
        ref_label,
        shared_columns(reference_names, current.column_names, ref_label),
        [*reference_names, *current.column_names],
    )
    # A profile knows the reference's other columns too (left out when it was built):
    # they are not new when the current data have them.
    schema_names = (
        list(profile.table_columns) if profile and profile.table_columns else reference_names
    )
    unmatched = unmatched_columns(schema_names, current.column_names, request.rules)
    if profile is not None:
        profiled = set(reference_names)
        unmatched = (tuple(n for n in unmatched[0] if n in profiled), unmatched[1])
    if request.grouping is not None:  # the window/segment column is never a drift column
        by = request.grouping.column
        names = [n for n in names if n != by]
        unmatched = (
            tuple(n for n in unmatched[0] if n != by),
            tuple(n for n in unmatched[1] if n != by),
        )
    return _Sides(
        current,
        ref_label,
        cur_label,
        reference_table,
        profile,
        reference_rows,
        names,
        unmatched,
    )


def _group_rows(request: DriftRequest, sides: _Sides) -> tuple[Groups | None, Groups | None]:
    """The current rows by window or segment (and the reference's, by segment, with
    ``--reference-segment``); None without ``--window``/``--segment``."""
    g = request.grouping
    if g is None:
        return None, None
    if g.column not in sides.current.column_names:
        raise InputError(sides.cur_label, f"has no column {clean(g.column)!r} to group by")
    col = Column.read(sides.current, g.column)
    if g.period is not None:
        return window_groups(col, g.period), None
    reference = None
    if g.reference_segment:
        assert sides.reference_table is not None  # validate(): not a profile
        if g.column not in sides.reference_table.column_names:
            raise InputError(sides.ref_label, f"has no column {clean(g.column)!r} to segment")
        reference = Column.read(sides.reference_table, g.column)
    return segments_of(col, g.max_segments).groups(col, reference)


def run_drift(
    request: DriftRequest,
    stdin: bytes | None = None,
    version: str = "",
    profiler: Profiler | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> DriftReport:
    """``kldiv drift``: validate, read both sides one column at a time, compare
    (``profiler``: a raw reference's columns profiled elsewhere, see :func:`build_profile`;
    ``progress(done, total)``: columns done).
    With ``--window``/``--segment`` each column is read once and checked per group."""
    started = time.perf_counter()
    request.validate()
    thresholds = load_thresholds(request.thresholds) if request.thresholds else Thresholds()
    sides = _open_sides(request, stdin)
    groups, ref_groups = _group_rows(request, sides)
    import pyarrow as pa

    p_test = request.metric in P_METRICS

    def one(name: str) -> list[ColumnResult]:
        threshold = request.level if p_test else thresholds.for_column(name, request.threshold)
        from_file = not p_test and (name in thresholds.columns or thresholds.default is not None)
        origin = "file" if from_file else "fixed"
        try:
            col = Column.read(sides.current, name)
            if groups is None:
                ref = _reference(sides, request, name, profiler, col)
                return [check_column(ref, col, request, threshold, origin)]
            parts = groups.split(col)
            if ref_groups is not None:
                assert sides.reference_table is not None
                whole = Column.read(sides.reference_table, name)
                refs = [
                    profile_column(r, request.rules, sampled_values(c.data))
                    for r, c in zip(ref_groups.split(whole), parts)
                ]
            else:
                refs = [_reference(sides, request, name, profiler, col)] * len(parts)
            return [
                skip_if_new(check_column(ref, part, request, threshold, origin, g.label), g)
                for ref, part, g in zip(refs, parts, groups.groups)
            ]
        except pa.ArrowException as exc:
            return [unreadable(name, request, threshold, arrow_text(exc))]

    found = _map_columns(one, sides.names, progress)
    results = _group_major(found, groups)
    if p_test:
        results = apply_correction(results, request.level, request.correction)
    default = thresholds.default if thresholds.default is not None else request.threshold
    if p_test:
        default = request.level
    results += _schema_rows(request, sides, default)
    return DriftReport(
        reference=sides.ref_label,
        current=sides.cur_label,
        reference_rows=sides.reference_rows,
        current_rows=sides.current.num_rows,
        settings=_settings(request, sides.profile, default),
        columns=tuple(results),
        seconds=time.perf_counter() - started,
        version=version,
        command=request.command,
        unknown_thresholds=tuple(sorted(set(thresholds.columns) - set(sides.names))),
        only_in_reference=sides.unmatched[0],
        only_in_current=sides.unmatched[1],
        grouping=request.grouping,
        groups=() if groups is None else groups.groups,
        ungrouped_rows=0 if groups is None else groups.ungrouped,
        unparsed=(0, "") if groups is None else groups.unparsed,
    )


def _reference(
    sides: _Sides, request: DriftRequest, name: str, profiler: Profiler | None, col: Column
) -> ColumnProfile:
    """A column's reference profile: the profile's, or built from the reference table
    (by ``profiler`` where it takes the column)."""
    if sides.profile is None:
        assert sides.reference_table is not None
        other = sampled_values(col.data)
        return next(build_profile(sides.reference_table, request.rules, [name], profiler, other))
    ref = sides.profile.column(name)
    if request.rules.override(name) is Role.SKIPPED:
        ref = ColumnProfile(name, Role.SKIPPED, ref.rows, ref.missing, reason=SKIPPED_BY_USER)
    return ref


def _group_major(found: list[list[ColumnResult]], groups: Groups | None) -> list[ColumnResult]:
    """Each column's rows (one per group) ordered group by group; a column that could not
    be read at all (one row, no group) after them."""
    if groups is None:
        return [r for rows in found for r in rows]
    whole = [rows for rows in found if len(rows) == len(groups.groups) and rows[0].group]
    lone = [r for rows in found if rows not in whole for r in rows]
    return [rows[i] for i in range(len(groups.groups)) for rows in whole] + lone


def _schema_rows(request: DriftRequest, sides: _Sides, default: float) -> list[ColumnResult]:
    """Columns of one side only: schema changes (of no group)."""
    rows = []
    for names_, reason, text in (
        (
            sides.unmatched[0],
            Reason.COLUMN_REMOVED,
            "in the reference, missing from the current data",
        ),
        (sides.unmatched[1], Reason.COLUMN_ADDED, "in the current data, not in the reference"),
    ):
        for name in names_:
            missing = Missing(0, sides.reference_rows, 0, sides.current.num_rows)
            role = lone_role(sides.profile, name)
            lone = ColumnResult(name, role, request.metric, default, missing)
            rows.append(schema_change(lone, reason, text, request.schema))
    return rows


def _settings(request: DriftRequest, profile: Profile | None, default: float) -> Settings:
    s = request
    p_test = s.metric in P_METRICS
    return Settings(
        metric=s.metric,
        threshold=default,
        epsilon=s.epsilon,
        base=s.base,
        bins=profile.bins if profile else s.rules.bins,
        binning=profile.binning if profile else s.rules.binning,
        max_categories=profile.max_categories if profile else s.rules.max_categories,
        datetime=profile.datetime if profile else s.rules.datetime,
        fail_on=s.fail_on,
        max_missing_change=s.max_missing_change,
        max_new_category_share=s.max_new_category_share,
        schema=s.schema,
        alpha=s.level if p_test else None,
        correction=s.correction,
        learned=s.learned,
    )
