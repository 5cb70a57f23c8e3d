"""``compare`` results -> :class:`~kldiv_cli.render.Report`: the JSON document, one
``statistic,value`` row per number (CSV, markdown), and a compact block for people
with one line per statistic, laid out and named as llama.cpp's ``--kl-divergence``
summary so the two can be read side by side."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from .._version import __version__
from . import Report

if TYPE_CHECKING:
    from ..jobs.compare import CompareAllResult, CompareResult
    from . import Column

__all__ = ["compare_all_report", "compare_report", "rows_report"]

#: Section titles and the short name of each measure in its lines.
_SECTIONS = (
    ("kl", "KL divergence KL(reference ‖ candidate), nats", "KLD"),
    ("kl_reverse", "Reverse KL divergence KL(candidate ‖ reference), nats", "rKLD"),
    ("js", "Jensen-Shannon divergence, nats", "JSD"),
    ("tv", "Total variation distance", "TVD"),
)
#: llama.cpp's order and labels: largest first.
_LINES = (
    ("max", "Maximum"),
    ("p99.9", "99.9%"),
    ("p99", "99.0%"),
    ("p95", "95.0%"),
    ("p90", "90.0%"),
    ("p75", "75.0%"),
    ("median", "Median"),
    ("p25", "25.0%"),
    ("p10", "10.0%"),
    ("p5", " 5.0%"),
    ("p1", " 1.0%"),
    ("p0.1", " 0.1%"),
    ("min", "Minimum"),
)


def _num(v: float) -> str:
    return f"{v:.6g}" if math.isfinite(v) else str(v)


def _pct(v: float) -> str:
    return f"{100.0 * v:.4g} %" if math.isfinite(v) else str(v)


def _section(stats: dict[str, Any], short: str, fmt: Callable[[float], str]) -> list[str]:
    width = max(len(label) for _, label in _LINES)
    lines = [f"{'Mean':<{width}} {short}: {fmt(stats['mean'])} ± {fmt(stats['stderr'])}"]
    lines += [
        f"{label:<{width}} {short}: {fmt(stats[key])}" for key, label in _LINES if key in stats
    ]
    lines.append(f"Trimmed mean (1 % cut each end) {short}: {fmt(stats['trimmed_mean'])}")
    lines += [
        f"Share with {short} > {t}: {_pct(share)}" for t, share in stats["frac_above"].items()
    ]
    return lines


def _offender(o: dict[str, Any]) -> str:
    where = f"row {o['row']}"
    if "sequence" in o:
        where += f" (sequence {o['sequence']}, position {o['position']})"
    if "token" in o:
        where += f", token {o['token']}"
    if "logp_reference" in o:
        where += f": log p {_num(o['logp_reference'])}, log q {_num(o['logp_candidate'])}"
    return (
        f"{where}; KLD {_num(o['kl'])}, rKLD {_num(o['kl_reverse'])}, JSD {_num(o['js'])}, "
        f"TVD {_num(o['tv'])}, candidate rank of the top-1 {o['top1_rank']}"
    )


def human_lines(doc: dict[str, Any]) -> list[str]:
    """The statistics as llama.cpp prints them (one line per statistic), then each
    slice's, the offenders and the gates."""
    lines = [f"compare: {doc['rows']} rows", *_statistic_lines(doc)]
    for piece in doc.get("slices", []):
        where = f" (positions {piece['from']}..{piece['to'] - 1})" if "from" in piece else ""
        lines += ["", f"###### Slice {piece['name']}{where}: {piece['rows']} rows ######"]
        lines += _statistic_lines(piece)
    lines += _tail_lines(doc)
    return lines


def _statistic_lines(doc: dict[str, Any]) -> list[str]:
    """One statistics block (the whole run's, or a slice's)."""
    lines: list[str] = []
    if "sparse" in doc:
        sparse, cover = doc["sparse"], doc["coverage"]
        lines += [
            f"Top-K reference: K = {sparse['k']}, tail {sparse['tail']}: {sparse['note']}",
            f"Reference top-K mass: mean {_num(cover['mean'])}, min {_num(cover['min'])}",
        ]
    for key, title, short in _SECTIONS:
        lines += ["", f"====== {title} ======", *_section(doc[key], short, _num)]
    top = doc["top1_agreement"]
    lines += ["", f"Same top p: {_pct(top['value'])} ± {_pct(top['stderr'])}"]
    for k, share in doc["topk_agreement"].items():
        lines.append(
            f"Reference top-1 in candidate top {k}: {_pct(share['value'])} ± "
            f"{_pct(share['stderr'])}"
        )
    overlap = doc["top5_overlap"]
    lines.append(f"Top-5 set overlap: {_pct(overlap['value'])} ± {_pct(overlap['stderr'])}")
    if "delta_p" in doc:
        dp = doc["delta_p"]
        lines += ["", "====== Token probability statistics ======", *_section(dp, "Δp", _pct)]
        lines.append(f"RMS Δp    : {_pct(dp['rms'])} ± {_pct(dp['rms_stderr'])}")
    if "perplexity" in doc:
        # llama.cpp's labels (tools/perplexity/perplexity.cpp): Q is the candidate, base
        # the reference.
        ppl = doc["perplexity"]

        def pm(key: str) -> str:
            return f"{_num(ppl[key])} ± {_num(ppl[key + '_stderr'])}"

        lines += [
            "",
            "====== Perplexity statistics ======",
            f"Mean PPL(Q)                   : {pm('candidate')}",
            f"Mean PPL(base)                : {pm('reference')}",
            f"Cor(ln(PPL(Q)), ln(PPL(base))): {_pct(ppl['correlation'])}",
            f"Mean ln(PPL(Q)/PPL(base))     : {pm('ln_ratio')}",
            f"Mean PPL(Q)/PPL(base)         : {pm('ratio')}",
            f"Mean PPL(Q)-PPL(base)         : {pm('difference')}",
        ]
    return lines


def _tail_lines(doc: dict[str, Any]) -> list[str]:
    """The offenders and the gates."""
    lines: list[str] = []
    worst = doc.get("offenders", [])
    if worst:
        lines += ["", f"====== The {len(worst)} rows of largest KLD ======"]
        lines += [_offender(o) for o in worst]
    for check in doc.get("thresholds", []):
        op = "fail_above" if "fail_above" in check else "fail_below"
        state = "ok" if check["passed"] else "FAILED"
        lines.append(
            f"check {check['name']} = {_num(check['value'])} "
            f"(--{op.replace('_', '-')} {_num(check[op])}): {state}"
        )
    return lines


def _rows(doc: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """Every value of a nested document by dotted name (``kl.frac_above.0.1``)."""
    out: list[tuple[str, Any]] = []
    for key, value in doc.items():
        if isinstance(value, list) and all(isinstance(v, dict) and "name" in v for v in value):
            # Named objects (slices) are named as the gates name them: slices[last 64].kl.p99.
            for item in value:
                out += _rows(
                    {k: v for k, v in item.items() if k != "name"},
                    f"{prefix}{key}[{item['name']}].",
                )
        elif isinstance(value, dict):
            out += _rows(value, f"{prefix}{key}.")
        else:
            out.append((f"{prefix}{key}", value))
    return out


def _table(doc: dict[str, Any]) -> dict[str, Sequence[Any]]:
    # The offenders are records, not statistics: JSON and the plain lines hold them.
    skip = ("thresholds", "verdict", "offenders")
    pairs = _rows({k: v for k, v in doc.items() if k not in skip})
    names = [name for name, _ in pairs]
    values = [value for _, value in pairs]
    if "verdict" in doc:
        names.append("verdict")
        values.append(doc["verdict"])
    return {"statistic": names, "value": values}


def compare_report(result: CompareResult) -> Report:
    """The statistics in every format. The JSON document is the statistics, plus
    ``thresholds`` and ``verdict`` (``pass``/``fail``) when gates were given, then the
    inputs (``reference``, ``candidate``, ``tokens``), ``warnings`` and ``kldiv_version``;
    the CSV/markdown rows and the plain lines are the statistics (and gates) only."""
    doc: dict[str, Any] = dict(result.statistics)
    if result.offenders:
        doc["offenders"] = result.offenders
    if result.checks:
        doc["thresholds"] = result.checks
        doc["verdict"] = "fail" if result.failed else "pass"
    table, plain = _table(doc), human_lines(doc)
    doc.update(
        reference=result.reference,
        candidate=result.candidate,
        tokens=result.tokens,
        warnings=result.warnings,
        kldiv_version=__version__,
    )
    return Report(title="kldiv compare", document=doc, table=table, plain=plain, digits=6)


def rows_report(result: CompareResult) -> Report:
    """The per-row measures, for ``-o rows.npy|.csv|.parquet``: named columns (CSV,
    Parquet), or a rows × columns float64 array in the same column order (.npy)."""
    import numpy as np

    table: dict[str, Column] = dict(result.per_row)
    array = np.column_stack([np.asarray(v, dtype=np.float64) for v in table.values()])
    return Report(title="kldiv compare rows", document={}, table=table, plain=[], array=array)


#: The columns a terminal shows of several candidates (every statistic is in CSV/markdown).
_TERMINAL = [
    "label",
    "kl.mean",
    "kl.stderr",
    "kl.p99",
    "top1_agreement.value",
    "topk_agreement.5.value",
    "perplexity.ratio",
    "verdict",
]


def compare_all_report(result: CompareAllResult) -> Report:
    """Several candidates against one reference. One candidate: :func:`compare_report`,
    unchanged. Several: JSON ``{"candidates": [{"label", "path", …the one-candidate
    document…}], "paired": [{"a", "b", "kl_mean_difference", "stderr"}], "verdict"
    (with gates), "kldiv_version"}``; the table (CSV, markdown, terminal) has one row per
    candidate, ``label``, ``path``, then every statistic as the gates name it; the plain
    lines one per candidate; the paired differences are the notes."""
    if len(result.results) == 1:
        return compare_report(result.results[0])
    reports = [compare_report(r) for r in result.results]
    candidates = [
        {"label": label, "path": r.candidate["path"], **rep.document}
        for label, r, rep in zip(result.labels, result.results, reports)
    ]
    doc: dict[str, Any] = {"candidates": candidates, "paired": result.paired}
    gated = any(r.checks for r in result.results)
    if gated:
        doc["verdict"] = "fail" if result.failed_check else "pass"
    doc["kldiv_version"] = __version__
    rows = [dict(_rows(r.statistics)) for r in result.results]
    table: dict[str, list[Any]] = {
        "label": list(result.labels),
        "path": [r.candidate["path"] for r in result.results],
    }
    for name in rows[0]:
        table[name] = [row[name] for row in rows]
    if gated:
        table["verdict"] = ["fail" if r.failed else "pass" for r in result.results]
    plain = []
    for label, r in zip(result.labels, result.results):
        kl, top = r.statistics["kl"], r.statistics["top1_agreement"]
        plain.append(
            f"{label}: Mean KLD {_num(kl['mean'])} ± {_num(kl['stderr'])}, median "
            f"{_num(kl['median'])}, 99.0% {_num(kl['p99'])}, trimmed mean "
            f"{_num(kl['trimmed_mean'])}; Same top p {_pct(top['value'])} ± {_pct(top['stderr'])}"
        )
    notes = [
        f"{p['a']} - {p['b']}: mean KLD difference {_num(p['kl_mean_difference'])} ± "
        f"{_num(p['stderr'])} (paired)"
        for p in result.paired
    ]
    return Report(
        title=f"kldiv compare: {len(result.results)} candidates",
        document=doc,
        table=table,
        plain=plain,
        notes=notes,
        digits=6,
        terminal_columns=[c for c in _TERMINAL if c in table],
    )
