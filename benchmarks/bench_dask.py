"""The Dask engine against the local engine on the same files, in one run.

    python benchmarks/bench_dask.py                      # 1e8 float32 elements per side
    python benchmarks/bench_dask.py --elements 2e6       # a quick check that it works
    python benchmarks/bench_dask.py --dir /data/kb       # where the .npy files go

Measured, each the best of ``--repeats`` runs:

* run overhead: a LocalCluster started, connected, checked and closed, around a job
  on a tiny input, against the local engine on the same input;
* task overhead: ``client.map`` of the engine's task function over many tiny tasks
  (one chunk each), per task;
* 1 vs 2 workers: ``--engine dask`` on an already running cluster of 1 and of 2 worker
  processes, against the local engine with 1 and 2 threads (same files, warm page cache).

Every Dask loss is checked to have the local engine's bits. Ratios are Dask's time
over the local engine's (above 1 is slower).
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from collections.abc import Callable
from pathlib import Path


def best(fn: Callable[[], object], repeats: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return min(times), out


def make_pair(folder: Path, elements: int, width: int = 1000) -> tuple[str, str]:
    """Two float32 .npy files of ``elements`` values (rows of ``width``), written in blocks."""
    import numpy as np

    rows = max(1, elements // width)
    paths = []
    for name, log in (("x", True), ("t", False)):
        path = folder / f"{name}_{rows}x{width}.npy"
        paths.append(str(path))
        if path.exists():
            continue
        out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(rows, width))
        rng = np.random.default_rng(0 if log else 1)
        for i in range(0, rows, 10_000):
            p = rng.dirichlet(np.ones(width), min(10_000, rows - i)).astype(np.float32)
            out[i : i + len(p)] = np.log(p) if log else p
        out.flush()
        del out
    return paths[0], paths[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--elements", type=float, default=1e8)
    parser.add_argument("--tasks", type=int, default=200, help="tiny tasks for the per-task cost")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dir", type=Path, default=None)
    args = parser.parse_args()

    import distributed

    from kldiv_cli.core.engine import CHUNK
    from kldiv_cli.engines import dask as D
    from kldiv_cli.engines import tasks as T
    from kldiv_cli.jobs.compute import ComputeRequest, compute, open_sources, plan

    folder = args.dir or Path(tempfile.mkdtemp(prefix="bench-dask-"))
    folder.mkdir(parents=True, exist_ok=True)
    tiny_x, tiny_t = make_pair(folder, 1000, 10)
    big_x, big_t = make_pair(folder, int(args.elements))

    def request(x: str, t: str, threads: int | None = None) -> ComputeRequest:
        return ComputeRequest(x, t, reduction="batchmean", threads=threads)

    print(f"data: {folder}  ({int(args.elements):.3g} float32 elements per side)")

    # Run overhead: everything --engine dask does without an address, on a tiny input.
    tiny = request(tiny_x, tiny_t)
    local_tiny, want = best(lambda: compute(tiny).loss, args.repeats)
    dask_tiny, got = best(lambda: D.run_compute_dask(tiny, workers=2).loss, args.repeats)
    assert got.tobytes() == want.tobytes()
    print(
        f"run overhead (LocalCluster of 2 started and closed): dask {dask_tiny:.2f} s, "
        f"local {local_tiny * 1e3:.1f} ms, overhead {dask_tiny - local_tiny:.2f} s"
    )

    def cluster(n: int) -> distributed.LocalCluster:
        return distributed.LocalCluster(
            n_workers=n,
            threads_per_worker=1,
            host="127.0.0.1",
            dashboard_address=None,
            scheduler_kwargs=D.LOCAL_SCHEDULER,
            silence_logs=logging.ERROR,
        )

    # Per task: one chunk per task on a running cluster.
    small_x, small_t = make_pair(folder, args.tasks * CHUNK, 1 << 10)
    small = request(small_x, small_t)
    sx, st = open_sources(small, None)
    job = D.make_job(small, sx, st, plan(small, sx, st))
    with cluster(2) as local_cluster, distributed.Client(local_cluster) as client:
        work = T.split(job, 1)
        many, _ = best(lambda: D.run_tasks(client, job, work), args.repeats)
        one, _ = best(lambda: D.run_tasks(client, job, T.split(job, len(work))), args.repeats)
    local_small, _ = best(lambda: compute(request(small_x, small_t, 1)), args.repeats)
    print(
        f"per task: {len(work)} one-chunk tasks {many:.2f} s vs one task {one:.2f} s "
        f"-> {(many - one) / (len(work) - 1) * 1e3:.2f} ms per extra task "
        f"(local engine, 1 thread: {local_small:.2f} s)"
    )

    # 1 vs 2 workers against 1 vs 2 threads, on the big pair.
    big = request(big_x, big_t)
    want = compute(big).loss
    rows = []
    for n in (1, 2):
        local_n, _ = best(lambda n=n: compute(request(big_x, big_t, n)), args.repeats)
        with cluster(n) as c:
            address = c.scheduler_address
            dask_n, got = best(lambda a=address: D.run_compute_dask(big, a).loss, args.repeats)
        assert got.tobytes() == want.tobytes(), "the Dask engine lost the local bits"
        rows.append((n, dask_n, local_n))
        print(
            f"{n} worker(s): dask {dask_n:.2f} s, local {n} thread(s) {local_n:.2f} s, "
            f"ratio {dask_n / local_n:.2f}"
        )
    print(
        f"speed-up 1 -> 2 workers: dask {rows[0][1] / rows[1][1]:.2f}x, "
        f"local threads {rows[0][2] / rows[1][2]:.2f}x; bits identical throughout"
    )


if __name__ == "__main__":
    main()
