"""kldiv drift against Evidently's DataDriftPreset on one wide Parquet table pair.

A reference and a current table of ``--rows`` rows and ``--columns`` columns (four in
five numeric, one in five categorical with a dozen values; a tenth of the columns
shifted in the current table) are written once, in row groups of 100,000 rows (the
generator never holds a whole table), then each tool runs as a fresh process on the
same two files:

* ``kldiv drift REF CUR --format json`` (columns on two threads, one column of each
  side in memory at a time; a progress bar when run on a terminal);
* Evidently's ``Report([DataDriftPreset()]).run(current, reference)`` on the tables read
  with pandas, in the Python of ``--evidently-python`` (an optional benchmark
  dependency: nothing of kldiv needs it).

Printed: each tool's wall time, peak resident memory (``wait4``'s ``ru_maxrss``) and
drifted columns, and the ratio of the times.

    python benchmarks/bench_drift_wide.py                              # 1,000,000 x 200
    python benchmarks/bench_drift_wide.py --rows 200000 --columns 200  # a shared machine
    python benchmarks/bench_drift_wide.py --skip-evidently             # kldiv alone
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parent.parent
CHUNK = 100_000
EVIDENTLY = """
import json, sys
import pandas as pd
from evidently import Report
from evidently.presets import DataDriftPreset

reference = pd.read_parquet(sys.argv[1])
current = pd.read_parquet(sys.argv[2])
result = Report([DataDriftPreset()]).run(current, reference).dict()
count = next(
    (m["value"]["count"] for m in result["metrics"] if "DriftedColumnsCount" in m["metric_name"]),
    None,
)
print(json.dumps({"drifted": int(count) if count is not None else None}))
"""


def write_pair(folder: Path, rows: int, columns: int, seed: int = 0) -> tuple[Path, Path]:
    """Write ``ref.parquet`` and ``cur.parquet`` chunk by chunk (see the module's docstring)."""
    rng = np.random.default_rng(seed)
    kinds = ["category" if i % 5 == 4 else "number" for i in range(columns)]
    shifted = set(range(0, columns, 10))
    labels = np.array([f"v{i:02d}" for i in range(12)])
    paths = []
    for side in ("ref", "cur"):
        path = folder / f"{side}.parquet"
        writer = None
        for start in range(0, rows, CHUNK):
            n = min(CHUNK, rows - start)
            data = {}
            for i, kind in enumerate(kinds):
                moved = side == "cur" and i in shifted
                if kind == "number":
                    data[f"x{i:03d}"] = rng.normal(0.6 if moved else 0.0, 1.0, n)
                else:
                    p = np.full(12, 1 / 12)
                    if moved:
                        p[0], p[1] = 3 / 12, 0.0
                    data[f"c{i:03d}"] = pa.array(labels[rng.choice(12, n, p=p)])
            table = pa.table(data)
            if writer is None:
                writer = pq.ParquetWriter(path, table.schema)
            writer.write_table(table)
        assert writer is not None
        writer.close()
        paths.append(path)
    return paths[0], paths[1]


def measure(command: list[str], env: dict[str, str] | None = None) -> tuple[float, float, str]:
    """(seconds, peak RSS in MB, stdout) of one fresh process."""
    started = time.perf_counter()
    with tempfile.TemporaryFile() as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.PIPE, env=env)
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        err = process.stderr.read().decode() if process.stderr else ""
        out.seek(0)
        text = out.read().decode()
    if process.returncode not in (0, 1):
        raise SystemExit(f"{command[0]} failed ({process.returncode}): {err.strip()[-500:]}")
    return seconds, usage.ru_maxrss / 1024, text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--columns", type=int, default=200)
    parser.add_argument("--evidently-python", default="/work/venv-evidently/bin/python")
    parser.add_argument("--skip-evidently", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        ref, cur = write_pair(Path(folder), args.rows, args.columns)
        size = (ref.stat().st_size + cur.stat().st_size) / 2**20
        print(
            f"{args.rows:,} rows x {args.columns} columns, two Parquet files of {size:.0f} MB "
            f"in all, written in {time.perf_counter() - started:.1f} s"
        )
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        kldiv = [sys.executable, "-m", "kldiv_cli", "drift", str(ref), str(cur), "-f", "json"]
        seconds, rss, text = measure(kldiv, env)
        drifted = json.loads(text)["n_drifted"]
        print(f"kldiv drift:          {seconds:8.1f} s  peak {rss:7.0f} MB  {drifted} drifted")
        if args.skip_evidently:
            return
        evidently = [args.evidently_python, "-c", EVIDENTLY, str(ref), str(cur)]
        e_seconds, e_rss, e_text = measure(evidently)
        e_drifted = json.loads(e_text.strip().splitlines()[-1])["drifted"]
        print(
            f"Evidently preset:     {e_seconds:8.1f} s  peak {e_rss:7.0f} MB  {e_drifted} drifted"
        )
        print(
            f"ratio (Evidently / kldiv): {e_seconds / seconds:.1f}x time, {e_rss / rss:.1f}x memory"
        )


if __name__ == "__main__":
    main()
