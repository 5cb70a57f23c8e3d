"""The ``compare`` job: two models' distributions, row by row -> statistics and gates.

KL(reference ‖ candidate): the reference (base, teacher) model's distribution is p.
Both files are read block of rows by block (bounded memory: only a few floats per
row are kept), each block pair goes through :func:`kldiv_cli.core.compare.pair`, and
the per-row measures are summarised (:mod:`kldiv_cli.core.stats`) with llama.cpp's
names and formulas. No printing here (see :mod:`kldiv_cli.render.compare`).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import InputError, UsageError
from ..io.sources import Source, open_source
from ..io.topk import TopKSource, is_topk, open_topk
from .compare_inputs import (
    check_tokens,
    kind_of,
    layout,
    read_tokens,
    sequences,
    space_warnings,
    zip_blocks,
)
from .compare_measure import measured
from .compare_request import GATE_HINT, KLD_TEXT, CompareRequest, rows_kind, rows_on_stdout
from .compare_stats import (
    SPARSE_NAMES,
    nan_warnings,
    offenders,
    paired_differences,
    per_row_columns,
    sparse_statistics,
    statistic_names,
    statistics,
)
from .diagnostics import refuse_if_strict, strict_notes
from .gates import Verdict, evaluate, failure_text, flatten
from .slices import gate_names

__all__ = [
    "CompareAllResult",
    "CompareRequest",
    "CompareResult",
    "compare",
    "compare_all",
    "offenders",
    "paired_differences",
    "rows_kind",
    "rows_on_stdout",
    "statistic_names",
]

#: ``progress(done, total)``: elements (rows × classes) compared so far, and in all
#: (-1 while unknown).
Progress = Callable[[int, int], None]

#: Elements of one side per block: a block pair of the general formulas works in about
#: ten float64 arrays of this size (2 MiB each).
BLOCK_ELEMENTS = 1 << 18
#: The same for two dense logit sides (32 rows of 32,000 classes): the fused pass works
#: row by row in three float64 rows of its own, so the block only bounds the per-block
#: cost of Python (2000 x 32000: 0.48-0.50 s CPU at 2^18, 0.45-0.47 s at 2^20).
LOGIT_BLOCK_ELEMENTS = 1 << 20


@dataclass
class CompareResult:
    """The statistics (the JSON document's numbers), the per-row measures and the gates."""

    statistics: dict[str, Any]
    #: Per-row measures of the rows used: ``row`` (index in the input), ``sequence`` and
    #: ``position`` (when known), the measures, ``top1_agree``, ``top1_rank``,
    #: ``top5_overlap``, ``reference_top1_prob``, ``reference_top1_margin``, then :data:`TOKEN_COLUMNS` with tokens.
    per_row: dict[str, np.ndarray]
    #: One entry per gate: name, ``fail_above`` or ``fail_below``, value, passed.
    checks: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    #: Both inputs as the JSON describes them (path, format, shape, dtype, ``as``), and
    #: where the tokens came from (None without tokens).
    reference: dict[str, Any] = field(default_factory=dict)
    candidate: dict[str, Any] = field(default_factory=dict)
    tokens: str | None = None
    #: ``--top N``: the N rows of largest KL, largest first (see :func:`offenders`).
    offenders: list[dict[str, Any]] = field(default_factory=list)

    @property
    def failed(self) -> list[dict[str, Any]]:
        """The checks that did not pass."""
        return [c for c in self.checks if not c["passed"]]

    @property
    def failed_check(self) -> str | None:
        """The ``check failed`` line when a gate failed, else None."""
        return failure_text(self.checks)


def compare(
    request: CompareRequest, stdin: bytes | None = None, progress: Progress | None = None
) -> CompareResult:
    """Run ``request``: open both inputs, compare them row by row, summarise, gate.

    ``progress``, if given, is called after each block with the elements (rows ×
    classes of one side) done so far and in all (-1 while unknown). With several
    candidates, the first one's result (see :func:`compare_all` for all of them).
    """
    return compare_all(request, stdin, progress).results[0]


@dataclass
class CompareAllResult:
    """Every candidate's :class:`CompareResult`, in order, and their paired differences."""

    labels: list[str]
    results: list[CompareResult]
    #: One entry per pair of candidates (a before b): ``a``, ``b``,
    #: ``kl_mean_difference`` (mean KL of a − mean KL of b) and its paired ``stderr``.
    paired: list[dict[str, Any]]

    @property
    def verdict(self) -> Verdict:
        """The exit code's reason: the gates of every candidate."""
        return Verdict(failed=self.failed_check)

    @property
    def failed_check(self) -> str | None:
        """The ``check failed`` line: the failed gates of each candidate, by label."""
        if len(self.results) == 1:
            return self.results[0].failed_check
        parts = [
            f"{label}: {text}"
            for label, r in zip(self.labels, self.results)
            if (text := r.failed_check) is not None
        ]
        return "; ".join(parts) or None


@dataclass
class _Inputs:
    """Both sides opened and checked against each other."""

    ref: Source | TopKSource
    cands: list[Source]
    width: int
    rows: int
    tokens: np.ndarray | None
    tokens_label: str
    kinds: tuple[str, list[str]]

    @property
    def sparse(self) -> bool:
        return isinstance(self.ref, TopKSource)


def _open(request: CompareRequest, stdin: bytes | None) -> _Inputs:
    """Open the reference (dense, or a top-K file) and every candidate; check their
    shapes and the tokens."""
    sparse = is_topk(request.reference, request.indices_key, stdin, request.logprobs_key)
    ref: Source | TopKSource
    if sparse:
        ref = open_topk(request.reference, stdin, request.indices_key, request.logprobs_key)
        ref.notes += _temperature_notes(ref, request.temperature)
    else:
        ref = open_source(request.reference, request.reference_options, stdin)
        ref.notes += _topk_only(request)
    cand_options = [request.options_of(c) for c in request.candidates]
    cands = [open_source(c, o, stdin) for c, o in zip(request.candidates, cand_options)]
    strict_notes(request.strict, (ref, *cands) if isinstance(ref, Source) else cands)
    if isinstance(ref, TopKSource):
        refuse_if_strict(request.strict, ref.notes)
        ref_rows, width = ref.rows, layout(cands[0], cand_options[0])[1]
    else:
        ref_rows, width = layout(ref, request.reference_options)
    rows_known = ref_rows
    for cand, options in zip(cands, cand_options):
        cand_rows, cand_width = layout(cand, options)
        where = f"{ref.label} and {cand.label}"
        if cand_width != width:
            raise InputError(
                where, f"have different vocabularies: {width} and {cand_width} classes"
            )
        if -1 not in (ref_rows, cand_rows) and ref_rows != cand_rows:
            raise InputError(where, f"hold different numbers of rows: {ref_rows} and {cand_rows}")
        if rows_known == -1:
            rows_known = cand_rows
    tokens, tokens_label = read_tokens((request.tokens, request.tokens_options), ref, cands, stdin)
    if sparse and tokens is None and "token" in ref.extra:  # type: ignore[union-attr]
        tokens_label = f"{ref.label}[token]"
    if tokens_label == "" and request.ignore_index is not None:
        raise UsageError("--ignore-index skips rows by their token; give --tokens FILE")
    _check_gates(request, tokens is not None and not sparse, sparse)
    placed = sequences(ref) if isinstance(ref, Source) else None
    request.slices.check_available(
        placed is not None or (isinstance(ref, TopKSource) and "position" in ref.extra),
        tokens_label != "",
        True,
        f"a 3-D input (sequences × positions × classes), a {KLD_TEXT} file, or a top-K file "
        "with a position column",
    )
    if tokens is not None and rows_known != -1:
        check_tokens(tokens, tokens_label, rows_known, width, request.ignore_index)
    ref_kind = "log-probs" if sparse else kind_of(request.reference_as, ref)  # type: ignore[arg-type]
    kinds = (ref_kind, [kind_of(request.candidate_as, c) for c in cands])
    return _Inputs(ref, cands, width, rows_known, tokens, tokens_label, kinds)


def _topk_only(request: CompareRequest) -> list[str]:
    """The options of a top-K reference given with a dense one: each a warning (they
    change nothing; ``--strict``: an error)."""
    given = [
        f"{option} {value}"
        for option, value in (
            ("--tail", request.tail if request.tail != "bucket" else None),
            ("--indices-key", request.indices_key),
            ("--logprobs-key", request.logprobs_key),
        )
        if value is not None
    ]
    if not given:
        return []
    verb, pronoun = ("applies", "it is") if len(given) == 1 else ("apply", "they are")
    return [
        f"{' and '.join(given)} {verb} to a top-K reference (kldiv topk); "
        f"{request.reference} is a dense one, so {pronoun} ignored"
    ]


def _temperature_notes(ref: TopKSource, given: float) -> list[str]:
    """A top-K reference holds log-probabilities already tempered by ``kldiv topk -T``;
    ``-T`` tempers the candidate only. A temperature recorded in the file other than
    ``given`` is a warning (``--strict``: an error)."""
    recorded = ref.metadata.get("temperature")
    try:
        if recorded is None or float(recorded) == given:
            return []
    except ValueError:
        return [f"{ref.label} records a temperature {recorded!r} that is not a number"]
    return [
        f"{ref.label} was written at temperature {float(recorded):g} (kldiv topk -T) but the "
        f"candidate is tempered with -T {given:g}; give -T {float(recorded):g} to compare "
        "like with like"
    ]


def _measure_all(
    request: CompareRequest, inputs: _Inputs, progress: Progress | None
) -> tuple[list[dict[str, list[np.ndarray]]], list[list[str]], int]:
    """One pass over every block: each candidate's per-row measures (in pieces), the
    wrong-space warnings of each side, and the rows read."""
    width, cands = inputs.width, inputs.cands
    logits = (
        not inputs.sparse and inputs.kinds[0] == "logits" and set(inputs.kinds[1]) == {"logits"}
    )
    block = request.chunk_rows or max(
        1, (LOGIT_BLOCK_ELEMENTS if logits else BLOCK_ELEMENTS) // width
    )
    blocks = zip_blocks(inputs.ref, cands, block, width)
    # The wrong-space checks look at the first block of each side only (cheap, streamed or not).
    first = next(blocks, None)
    space = space_warnings(first, inputs.kinds, inputs.ref.label, [c.label for c in cands])
    for texts in space:
        refuse_if_strict(request.strict, texts)
    if first is not None:
        blocks = itertools.chain([first], blocks)
    del first
    total = inputs.rows * width if inputs.rows != -1 else -1
    parts: list[dict[str, list[np.ndarray]]] = [{} for _ in cands]
    done = 0
    for measures in measured(
        blocks,
        inputs.tokens,
        inputs.kinds,
        width,
        request.temperature,
        request.threads,
        request.tail if inputs.sparse else None,
        inputs.ref.label,
    ):
        for side, one in zip(parts, measures):
            for name, values in one.items():
                side.setdefault(name, []).append(values)
        done += len(measures[0]["kl"])
        if progress is not None:
            progress(done * width, total)
    return parts, space, done


def compare_all(
    request: CompareRequest, stdin: bytes | None = None, progress: Progress | None = None
) -> CompareAllResult:
    """Run ``request`` for every candidate: the reference is read once, and each block of
    it is measured against the same rows of every candidate (memory: the per-row
    results of each). Each candidate is summarised and gated as by itself."""
    request.validate()
    inputs = _open(request, stdin)
    parts, space, done = _measure_all(request, inputs, progress)
    ref, tokens = inputs.ref, inputs.tokens
    if tokens is None and parts[0].get("file_token"):
        tokens = np.concatenate(parts[0]["file_token"])
    keep = np.ones(done, dtype=bool)
    if tokens is not None:
        keep = check_tokens(tokens, inputs.tokens_label, done, inputs.width, request.ignore_index)
    token_stats = tokens is not None and not inputs.sparse
    results = []
    for cand, kind, side, own in zip(inputs.cands, inputs.kinds[1], parts, space[1:]):
        placed = sequences(ref) if isinstance(ref, Source) else None
        per_row = per_row_columns(side, keep, tokens, placed, token_stats)
        if len(per_row["row"]) == 0:
            raise InputError(
                f"{ref.label} and {cand.label}",
                "have no rows to compare" + (" (every token is the ignore index)" if done else ""),
            )
        stats = _summary(per_row, request, inputs, token_stats)
        if request.slices:
            stats["slices"] = [
                {
                    "name": name,
                    **extra,
                    **_summary(_rows_of(per_row, mask), request, inputs, token_stats),
                }
                for name, mask, extra in request.slices.masks(
                    per_row.get("sequence"),
                    per_row.get("position"),
                    per_row.get("token"),
                    per_row["reference_top1_prob"],
                )
            ]
        nan_rows = nan_warnings(per_row)
        refuse_if_strict(request.strict, nan_rows)
        results.append(
            CompareResult(
                statistics=stats,
                per_row=per_row,
                checks=evaluate(request.gates, flatten(stats), GATE_HINT),
                # The sources' notes (columns left out): errors with --strict (above).
                warnings=[*ref.notes, *cand.notes, *space[0], *own, *nan_rows],
                reference={**ref.describe(), "as": inputs.kinds[0]},
                candidate={**cand.describe(), "as": kind},
                tokens=inputs.tokens_label or None,
                offenders=offenders(per_row, request.top) if request.top else [],
            )
        )
    labels = request.candidate_labels
    paired = paired_differences(labels, [r.per_row["kl"] for r in results])
    return CompareAllResult(labels=labels, results=results, paired=paired)


def _summary(
    per_row: dict[str, np.ndarray], request: CompareRequest, inputs: _Inputs, token_stats: bool
) -> dict[str, Any]:
    """The statistics of ``per_row`` (all rows, or a slice's)."""
    stats = statistics(per_row, token_stats, request.frac_above)
    if isinstance(inputs.ref, TopKSource):
        stats.update(sparse_statistics(per_row, inputs.ref, request.tail))
    return stats


def _rows_of(per_row: dict[str, np.ndarray], mask: np.ndarray) -> dict[str, np.ndarray]:
    return {name: values[mask] for name, values in per_row.items()}


def _check_gates(request: CompareRequest, with_tokens: bool, sparse: bool) -> None:
    """Every gate names a statistic this run will have (checked before any work; the
    names no run has are refused by :meth:`CompareRequest.validate`)."""
    names = statistic_names(with_tokens, request.frac_above, sparse)
    known = set(names + gate_names(request.slices.names(), names))
    for gate in request.gates:
        if gate.name in known:
            continue
        stat = gate.name.split("].", 1)[-1]
        if stat in SPARSE_NAMES:
            need = "a top-K reference (kldiv topk)"
        elif sparse:
            need = "a dense reference (a top-K file does not hold the token's probability)"
        else:
            need = f"the next tokens (--tokens FILE, or {KLD_TEXT} inputs)"
        raise UsageError(f"{gate.option} {gate.name}: needs {need}")
