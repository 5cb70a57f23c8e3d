"""Start-up of a tiny compute against the imports it cannot avoid, with pandas installed.

    python benchmarks/bench_startup.py             # 20 interleaved runs per pair
    python benchmarks/bench_startup.py --runs 5    # a quick check

Each pair runs alternately (kldiv, then its floor), so a change in the machine's load
hits both alike; the ratios are of the best and of the median wall times, and of the
best CPU times (user + system: steadier than wall times on a busy machine). The floor
of a Parquet compute is ``python -c "import typer, numpy, pyarrow.parquet"`` (CSV:
``pyarrow.csv``; .npy: ``typer, numpy``). The run also says whether pandas is
importable (pyarrow imports it on some paths when it is) and whether Python may
write bytecode: with ``PYTHONDONTWRITEBYTECODE`` set and an editable install, every
kldiv module is compiled at each start, which the floors (installed packages with
their .pyc files) never pay. It also says whether kldiv's own modules have bytecode
caches (a test run writes them): then they are not compiled, whatever the variable says.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PY = sys.executable


def _cpu() -> float:
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    return used.ru_utime + used.ru_stime


def _wall(cmd: list[str], cpu: list[float] | None = None) -> float:
    """The wall time of ``cmd``; its CPU time appended to ``cpu``."""
    start, used = time.perf_counter(), _cpu()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if cpu is not None:
        cpu.append(_cpu() - used)
    return time.perf_counter() - start


def pair(
    ours: list[str],
    floor: list[str],
    runs: int,
    cpu: tuple[list[float], list[float]] | None = None,
) -> tuple[list[float], list[float]]:
    """Wall times of two commands run alternately (after one warm-up run each); their
    CPU times appended to ``cpu``'s two lists."""
    _wall(ours), _wall(floor)
    a, b = [], []
    for _ in range(runs):
        a.append(_wall(ours, cpu[0] if cpu else None))
        b.append(_wall(floor, cpu[1] if cpu else None))
    return a, b


def make_samples(folder: Path) -> dict[str, tuple[str, str]]:
    """Tiny input/target pairs, 8 x 4, in each format."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(0)
    x = np.log(rng.dirichlet(np.ones(4), 8))
    t = rng.dirichlet(np.ones(4), 8)
    files: dict[str, tuple[str, str]] = {}
    for fmt in ("npy", "csv", "parquet"):
        paths = []
        for name, a in (("x", x), ("t", t)):
            path = folder / f"{name}.{fmt}"
            if fmt == "npy":
                np.save(path, a)
            elif fmt == "csv":
                np.savetxt(path, a, delimiter=",", header="a,b,c,d", comments="")
            else:
                pq.write_table(pa.table({c: a[:, j] for j, c in enumerate("abcd")}), path)
            paths.append(str(path))
        files[fmt] = (paths[0], paths[1])
    return files


FLOORS = {
    "parquet": "import typer, numpy, pyarrow.parquet",
    "csv": "import typer, numpy, pyarrow.csv",
    "npy": "import typer, numpy",
}


_LOADED = """
import os, sys
from kldiv_cli.cli.app import run
run(sys.argv[1:])  # the command without ending the process (main skips teardown)
files = [m.__file__ for n, m in list(sys.modules.items()) if n.startswith("kldiv_cli") and getattr(m, "__file__", None)]
print(len(files), sum(os.path.getsize(f) for f in files), file=sys.stderr)
"""


def loaded(args: list[str]) -> tuple[int, int]:
    """How many of kldiv's modules ``kldiv ARGS`` loads and their bytes of source (what
    Python compiles at each start without bytecode caches)."""
    done = subprocess.run([PY, "-c", _LOADED, *args], capture_output=True, text=True, check=True)
    count, size = done.stderr.split()[-2:]
    return int(count), int(size)


def cached() -> bool:
    """Whether kldiv's own modules have bytecode caches next to them."""
    spec = importlib.util.find_spec("kldiv_cli")
    assert spec is not None and spec.origin is not None
    return any(Path(spec.origin).parent.rglob("__pycache__/*.pyc"))


def measure(runs: int) -> dict[str, dict[str, float]]:
    """Each format's tiny compute against its floor, ``runs`` interleaved runs: prints the
    table and returns the best and median wall seconds of both, by format."""
    print(f"pandas importable: {importlib.util.find_spec('pandas') is not None}")
    print(f"PYTHONDONTWRITEBYTECODE: {os.environ.get('PYTHONDONTWRITEBYTECODE') or 'unset'}")
    print(f"kldiv's modules have bytecode caches: {'yes' if cached() else 'no'}")
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        files = make_samples(Path(tmp))
        print(
            f"{'tiny compute vs floor':36} {'kldiv ms':>9} {'floor ms':>9} {'best':>6} "
            f"{'median':>7} {'CPU best':>9}"
        )
        for fmt, (x, t) in files.items():
            ours = [PY, "-m", "kldiv_cli", "compute", x, t, "-r", "sum", "-q"]
            cpu: tuple[list[float], list[float]] = ([], [])
            a, b = pair(ours, [PY, "-c", FLOORS[fmt]], runs, cpu)
            print(
                f"{fmt + ' vs ' + FLOORS[fmt].split(', ')[-1]:36} {min(a) * 1e3:9.1f} "
                f"{min(b) * 1e3:9.1f} {min(a) / min(b):5.2f}x "
                f"{statistics.median(a) / statistics.median(b):6.2f}x "
                f"{min(cpu[0]) / min(cpu[1]):8.2f}x"
            )
            count, size = loaded(ours[3:])
            print(f"{'':36} kldiv loads {count} of its modules, {size / 1000:.0f} KB of source")
            results[fmt] = {
                "kldiv": min(a),
                "floor": min(b),
                "kldiv_median": statistics.median(a),
                "floor_median": statistics.median(b),
                "kldiv_cpu": min(cpu[0]),
                "floor_cpu": min(cpu[1]),
                "modules": count,
                "source_bytes": size,
            }
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    measure(parser.parse_args().runs)


if __name__ == "__main__":
    main()
