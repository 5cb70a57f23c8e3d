"""Data drift between a reference table and a current one, column by column.

The rules (documented in the README, "Drift checks"):

* Numeric columns get ``bins`` bins from the **reference only**: quantile edges
  ``np.quantile(ref, [1/b, ..., (b-1)/b])`` (NumPy's default "linear" method)
  or ``b`` equal-width bins over the reference range; duplicate edges are
  merged; the outer bins are open to -inf and +inf. A value v falls in bin
  ``searchsorted(edges, v, side="right")``: bins are ``[e_i, e_{i+1})``.
* Strings, booleans and numeric columns with at most ``MAX_CATEGORIES``
  distinct reference values are categorical: one bin per reference category
  plus one bucket for values the reference never had.
* NaN / null values are dropped (their shares are reported).
* Shares ``p`` (reference) and ``q`` (current) get ``epsilon`` added on both
  sides, then are renormalised. KL(reference || current) is torch's
  ``kl_div(log q, p, reduction="sum")`` through :func:`kldiv_cli.kl_div`;
  bins empty on both sides are left out (they contribute 0).
  Reverse KL swaps the roles; PSI is their sum; Jensen-Shannon is
  ``(KL(p||m) + KL(q||m)) / 2`` with ``m = (p + q) / 2``. Values are in nats,
  or bits with ``base=2``.
* The noise floor of plug-in KL between two samples of one distribution is
  about ``(k - 1)/2 * (1/n + 1/m)`` for k bins.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..core import kl_div

MAX_CATEGORIES = 20
MIN_ROWS = 10
METRICS = ("kl", "kl_reverse", "psi", "js")
PROFILE_VERSION = 1


@dataclass
class ColumnProfile:
    """What the reference says about one column: its bins and counts."""

    name: str
    kind: str  # "numeric" or "categorical"
    n: int
    nan: int
    counts: list[int]
    edges: list[float] | None = None
    categories: list[Any] | None = None
    error: str | None = None

    def to_json(self) -> dict:
        doc = {"kind": self.kind, "n": self.n, "nan": self.nan, "counts": self.counts}
        if self.edges is not None:
            doc["edges"] = self.edges
        if self.categories is not None:
            doc["categories"] = self.categories
        if self.error:
            doc["error"] = self.error
        return doc

    @classmethod
    def from_json(cls, name: str, doc: dict) -> ColumnProfile:
        return cls(
            name=name,
            kind=doc["kind"],
            n=int(doc["n"]),
            nan=int(doc["nan"]),
            counts=[int(c) for c in doc["counts"]],
            edges=doc.get("edges"),
            categories=doc.get("categories"),
            error=doc.get("error"),
        )


@dataclass
class Profile:
    source: str
    rows: int
    bins: int
    binning: str
    columns: dict[str, ColumnProfile] = field(default_factory=dict)

    def to_json(self) -> dict:
        return {
            "kldiv_profile": PROFILE_VERSION,
            "source": self.source,
            "rows": self.rows,
            "bins": self.bins,
            "binning": self.binning,
            "columns": {name: col.to_json() for name, col in self.columns.items()},
        }

    @classmethod
    def from_json(cls, doc: dict) -> Profile:
        return cls(
            source=doc.get("source", ""),
            rows=int(doc["rows"]),
            bins=int(doc["bins"]),
            binning=doc["binning"],
            columns={n: ColumnProfile.from_json(n, c) for n, c in doc["columns"].items()},
        )


# ----------------------------------------------------------------- columns


def column_values(column) -> tuple[str, np.ndarray | list, int]:
    """(kind, non-missing values, missing count) of a pyarrow column.

    kind: "numeric" (a float64 array), "bool" or "string" (a list).
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    t = column.type
    if (
        pa.types.is_floating(t)
        or pa.types.is_integer(t)
        or pa.types.is_decimal(t)
        or pa.types.is_null(t)
    ):
        values = column.cast(pa.float64()).to_numpy(zero_copy_only=False)
        keep = ~np.isnan(values)
        return "numeric", values[keep], int(values.size - keep.sum())
    valid = pc.drop_null(column)
    missing = len(column) - len(valid)
    if pa.types.is_boolean(t):
        return "bool", valid.to_pylist(), missing
    return "string", [str(v) for v in valid.to_pylist()], missing


def _edges(values: np.ndarray, bins: int, binning: str) -> list[float]:
    if binning == "quantile":
        inner = np.quantile(values, np.arange(1, bins) / bins)
    else:
        inner = np.linspace(values.min(), values.max(), bins + 1)[1:-1]
    return [float(e) for e in np.unique(inner)]


def _numeric_counts(values: np.ndarray, edges: list[float]) -> list[int]:
    index = np.searchsorted(np.asarray(edges, dtype=np.float64), values, side="right")
    return [int(c) for c in np.bincount(index, minlength=len(edges) + 1)]


def _category_counts(values, categories: list) -> list[int]:
    """Counts per reference category, then one bucket for values never seen there."""
    position = {_key(c): i for i, c in enumerate(categories)}
    counts = [0] * (len(categories) + 1)
    if isinstance(values, np.ndarray):
        uniq, freq = np.unique(values, return_counts=True)
        pairs = zip(uniq.tolist(), freq.tolist())
    else:
        from collections import Counter

        pairs = Counter(values).items()
    for value, n in pairs:
        counts[position.get(_key(value), len(categories))] += int(n)
    return counts


def _key(value):
    """Numbers compare by value (1 and 1.0 are one category)."""
    if isinstance(value, bool):
        return ("b", value)
    if isinstance(value, (int, float)):
        return ("n", float(value))
    return ("s", value)


def profile_column(name: str, column, bins: int, binning: str) -> ColumnProfile:
    kind, values, missing = column_values(column)
    n = len(values)
    if n == 0:
        return ColumnProfile(
            name,
            "numeric" if kind == "numeric" else "categorical",
            0,
            missing,
            [],
            error="no values in the reference (all missing)",
        )
    if kind == "numeric":
        distinct = np.unique(values)
        if distinct.size > MAX_CATEGORIES:
            edges = _edges(values, bins, binning)
            return ColumnProfile(
                name, "numeric", n, missing, _numeric_counts(values, edges), edges=edges
            )
        categories = [float(v) for v in distinct]
    else:
        categories = sorted(set(values), key=lambda v: (str(type(v)), v))
    counts = _category_counts(values, categories)
    return ColumnProfile(name, "categorical", n, missing, counts, categories=categories)


def build_profile(
    table, source: str, bins: int, binning: str, columns: list[str] | None = None
) -> Profile:
    profile = Profile(source=source, rows=table.num_rows, bins=bins, binning=binning)
    for name in columns if columns is not None else table.column_names:
        profile.columns[name] = profile_column(name, table.column(name), bins, binning)
    return profile


def current_counts(ref: ColumnProfile, column) -> tuple[list[int], int, int]:
    """(counts in the reference's bins, n, missing) for a current column."""
    kind, values, missing = column_values(column)
    if ref.kind == "numeric":
        if kind != "numeric":
            raise ValueError(f"is numeric in the reference but {kind} in the current data")
        return _numeric_counts(values, ref.edges), len(values), missing
    if kind == "numeric" and ref.categories and not isinstance(ref.categories[0], (int, float)):
        values = [_number_text(v) for v in values.tolist()]
    return _category_counts(values, ref.categories), len(values), missing


def _number_text(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else repr(v)


# ----------------------------------------------------------------- divergences


def divergences(p_counts, q_counts, epsilon: float, base: float = math.e) -> dict[str, float]:
    """KL(p||q), KL(q||p), PSI and JS of two histograms, after epsilon smoothing."""
    p = np.asarray(p_counts, dtype=np.float64)
    q = np.asarray(q_counts, dtype=np.float64)
    p, q = _smooth(p / p.sum(), epsilon), _smooth(q / q.sum(), epsilon)
    used = (p > 0) | (q > 0)
    p, q = p[used], q[used]
    m = (p + q) / 2
    scale = 1 / math.log(base)
    with np.errstate(divide="ignore"):
        log_p, log_q, log_m = np.log(p), np.log(q), np.log(m)
    kl = float(kl_div(log_q, p, reduction="sum")) * scale
    kl_rev = float(kl_div(log_p, q, reduction="sum")) * scale
    js = (
        0.5
        * (float(kl_div(log_m, p, reduction="sum")) + float(kl_div(log_m, q, reduction="sum")))
        * scale
    )
    return {"kl": kl, "kl_reverse": kl_rev, "psi": kl + kl_rev, "js": js}


def _smooth(share: np.ndarray, epsilon: float) -> np.ndarray:
    if epsilon == 0:
        return share
    return (share + epsilon) / (1 + epsilon * share.size)


def contributions(p_counts, q_counts, epsilon: float, metric: str) -> np.ndarray:
    """Each bin's term of the metric (what makes a column drift)."""
    p = _smooth(np.asarray(p_counts, float) / sum(p_counts), epsilon)
    q = _smooth(np.asarray(q_counts, float) / sum(q_counts), epsilon)
    with np.errstate(divide="ignore", invalid="ignore"):
        lp, lq = np.log(p), np.log(q)
        if metric == "kl":
            terms = np.where(p > 0, p * (lp - lq), 0.0)
        elif metric == "kl_reverse":
            terms = np.where(q > 0, q * (lq - lp), 0.0)
        elif metric == "psi":
            terms = np.where((p > 0) | (q > 0), (p - q) * (lp - lq), 0.0)
        else:
            lm = np.log((p + q) / 2)
            terms = 0.5 * (
                np.where(p > 0, p * (lp - lm), 0.0) + np.where(q > 0, q * (lq - lm), 0.0)
            )
    return np.nan_to_num(terms, nan=np.inf)


def bin_labels(ref: ColumnProfile) -> list[str]:
    if ref.kind == "numeric":
        edges = ["-inf", *(f"{e:.6g}" for e in ref.edges), "+inf"]
        return [f"[{a}, {b})" for a, b in zip(edges[:-1], edges[1:])]
    return [str(c) for c in ref.categories] + ["(unseen)"]


def noise_floor(k: int, n: int, m: int) -> float:
    return (k - 1) / 2 * (1 / n + 1 / m) if n and m else math.inf


# ----------------------------------------------------------------- the check


@dataclass(frozen=True)
class DriftOptions:
    metric: str = "kl"
    threshold: float = 0.1
    thresholds: dict[str, float] = field(default_factory=dict)
    epsilon: float = 1e-4
    base: float = math.e
    fail_on: str = "any"
    top: int = 3


def parse_fail_on(rule: str) -> tuple[str, float]:
    """'any' | 'share:F' (0 < F <= 1) | 'count:N' (N >= 1)."""
    if rule == "any":
        return "any", 1
    kind, _, value = rule.partition(":")
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if kind == "share" and 0 < number <= 1:
        return kind, number
    if kind == "count" and number >= 1 and number.is_integer():
        return kind, number
    raise ValueError(f"--fail-on takes any, share:F (0 < F <= 1) or count:N (N >= 1), got {rule!r}")


def check_column(ref: ColumnProfile, column, options: DriftOptions) -> dict:
    threshold = options.thresholds.get(ref.name, options.threshold)
    row: dict[str, Any] = {
        "name": ref.name,
        "kind": ref.kind,
        "metric": options.metric,
        "threshold": threshold,
        "value": None,
        "drift": False,
    }
    n_ref, nan_ref = ref.n, ref.nan
    try:
        if ref.error is None:
            cur, n_cur, nan_cur = current_counts(ref, column)
        else:
            _, values, nan_cur = column_values(column)
            cur, n_cur = [], len(values)
    except ValueError as exc:
        return {**row, "error": str(exc), "n_reference": n_ref, "n_current": 0}
    total_ref, total_cur = n_ref + nan_ref, n_cur + nan_cur
    row.update(
        n_reference=n_ref,
        n_current=n_cur,
        nan_share_reference=nan_ref / total_ref if total_ref else None,
        nan_share_current=nan_cur / total_cur if total_cur else None,
    )
    if total_ref and total_cur:
        row["nan_share_change"] = row["nan_share_current"] - row["nan_share_reference"]
    if ref.error:
        return {**row, "error": ref.error}
    if n_cur == 0:
        return {**row, "error": "no values in the current data (all missing)"}
    if n_ref < MIN_ROWS or n_cur < MIN_ROWS:
        return {
            **row,
            "error": f"too few values to compare ({n_ref} reference, {n_cur} current; at least {MIN_ROWS})",
        }
    values = divergences(ref.counts, cur, options.epsilon, options.base)
    k = len(ref.counts)
    floor = noise_floor(k, n_ref, n_cur) / math.log(options.base)
    value = values[options.metric]
    row.update(values)
    row.update(value=value, drift=bool(not value <= threshold), bins=k, noise_floor=floor)
    if threshold < 2 * floor:
        row["warning"] = (
            f"the threshold {threshold:g} is below twice the noise floor {floor:.3g} "
            f"for {k} bins at these sample sizes: expect false alarms"
        )
    labels = bin_labels(ref)
    row["histogram"] = {"bins": labels, "reference": ref.counts, "current": cur}
    terms = contributions(ref.counts, cur, options.epsilon, options.metric)
    order = np.argsort(-terms, kind="stable")[: options.top]
    row["top_bins"] = [
        {
            "bin": labels[i],
            "reference_share": ref.counts[i] / n_ref,
            "current_share": cur[i] / n_cur,
            "contribution": float(terms[i]),
        }
        for i in order
    ]
    return row


def check(profile: Profile, current, options: DriftOptions, columns: list[str]) -> dict:
    """The whole report: one row per column and the dataset verdict."""
    rows = []
    for name in columns:
        rows.append(check_column(profile.columns[name], current.column(name), options))
    drifted = sum(1 for r in rows if r["drift"])
    errors = sum(1 for r in rows if r.get("error"))
    kind, number = parse_fail_on(options.fail_on)
    compared = len(rows) - errors
    if kind == "any":
        decision = drifted > 0
    elif kind == "share":
        decision = compared > 0 and drifted / compared >= number
    else:
        decision = drifted >= number
    return {
        "drift": bool(decision),
        "metric": options.metric,
        "threshold": options.threshold,
        "epsilon": options.epsilon,
        "base": "e" if options.base == math.e else options.base,
        "bins": profile.bins,
        "binning": profile.binning,
        "fail_on": options.fail_on,
        "n_columns": len(rows),
        "n_drifted": drifted,
        "n_errors": errors,
        "reference_rows": profile.rows,
        "current_rows": current.num_rows,
        "columns": rows,
    }


# ----------------------------------------------------------------- the job


def load_profile(path: str) -> Profile:
    import json

    from ..errors import InputError

    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
        if not isinstance(doc, dict) or doc.get("kldiv_profile") != PROFILE_VERSION:
            raise InputError(path, "is not a kldiv profile (make one with 'kldiv profile')")
        return Profile.from_json(doc)
    except FileNotFoundError:
        raise InputError(path, "no such file") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise InputError(path, f"is not a valid kldiv profile ({exc})") from None


def load_thresholds(path: str) -> tuple[float | None, dict[str, float]]:
    """A TOML file: an optional top-level ``default = X`` and a ``[thresholds]``
    table of column = threshold."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    from ..errors import InputError

    try:
        with open(path, "rb") as f:
            doc = tomllib.load(f)
    except FileNotFoundError:
        raise InputError(path, "no such file") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise InputError(path, f"is not valid TOML ({exc})") from None
    table = doc.get("thresholds", {})
    default = doc.get("default")
    values = {**({"default": default} if default is not None else {}), **table}
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
            raise InputError(path, f"threshold for {name!r} must be a number >= 0, got {value!r}")
    return (float(default) if default is not None else None), {
        k: float(v) for k, v in table.items()
    }


def shared_columns(
    reference_names: list[str], current_names: list[str], spec: str | None, label: str
) -> list[str]:
    from ..errors import UsageError
    from ..io.sources import select_columns

    shared = [n for n in reference_names if n in set(current_names)]
    if not shared:
        raise UsageError(f"{label}: the reference and current data have no column in common")
    if spec is None:
        return shared
    return [shared[i] for i in select_columns(label, shared, spec, [True] * len(shared))]
