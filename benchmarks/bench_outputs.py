"""What making names inert and writing atomically cost, each against its floor, in one run.

    python benchmarks/bench_outputs.py              # 1e6 per-row lines, 2e5-row CSV, 64 MB file
    python benchmarks/bench_outputs.py --small      # a quick check that the script works

Floors, measured side by side (best of several alternating runs):
- plain text: ``plain_text`` (every line cleaned) against a bare ``"\\n".join``;
- CSV: ``to_csv`` (text cells cleaned) against the csv module writing the same cells;
- a file: ``atomic_write`` (temp file, fsync, mode kept, signal handlers, rename)
  against ``open(path, "wb").write`` plus fsync.
Ratios are ours over the floor: 1.0 is free.
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import tempfile
import time
from collections.abc import Callable

import numpy as np

from kldiv_cli.io.writers import atomic_write
from kldiv_cli.render import format_number, plain_text, to_csv


def best(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def pair(
    ours: Callable[[], object], floor: Callable[[], object], repeats: int
) -> tuple[float, float]:
    a, b = [], []
    for _ in range(repeats):
        a.append(best(ours, 1))
        b.append(best(floor, 1))
    return min(a), min(b)


def report(name: str, ours: float, floor: float) -> None:
    print(
        f"{name:<44} {ours * 1e3:9.1f} ms  floor {floor * 1e3:9.1f} ms  ratio {ours / floor:5.2f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--small", action="store_true")
    args = parser.parse_args()
    lines_n, rows_n, size, repeats = (
        (10_000, 2_000, 1 << 20, 3) if args.small else (1_000_000, 200_000, 64 << 20, 5)
    )
    rng = np.random.default_rng(0)

    lines = [format_number(v) for v in rng.random(lines_n)]
    report(
        f"plain: {lines_n} number lines",
        *pair(lambda: plain_text(lines), lambda: "\n".join(lines) + "\n", repeats),
    )

    names = ["a", "b,c", "d\x1be"]
    rows = [(f"cat{i % 50}", float(v), int(i)) for i, v in enumerate(rng.random(rows_n))]

    def floor_csv() -> str:
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(names)
        for row in rows:
            w.writerow([v if isinstance(v, str) else format_number(v) for v in row])
        return buf.getvalue()

    report(
        f"csv: {rows_n} rows, a text column", *pair(lambda: to_csv(names, rows), floor_csv, repeats)
    )

    data = os.urandom(size)
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "out.npy")

        def floor_write() -> None:
            with open(path, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())

        report(
            f"file: {size >> 20} MB",
            *pair(lambda: atomic_write(path, lambda f: f.write(data)), floor_write, repeats),
        )


if __name__ == "__main__":
    main()
