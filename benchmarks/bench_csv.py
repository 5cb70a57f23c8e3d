"""kldiv's CSV path against Polars on the same job, and its reader against pyarrow's.

    pip install polars                                   # a benchmark-only peer
    python benchmarks/bench_csv.py                       # 200,000 x 50, best of 7
    python benchmarks/bench_csv.py --rows 20000 --repeats 2   # a quick check

End to end: ``kldiv compute x.csv t.csv -r batchmean -q`` and the Polars script of
``bench_peers.py``, each a fresh process, alternating, best wall time and best CPU time
(user + system) of ``--repeats`` runs. In process: kldiv's ``read_csv_table`` of both
files against a plain ``pyarrow.csv.read_csv`` (type inference, pyarrow's parallel
reader), alternating. Ratios below 1 favour kldiv.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench_peers import KLDIV, PY, make_tables, polars_script


def _cpu_children() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def _cpu_self() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def best(
    runs: dict[str, Callable[[], object]], repeats: int, cpu: Callable[[], float]
) -> dict[str, tuple[float, float]]:
    """Best wall and CPU seconds of each run, the runs taken in turn ``repeats`` times."""
    wall: dict[str, list[float]] = {k: [] for k in runs}
    used: dict[str, list[float]] = {k: [] for k in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            c, t = cpu(), time.perf_counter()
            run()
            wall[name].append(time.perf_counter() - t)
            used[name].append(cpu() - c)
    return {k: (min(wall[k]), min(used[k])) for k in runs}


def end_to_end(x: str, t: str, cols: int, repeats: int) -> None:
    commands = {
        "kldiv": [*KLDIV, "compute", x, t, "-r", "batchmean", "-q"],
        "polars": [PY, "-c", polars_script(x, t, "csv", cols)],
    }
    runs = {
        k: (lambda c=c: subprocess.run(c, check=True, stdout=subprocess.DEVNULL))
        for k, c in commands.items()
    }
    b = best(runs, repeats, _cpu_children)
    print(
        f"end to end   kldiv {b['kldiv'][0]:.3f} s (CPU {b['kldiv'][1]:.3f} s)  polars "
        f"{b['polars'][0]:.3f} s (CPU {b['polars'][1]:.3f} s)  kldiv / polars "
        f"{b['kldiv'][0] / b['polars'][0]:.2f}x   target <= 1.0x"
    )


def readers(x: str, t: str, repeats: int) -> None:
    import pyarrow.csv as pcsv

    from kldiv_cli.io.base import ReadOptions
    from kldiv_cli.io.csv import read_csv_table

    convert = pcsv.ConvertOptions(null_values=[""])
    runs = {
        "kldiv": lambda: [read_csv_table(p, p, None, "csv", ReadOptions()) for p in (x, t)],
        "pyarrow": lambda: [pcsv.read_csv(p, convert_options=convert) for p in (x, t)],
    }
    b = best(runs, repeats, _cpu_self)
    print(
        f"read both    kldiv {b['kldiv'][0]:.3f} s (CPU {b['kldiv'][1]:.3f} s)  pyarrow "
        f"{b['pyarrow'][0]:.3f} s (CPU {b['pyarrow'][1]:.3f} s)  kldiv / pyarrow "
        f"{b['kldiv'][0] / b['pyarrow'][0]:.2f}x"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path)
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--cols", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    folder = args.dir or Path(tempfile.mkdtemp(prefix="kldiv-csv-"))
    folder.mkdir(parents=True, exist_ok=True)
    x, t = make_tables(folder, args.rows, args.cols, "csv")
    print(f"{args.rows} x {args.cols} CSV in {folder}")
    end_to_end(x, t, args.cols, args.repeats)
    readers(x, t, args.repeats)


if __name__ == "__main__":
    main()
