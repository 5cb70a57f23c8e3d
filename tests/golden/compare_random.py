"""Randomized comparison of kl_div / kl_div_grad against real PyTorch (a developer check).

    pip install torch==2.13.0 && python tests/golden/compare_random.py [N]

Draws N cases over shapes (broadcast, 0-d, empty), dtypes, reductions and log_target,
with NaN, +-inf, zeros, negative and >1 values injected, and compares forward values and
both gradients: same shape, dtype and NaN/inf pattern, values within a tolerance for the
result dtype. Prints each mismatch and a count. Not part of the test suite (needs torch).
"""

import random
import sys
import warnings

import numpy as np
import torch
import torch.nn.functional as F

from kldiv_cli import kl_div, kl_div_grad

SHAPES = [(), (0,), (3,), (2, 3), (3, 0), (0, 3), (2, 3, 4), (1, 3), (3, 1), (2, 1, 3)]
DTYPES = ["float16", "float32", "float64"]
RTOL = {"float16": 1e-2, "float32": 1e-5, "float64": 1e-10}
SPECIALS = [np.nan, np.inf, -np.inf, 0.0, -0.0, -0.5, 3.0]


def draw(rng: np.random.Generator, shape, dtype) -> np.ndarray:
    a = np.asarray(rng.normal(size=shape) * rng.choice([0.5, 2, 10]))
    if a.size:
        a = np.where(rng.random(a.shape) < 0.15, rng.choice(SPECIALS, size=a.shape), a)
    return np.asarray(a).astype(dtype)


def same(mine, theirs, dtype: str) -> bool:
    a = np.asarray(mine)
    b = theirs.detach().numpy()
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    for test in (np.isnan, np.isposinf, np.isneginf):
        if not np.array_equal(test(a), test(b)):
            return False
    f = np.isfinite(b)
    rtol = RTOL[dtype]  # the precision of torch's result (may be narrower than its dtype)
    scale = np.max(np.abs(b[f]), initial=0)
    return bool(np.allclose(a[f].astype(float), b[f].astype(float), rtol=rtol, atol=rtol * scale))


def main(cases: int) -> None:
    warnings.simplefilter("ignore")
    rng = np.random.default_rng(123)
    pick = random.Random(5)
    done = failures = 0
    while done < cases:
        xs, ts = pick.choice(SHAPES), pick.choice(SHAPES)
        try:
            np.broadcast_shapes(xs, ts)
        except ValueError:
            continue
        x = draw(rng, xs, pick.choice(DTYPES))
        t = draw(rng, ts, pick.choice(DTYPES))
        if pick.random() < 0.5:
            t = np.asarray(np.abs(t)).astype(t.dtype)
        reduction, log_target = (
            pick.choice(["none", "sum", "mean", "batchmean"]),
            pick.random() < 0.4,
        )
        tx = torch.from_numpy(x.copy()).requires_grad_(True)
        tt = torch.from_numpy(t.copy()).requires_grad_(True)
        out = F.kl_div(tx, tt, reduction=reduction, log_target=log_target)
        dtype = str(out.dtype).removeprefix("torch.")
        grad_output = rng.normal(size=out.shape).astype(dtype) if reduction == "none" else None
        out.backward(torch.from_numpy(grad_output) if grad_output is not None else None)
        gx, gt = kl_div_grad(x, t, reduction, log_target, grad_output)
        # An aggregate is the float64 value of the data rounded once; torch's own number
        # is only as precise as its narrower operand (it computes xlogy(t, t) and exp(t)
        # in the target's dtype), so that is the tolerance against torch.
        narrow = min((x.dtype, t.dtype), key=lambda d: d.itemsize).name
        results = {
            "forward": same(
                kl_div(x, t, reduction, log_target),
                out,
                dtype if reduction == "none" else narrow,
            ),
            "grad_input": same(gx, tx.grad, dtype),
            "grad_target": same(gt, tt.grad, dtype),
        }
        done += 1
        if not all(results.values()):
            failures += 1
            bad = [k for k, ok in results.items() if not ok]
            print(
                f"MISMATCH {bad}: input {xs} {x.dtype}, target {ts} {t.dtype}, {reduction}, log_target={log_target}"
            )
    print(f"{done} cases, {failures} with a mismatch")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1500)
