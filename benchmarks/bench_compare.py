"""``kldiv compare`` against the scripts people write for the same statistics, in one run.

    python benchmarks/bench_compare.py                       # 4096 x 128000 float32 per side (2 GB each)
    python benchmarks/bench_compare.py --rows 64 --vocab 1000 --repeats 1   # a quick check
    python benchmarks/bench_compare.py --torch-python /path/to/venv/bin/python
    python benchmarks/bench_compare.py --rows 2000 --vocab 32000 --topk 64 --no-peers

Peers, each a fresh process reading the same two .npy files (memory-mapped, in blocks
of rows, so that none needs the 4 GB at once):

* ``numpy32`` / ``numpy64``: a NumPy script (log-softmax, KL both ways, JS, TV, argmax,
  mean ± stderr and percentiles), written the plain way, in the logits' float32 or in
  float64;
* ``torch32``: the same in torch on the CPU, float32 as training code has it (only
  when the torch interpreter is given or importable here).

Each command is timed as the best of ``--repeats`` runs, run alternately so a change
in a shared machine's load hits all alike. Ratios are kldiv's time over the peer's
(below 1: kldiv is faster). The mean KL of each is printed too, with its relative
distance to kldiv's: torch's float32 pipeline is visibly off on close distributions.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PY = sys.executable
KLDIV = [PY, "-m", "kldiv_cli"] if shutil.which("kldiv") is None else [shutil.which("kldiv") or ""]

NUMPY_PEER = r"""
import json, sys
import numpy as np
a = np.load(sys.argv[1], mmap_mode="r"); b = np.load(sys.argv[2], mmap_mode="r")
DTYPE = np.dtype(sys.argv[3])
step = max(1, (1 << 22) // a.shape[1])
parts = {k: [] for k in ("kl", "kl_reverse", "js", "tv", "agree")}
def log_softmax(x):
    z = x - x.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))
for i in range(0, len(a), step):
    x = np.asarray(a[i:i + step], dtype=DTYPE); y = np.asarray(b[i:i + step], dtype=DTYPE)
    lp, lq = log_softmax(x), log_softmax(y)
    p, q = np.exp(lp), np.exp(lq)
    lm = np.log((p + q) / 2)
    parts["kl"].append((p * (lp - lq)).sum(axis=1))
    parts["kl_reverse"].append((q * (lq - lp)).sum(axis=1))
    parts["js"].append(0.5 * (p * (lp - lm)).sum(axis=1) + 0.5 * (q * (lq - lm)).sum(axis=1))
    parts["tv"].append(0.5 * np.abs(p - q).sum(axis=1))
    parts["agree"].append(x.argmax(axis=1) == y.argmax(axis=1))
out = {}
fr = [0, 0.001, 0.01, 0.05, 0.1, 0.5, 0.9, 0.95, 0.99, 0.999, 1]
for k in ("kl", "kl_reverse", "js", "tv"):
    v = np.concatenate(parts[k]); n = len(v)
    out[k] = {"mean": v.mean(), "stderr": float(np.sqrt((np.mean(v * v) - v.mean() ** 2) / (n - 1))),
              "percentiles": np.quantile(v, fr).tolist()}
agree = np.concatenate(parts["agree"]).mean()
out["top1_agreement"] = {"value": float(agree)}
print(json.dumps(out, default=float))
"""

TORCH_PEER = r"""
import json, sys
import numpy as np
import torch
import torch.nn.functional as F
torch.set_num_threads(int(sys.argv[3]))
a = np.load(sys.argv[1], mmap_mode="r"); b = np.load(sys.argv[2], mmap_mode="r")
step = max(1, (1 << 22) // a.shape[1])
parts = {k: [] for k in ("kl", "kl_reverse", "js", "tv", "agree")}
for i in range(0, len(a), step):
    x = torch.from_numpy(np.ascontiguousarray(a[i:i + step])); y = torch.from_numpy(np.ascontiguousarray(b[i:i + step]))
    lp, lq = F.log_softmax(x, dim=-1), F.log_softmax(y, dim=-1)
    p, q = lp.exp(), lq.exp()
    lm = torch.log((p + q) / 2)
    parts["kl"].append(F.kl_div(lq, lp, reduction="none", log_target=True).sum(-1))
    parts["kl_reverse"].append(F.kl_div(lp, lq, reduction="none", log_target=True).sum(-1))
    parts["js"].append(0.5 * F.kl_div(lm, lp, reduction="none", log_target=True).sum(-1)
                       + 0.5 * F.kl_div(lm, lq, reduction="none", log_target=True).sum(-1))
    parts["tv"].append(0.5 * (p - q).abs().sum(-1))
    parts["agree"].append(x.argmax(-1) == y.argmax(-1))
out = {}
fr = torch.tensor([0, 0.001, 0.01, 0.05, 0.1, 0.5, 0.9, 0.95, 0.99, 0.999, 1], dtype=torch.float64)
for k in ("kl", "kl_reverse", "js", "tv"):
    v = torch.cat(parts[k]).double(); n = len(v)
    out[k] = {"mean": v.mean().item(), "stderr": ((v.pow(2).mean() - v.mean() ** 2) / (n - 1)).sqrt().item(),
              "percentiles": torch.quantile(v, fr).tolist()}
out["top1_agreement"] = {"value": torch.cat(parts["agree"]).double().mean().item()}
print(json.dumps(out))
"""


def make_data(folder: Path, rows: int, vocab: int, noise: float) -> tuple[Path, Path]:
    """Base logits and a close candidate (base + N(0, noise²)), float32, written in blocks."""
    import numpy as np

    rng = np.random.default_rng(0)
    paths = folder / "base.npy", folder / "cand.npy"
    out = [np.lib.format.open_memmap(p, "w+", np.float32, (rows, vocab)) for p in paths]
    step = max(1, (1 << 24) // vocab)
    for i in range(0, rows, step):
        n = min(step, rows - i)
        base = (rng.standard_normal((n, vocab), dtype=np.float32) * 3).astype(np.float32)
        out[0][i : i + n] = base
        out[1][i : i + n] = base + noise * rng.standard_normal((n, vocab), dtype=np.float32)
    for m in out:
        m.flush()
    del out
    return paths


def timed(cmd: list[str]) -> tuple[float, str]:
    start = time.perf_counter()
    done = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return time.perf_counter() - start, done.stdout


def torch_python(given: str | None) -> str | None:
    if given:
        return given
    try:
        import torch  # noqa: F401
    except ImportError:
        return None
    return PY


def read_seconds(path: Path, read, cold: bool) -> float:
    """Seconds to read every block of ``path`` into memory (best of 3). ``cold``: the
    file's pages are dropped from the page cache first (``posix_fadvise`` DONTNEED), so
    the read comes from the disk."""
    import os

    import numpy as np

    best = float("inf")
    for _ in range(3):
        if cold:
            fd = os.open(path, os.O_RDONLY)
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            os.close(fd)
        start = time.perf_counter()
        for block in read():
            # A memory-mapped block is read when touched: copy it, as a reader must.
            np.array(getattr(block, "logprobs", block))
        best = min(best, time.perf_counter() - start)
    return best


def topk_section(a: Path, b: Path, k: int, repeats: int) -> None:
    """A top-K reference against the dense file it replaces: bytes, the time to read each
    (kldiv's own readers, in this process: every block of rows, decoded and checked), and
    compare end to end with each as the reference."""
    from kldiv_cli.io.sources import ReadOptions, open_source
    from kldiv_cli.io.topk import open_topk

    top = a.with_name(f"base_top{k}.parquet")
    subprocess.run([*KLDIV, "topk", str(a), "-k", str(k), "-o", str(top), "-q"], check=True)
    dense = open_source(str(a), ReadOptions())
    width = dense.shape[-1]
    rows = max(1, (1 << 17) // width)
    print(
        f"top-{k} reference: {top.stat().st_size / 1e6:.1f} MB against "
        f"{a.stat().st_size / 1e6:.1f} MB dense"
    )
    for cold in (False, True):
        dense_s = read_seconds(a, lambda: dense.iter_rows(rows), cold)
        sparse_s = read_seconds(top, lambda: open_topk(str(top)).blocks(rows), cold)
        where = "from disk" if cold else "page cache"
        print(
            f"read the reference ({where}): dense {dense_s:.3f} s, top-{k} {sparse_s:.3f} s "
            f"({dense_s / sparse_s:.1f}x faster)"
        )
    for name, ref in (("dense", a), (f"top-{k}", top)):
        best = min(
            timed([*KLDIV, "compare", str(ref), str(b), "-f", "json", "-q"])[0]
            for _ in range(repeats)
        )
        print(f"compare with the {name} reference: {best:.3f} s")


def side_by_side(
    folder: Path, a: Path, b: Path, repeats: int, tp: str | None, threads: int = 1
) -> dict[str, float]:
    """kldiv compare and its peers on ``a`` and ``b``, run in turn ``repeats`` times:
    prints the table and returns each one's best seconds."""
    import numpy as np

    (folder / "peer_numpy.py").write_text(NUMPY_PEER)
    (folder / "peer_torch.py").write_text(TORCH_PEER)
    commands = {"kldiv": [*KLDIV, "compare", str(a), str(b), "-f", "json", "-q"]}
    for bits in ("32", "64"):
        commands[f"numpy{bits}"] = [
            PY,
            str(folder / "peer_numpy.py"),
            str(a),
            str(b),
            f"float{bits}",
        ]
    if tp:
        commands["torch32"] = [tp, str(folder / "peer_torch.py"), str(a), str(b), str(threads)]
    best = {name: float("inf") for name in commands}
    outputs: dict[str, dict] = {}
    for _ in range(repeats):
        for name, cmd in commands.items():
            seconds, text = timed(cmd)
            best[name] = min(best[name], seconds)
            outputs[name] = json.loads(text)
    rows, vocab = np.load(a, mmap_mode="r").shape
    print(f"compare {rows} x {vocab} float32 per side, best of {repeats}")
    print(
        f"{'tool':<8} {'seconds':>9} {'ns/elem':>8} {'kldiv/peer':>11} {'mean KL':>14} {'rel. to kldiv':>14}"
    )
    ours = outputs["kldiv"]["kl"]["mean"]
    for name in commands:
        mean = outputs[name]["kl"]["mean"]
        rel = abs(mean - ours) / abs(ours) if ours else float("nan")
        print(
            f"{name:<8} {best[name]:>9.3f} {1e9 * best[name] / (rows * vocab):>8.2f} "
            f"{best['kldiv'] / best[name]:>11.3f} {mean:>14.8g} {rel:>14.2e}"
        )
    return best


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--rows", type=int, default=4096)
    ap.add_argument("--vocab", type=int, default=128_000)
    ap.add_argument("--noise", type=float, default=0.01, help="candidate = base + N(0, noise^2)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1, help="torch threads")
    ap.add_argument(
        "--torch-python", help="an interpreter with torch (default: this one, if it has torch)"
    )
    ap.add_argument("--dir", help="where the data files go (default: a temporary folder)")
    ap.add_argument("--topk", type=int, help="also time a top-K reference of this K (kldiv topk)")
    ap.add_argument("--no-peers", action="store_true", help="skip the peers (with --topk)")
    args = ap.parse_args()

    folder = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="kldiv-bench-compare-"))
    folder.mkdir(parents=True, exist_ok=True)
    try:
        a, b = make_data(folder, args.rows, args.vocab, args.noise)
        if args.topk:
            topk_section(a, b, args.topk, args.repeats)
            if args.no_peers:
                return
        side_by_side(folder, a, b, args.repeats, torch_python(args.torch_python), args.threads)
    finally:
        if not args.dir:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
