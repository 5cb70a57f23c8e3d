"""``compare --html``: the statistics of every candidate and the figures to look at
(per-row KL CDFs, KL by confidence and by position, KL against size) on one page
(:mod:`.html_report`)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from .._version import __version__
from .html_report import card, page, svg_bars, svg_cdf, svg_scatter, table

if TYPE_CHECKING:
    import numpy as np

    from ..jobs.compare import CompareAllResult, CompareResult

__all__ = ["compare_page"]

#: Position bands drawn (when the rows have positions).
BANDS = 8


def _row(label: str, r: CompareResult) -> list[Any]:
    s = r.statistics
    kl = s["kl"]
    first = next(iter(kl["frac_above"].items()), ("", math.nan))
    cells: list[Any] = [
        label,
        s["rows"],
        kl["mean"],
        kl["stderr"],
        kl["median"],
        kl["p99"],
        kl["max"],
        kl["trimmed_mean"],
        first[1],
        s["top1_agreement"]["value"],
        s["topk_agreement"]["5"]["value"],
        s["top5_overlap"]["value"],
        s["js"]["mean"],
    ]
    cells.append(s["perplexity"]["ratio"] if "perplexity" in s else None)
    cells.append(s["coverage"]["mean"] if "coverage" in s else None)
    cells.append(("fail" if r.failed else "pass") if r.checks else None)
    return cells


def _head(result: CompareAllResult) -> list[str]:
    first = next(iter(result.results[0].statistics["kl"]["frac_above"]), "")
    return [
        "candidate",
        "rows",
        "mean KL",
        "± stderr",
        "median",
        "p99",
        "max",
        "trimmed mean",
        f"share KL > {first}",
        "top-1 agree",
        "ref top-1 in top 5",
        "top-5 overlap",
        "mean JS",
        "PPL ratio",
        "top-K mass",
        "verdict",
    ]


def _mean(values: np.ndarray) -> float:
    from ..core.engine import combine

    return combine(values) / len(values) if len(values) else math.nan


def _grouped(result: CompareAllResult, by: str) -> tuple[list[str], list[tuple[str, list[float]]]]:
    """Mean KL per group (confidence buckets, or position bands) of each candidate."""
    from ..jobs.slices import Slices

    groups: list[str] = []
    series = []
    for label, r in zip(result.labels, result.results):
        rows = r.per_row
        pieces = Slices(by=(by,)).masks(
            rows.get("sequence"), rows.get("position"), None, rows["reference_top1_prob"]
        )
        groups = [
            f"{e['from']}–{e['to'] - 1}" if e else name.split(" ", 1)[1] for name, _, e in pieces
        ]
        series.append((label, [_mean(rows["kl"][mask]) for _, mask, _ in pieces]))
    return groups, series


def compare_page(result: CompareAllResult, sizes: dict[str, float]) -> bytes:
    """The page: the run, a statistics table (one row per candidate), the paired
    differences, the figures, the slices and the offenders."""
    first = result.results[0]
    labels = result.labels
    facts = [
        f"reference {first.reference['path']} ({first.reference.get('format', '')}), "
        f"{first.statistics['rows']} rows compared",
        "candidates: "
        + ", ".join(f"{label} = {r.candidate['path']}" for label, r in zip(labels, result.results)),
        "KL(reference ‖ candidate), nats; statistics in float64 with exact sums",
        f"kldiv {__version__}",
    ]
    if "sparse" in first.statistics:
        facts.insert(2, f"top-K reference: {first.statistics['sparse']['note']}")
    sections = [
        ("Statistics", table(_head(result), [_row(lb, r) for lb, r in zip(labels, result.results)]))
    ]
    if result.paired:
        rows = [[p["a"], p["b"], p["kl_mean_difference"], p["stderr"]] for p in result.paired]
        sections.append(
            (
                "Paired differences of mean KL",
                table(["a", "b", "mean KL a − b", "± paired stderr"], rows),
            )
        )
    cdf, note = svg_cdf(
        [(lb, r.per_row["kl"]) for lb, r in zip(labels, result.results)], "per-row KL"
    )
    figures = [card("Distribution of per-row KL", cdf, labels, note)]
    groups, series = _grouped(result, "confidence")
    figures.append(
        card(
            "Mean KL by the reference's top-1 probability",
            svg_bars(groups, series, "mean KL"),
            labels,
        )
    )
    if "position" in first.per_row:
        groups, series = _grouped(result, f"position:{BANDS}")
        figures.append(card("Mean KL by position", svg_bars(groups, series, "mean KL"), labels))
    if sizes:
        points = [
            (lb, sizes[lb], r.statistics["kl"]["mean"])
            for lb, r in zip(labels, result.results)
            if lb in sizes
        ]
        figures.append(card("Mean KL against size", svg_scatter(points, "mean KL")))
    sections.append(("Figures", '<div class="grid">' + "".join(figures) + "</div>"))
    slices = [
        [lb, s["name"], s["rows"], s["kl"]["mean"], s["kl"]["p99"], s["top1_agreement"]["value"]]
        for lb, r in zip(labels, result.results)
        for s in r.statistics.get("slices", [])
    ]
    if slices:
        sections.append(
            (
                "Slices",
                table(["candidate", "slice", "rows", "mean KL", "p99", "top-1 agree"], slices),
            )
        )
    worst = [
        [
            lb,
            o["row"],
            o.get("sequence"),
            o.get("position"),
            o.get("token"),
            o["kl"],
            o["top1_rank"],
        ]
        for lb, r in zip(labels, result.results)
        for o in r.offenders
    ]
    if worst:
        head = [
            "candidate",
            "row",
            "sequence",
            "position",
            "token",
            "KL",
            "candidate rank of ref top-1",
        ]
        sections.append(("Rows of largest KL", table(head, worst)))
    return page("kldiv compare report", facts, sections)
