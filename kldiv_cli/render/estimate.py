"""``kldiv estimate`` results as a :class:`~kldiv_cli.render.Report`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .._version import __version__
from ..core.stats import frac_key
from ..jobs.estimate import EstimateResult
from . import Report, format_number

_EMPTY = {"skip": "left out", "zero": "counted as 0"}


def _g(value: float) -> str:
    return format_number(value, 6)


def estimate_document(result: EstimateResult) -> dict[str, Any]:
    """The JSON document: the estimates at top level, the settings, the diagnostics."""
    req = result.request
    doc: dict[str, Any] = dict(result.estimates)
    doc.update(
        tokens=result.tokens,
        sequences=result.sequences,
        empty_sequences=result.empty_sequences,
        empty_sequences_rule=req.empty_sequences,
        padded_length=result.padded_length,
        estimator=req.estimator,
        clamp=req.clamp.name,
        aggregate=req.aggregate,
    )
    if result.norm_length is not None:
        doc["norm_length"] = result.norm_length
    doc.update(
        mask=req.mask,
        pad_value=req.pad_value,
        sequence_column=req.sequence_column,
        logp=result.logp,
        ref_logp=result.ref_logp,
        diagnostics=result.diagnostics,
        warnings=result.warnings,
    )
    if result.slices:
        doc["slices"] = result.slices
    if result.offenders:
        doc["offenders"] = result.offenders
    if result.gates:
        doc["thresholds"] = result.gates
        doc["verdict"] = "fail" if result.failed_check else "pass"
    doc["kldiv_version"] = __version__
    return doc


def _notes(result: EstimateResult) -> list[str]:
    d = result.diagnostics
    ratio, ppl, delta = d["ratio"], d["perplexity"], d["delta_logp"]
    req = result.request
    return [
        f"{result.tokens} tokens in {result.sequences} sequences"
        + (
            f" ({result.empty_sequences} empty, {_EMPTY[req.empty_sequences]})"
            if result.empty_sequences
            else ""
        )
        + f"; aggregate {req.aggregate}, clamp {req.clamp.name}",
        f"ratio pi/pi_ref: mean {_g(ratio['mean'])}, min {_g(ratio['min'])}, "
        f"max {_g(ratio['max'])}, > 2: {_g(ratio['share_above_2'])}, "
        f"< 0.5: {_g(ratio['share_below_0.5'])}",
        f"chi2 token {_g(d['chi2_token'])}, sequence {_g(d['chi2_sequence'])}; ESS {_g(d['ess'])}",
        f"|delta logp| mean {_g(delta['mean'])}, max {_g(delta['max'])}; perplexity "
        f"LOGP {_g(ppl['logp'])}, REF_LOGP {_g(ppl['ref_logp'])}, ratio {_g(ppl['ratio'])}",
        *_clamp_notes(result),
        *(_offender(o, list(result.estimates)) for o in result.offenders),
    ]


def _clamp_notes(result: EstimateResult) -> list[str]:
    clamp = result.request.clamp
    if clamp.name == "none":
        return []
    counts = ", ".join(
        f"{name} {c['log_ratio']} (log ratio) + {c['result']} (result)"
        for name, c in result.diagnostics["clamped"].items()
    )
    return [f"clamp {clamp.name} changed tokens: {counts}"]


def _offender(o: dict[str, Any], names: list[str]) -> str:
    values = ", ".join(f"{n} {_g(o[n])}" for n in names)
    return (
        f"sequence {o['sequence']}, position {o['position']}: logp {_g(o['logp'])}, "
        f"ref_logp {_g(o['ref_logp'])}, log ratio {_g(o['log_ratio'])}; {values}"
    )


def _with_slices(
    table: dict[str, Sequence[Any]], result: EstimateResult
) -> dict[str, Sequence[Any]]:
    """The table with a ``slice`` column (``all`` for every token) and the rows of each
    slice, estimator by estimator."""
    names = list(result.estimates)
    out: dict[str, list[Any]] = {"slice": ["all"] * len(names)}
    out.update({k: list(v) for k, v in table.items()})
    for piece in result.slices:
        per = piece["diagnostics"]["per_token"]
        out["slice"] += [piece["name"]] * len(names)
        out["estimator"] += names
        out["kl"] += [piece[n] for n in names]
        for column in list(out)[3:]:
            key = column.removeprefix("token_")
            if column.startswith("frac_above_"):
                values = [per[n]["frac_above"][column.removeprefix("frac_above_")] for n in names]
            else:
                values = [per[n][key] for n in names]
            out[column] += values
    return dict(out)


def estimate_report(result: EstimateResult) -> Report:
    names = list(result.estimates)
    per = result.diagnostics["per_token"]
    table: dict[str, Sequence[Any]] = {
        "estimator": names,
        "kl": [result.estimates[n] for n in names],
        "token_mean": [per[n]["mean"] for n in names],
        "stderr": [per[n]["stderr"] for n in names],
        "median": [per[n]["median"] for n in names],
        "p99": [per[n]["p99"] for n in names],
        "max": [per[n]["max"] for n in names],
        "trimmed_mean": [per[n]["trimmed_mean"] for n in names],
    }
    for t in result.request.frac_above:
        key = frac_key(t)
        table[f"frac_above_{key}"] = [per[n]["frac_above"][key] for n in names]
    if len(names) == 1 and not result.slices:
        plain = [format_number(result.estimates[names[0]])]
    else:
        plain = [f"{n},{format_number(result.estimates[n])}" for n in names]
    if result.slices:
        table = _with_slices(table, result)
        plain += [
            f"slices[{s['name']}].{n},{format_number(s[n])}" for s in result.slices for n in names
        ]
    return Report(
        title=f"KL(pi || pi_ref) estimated from {result.tokens} sampled tokens",
        document=estimate_document(result),
        table=table,
        plain=plain,
        notes=_notes(result),
        digits=6,
        terminal_columns=[
            *(["slice"] if result.slices else []),
            *["estimator", "kl", "stderr", "median", "trimmed_mean", "p99", "max"],
        ],
    )
