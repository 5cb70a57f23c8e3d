"""Event tables over time and by segment, with known shifts in known windows/segments,
generated here (no downloads), for ``tests/test_drift_windows.py`` and
``benchmarks/bench_drift_wide.py``.

:func:`events` gives a reference (``days`` days before the current period) and a current
table of ``current_days`` days of web-shop events, each row:

* ``event_id``: unique increasing integers (a row key: never a drift column);
* ``ts``: a time-zone-aware timestamp (``Europe/Paris`` by default: local days differ
  from UTC days by an hour or two), at random times of day; about 1 % missing; the
  current table has a **gap** (no rows at all on day ``gap_day``) and one **small day**
  (``small_day``: ``small_rows`` rows only);
* ``amount``: log-normal euros, 2 % NaN; **shifted** (times ``amount_factor``) on the
  ``shifted_days`` of the current table, and in the ``shifted_segment`` country on
  every day of the segmented table;
* ``country``: ``FR``, ``DE``, ``IT``, ``ES`` and rare ones (``LU``, ``MT``: well below
  1 %), 1 % missing;
* ``device``: ``mobile``/``desktop``/``tablet``; on the shifted days ``tablet`` takes half
  of ``desktop``'s share;
* ``items``: small counts (a categorical integer column);
* ``session_s``: seconds, gamma-distributed, unchanged everywhere.

Every random draw comes from ``numpy.random.default_rng(seed)``.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

DAY = 86_400
#: 2026-11-02 00:00 Europe/Paris (23:00 UTC the day before): a Monday.
START = 1_793_574_000
COUNTRIES = ["FR", "DE", "IT", "ES", "LU", "MT"]
COUNTRY_P = [0.42, 0.3, 0.15, 0.125, 0.004, 0.001]
DEVICES = ["mobile", "desktop", "tablet"]


def _rows(
    rng: np.random.Generator,
    day_rows: list[int],
    first_day: float,
    shifted: set[int],
    amount_factor: float,
    shifted_segment: str | None,
    first_id: int,
) -> pa.Table:
    days = np.repeat(np.arange(len(day_rows)), day_rows)
    n = days.size
    seconds = np.sort(first_day + days * DAY + rng.uniform(0, DAY, n))
    country = rng.choice(COUNTRIES, size=n, p=np.array(COUNTRY_P) / sum(COUNTRY_P))
    on_shift = np.isin(days, list(shifted))
    if shifted_segment is not None:
        on_shift = on_shift | (country == shifted_segment)
    amount = rng.lognormal(3.0, 0.6, n) * np.where(on_shift, amount_factor, 1.0)
    amount[rng.random(n) < 0.02] = np.nan
    device_p = np.where(on_shift[:, None], [0.55, 0.15, 0.30], [0.55, 0.35, 0.10])
    device = np.array(DEVICES)[(rng.random(n)[:, None] > np.cumsum(device_p, axis=1)).sum(1)]
    ts = pa.array((seconds * 1e6).astype(np.int64), pa.timestamp("us", tz="Europe/Paris"))
    ts = pc.if_else(pa.array(rng.random(n) < 0.01), pa.scalar(None, ts.type), ts)
    missing_country = rng.random(n) < 0.01
    return pa.table(
        {
            "event_id": pa.array(np.arange(first_id, first_id + n, dtype=np.int64)),
            "ts": ts,
            "amount": pa.array(np.round(amount, 2)),
            "country": pa.array(country.tolist(), mask=missing_country),
            "device": pa.array(device.tolist()),
            "items": pa.array(rng.poisson(1.5, n).astype(np.int64) + 1),
            "session_s": pa.array(np.round(rng.gamma(2.0, 90.0, n), 1)),
        }
    )


def events(
    seed: int = 0,
    *,
    days: int = 14,
    current_days: int = 7,
    rows_per_day: int = 1200,
    shifted_days: tuple[int, ...] = (3,),
    amount_factor: float = 1.6,
    gap_day: int | None = 5,
    small_day: int | None = 6,
    small_rows: int = 25,
    shifted_segment: str | None = None,
) -> tuple[pa.Table, pa.Table]:
    """(reference, current): ``days`` unshifted days, then ``current_days`` days with
    the shifts above (day numbers count from the current table's first day)."""
    rng = np.random.default_rng(seed)
    reference = _rows(rng, [rows_per_day] * days, START - days * DAY, set(), 1.0, None, first_id=1)
    sizes = [
        0 if d == gap_day else small_rows if d == small_day else rows_per_day
        for d in range(current_days)
    ]
    current = _rows(
        rng,
        sizes,
        START,
        set(shifted_days),
        amount_factor,
        shifted_segment,
        first_id=reference.num_rows + 1,
    )
    return reference, current


def window_labels(current_days: int = 7, skip: tuple[int | None, ...] = (5,)) -> list[str]:
    """The ``--window ts:1d`` labels of the current table's days (local days)."""
    import datetime as dt

    first = dt.date(2026, 11, 2)
    return [
        (first + dt.timedelta(days=d)).isoformat() for d in range(current_days) if d not in skip
    ]
