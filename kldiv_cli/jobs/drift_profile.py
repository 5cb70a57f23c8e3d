"""The drift profile: what a reference says about each column, and the checked file format.

A profile is JSON written by ``kldiv profile`` and read back by ``kldiv drift``. Whoever
hands kldiv a profile may have edited it, so :func:`load_profile` checks it against the
schema before anything is used: the version, the type of every field, and the invariants
the divergences rely on (edges finite and strictly increasing, counts non-negative
integers that add up to the column's values, one count per bin, known roles, bounded
nesting). Every violation is one :class:`~kldiv_cli.errors.InputError` line.

Per-column thresholds come from a TOML file (:func:`load_thresholds`), checked the same way.
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Union

from ..errors import InputError
from ..io.paths import read_limited
from ..text import clean, unicode_safe
from .drift_measures import CALIBRATED

#: Version 2: numeric bins closed at the reference's range with a bin below and one
#: above it; categories capped with an "other" bin; column roles. Version 3 adds the
#: ``text`` role (binned string lengths) and each column's value ``kind`` (for type
#: changes). Version 4 adds each binned column's ``sketch`` of its finite values (all of them
#: up to :data:`SKETCH_SIZE`, else that many evenly spaced order statistics) with their
#: count, mean and standard deviation, for the measures on raw values (Wasserstein,
#: Kolmogorov-Smirnov). Versions 2 and 3 are still read (no sketch: those measures are
#: not available; version 2 has no text role and no kinds). Version 1 profiles (open
#: outer bins, no roles) are refused with a hint to rebuild them.
PROFILE_VERSION = 4
READ_VERSIONS = (2, 3, 4)
#: The most values a profile keeps of a binned column (``ks_2samp`` is exact up to this).
SKETCH_SIZE = 10_000
#: The classes of values a column holds (``jobs.drift``'s type classes).
KINDS = ("integer", "float", "bool", "text", "datetime", "null", "other")
#: A profile or TOML file larger than this is not one kldiv wrote.
MAX_FILE_BYTES = 1 << 30

Category = Union[str, int, float, bool]


class Role(str, Enum):
    """What kldiv does with a column."""

    NUMERIC = "numeric"
    CATEGORICAL = "categorical"
    #: Free text (most values distinct): compared by its string lengths, binned as numbers.
    TEXT = "text"
    IDENTIFIER = "identifier"
    DATETIME = "datetime"
    SKIPPED = "skipped"

    @property
    def compared(self) -> bool:
        """Whether the column's distribution is compared (else only its missing share)."""
        return self in (Role.NUMERIC, Role.CATEGORICAL, Role.TEXT)

    @property
    def binned(self) -> bool:
        """Whether the column has numeric bins (edges): numbers, and text by its lengths."""
        return self in (Role.NUMERIC, Role.TEXT)


@dataclass(frozen=True)
class Calibration:
    """A column's measures between random halves of the reference (``--calibrate``), or
    between each of its consecutive time chunks and the whole (``--calibrate-by``): how
    many splits, the seed, the sides' mean sizes (values), each measure's mean and
    standard deviation, and ``by`` (``COL:PERIOD`` of the chunks; empty for halves)."""

    resamples: int
    seed: int
    sizes: tuple[float, float]
    metrics: dict[str, tuple[float, float]]
    by: str = ""

    def to_json(self) -> dict[str, Any]:
        doc = {
            "resamples": self.resamples,
            "seed": self.seed,
            "sizes": list(self.sizes),
            "metrics": {m: list(v) for m, v in self.metrics.items()},
        }
        return doc | ({"by": self.by} if self.by else {})


@dataclass(frozen=True)
class ColumnProfile:
    """One reference column.

    Numeric: ``edges`` ``[e_0 = min, e_1, ..., e_L-1]`` (strictly increasing, finite) and
    ``maximum``; ``counts`` has ``L + 2`` entries: values below the minimum, the ``L``
    bins ``[e_i, e_i+1)`` (the last is ``[e_L-1, maximum]``), values above the maximum.
    Categorical: ``categories`` (the kept ones), ``pooled`` (the rest, counted in one
    "other" bin), ``counts`` one per kept category plus one for "other" when ``pooled``
    is not empty. Text: numeric bins of the values' lengths in characters. Other roles
    hold no bins; ``reason`` says why. ``kind``: the class of the reference's values
    (``integer``, ``text``...; empty when unknown, in version 2 profiles).
    """

    name: str
    role: Role
    rows: int
    missing: int
    counts: tuple[int, ...] = ()
    edges: tuple[float, ...] = ()
    maximum: float | None = None
    categories: tuple[Category, ...] = ()
    pooled: tuple[Category, ...] = ()
    #: Timestamps compared as numbers (seconds since 1970-01-01 UTC).
    from_datetime: bool = False
    reason: str = ""
    kind: str = ""
    #: Binned columns (version 4): the finite values sorted, or :data:`SKETCH_SIZE` evenly
    #: spaced order statistics of them; how many finite values there are; their mean and
    #: (population) standard deviation. Empty/None when not known.
    sketch: tuple[float, ...] = ()
    finite: int = 0
    mean: float | None = None
    std: float | None = None
    #: ``kldiv profile --calibrate``: the measures between random halves of the reference.
    calibration: Calibration | None = None

    @property
    def values(self) -> int:
        """Non-missing values."""
        return self.rows - self.missing

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"role": self.role.value, "rows": self.rows, "missing": self.missing}
        if self.kind:
            doc["kind"] = self.kind
        if self.role.binned:
            doc.update(edges=list(self.edges), maximum=self.maximum, counts=list(self.counts))
            if self.from_datetime:
                doc["from_datetime"] = True
            if self.sketch:
                doc["sketch"] = {
                    "finite": self.finite,
                    "mean": self.mean,
                    "std": self.std,
                    "values": list(self.sketch),
                }
        elif self.role is Role.CATEGORICAL:
            doc.update(categories=list(self.categories), counts=list(self.counts))
            doc["pooled"] = list(self.pooled)
        if self.calibration is not None:
            doc["calibration"] = self.calibration.to_json()
        if self.reason:
            doc["reason"] = self.reason
        return doc


@dataclass(frozen=True)
class Profile:
    """Every profiled column of a reference, with the settings that made the bins."""

    source: str
    rows: int
    bins: int
    binning: str
    max_categories: int
    datetime: str
    columns: tuple[ColumnProfile, ...] = field(default_factory=tuple)
    #: Every column of the reference table, profiled or not (``--columns``/``--exclude``
    #: at profile time), so a later check tells a new column from one left out; empty
    #: in version 2 profiles.
    table_columns: tuple[str, ...] = ()

    def column(self, name: str) -> ColumnProfile:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(name)

    def to_json(self) -> dict[str, Any]:
        return {
            "kldiv_profile": PROFILE_VERSION,
            # A folder whose name is not UTF-8: shown as \xff, so the file stays UTF-8.
            "source": unicode_safe(self.source),
            "rows": self.rows,
            "bins": self.bins,
            "binning": self.binning,
            "max_categories": self.max_categories,
            "datetime": self.datetime,
            "table_columns": list(self.table_columns),
            "columns": {c.name: c.to_json() for c in self.columns},
        }

    def dumps(self) -> str:
        return json.dumps(self.to_json(), indent=1, allow_nan=False) + "\n"


def category_key(value: Category) -> tuple[str, Any]:
    """How categories compare: numbers by value (``1`` and ``1.0`` are one category),
    booleans apart from numbers, strings as they are."""
    if isinstance(value, bool):
        return ("b", value)
    if isinstance(value, (int, float)):
        return ("n", value)
    return ("s", value)


# ----------------------------------------------------------------- loading, checked


class _Invalid(Exception):
    """A schema violation; becomes an InputError naming the file."""


def _need(ok: bool, message: str) -> None:
    if not ok:
        raise _Invalid(message)


def _int(doc: dict[str, Any], key: str, where: str, minimum: int = 0) -> int:
    value = doc.get(key)
    if not (isinstance(value, int) and not isinstance(value, bool) and value >= minimum):
        raise _Invalid(f"{where}: {key!r} must be an integer >= {minimum}")
    return int(value)


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _count_list(doc: dict[str, Any], where: str, length: int, total: int) -> tuple[int, ...]:
    counts = doc.get("counts")
    _need(isinstance(counts, list), f"{where}: 'counts' must be a list")
    assert isinstance(counts, list)
    _need(
        len(counts) == length,
        f"{where}: 'counts' has {len(counts)} entries for {length} bins",
    )
    _need(
        all(isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in counts),
        f"{where}: counts must be integers >= 0",
    )
    _need(sum(counts) == total, f"{where}: counts add up to {sum(counts)}, not {total} values")
    return tuple(counts)


def _category_list(doc: dict[str, Any], key: str, where: str) -> tuple[Category, ...]:
    values = doc.get(key, [])
    _need(isinstance(values, list), f"{where}: {key!r} must be a list")
    _need(
        all(isinstance(v, (str, bool)) or _finite(v) for v in values),
        f"{where}: {key!r} must hold strings, booleans or finite numbers",
    )
    return tuple(values)


def _sketch(doc: Any, where: str, values: int) -> dict[str, Any]:
    """A binned column's ``sketch`` (absent: none): ``finite`` (<= the column's values),
    ``mean`` and ``std`` (>= 0) finite numbers, ``values`` 1 to ``min(finite,
    SKETCH_SIZE)`` finite numbers in increasing order, all of them when ``finite`` is at
    most :data:`SKETCH_SIZE`."""
    if doc is None:
        return {}
    _need(isinstance(doc, dict), f"{where}: 'sketch' must be an object")
    finite = _int(doc, "finite", f"{where} sketch", minimum=1)
    _need(finite <= values, f"{where}: the sketch has more finite values than the column")
    mean, std, kept = doc.get("mean"), doc.get("std"), doc.get("values")
    _need(_finite(mean) and _finite(std) and std >= 0, f"{where}: bad sketch mean or std")
    _need(
        isinstance(kept, list) and all(_finite(v) for v in kept),
        f"{where}: the sketch's 'values' must be a list of finite numbers",
    )
    assert isinstance(kept, list)
    _need(
        len(kept) == min(finite, SKETCH_SIZE),
        f"{where}: the sketch holds {len(kept)} values, not {min(finite, SKETCH_SIZE)}",
    )
    _need(all(a <= b for a, b in zip(kept, kept[1:])), f"{where}: the sketch is not sorted")
    return {
        "sketch": tuple(float(v) for v in kept),
        "finite": finite,
        "mean": float(mean),
        "std": float(std),
    }


def _calibration(doc: Any, where: str) -> Calibration | None:
    """A column's ``calibration`` (absent: None): ``resamples`` >= 2, an integer ``seed``,
    two positive ``sizes``, and ``metrics`` naming known measures, each ``[mean, std]``
    finite and >= 0."""
    if doc is None:
        return None
    where = f"{where} calibration"
    _need(isinstance(doc, dict), f"{where} must be an object")
    resamples = _int(doc, "resamples", where, minimum=2)
    seed = doc.get("seed")
    _need(
        isinstance(seed, int) and not isinstance(seed, bool), f"{where}: 'seed' must be an integer"
    )
    sizes = doc.get("sizes")
    _need(
        isinstance(sizes, list) and len(sizes) == 2 and all(_finite(v) and v > 0 for v in sizes),
        f"{where}: 'sizes' must be two numbers > 0",
    )
    metrics = doc.get("metrics")
    _need(isinstance(metrics, dict), f"{where}: 'metrics' must be an object")
    assert isinstance(metrics, dict) and isinstance(sizes, list)
    for m, v in metrics.items():
        _need(m in CALIBRATED, f"{where}: unknown measure {clean(m)!r}; known: {CALIBRATED}")
        _need(
            isinstance(v, list) and len(v) == 2 and all(_finite(x) and x >= 0 for x in v),
            f"{where}: {m} must be [mean, std], numbers >= 0",
        )
    by = doc.get("by", "")
    _need(isinstance(by, str) and len(by) < 1000, f"{where}: 'by' must be COL:PERIOD text")
    return Calibration(
        resamples,
        int(seed),
        (float(sizes[0]), float(sizes[1])),
        {m: (float(v[0]), float(v[1])) for m, v in metrics.items()},
        str(by),
    )


def _column(name: str, doc: Any, version: int) -> ColumnProfile:
    where = f"column {clean(name)!r}"
    _need(isinstance(doc, dict), f"{where} must be an object")
    role_name = doc.get("role")
    known = [r.value for r in Role if version >= 3 or r is not Role.TEXT]
    _need(role_name in known, f"{where}: unknown role {clean(role_name)!r}; known: {known}")
    role = Role(role_name)
    rows = _int(doc, "rows", where)
    missing = _int(doc, "missing", where)
    _need(missing <= rows, f"{where}: more missing values than rows")
    reason = doc.get("reason", "")
    _need(isinstance(reason, str), f"{where}: 'reason' must be a string")
    kind = doc.get("kind", "")
    _need(kind == "" or kind in KINDS, f"{where}: unknown kind {clean(kind)!r}; known: {KINDS}")
    values = rows - missing
    if role.binned:
        edges = doc.get("edges")
        _need(
            isinstance(edges, list) and len(edges) >= 1 and all(_finite(e) for e in edges),
            f"{where}: 'edges' must be a non-empty list of finite numbers",
        )
        assert isinstance(edges, list)
        _need(
            all(a < b for a, b in zip(edges, edges[1:])),
            f"{where}: 'edges' must be strictly increasing",
        )
        maximum = doc.get("maximum")
        _need(
            _finite(maximum) and maximum >= edges[-1],
            f"{where}: 'maximum' must be a finite number >= the last edge",
        )
        from_dt = doc.get("from_datetime", False)
        _need(isinstance(from_dt, bool), f"{where}: 'from_datetime' must be true or false")
        sketch = _sketch(doc.get("sketch"), where, values) if version >= 4 else {}
        return ColumnProfile(
            name,
            role,
            rows,
            missing,
            _count_list(doc, where, len(edges) + 2, values),
            edges=tuple(float(e) for e in edges),
            maximum=float(maximum),
            from_datetime=from_dt,
            reason=reason,
            kind=kind,
            calibration=_calibration(doc.get("calibration"), where) if version >= 4 else None,
            **sketch,
        )
    if role is Role.CATEGORICAL:
        categories = _category_list(doc, "categories", where)
        pooled = _category_list(doc, "pooled", where)
        keys = [category_key(c) for c in categories + pooled]
        _need(len(set(keys)) == len(keys), f"{where}: categories must be distinct")
        _need(bool(categories), f"{where}: 'categories' must not be empty")
        length = len(categories) + (1 if pooled else 0)
        return ColumnProfile(
            name,
            role,
            rows,
            missing,
            _count_list(doc, where, length, values),
            categories=categories,
            pooled=pooled,
            reason=reason,
            kind=kind,
            calibration=_calibration(doc.get("calibration"), where) if version >= 4 else None,
        )
    return ColumnProfile(name, role, rows, missing, reason=reason, kind=kind)


def profile_from_json(doc: Any) -> Profile:
    """A :class:`Profile` from parsed JSON, every field and invariant checked."""
    _need(isinstance(doc, dict), "the top level must be an object")
    version = doc.get("kldiv_profile")
    _need(version is not None, "no 'kldiv_profile' version (make one with 'kldiv profile')")
    _need(
        version in READ_VERSIONS and not isinstance(version, bool),
        f"version {clean(version)!r} is not {PROFILE_VERSION}; rebuild it with 'kldiv profile'",
    )
    source = doc.get("source", "")
    _need(isinstance(source, str), "'source' must be a string")
    rows = _int(doc, "rows", "profile")
    bins = _int(doc, "bins", "profile", minimum=2)
    max_categories = _int(doc, "max_categories", "profile", minimum=1)
    binning = doc.get("binning")
    _need(binning in ("quantile", "uniform"), "'binning' must be quantile or uniform")
    datetime = doc.get("datetime")
    _need(datetime in ("skip", "numeric"), "'datetime' must be skip or numeric")
    columns = doc.get("columns")
    _need(isinstance(columns, dict) and bool(columns), "'columns' must be a non-empty object")
    assert isinstance(columns, dict)
    parsed = tuple(_column(name, c, version) for name, c in columns.items())
    _need(all(c.rows == rows for c in parsed), "every column must have the profile's rows")
    table_columns = doc.get("table_columns", [])
    _need(
        isinstance(table_columns, list) and all(isinstance(n, str) for n in table_columns),
        "'table_columns' must be a list of names",
    )
    _need(
        not table_columns or set(columns) <= set(table_columns),
        "'table_columns' must name every profiled column",
    )
    return Profile(
        source=source,
        rows=rows,
        bins=bins,
        binning=binning,
        max_categories=max_categories,
        datetime=datetime,
        columns=parsed,
        table_columns=tuple(table_columns),
    )


def _text(path: str, raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(path, f"is not UTF-8 text (byte {exc.start})") from None


def load_profile(path: str) -> Profile:
    """Read and check a profile file (see the module's docstring for what is checked)."""
    text = _text(path, read_limited(path, MAX_FILE_BYTES))
    try:
        doc = json.loads(text)
    except RecursionError:
        raise InputError(path, "is not a valid kldiv profile (nested too deeply)") from None
    except ValueError as exc:
        message = clean(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        raise InputError(path, f"is not JSON ({message})") from None
    if not isinstance(doc, dict) or "kldiv_profile" not in doc:
        raise InputError(path, "is not a kldiv profile (make one with 'kldiv profile')")
    try:
        return profile_from_json(doc)
    except _Invalid as exc:
        raise InputError(path, f"is not a valid kldiv profile: {exc}") from None


@dataclass(frozen=True)
class Thresholds:
    """Per-column thresholds from a TOML file: ``default = X`` and ``[thresholds]``."""

    default: float | None = None
    columns: dict[str, float] = field(default_factory=dict)

    def for_column(self, name: str, fallback: float) -> float:
        if name in self.columns:
            return self.columns[name]
        return fallback if self.default is None else self.default


def _threshold(value: Any) -> bool:
    return (
        isinstance(value, (int, float)) and not isinstance(value, bool) and not (value < 0)
    ) and not (isinstance(value, float) and math.isnan(value))


def load_thresholds(path: str) -> Thresholds:
    """A TOML file: an optional top-level ``default = X`` and a ``[thresholds]`` table of
    ``column = X``; every X a number >= 0 (``inf`` turns a column's gate off)."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # the same module, a dependency before Python 3.11
        import tomli as tomllib

    text = _text(path, read_limited(path, MAX_FILE_BYTES))

    def parse_float(literal: str) -> float:
        # TOML reads 1e400 as inf; only a written inf turns a gate off.
        value = float(literal)
        if math.isinf(value) and "inf" not in literal:
            raise InputError(path, f"{clean(literal)} is too large for a float64")
        return value

    try:
        doc = tomllib.loads(text, parse_float=parse_float)
    except RecursionError:
        raise InputError(path, "is not valid TOML (nested too deeply)") from None
    except tomllib.TOMLDecodeError as exc:
        raise InputError(path, f"is not valid TOML ({clean(str(exc))})") from None
    unknown = [k for k in doc if k not in ("default", "thresholds")]
    if unknown:
        raise InputError(
            path, f"unknown key {clean(unknown[0])!r}; expected default and [thresholds]"
        )
    default = doc.get("default")
    if default is not None and not _threshold(default):
        raise InputError(path, f"default must be a number >= 0, got {clean(repr(default))}")
    table = doc.get("thresholds", {})
    if not isinstance(table, dict):
        raise InputError(path, "thresholds must be a table: [thresholds] then column = number")
    for name, value in table.items():
        if not _threshold(value):
            raise InputError(
                path,
                f"threshold for {clean(name)!r} must be a number >= 0, got {clean(repr(value))}",
            )
    return Thresholds(
        default=None if default is None else float(default),
        columns={str(k): float(v) for k, v in table.items()},
    )
