"""A drift column's values, read once, and the role rules that look at them: shared by
the local profiler (``jobs.drift_roles``), the check (``jobs.drift``), the calibration and
the cluster profiler (``engines.drift``), so that every engine decides on the same values.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import InputError
from ..io.columns import column_array
from ..io.drift_tables import Table
from ..text import clean, shorten
from .drift_profile import Category

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
SKIPPED_BY_USER = "skipped by --skip"
ALL_MISSING = "no values in the reference (all missing)"
NO_FINITE = "no finite values in the reference"
_OFFSET = r"(Z|[+-]\d{2}:?\d{2})$"
_ISO = r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?)?$"


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


def is_iso_text(column: Any) -> bool:
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


def shown(value: object) -> str:
    """A value from the data in a one-line message: cleaned, at most 40 characters, quoted."""
    return f"'{shorten(clean(value), 40, 40)}'"


def iso_times(data: Any) -> tuple[Any, int, str]:
    """Text ``data`` with each value that is not an ISO-8601 date or date-time made
    missing, how many were, and the first of them (:func:`shown`; empty when none)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    iso = pc.match_substring_regex(data, _ISO)  # missing stays missing
    bad = data.filter(pc.invert(iso))
    if len(bad) == 0:
        return data, 0, ""
    return pc.if_else(iso, data, pa.scalar(None, data.type)), len(bad), shown(bad[0].as_py())


def _parse_iso(column: Any, label: str) -> Any:
    """ISO-8601 text as timestamps: all with a UTC offset (``Z``, ``+01:00``) or all
    without (taken as UTC); a column of both is refused naming one of each."""
    import pyarrow as pa
    import pyarrow.compute as pc

    for target in (pa.timestamp("us"), pa.timestamp("us", tz="UTC")):
        try:
            return pc.cast(column, target)
        except pa.ArrowInvalid:
            continue
    valid = column.drop_null()
    zoned = pc.match_substring_regex(valid, _OFFSET)
    first = bool(zoned[0].as_py())
    other = valid.filter(pc.invert(zoned) if first else zoned)
    if len(other):
        one, none = (valid[0], other[0]) if first else (other[0], valid[0])
        raise InputError(
            label,
            f"mixes ISO times with and without a UTC offset ({shown(one.as_py())} has one, "
            f"{shown(none.as_py())} has none); give every value an offset, or none "
            "(then they are taken as UTC)",
        )
    bad = valid.filter(pc.invert(pc.match_substring_regex(valid, _ISO)))
    found = shown((bad if len(bad) else valid)[0].as_py())
    raise InputError(label, f"holds text that is not an ISO-8601 date/time (such as {found})")


def value_counts(column: Any) -> tuple[list[Any], np.ndarray]:
    """Distinct non-missing values and their counts (Arrow's hash, not a sort)."""
    import pyarrow.compute as pc

    counts = pc.value_counts(column.drop_null())
    return counts.field(0).to_pylist(), column_array(counts.field(1), np.dtype(np.int64))


def as_category(value: Category) -> Category:
    """Integer-valued floats are stored (and printed) as integers: ``2``, not ``2.0``."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    return value


@dataclass
class Column:
    """One column of one side, read once: its type class, rows and missing values."""

    label: str
    name: str
    data: Any
    kind: str
    rows: int
    null_count: int
    _numbers: np.ndarray | None = None

    @classmethod
    def read(cls, table: Table, name: str) -> Column:
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


def present_values(values: np.ndarray) -> np.ndarray:
    """The values that are not missing (NaN); no copy when none is."""
    missing = np.isnan(values)
    return values[~missing] if missing.any() else values


def sampled_values(data: Any) -> Any:
    """The values (missing ones too) of at most :data:`ID_SAMPLE` rows taken at even
    intervals (all rows of a smaller column): what the role rules look at."""
    if len(data) > ID_SAMPLE:
        data = data.take(np.linspace(0, len(data) - 1, ID_SAMPLE).astype(np.int64))
    return data


def few(distinct: int, values: int) -> bool:
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


def text_lengths(col: Column) -> np.ndarray:
    """The lengths (characters) of a text column's values, NaN for missing ones."""
    import pyarrow as pa
    import pyarrow.compute as pc

    lengths = pc.cast(pc.utf8_length(col.data), pa.float64())
    return column_array(lengths, _F64)


KIND_WORDS = {
    "integer": "numbers",
    "float": "numbers",
    "bool": "booleans",
    "text": "text",
    "datetime": "dates/times",
    "null": "all missing",
    "other": "of another type",
}
