"""kldiv drift against reading the same two Parquet files with pyarrow, side by side.

Two "production" tables (a unique user id, a signup timestamp, numbers with NaN, text
categories with a new one, booleans: 13 columns) are written once, then timed, best of
``--repeat``:

* ``read``: ``pyarrow.parquet.read_table`` of both files (the peer);
* ``drift job``: :func:`kldiv_cli.jobs.drift.run_drift` in this process;
* ``drift CLI`` and ``python + pyarrow read``: the installed command and a bare Python
  that imports pyarrow and reads both files, each as a fresh process.

    python benchmarks/bench_drift.py                 # 200,000 rows
    python benchmarks/bench_drift.py --rows 20000    # a quick check
    python benchmarks/bench_drift.py --wide          # 10,000 columns x 20 rows too
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq


def production_pair(rows: int, seed: int = 0) -> tuple[pa.Table, pa.Table]:
    """A reference and a current table as issue 12 describes them."""
    rng = np.random.default_rng(seed)

    def side(current: bool) -> pa.Table:
        n = rows
        start = np.datetime64("2026-02-01" if current else "2026-01-01", "s")
        seconds = rng.integers(0, 28 * 86400, n)
        session = rng.gamma(2.0, 6.0, n)
        if current:
            session[rng.random(n) < 0.10] = np.nan
        devices = ["ios", "android", "web", "tablet"] + (["smart_tv"] if current else [])
        weights = [0.36, 0.33, 0.18, 0.05, 0.08] if current else [0.4, 0.35, 0.2, 0.05]
        return pa.table(
            {
                "user_id": pa.array(
                    [f"u{i:09d}" for i in rng.permutation(n) + (10**8 if current else 0)]
                ),
                "signup_ts": pa.array(start + seconds),
                "age": rng.normal(38 + (3 if current else 0), 11, n).round(),
                "income": rng.lognormal(10.5, 0.6, n),
                "avg_session_min": session,
                "pages": rng.poisson(6, n),
                "plan": rng.choice(["free", "plus", "pro"], n, p=[0.6, 0.3, 0.1]),
                "device": rng.choice(devices, n, p=weights),
                "country": rng.choice([f"c{i:02d}" for i in range(40)], n),
                "rating": rng.integers(1, 6, n),
                "active": rng.random(n) < 0.7,
                "churn_score": rng.beta(2, 5, n),
                "referrals": rng.geometric(0.5, n) - 1,
            }
        )

    return side(False), side(True)


def best(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--wide", action="store_true", help="also 10,000 columns x 20 rows")
    args = parser.parse_args()

    from kldiv_cli.jobs.drift import DriftRequest, run_drift

    with tempfile.TemporaryDirectory() as tmp:
        ref, cur = Path(tmp, "reference.parquet"), Path(tmp, "current.parquet")
        a, b = production_pair(args.rows)
        pq.write_table(a, ref)
        pq.write_table(b, cur)
        request = DriftRequest(reference=(str(ref),), current=(str(cur),))
        report = run_drift(request)
        states = {c.name: (c.state.value, [r.value for r in c.reasons]) for c in report.columns}
        print(f"{args.rows} rows x {a.num_columns} columns; verdicts: {states}")

        read = best(lambda: (pq.read_table(ref), pq.read_table(cur)), args.repeat)
        job = best(lambda: run_drift(request), args.repeat)
        print(f"read both (pyarrow) {read:.3f} s | drift job {job:.3f} s | ratio {job / read:.2f}x")

        peer = [
            sys.executable,
            "-c",
            f"import pyarrow.parquet as pq; pq.read_table({str(ref)!r}); pq.read_table({str(cur)!r})",
        ]
        cli = [sys.executable, "-m", "kldiv_cli", "drift", str(ref), str(cur), "-f", "json", "-q"]
        p_time = best(lambda: subprocess.run(peer, check=True), args.repeat)
        c_time = best(lambda: subprocess.run(cli, stdout=subprocess.DEVNULL), args.repeat)
        print(
            f"python + pyarrow read {p_time:.3f} s | kldiv drift CLI {c_time:.3f} s | "
            f"ratio {c_time / p_time:.2f}x"
        )

        if args.wide:
            rng = np.random.default_rng(1)
            wide = {f"c{j}": rng.normal(size=20) for j in range(10_000)}
            wa, wb = Path(tmp, "wide_a.parquet"), Path(tmp, "wide_b.parquet")
            pq.write_table(pa.table(wide), wa)
            pq.write_table(pa.table(wide), wb)
            cmd = [sys.executable, "-m", "kldiv_cli", "drift", str(wa), str(wb), "-f", "json", "-q"]
            w_time = best(lambda: subprocess.run(cmd, stdout=subprocess.DEVNULL), 1)
            print(f"10,000 columns x 20 rows: kldiv drift CLI {w_time:.2f} s")


if __name__ == "__main__":
    main()
