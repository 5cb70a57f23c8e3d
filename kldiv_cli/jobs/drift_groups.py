"""Windows and segments: ``kldiv drift --window COL:PERIOD`` and ``--segment COL`` split
the current rows into groups, each checked against the reference like a whole table.

* A **window** is a period of a date/time column (Arrow dates and timestamps, or ISO-8601
  text): ``N`` and a unit, ``s``, ``min``, ``h``, ``d``, ``w`` (7 days), ``mo`` (calendar
  months) or ``y`` (12 months). Fixed periods start at midnight of the first day in the
  data, months at its first month. A time-zone-aware timestamp is windowed on its own
  wall clock (a day is a local day); ISO text with offsets is in UTC. Rows without a time
  are in no window (counted); windows without rows are not listed.
* A **segment** is one of the :data:`MAX_SEGMENTS` (``--max-segments``) most frequent
  values of a column of the current data (ties by value), the other values and missing
  ones pooled as one :data:`OTHER` segment.

The rows are grouped once (:class:`Groups`: a stable order of the rows by group, and
where each group starts in it); a column is then put in that order once and cut into
zero-copy slices, so the current data are read one column at a time, as without groups.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import InputError, UsageError
from ..text import clean

if TYPE_CHECKING:
    import numpy as np

    from .drift_values import Column

#: The most windows a check lists (a longer period, or fewer rows, for more).
MAX_WINDOWS = 1_000
MAX_SEGMENTS = 10
#: The segment of the values beyond the most frequent ones, and of missing values.
OTHER = "(other)"
_UNITS = {"s": 1, "min": 60, "h": 3600, "d": 86_400, "w": 7 * 86_400, "mo": 0, "y": 0}
_PERIOD = re.compile(r"^(\d+)(s|min|h|d|w|mo|y)$")
_DAY = 86_400


@dataclass(frozen=True)
class Period:
    """``count`` units: seconds for the fixed units, months for ``mo`` and ``y``."""

    count: int
    unit: str

    @property
    def months(self) -> int:
        """The period in months (0 for a fixed period)."""
        return {"mo": 1, "y": 12}.get(self.unit, 0) * self.count

    @property
    def seconds(self) -> int:
        return _UNITS[self.unit] * self.count

    def __str__(self) -> str:
        return f"{self.count}{self.unit}"


def parse_period(text: str, option: str) -> Period:
    """``1h``, ``1d``, ``7d``, ``1mo``...: a positive count and a unit."""
    found = _PERIOD.match(text.strip())
    if found is None or int(found.group(1)) < 1:
        raise UsageError(
            f"{option} takes COL:PERIOD with PERIOD a count and a unit (s, min, h, d, w, mo, y) "
            f"such as 1h, 1d, 7d or 1mo; got {clean(text)!r}"
        )
    return Period(int(found.group(1)), found.group(2))


def parse_window(text: str, option: str = "--window") -> tuple[str, Period]:
    """``COL:PERIOD`` (the column's name may hold colons: the period is after the last)."""
    column, colon, period = text.rpartition(":")
    if not colon or not column:
        raise UsageError(f"{option} takes COL:PERIOD (such as created_at:1d), got {clean(text)!r}")
    return column, parse_period(period, option)


@dataclass(frozen=True)
class Grouping:
    """How the current rows are grouped: by a window of ``column`` (``period``) or by its
    values (segments; ``reference_segment``: each against its own reference segment)."""

    column: str
    period: Period | None = None
    reference_segment: bool = False
    max_segments: int = MAX_SEGMENTS

    @property
    def kind(self) -> str:
        """``window`` or ``segment``: also the key naming a row's group in every output."""
        return "window" if self.period is not None else "segment"

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"by": self.kind, "column": self.column}
        if self.period is not None:
            doc["period"] = str(self.period)
        else:
            doc.update(reference_segment=self.reference_segment, max_segments=self.max_segments)
        return doc


def grouping_of(
    window: str | tuple[str, Period] | None = None,
    segment: str | None = None,
    reference_segment: bool = False,
    max_segments: int = MAX_SEGMENTS,
) -> Grouping | None:
    """``--window COL:PERIOD`` (text, or parsed by :func:`parse_window`) or ``--segment
    COL`` as a grouping, one of them at most (None: neither)."""
    if window is not None and segment is not None:
        raise UsageError("give --window or --segment, not both")
    if reference_segment and segment is None:
        raise UsageError("--reference-segment needs --segment COL")
    if isinstance(window, str):
        window = parse_window(window, "--window")
    if window is not None:
        return Grouping(*window)
    if segment is not None:
        if not isinstance(segment, str):
            raise UsageError(f"--segment takes a column's name, got {clean(repr(segment))}")
        return Grouping(segment, None, reference_segment, max_segments)
    return None


def chunks_of(by: Grouping | str | tuple[str, Period] | None, option: str) -> Grouping | None:
    """``--calibrate-by COL:PERIOD``: a window grouping from text, a parsed window or a
    window :class:`Grouping` (None: none)."""
    if isinstance(by, str):
        by = parse_window(by, option)
    if isinstance(by, tuple):
        by = Grouping(*by)
    if by is not None and (not isinstance(by, Grouping) or by.period is None):
        raise UsageError(f"{option} takes COL:PERIOD (such as created_at:1d), got {by!r}")
    return by


@dataclass(frozen=True)
class Group:
    """One window or segment: its label, rows, and (windows) start and end (exclusive);
    ``reference_rows``: its own reference rows (``--reference-segment``)."""

    label: str
    rows: int
    start: str | None = None
    end: str | None = None
    reference_rows: int | None = None

    @property
    def new(self) -> bool:
        """A segment only in the current data (``--reference-segment``: no reference rows)."""
        return self.reference_rows == 0

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"label": self.label, "rows": self.rows}
        if self.start is not None:
            doc.update(start=self.start, end=self.end)
        if self.reference_rows is not None:
            doc.update(reference_rows=self.reference_rows, new=self.new)
        return doc


@dataclass(frozen=True)
class Groups:
    """Rows grouped: ``order`` lists the grouped rows group by group (each group's rows in
    table order), group ``i`` is ``order[bounds[i]:bounds[i + 1]]``; ``ungrouped``: rows
    in no group (no time)."""

    groups: tuple[Group, ...]
    order: np.ndarray
    bounds: np.ndarray
    ungrouped: int = 0
    #: Of the ungrouped rows, those of text that is not a date/time, and the first value.
    unparsed: tuple[int, str] = (0, "")

    def split(self, col: Column) -> list[Column]:
        """The column's rows of each group (one reorder, then zero-copy slices)."""
        from dataclasses import replace

        import pyarrow as pa

        ordered = col.data.take(pa.array(self.order))
        out = []
        for i in range(len(self.groups)):
            start, stop = int(self.bounds[i]), int(self.bounds[i + 1])
            part = ordered.slice(start, stop - start)
            out.append(
                replace(col, data=part, rows=len(part), null_count=part.null_count, _numbers=None)
            )
        return out


def _from_ids(ids: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(order, bounds, rows per group) of rows with group ids ``0..count-1`` (-1: none)."""
    import numpy as np

    kept = np.flatnonzero(ids >= 0)
    order = kept[np.argsort(ids[kept], kind="stable")]
    sizes = np.bincount(ids[kept], minlength=count)
    return order, np.concatenate([[0], np.cumsum(sizes)]), sizes


# ----------------------------------------------------------------- windows


def _instants(col: Column) -> tuple[np.ndarray, tuple[int, str]]:
    """Seconds of each row (NaN when missing) on the column's own clock: a time-zone-aware
    timestamp's wall clock, else UTC; and the rows of text that is not a date/time
    (counted as missing) with the first such value."""
    from dataclasses import replace

    import pyarrow as pa
    import pyarrow.compute as pc

    from .drift_values import iso_times

    kind = col.kind
    data = col.data
    unparsed: tuple[int, str] = (0, "")
    if kind == "datetime" and pa.types.is_timestamp(data.type) and data.type.tz is not None:
        col = replace(col, data=pc.local_timestamp(data), _numbers=None)
    elif kind == "text":
        # Text that is not a date/time is a row without a time, as a missing one is.
        times, count, first = iso_times(data)
        if count == len(data) - data.null_count:
            raise InputError(
                col.where,
                f"holds no dates or times (text such as {first}); --window needs dates, "
                "timestamps or ISO-8601 text",
            )
        col, unparsed = replace(col, data=times, _numbers=None), (count, first)
    elif kind != "datetime":
        raise InputError(col.where, "is not a date/time column; --window needs dates or times")
    return col.numbers(), unparsed


def window_groups(col: Column, period: Period) -> Groups:
    """The rows of ``col`` (a date/time column) in windows of ``period``."""
    import numpy as np

    seconds, unparsed = _instants(col)
    present = ~np.isnan(seconds)
    if not present.any():
        raise InputError(col.where, "holds no dates or times to window")
    first_day = np.floor(seconds[present].min() / _DAY) * _DAY
    ids = np.full(seconds.size, -1, dtype=np.int64)
    if period.months:
        months = seconds[present].astype("datetime64[s]").astype("datetime64[M]").astype(np.int64)
        ids[present] = (months - months.min()) // period.months
        origin_month = int(months.min())
    else:
        ids[present] = np.floor((seconds[present] - first_day) / period.seconds).astype(np.int64)
    used, inverse = np.unique(ids[present], return_inverse=True)
    if used.size > MAX_WINDOWS:
        raise UsageError(
            f"--window {col.name}:{period} gives {used.size} windows; at most {MAX_WINDOWS} "
            "(give a longer period)"
        )
    dense = np.full(seconds.size, -1, dtype=np.int64)
    dense[present] = inverse.reshape(-1)
    order, bounds, sizes = _from_ids(dense, used.size)
    groups = []
    for i, window in enumerate(used.tolist()):
        if period.months:
            start = _month_text(origin_month + window * period.months)
            end = _month_text(origin_month + (window + 1) * period.months)
        else:
            start = _instant_text(first_day + window * period.seconds, period)
            end = _instant_text(first_day + (window + 1) * period.seconds, period)
        groups.append(Group(start, int(sizes[i]), start, end))
    return Groups(tuple(groups), order, bounds, int(seconds.size - present.sum()), unparsed)


def _month_text(month: int) -> str:
    year, index = divmod(month, 12)
    return f"{1970 + year:04d}-{index + 1:02d}"


def _instant_text(seconds: float, period: Period) -> str:
    from datetime import datetime, timezone

    moment = datetime.fromtimestamp(seconds, tz=timezone.utc)
    if period.seconds % _DAY == 0:
        return moment.strftime("%Y-%m-%d")
    if period.seconds % 60 == 0:
        return moment.strftime("%Y-%m-%dT%H:%M")
    return moment.strftime("%Y-%m-%dT%H:%M:%S")


# ----------------------------------------------------------------- segments


@dataclass(frozen=True)
class Segments:
    """The most frequent values of a column of the current data (the segments, in order
    of their counts), and whether the rest (other values, missing ones) is a segment."""

    values: tuple[Any, ...]

    def ids(self, data: Any) -> np.ndarray:
        """Each row's segment: its value's index, or ``len(values)`` (other, missing)."""
        import numpy as np
        import pyarrow as pa
        import pyarrow.compute as pc

        index = pc.index_in(data, value_set=pa.array(self.values, type=data.type))
        found = index.fill_null(len(self.values))
        out: np.ndarray = np.asarray(found.to_numpy(zero_copy_only=False), dtype=np.int64)
        return out

    def groups(self, col: Column, reference: Column | None = None) -> tuple[Groups, Groups | None]:
        """The current rows by segment, and the reference's with the same labels."""

        labels = [clean(v) for v in self.values]
        ids = self.ids(col.data)
        rest = bool((ids == len(self.values)).any())
        ref_ids = self.ids(reference.data) if reference is not None else None
        if ref_ids is not None:
            rest = rest or bool((ref_ids == len(self.values)).any())
        count = len(self.values) + int(rest)
        order, bounds, sizes = _from_ids(ids, count)
        ref_groups = None
        ref_sizes: Sequence[int | None] = [None] * count
        if ref_ids is not None:
            ref_order, ref_bounds, found = _from_ids(ref_ids, count)
            ref_sizes = [int(n) for n in found]
            ref_groups = Groups((), ref_order, ref_bounds)
        names = [*labels, OTHER][:count]
        groups = tuple(
            Group(name, int(sizes[i]), reference_rows=ref_sizes[i]) for i, name in enumerate(names)
        )
        if ref_groups is not None:
            ref_groups = Groups(groups, ref_groups.order, ref_groups.bounds)
        return Groups(groups, order, bounds), ref_groups


def segments_of(col: Column, most: int) -> Segments:
    """The ``most`` most frequent values of ``col`` (ties by value)."""
    from .drift_profile import category_key
    from .drift_values import value_counts

    if col.kind in ("float", "other", "null"):
        what = "all missing" if col.kind == "null" else f"{col.kind} values"
        raise InputError(col.where, f"holds {what}; --segment needs categories (text, integers)")
    values, counts = value_counts(col.data)
    if not values:
        raise InputError(col.where, "holds no values to segment by")
    order = sorted(range(len(values)), key=lambda i: (-int(counts[i]), category_key(values[i])))
    return Segments(tuple(values[i] for i in order[:most]))
