"""``kldiv estimate`` against the scripts people write for the same numbers, in one run.

    python benchmarks/bench_estimate.py                                   # 512 x 4096 tokens
    python benchmarks/bench_estimate.py --sequences 16 --tokens 64 --repeats 1   # a quick check
    python benchmarks/bench_estimate.py --torch-python /work/torchvenv/bin/python

Peers, each a fresh process reading the same three .npy files (float32 log-probs of the
policy and the reference, an int8 mask with ragged lengths):

* ``numpy64``: a float64 NumPy script computing the four estimators under the mask
  (token-mean) and the same diagnostics (ratio stats, χ² token/sequence, ESS, |Δlogp|,
  perplexities, percentiles), with NumPy's pairwise sums;
* ``torch32``: k1/k2/k3/abs as TRL and verl compute them (float32 on the CPU, masked
  token mean), when a torch interpreter is given.

Each command is timed as the best of ``--repeats`` runs, run alternately. Ratios are
kldiv's time over the peer's (below 1: kldiv is faster). The k3 of each is printed with
its relative distance to kldiv's (whose sums are exact).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

NUMPY_PEER = r"""
import json, sys
import numpy as np
a = np.load(sys.argv[1]).astype(np.float64); b = np.load(sys.argv[2]).astype(np.float64)
m = np.load(sys.argv[3]).astype(bool)
logr = (b - a)[m]
est = {"k1": -logr, "k2": 0.5 * logr**2, "k3": np.expm1(logr) - logr, "abs": np.abs(logr)}
out = {k: float(v.mean()) for k, v in est.items()}
for v in est.values():
    v.std(ddof=1); np.quantile(v, [0.001, 0.01, 0.05, 0.1, 0.5, 0.9, 0.95, 0.99, 0.999])
rho = np.exp(-logr)
stats = [rho.mean(), rho.min(), rho.max(), (rho > 2).mean(), (rho < 0.5).mean()]
stats.append(np.mean(np.exp(2 * np.clip(-logr, -20, 20))) - 1)
seq = np.where(m, a - b, 0.0).sum(axis=1)[m.any(axis=1)]
stats.append(np.mean(np.exp(2 * np.clip(seq, -20, 20))) - 1)
w = rho / rho.mean(); stats.append(1 / np.mean(w * w))
stats += [np.abs(logr).mean(), np.exp(-a[m].mean()), np.exp(-b[m].mean())]
print(json.dumps(out))
"""

TORCH_PEER = r"""
import json, sys
import numpy as np, torch
a = torch.from_numpy(np.load(sys.argv[1])); b = torch.from_numpy(np.load(sys.argv[2]))
m = torch.from_numpy(np.load(sys.argv[3]).astype(np.float32))
logr = b - a
est = {"k1": -logr, "k2": 0.5 * logr.square(), "k3": torch.exp(logr) - logr - 1, "abs": logr.abs()}
print(json.dumps({k: float((v * m).sum() / m.sum()) for k, v in est.items()}))
"""


def best_of(cmd: list[str], repeats: int) -> tuple[float, str]:
    best, out = float("inf"), ""
    for _ in range(repeats):
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
        best = min(best, time.perf_counter() - t0)
        out = proc.stdout
    return best, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sequences", type=int, default=512)
    parser.add_argument("--tokens", type=int, default=4096)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--torch-python", default=None)
    args = parser.parse_args()

    import numpy as np

    rng = np.random.default_rng(0)
    s, t = args.sequences, args.tokens
    logp = np.log(rng.uniform(0.01, 1.0, (s, t))).astype(np.float32)
    ref = (logp + rng.normal(0.0, 0.05, (s, t))).astype(np.float32)
    mask = (np.arange(t) < rng.integers(1, t + 1, s)[:, None]).astype(np.int8)
    with tempfile.TemporaryDirectory() as tmp:
        paths = [str(Path(tmp) / f"{n}.npy") for n in ("logp", "ref", "mask")]
        for p, arr in zip(paths, (logp, ref, mask)):
            np.save(p, arr)
        runs = {
            "kldiv": [sys.executable, "-m", "kldiv_cli", "estimate", paths[0], paths[1]]
            + ["--mask", paths[2], "-f", "json", "-q"],
            "numpy64": [sys.executable, "-c", NUMPY_PEER, *paths],
        }
        if args.torch_python:
            runs["torch32"] = [args.torch_python, "-c", TORCH_PEER, *paths]
        times = {name: float("inf") for name in runs}
        k3 = {}
        for _ in range(args.repeats):  # alternate, so a load change hits all alike
            for name, cmd in runs.items():
                elapsed, out = best_of(cmd, 1)
                times[name] = min(times[name], elapsed)
                k3[name] = json.loads(out)["k3"]
    tokens = int(mask.sum())
    print(f"{s} x {t} float32, {tokens} tokens under the mask, best of {args.repeats}")
    for name, seconds in times.items():
        ratio = times["kldiv"] / seconds
        off = abs(k3[name] - k3["kldiv"]) / abs(k3["kldiv"])
        print(
            f"  {name:8s} {seconds:7.3f} s  kldiv/peer {ratio:5.2f}  k3 {k3[name]:.12g} (rel. {off:.1e})"
        )


if __name__ == "__main__":
    main()
