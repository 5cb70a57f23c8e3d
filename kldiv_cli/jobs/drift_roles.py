"""Roles and profiles: which role each reference column takes, and its bins and counts
(``kldiv profile``, and the reference side of ``kldiv drift``). The rules are
``docs/drift.md``'s "Roles" and "Bins"; the values they look at are ``jobs.drift_values``'.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import InputError
from ..io.drift_tables import Table
from ..text import clean, format_number
from .drift_profile import (
    SKETCH_SIZE,
    ColumnProfile,
    Role,
    category_key,
)
from .drift_report import NewCategory
from .drift_request import ColumnRules
from .drift_values import (
    ALL_MISSING,
    KIND_WORDS,
    NO_FINITE,
    NUMERIC_CATEGORIES,
    SKIPPED_BY_USER,
    Column,
    as_category,
    few,
    is_iso_text,
    present_values,
    row_key_reason,
    sampled_values,
    text_lengths,
    text_reason,
    value_counts,
)

BLOCK = 1 << 20
#: New categories listed by name, per column.
TOP_NEW = 10


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


def _float_categories(values: np.ndarray) -> tuple[list[Any], np.ndarray] | None:
    """Distinct values and counts when there are at most :data:`NUMERIC_CATEGORIES`, all
    finite; None otherwise (a sample rules most columns out without a full sort)."""
    if np.unique(values[:1000]).size > NUMERIC_CATEGORIES:
        return None
    distinct, counts = np.unique(values, return_counts=True)
    if not few(distinct.size, values.size) or not np.isfinite(distinct).all():
        return None
    return distinct.tolist(), counts


def _skipped(col: Column, role: Role, reason: str, missing: int | None = None) -> ColumnProfile:
    return ColumnProfile(
        col.name, role, col.rows, col.missing() if missing is None else missing, reason=reason
    )


def profile_numeric(
    col: Column,
    rules: ColumnRules,
    from_datetime: bool,
    role: Role = Role.NUMERIC,
    reason: str = "",
) -> ColumnProfile:
    """Numeric bins of a column's values (of its lengths, for role ``text``)."""
    values = present_values(text_lengths(col) if role is Role.TEXT else col.numbers())
    missing = col.rows - values.size
    infinite = np.isinf(values)
    finite = values[~infinite] if infinite.any() else values
    if finite.size == 0:
        return _skipped(col, Role.SKIPPED, NO_FINITE, missing)
    edges = numeric_edges(finite, rules.bins, rules.binning)
    maximum = float(finite.max())
    counts = bin_counts(values, edges, maximum)
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
    col: Column, values: list[Any], counts: np.ndarray, missing: int, rules: ColumnRules
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
        categories=tuple(as_category(values[i]) for i in keep),
        pooled=tuple(as_category(values[i]) for i in rest),
    )


def profile_column(col: Column, rules: ColumnRules, other: Any = None) -> ColumnProfile:
    """Decide a reference column's role (module docstring) and count its bins; the
    profile records the class of its values (for type changes). ``other``: the same
    column of the current data, when known (for the key rule's disjointness)."""
    from dataclasses import replace

    return replace(_profile_role(col, rules, other), kind=col.kind)


def _profile_role(col: Column, rules: ColumnRules, other: Any) -> ColumnProfile:
    role = rules.override(col.name)
    kind = col.kind
    if role is Role.SKIPPED:
        return _skipped(col, Role.SKIPPED, SKIPPED_BY_USER)
    if kind == "other":
        return _skipped(col, Role.SKIPPED, f"unsupported type {col.data.type}")
    if kind == "null" or col.rows - col.missing() == 0:  # NaN is missing too
        return _skipped(col, Role.SKIPPED, ALL_MISSING, col.rows)
    iso = kind == "text" and role is not Role.CATEGORICAL and is_iso_text(col.data)
    if kind == "datetime" or iso:
        if role is Role.NUMERIC or rules.datetime == "numeric":
            return profile_numeric(col, rules, from_datetime=True)
        if role is None:
            return _skipped(col, Role.DATETIME, "date/time values (--datetime numeric bins them)")
    elif role is Role.NUMERIC:
        if kind not in ("integer", "float"):
            raise InputError(col.where, f"holds {KIND_WORDS[kind]}; --numeric takes numbers")
        return profile_numeric(col, rules, from_datetime=False)
    if kind == "float":
        return _profile_float(col, rules, role)
    if kind == "datetime":  # --categorical on a date/time column
        text = col.data.cast("string")
        distinct_values, counts = value_counts(text)
        return profile_categorical(col, distinct_values, counts, col.null_count, rules)
    if role is None and kind in ("text", "integer"):
        found = _profile_by_sample(col, rules, other)
        if found is not None:
            return found
    distinct_values, counts = value_counts(col.data)
    values_n = int(sum(counts.tolist()))
    if kind == "integer" and role is None and not few(len(distinct_values), values_n):
        return profile_numeric(col, rules, from_datetime=False)
    return profile_categorical(col, distinct_values, counts, col.null_count, rules)


def _profile_float(col: Column, rules: ColumnRules, role: Role | None) -> ColumnProfile:
    """Floats: categories when asked (infinities then count as missing: they cannot be
    stored as categories) or when there are few distinct finite values, else numbers."""
    values = present_values(col.numbers())
    if role is Role.CATEGORICAL:
        finite = values[np.isfinite(values)]
        if finite.size == 0:
            return _skipped(col, Role.SKIPPED, NO_FINITE)
        uniques, counts = np.unique(finite, return_counts=True)
        return profile_categorical(col, uniques.tolist(), counts, col.rows - finite.size, rules)
    categories = _float_categories(values)
    if categories is not None:
        return profile_categorical(col, *categories, col.rows - values.size, rules)
    return profile_numeric(col, rules, from_datetime=False)


def _profile_by_sample(col: Column, rules: ColumnRules, other: Any) -> ColumnProfile | None:
    """Integers and text without a given role, decided on the sampled values: a row key,
    free text, or (integers) too many distinct values for categories; None: categories
    may be (decided on all the values)."""
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
    free = text_reason(sample, distinct) if col.kind == "text" else None
    if free is not None:
        return profile_numeric(col, rules, False, Role.TEXT, free)
    if col.kind == "integer" and not few(distinct, len(sample)):
        return profile_numeric(col, rules, from_datetime=False)
    return None


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
                done = profile_column(Column.read(table, name), rules, other)
            yield done
        except pa.ArrowException as exc:
            raise InputError(f"{table.label}: column {clean(name)!r}", arrow_text(exc)) from None


def arrow_text(exc: Exception) -> str:
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return f"cannot be compared ({clean(first)})"


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


@dataclass(frozen=True)
class Counted:
    """A current column in its reference's bins: the counts (one more than the profile's
    for a categorical column: new values), how many values, the new categories (top
    :data:`TOP_NEW`) and how many distinct new ones, and a binned column's values."""

    counts: np.ndarray
    values: int
    new: tuple[NewCategory, ...] = ()
    n_new: int = 0
    present: np.ndarray | None = None


def current_counts(ref: ColumnProfile, col: Column) -> Counted:
    """A current column's :class:`Counted` in the bins of its reference profile."""
    if ref.role.binned:
        present = present_values(text_lengths(col) if ref.role is Role.TEXT else col.numbers())
        counts = bin_counts(present, np.asarray(ref.edges), float(ref.maximum or 0.0))
        return Counted(counts, int(present.size), present=present)
    if col.kind == "float":
        distinct, freq = np.unique(present_values(col.numbers()), return_counts=True)
        values = distinct.tolist()
    elif col.kind == "datetime":
        values, freq = value_counts(col.data.cast("string"))
    else:
        values, freq = value_counts(col.data)
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
            new.append(NewCategory(as_category(value), int(n)))
    new.sort(key=lambda c: (-c.count, category_key(c.value)))
    return Counted(counts, int(sum(freq.tolist())), tuple(new[:TOP_NEW]), len(new))
