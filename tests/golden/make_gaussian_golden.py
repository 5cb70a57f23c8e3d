"""Write ``gaussian.npz``, the golden values of the Gaussian KL, from real PyTorch.

Run by hand when the cases change (torch is never a dependency of kldiv or its tests):

    /work/torchvenv/bin/python tests/golden/make_gaussian_golden.py

For each case ``C`` the file holds the operands (``C__mu``, ``C__logvar`` and, with a
prior, ``C__prior_mu``, ``C__prior_logvar``; log-variances throughout) and:

* ``C__torch``: ``torch.distributions.kl_divergence(Normal(mu, std), Normal(mu2, std2))``
  in the case's dtype, ``std = exp(logvar / 2)``;
* ``C__torch64``: the same in float64 from the same (widened) values, and its reductions
  summed in float64 by torch: ``C__sum``, ``C__batch_mean`` (sum over dims, mean over
  the batch), ``C__per_dim`` (batch mean of each dim), ``C__per_row`` (sum over dims);
* ``C__own_sum``, ``C__own_batch_mean``: torch's sums of ``C__torch`` in the case's dtype
  (what a float32 training script logs);
* ``C__exact``: the KL of each element to 40 digits (mpmath, which torch's sympy brings),
  rounded to float64: the reference where torch's ``var_ratio − 1 − log(var_ratio)``
  cancels (posterior nearly equal to the prior).

Saved without pickles (``allow_pickle=False`` reads it).
"""

from __future__ import annotations

from pathlib import Path

import mpmath
import numpy as np
import torch
from torch.distributions import Normal, kl_divergence

HERE = Path(__file__).parent
mpmath.mp.dps = 40


def cases() -> dict[str, dict[str, np.ndarray]]:
    rng = np.random.default_rng(20261201)
    mu = rng.normal(0.0, 1.5, (6, 4))
    lv = rng.normal(-0.5, 1.0, (6, 4))
    pm = rng.normal(0.0, 1.0, (6, 4))
    plv = rng.normal(0.0, 0.7, (6, 4))
    tiny = rng.normal(0.0, 1.0, (6, 4))
    out = {
        "standard_f64": {"mu": mu, "logvar": lv},
        "standard_f32": {"mu": mu.astype(np.float32), "logvar": lv.astype(np.float32)},
        "prior_f64": {"mu": mu, "logvar": lv, "prior_mu": pm, "prior_logvar": plv},
        "prior_f32": {
            "mu": mu.astype(np.float32),
            "logvar": lv.astype(np.float32),
            "prior_mu": pm.astype(np.float32),
            "prior_logvar": plv.astype(np.float32),
        },
        "prior_per_dim_f64": {
            "mu": mu,
            "logvar": lv,
            "prior_mu": pm[0],
            "prior_logvar": plv[0],
        },
        "equal_f64": {"mu": mu, "logvar": lv, "prior_mu": mu.copy(), "prior_logvar": lv.copy()},
        "equal_f32": {
            "mu": mu.astype(np.float32),
            "logvar": lv.astype(np.float32),
            "prior_mu": mu.astype(np.float32),
            "prior_logvar": lv.astype(np.float32),
        },
        "standard_equal_f64": {"mu": np.zeros((3, 5)), "logvar": np.zeros((3, 5))},
        "near_f64": {
            "mu": mu,
            "logvar": lv,
            "prior_mu": mu + 1e-9 * tiny,
            "prior_logvar": lv + 1e-7 * tiny[::-1],
        },
        "near_standard_f64": {"mu": 1e-6 * tiny, "logvar": 1e-5 * tiny[::-1]},
        "near_f32": {
            "mu": mu.astype(np.float32),
            "logvar": lv.astype(np.float32),
            "prior_mu": (mu + 1e-3 * tiny).astype(np.float32),
            "prior_logvar": (lv + 1e-3 * tiny[::-1]).astype(np.float32),
        },
    }
    return out


def torch_kl(case: dict[str, np.ndarray], dtype: torch.dtype) -> torch.Tensor:
    def t(name: str, default: float) -> torch.Tensor:
        if name in case:
            return torch.from_numpy(np.asarray(case[name])).to(dtype)
        return torch.full((), default, dtype=dtype)

    mu, lv = t("mu", 0.0), t("logvar", 0.0)
    pm, plv = t("prior_mu", 0.0), t("prior_logvar", 0.0)
    p = Normal(mu, torch.exp(0.5 * lv))
    q = Normal(pm.expand_as(mu), torch.exp(0.5 * plv).expand_as(mu))
    return kl_divergence(p, q)


def exact(case: dict[str, np.ndarray]) -> np.ndarray:
    mu = np.asarray(case["mu"], dtype=np.float64)
    lv = np.asarray(case["logvar"], dtype=np.float64)
    pm = np.broadcast_to(np.asarray(case.get("prior_mu", 0.0), dtype=np.float64), mu.shape)
    plv = np.broadcast_to(np.asarray(case.get("prior_logvar", 0.0), dtype=np.float64), mu.shape)
    out = np.empty(mu.shape)
    for i in np.ndindex(mu.shape):
        m1, l1, m2, l2 = (mpmath.mpf(float(a[i])) for a in (mu, lv, pm, plv))
        d = l1 - l2
        out[i] = float((mpmath.exp(d) - 1 - d + (m1 - m2) ** 2 * mpmath.exp(-l2)) / 2)
    return out


def main() -> None:
    arrays: dict[str, np.ndarray] = {}
    for name, case in cases().items():
        for key, value in case.items():
            arrays[f"{name}__{key}"] = np.asarray(value)
        own = torch.float32 if case["mu"].dtype == np.float32 else torch.float64
        kl_own = torch_kl(case, own)
        arrays[f"{name}__torch"] = kl_own.numpy()
        arrays[f"{name}__own_sum"] = kl_own.sum().numpy()
        arrays[f"{name}__own_batch_mean"] = (kl_own.sum() / kl_own.shape[0]).numpy()
        kl64 = torch_kl(case, torch.float64)
        arrays[f"{name}__torch64"] = kl64.numpy()
        arrays[f"{name}__sum"] = kl64.sum().numpy()
        arrays[f"{name}__batch_mean"] = (kl64.sum() / kl64.shape[0]).numpy()
        arrays[f"{name}__per_dim"] = kl64.mean(dim=0).numpy()
        arrays[f"{name}__per_row"] = kl64.sum(dim=1).numpy()
        arrays[f"{name}__exact"] = exact(case)
    np.savez(HERE / "gaussian.npz", **arrays)
    print(f"wrote {HERE / 'gaussian.npz'}: {len(arrays)} arrays, torch {torch.__version__}")


if __name__ == "__main__":
    main()
