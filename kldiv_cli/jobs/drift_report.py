"""A drift check's typed results: one :class:`ColumnResult` per column (its state is
derived there and nowhere else) and the :class:`DriftReport` with the dataset verdict,
each with its JSON form. ``render.drift`` turns them into every output format."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

from .drift_groups import Group, Grouping
from .drift_measures import P_METRICS, Measures
from .drift_profile import Category, Role
from .drift_request import parse_fail_on
from .gates import Verdict


@dataclass(frozen=True)
class NewCategory:
    value: Category
    count: int


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


#: The states of a compared column (what ``--fail-on share:F`` divides by).
_COMPARED = (State.DRIFT, State.OK, State.WEAK, State.WARN)


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
    measures: Measures | None = None
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
    #: The window or segment of the current data this row checks (``--window``,
    #: ``--segment``); None: all of it.
    group: str | None = None

    @property
    def state(self) -> State:
        if self.reasons:
            return State.DRIFT
        if self.error:
            return State.ERROR
        if self.warnings:
            return State.WARNING
        if self.measures is None:
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
        return None if self.measures is None else self.measures.get(self.metric)

    @property
    def weak(self) -> bool:
        """The threshold is below the noise bound: noise alone crosses it more often than
        ``1 - NOISE_LEVEL``, so only values above the bound count as drift."""
        return self.noise_bound is not None and self.threshold < self.noise_bound

    def to_json(self, group_key: str = "") -> dict[str, Any]:
        """The row's JSON; ``group_key`` (``window`` or ``segment``) names its group."""
        doc: dict[str, Any] = {group_key: self.group} if group_key else {}
        doc |= {
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
        if self.measures is not None:
            d = self.measures
            # The four divergences stay at the top level too, as before ``measures``.
            doc.update({m: d.values[m] for m in ("kl", "kl_reverse", "psi", "js")})
            doc["measures"] = d.to_json()
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
        if self.measures is not None:
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
    #: ``--window`` / ``--segment``: how the current rows were grouped, the groups (the
    #: rows of each are its columns' results, in group order), rows in no group.
    grouping: Grouping | None = None
    groups: tuple[Group, ...] = ()
    ungrouped_rows: int = 0
    #: Of them, rows of text that is not a date/time (``--window``), and the first value.
    unparsed: tuple[int, str] = (0, "")

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
        """The dataset verdict: under ``fail_on`` (shares are of the compared columns), of
        every group when the rows are grouped (any group drifted)."""
        if self.grouping is None:
            return self._verdict(self.columns)
        return bool(self.drifted_groups) or self._verdict(self.rows_of(None))

    def rows_of(self, group: str | None) -> list[ColumnResult]:
        """The results of a group (None: the rows of no group, such as schema changes)."""
        return [c for c in self.columns if c.group == group]

    def group_drift(self, group: str) -> bool:
        """A group's verdict: ``fail_on`` over its columns and the schema changes."""
        return self._verdict([*self.rows_of(group), *self.rows_of(None)])

    @property
    def drifted_groups(self) -> list[str]:
        """The windows or segments that drifted, in order."""
        return [g.label for g in self.groups if self.group_drift(g.label)]

    def _verdict(self, rows: Sequence[ColumnResult]) -> bool:
        kind, number = parse_fail_on(self.settings.fail_on)
        states = [c.state for c in rows]
        drifted = states.count(State.DRIFT)
        if kind == "any":
            return drifted > 0
        if kind == "share":
            compared = sum(1 for s in states if s in _COMPARED)
            return compared > 0 and drifted / compared >= number
        return drifted >= number

    @property
    def verdict(self) -> Verdict:
        """The exit code's say: drift fails the check (naming the columns, or the
        windows/segments, that drifted); a column that could not be compared is an error
        (always said, even when the check failed too)."""
        failed = [c for c in self.columns if c.error]
        error = None
        if failed:
            first = failed[0]
            error = (
                f"{len(failed)} column{'s' if len(failed) > 1 else ''} could not be compared: "
                f"{', '.join(c.name for c in failed)} ({first.name}: {first.error})"
            )
        return Verdict(failed=self.failure_text() if self.drift else None, error=error)

    def failure_text(self) -> str:
        """The ``check failed`` line: the columns (and schema changes), or the
        windows/segments, that drifted."""
        changes = len(self.schema_changes)
        schema = f" ({changes} schema change{'s' if changes > 1 else ''})" if changes else ""
        if self.grouping is None:
            return f"drift in {self.n_drifted} of {len(self.columns)} columns{schema}"
        drifted = self.drifted_groups
        shown = ", ".join(drifted[:10]) + (", ..." if len(drifted) > 10 else "")
        kind = self.grouping.kind
        return f"drift in {len(drifted)} of {len(self.groups)} {kind}s{schema}: {shown}"

    @property
    def new_groups(self) -> list[Group]:
        """Segments only in the current data (``--reference-segment``): not compared."""
        return [g for g in self.groups if g.new]

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
            **self._groups_json(),
            "columns": [c.to_json(self.group_key) for c in self.columns],
        }

    @property
    def group_key(self) -> str:
        """``window`` or ``segment`` when the rows are grouped, else empty."""
        return "" if self.grouping is None else self.grouping.kind

    def _groups_json(self) -> dict[str, Any]:
        if self.grouping is None:
            return {}
        key = self.group_key
        groups = []
        for g in self.groups:
            rows = self.rows_of(g.label)
            doc = g.to_json() | {
                "drift": self.group_drift(g.label),
                "n_drifted": sum(1 for c in rows if c.state is State.DRIFT),
                "drifted_columns": [c.name for c in rows if c.state is State.DRIFT],
            }
            groups.append(doc)
        return {
            "grouping": self.grouping.to_json(),
            f"{key}s": groups,
            f"drifted_{key}s": self.drifted_groups,
            f"new_{key}s": [g.label for g in self.new_groups],
            "ungrouped_rows": self.ungrouped_rows,
            "unparsed_rows": self.unparsed[0],
        }
