"""Core speed and accuracy: kldiv's kl_div(reduction="sum") against its peers, side by side.

    python benchmarks/bench_core.py            # 2e7 elements per dtype
    python benchmarks/bench_core.py --quick    # 2e6
    PYTHONPATH=. /path/to/venv-with-torch/bin/python benchmarks/bench_core.py   # with torch

Data: near-identical distributions (logits and logits + N(0, 0.001^2) noise, through a
float64 log-softmax/softmax, then stored as float16, float32 or float64): the case where a
KL is a small difference of large terms and float32 terms go wrong.

kldiv runs with the kernel it finds (``kldiv --version --verbose`` names it; the header line
here too), and once more with its NumPy fallback (``KLDIV_KERNEL=numpy``, same bits).

Peers: torch.nn.functional.kl_div (all cores; when torch is installed),
scipy.special.rel_entr (when installed), naive NumPy in the data's dtype
(``t * (log t - x)``), and three floors: one single-threaded ``np.log`` pass over the
target in its own dtype, one in float64 (the exact computation cannot avoid a float64
log), and reading both operands once on two threads (the memory floor of any kernel). Each is timed as the best of several runs, peer after peer; ratios are
what to read. "error" is the distance to the float64 value of the data (float64 terms,
long-double sum), in ulps of the result dtype.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from kldiv_cli import kl_div, log_softmax, softmax

POOL = ThreadPoolExecutor(2)


def best_of(fns: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
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


def read_both(x: np.ndarray, t: np.ndarray, pool: ThreadPoolExecutor) -> object:
    """The memory floor: the largest value of each operand, half of each on each of two
    threads (a reduction that keeps up with memory: no kernel that reads x and t once can
    beat it by much)."""
    # As unsigned integers of their width: NumPy's float16 maximum is not vectorised.
    xf, tf = (a.reshape(-1).view(f"u{a.dtype.itemsize}") for a in (x, t))
    half = xf.size // 2
    parts = [(xf[:half], tf[:half]), (xf[half:], tf[half:])]
    return list(pool.map(lambda p: (p[0].max(), p[1].max()), parts))


def peers(x: np.ndarray, t: np.ndarray) -> dict[str, Callable[[], object]]:
    buf = np.empty_like(t)
    buf64 = np.empty(t.shape)
    t64 = t.astype(np.float64)
    fns: dict[str, Callable[[], object]] = {
        "kldiv kl_div": lambda: kl_div(x, t, reduction="sum"),
        "kldiv, numpy fallback": lambda: fallback(x, t),
        f"np.log pass {t.dtype} (1 thread)": lambda: np.log(t, out=buf),
        "np.log pass float64 (1 thread)": lambda: np.log(t64, out=buf64),
        "read x and t (2 threads)": lambda: read_both(x, t, POOL),
        "naive numpy": lambda: np.sum(t * (np.log(t) - x)),
    }
    try:
        import torch
        import torch.nn.functional as F

        tx, tt = torch.from_numpy(x), torch.from_numpy(t)
        fns["torch kl_div"] = lambda: F.kl_div(tx, tt, reduction="sum").numpy()
    except ImportError:
        pass
    try:
        from scipy.special import rel_entr

        fns["scipy rel_entr"] = lambda: rel_entr(t, np.exp(x)).sum()
    except ImportError:
        pass
    return fns


def fallback(x: np.ndarray, t: np.ndarray) -> object:
    """kl_div with the NumPy kernel forced (the compiled one again afterwards)."""
    from kldiv_cli.core import kernel

    os.environ["KLDIV_KERNEL"] = "numpy"
    kernel.reset()
    try:
        return kl_div(x, t, reduction="sum")
    finally:
        del os.environ["KLDIV_KERNEL"]
        kernel.reset()


def close_pair(rows: int, cols: int, dtype: str) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(rows, cols))
    x = log_softmax(logits + rng.normal(0, 1e-3, logits.shape)).astype(dtype)
    return x, softmax(logits).astype(dtype)


def exact(x: np.ndarray, t: np.ndarray) -> float:
    x64, t64 = x.astype(np.float64), t.astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(t64 == 0, 0.0, t64 * (np.log(t64) - x64))
    return float(terms.astype(np.longdouble).sum())


def ulps(value: object, reference: float, dtype: np.dtype) -> float:
    v = float(np.asarray(value, dtype=np.float64))
    return abs(v - reference) / float(np.spacing(dtype.type(abs(reference))))


def one_thread_cpu(x: np.ndarray, t: np.ndarray, repeats: int) -> float:
    """Seconds per element of the engine's sum on one thread, by that thread's CPU time."""
    from kldiv_cli.core.engine import total_loss

    runs = []
    for _ in range(repeats + 1):
        start = time.thread_time()
        total_loss(x, t, False, np.result_type(x, t), threads=1)
        runs.append(time.thread_time() - start)
    return min(runs) / t.size


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    from kldiv_cli.core import kernel

    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"numpy {np.__version__}, kldiv kernel: {kernel.accelerator()}"
    )
    rows, cols = (20_000, 100) if args.quick else (200_000, 100)
    per_element: dict[str, float] = {}
    for dtype in ("float16", "float32", "float64"):
        x, t = close_pair(rows, cols, dtype)
        n = t.size
        fns = peers(x, t)
        reference = exact(x, t)
        errors = {
            name: ulps(fn(), reference, np.dtype(dtype))
            for name, fn in fns.items()
            if "pass" not in name and "read" not in name
        }
        times = best_of(fns, args.repeats)
        ours = times["kldiv kl_div"]
        per_element[dtype] = ours / n
        print(f"\n{dtype}, {rows} x {cols} = {n:,} elements (near-identical distributions)")
        print(f"{'':32} {'Melem/s':>9} {'time/kldiv':>11} {'error (ulp)':>12}")
        for name, sec in times.items():
            err = f"{errors[name]:12.3g}" if name in errors else ""
            print(f"{name:32} {n / sec / 1e6:9.0f} {sec / ours:10.2f}x {err}")
        log_pass = times[f"np.log pass {dtype} (1 thread)"]
        torch_note = (
            f"{times['torch kl_div'] / ours:.1f}x torch's speed, "
            if "torch kl_div" in times
            else ""
        )
        floor = times["read x and t (2 threads)"]
        print(
            f"kldiv: {torch_note}{ours / log_pass:.2f}x the time of one np.log pass "
            f"(reading x and t once, on 2 threads: {floor / log_pass:.2f}x)"
        )
    print(
        "\nkldiv per element, wall clock: float16 / float32 time = "
        f"{per_element['float16'] / per_element['float32']:.2f}, "
        f"float64 / float32 = {per_element['float64'] / per_element['float32']:.2f}"
    )
    # Thread CPU time on one thread: what other load on the machine changes least.
    cpu = {d: one_thread_cpu(*close_pair(rows, cols, d), args.repeats) for d in per_element}
    print(
        "kldiv per element, one thread, CPU time: "
        + ", ".join(f"{d} {sec * 1e9:.2f} ns" for d, sec in cpu.items())
        + f"; float16 / float32 = {cpu['float16'] / cpu['float32']:.2f}"
    )


if __name__ == "__main__":
    main()
