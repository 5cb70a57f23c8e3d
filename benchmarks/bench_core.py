"""Core speed: kldiv's kl_div(reduction="sum") against its peers, side by side in one run.

    python benchmarks/bench_core.py            # 2e7 float32 and 1e7 float64 elements
    python benchmarks/bench_core.py --quick    # smaller arrays

Peers: torch.nn.functional.kl_div (all cores; when torch is installed),
scipy.special.rel_entr (when installed), naive NumPy (t * (log t - x)), and the
floor: one single-threaded np.log(t, out=buf) pass over the target. Each is timed
as the best of several interleaved runs; ratios are what to read.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
import warnings

import numpy as np

from kldiv_cli import kl_div


def best_of(fns: dict, repeats: int) -> dict[str, float]:
    """Best time of each, peer after peer with a pause between: torch's OpenMP workers
    spin for a while after their work and would slow whatever runs next."""
    times = {}
    for name, fn in fns.items():
        fn()
        runs = []
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            runs.append(time.perf_counter() - start)
        times[name] = min(runs)
        time.sleep(0.5)
    return times


def peers(x: np.ndarray, t: np.ndarray) -> dict:
    buf = np.empty_like(t)
    fns = {
        "kldiv kl_div": lambda: kl_div(x, t, reduction="sum"),
        "np.log pass (1 thread)": lambda: np.log(t, out=buf),
        "naive numpy": lambda: np.sum(t * (np.log(t) - x)),
    }
    try:
        import torch
        import torch.nn.functional as F

        tx, tt = torch.from_numpy(x), torch.from_numpy(t)
        fns["torch kl_div"] = lambda: F.kl_div(tx, tt, reduction="sum")
    except ImportError:
        pass
    try:
        from scipy.special import rel_entr

        fns["scipy rel_entr"] = lambda: rel_entr(t, np.exp(x)).sum()
    except ImportError:
        pass
    return fns


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"numpy {np.__version__}"
    )
    rng = np.random.default_rng(0)
    cases = [("float32", 200_000, 100), ("float64", 100_000, 100)]
    if args.quick:
        cases = [(d, r // 10, c) for d, r, c in cases]
    for dtype, rows, cols in cases:
        t = rng.dirichlet(np.ones(cols), rows).astype(dtype)
        x = np.log(rng.dirichlet(np.ones(cols), rows)).astype(dtype)
        n = t.size
        times = best_of(peers(x, t), args.repeats)
        ours = times["kldiv kl_div"]
        print(f"\n{dtype}, {rows} x {cols} = {n:,} elements")
        print(f"{'':26} {'Melem/s':>9} {'time/kldiv':>11}")
        for name, sec in times.items():
            print(f"{name:26} {n / sec / 1e6:9.0f} {sec / ours:10.2f}x")


if __name__ == "__main__":
    main()
