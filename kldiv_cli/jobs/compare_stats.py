"""compare's statistics: the per-row measures of the rows used -> the JSON document's
numbers (llama.cpp's names), the names gates may use, the offenders and the paired
differences of several candidates, a top-K reference's coverage, and the per-row
columns of the rows kept."""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np

from ..core.compare import MEASURES, OVERLAP_K, TOPK, perplexity_statistics
from ..core.engine import combine
from ..core.stats import FRAC_ABOVE, PERCENTILES, frac_key, mean_stderr, proportion, robust, summary
from ..io.topk import TopKSource

__all__ = [
    "DELTA_P_EXTRA",
    "PERPLEXITY_KEYS",
    "SPARSE_NAMES",
    "TOKEN_COLUMNS",
    "nan_warnings",
    "offenders",
    "paired_differences",
    "per_row_columns",
    "sparse_statistics",
    "statistic_names",
    "statistics",
]

#: Extra percentiles of Δp (llama.cpp prints them too).
DELTA_P_EXTRA: tuple[tuple[str, float], ...] = (("p25", 0.25), ("p75", 0.75))
#: llama.cpp's perplexity lines (see :func:`kldiv_cli.core.compare.perplexity_statistics`).
PERPLEXITY_KEYS = (
    "reference",
    "reference_stderr",
    "candidate",
    "candidate_stderr",
    "correlation",
    "ln_ratio",
    "ln_ratio_stderr",
    "ratio",
    "ratio_stderr",
    "difference",
    "difference_stderr",
)
#: The per-row columns that need tokens (after ``row``, the measures and ``top1_agree``).
TOKEN_COLUMNS = ("token", "nll_reference", "nll_candidate", "delta_p")


def _measure_keys(thresholds: tuple[float, ...]) -> list[str]:
    return [
        "mean",
        "stderr",
        *(k for k, _ in PERCENTILES),
        "trimmed_mean",
        *(f"frac_above.{frac_key(t)}" for t in thresholds),
    ]


def _proportion_names(group: str) -> list[str]:
    return [group, f"{group}.value", f"{group}.stderr"]


#: The numbers only a top-K reference has.
SPARSE_NAMES = ("sparse.k", "coverage.mean", "coverage.min")


def statistic_names(
    with_tokens: bool, thresholds: tuple[float, ...] = FRAC_ABOVE, sparse: bool = False
) -> list[str]:
    """Every name a gate may use: the JSON's numbers as ``group.key`` (and
    ``top1_agreement``, ``topk_agreement.5``... for their value); ``sparse``: with those
    of a top-K reference (:data:`SPARSE_NAMES`)."""
    names = ["rows", *(SPARSE_NAMES if sparse else ())]
    names += [f"{m}.{k}" for m in MEASURES for k in _measure_keys(thresholds)]
    names += _proportion_names("top1_agreement")
    for k in TOPK:
        names += _proportion_names(f"topk_agreement.{k}")
    names += _proportion_names(f"top{OVERLAP_K}_overlap")
    if with_tokens:
        keys = _measure_keys(thresholds) + [k for k, _ in DELTA_P_EXTRA] + ["rms", "rms_stderr"]
        names += [f"delta_p.{k}" for k in keys]
        names += [f"perplexity.{k}" for k in PERPLEXITY_KEYS]
    return names


def offenders(per_row: dict[str, np.ndarray], top: int) -> list[dict[str, Any]]:
    """The ``top`` rows of largest KL, largest first (ties: the earlier row; NaN rows
    last): ``row`` (in the input), ``sequence`` and ``position`` when known (see
    :func:`_sequences`),
    with tokens ``token``, ``logp_reference`` = log p(token) and ``logp_candidate`` =
    log q(token), then every measure and ``top1_rank``."""
    kl = per_row["kl"]
    order = np.argsort(-kl, kind="stable")[:top]
    out = []
    for i in order.tolist():
        row = int(per_row["row"][i])
        entry: dict[str, Any] = {"row": row}
        if "sequence" in per_row:
            entry.update(sequence=int(per_row["sequence"][i]), position=int(per_row["position"][i]))
        if "token" in per_row:
            entry["token"] = int(per_row["token"][i])
        if "nll_reference" in per_row:
            entry.update(
                logp_reference=-float(per_row["nll_reference"][i]),
                logp_candidate=-float(per_row["nll_candidate"][i]),
            )
        entry.update({m: float(per_row[m][i]) for m in MEASURES})
        entry["top1_rank"] = int(per_row["top1_rank"][i])
        out.append(entry)
    return out


def paired_differences(labels: list[str], kl: list[np.ndarray]) -> list[dict[str, Any]]:
    r"""For each pair of candidates measured on the same rows, the mean of the per-row
    differences of KL, ``d = kl_a − kl_b``, and its standard error
    ``sqrt((E[d²] − E[d]²)/(N − 1))`` (:func:`~kldiv_cli.core.stats.mean_stderr`, the
    convention of ``kl.stderr``). The two share the reference and the rows, so this
    error is far below the two ``kl.stderr`` added in quadrature when they are correlated."""
    out = []
    for i, j in itertools.combinations(range(len(labels)), 2):
        with np.errstate(invalid="ignore"):
            mean, stderr = mean_stderr(kl[i] - kl[j])
        out.append({"a": labels[i], "b": labels[j], "kl_mean_difference": mean, "stderr": stderr})
    return out


def _share(hits: np.ndarray, n: int) -> dict[str, float]:
    value, stderr = proportion(float(np.count_nonzero(hits)) / n if n else math.nan, n)
    return {"value": value, "stderr": stderr}


def statistics(
    per_row: dict[str, np.ndarray], with_tokens: bool, thresholds: tuple[float, ...]
) -> dict[str, Any]:
    n = len(per_row["row"])
    doc: dict[str, Any] = {"rows": n}
    for name in MEASURES:
        doc[name] = {**summary(per_row[name]), **robust(per_row[name], thresholds)}
    doc["top1_agreement"] = _share(per_row["top1_agree"], n)
    rank = per_row["top1_rank"]
    doc["topk_agreement"] = {str(k): _share(rank <= k, n) for k in TOPK}
    overlap, overlap_stderr = mean_stderr(per_row[f"top{OVERLAP_K}_overlap"])
    doc[f"top{OVERLAP_K}_overlap"] = {"value": overlap, "stderr": overlap_stderr}
    if with_tokens:
        dp = per_row["delta_p"]
        stats = {**summary(dp, extra=DELTA_P_EXTRA), **robust(dp, thresholds)}
        mse, mse_stderr = mean_stderr(dp * dp)
        rms = math.sqrt(mse) if mse >= 0 else math.nan
        # llama.cpp: the uncertainty of sqrt(mean Δp²) by propagation, 0.5/rms · se(Δp²).
        stats["rms"] = rms
        stats["rms_stderr"] = 0.5 / rms * mse_stderr if rms > 0 else math.nan
        doc["delta_p"] = stats
        doc["perplexity"] = perplexity_statistics(
            per_row["nll_reference"], per_row["nll_candidate"]
        )
    return doc


def nan_warnings(per_row: dict[str, np.ndarray]) -> list[str]:
    bad = np.isnan(per_row["kl"])
    if not bad.any():
        return []
    first = int(per_row["row"][np.argmax(bad)])
    return [
        f"{int(bad.sum())} of {len(bad)} rows have a NaN divergence (first: row {first}: a NaN, "
        "+inf or all -inf logit, or a negative probability); the statistics are NaN"
    ]


#: What a top-K reference's measures are, in the JSON.
SPARSE_NOTE = {
    "bucket": "measures on the K classes and one tail bucket: a lower bound of the dense "
    "measures (data-processing inequality)",
    "renormalize": "measures of both distributions renormalised over the K classes: "
    "neither a lower nor an upper bound of the dense measures",
}


def sparse_statistics(per_row: dict[str, np.ndarray], ref: TopKSource, tail: str) -> dict[str, Any]:
    """``sparse`` (K, the tail rule, whether the measures bound the dense ones from
    below, what they are) and ``coverage`` (the reference's top-K mass: mean, min)."""
    coverage = per_row["coverage"]
    return {
        "sparse": {
            "k": ref.k,
            "tail": tail,
            "lower_bound": tail == "bucket",
            "note": SPARSE_NOTE[tail],
        },
        "coverage": {
            "mean": combine(coverage) / len(coverage) if len(coverage) else math.nan,
            "min": float(coverage.min()) if len(coverage) else math.nan,
        },
    }


def per_row_columns(
    parts: dict[str, list[np.ndarray]],
    keep: np.ndarray,
    tokens: np.ndarray | None,
    placed: tuple[int, int] | None,
    token_stats: bool,
) -> dict[str, np.ndarray]:
    """The per-row columns of the rows kept (see :class:`CompareResult`)."""

    def joined(name: str) -> np.ndarray:
        return np.concatenate(parts[name])[keep] if parts.get(name) else np.empty(0)

    out = {"row": np.flatnonzero(keep)}
    if placed is not None:
        length, first = placed
        out["sequence"], position = np.divmod(out["row"], length)
        out["position"] = position + first
    elif parts.get("file_sequence"):
        out["sequence"], out["position"] = joined("file_sequence"), joined("file_position")
    for name in MEASURES:
        out[name] = joined(name)
    out["top1_agree"] = joined("agree").astype(bool)
    out["top1_rank"] = joined("top1_rank").astype(np.int64)
    out[f"top{OVERLAP_K}_overlap"] = joined(f"top{OVERLAP_K}_overlap")
    out["reference_top1_prob"] = joined("reference_top1_prob")
    out["reference_top1_margin"] = joined("reference_top1_margin")
    if parts.get("coverage"):
        out["coverage"] = joined("coverage")
    if tokens is not None:
        out["token"] = tokens[keep]
    if token_stats:
        for name in TOKEN_COLUMNS[1:]:
            out[name] = joined(name)
    return out
