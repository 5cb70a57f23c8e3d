"""Make the drift example of a production table: ``users_reference.parquet`` (January) and
``users_current/`` (four daily Parquet partitions of February).

What moved, on purpose: ``plan`` (more "pro"), ``avg_session_min`` (0 % -> 10 % missing),
``device`` (a new category ``smart_tv``), ``signup_ts`` (a month later: compared only with
``--datetime numeric``); ``user_id`` is unique (an identifier). Run from anywhere:

    python sample_data/drift/make_users.py
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

HERE = Path(__file__).resolve().parent


def users(rows: int, current: bool, rng: np.random.Generator, first_id: int) -> pa.Table:
    start = np.datetime64("2026-02-01" if current else "2026-01-01", "s")
    session = rng.gamma(2.0, 6.0, rows).round(2)
    if current:
        session[rng.random(rows) < 0.10] = np.nan
    devices = ["ios", "android", "web", "smart_tv"] if current else ["ios", "android", "web"]
    device_p = [0.36, 0.34, 0.18, 0.12] if current else [0.4, 0.38, 0.22]
    plan_p = [0.4, 0.3, 0.3] if current else [0.6, 0.3, 0.1]
    return pa.table(
        {
            "user_id": [f"u{first_id + i:07d}" for i in range(rows)],
            "signup_ts": pa.array(start + rng.integers(0, 27 * 86400, rows)),
            "age": rng.normal(38, 11, rows).round().clip(16, 90).astype(np.int64),
            "plan": rng.choice(["free", "plus", "pro"], rows, p=plan_p),
            "device": rng.choice(devices, rows, p=device_p),
            "avg_session_min": session,
            "rating": rng.integers(1, 6, rows),
            "active": rng.random(rows) < 0.7,
        }
    )


def main() -> None:
    rng = np.random.default_rng(12)
    pq.write_table(users(4000, False, rng, 0), HERE / "users_reference.parquet")
    days = HERE / "users_current"
    days.mkdir(exist_ok=True)
    for day in range(1, 5):
        table = users(1000, True, rng, 10_000 * day)
        pq.write_table(table, days / f"day={day:02d}.parquet")


if __name__ == "__main__":
    main()
