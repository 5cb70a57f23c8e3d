"""``kldiv profile`` of a Parquet reference: ``--engine dask`` against the local engine,
on the same files, in one run.

    python benchmarks/bench_drift_dask.py                  # 2e7 rows x 4 numeric columns
    python benchmarks/bench_drift_dask.py --rows 2e5       # a quick check that it works

Measured, each the best of ``--repeats`` runs: the local profile (one process, two
column threads) against the task profiler on an already running cluster of 1 and of 2
worker processes (one thread each), and the profile's JSON checked to be the local one,
byte for byte. Ratios are Dask's time over the local engine's (above 1 is slower).
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kldiv_cli.jobs.drift_roles import Profiler
    from kldiv_cli.jobs.profile import ProfileRequest


def best(fn: Callable[[], str], repeats: int) -> tuple[float, str]:
    times, out = [], ""
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return min(times), out


def make_reference(folder: Path, rows: int, group: int) -> str:
    """Four numeric float64 columns (normal, log-normal, 50-value ties, integers), in
    row groups of ``group`` rows, in one Parquet file."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = folder / f"reference_{rows}.parquet"
    if path.exists():
        return str(path)
    rng = np.random.default_rng(0)
    writer = None
    for start in range(0, rows, group):
        n = min(group, rows - start)
        table = pa.table(
            {
                "normal": rng.normal(size=n),
                "lognormal": rng.lognormal(sigma=2, size=n),
                "ties": rng.integers(0, 50, n).astype(np.float64),
                "amount": rng.integers(0, 5000, n),
            }
        )
        writer = writer or pq.ParquetWriter(path, table.schema)
        writer.write_table(table)
    assert writer is not None
    writer.close()
    return str(path)


def profile_json(request: ProfileRequest, profiler: Profiler | None) -> str:
    from kldiv_cli.jobs.profile import run_profile

    return run_profile(request, None, profiler).dumps()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=float, default=2e7)
    parser.add_argument("--group", type=float, default=1e6, help="rows per row group")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dir", type=Path, default=None)
    args = parser.parse_args()

    import distributed

    from kldiv_cli.engines import dask as D
    from kldiv_cli.engines.drift import TaskProfiler
    from kldiv_cli.jobs.profile import ProfileRequest

    folder = args.dir or Path(tempfile.mkdtemp(prefix="kldiv-bench-drift-"))
    path = make_reference(folder, int(args.rows), int(args.group))
    request = ProfileRequest((path,))
    local_time, want = best(partial(profile_json, request, None), args.repeats)
    print(f"{int(args.rows):,} rows x 4 columns, row groups of {int(args.group):,} rows")
    print(f"local engine: {local_time:.3f} s")
    for workers in (1, 2):
        with (
            distributed.LocalCluster(
                n_workers=workers,
                threads_per_worker=1,
                processes=True,
                host="127.0.0.1",
                dashboard_address=None,
                scheduler_kwargs=D.LOCAL_SCHEDULER,
                silence_logs=logging.ERROR,
            ) as cluster,
            distributed.Client(cluster) as client,
        ):
            job = partial(profile_json, request, TaskProfiler([path], D.runner(client)))
            seconds, got = best(job, args.repeats)
        same = "same bytes" if got == want else "DIFFERENT PROFILE"
        print(
            f"dask, {workers} worker(s): {seconds:.3f} s, "
            f"{seconds / local_time:.2f} x local ({same})"
        )


if __name__ == "__main__":
    main()
