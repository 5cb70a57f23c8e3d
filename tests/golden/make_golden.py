"""Write the golden files the tests compare against, from real PyTorch.

Run by hand when the cases change (torch is never a dependency of kldiv or its tests):

    pip install torch==2.13.0
    python tests/golden/make_golden.py

Writes ``cases.json`` (what each case calls) and ``arrays.npz`` (its operands and
torch's results) next to this file.
"""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

HERE = Path(__file__).parent
LOG_HALF = math.log(0.5)
INF = math.inf
NAN = math.nan

# The spec's edge-case tables: (input, target) element pairs.
EDGE_PLAIN = [
    (LOG_HALF, 0.25),
    (LOG_HALF, 0.0),
    (LOG_HALF, -0.0),
    (-INF, 0.0),
    (INF, 0.0),
    (NAN, 0.0),
    (-INF, 0.25),
    (INF, 0.25),
    (LOG_HALF, -0.25),
    (LOG_HALF, NAN),
    (LOG_HALF, INF),
    (0.0, INF),
    (1.0, INF),
    (LOG_HALF, -INF),
    (LOG_HALF, 2.0),
]
EDGE_LOG = [
    (LOG_HALF, math.log(0.25)),
    (LOG_HALF, -INF),
    (-INF, -INF),
    (-INF, math.log(0.25)),
    (INF, math.log(0.25)),
    (LOG_HALF, INF),
    (LOG_HALF, NAN),
    (LOG_HALF, 0.0),
    (LOG_HALF, 1.0),
    (LOG_HALF, -200.0),
    (LOG_HALF, 100.0),
]
REDUCTIONS = ["none", "sum", "mean", "batchmean"]
DTYPES = ["float16", "float32", "float64"]


class Writer:
    def __init__(self) -> None:
        self.cases: list[dict] = []
        self.arrays: dict[str, np.ndarray] = {}

    def add(self, meta: dict, **arrays: np.ndarray) -> None:
        i = len(self.cases)
        meta = dict(meta, id=i, arrays=sorted(arrays))
        self.cases.append(meta)
        for name, a in arrays.items():
            self.arrays[f"c{i}_{name}"] = np.asarray(a)

    def save(self) -> None:
        (HERE / "cases.json").write_text(json.dumps(self.cases, indent=1) + "\n")
        np.savez_compressed(HERE / "arrays.npz", **self.arrays)


def kl_case(
    w: Writer,
    x: np.ndarray,
    t: np.ndarray,
    reduction: str,
    log_target: bool,
    tag: str,
    grad_output: np.ndarray | None = None,
    **legacy,
) -> None:
    tx = torch.from_numpy(x.copy()).requires_grad_(True)
    tt = torch.from_numpy(t.copy()).requires_grad_(True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = F.kl_div(tx, tt, reduction=reduction, log_target=log_target, **legacy)
    arrays = dict(x=x, t=t, out=out.detach().numpy())
    if out.numel() or out.dim() == 0:
        go = torch.ones_like(out) if grad_output is None else torch.from_numpy(grad_output)
        out.backward(go)
        arrays.update(gx=tx.grad.numpy(), gt=tt.grad.numpy())
        if grad_output is not None:
            arrays["go"] = grad_output
    w.add(
        dict(op="kl_div", reduction=reduction, log_target=log_target, tag=tag, **legacy), **arrays
    )


def values(rng: np.random.Generator, shape, dtype, kind: str) -> np.ndarray:
    """Random log-probabilities (kind 'x'), probabilities ('p') or log-probabilities ('logp')."""
    p = (
        rng.dirichlet(np.ones(shape[-1]), size=shape[:-1])
        if shape and shape[-1]
        else rng.random(shape)
    )
    p = np.asarray(p)
    if kind == "p":
        return np.asarray(p.astype(dtype))
    with np.errstate(divide="ignore"):
        return np.asarray(np.log(p).astype(dtype))


def inject(rng: np.random.Generator, a: np.ndarray, specials) -> np.ndarray:
    a = a.copy()
    flat = a.reshape(-1)
    if flat.size:
        idx = rng.choice(flat.size, size=min(len(specials), flat.size), replace=False)
        flat[idx] = np.asarray(specials[: len(idx)], dtype=a.dtype)
    return a


def main() -> None:
    torch.set_num_threads(1)
    rng = np.random.default_rng(20261122)
    w = Writer()

    for dtype in ("float32", "float64"):
        for table, lt in ((EDGE_PLAIN, False), (EDGE_LOG, True)):
            for k, (xv, tv) in enumerate(table):
                x = np.array([xv], dtype=dtype)
                t = np.array([tv], dtype=dtype)
                for r in ("none", "sum"):
                    kl_case(w, x, t, r, lt, f"edge-{k}")

    shapes = [(4, 7), (2, 3, 5), (6,), (1, 9), (5, 1)]
    for shape in shapes:
        for dtype in DTYPES:
            for lt in (False, True):
                x = values(rng, shape, dtype, "x")
                t = values(rng, shape, dtype, "logp" if lt else "p")
                for r in REDUCTIONS:
                    go = rng.standard_normal(shape).astype(dtype) if r == "none" else None
                    kl_case(w, x, t, r, lt, "random", go)

    # Hostile values: NaN, +-inf, zeros, negatives, values > 1, on either side.
    specials = [NAN, INF, -INF, 0.0, -0.0, -0.5, 3.0, 1e-30]
    for dtype in DTYPES:
        for lt in (False, True):
            for r in REDUCTIONS:
                x = inject(rng, values(rng, (6, 8), dtype, "x"), specials[::-1])
                t = inject(rng, values(rng, (6, 8), dtype, "logp" if lt else "p"), specials)
                kl_case(w, x, t, r, lt, "specials")

    broadcast = [
        ((3, 5), (5,)),
        ((3, 1), (3, 5)),
        ((5,), (3, 5)),
        ((), (3, 5)),
        ((2, 1, 5), (3, 5)),
        ((3, 5), ()),
        ((1, 5), (4, 1)),
    ]
    for xs, ts in broadcast:
        for lt in (False, True):
            for r in REDUCTIONS:
                x = values(rng, xs, "float64", "x")
                t = values(rng, ts, "float64", "logp" if lt else "p")
                out_shape = np.broadcast_shapes(xs, ts)
                go = rng.standard_normal(out_shape) if r == "none" else None
                kl_case(w, x, t, r, lt, "broadcast", go)

    # Empty broadcasts: exp/xlogy gradients run at the target's own shape, so a zero
    # target still gives NaN there, and a zero upstream gradient gives 0 elsewhere.
    for xs, ts, tv in [((3, 0), (3, 1), [0.0, -0.5, 0.25]), ((0, 3), (3,), [0.0, 0.5, -1.0])]:
        for lt in (False, True):
            for r in REDUCTIONS:
                x = np.zeros(xs)
                t = np.array(tv).reshape(ts)
                kl_case(
                    w,
                    x,
                    np.log(np.abs(t) + 0.1) if lt else t,
                    r,
                    lt,
                    "empty-broadcast",
                    np.zeros(np.broadcast_shapes(xs, ts)) if r == "none" else None,
                )
    for shape in [(0, 5), (3, 0), (0,), ()]:
        for dtype in ("float32", "float64"):
            for r in REDUCTIONS:
                x = values(rng, shape, dtype, "x")
                t = values(rng, shape, dtype, "p")
                kl_case(w, x, t, r, False, "empty-or-0d")

    mixed = [
        ("float32", "float64", (3, 4), (3, 4)),
        ("float16", "float32", (3, 4), (3, 4)),
        ("float64", "float32", (), (3, 4)),
        ("float32", "float64", (3, 4), ()),
        ("float64", "float16", (), (3, 4)),
        ("float16", "float64", (3, 4), (3, 4)),
        ("float64", "float32", (), ()),
        ("float64", "float32", (3, 4), (3, 4)),
        ("float64", "float16", (3, 4), (3, 4)),
        ("float32", "float16", (2, 4), (2, 4)),
    ]
    for xd, td, xs, ts in mixed:
        for lt in (False, True):
            for r in ("sum", "batchmean", "none"):
                x = values(rng, xs, xd, "x")
                t = values(rng, ts, td, "logp" if lt else "p")
                kl_case(w, x, t, r, lt, "mixed-dtype")

    # float16 sum overflows where mean does not.
    x = np.full((300,), -1.0, dtype="float16")
    t = np.full((300,), 300.0, dtype="float16")
    for r in REDUCTIONS:
        kl_case(w, x, t, r, False, "f16-overflow")

    for legacy in [
        dict(size_average=False),
        dict(reduce=False),
        dict(size_average=True, reduce=True),
        dict(size_average=False, reduce=True),
    ]:
        for r in ("mean", "batchmean"):
            x = values(rng, (3, 4), "float64", "x")
            t = values(rng, (3, 4), "float64", "p")
            kl_case(w, x, t, r, False, "legacy", **legacy)

    for dtype in DTYPES:
        for temperature in (1.0, 0.5, 3.0):
            logits = (rng.standard_normal((5, 6)) * 4).astype(dtype)
            logits[1, [0, 3]] = -np.inf
            logits[2, :] = -np.inf
            logits[3, 0] = 60.0
            for axis in (-1, 0):
                scaled = torch.from_numpy(logits) / temperature
                for op, fn in (("softmax", F.softmax), ("log_softmax", F.log_softmax)):
                    w.add(
                        dict(op=op, axis=axis, temperature=temperature, tag="transform"),
                        x=logits,
                        out=fn(scaled, dim=axis).numpy(),
                    )
    for op, fn in (("softmax", F.softmax), ("log_softmax", F.log_softmax)):
        scalar = np.array(2.5)
        w.add(
            dict(op=op, axis=-1, temperature=1.0, tag="transform-0d"),
            x=scalar,
            out=fn(torch.from_numpy(scalar), dim=-1).numpy(),
        )

    w.save()
    print(f"{len(w.cases)} cases, torch {torch.__version__}")


if __name__ == "__main__":
    main()
