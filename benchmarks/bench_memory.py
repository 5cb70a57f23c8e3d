"""Peak memory (RSS) and wall time of kldiv on files far larger than its memory bound.

    python benchmarks/bench_memory.py                          # this tree
    python benchmarks/bench_memory.py --before /path/to/older/tree   # side by side
    python benchmarks/bench_memory.py --only inspect-npy,gaussian --scale 0.25

Each case is one fresh process running kldiv, its peak RSS read from the kernel
(``VmHWM`` of ``/proc/self/status`` at exit: ``tests.helpers.peak_rss``) and its wall
time measured around it. The
files are written once into a temporary folder (``--dir`` to keep them), at the sizes
of the cases people hit:

* ``inspect-npy``: a 1 GiB float32 ``.npy`` (8192 x 32768 logits);
* ``inspect-kld``: a 130 MB llama.cpp ``.kld`` (2040 rows of a 32000 vocabulary);
* ``inspect-csv``: a 300 MB CSV of 50 columns;
* ``compare-3d`` / ``compute-3d``: two (1, 2040, 32000) float32 safetensors tensors
  (a batch-1 dump), and the same data as 2-D ``.npy`` for reference (``*-2d``);
* ``compute-list``: two 206 MB Parquet files of one fixed-size-list column;
* ``gaussian``: MU and LOGVAR .npy files of 25 MB each.

``--before TREE`` runs every case with ``PYTHONPATH=TREE`` too (an older checkout of
kldiv) and prints both. The data are random; the numbers each command prints are not
compared here (the tests do that).
"""

from __future__ import annotations

import argparse
import json
import os
import struct
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(HERE))
from tests.helpers import peak_rss  # noqa: E402  (the one peak-RSS runner)


def _npy(path: Path, shape: tuple[int, ...], seed: int, scale: float = 3.0) -> Path:
    """A float32 .npy of random logits, written block by block (bounded memory)."""
    rng = np.random.default_rng(seed)
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=shape)
    flat = out.reshape(-1, shape[-1])
    step = max(1, (1 << 24) // shape[-1])
    for i in range(0, len(flat), step):
        block = rng.standard_normal((min(step, len(flat) - i), shape[-1]), dtype=np.float32)
        flat[i : i + step] = block * np.float32(scale)
    out.flush()
    del out, flat
    return path


def _safetensors(path: Path, source: Path) -> Path:
    """The array of a .npy as the one tensor of a safetensors file."""
    a = np.load(source, mmap_mode="r")
    text = json.dumps(
        {"logits": {"dtype": "F32", "shape": list(a.shape), "data_offsets": [0, a.nbytes]}}
    ).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text)
        flat = a.reshape(-1, a.shape[-1])
        for i in range(0, len(flat), 256):
            f.write(np.ascontiguousarray(flat[i : i + 256]).tobytes())
    return path


def _kld(path: Path, n_vocab: int, n_ctx: int, n_chunk: int, seed: int) -> Path:
    """A llama.cpp .kld file of random quantised log-probabilities."""
    rng = np.random.default_rng(seed)
    rows = (n_ctx - 1 - n_ctx // 2) * n_chunk
    units = 2 * ((n_vocab + 1) // 2) + 4
    with open(path, "wb") as f:
        f.write(b"_logits_" + struct.pack("<iii", n_ctx, n_vocab, n_chunk))
        f.write(rng.integers(0, n_vocab, n_ctx * n_chunk, dtype="<i4").tobytes())
        for i in range(0, rows, 64):
            n = min(64, rows - i)
            block = rng.integers(0, 65535, (n, units), dtype="<u2")
            params = np.empty((n, 2), "<f4")
            params[:, 0] = 20.0 / 65535
            params[:, 1] = -25.0
            block[:, :4] = params.view("<u2")
            f.write(block.tobytes())
    return path


def _list_parquet(path: Path, rows: int, width: int, seed: int) -> Path:
    """A Parquet file of one fixed-size-list column (teacher logits as exporters write
    them), in row groups of 256 rows."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    field = pa.field("logits", pa.list_(pa.float32(), width))
    with pq.ParquetWriter(path, pa.schema([field]), compression="none") as w:
        for i in range(0, rows, 256):
            n = min(256, rows - i)
            values = pa.array(rng.standard_normal(n * width, dtype=np.float32))
            column = pa.FixedSizeListArray.from_arrays(values, width)
            w.write_table(pa.table({"logits": column}))
    return path


def _csv(path: Path, megabytes: int, seed: int) -> Path:
    """A CSV of 50 probability-like columns, ``megabytes`` long (one block repeated)."""
    rng = np.random.default_rng(seed)
    block = "".join(",".join(f"{v:.6f}" for v in row) + "\n" for row in rng.random((2000, 50)))
    data = block.encode()
    with open(path, "wb") as f:
        f.write((",".join(f"c{j}" for j in range(50)) + "\n").encode())
        for _ in range(max(1, (megabytes << 20) // len(data))):
            f.write(data)
    return path


def files(folder: Path, scale: float) -> dict[str, Callable[[], Path]]:
    """Each input by name, written on first use."""
    rows = max(2, int(2040 * scale))
    made: dict[str, Path] = {}

    def once(name: str, make: Callable[[Path], Path]) -> Callable[[], Path]:
        def get() -> Path:
            if name not in made:
                made[name] = make(folder / name)
            return made[name]

        return get

    big = once("big.npy", lambda p: _npy(p, (max(2, int(8192 * scale)), 32768), 1))
    x2 = once("x2.npy", lambda p: _npy(p, (rows, 32000), 2))
    t2 = once("t2.npy", lambda p: _npy(p, (rows, 32000), 3))
    return {
        "big.npy": big,
        "big.csv": once("big.csv", lambda p: _csv(p, int(300 * scale), 9)),
        "base.kld": once("base.kld", lambda p: _kld(p, 32000, 512, max(1, int(8 * scale)), 4)),
        "x2.npy": x2,
        "t2.npy": t2,
        "x3.safetensors": once(
            "x3.safetensors", lambda p: _safetensors(p, _reshaped(x2(), folder / "x3.npy"))
        ),
        "t3.safetensors": once(
            "t3.safetensors", lambda p: _safetensors(p, _reshaped(t2(), folder / "t3.npy"))
        ),
        "x.parquet": once("x.parquet", lambda p: _list_parquet(p, int(1600 * scale), 32000, 5)),
        "t.parquet": once("t.parquet", lambda p: _list_parquet(p, int(1600 * scale), 32000, 6)),
        "mu.npy": once("mu.npy", lambda p: _npy(p, (int(51200 * scale), 128), 7, 1.0)),
        "logvar.npy": once("logvar.npy", lambda p: _npy(p, (int(51200 * scale), 128), 8, 0.5)),
    }


def _reshaped(source: Path, path: Path) -> Path:
    """``source``'s 2-D array as one batch: (1, rows, classes), a header rewrite."""
    a = np.load(source, mmap_mode="r")
    out = np.lib.format.open_memmap(path, mode="w+", dtype=a.dtype, shape=(1, *a.shape))
    for i in range(0, len(a), 256):
        out[0, i : i + 256] = a[i : i + 256]
    out.flush()
    return path


SOFT = ["--input-transform", "log-softmax", "--target-transform", "softmax", "-r", "batchmean"]
#: name -> (argv with file names to resolve, what it measures)
CASES: dict[str, tuple[list[str], str]] = {
    "inspect-npy": (["inspect", "@big.npy", "-q"], "inspect, 1 GiB .npy"),
    "inspect-kld": (["inspect", "@base.kld", "-q"], "inspect, 130 MB .kld"),
    "inspect-csv": (["inspect", "@big.csv", "-q"], "inspect, 300 MB CSV"),
    "compare-3d": (
        ["compare", "@x3.safetensors", "@t3.safetensors", "-q"],
        "compare, (1, 2040, 32000) safetensors",
    ),
    "compare-2d": (["compare", "@x2.npy", "@t2.npy", "-q"], "compare, same data (2040, 32000)"),
    "compute-3d": (
        ["compute", "@x3.safetensors", "@t3.safetensors", *SOFT, "-q"],
        "compute, (1, 2040, 32000) safetensors",
    ),
    "compute-2d": (
        ["compute", "@x2.npy", "@t2.npy", *SOFT, "-q"],
        "compute, same data (2040, 32000)",
    ),
    "compute-list": (
        ["compute", "@x.parquet", "@t.parquet", *SOFT, "-q"],
        "compute, 2 x 206 MB list-column Parquet",
    ),
    "gaussian": (["gaussian", "@mu.npy", "@logvar.npy", "-q"], "gaussian, 2 x 25 MB .npy"),
}


def measure(tree: Path, argv: list[str]) -> tuple[float, float, int]:
    """(peak RSS in MB, wall seconds, exit code) of ``kldiv ARGV`` run from ``tree``."""
    start = time.perf_counter()
    code, err, peak = peak_rss(*argv, env={**os.environ, "PYTHONPATH": str(tree)})
    wall = time.perf_counter() - start
    if code not in (0, 1):
        print(f"  {' '.join(argv)}: exit {code}: {err[-300:]}", file=sys.stderr)
    return peak, wall, code


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, help="an older kldiv tree to run side by side")
    parser.add_argument("--only", help="comma-separated case names")
    parser.add_argument("--scale", type=float, default=1.0, help="file sizes times this")
    parser.add_argument("--dir", type=Path, help="where to write the files (kept)")
    args = parser.parse_args()
    names = args.only.split(",") if args.only else list(CASES)
    trees = [("before", args.before)] if args.before else []
    trees.append(("after", HERE))
    with tempfile.TemporaryDirectory(prefix="kldiv-mem-") as tmp:
        folder = args.dir or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        inputs = files(folder, args.scale)
        head = f"{'case':<14} {'what':<40}"
        for label, _ in trees:
            head += f" {label + ' MB':>10} {label + ' s':>9}"
        print(head)
        for name in names:
            argv, what = CASES[name]
            resolved = [str(inputs[a[1:]]()) if a.startswith("@") else a for a in argv]
            line = f"{name:<14} {what:<40}"
            for _, tree in trees:
                rss, wall, _ = measure(tree, resolved)
                line += f" {rss:>10.0f} {wall:>9.2f}"
            print(line, flush=True)


if __name__ == "__main__":
    main()
