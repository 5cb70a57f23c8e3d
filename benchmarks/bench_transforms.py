"""Distillation's KL on logits: ``kldiv compute --input-transform log-softmax
--target-transform softmax`` against torch's ``F.kl_div(F.log_softmax(s), F.softmax(t))``.

    python benchmarks/bench_transforms.py                  # 625 x 32000 float32 per side
    python benchmarks/bench_transforms.py --rows 64 --repeats 2   # a quick check

kldiv's time is the CLI's work with its start-up taken out: the best wall time of the
command on the two .npy files, less the best wall time of the same command on tiny
files (interleaved, so a change in the machine's load hits both alike). torch's is the
three calls on tensors already in memory (its reading is not counted), on every core.
Speed-up is torch's time over kldiv's (above 1: kldiv is faster); the answers are
printed with their distance to each other (torch's is float32 throughout).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PY = sys.executable
KLDIV = [PY, "-m", "kldiv_cli"] if shutil.which("kldiv") is None else [shutil.which("kldiv") or ""]
OPTIONS = ["--input-transform", "log-softmax", "--target-transform", "softmax", "-r", "batchmean"]


def make_logits(folder: Path, rows: int, vocab: int) -> tuple[Path, Path]:
    """Student and teacher logits (teacher = student + N(0, 0.01^2)), float32."""
    import numpy as np

    rng = np.random.default_rng(0)
    s = (rng.standard_normal((rows, vocab), dtype=np.float32) * 3).astype(np.float32)
    t = s + np.float32(0.01) * rng.standard_normal((rows, vocab), dtype=np.float32)
    paths = folder / f"s_{rows}x{vocab}.npy", folder / f"t_{rows}x{vocab}.npy"
    for path, a in zip(paths, (s, t)):
        np.save(path, a)
    return paths


def _wall(cmd: list[str]) -> tuple[float, str]:
    start = time.perf_counter()
    done = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return time.perf_counter() - start, done.stdout.strip()


def kldiv_work(s: Path, t: Path, tiny: tuple[Path, Path], repeats: int) -> tuple[float, float]:
    """The CLI's work on ``s`` and ``t`` (its best wall time less that of the same command
    on the ``tiny`` files) and its answer."""
    big = [*KLDIV, "compute", str(s), str(t), *OPTIONS, "-q"]
    small = [*KLDIV, "compute", str(tiny[0]), str(tiny[1]), *OPTIONS, "-q"]
    runs: dict[str, list[float]] = {"big": [], "small": []}
    answer = ""
    for _ in range(repeats):
        seconds, answer = _wall(big)
        runs["big"].append(seconds)
        runs["small"].append(_wall(small)[0])
    return min(runs["big"]) - min(runs["small"]), float(answer)


def torch_time(s: Path, t: Path, repeats: int) -> tuple[float, float] | None:
    """torch's best time for the three calls on tensors in memory, and its answer; None
    without torch."""
    try:
        import numpy as np
        import torch
        import torch.nn.functional as F
    except ImportError:
        return None
    ts, tt = torch.from_numpy(np.load(s)), torch.from_numpy(np.load(t))
    best, value = float("inf"), 0.0
    for _ in range(repeats + 1):
        start = time.perf_counter()
        value = float(F.kl_div(F.log_softmax(ts, -1), F.softmax(tt, -1), reduction="batchmean"))
        best = min(best, time.perf_counter() - start)
    return best, value


def measure(folder: Path, rows: int, vocab: int, repeats: int) -> dict[str, float]:
    """Prints the comparison and returns the seconds of each (``torch`` missing without
    torch)."""
    s, t = make_logits(folder, rows, vocab)
    tiny = make_logits(folder, 2, 4)
    ours, answer = kldiv_work(s, t, tiny, repeats)
    print(f"{rows} x {vocab} float32 logits per side, best of {repeats}")
    print(f"kldiv compute (start-up aside) {ours:8.3f} s   answer {answer:.9g}")
    result = {"kldiv": ours}
    peer = torch_time(s, t, repeats)
    if peer is not None:
        result["torch"] = peer[0]
        rel = abs(peer[1] - answer) / abs(answer) if answer else float("nan")
        print(
            f"torch F.kl_div(F.log_softmax, F.softmax) {peer[0]:8.3f} s   answer {peer[1]:.9g} "
            f"(rel. to kldiv {rel:.1e})   speed-up {peer[0] / ours:.2f}x   target >= 4x"
        )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rows", type=int, default=625)
    parser.add_argument("--vocab", type=int, default=32_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--dir", type=Path, help="where the data files go (default: a temp dir)")
    args = parser.parse_args()
    folder = args.dir or Path(tempfile.mkdtemp(prefix="kldiv-bench-transforms-"))
    folder.mkdir(parents=True, exist_ok=True)
    try:
        measure(folder, args.rows, args.vocab, args.repeats)
    finally:
        if args.dir is None:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
