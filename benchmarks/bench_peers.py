"""kldiv against what a data user would write instead: Polars and DuckDB, same job, one run.

    pip install polars duckdb            # benchmark-only peers, never kldiv dependencies
    python benchmarks/bench_peers.py                      # Parquet 1e6 x 50, CSV 2e5 x 50
    python benchmarks/bench_peers.py --rows 20000 --repeats 2   # a quick check

The job: ``batchmean`` KL of two float32 tables (input log-probabilities, target
probabilities), which the peers compute in float64 (``t * (ln t - x)`` summed over every
cell, divided by the rows). Every command is a fresh process (as in a shell loop), timed as
the best of several runs, kldiv and the peers alternating so that a change in the machine's
load hits all alike. The ratio is kldiv's time over the faster peer's: below 1 is faster.
A start-up section compares a tiny compute with importing what it needs.
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


def best_times(commands: dict[str, list[str]], repeats: int) -> dict[str, float]:
    """The best time of each command, the commands run in turn ``repeats`` times."""
    times: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(repeats):
        for name, cmd in commands.items():
            times[name].append(_time(cmd))
    return {name: min(ts) for name, ts in times.items()}


def make_tables(folder: Path, rows: int, cols: int, fmt: str) -> tuple[str, str]:
    import numpy as np
    import pyarrow as pa
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    paths = (folder / f"x_{rows}x{cols}.{fmt}", folder / f"t_{rows}x{cols}.{fmt}")
    if all(p.exists() for p in paths):
        return str(paths[0]), str(paths[1])
    rng = np.random.default_rng(0)
    t = rng.random((rows, cols), dtype=np.float32) + np.float32(0.01)
    t /= t.sum(axis=1, keepdims=True)
    noise = rng.normal(0, 0.01, (rows, cols)).astype(np.float32)
    q = t * np.exp(noise)
    x = np.log(q / q.sum(axis=1, keepdims=True))
    for path, data in zip(paths, (x, t)):
        table = pa.table({f"c{j}": data[:, j] for j in range(cols)})
        if fmt == "parquet":
            pq.write_table(table, path)
        else:
            pcsv.write_csv(table, path)
    return str(paths[0]), str(paths[1])


def polars_script(x: str, t: str, fmt: str, cols: int) -> str:
    read = "pl.scan_parquet" if fmt == "parquet" else "pl.scan_csv"
    return (
        "import polars as pl\n"
        f"cols = [f'c{{j}}' for j in range({cols})]\n"
        f"x = {read}({x!r}).select([pl.col(c).cast(pl.Float64).alias('x' + c) for c in cols])\n"
        f"t = {read}({t!r}).select([pl.col(c).cast(pl.Float64).alias('t' + c) for c in cols])\n"
        "df = pl.concat([x, t], how='horizontal')\n"
        "terms = [pl.col('t' + c) * (pl.col('t' + c).log() - pl.col('x' + c)) for c in cols]\n"
        "out = df.select(pl.sum_horizontal(terms).sum() / pl.len()).collect()\n"
        "print(out.item())\n"
    )


def duckdb_script(x: str, t: str, fmt: str, cols: int) -> str:
    read = "read_parquet" if fmt == "parquet" else "read_csv"
    terms = " + ".join(
        f"t.c{j}::DOUBLE * (ln(t.c{j}::DOUBLE) - x.c{j}::DOUBLE)" for j in range(cols)
    )
    sql = f"SELECT sum({terms}) / count(*) FROM {read}('{x}') x POSITIONAL JOIN {read}('{t}') t"
    return f"import duckdb\nprint(duckdb.sql({sql!r}).fetchall()[0][0])\n"


def check_agreement(x: str, t: str, fmt: str, cols: int) -> None:
    """The three answers, so that a faster peer is not computing something else."""
    runs = {
        "kldiv": [*KLDIV, "compute", x, t, "-r", "batchmean", "-q"],
        "polars": [PY, "-c", polars_script(x, t, fmt, cols)],
        "duckdb": [PY, "-c", duckdb_script(x, t, fmt, cols)],
    }
    values = {
        name: subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip()
        for name, cmd in runs.items()
    }
    print("   answers: " + ", ".join(f"{k} {v}" for k, v in values.items()))


def compare_end_to_end(
    folder: Path, fmt: str, rows: int, cols: int, repeats: int
) -> dict[str, float]:
    """kldiv, Polars and DuckDB on the same tables: prints and returns the best seconds."""
    x, t = make_tables(folder, rows, cols, fmt)
    commands = {
        "kldiv": [*KLDIV, "compute", x, t, "-r", "batchmean", "-q"],
        "polars": [PY, "-c", polars_script(x, t, fmt, cols)],
        "duckdb": [PY, "-c", duckdb_script(x, t, fmt, cols)],
    }
    best = best_times(commands, repeats)
    peer = min(best["polars"], best["duckdb"])
    print(
        f"{fmt:8} {rows:>9} x {cols:<4} kldiv {best['kldiv']:6.3f} s  polars "
        f"{best['polars']:6.3f} s  duckdb {best['duckdb']:6.3f} s  "
        f"kldiv / faster peer {best['kldiv'] / peer:5.2f}x   target <= 1.0x"
    )
    check_agreement(x, t, fmt, cols)
    return best


def compare_start_up(folder: Path, repeats: int) -> dict[str, dict[str, float]]:
    """A tiny Parquet and CSV compute against their floors: prints and returns the best
    seconds of each, by format."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    x = np.log(np.full((2, 3), 1 / 3, dtype=np.float32))
    t = np.full((2, 3), 1 / 3, dtype=np.float32)
    for name, data in (("tiny_x", x), ("tiny_t", t)):
        table = pa.table({f"c{j}": data[:, j] for j in range(3)})
        pq.write_table(table, folder / f"{name}.parquet")
        pcsv.write_csv(table, folder / f"{name}.csv")
    results = {}
    for fmt, module in (("parquet", "pyarrow.parquet"), ("csv", "pyarrow.csv")):
        files = [str(folder / f"tiny_{s}.{fmt}") for s in ("x", "t")]
        commands = {
            "kldiv": [*KLDIV, "compute", *files, "-r", "sum", "-q"],
            "floor": [PY, "-c", f"import typer, numpy, {module}"],
        }
        best = best_times(commands, repeats)
        print(
            f"start-up tiny {fmt:8} kldiv {best['kldiv']:6.3f} s  import typer, numpy, {module} "
            f"{best['floor']:6.3f} s  {best['kldiv'] / best['floor']:5.2f}x   target <= 1.3x"
        )
        results[fmt] = best
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path)
    parser.add_argument("--rows", type=int, default=1_000_000, help="Parquet rows (CSV: a fifth)")
    parser.add_argument("--cols", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    folder = args.dir or Path(tempfile.mkdtemp(prefix="kldiv-peers-"))
    folder.mkdir(parents=True, exist_ok=True)
    import duckdb
    import polars

    print(
        f"machine: {os.cpu_count()} cores; polars {polars.__version__}, duckdb "
        f"{duckdb.__version__}; data in {folder}"
    )
    compare_end_to_end(folder, "parquet", args.rows, args.cols, args.repeats)
    compare_end_to_end(folder, "csv", args.rows // 5, args.cols, args.repeats)
    compare_start_up(folder, max(args.repeats, 9))


if __name__ == "__main__":
    main()
