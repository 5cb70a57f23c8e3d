"""``--engine dask`` for ``drift`` and ``profile``: a Parquet reference's numeric columns
profiled by tasks, with the local profile's bits.

A partition is one row group of one column (:class:`.quantiles.ColumnPart`, files in
sorted order). For an integer or floating-point column (in the first file's schema,
not dictionary-encoded) the client runs:

1. a **census** task per partition (:func:`census`): its rows, nulls, missing values
   (NaN too, for floats), its distinct values with their counts when it has at most
   :data:`~kldiv_cli.jobs.drift_values.NUMERIC_CATEGORIES` of them, and the valid values at
   the rows an identifier check samples (integers). Added on the client, these decide
   the column's role by the same rules as ``jobs.drift_roles.profile_column``: a partition
   with more distinct values than a category column may hold means the column has
   more too, so the merged counts are exact whenever they are needed. The census
   also sketches the finite values (:func:`.quantiles.sketch`), the first pass of
2. :func:`.quantiles.numeric_bins` for a numeric column: exact quantile (or
   equal-width) edges and exact integer bin counts, added across partitions. A
   partition is thus read three times (census, bracket cut, counts).

Everything else (text, booleans, dates, decimals, dictionary-encoded columns,
``--categorical`` and ``--skip`` columns) is profiled on the client as with
``--engine local``, a column at a time; so is the current data of ``drift``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from ..io.drift_tables import is_profile
from ..jobs.drift_profile import ColumnProfile, Role
from ..jobs.drift_request import ColumnRules
from ..jobs.drift_roles import Profiler, profile_categorical
from ..jobs.drift_values import (
    ALL_MISSING,
    ID_SAMPLE,
    NO_FINITE,
    NUMERIC_CATEGORIES,
    Column,
    few,
    row_key_reason,
)
from . import quantiles as Q
from .quantiles import ColumnPart, Runner


@dataclass(frozen=True)
class Census:
    """What one partition tells about its column (see the module's docstring).

    ``distinct``/``counts`` are None when the partition holds more than
    :data:`NUMERIC_CATEGORIES` distinct values; ``sample`` holds the valid values at
    the sampled rows and ``sample_nulls`` the nulls among them; ``sketch`` sketches
    the finite values, for :func:`.quantiles.numeric_bins`.
    """

    rows: int
    nulls: int
    missing: int
    distinct: np.ndarray | None
    counts: np.ndarray | None
    sample: np.ndarray
    sample_nulls: int
    sketch: Q.Summary


@dataclass(frozen=True)
class _Census:
    """:func:`census` as a picklable callable for a runner."""

    kind: str

    def __call__(self, item: tuple[ColumnPart, np.ndarray]) -> Census:
        return census(Q.read_part(item[0]), self.kind, item[1])


def census(column: Any, kind: str, rows: np.ndarray) -> Census:
    """The :class:`Census` of one partition (a pyarrow array) of an ``integer`` or
    ``float`` column; ``rows``: the partition's rows the identifier check samples.

    Floats are compared as float64 with NaN missing, as ``jobs.drift`` reads them;
    integers keep their type (categories are then Python ints, as Arrow gives them).
    """
    from ..io.columns import array_values

    array = column.combine_chunks() if hasattr(column, "combine_chunks") else column
    sample = array.take(rows)
    sample_nulls = sample.null_count
    if kind == "float":
        values = array_values(array).astype(np.float64, copy=False)
        present = values[~np.isnan(values)]
        missing = values.size - present.size
        finite = present[np.isfinite(present)]
    else:
        present = array_values(array.drop_null())
        missing = array.null_count
        finite = present.astype(np.float64)
    distinct, counts = _distinct(present)
    return Census(
        len(array),
        array.null_count,
        missing,
        distinct,
        counts,
        array_values(sample.drop_null()),
        sample_nulls,
        Q.sketch(finite),
    )


def _distinct(values: np.ndarray) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Distinct values and counts, or (None, None) beyond :data:`NUMERIC_CATEGORIES`
    (seen on the first 1,000 values first, as ``jobs.drift`` does, to spare a sort)."""
    if np.unique(values[:1000]).size > NUMERIC_CATEGORIES:
        return None, None
    distinct, counts = np.unique(values, return_counts=True)
    if distinct.size > NUMERIC_CATEGORIES:
        return None, None
    return distinct, counts.astype(np.int64)


def merge_distinct(parts: Sequence[Census]) -> tuple[np.ndarray, np.ndarray] | None:
    """The column's distinct values (sorted) and their counts added across partitions;
    None when it has more than :data:`NUMERIC_CATEGORIES` (a partition has, or all do)."""
    if any(c.distinct is None or c.counts is None for c in parts):
        return None
    values = np.concatenate([c.distinct for c in parts if c.distinct is not None])
    distinct, inverse = np.unique(values, return_inverse=True)
    if distinct.size > NUMERIC_CATEGORIES:
        return None
    counts = np.zeros(distinct.size, dtype=np.int64)
    np.add.at(counts, inverse, np.concatenate([c.counts for c in parts if c.counts is not None]))
    return distinct, counts


def _kind(arrow_type: Any) -> str | None:
    """``integer`` or ``float`` for the types tasks profile; None for the client's."""
    import pyarrow as pa

    if pa.types.is_integer(arrow_type):
        return "integer"
    if pa.types.is_floating(arrow_type):
        return "float"
    return None


class TaskProfiler:
    """A :data:`~kldiv_cli.jobs.drift_roles.Profiler` that profiles the numeric columns of
    Parquet ``files`` by tasks run through ``run`` (``engines.dask.runner(client)``,
    or ``quantiles._map`` in one process)."""

    def __init__(
        self, files: Sequence[str], run: Runner, storage: Mapping[str, str] | None = None
    ) -> None:
        import pyarrow.parquet as pq

        from ..io import fs

        self.storage = tuple(sorted((fs.current_options() if storage is None else storage).items()))
        self.run = run
        self.groups: list[tuple[str, list[int]]] = []
        self.schemas: list[Any] = []
        for path in files:  # the footers only, each read once
            with fs.open_input(path, dict(self.storage)) as f:
                parquet = pq.ParquetFile(f)
                meta = parquet.metadata
                self.groups.append(
                    (path, [meta.row_group(g).num_rows for g in range(meta.num_row_groups)])
                )
                self.schemas.append(parquet.schema_arrow)

    def _column_kind(self, name: str) -> str | None:
        """The column's kind when every file stores it as the same integer or float
        type; None otherwise (a file without it, or types the client's read promotes)."""
        types = set()
        for schema in self.schemas:
            index = schema.get_field_index(name)
            if index < 0:
                return None
            types.add(schema.field(index).type)
        return _kind(types.pop()) if len(types) == 1 else None

    def __call__(self, name: str, rules: ColumnRules) -> ColumnProfile | None:
        from dataclasses import replace

        kind = self._column_kind(name)
        found = self._profile(name, rules, kind)
        return None if found is None else replace(found, kind=kind or "")

    def _profile(self, name: str, rules: ColumnRules, kind: str | None) -> ColumnProfile | None:
        role = rules.override(name)
        if kind is None or role in (Role.SKIPPED, Role.CATEGORICAL):
            return None
        parts: list[ColumnPart] = []
        starts: list[int] = []
        rows = 0
        for f, sizes in self.groups:
            for g, n in enumerate(sizes):
                parts.append(ColumnPart(f, g, name, self.storage))
                starts.append(rows)
                rows += n
        sampled = self._sample(rows) if kind == "integer" and role is None else np.empty(0, int)
        ends = [*starts[1:], rows]
        items = [
            (p, sampled[(sampled >= a) & (sampled < z)] - a) for p, a, z in zip(parts, starts, ends)
        ]
        found: list[Census] = self.run(_Census(kind), items)
        nulls = sum(c.nulls for c in found)
        missing = sum(c.missing for c in found)
        col = Column("", name, None, kind, rows, nulls)
        if rows - missing == 0:
            return ColumnProfile(name, Role.SKIPPED, rows, rows, reason=ALL_MISSING)
        if role is Role.NUMERIC:
            return self._numeric(parts, found, col, missing, rules)
        merged = merge_distinct(found)
        present = rows - missing
        if kind == "float":
            if merged is not None and few(merged[0].size, present):
                if np.isfinite(merged[0]).all():
                    return profile_categorical(col, merged[0].tolist(), merged[1], missing, rules)
            return self._numeric(parts, found, col, missing, rules)
        sample = np.concatenate([c.sample for c in found])
        distinct = int(np.unique(sample).size)
        looked = sampled.size - sum(c.sample_nulls for c in found)
        # The key rule wants no missing value: the sampled rows held one when some were null.
        unique = looked == sampled.size and distinct == looked
        key = row_key_reason(name, sample) if unique else None
        if key is not None:
            return ColumnProfile(name, Role.IDENTIFIER, rows, nulls, reason=key)
        if not few(distinct, looked) or merged is None or not few(merged[0].size, present):
            return self._numeric(parts, found, col, missing, rules)
        return profile_categorical(col, merged[0].tolist(), merged[1], nulls, rules)

    @staticmethod
    def _sample(rows: int) -> np.ndarray:
        """The rows the identifier check looks at (``jobs.drift_values.sampled_values``)."""
        if rows > ID_SAMPLE:
            return np.linspace(0, rows - 1, ID_SAMPLE).astype(np.int64)
        return np.arange(rows, dtype=np.int64)

    def _numeric(
        self,
        parts: list[ColumnPart],
        found: list[Census],
        col: Column,
        missing: int,
        rules: ColumnRules,
    ) -> ColumnProfile:
        sketches = [c.sketch for c in found]
        got = Q.numeric_bins(parts, Q.read_present, rules.bins, rules.binning, self.run, sketches)
        if got is None:
            return ColumnProfile(col.name, Role.SKIPPED, col.rows, missing, reason=NO_FINITE)
        edges, maximum, counts = got
        return ColumnProfile(
            col.name,
            Role.NUMERIC,
            col.rows,
            missing,
            counts=tuple(int(c) for c in counts),
            edges=tuple(float(e) for e in edges),
            maximum=float(maximum),
        )


def reference_files(paths: Sequence[str]) -> list[str] | None:
    """The Parquet files of a reference that tasks can read (a file, a folder, a glob,
    a list, local or in object storage); None for any other reference (stdin, CSV,
    ``.npy``, Arrow, a profile)."""
    from ..io import fs
    from ..io.drift_tables import expand
    from ..io.formats import is_parquet

    if "-" in paths or is_profile(paths):
        return None
    _, files = expand(paths)
    if files is not None:
        return files
    path = paths[0]
    parquet = is_parquet(path)
    return [path] if parquet and (fs.is_remote(path) or os.path.isfile(path)) else None


@contextmanager
def profiler(
    reference: Sequence[str],
    scheduler: str | None = None,
    scheduler_file: str | None = None,
    workers: int | None = None,
    *,
    timeout: float | None = None,
    note: Callable[[str], None] | None = None,
) -> Iterator[Profiler | None]:
    """The profiler ``--engine dask`` gives ``run_drift``/``run_profile``: tasks on the
    cluster for a Parquet reference, None (after a note) for any other reference,
    which is read on this machine without starting a cluster."""
    from ..errors import UsageError
    from ..io import fs
    from ..io.drift_tables import expand
    from ..text import clean
    from .dask import INSTALL_HINT, Cluster, connect, require_distributed, runner

    cluster = Cluster(scheduler, scheduler_file, workers, fs.current_options())
    if timeout is not None:
        cluster = replace(cluster, timeout=timeout)
    cluster.validate()
    require_distributed()
    try:
        import datasketches  # noqa: F401
    except ImportError:
        raise UsageError(
            f"--engine dask needs the KLL sketches of datasketches for drift: {INSTALL_HINT}"
        ) from None
    files = reference_files(reference)
    if files is None:
        # A reference that does not exist gets the local engine's error, without a note.
        if note is not None and any(
            p == "-" or fs.is_remote(p) or os.path.exists(p) for p in reference
        ):
            label = expand(reference)[0] if "-" not in reference else "<stdin>"
            what = "a profile" if is_profile(reference) else "not Parquet"
            note(
                f"--engine dask: the reference {clean(label)} is {what}; "
                "it is read on this machine (no cluster started)"
            )
        yield None
        return
    with connect(cluster, note) as client:
        yield TaskProfiler(files, runner(client), cluster.storage)
