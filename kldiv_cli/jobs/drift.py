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
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

import numpy as np

from ..core import kl_div
from ..errors import InputError, UsageError
from ..io.columns import column_array
from ..io.drift_tables import Table, expand, is_profile, open_table
from ..text import clean, format_number
from .drift_profile import (
    SKETCH_SIZE,
    Category,
    ColumnProfile,
    Profile,
    Role,
    Thresholds,
    category_key,
    load_profile,
    load_thresholds,
)

_F64 = np.dtype(np.float64)

NUMERIC_CATEGORIES = 20
#: Text is free text (role ``text``, compared by its lengths), not categories, when most
#: of its values are distinct (a category would hold fewer than two rows on average, and
#: a histogram of one-row bins is noise) and either there are more distinct values than
#: a column of numbers may have as categories, or the values are long (about four
#: words): sentences, not codes.
TEXT_DISTINCT_SHARE = 0.5
TEXT_MIN_DISTINCT = NUMERIC_CATEGORIES
TEXT_MIN_LENGTH = 20
ID_SAMPLE = 20_000
BLOCK = 1 << 20
THREADS = min(2, os.cpu_count() or 1)
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
_Z_NOISE = 3.719016485455709
SKIPPED_BY_USER = "skipped by --skip"
ALL_MISSING = "no values in the reference (all missing)"
NO_FINITE = "no finite values in the reference"
MAX_BINS = 10_000
TOP_NEW = 10
#: Divergences of the binned shares (in --base units), Hellinger on the same shares,
#: Wasserstein (normed by the reference's standard deviation) on the values, and the
#: p-values of two tests: Kolmogorov-Smirnov (numbers) and chi-square (categories).
METRICS = ("kl", "kl_reverse", "psi", "js", "hellinger", "wasserstein", "ks", "chi2")
LOG_METRICS = ("kl", "kl_reverse", "psi", "js")
#: Metrics that are p-values: a column drifts when its (corrected) p-value is below alpha.
P_METRICS = ("ks", "chi2")
CORRECTIONS = ("none", "bonferroni", "bh")
DEFAULT_ALPHA = 0.05
#: Evidently's floor on the reference's standard deviation when norming Wasserstein.
MIN_STD = 0.001
#: When K-S is not the gate, its p-value is exact only while both sides hold at most this
#: many values (a few milliseconds a column), else the limit distribution's: the exact
#: one made 20 columns of 9,000 x 8,000 values take 5.9 s of CPU instead of 0.3 s.
KS_QUICK_N = 1_000
SCHEMA_POLICIES = ("fail", "warn")
MAX_CALIBRATE = 10_000
BASES = {"e": math.e, "2": 2.0, "10": 10.0}
#: The noise floor of each metric relative to KL's.
FLOOR_SCALE = {"kl": 1.0, "kl_reverse": 1.0, "psi": 2.0, "js": 0.25}
_ISO = r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?)?$"


# ----------------------------------------------------------------- requests


def _names(values: Sequence[str]) -> tuple[str, ...]:
    """Options given several times and/or comma-separated, as one tuple of names/globs."""
    return tuple(t.strip() for v in values for t in v.split(",") if t.strip())


@dataclass(frozen=True)
class ColumnRules:
    """Which columns, and how each is binned: shared by ``drift`` and ``profile``."""

    columns: str | None = None
    exclude: tuple[str, ...] = ()
    categorical: tuple[str, ...] = ()
    numeric: tuple[str, ...] = ()
    skip: tuple[str, ...] = ()
    datetime: str = "skip"
    bins: int = 10
    binning: str = "quantile"
    max_categories: int = 50

    def validate(self) -> None:
        if not 2 <= self.bins <= MAX_BINS:
            raise UsageError(f"--bins must be between 2 and {MAX_BINS}, got {self.bins}")
        if self.binning not in ("quantile", "uniform"):
            raise UsageError(f"unknown binning {self.binning!r}; choose quantile or uniform")
        if self.datetime not in ("skip", "numeric"):
            raise UsageError(f"--datetime takes skip or numeric, got {self.datetime!r}")
        if not 1 <= self.max_categories <= MAX_BINS:
            raise UsageError(
                f"--max-categories must be between 1 and {MAX_BINS}, got {self.max_categories}"
            )
        both = set(_names(self.categorical)) & set(_names(self.numeric))
        if both:
            raise UsageError(
                f"{clean(sorted(both)[0])!r} is given to both --categorical and --numeric"
            )

    def select(self, label: str, names: list[str], known: Sequence[str] = ()) -> list[str]:
        """The columns to check, in table order: ``columns`` minus ``exclude``. A pattern
        that matches none of ``names`` nor ``known`` (the columns of either side) is an
        error."""
        import fnmatch

        from ..io.sources import select_columns

        chosen = [names[i] for i in select_columns(label, names, self.columns, [True] * len(names))]
        for option, patterns in (
            ("--exclude", self.exclude),
            ("--skip", self.skip),
            ("--categorical", self.categorical),
            ("--numeric", self.numeric),
        ):
            for pattern in _names(patterns):
                if not any(fnmatch.fnmatchcase(n, pattern) for n in [*names, *known]):
                    raise UsageError(f"{option}: no column matches {clean(pattern)!r}")
        excluded = _names(self.exclude)
        kept = [n for n in chosen if not any(fnmatch.fnmatchcase(n, p) for p in excluded)]
        if not kept:
            raise UsageError(f"{clean(label)}: no column left to check after --exclude")
        return kept

    def override(self, name: str) -> Role | None:
        """The role a user gave a column, if any."""
        import fnmatch

        for role, patterns in (
            (Role.SKIPPED, self.skip),
            (Role.CATEGORICAL, self.categorical),
            (Role.NUMERIC, self.numeric),
        ):
            if any(fnmatch.fnmatchcase(name, p) for p in _names(patterns)):
                return role
        return None


def _is_profile(paths: Sequence[str]) -> bool:
    return is_profile(paths)


def _check_extension(path: str | None, option: str, allowed: tuple[str, ...]) -> None:
    from ..io.writers import is_stream

    if not path or path == "-" or is_stream(path):  # /dev/stderr: any name will do
        return
    if os.path.splitext(path)[1].lower() not in allowed:
        raise UsageError(f"{option} writes {' or '.join(allowed)} files, got {clean(path)!r}")


@dataclass(frozen=True)
class DriftRequest:
    """Everything ``kldiv drift`` was asked, checked by :meth:`validate`."""

    reference: tuple[str, ...]
    current: tuple[str, ...]
    rules: ColumnRules = ColumnRules()
    metric: str = "kl"
    base: str = "e"
    epsilon: float = 1e-4
    threshold: float = 0.1
    thresholds: str | None = None
    fail_on: str = "any"
    max_missing_change: float = 0.05
    max_new_category_share: float | None = None
    #: Schema changes (columns removed, added, of another type): fail or warn.
    schema: str = "fail"
    #: The level of the p-value tests (``--metric ks|chi2``; default DEFAULT_ALPHA) and
    #: how the p-values are corrected for the number of columns tested.
    alpha: float | None = None
    correction: str = "none"
    #: ``--threshold learned[:K]``: gate each column at its calibrated mean + K sigma.
    learned: float | None = None
    #: ``--warn-threshold X|learned[:K]``: the warn tier (X, or K for a learned one).
    warn_threshold: float | None = None
    warn_learned: float | None = None
    delimiter: str | None = None
    top: int = 3
    output: str | None = None
    junit: str | None = None
    html: str | None = None
    command: str = ""

    @property
    def level(self) -> float:
        """The p-value tests' level: ``--alpha``, else :data:`DEFAULT_ALPHA`."""
        return DEFAULT_ALPHA if self.alpha is None else self.alpha

    def validate(self) -> None:
        """Options first, then the output guard: nothing is read before this passes."""
        self.rules.validate()
        if self.metric not in METRICS:
            raise UsageError(f"unknown metric {self.metric!r}; choose one of {', '.join(METRICS)}")
        if self.metric in P_METRICS:
            if not 0 < self.level < 1:
                raise UsageError(f"--alpha must be in (0, 1), got {self.alpha}")
            if self.thresholds:
                raise UsageError(
                    f"--metric {self.metric} is a p-value test gated by --alpha; "
                    "--thresholds sets thresholds of distances"
                )
        elif self.alpha is not None or self.correction != "none":
            raise UsageError(
                "--alpha and --correction apply to the p-value tests: give --metric ks or chi2"
            )
        if self.learned is not None:
            if not (math.isfinite(self.learned) and self.learned >= 0):
                raise UsageError(f"--threshold learned:K takes a K >= 0, got {self.learned}")
            if self.metric in P_METRICS:
                raise UsageError(
                    f"--metric {self.metric} is gated by --alpha, not learned thresholds"
                )
            if not _is_profile(self.reference):
                raise UsageError(
                    "--threshold learned needs a profile made with 'kldiv profile --calibrate N'"
                )
        if self.warn_threshold is not None or self.warn_learned is not None:
            if self.metric in P_METRICS:
                raise UsageError(f"--warn-threshold does not apply to --metric {self.metric}")
            if self.warn_learned is not None and not _is_profile(self.reference):
                raise UsageError(
                    "--warn-threshold learned needs a profile made with 'kldiv profile --calibrate N'"
                )
            if self.warn_threshold is not None and not self.warn_threshold >= 0:
                raise UsageError(f"--warn-threshold must be >= 0, got {self.warn_threshold}")
        if self.correction not in CORRECTIONS:
            raise UsageError(
                f"--correction takes none, bonferroni or bh, got {clean(self.correction)!r}"
            )
        if self.base not in BASES:
            raise UsageError(f"--base takes e, 2 or 10, got {self.base!r}")
        if not (math.isfinite(self.epsilon) and 0 <= self.epsilon < 1):
            raise UsageError(f"--epsilon must be in [0, 1), got {self.epsilon}")
        if not self.threshold >= 0:
            raise UsageError(f"--threshold must be a number >= 0, got {self.threshold}")
        if not 0 <= self.max_missing_change <= 1:
            raise UsageError(
                f"--max-missing-change must be a share in [0, 1], got {self.max_missing_change}"
            )
        share = self.max_new_category_share
        if share is not None and not 0 <= share <= 1:
            raise UsageError(f"--max-new-category-share must be a share in [0, 1], got {share}")
        parse_fail_on(self.fail_on)
        if self.schema not in SCHEMA_POLICIES:
            raise UsageError(f"--schema takes fail or warn, got {clean(self.schema)!r}")
        if not self.reference or not self.current:
            raise UsageError("give a REFERENCE and a CURRENT table")
        if "-" in self.reference and "-" in self.current:
            raise UsageError("only one of REFERENCE and CURRENT can be '-' (stdin)")
        if (len(self.reference) > 1 and "-" in self.reference) or (
            len(self.current) > 1 and "-" in self.current
        ):
            raise UsageError("'-' (stdin) cannot be part of a list of files")
        from ..io.writers import guard

        _check_extension(self.junit, "--junit", (".xml",))
        _check_extension(self.html, "--html", (".html", ".htm"))
        guard(
            [self.output, self.junit, self.html],
            [*self.reference, *self.current, self.thresholds],
            ("json", "csv"),
        )


@dataclass(frozen=True)
class ProfileRequest:
    """Everything ``kldiv profile`` was asked."""

    reference: tuple[str, ...]
    rules: ColumnRules = ColumnRules()
    delimiter: str | None = None
    output: str | None = None
    #: ``--calibrate N``: random halves of the reference per column, and their seed.
    calibrate: int = 0
    calibrate_seed: int = 0

    def validate(self) -> None:
        self.rules.validate()
        if not 0 <= self.calibrate <= MAX_CALIBRATE:
            raise UsageError(f"--calibrate takes 0 to {MAX_CALIBRATE} splits, got {self.calibrate}")
        if self.calibrate == 1:
            raise UsageError("--calibrate needs at least 2 splits for a standard deviation")
        from ..io.writers import guard

        guard([self.output], list(self.reference), ("json",))


def parse_threshold(text: str, option: str = "--threshold") -> tuple[float, float | None]:
    """``--threshold`` (or ``--warn-threshold``): a number (the fixed threshold), or
    ``learned`` / ``learned:K`` (K standard deviations, default 3; the fixed default 0.1
    stays the fallback)."""
    from .drift_calibrate import DEFAULT_K

    kind, colon, k = text.strip().partition(":")
    if kind == "learned":
        try:
            return 0.1, float(k) if colon else DEFAULT_K
        except ValueError:
            raise UsageError(f"{option} learned:K takes a number K, got {clean(text)!r}") from None
    try:
        return float(text), None
    except ValueError:
        raise UsageError(f"{option} takes a number or learned[:K], got {clean(text)!r}") from None


def parse_fail_on(rule: str) -> tuple[str, float]:
    """'any' | 'share:F' (0 < F <= 1) | 'count:N' (N >= 1)."""
    if rule == "any":
        return "any", 1
    kind, _, value = rule.partition(":")
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if kind == "share" and 0 < number <= 1:
        return kind, number
    if kind == "count" and number >= 1 and number.is_integer():
        return kind, number
    raise UsageError(
        f"--fail-on takes any, share:F (0 < F <= 1) or count:N (N >= 1), got {clean(rule)!r}"
    )


# ----------------------------------------------------------------- column values


def _plain(data: Any) -> Any:
    """Dictionary-encoded columns decoded, durations as their integer counts: the types
    the rules below know."""
    import pyarrow as pa

    if pa.types.is_dictionary(data.type):
        data = data.cast(data.type.value_type)
    if pa.types.is_duration(data.type):
        data = data.cast(pa.int64())
    return data


def _type_class(t: Any) -> str:
    """integer | float | bool | text | datetime | null | other, of an Arrow type."""
    import pyarrow as pa

    if pa.types.is_boolean(t):
        return "bool"
    if pa.types.is_integer(t):
        return "integer"
    if pa.types.is_floating(t) or pa.types.is_decimal(t):
        return "float"
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return "text"
    if pa.types.is_timestamp(t) or pa.types.is_date(t) or pa.types.is_time(t):
        return "datetime"
    if pa.types.is_null(t):
        return "null"
    return "other"


def _is_iso_text(column: Any) -> bool:
    """Every value is an ISO-8601 date or date-time (checked on a sample first)."""
    import pyarrow.compute as pc

    valid = column.drop_null()
    if len(valid) == 0:
        return False
    head = valid.slice(0, 100)
    if not pc.all(pc.match_substring_regex(head, _ISO)).as_py():
        return False
    return bool(pc.all(pc.match_substring_regex(valid, _ISO)).as_py())


_UNIT_SECONDS = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "ns": 1e-9}


def _numbers(column: Any, kind: str, label: str) -> np.ndarray:
    """float64 values of a column (NaN for missing). Dates, times and timestamps become
    seconds (since 1970-01-01 UTC, since midnight)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if kind == "text":
        column = _parse_iso(column, label)
    t = column.type
    if pa.types.is_date32(t):
        ints, scale = column.cast(pa.int32()), 86400.0
    elif pa.types.is_date64(t):
        ints, scale = column.cast(pa.int64()), 1e-3
    elif pa.types.is_time32(t):
        ints, scale = column.cast(pa.int32()), _UNIT_SECONDS[t.unit]
    elif pa.types.is_time64(t) or pa.types.is_timestamp(t):
        ints, scale = column.cast(pa.int64()), _UNIT_SECONDS[t.unit]
    else:
        try:
            return column_array(pc.cast(column, pa.float64(), safe=False), _F64)
        except pa.ArrowInvalid:
            raise InputError(label, "holds values that are not numbers") from None
    values = column_array(pc.cast(ints, pa.float64(), safe=False), _F64)
    return values * scale


def _parse_iso(column: Any, label: str) -> Any:
    import pyarrow as pa
    import pyarrow.compute as pc

    for target in (pa.timestamp("us"), pa.timestamp("us", tz="UTC")):
        try:
            return pc.cast(column, target)
        except pa.ArrowInvalid:
            continue
    raise InputError(label, "mixes dates with and without a time zone; cannot compare them")


def _value_counts(column: Any) -> tuple[list[Any], np.ndarray]:
    """Distinct non-missing values and their counts (Arrow's hash, not a sort)."""
    import pyarrow.compute as pc

    counts = pc.value_counts(column.drop_null())
    return counts.field(0).to_pylist(), column_array(counts.field(1), np.dtype(np.int64))


def _category(value: Category) -> Category:
    """Integer-valued floats are stored (and printed) as integers: ``2``, not ``2.0``."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    return value


@dataclass
class _Column:
    """One column of one side, read once: its type class, rows and missing values."""

    label: str
    name: str
    data: Any
    kind: str
    rows: int
    null_count: int
    _numbers: np.ndarray | None = None

    @classmethod
    def read(cls, table: Table, name: str) -> _Column:
        data = _plain(table.column(name))
        return cls(table.label, name, data, _type_class(data.type), len(data), data.null_count)

    @property
    def where(self) -> str:
        return f"{self.label}: column {clean(self.name)!r}"

    def numbers(self) -> np.ndarray:
        if self._numbers is None:
            self._numbers = _numbers(self.data, self.kind, self.where)
        return self._numbers

    def missing(self) -> int:
        if self.kind == "float":
            return int(np.count_nonzero(np.isnan(self.numbers())))
        return self.null_count


# ----------------------------------------------------------------- profiling


def _present(values: np.ndarray) -> np.ndarray:
    """The values that are not missing (NaN); no copy when none is."""
    missing = np.isnan(values)
    return values[~missing] if missing.any() else values


def bin_counts(values: np.ndarray, edges: np.ndarray, maximum: float) -> np.ndarray:
    """Counts of (non-NaN) values in the bins of :func:`profile_numeric`: below
    ``edges[0]``, ``[e_i, e_i+1)``, ``[e_L-1, maximum]``, above ``maximum``.

    The counts are differences of ``#(v < e_i)``: one vectorised comparison per edge
    for the usual few edges (far faster than a binary search per value), else
    ``searchsorted`` in blocks of :data:`BLOCK` values (small index arrays)."""
    if edges.size <= 64:
        below = [np.count_nonzero(values < e) for e in edges]
        top = int(np.count_nonzero(values <= maximum))
        inner = np.diff(np.array([*below, top], dtype=np.int64))
        return np.array([below[0], *inner, values.size - top], dtype=np.int64)
    counts = np.zeros(edges.size + 2, dtype=np.int64)
    for start in range(0, values.size, BLOCK):
        block = values[start : start + BLOCK]
        index = np.searchsorted(edges, block, side="right")
        index[block > maximum] = edges.size + 1
        counts += np.bincount(index, minlength=edges.size + 2)
    return counts


def numeric_edges(finite: np.ndarray, bins: int, binning: str) -> np.ndarray:
    """Edges from finite reference values: the minimum, then the inner cuts."""
    b = min(bins, finite.size)
    lo, hi = finite.min(), finite.max()
    if binning == "quantile":
        inner = np.quantile(finite, np.arange(1, b) / b) if b > 1 else np.empty(0)
    else:
        inner = np.linspace(lo, hi, b + 1)[1:-1]
    return np.unique(np.concatenate([[lo], inner]))


def _float_categories(present: np.ndarray) -> tuple[list[Any], np.ndarray] | None:
    """Distinct values and counts when there are at most :data:`NUMERIC_CATEGORIES`, all
    finite; None otherwise (a sample rules most columns out without a full sort)."""
    if np.unique(present[:1000]).size > NUMERIC_CATEGORIES:
        return None
    distinct, counts = np.unique(present, return_counts=True)
    if not _few(distinct.size, present.size) or not np.isfinite(distinct).all():
        return None
    return distinct.tolist(), counts


def sampled_values(data: Any) -> Any:
    """The values (missing ones too) of at most :data:`ID_SAMPLE` rows taken at even
    intervals (all rows of a smaller column): what the role rules look at."""
    if len(data) > ID_SAMPLE:
        data = data.take(np.linspace(0, len(data) - 1, ID_SAMPLE).astype(np.int64))
    return data


def _few(distinct: int, values: int) -> bool:
    """Few enough distinct numbers to be categories: at most :data:`NUMERIC_CATEGORIES`,
    each seen twice on average."""
    return distinct <= NUMERIC_CATEGORIES and 2 * distinct <= values


def row_key_reason(name: str, values: Any, other: Any = None) -> str | None:
    """Why a column of integers or text is a row key (role ``identifier``), or None.

    ``values``: the sampled values (:func:`sampled_values`, a pyarrow array), so that
    every engine decides on the same values; ``other``: the current data's (a raw
    reference only). The rule is the one :mod:`kldiv_cli.io.roles` states for every
    command: unique values, none missing, named like a key, or monotone, or disjoint
    from the other side's. A measurement with many distinct values is not a key.
    """
    from ..io.roles import key_reason

    reason = key_reason(name, values, other)
    return None if reason is None else f"row key: {reason}"


def text_reason(values: Any, distinct: int) -> str | None:
    """Why a text column is free text (role ``text``), or None for categories
    (:data:`TEXT_DISTINCT_SHARE`, :data:`TEXT_MIN_DISTINCT`, :data:`TEXT_MIN_LENGTH`);
    ``values``: its sampled non-missing values, ``distinct`` how many differ."""
    import pyarrow.compute as pc

    n = len(values)
    if n == 0 or distinct < TEXT_DISTINCT_SHARE * n:
        return None
    length = float(pc.mean(pc.utf8_length(values)).as_py())
    if distinct <= TEXT_MIN_DISTINCT and length < TEXT_MIN_LENGTH:
        return None
    return (
        f"free text: {distinct} distinct of {n} values, {length:.0f} characters on average; "
        "compared by its lengths"
    )


def _skipped(col: _Column, role: Role, reason: str, missing: int | None = None) -> ColumnProfile:
    return ColumnProfile(
        col.name, role, col.rows, col.missing() if missing is None else missing, reason=reason
    )


def _lengths(col: _Column) -> np.ndarray:
    """The lengths (characters) of a text column's values, NaN for missing ones."""
    import pyarrow as pa
    import pyarrow.compute as pc

    lengths = pc.cast(pc.utf8_length(col.data), pa.float64())
    return column_array(lengths, _F64)


def profile_numeric(
    col: _Column,
    rules: ColumnRules,
    from_datetime: bool,
    role: Role = Role.NUMERIC,
    reason: str = "",
) -> ColumnProfile:
    """Numeric bins of a column's values (of its lengths, for role ``text``)."""
    present = _present(_lengths(col) if role is Role.TEXT else col.numbers())
    missing = col.rows - present.size
    infinite = np.isinf(present)
    finite = present[~infinite] if infinite.any() else present
    if finite.size == 0:
        return _skipped(col, Role.SKIPPED, NO_FINITE, missing)
    edges = numeric_edges(finite, rules.bins, rules.binning)
    maximum = float(finite.max())
    counts = bin_counts(present, edges, maximum)
    return ColumnProfile(
        col.name,
        role,
        col.rows,
        missing,
        counts=tuple(int(c) for c in counts),
        edges=tuple(float(e) for e in edges),
        maximum=maximum,
        from_datetime=from_datetime,
        reason=reason,
        **value_sketch(finite),
    )


def value_sketch(finite: np.ndarray) -> dict[str, Any]:
    """What a profile keeps of a binned column's finite values for the measures on raw
    values: all of them sorted when there are at most :data:`SKETCH_SIZE`, else the order
    statistics at ranks ``round((i + 1/2) n / K - 1/2)`` (K = SKETCH_SIZE: each stands for
    n/K values); their count, mean and population standard deviation (all values)."""
    ordered = np.sort(finite)
    n = ordered.size
    if n > SKETCH_SIZE:
        ranks = np.rint((np.arange(SKETCH_SIZE) + 0.5) * n / SKETCH_SIZE - 0.5).astype(np.int64)
        ordered = ordered[np.clip(ranks, 0, n - 1)]
    with np.errstate(over="ignore", invalid="ignore"):
        mean, std = float(np.mean(finite)), float(np.std(finite))
    if not (math.isfinite(mean) and math.isfinite(std)):
        return {}  # values near the float64 limit: no measures on raw values
    return {"sketch": tuple(ordered.tolist()), "finite": int(n), "mean": mean, "std": std}


def profile_categorical(
    col: _Column, values: list[Any], counts: np.ndarray, missing: int, rules: ColumnRules
) -> ColumnProfile:
    order = sorted(range(len(values)), key=lambda i: (-int(counts[i]), category_key(values[i])))
    keep = sorted(order[: rules.max_categories], key=lambda i: category_key(values[i]))
    rest = sorted(order[rules.max_categories :], key=lambda i: category_key(values[i]))
    kept_counts = [int(counts[i]) for i in keep]
    if rest:
        kept_counts.append(int(sum(int(counts[i]) for i in rest)))
    return ColumnProfile(
        col.name,
        Role.CATEGORICAL,
        col.rows,
        missing,
        counts=tuple(kept_counts),
        categories=tuple(_category(values[i]) for i in keep),
        pooled=tuple(_category(values[i]) for i in rest),
    )


def profile_column(col: _Column, rules: ColumnRules, other: Any = None) -> ColumnProfile:
    """Decide a reference column's role (module docstring) and count its bins; the
    profile records the class of its values (for type changes). ``other``: the same
    column of the current data, when known (for the key rule's disjointness)."""
    from dataclasses import replace

    return replace(_profile_role(col, rules, other), kind=col.kind)


def _profile_role(col: _Column, rules: ColumnRules, other: Any) -> ColumnProfile:
    role = rules.override(col.name)
    kind = col.kind
    if role is Role.SKIPPED:
        return _skipped(col, Role.SKIPPED, SKIPPED_BY_USER)
    if kind == "other":
        return _skipped(col, Role.SKIPPED, f"unsupported type {col.data.type}")
    if kind == "null" or col.rows - col.missing() == 0:  # NaN is missing too
        return _skipped(col, Role.SKIPPED, ALL_MISSING, col.rows)
    iso = kind == "text" and role is not Role.CATEGORICAL and _is_iso_text(col.data)
    if kind == "datetime" or iso:
        if role is Role.NUMERIC or rules.datetime == "numeric":
            return profile_numeric(col, rules, from_datetime=True)
        if role is None:
            return _skipped(col, Role.DATETIME, "date/time values (--datetime numeric bins them)")
    elif role is Role.NUMERIC:
        if kind not in ("integer", "float"):
            raise InputError(col.where, f"holds {_KIND_WORDS[kind]}; --numeric takes numbers")
        return profile_numeric(col, rules, from_datetime=False)
    if kind == "float":
        present = _present(col.numbers())
        if role is Role.CATEGORICAL:
            # Infinities cannot be stored as categories: they count as missing here.
            finite = present[np.isfinite(present)]
            if finite.size == 0:
                return _skipped(col, Role.SKIPPED, NO_FINITE)
            uniques, counts = np.unique(finite, return_counts=True)
            return profile_categorical(col, uniques.tolist(), counts, col.rows - finite.size, rules)
        few = _float_categories(present)
        if few is not None:
            return profile_categorical(col, *few, col.rows - present.size, rules)
        return profile_numeric(col, rules, from_datetime=False)
    if kind == "datetime":  # --categorical on a date/time column
        text = col.data.cast("string")
        distinct_values, counts = _value_counts(text)
        return profile_categorical(col, distinct_values, counts, col.null_count, rules)
    if role is None and kind in ("text", "integer"):
        import pyarrow.compute as pc

        sample = sampled_values(col.data)
        distinct = int(pc.count_distinct(sample).as_py())
        # A key has no repeated and no missing value: Arrow's hash rules most columns out
        # before the rule's sort.
        unique = sample.null_count == 0 and distinct == len(sample)
        key = row_key_reason(col.name, sample, other) if unique else None
        if key is not None:
            return _skipped(col, Role.IDENTIFIER, key)
        sample = sample.drop_null()
        free = text_reason(sample, distinct) if kind == "text" else None
        if free is not None:
            return profile_numeric(col, rules, False, Role.TEXT, free)
        if kind == "integer" and not _few(distinct, len(sample)):
            return profile_numeric(col, rules, from_datetime=False)
    distinct_values, counts = _value_counts(col.data)
    values_n = int(sum(counts.tolist()))
    if kind == "integer" and role is None and not _few(len(distinct_values), values_n):
        return profile_numeric(col, rules, from_datetime=False)
    return profile_categorical(col, distinct_values, counts, col.null_count, rules)


#: An engine's profiler: ``profiler(name, rules)`` gives the profile of a reference
#: column computed elsewhere (``engines.drift``: tasks on a cluster), or None for a
#: column this process profiles itself.
Profiler = Callable[[str, ColumnRules], ColumnProfile | None]


def build_profile(
    table: Table,
    rules: ColumnRules,
    names: Sequence[str] | None = None,
    profiler: Profiler | None = None,
    other: Any = None,
) -> Iterator[ColumnProfile]:
    """Profiles of ``names`` (default: the selected columns), one column read at a time
    (or by ``profiler``, which gives the same profile, where it takes the column).
    ``other``: the current data's values of a single named column (the key rule's
    disjointness; a profile built alone decides on the reference only)."""
    import pyarrow as pa

    for name in names if names is not None else rules.select(table.label, table.column_names):
        try:
            done = profiler(name, rules) if profiler is not None else None
            if done is None:
                done = profile_column(_Column.read(table, name), rules, other)
            yield done
        except pa.ArrowException as exc:
            raise InputError(f"{table.label}: column {clean(name)!r}", _arrow_text(exc)) from None


def _arrow_text(exc: Exception) -> str:
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return f"cannot be compared ({clean(first)})"


def run_profile(
    request: ProfileRequest, stdin: bytes | None = None, profiler: Profiler | None = None
) -> Profile:
    """``kldiv profile``: the reference's bins and counts, for later drift checks
    (``profiler``: see :func:`build_profile`)."""
    request.validate()
    table = open_table(request.reference, request.delimiter, stdin)
    label, _ = expand(request.reference)
    columns = tuple(build_profile(table, request.rules, profiler=profiler))
    if request.calibrate:
        from dataclasses import replace

        from .drift_calibrate import calibrate

        columns = tuple(
            replace(
                c,
                calibration=calibrate(
                    c, _Column.read(table, c.name), request.calibrate, request.calibrate_seed, 1e-4
                ),
            )
            if c.role.compared
            else c
            for c in columns
        )
    return Profile(
        source=label,
        rows=table.num_rows,
        bins=request.rules.bins,
        binning=request.rules.binning,
        max_categories=request.rules.max_categories,
        datetime=request.rules.datetime,
        columns=columns,
        table_columns=tuple(table.column_names),
    )


# ----------------------------------------------------------------- the current side


@dataclass(frozen=True)
class NewCategory:
    value: Category
    count: int


def _compatible(ref: ColumnProfile, kind: str) -> bool:
    """Whether current values of ``kind`` can be compared with the reference's bins."""
    if ref.role is Role.TEXT:
        return kind == "text"
    if ref.role is Role.NUMERIC:
        return kind in (("datetime", "text") if ref.from_datetime else ("integer", "float"))
    first = ref.categories[0]
    if isinstance(first, bool):
        return kind == "bool"
    if isinstance(first, (int, float)):
        return kind in ("integer", "float")
    return kind in ("text", "datetime")


_KIND_WORDS = {
    "integer": "numbers",
    "float": "numbers",
    "bool": "booleans",
    "text": "text",
    "datetime": "dates/times",
    "null": "all missing",
    "other": "of another type",
}


def current_counts(
    ref: ColumnProfile, col: _Column
) -> tuple[np.ndarray, int, list[NewCategory], int, np.ndarray | None]:
    """(counts in the reference's bins, values, the new categories (top 10), how many
    distinct new ones, the values themselves for a binned column) of a current column."""
    if ref.role.binned:
        present = _present(_lengths(col) if ref.role is Role.TEXT else col.numbers())
        counts = bin_counts(present, np.asarray(ref.edges), float(ref.maximum or 0.0))
        return counts, int(present.size), [], 0, present
    if col.kind == "float":
        distinct, freq = np.unique(_present(col.numbers()), return_counts=True)
        values = distinct.tolist()
    elif col.kind == "datetime":
        values, freq = _value_counts(col.data.cast("string"))
    else:
        values, freq = _value_counts(col.data)
    position = {category_key(c): i for i, c in enumerate(ref.categories)}
    other = len(ref.categories)
    position.update((category_key(c), other) for c in ref.pooled)
    k = len(ref.counts) + 1
    counts = np.zeros(k, dtype=np.int64)
    new: list[NewCategory] = []
    for value, n in zip(values, freq.tolist()):
        index = position.get(category_key(value), k - 1)
        counts[index] += n
        if index == k - 1:
            new.append(NewCategory(_category(value), int(n)))
    new.sort(key=lambda c: (-c.count, category_key(c.value)))
    return counts, int(sum(freq.tolist())), new[:TOP_NEW], len(new), None


# ----------------------------------------------------------------- divergences


@dataclass(frozen=True)
class Divergences:
    """Every measure of a column (docs/drift.md gives each one's formula): the four
    divergences and Hellinger on the (joined, smoothed) bins; Wasserstein and
    Kolmogorov-Smirnov on the values of a binned column (None when the reference's values
    are not known); chi-square on a categorical column's bins as profiled."""

    kl: float
    kl_reverse: float
    psi: float
    js: float
    hellinger: float = 0.0
    wasserstein: float | None = None
    ks: float | None = None
    ks_p_value: float | None = None
    #: ``exact`` or ``asymp``: how the K-S p-value was computed.
    ks_method: str | None = None
    chi2: float | None = None
    chi2_p_value: float | None = None
    chi2_dof: int | None = None

    def get(self, metric: str) -> float | None:
        """The value a metric gates: the p-value of a test, else the measure."""
        value = getattr(self, f"{metric}_p_value" if metric in P_METRICS else metric)
        return None if value is None else float(value)

    def measures(self) -> dict[str, Any]:
        """Every measure, for JSON (tests as statistic and p-value)."""
        doc: dict[str, Any] = {m: getattr(self, m) for m in (*LOG_METRICS, "hellinger")}
        if self.wasserstein is not None:
            doc["wasserstein"] = self.wasserstein
        if self.ks is not None:
            doc["ks"] = {"statistic": self.ks, "p_value": self.ks_p_value, "method": self.ks_method}
        if self.chi2 is not None:
            doc["chi2"] = {
                "statistic": self.chi2,
                "p_value": self.chi2_p_value,
                "dof": self.chi2_dof,
            }
        return doc


def column_metric(metric: str, role: Role) -> str:
    """The metric a column is gated on: the test or distance of its kind when the one asked
    for does not apply (``ks`` on categories is ``chi2`` and the other way round;
    ``wasserstein`` on categories is ``js``, as Evidently's defaults)."""
    if role is Role.CATEGORICAL:
        return {"ks": "chi2", "wasserstein": "js"}.get(metric, metric)
    return {"chi2": "ks"}.get(metric, metric)


def raw_measures(ref: ColumnProfile, values: np.ndarray, exact: bool = True) -> dict[str, Any]:
    """Wasserstein (normed by the reference's standard deviation, at least
    :data:`MIN_STD`) and the two-sample Kolmogorov-Smirnov test between a binned
    column's reference sketch and its current finite values; empty without a sketch
    or current finite values. ``exact``: the exact K-S p-value up to SciPy's
    ``KS_EXACT_N`` values (when K-S is the gate), else only up to :data:`KS_QUICK_N`."""
    finite = values[np.isfinite(values)]
    if not ref.sketch or finite.size == 0:
        return {}
    from ..core.twosample import KS_EXACT_N, ks_2samp, wasserstein_1d

    sketch = np.asarray(ref.sketch, dtype=np.float64)
    limit = KS_EXACT_N if exact else KS_QUICK_N
    statistic, p_value = ks_2samp(sketch, finite, size_a=ref.finite, exact_limit=limit)
    method = "exact" if max(ref.finite, finite.size) <= limit else "asymp"
    norm = max(float(ref.std or 0.0), MIN_STD)
    return {
        "wasserstein": wasserstein_1d(sketch, finite) / norm,
        "ks": statistic,
        "ks_p_value": p_value,
        "ks_method": method,
    }


def chi2_measures(p_counts: np.ndarray, q_counts: np.ndarray) -> dict[str, Any]:
    """Pearson's chi-square test of homogeneity on the 2 x k table of a categorical
    column's bins (categories, "other", new values), as ``scipy.stats.chi2_contingency``."""
    from ..core.twosample import chi2_contingency_2xk

    statistic, p_value, dof = chi2_contingency_2xk(p_counts, q_counts)
    return {"chi2": statistic, "chi2_p_value": p_value, "chi2_dof": dof}


def smoothed(counts: np.ndarray, epsilon: float) -> np.ndarray:
    """Shares with ``epsilon`` spread over the bins: ``(c/n + epsilon/k) / (1 + epsilon)``."""
    # Arithmetic on an untyped-dtype array is typed Any in NumPy's stubs: a float array.
    share: np.ndarray = counts / counts.sum()
    if epsilon == 0:
        return share
    out: np.ndarray = (share + epsilon / share.size) / (1 + epsilon)
    return out


def divergences(
    p_counts: np.ndarray, q_counts: np.ndarray, epsilon: float, base: float
) -> Divergences:
    """KL(p||q), KL(q||p), PSI and JS of two histograms, after :func:`smoothed`."""
    p, q = smoothed(p_counts, epsilon), smoothed(q_counts, epsilon)
    used = (p > 0) | (q > 0)
    p, q = p[used], q[used]
    m = (p + q) / 2
    scale = 1 / math.log(base)
    with np.errstate(divide="ignore"):
        log_p, log_q, log_m = np.log(p), np.log(q), np.log(m)
    kl = float(kl_div(log_q, p, reduction="sum")) * scale
    kl_rev = float(kl_div(log_p, q, reduction="sum")) * scale
    js = 0.5 * (float(kl_div(log_m, p, reduction="sum")) + float(kl_div(log_m, q, reduction="sum")))
    # The difference form: exactly 0 for identical shares (1 - sum sqrt(pq) is not).
    hellinger = math.sqrt(0.5 * float(np.sum((np.sqrt(p) - np.sqrt(q)) ** 2)))
    return Divergences(kl, kl_rev, kl + kl_rev, js * scale, hellinger)


def contributions(
    p_counts: np.ndarray, q_counts: np.ndarray, epsilon: float, metric: str
) -> np.ndarray:
    """Each bin's term of the metric (what makes a column drift), in nats; the terms add
    up to the metric. Hellinger's are the terms of its square divided by it; a metric
    that is not computed on the bins (Wasserstein, the tests) shows KL's terms."""
    p, q = smoothed(p_counts, epsilon), smoothed(q_counts, epsilon)
    with np.errstate(divide="ignore", invalid="ignore"):
        lp, lq = np.log(p), np.log(q)
        kl = np.where(p > 0, p * (lp - lq), 0.0)
        rev = np.where(q > 0, q * (lq - lp), 0.0)
        if metric == "kl":
            terms = kl
        elif metric == "kl_reverse":
            terms = rev
        elif metric == "psi":
            terms = kl + rev
        elif metric == "hellinger":
            squares = 0.5 * (np.sqrt(p) - np.sqrt(q)) ** 2
            total = math.sqrt(float(squares.sum()))
            terms = squares / total if total > 0 else np.zeros_like(p)
        elif metric != "js":
            terms = kl
        else:
            lm = np.log((p + q) / 2)
            terms = 0.5 * (
                np.where(p > 0, p * (lp - lm), 0.0) + np.where(q > 0, q * (lq - lm), 0.0)
            )
    return np.nan_to_num(terms, nan=np.inf)


def _number(value: float) -> str:
    """Six significant digits (an edge from a JSON profile may be an int)."""
    return format_number(float(value), 6)


def _instant(seconds: float) -> str:
    from datetime import datetime, timezone

    try:
        moment = datetime.fromtimestamp(seconds, tz=timezone.utc)
    except (OverflowError, OSError, ValueError):
        return _number(seconds)
    return moment.strftime("%Y-%m-%d %H:%M" if moment.minute or moment.hour else "%Y-%m-%d")


def bin_labels(ref: ColumnProfile) -> list[str]:
    """Readable names of a column's bins (numbers to 6 digits, instants in UTC; text by
    its lengths in characters)."""
    if ref.role.binned:
        show = _instant if ref.from_datetime else _number
        edges = [show(e) for e in ref.edges]
        top = show(float(ref.maximum or 0.0))
        inner = [f"[{a}, {b})" for a, b in zip(edges, edges[1:])] + [f"[{edges[-1]}, {top}]"]
        labels = [f"< {edges[0]}", *inner, f"> {top}"]
        return [f"{b} chars" for b in labels] if ref.role is Role.TEXT else labels
    labels = [str(c) for c in ref.categories]
    if ref.pooled:
        labels.append(f"(other: {len(ref.pooled)} categories)")
    return [*labels, "(new)"]


def noise_floor(filled: int, n: int, m: int) -> float:
    """Mean plug-in KL of two samples (n, m values) of one distribution over ``filled`` bins."""
    return (filled - 1) / 2 * (1 / n + 1 / m) if n and m else math.inf


def chi2_quantile(dof: int, z: float = _Z_NOISE) -> float:
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
    size = p.size
    both = p + q
    if adjacent:
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
        groups += [*inner, [size - 1]]
    else:
        per = list(members) or [1] * size
        filled = [i for i in range(size - 1) if p[i] > 0]
        rare = [i for i in filled if both[i] < need * max(1, per[i])]
        if not rare:
            return p, q, labels
        rare.append(size - 1)
        is_rare = set(rare)
        common = [i for i in filled if i not in is_rare]
        if int(both[rare].sum()) < need and common:
            smallest = min(common, key=lambda i: (int(both[i]), -i))
            rare = sorted([*rare, smallest])
        pooled = set(rare)
        groups = [[i] for i in range(size) if i not in pooled]
        groups.insert(sum(1 for g in groups if g[0] < rare[0]), rare)
    if len(groups) == size:
        return p, q, labels
    merged_p = np.array([int(p[g].sum()) for g in groups], dtype=np.int64)
    merged_q = np.array([int(q[g].sum()) for g in groups], dtype=np.int64)
    return merged_p, merged_q, [_joined([labels[i] for i in g], adjacent) for g in groups]


def _joined(labels: list[str], numeric: bool) -> str:
    """The label of joined bins: a numeric range, or the categories (at most five)."""
    if len(labels) == 1:
        return labels[0]
    if numeric:
        return f"{labels[0].split(', ')[0]}, {labels[-1].split(', ')[-1]}"
    shown = " + ".join(labels[:5])
    return f"({shown}{f' + {len(labels) - 5} more' if len(labels) > 5 else ''})"


# ----------------------------------------------------------------- results


class State(str, Enum):
    OK = "ok"
    DRIFT = "drift"
    #: The metric is above the threshold but within what noise gives at these sample
    #: sizes (:func:`noise_bound`): too few values to tell; does not fail the check.
    WEAK = "weak"
    #: ``--warn-threshold``: the metric is above the warn threshold but not drifted;
    #: does not fail the check.
    WARN = "warn"
    #: A schema change under ``--schema warn``: listed, does not fail the check.
    WARNING = "warning"
    ERROR = "error"
    SKIPPED = "skipped"


class Reason(str, Enum):
    DISTRIBUTION = "distribution"
    MISSING = "missing"
    NEW_CATEGORIES = "new_categories"
    #: Schema changes: a reference column missing from the current data, a column only
    #: in the current data, values of another type.
    COLUMN_REMOVED = "column_removed"
    COLUMN_ADDED = "column_added"
    TYPE_CHANGED = "type_changed"

    @property
    def schema(self) -> bool:
        return self in (Reason.COLUMN_REMOVED, Reason.COLUMN_ADDED, Reason.TYPE_CHANGED)


@dataclass(frozen=True)
class Missing:
    """Missing values (null, NaN) as shares of each side's rows."""

    reference: int
    reference_rows: int
    current: int
    current_rows: int

    @property
    def reference_share(self) -> float:
        return self.reference / self.reference_rows if self.reference_rows else 0.0

    @property
    def current_share(self) -> float:
        return self.current / self.current_rows if self.current_rows else 0.0

    @property
    def change(self) -> float:
        return self.current_share - self.reference_share


@dataclass(frozen=True)
class Bin:
    label: str
    reference_share: float
    current_share: float
    contribution: float


@dataclass(frozen=True)
class Histogram:
    labels: tuple[str, ...]
    reference: tuple[int, ...]
    current: tuple[int, ...]


@dataclass(frozen=True)
class ColumnResult:
    """One column's verdict. Its :attr:`state` is derived here and nowhere else."""

    name: str
    role: Role
    metric: str
    threshold: float
    missing: Missing
    reasons: tuple[Reason, ...] = ()
    n_reference: int = 0
    n_current: int = 0
    divergences: Divergences | None = None
    bins: int = 0
    noise_floor: float | None = None
    #: What noise alone exceeds with probability 1 - NOISE_LEVEL (in the metric's units).
    noise_bound: float | None = None
    #: Rows per side for the threshold to sit above the noise bound (when it does not).
    rows_needed: int | None = None
    #: The missing-share change chance exceeds (:func:`missing_bound`), and whether the
    #: change passed ``--max-missing-change`` but stayed within it.
    missing_bound: float | None = None
    missing_weak: bool = False
    histogram: Histogram | None = None
    top_bins: tuple[Bin, ...] = ()
    new_categories: tuple[NewCategory, ...] = ()
    n_new_categories: int = 0
    new_category_share: float | None = None
    outside_range_share: float | None = None
    skip_reason: str = ""
    error: str = ""
    #: Schema changes reported, not gated (``--schema warn``).
    warnings: tuple[Reason, ...] = ()
    #: What changed in the schema, in words ("numeric in the reference, text now").
    schema_change: str = ""
    #: Why a compared column has its role, when the rule says more than the type
    #: (free text: its distinct values and lengths).
    role_reason: str = ""
    #: A p-value test's p-value after ``--correction`` (over the columns tested).
    p_adjusted: float | None = None
    #: Where the threshold came from: ``fixed`` (--threshold), ``file`` (--thresholds) or
    #: ``learned`` (the profile's calibration, --threshold learned).
    threshold_origin: str = "fixed"
    #: ``--warn-threshold``: above it (and not drifted) a column is ``warn``.
    warn_threshold: float | None = None

    @property
    def state(self) -> State:
        if self.reasons:
            return State.DRIFT
        if self.error:
            return State.ERROR
        if self.warnings:
            return State.WARNING
        if self.divergences is None:
            return State.SKIPPED
        value = self.value
        above = value is not None and self.metric not in P_METRICS and value > self.threshold
        if self.missing_weak or above:
            return State.WEAK  # above a threshold, within what chance gives
        if value is not None and self.warn_threshold is not None and value > self.warn_threshold:
            return State.WARN
        return State.OK

    @property
    def value(self) -> float | None:
        return None if self.divergences is None else self.divergences.get(self.metric)

    @property
    def weak(self) -> bool:
        """The threshold is below the noise bound: noise alone crosses it more often than
        ``1 - NOISE_LEVEL``, so only values above the bound count as drift."""
        return self.noise_bound is not None and self.threshold < self.noise_bound

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "name": self.name,
            "role": self.role.value,
            "state": self.state.value,
            "drift": self.state is State.DRIFT,
            "reasons": [r.value for r in self.reasons],
            "warnings": [r.value for r in self.warnings],
            "metric": self.metric,
            "value": self.value,
            "threshold": self.threshold,
            "threshold_origin": self.threshold_origin,
        }
        if self.warn_threshold is not None:
            doc["warn_threshold"] = self.warn_threshold
        if self.divergences is not None:
            d = self.divergences
            doc.update(kl=d.kl, kl_reverse=d.kl_reverse, psi=d.psi, js=d.js)
            doc["measures"] = d.measures()
            if self.metric in P_METRICS:
                doc["p_value_adjusted"] = self.p_adjusted
        m = self.missing
        doc.update(
            n_reference=self.n_reference,
            n_current=self.n_current,
            missing_reference=m.reference,
            missing_current=m.current,
            missing_share_reference=m.reference_share,
            missing_share_current=m.current_share,
            missing_share_change=m.change,
            missing_change_bound=self.missing_bound,
        )
        if self.role is Role.CATEGORICAL:
            doc.update(
                new_category_share=self.new_category_share,
                n_new_categories=self.n_new_categories,
                new_categories=[{"value": c.value, "count": c.count} for c in self.new_categories],
            )
        if self.outside_range_share is not None:
            doc["outside_range_share"] = self.outside_range_share
        if self.divergences is not None:
            doc.update(
                bins=self.bins,
                noise_floor=self.noise_floor,
                noise_bound=self.noise_bound,
                weak=self.weak,
                rows_needed=self.rows_needed,
            )
            doc["top_bins"] = [
                {
                    "bin": b.label,
                    "reference_share": b.reference_share,
                    "current_share": b.current_share,
                    "contribution": b.contribution,
                }
                for b in self.top_bins
            ]
        if self.histogram is not None:
            h = self.histogram
            doc["histogram"] = {
                "bins": list(h.labels),
                "reference": list(h.reference),
                "current": list(h.current),
            }
        if self.skip_reason:
            doc["skip_reason"] = self.skip_reason
        if self.schema_change:
            doc["schema_change"] = self.schema_change
        if self.role_reason:
            doc["role_reason"] = self.role_reason
        if self.error:
            doc["error"] = self.error
        return doc


@dataclass(frozen=True)
class Settings:
    """The rules a report was made with (shown in every output)."""

    metric: str
    threshold: float
    epsilon: float
    base: str
    bins: int
    binning: str
    max_categories: int
    datetime: str
    fail_on: str
    max_missing_change: float
    max_new_category_share: float | None
    schema: str = "fail"
    #: The p-value tests' level and correction (None/"none" for the other metrics).
    alpha: float | None = None
    correction: str = "none"
    #: ``--threshold learned:K``: K (None for fixed thresholds).
    learned: float | None = None


@dataclass(frozen=True)
class DriftReport:
    """The whole check: one :class:`ColumnResult` per column and the dataset verdict."""

    reference: str
    current: str
    reference_rows: int
    current_rows: int
    settings: Settings
    columns: tuple[ColumnResult, ...]
    seconds: float = 0.0
    version: str = ""
    command: str = ""
    unknown_thresholds: tuple[str, ...] = ()
    #: Columns of one side only (not compared; a schema change).
    only_in_reference: tuple[str, ...] = ()
    only_in_current: tuple[str, ...] = ()

    def count(self, state: State) -> int:
        return sum(1 for c in self.columns if c.state is state)

    @property
    def n_drifted(self) -> int:
        return self.count(State.DRIFT)

    @property
    def n_errors(self) -> int:
        return self.count(State.ERROR)

    @property
    def drift(self) -> bool:
        """The dataset verdict under ``fail_on`` (shares are of the compared columns)."""
        kind, number = parse_fail_on(self.settings.fail_on)
        drifted = self.n_drifted
        if kind == "any":
            return drifted > 0
        if kind == "share":
            compared = (
                drifted + self.count(State.OK) + self.count(State.WEAK) + self.count(State.WARN)
            )
            return compared > 0 and drifted / compared >= number
        return drifted >= number

    @property
    def weak(self) -> list[ColumnResult]:
        return [c for c in self.columns if c.weak]

    @property
    def schema_changes(self) -> list[ColumnResult]:
        """Columns removed, added or of another type (failing or warned)."""
        return [c for c in self.columns if any(r.schema for r in (*c.reasons, *c.warnings))]

    def to_json(self) -> dict[str, Any]:
        s = self.settings
        return {
            "drift": self.drift,
            "reference": self.reference,
            "current": self.current,
            "reference_rows": self.reference_rows,
            "current_rows": self.current_rows,
            "metric": s.metric,
            "threshold": s.threshold,
            "epsilon": s.epsilon,
            "base": s.base,
            "bins": s.bins,
            "binning": s.binning,
            "max_categories": s.max_categories,
            "datetime": s.datetime,
            "fail_on": s.fail_on,
            "max_missing_change": s.max_missing_change,
            "max_new_category_share": s.max_new_category_share,
            "schema": s.schema,
            "alpha": s.alpha,
            "correction": s.correction,
            "threshold_learned_k": s.learned,
            "n_columns": len(self.columns),
            "n_drifted": self.n_drifted,
            "n_errors": self.n_errors,
            "n_skipped": self.count(State.SKIPPED),
            "n_weak": self.count(State.WEAK),
            "n_warn": self.count(State.WARN),
            "n_schema_changes": len(self.schema_changes),
            "only_in_reference": list(self.only_in_reference),
            "only_in_current": list(self.only_in_current),
            "seconds": self.seconds,
            "version": self.version,
            "columns": [c.to_json() for c in self.columns],
        }


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
    return _Z_NOISE * math.sqrt(pi * (1 - pi) * (1 / n + 1 / m))


def _missing_reasons(missing: Missing, request: DriftRequest) -> tuple[Reason, ...]:
    """``missing`` when the share moved by more than ``--max-missing-change`` and more
    than chance moves it (:func:`missing_bound`)."""
    change = abs(missing.change)
    if change > request.max_missing_change and change > missing_bound(missing):
        return (Reason.MISSING,)
    return ()


def check_column(
    ref: ColumnProfile,
    col: _Column,
    request: DriftRequest,
    threshold: float,
    origin: str = "fixed",
) -> ColumnResult:
    """One column against its reference profile (the rules are the module's docstring);
    ``origin``: where ``threshold`` came from (``fixed`` or ``file``), unless
    ``--threshold learned`` replaces it with the column's calibrated one."""
    base = ColumnResult(
        name=ref.name,
        role=ref.role,
        metric=column_metric(request.metric, ref.role),
        threshold=threshold,
        missing=Missing(ref.missing, ref.rows, 0, col.rows),
        threshold_origin=origin,
    )
    if ref.role is Role.SKIPPED and ref.reason == SKIPPED_BY_USER:
        return _with(base, skip_reason=ref.reason)
    missing = Missing(ref.missing, ref.rows, col.missing(), col.rows)
    reasons = _missing_reasons(missing, request)
    result = _with(
        base,
        missing=missing,
        missing_weak=not reasons and abs(missing.change) > request.max_missing_change,
        missing_bound=missing_bound(missing),
        reasons=reasons,
        n_reference=ref.values,
        n_current=col.rows - missing.current,
    )
    changed = _type_change(ref, col.kind)
    if changed:
        return schema_change(result, Reason.TYPE_CHANGED, changed, request.schema)
    if not ref.role.compared:
        return _with(result, skip_reason=ref.reason)
    result = _with(result, role_reason=ref.reason)
    if not _compatible(ref, col.kind):  # all missing now
        found = _KIND_WORDS.get(col.kind, col.kind)
        return _with(
            result, error=f"is {ref.role.value} in the reference but {found} in the current data"
        )
    try:
        cur, n_cur, new, n_new, cur_values = current_counts(ref, col)
    except InputError as exc:
        return _with(result, error=str(exc))
    result = _with(result, n_current=n_cur)
    if n_cur == 0:
        return _with(result, error="no values in the current data (all missing)")
    if ref.values < MIN_VALUES or n_cur < MIN_VALUES:
        return _with(
            result,
            error=f"too few values to compare ({ref.values} reference, {n_cur} current; "
            f"at least {MIN_VALUES} each)",
        )
    p = np.asarray(ref.counts, dtype=np.int64)
    if ref.role is Role.CATEGORICAL:
        p = np.append(p, 0)
    n_new_values = int(cur[-1])  # before joining: new values may join the rare categories
    # On the values, or the bins as profiled (before rare ones are joined).
    exact = result.metric == "ks"
    raw = raw_measures(ref, cur_values, exact) if cur_values is not None else chi2_measures(p, cur)
    need = math.ceil(MIN_BIN_COUNT * (ref.values + n_cur) / min(ref.values, n_cur))
    members = [1] * len(ref.categories) + ([len(ref.pooled)] if ref.pooled else []) + [0]
    p, cur, labels = merge_rare(p, cur, bin_labels(ref), need, ref.role.binned, members)
    from dataclasses import replace

    values = replace(divergences(p, cur, request.epsilon, BASES[request.base]), **raw)
    metric = result.metric
    value = values.get(metric)
    if value is None and ref.sketch:
        return _with(result, error=f"{metric}: no finite values in the current data")
    if value is None:
        return _with(
            result,
            error=f"{metric} needs the reference's values, which this profile does not hold "
            "(built before profile version 4, or by --engine dask); use the reference itself "
            "or rebuild the profile with 'kldiv profile'",
        )
    if request.learned is not None:
        from .drift_calibrate import column_threshold

        got = column_threshold(
            ref, metric, threshold, origin == "file", request.learned, n_cur, BASES[request.base]
        )
        threshold = got.threshold
        result = _with(result, threshold=threshold, threshold_origin=got.origin)
    if request.warn_learned is not None or request.warn_threshold is not None:
        from .drift_calibrate import column_threshold

        fixed = request.warn_threshold if request.warn_threshold is not None else threshold
        warn = column_threshold(
            ref, metric, fixed, False, request.warn_learned, n_cur, BASES[request.base]
        )
        result = _with(result, warn_threshold=warn.threshold)
    nats = math.log(BASES[request.base])
    filled = int(np.count_nonzero(p))
    dof = noise_dof(filled, ref.role.binned)
    bound, floor, needed = _noise(metric, dof, filled, ref.values, n_cur, threshold, nats)
    if metric not in P_METRICS and not (
        value <= threshold or (bound is not None and value <= bound)
    ):
        reasons = (Reason.DISTRIBUTION, *reasons)
    new_share = None
    if ref.role is Role.CATEGORICAL:
        new_share = n_new_values / n_cur
        limit = request.max_new_category_share
        if limit is not None and new_share > limit:
            reasons = (*reasons, Reason.NEW_CATEGORIES)
    terms = contributions(p, cur, request.epsilon, metric)
    if metric != "hellinger":
        terms = terms / nats
    order = np.argsort(-terms, kind="stable")[: request.top]
    return _with(
        result,
        reasons=reasons,
        divergences=values,
        bins=int(p.size),
        noise_floor=floor,
        noise_bound=bound,
        rows_needed=needed,
        histogram=Histogram(tuple(labels), tuple(int(c) for c in p), tuple(int(c) for c in cur)),
        top_bins=tuple(
            Bin(labels[i], float(p[i]) / ref.values, float(cur[i]) / n_cur, float(terms[i]))
            for i in order
        ),
        new_categories=tuple(new),
        n_new_categories=n_new,
        new_category_share=new_share,
        outside_range_share=(float(cur[0] + cur[-1]) / n_cur if ref.role.binned else None),
    )


def _noise(
    metric: str, dof: int, filled: int, n: int, m: int, threshold: float, nats: float
) -> tuple[float | None, float | None, int | None]:
    """(noise bound, noise floor, rows needed) of a column in the metric's units: the
    divergences scale KL's (:data:`FLOOR_SCALE`, in --base units); Hellinger's square is
    about a quarter of KL under small changes (both are ``sum (p - q)^2 / p`` to second
    order, over 2 and 8), so its bound is ``sqrt(KL bound / 4)``. Wasserstein and the
    tests have none (the tests are their own noise bound)."""
    if metric in LOG_METRICS:
        scale = FLOOR_SCALE[metric] / nats
        bound = noise_bound(dof, n, m) * scale
        needed = rows_needed(dof, threshold / scale) if threshold < bound else None
        return bound, noise_floor(filled, n, m) * scale, needed
    if metric == "hellinger":
        bound = math.sqrt(noise_bound(dof, n, m) / 4)
        needed = rows_needed(dof, 4 * threshold**2) if threshold < bound else None
        return bound, math.sqrt(noise_floor(filled, n, m) / 4), needed
    return None, None, None


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
        out[i] = _with(c, p_adjusted=p_adj, reasons=reasons)
    return out


_CLASSES = {"integer": "number", "float": "number"}


def _type_change(ref: ColumnProfile, kind: str) -> str:
    """What changed when the current values are of another class than the reference's
    (numbers, text, booleans, dates/times); empty when they are not, when either side
    is all missing, or when the reference's class is unknown (a version 2 profile)."""
    if kind == "null" or (ref.role is Role.SKIPPED and not ref.kind):
        return ""
    if ref.role.compared:
        if _compatible(ref, kind):
            return ""
        was = ref.kind or ("text" if ref.role is Role.TEXT else "")
    else:
        was = ref.kind
        if not was or was == "null" or _CLASSES.get(was, was) == _CLASSES.get(kind, kind):
            return ""
        if ref.role is Role.DATETIME and {was, kind} <= {"text", "datetime"}:
            return ""
    before = _KIND_WORDS.get(was, was) if was else ref.role.value
    return f"{before} in the reference, {_KIND_WORDS.get(kind, kind)} in the current data"


def schema_change(result: ColumnResult, reason: Reason, text: str, policy: str) -> ColumnResult:
    """A schema change: a reason (it fails the check) or, with ``--schema warn``, a
    warning (listed, not failing)."""
    if policy == "warn":
        return _with(result, warnings=(*result.warnings, reason), schema_change=text)
    return _with(result, reasons=(*result.reasons, reason), schema_change=text)


def _unreadable(name: str, request: DriftRequest, threshold: float, error: str) -> ColumnResult:
    """A column whose values Arrow cannot turn into anything kldiv compares."""
    return ColumnResult(
        name=name,
        role=Role.SKIPPED,
        metric=request.metric,
        threshold=threshold,
        missing=Missing(0, 0, 0, 0),
        error=error,
    )


def _with(result: ColumnResult, **changes: Any) -> ColumnResult:
    from dataclasses import replace

    return replace(result, **changes)


def _shared(reference: list[str], current: list[str], label: str) -> list[str]:
    present = set(current)
    shared = [n for n in reference if n in present]
    if not shared:
        raise UsageError(f"{clean(label)}: the reference and current data have no column in common")
    return shared


def _unmatched(
    reference: list[str], current: list[str], rules: ColumnRules
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Columns on one side only (a schema change), among those ``--columns`` names (by
    name or glob; indices count on the shared columns only), less what ``--exclude``
    names."""
    import fnmatch

    wanted = [t.strip() for t in (rules.columns or "").split(",") if t.strip()]
    wanted = [t for t in wanted if not t.lstrip("-").isdigit()]
    excluded = _names(rules.exclude)

    def kept(names: list[str], other: set[str]) -> tuple[str, ...]:
        return tuple(
            n
            for n in names
            if n not in other
            and (rules.columns is None or any(fnmatch.fnmatchcase(n, p) for p in wanted))
            and not any(fnmatch.fnmatchcase(n, p) for p in excluded)
        )

    return kept(reference, set(current)), kept(current, set(reference))


def _lone_role(profile: Profile | None, name: str) -> Role:
    """The role of a column on one side only: the profile's, else not known (skipped)."""
    if profile is not None and name in {c.name for c in profile.columns}:
        return profile.column(name).role
    return Role.SKIPPED


def _profile_matches(profile: Profile, request: DriftRequest, label: str) -> None:
    rules, default = request.rules, ColumnRules()
    for option, asked, built, unset in (
        ("--bins", rules.bins, profile.bins, default.bins),
        ("--binning", rules.binning, profile.binning, default.binning),
        ("--max-categories", rules.max_categories, profile.max_categories, default.max_categories),
        ("--datetime", rules.datetime, profile.datetime, default.datetime),
    ):
        if asked != unset and asked != built:
            raise UsageError(
                f"{clean(label)}: the profile was built with {option} {built}; drop {option} "
                "or build a new profile"
            )
    if rules.categorical or rules.numeric:
        raise UsageError(
            f"{clean(label)}: roles are fixed when the profile is built; give --categorical "
            "and --numeric to 'kldiv profile'"
        )


def _map_columns(work: Callable[[str], ColumnResult], names: Sequence[str]) -> list[ColumnResult]:
    """``work`` on every column, in order, on up to :data:`THREADS` threads: the heavy
    parts (Arrow's hashing and casts, NumPy's partition and comparisons) release the GIL,
    and each thread holds one column of each side."""
    if len(names) < 2 or THREADS < 2:
        return [work(n) for n in names]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(THREADS) as pool:
        return list(pool.map(work, names))


def run_drift(
    request: DriftRequest,
    stdin: bytes | None = None,
    version: str = "",
    profiler: Profiler | None = None,
) -> DriftReport:
    """``kldiv drift``: validate, read both sides one column at a time, compare
    (``profiler``: a raw reference's columns profiled elsewhere, see :func:`build_profile`)."""
    started = time.perf_counter()
    request.validate()
    thresholds = load_thresholds(request.thresholds) if request.thresholds else Thresholds()
    current = open_table(request.current, request.delimiter, stdin)
    ref_label, _ = expand(request.reference)
    cur_label, _ = expand(request.current)
    reference_table: Table | None = None
    profile: Profile | None = None
    if _is_profile(request.reference):
        profile = load_profile(request.reference[0])
        _profile_matches(profile, request, ref_label)
        reference_names = [c.name for c in profile.columns]
        reference_rows = profile.rows
    else:
        reference_table = open_table(request.reference, request.delimiter, stdin)
        reference_names = reference_table.column_names
        reference_rows = reference_table.num_rows
    names = request.rules.select(
        ref_label,
        _shared(reference_names, current.column_names, ref_label),
        [*reference_names, *current.column_names],
    )
    # A profile knows the reference's other columns too (left out when it was built):
    # they are not new when the current data have them.
    schema_names = (
        list(profile.table_columns) if profile and profile.table_columns else reference_names
    )
    unmatched = _unmatched(schema_names, current.column_names, request.rules)
    if profile is not None:
        profiled = set(reference_names)
        unmatched = (tuple(n for n in unmatched[0] if n in profiled), unmatched[1])
    import pyarrow as pa

    p_test = request.metric in P_METRICS

    def one(name: str) -> ColumnResult:
        threshold = request.level if p_test else thresholds.for_column(name, request.threshold)
        from_file = not p_test and (name in thresholds.columns or thresholds.default is not None)
        origin = "file" if from_file else "fixed"
        try:
            col = _Column.read(current, name)
            if profile is None:
                assert reference_table is not None
                other = sampled_values(col.data)
                ref = next(build_profile(reference_table, request.rules, [name], profiler, other))
            else:
                ref = profile.column(name)
                if request.rules.override(name) is Role.SKIPPED:
                    ref = ColumnProfile(
                        name, Role.SKIPPED, ref.rows, ref.missing, reason=SKIPPED_BY_USER
                    )
            return check_column(ref, col, request, threshold, origin)
        except pa.ArrowException as exc:
            return _unreadable(name, request, threshold, _arrow_text(exc))

    results = _map_columns(one, names)
    if p_test:
        results = apply_correction(results, request.level, request.correction)
    default = thresholds.default if thresholds.default is not None else request.threshold
    if p_test:
        default = request.level
    for names_, reason, text in (
        (unmatched[0], Reason.COLUMN_REMOVED, "in the reference, missing from the current data"),
        (unmatched[1], Reason.COLUMN_ADDED, "in the current data, not in the reference"),
    ):
        for name in names_:
            missing = Missing(0, reference_rows, 0, current.num_rows)
            lone = ColumnResult(name, _lone_role(profile, name), request.metric, default, missing)
            results.append(schema_change(lone, reason, text, request.schema))
    s = request
    return DriftReport(
        reference=ref_label,
        current=cur_label,
        reference_rows=reference_rows,
        current_rows=current.num_rows,
        settings=Settings(
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
        ),
        columns=tuple(results),
        seconds=time.perf_counter() - started,
        version=version,
        command=request.command,
        unknown_thresholds=tuple(sorted(set(thresholds.columns) - set(names))),
        only_in_reference=unmatched[0],
        only_in_current=unmatched[1],
    )
