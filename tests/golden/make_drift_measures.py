"""Write ``drift_measures.json``, the golden values of drift's measures, from SciPy.

Run by hand when the cases change (SciPy is never a dependency of kldiv or its tests):

    pip install scipy && python tests/golden/make_drift_measures.py

The file holds the inputs and what SciPy gives for them:

* ``chi2_sf``: ``[x, dof, scipy.stats.chi2.sf(x, dof)]``;
* ``kolmogorov``: ``[x, scipy.special.kolmogorov(x)]``;
* ``samples``: pairs of samples (rounded to 2-3 decimals, so with ties) with
  ``scipy.stats.ks_2samp(a, b)`` (default: two-sided, ``method="auto"``, exact at these
  sizes), ``scipy.stats.wasserstein_distance(a, b)`` and Evidently's normed Wasserstein,
  ``wasserstein_distance(a, b) / max(np.std(a), 0.001)``;
* ``tables``: 2 x k count tables with ``scipy.stats.chi2_contingency(table)`` (defaults:
  Yates' correction at one degree of freedom), columns empty on both rows dropped first;
* ``p_values``: with ``scipy.stats.false_discovery_control(p, method="bh")`` and
  Bonferroni's ``min(1, m p)``;
* ``table``: a reference and a current table (a numeric and a categorical column) with
  the measures ``kldiv drift`` must report for them.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from scipy import special, stats

OUT = Path(__file__).with_name("drift_measures.json")


def _normed(a: np.ndarray, b: np.ndarray) -> float:
    return float(stats.wasserstein_distance(a, b) / max(np.std(a), 0.001))


def _chi2(first: list[int], second: list[int]) -> list[float]:
    table = np.array([first, second])
    table = table[:, table.sum(axis=0) > 0]
    res = stats.chi2_contingency(table)
    return [float(res.statistic), float(res.pvalue), int(res.dof)]


def main() -> None:
    rng = np.random.default_rng(25)
    chi2_sf = [
        [x, d, float(stats.chi2.sf(x, d))]
        for x, d in [
            (0.5, 1),
            (3.84, 1),
            (3.0, 2),
            (10.0, 5),
            (37.7, 11),
            (100.0, 50),
            (1e-3, 3),
            (400.0, 11),
            (75.0, 3),
            (2.5, 0.5),
            (1500.0, 1200),
        ]
    ]
    kolmogorov = [[x, float(special.kolmogorov(x))] for x in [0.05, 0.3, 0.7, 0.99, 1.0, 1.36, 2.5]]
    samples = []
    for n, m, shift, decimals in [
        (50, 50, 0.3, 2),
        (40, 70, 0.3, 2),
        (7, 13, 1.0, 3),
        (300, 200, 0.1, 1),
        (120, 125, 0.0, 2),
        (600, 900, 0.15, 3),
    ]:
        a = np.round(rng.normal(size=n), decimals)
        b = np.round(rng.normal(shift, 1.2, size=m), decimals)
        ks = stats.ks_2samp(a, b)
        samples.append(
            {
                "a": a.tolist(),
                "b": b.tolist(),
                "ks": [float(ks.statistic), float(ks.pvalue)],
                "wasserstein": float(stats.wasserstein_distance(a, b)),
                "wasserstein_norm": _normed(a, b),
            }
        )
    tables = [
        [[10, 20, 5], [12, 30, 0]],
        [[10, 0], [5, 7]],
        [[3, 0, 4], [0, 0, 1]],
        [[40, 0], [30, 0]],
        [[500, 300, 150, 50, 0], [480, 320, 140, 40, 20]],
    ]
    tables_out = [{"table": t, "expected": _chi2(*t)} for t in tables]
    p = [0.001, 0.2, 0.03, 0.04, 0.5, 0.012, 0.9]
    p_values = {
        "p": p,
        "bh": stats.false_discovery_control(p, method="bh").tolist(),
        "bonferroni": np.minimum(1, np.array(p) * len(p)).tolist(),
    }
    ref_x = np.round(rng.gamma(2.0, 10.0, size=400), 2)
    cur_x = np.round(rng.gamma(2.0, 11.5, size=300), 2)
    ref_c = rng.choice(["ios", "android", "web", "tv"], size=400, p=[0.4, 0.4, 0.15, 0.05])
    cur_c = rng.choice(["ios", "android", "web", "tv"], size=300, p=[0.3, 0.45, 0.2, 0.05])
    cats = sorted(set(ref_c))
    counts = [[int((ref_c == c).sum()) for c in cats], [int((cur_c == c).sum()) for c in cats]]
    ks = stats.ks_2samp(ref_x, cur_x)
    table = {
        "reference": {"amount": ref_x.tolist(), "device": ref_c.tolist()},
        "current": {"amount": cur_x.tolist(), "device": cur_c.tolist()},
        "amount": {
            "ks": [float(ks.statistic), float(ks.pvalue)],
            "wasserstein": _normed(ref_x, cur_x),
        },
        "device": {"chi2": _chi2(*counts)},
    }
    doc = {
        "chi2_sf": chi2_sf,
        "kolmogorov": kolmogorov,
        "samples": samples,
        "tables": tables_out,
        "p_values": p_values,
        "table": table,
    }
    OUT.write_text(json.dumps(doc) + "\n")
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
