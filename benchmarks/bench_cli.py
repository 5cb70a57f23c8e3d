"""The CLI end to end, start-up and peak memory, each against its floor, in one run.

    python benchmarks/bench_cli.py                 # 1e6 x 50 end to end; start-up
    python benchmarks/bench_cli.py --memory        # also 3e6 x 100 peak RSS (writes ~7 GB of data)
    python benchmarks/bench_cli.py --dir /data/kb  # where the data files go (default: a temp dir)

Every command runs as a fresh process (as in a shell loop) and is timed as the
best of several runs; peers run back to back with the same files (warm page
cache). Ratios are kldiv's time over the peer's: below 1 is faster.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PY = sys.executable
KLDIV = [PY, "-m", "kldiv_cli"] if shutil.which("kldiv") is None else [shutil.which("kldiv")]


def _time(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def pair(ours: list[str], peer: list[str], repeats: int) -> tuple[float, float]:
    """Best times of two commands run alternately, so that a change in the machine's
    load (a shared VM) hits both alike."""
    a, b = [], []
    for _ in range(repeats):
        a.append(_time(ours))
        b.append(_time(peer))
    return min(a), min(b)


def peak_rss_mb(cmd: list[str]) -> float:
    """Peak RSS of one child process, measured by a wrapper process of its own."""
    probe = (
        "import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True, "
        "stdout=subprocess.DEVNULL); print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
    )
    out = subprocess.run([PY, "-c", probe, *cmd], check=True, capture_output=True, text=True)
    return int(out.stdout) / 1024


def make_data(folder: Path, rows: int, cols: int, tag: str, formats: tuple[str, ...]) -> None:
    import numpy as np
    import pyarrow as pa
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    rng = np.random.default_rng(0)
    step = 100_000
    for name in ("x", "t"):
        paths = {fmt: folder / f"{name}{tag}.{fmt}" for fmt in formats}
        if all(p.exists() for p in paths.values()):
            continue
        mm = np.lib.format.open_memmap(
            paths["npy"], mode="w+", dtype=np.float32, shape=(rows, cols)
        )
        writers: dict = {}
        for i in range(0, rows, step):
            block = rng.random((min(step, rows - i), cols), dtype=np.float32) + np.float32(0.01)
            block /= block.sum(axis=1, keepdims=True)
            if name == "x":
                block = np.log(block)
            mm[i : i + len(block)] = block
            table = pa.table({f"c{j}": block[:, j] for j in range(cols)})
            if "parquet" in paths:
                if "parquet" not in writers:
                    writers["parquet"] = pq.ParquetWriter(paths["parquet"], table.schema)
                writers["parquet"].write_table(table)
            if "csv" in paths:
                if "csv" not in writers:
                    writers["csv"] = pcsv.CSVWriter(paths["csv"], table.schema)
                writers["csv"].write_table(table)
        for w in writers.values():
            w.close()
        mm.flush()
        del mm


def ratio_line(name: str, times: tuple[float, float], target: str) -> None:
    ours, peer = times
    print(f"{name:58} {ours:7.3f} s {peer:7.3f} s {ours / peer:6.2f}x   target {target}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--memory", action="store_true")
    args = parser.parse_args()
    folder = args.dir or Path(tempfile.mkdtemp(prefix="kldiv-bench-"))
    folder.mkdir(parents=True, exist_ok=True)
    print(f"machine: {os.cpu_count()} cores; data in {folder}; commands: {' '.join(KLDIV)}")
    make_data(folder, 1_000_000, 50, "", ("npy", "parquet", "csv"))
    f = {k: str(folder / k) for k in ("x.npy", "t.npy", "x.parquet", "t.parquet", "x.csv", "t.csv")}
    r = args.repeats
    print(f"\n{'':58} {'kldiv':>9} {'peer':>9} {'ratio':>7}")

    naive = (
        "import numpy as np; x = np.load(%r); t = np.load(%r); "
        "print(np.sum(t * (np.log(t) - x)) / len(x))" % (f["x.npy"], f["t.npy"])
    )
    ratio_line(
        "npy 1e6x50 batchmean vs naive np.load + numpy script",
        pair(
            [*KLDIV, "compute", f["x.npy"], f["t.npy"], "-r", "batchmean", "-q"],
            [PY, "-c", naive],
            r,
        ),
        "<= 0.8x",
    )
    read_pq = "import pyarrow.parquet as pq; pq.read_table(%r); pq.read_table(%r)" % (
        f["x.parquet"],
        f["t.parquet"],
    )
    ratio_line(
        "Parquet 1e6x50 batchmean vs pq.read_table of both",
        pair(
            [*KLDIV, "compute", f["x.parquet"], f["t.parquet"], "-r", "batchmean", "-q"],
            [PY, "-c", read_pq],
            r,
        ),
        "<= 1.3x",
    )
    read_csv = "import pyarrow.csv as c; c.read_csv(%r); c.read_csv(%r)" % (f["x.csv"], f["t.csv"])
    ratio_line(
        "CSV 1e6x50 batchmean vs pyarrow.csv.read_csv of both",
        pair(
            [*KLDIV, "compute", f["x.csv"], f["t.csv"], "-r", "batchmean", "-q"],
            [PY, "-c", read_csv],
            r,
        ),
        "<= 1.2x",
    )

    import numpy as np

    np.save(tiny_x := folder / "tiny_x.npy", np.log(np.full((2, 3), 1 / 3)))
    np.save(tiny_t := folder / "tiny_t.npy", np.full((2, 3), 1 / 3))
    r2 = max(r, 9)
    typer_only = [PY, "-c", "import typer"]
    ratio_line(
        "kldiv --version vs python -c 'import typer'",
        pair([*KLDIV, "--version"], typer_only, r2),
        "<= 1.5x",
    )
    ratio_line(
        "kldiv --help vs python -c 'import typer'",
        pair([*KLDIV, "--help"], typer_only, r2),
        "<= 1.5x",
    )
    ratio_line(
        "kldiv compute tiny.npy vs python -c 'import typer, numpy'",
        pair(
            [*KLDIV, "compute", str(tiny_x), str(tiny_t), "-r", "sum", "-q"],
            [PY, "-c", "import typer, numpy"],
            r2,
        ),
        "<= 1.5x",
    )

    if args.memory:
        make_data(folder, 3_000_000, 100, "_big", ("npy", "parquet"))
        print(f"\n{'peak RSS, 3e6 x 100 float32 (1.2 GB per .npy side)':58} {'MB':>9}")
        for fmt in ("npy", "parquet"):
            cmd = [
                *KLDIV,
                "compute",
                str(folder / f"x_big.{fmt}"),
                str(folder / f"t_big.{fmt}"),
                "-r",
                "batchmean",
                "-q",
            ]
            print(
                f"{'kldiv compute ' + fmt + ' batchmean':58} {peak_rss_mb(cmd):9.0f}   target <= 300 MB"
            )


if __name__ == "__main__":
    main()
