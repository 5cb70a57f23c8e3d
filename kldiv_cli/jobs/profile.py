"""``kldiv profile``: a reference's roles, bins and counts, stored for later drift checks
(``kldiv drift PROFILE CURRENT`` gives the results of the raw reference), with each
column's learned thresholds on request (``--calibrate``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from ..errors import InputError
from ..io.drift_tables import Table, expand, open_table
from ..text import clean
from .drift_calibrate import calibrate, calibrate_chunks
from .drift_groups import window_groups
from .drift_profile import Calibration, ColumnProfile, Profile
from .drift_request import ProfileRequest
from .drift_roles import Profiler, build_profile
from .drift_values import Column

__all__ = ["Profile", "ProfileRequest", "run_profile"]

#: The smoothing of the calibration's measures (drift's default --epsilon).
EPSILON = 1e-4


def run_profile(
    request: ProfileRequest, stdin: bytes | None = None, profiler: Profiler | None = None
) -> Profile:
    """``kldiv profile``: the reference's bins and counts, for later drift checks
    (``profiler``: see :func:`build_profile`)."""
    request.validate()
    table = open_table(request.reference, request.delimiter, stdin, request.key, "--key")
    label, _ = expand(request.reference)
    columns = tuple(build_profile(table, request.rules, profiler=profiler))
    if request.calibrate:
        learn = _calibrator(request, table)
        columns = tuple(
            replace(c, calibration=learn(c, Column.read(table, c.name))) if c.role.compared else c
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


def _calibrator(
    request: ProfileRequest, table: Table
) -> Callable[[ColumnProfile, Column], Calibration | None]:
    """How a column's thresholds are learned: random halves (``--calibrate N``), or the
    last N time chunks of ``--calibrate-by COL:PERIOD`` each against the whole reference."""
    by = request.calibrate_by
    if by is None or by.period is None:
        return lambda ref, col: calibrate(
            ref, col, request.calibrate, request.calibrate_seed, EPSILON
        )
    if by.column not in table.column_names:
        raise InputError(table.label, f"has no column {clean(by.column)!r} to calibrate by")
    groups = window_groups(Column.read(table, by.column), by.period)
    text = f"{by.column}:{by.period}"

    def learn(ref: ColumnProfile, col: Column) -> Calibration | None:
        if ref.name == by.column:
            return None
        chunks = groups.split(col)[-request.calibrate :]
        return calibrate_chunks(ref, chunks, EPSILON, text)

    return learn
