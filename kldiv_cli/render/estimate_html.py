"""``estimate --html``: the estimates, the per-token distribution of each estimator,
KL by position band and by the reference's probability of the sampled token, on one
page (:mod:`.html_report`)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from .._version import __version__
from .html_report import card, page, svg_bars, svg_cdf, table

if TYPE_CHECKING:
    import numpy as np

    from ..jobs.estimate import EstimateResult

__all__ = ["estimate_page"]

#: Position bands drawn.
BANDS = 8
#: The estimators drawn on a log axis (k1 can be negative).
_POSITIVE = ("k2", "k3", "abs")


def _mean(values: np.ndarray) -> float:
    from ..core.engine import combine

    return combine(values) / len(values) if len(values) else math.nan


def _grouped(result: EstimateResult, by: str) -> tuple[list[str], list[tuple[str, list[float]]]]:
    """The token mean of each estimator in each group (confidence buckets or bands)."""
    import numpy as np

    from ..jobs.slices import Slices

    per = result.per_token
    with np.errstate(over="ignore"):
        confidence = np.exp(per["ref_logp"])
    pieces = Slices(by=(by,)).masks(per["sequence"], per["position"], None, confidence)
    groups = [f"{e['from']}–{e['to'] - 1}" if e else name.split(" ", 1)[1] for name, _, e in pieces]
    series = [(n, [_mean(per[n][mask]) for _, mask, _ in pieces]) for n in result.estimates]
    return groups, series


def estimate_page(result: EstimateResult) -> bytes:
    """The page: the run, the estimates and per-token statistics, the figures, the
    slices and the offenders."""
    req = result.request
    names = list(result.estimates)
    facts = [
        f"LOGP {result.logp['path']}, REF_LOGP {result.ref_logp['path']}",
        f"{result.tokens} tokens in {result.sequences} sequences; aggregate {req.aggregate}, "
        f"clamp {req.clamp.name}",
        f"kldiv {__version__}",
    ]
    per = result.diagnostics["per_token"]
    head = [
        "estimator",
        "estimate",
        "token mean",
        "± stderr",
        "median",
        "p99",
        "max",
        "trimmed mean",
    ]
    rows: list[list[Any]] = [
        [
            n,
            result.estimates[n],
            per[n]["mean"],
            per[n]["stderr"],
            per[n]["median"],
            per[n]["p99"],
            per[n]["max"],
            per[n]["trimmed_mean"],
        ]
        for n in names
    ]
    d = result.diagnostics
    diag = [
        ["ratio π/π_ref mean", d["ratio"]["mean"]],
        ["ratio max", d["ratio"]["max"]],
        ["χ² token", d["chi2_token"]],
        ["ESS", d["ess"]],
        ["|Δ log p| max", d["delta_logp"]["max"]],
    ]
    sections = [
        ("Estimates", table(head, rows)),
        ("Diagnostics", table(["diagnostic", "value"], diag)),
    ]
    drawn = [n for n in names if n in _POSITIVE]
    figures = []
    if drawn:
        colors = [names.index(n) for n in drawn]
        svg, note = svg_cdf([(n, result.per_token[n]) for n in drawn], "per-token estimate", colors)
        figures.append(card("Distribution of per-token estimates", svg, drawn, note, colors))
    negative = "k1 can be negative: a negative mean draws no bar." if "k1" in names else ""
    for title, by in (
        ("Token mean by the reference's probability of the token", "confidence"),
        ("Token mean by position", f"position:{BANDS}"),
    ):
        groups, series = _grouped(result, by)
        figures.append(card(title, svg_bars(groups, series, "token mean"), names, negative))
    sections.append(("Figures", '<div class="grid">' + "".join(figures) + "</div>"))
    if result.slices:
        slice_rows = [[s["name"], s["rows"], *(s[n] for n in names)] for s in result.slices]
        sections.append(("Slices", table(["slice", "tokens", *names], slice_rows)))
    if result.offenders:
        worst = [
            [
                o["sequence"],
                o["position"],
                o["logp"],
                o["ref_logp"],
                o["log_ratio"],
                *(o[n] for n in names),
            ]
            for o in result.offenders
        ]
        sections.append(
            (
                "Tokens of largest |log ratio|",
                table(["sequence", "position", "logp", "ref_logp", "log ratio", *names], worst),
            )
        )
    return page("kldiv estimate report", facts, sections)
