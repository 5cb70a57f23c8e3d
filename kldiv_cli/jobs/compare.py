"""The ``compare`` job: two models' distributions, row by row -> statistics and gates.

KL(reference ‖ candidate): the reference (base, teacher) model's distribution is p.
Both files are read block of rows by block (bounded memory: only a few floats per
row are kept), each block pair goes through :func:`kldiv_cli.core.compare.pair`, and
the per-row measures are summarised (:mod:`kldiv_cli.core.stats`) with llama.cpp's
names and formulas. No printing here (see :mod:`kldiv_cli.render.compare`).
"""

from __future__ import annotations

import itertools
import math
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ..core.compare import (
    KINDS,
    MEASURES,
    OVERLAP_K,
    TOPK,
    Scratch,
    pair,
    perplexity_statistics,
    rank_measures,
    reference_top,
    row_measures,
    token_measures,
)
from ..core.engine import default_threads
from ..core.stats import FRAC_ABOVE, PERCENTILES, frac_key, mean_stderr, proportion, robust, summary
from ..errors import InputError, UsageError
from ..io import formats
from ..io.kld import KldSource
from ..io.roles import choose_hint, one_class
from ..io.sources import ReadOptions, Source, open_source
from ..io.writers import (
    STREAMED_KINDS,
    guard,
    is_stream,
    kinds_text,
    output_extension_kind,
    output_kind,
    stream_fd,
)
from .blocks import prefetch, rebatch
from .diagnostics import looks_like, refuse_if_strict, strict_notes
from .gates import (
    Gate,
    check_names,
    check_thresholds,
    evaluate,
    failure_text,
    flatten,
    parse_gates,
)

if TYPE_CHECKING:
    from concurrent.futures import Future

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

#: Elements of one side per block: a block pair works in about ten float64 arrays of
#: this size, 1 MiB each, which then stay in a core's L2 cache.
BLOCK_ELEMENTS = 1 << 17
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


def statistic_names(with_tokens: bool, thresholds: tuple[float, ...] = FRAC_ABOVE) -> list[str]:
    """Every name a gate may use: the JSON's numbers as ``group.key`` (and
    ``top1_agreement``, ``topk_agreement.5``... for their value)."""
    names = ["rows"]
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


@dataclass(frozen=True)
class CompareRequest:
    """What ``kldiv compare`` was asked; :meth:`validate` checks it before anything is read."""

    reference: str
    candidate: str
    #: What each side holds (see :data:`kldiv_cli.core.compare.KINDS`); None: logits,
    #: or log-probs for a .kld file.
    reference_as: str | None = None
    candidate_as: str | None = None
    temperature: float = 1.0
    #: The tensor (.safetensors) or array (.npz) of both sides; a side's own key wins.
    key: str | None = None
    reference_key: str | None = None
    candidate_key: str | None = None
    #: The columns of table inputs (CSV, Parquet...), both sides.
    columns: str | None = None
    delimiter: str | None = None
    missing: str = "error"
    #: The next-token id of each row (a file any reader opens); .kld inputs carry theirs.
    tokens: str | None = None
    tokens_column: str | None = None
    #: Rows whose token is this value are left out of every statistic.
    ignore_index: int | None = None
    #: ``NAME=X`` specs of ``--fail-above`` / ``--fail-below`` (see :mod:`.gates`).
    fail_above: tuple[str, ...] = ()
    fail_below: tuple[str, ...] = ()
    #: A .npy, .csv or .parquet file for the per-row measures.
    output: str | None = None
    chunk_rows: int | None = None
    #: Threads measuring blocks at once (default: every core).
    threads: int | None = None
    #: ``--strict``: a warning (a side that looks like probabilities...) is an error.
    strict: bool = False
    #: ``--frac-above``: each measure block reports the share of rows above each.
    frac_above: tuple[float, ...] = FRAC_ABOVE
    #: ``--top N``: report the N rows of largest KL (None: none).
    top: int | None = None
    #: More candidates, measured against the same reference in the same pass.
    others: tuple[str, ...] = ()
    #: ``--label``: a name for each candidate, in order (default: the file names).
    labels: tuple[str, ...] = ()

    @property
    def candidates(self) -> tuple[str, ...]:
        """Every candidate path, the first one first."""
        return (self.candidate, *self.others)

    @property
    def candidate_labels(self) -> list[str]:
        """Each candidate's label: ``--label`` if given, else its file name."""
        return list(self.labels) or [
            "<stdin>" if c == "-" else os.path.basename(c) for c in self.candidates
        ]

    @property
    def gates(self) -> tuple[Gate, ...]:
        return parse_gates(self.fail_above, self.fail_below)

    @property
    def reference_options(self) -> ReadOptions:
        return self._side(self.reference, self.reference_key)

    def options_of(self, candidate: str) -> ReadOptions:
        """How a candidate file is read."""
        return self._side(candidate, self.candidate_key)

    @property
    def tokens_options(self) -> ReadOptions:
        return ReadOptions(None, None, self.tokens_column, self.delimiter, self.missing)

    @property
    def inputs(self) -> list[str]:
        """Every input path (the output must be none of them)."""
        return [self.reference, *self.candidates, *([self.tokens] if self.tokens else [])]

    def _side(self, path: str, own_key: str | None) -> ReadOptions:
        # --key and --columns apply to the sides they can: --key to files of several
        # arrays, --columns to tables.
        kind = formats.kind_of(path)
        shared_key = self.key if kind == formats.KEYED else None
        columns = None if kind in formats.ARRAY_KINDS else self.columns
        return ReadOptions(
            None,
            own_key or shared_key,
            columns,
            self.delimiter,
            self.missing,
            key_option="--key",
            columns_option="--columns",
        )

    def validate(self) -> None:
        """Usage errors, in the order a user meets them; the output is checked against the
        inputs (:func:`kldiv_cli.io.writers.guard`) last."""
        for option, kind in (
            ("--reference-as", self.reference_as),
            ("--candidate-as", self.candidate_as),
        ):
            if kind is not None and kind not in KINDS:
                raise UsageError(
                    f"{option}: unknown kind {kind!r}; choose one of {', '.join(KINDS)}"
                )
        if not (math.isfinite(self.temperature) and self.temperature > 0):
            raise UsageError(f"--temperature must be a finite number > 0, got {self.temperature}")
        for option, value in (
            ("--chunk-rows", self.chunk_rows),
            ("--threads", self.threads),
            ("--top", self.top),
        ):
            if value is not None and value < 1:
                raise UsageError(f"{option} must be at least 1, got {value}")
        if self.labels and len(self.labels) != len(self.candidates):
            raise UsageError(
                f"--label: {len(self.labels)} labels for {len(self.candidates)} candidates; "
                "give one per candidate, in order"
            )
        if len(set(self.candidate_labels)) != len(self.candidates):
            raise UsageError(
                "two candidates have the same label; name them with --label (one per candidate)"
            )
        if self.others and self.output is not None:
            raise UsageError("-o writes the per-row measures of one candidate; give one candidate")
        if self.tokens is None and self.tokens_column is not None:
            raise UsageError("--tokens-column selects a column of --tokens FILE; give the file")
        # Every name a run with tokens has; whether this run has them is known once open.
        check_thresholds(self.frac_above)
        check_names(self.gates, statistic_names(True, self.frac_above), _GATE_HINT)
        for path, kind, option in (
            (self.reference, self.reference_as, "--reference-as"),
            *((c, self.candidate_as, "--candidate-as") for c in self.candidates),
        ):
            if formats.kind_of(path) == formats.KLD and kind not in (None, "log-probs"):
                raise UsageError(
                    f"{path}: a {_KLD} file holds log-probs; {option} {kind} does not apply"
                )
        for path, key in (
            (self.reference, self.reference_key),
            *((c, self.candidate_key) for c in self.candidates),
        ):
            if formats.kind_of(path) == formats.KLD and key is not None:
                raise UsageError(f"{path}: a {_KLD} file holds one array; --key does not apply")
        if self.output is not None:
            _check_streamed(self.output)
        guard([self.output], self.inputs)


#: How a .kld file is named in messages.
_KLD = formats.extensions_text([formats.KLD])


def _check_streamed(output: str) -> None:
    """``-o`` takes the per-row measures: a file of a streamed kind, or a stream (``-``,
    ``/dev/stdout``, ``/dev/null``, a FIFO), written as :func:`rows_kind` says."""
    if output == "-" or is_stream(output):
        return
    if output_extension_kind(output) not in STREAMED_KINDS:
        raise UsageError(
            f"-o {output}: the per-row measures go to a {kinds_text(STREAMED_KINDS)} file, "
            "or as CSV to a stream such as - or /dev/stdout"
        )


def rows_kind(output: str, fmt: str | None) -> str:
    """How ``-o`` writes the per-row measures: the kind its extension names, and a stream
    (``-`` is ``"stdout"``) CSV unless ``fmt`` (the run's ``--format``) or the stream's
    own extension (a FIFO ``rows.parquet``) names another streamed kind."""
    return output_kind(output, ("csv", "npy", "parquet"), "-o", fmt)


def rows_on_stdout(output: str | None) -> bool:
    """Whether ``-o`` puts the per-row measures on stdout (``-``, ``/dev/stdout``,
    ``/dev/fd/1``): the statistics then go to stderr, so stdout holds one table."""
    return output is not None and stream_fd(output) == 1


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


def _layout(src: Source, options: ReadOptions) -> tuple[int, int]:
    """(rows, classes) of a source: every axis but the last counts rows (-1: unknown).
    One class is an error: any comparison of one-class distributions is 0."""
    shape = tuple(src.shape)
    if len(shape) == 0:
        raise InputError(src.label, "holds a single number; compare needs rows × classes")
    width = shape[-1]
    if width == -1:
        raise InputError(src.label, "rows have different lengths; compare needs rows × classes")
    if width == 0:
        raise InputError(src.label, "has no classes (the last axis is empty)")
    if width == 1:
        raise UsageError(
            f"{src.label}: 1 class ({one_class(src, -1)}); a distribution needs >= 2 classes: "
            f"{choose_hint(src, options, 'the last axis holds the classes')}"
        )
    rows = -1 if -1 in shape[:-1] else math.prod(shape[:-1])
    return rows, width


def _row_blocks(src: Source, rows: int, width: int) -> Iterator[np.ndarray]:
    """2-D blocks (rows × classes) of exactly ``rows`` rows (the last may be shorter)."""
    return rebatch(src.iter_rows(rows), rows)


def _zip(
    ref: Source, cands: list[Source], rows: int, width: int
) -> Iterator[tuple[np.ndarray, list[np.ndarray]]]:
    """The reference's blocks, each with the same rows of every candidate (the reference
    is read once)."""
    streams = [_row_blocks(c, rows, width) for c in cands]
    for rb in _row_blocks(ref, rows, width):
        cbs = []
        for cand, cs in zip(cands, streams):
            cb = next(cs, None)
            if cb is None or len(cb) != len(rb):
                raise InputError(f"{ref.label} and {cand.label}", "hold different numbers of rows")
            cbs.append(cb)
        yield rb, cbs
    for cand, cs in zip(cands, streams):
        if next(cs, None) is not None:
            raise InputError(f"{ref.label} and {cand.label}", "hold different numbers of rows")


def _kind(request_kind: str | None, src: Source) -> str:
    if formats.get(src.fmt).kind == formats.KLD:
        return "log-probs"
    return request_kind or "logits"


def _tokens(
    request: CompareRequest, ref: Source, cands: list[Source], stdin: bytes | None
) -> tuple[np.ndarray | None, str]:
    """The next token of every row (int64) and where it came from, or (None, "")."""
    if request.tokens is not None:
        src = open_source(request.tokens, request.tokens_options, stdin)
        values = np.asarray(src.read())
        # One column, or the reference's leading shape (a (B, T) batch beside (B, T, V)
        # logits): its row-major order is the order of the reference's rows.
        lead = tuple(ref.shape[:-1])
        one_column = values.ndim <= 1 or (values.ndim == 2 and values.shape[1] == 1)
        if not (one_column or values.shape == lead):
            raise InputError(
                src.label,
                "tokens must be one column (one id per row) or the reference's leading shape "
                f"{lead}, got shape {values.shape}",
            )
        values = values.reshape(-1)
        whole = np.isfinite(values) & (values == np.round(values))
        if not whole.all():
            i = int(np.argmin(whole))
            raise InputError(src.label, f"token at row {i} is {values[i]!r}, not a whole number")
        return values.astype(np.int64), src.label
    kld = [s for s in (ref, *cands) if isinstance(s, KldSource)]
    for other in kld[1:]:
        if not np.array_equal(kld[0].tokens, other.tokens):
            raise InputError(
                f"{kld[0].label} and {other.label}",
                "were computed on different tokens (different texts)",
            )
    return (kld[0].tokens, kld[0].label) if kld else (None, "")


def _check_tokens(
    tokens: np.ndarray, label: str, rows: int, width: int, ignore: int | None
) -> np.ndarray:
    """Rows to keep; errors for a wrong length or an id outside the vocabulary."""
    if len(tokens) != rows:
        raise InputError(
            label, f"holds {len(tokens)} tokens for {rows} rows; give one next-token id per row"
        )
    keep = tokens != ignore if ignore is not None else np.ones(len(tokens), dtype=bool)
    bad = keep & ((tokens < 0) | (tokens >= width))
    if bad.any():
        i = int(np.argmax(bad))
        hint = (
            f"; skip such rows with --ignore-index {tokens[i]}"
            if tokens[i] < 0 and ignore is None
            else ""
        )
        raise InputError(
            label, f"token {tokens[i]} at row {i} is outside the vocabulary [0, {width}){hint}"
        )
    return keep


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


def _sequences(src: Source) -> tuple[int, int] | None:
    """(rows per sequence, position of its first row) when the rows are positions of
    sequences: a 3-D input (sequences × positions × classes), or a ``.kld`` file (chunks
    of ``n_ctx`` tokens, positions ``n_ctx/2 … n_ctx−2`` scored); None otherwise."""
    if isinstance(src, KldSource):
        first = src.n_ctx // 2
        return src.n_ctx - 1 - first, first
    shape = tuple(src.shape)
    if len(shape) == 3 and shape[1] > 0:
        return shape[1], 0
    return None


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
            entry.update(
                token=int(per_row["token"][i]),
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


def compare_all(
    request: CompareRequest, stdin: bytes | None = None, progress: Progress | None = None
) -> CompareAllResult:
    """Run ``request`` for every candidate: the reference is read once, and each block of
    it is measured against the same rows of every candidate (memory: the per-row
    results of each). Each candidate is summarised and gated as by itself."""
    request.validate()
    ref = open_source(request.reference, request.reference_options, stdin)
    cand_options = [request.options_of(c) for c in request.candidates]
    cands = [open_source(c, o, stdin) for c, o in zip(request.candidates, cand_options)]
    strict_notes(request.strict, (ref, *cands))
    ref_rows, width = _layout(ref, request.reference_options)
    rows_known = ref_rows
    for cand, options in zip(cands, cand_options):
        cand_rows, cand_width = _layout(cand, options)
        where = f"{ref.label} and {cand.label}"
        if cand_width != width:
            raise InputError(
                where, f"have different vocabularies: {width} and {cand_width} classes"
            )
        if -1 not in (ref_rows, cand_rows) and ref_rows != cand_rows:
            raise InputError(where, f"hold different numbers of rows: {ref_rows} and {cand_rows}")
        if rows_known == -1:
            rows_known = cand_rows
    tokens, tokens_label = _tokens(request, ref, cands, stdin)
    if tokens is None and request.ignore_index is not None:
        raise UsageError("--ignore-index skips rows by their token; give --tokens FILE")
    _check_gates(request.gates, tokens is not None, request.frac_above)
    if tokens is not None and rows_known != -1:
        _check_tokens(tokens, tokens_label, rows_known, width, request.ignore_index)
    kinds = (_kind(request.reference_as, ref), [_kind(request.candidate_as, c) for c in cands])
    block = request.chunk_rows or max(1, BLOCK_ELEMENTS // width)
    blocks = _zip(ref, cands, block, width)
    # The wrong-space checks look at the first block of each side only (cheap, streamed or not).
    first = next(blocks, None)
    space = _space_warnings(first, kinds, ref.label, [c.label for c in cands])
    for texts in space:
        refuse_if_strict(request.strict, texts)
    if first is not None:
        blocks = itertools.chain([first], blocks)
    del first
    total = rows_known * width if rows_known != -1 else -1
    parts: list[dict[str, list[np.ndarray]]] = [{} for _ in cands]
    done = 0
    for measured in _measured(request, blocks, tokens, kinds, width):
        for side, measures in zip(parts, measured):
            for name, values in measures.items():
                side.setdefault(name, []).append(values)
        done += len(measured[0]["kl"])
        if progress is not None:
            progress(done * width, total)
    keep = np.ones(done, dtype=bool)
    if tokens is not None:
        keep = _check_tokens(tokens, tokens_label, done, width, request.ignore_index)
    results = []
    for cand, kind, side, own in zip(cands, kinds[1], parts, space[1:]):
        per_row = _per_row(side, keep, tokens, _sequences(ref))
        if len(per_row["row"]) == 0:
            raise InputError(
                f"{ref.label} and {cand.label}",
                "have no rows to compare" + (" (every token is the ignore index)" if done else ""),
            )
        statistics = _statistics(per_row, tokens is not None, request.frac_above)
        nan_rows = _warnings(per_row)
        refuse_if_strict(request.strict, nan_rows)
        worst = offenders(per_row, request.top) if request.top else []
        results.append(
            CompareResult(
                statistics=statistics,
                per_row=per_row,
                checks=evaluate(request.gates, flatten(statistics), _GATE_HINT),
                # The sources' notes (columns left out): errors with --strict (above).
                warnings=[*ref.notes, *cand.notes, *space[0], *own, *nan_rows],
                reference={**ref.describe(), "as": kinds[0]},
                candidate={**cand.describe(), "as": kind},
                tokens=tokens_label or None,
                offenders=worst,
            )
        )
    labels = request.candidate_labels
    paired = paired_differences(labels, [r.per_row["kl"] for r in results])
    return CompareAllResult(labels=labels, results=results, paired=paired)


#: A side read as logits that looks like another kind: the evidence, what reading it as
#: logits does to the numbers, and the option (``{option}``) that says what it is.
_SPACE_WARNING = {
    "probs": "looks like probabilities (every value in [0, 1], rows summing to 1) but is read "
    "as logits: a softmax of probabilities flattens them and the divergences come out far "
    "too small; give {option}",
    "log-probs": "looks like log-probabilities (every value <= 0, each row's logsumexp 0) but "
    "is read as logits: the numbers are the same (a softmax gives log-probabilities back); "
    "say so with {option}",
}


def _space_warnings(
    first: tuple[np.ndarray, list[np.ndarray]] | None,
    kinds: tuple[str, list[str]],
    ref_label: str,
    cand_labels: list[str],
) -> list[list[str]]:
    """The warnings of the reference, then of each candidate: a side read as logits whose
    first rows look like probabilities or log-probabilities
    (:func:`kldiv_cli.jobs.diagnostics.looks_like`), with the option that says so."""
    if first is None:
        return [[] for _ in range(1 + len(cand_labels))]
    sides = [(first[0], kinds[0], ref_label, "reference")]
    sides += [(b, k, label, "candidate") for b, k, label in zip(first[1], kinds[1], cand_labels)]
    out: list[list[str]] = []
    for block, kind, label, side in sides:
        looks = looks_like(block) if kind == "logits" else None
        if looks is None:
            out.append([])
            continue
        option = f"--as {looks} (or --{side}-as {looks})"
        out.append([f"{label} {_SPACE_WARNING[looks].format(option=option)}"])
    return out


_GATE_HINT = "use a name from the JSON, e.g. kl.p99, js.mean, top1_agreement"


def _check_gates(gates: tuple[Gate, ...], with_tokens: bool, thresholds: tuple[float, ...]) -> None:
    """Every gate names a statistic this run will have (checked before any work; the
    names no run has are refused by :meth:`CompareRequest.validate`)."""
    known = set(statistic_names(with_tokens, thresholds))
    for gate in gates:
        if gate.name not in known:
            raise UsageError(
                f"{gate.option} {gate.name}: needs the next tokens (--tokens FILE, or .kld inputs)"
            )


_LOCAL = threading.local()


def _scratch() -> Scratch:
    """This thread's work arrays (see :class:`kldiv_cli.core.compare.Scratch`)."""
    scratch = getattr(_LOCAL, "scratch", None)
    if scratch is None:
        scratch = _LOCAL.scratch = Scratch()
    return scratch


def _widened(x: np.ndarray, name: str, scratch: Scratch) -> np.ndarray:
    """float16 widened once, exactly: NumPy's float16 loops (max, casts) are slow."""
    if x.dtype.itemsize >= 4:
        return x
    out = scratch.get(name, x.shape)
    np.copyto(out, x)
    return out


def _measure_block(
    rb: np.ndarray,
    cbs: list[np.ndarray],
    kinds: tuple[str, list[str]],
    temperature: float,
    t: np.ndarray | None,
    width: int,
) -> list[dict[str, np.ndarray]]:
    """The measures of one reference block against the same rows of each candidate."""
    scratch = _scratch()
    rb = _widened(rb, "reference", scratch)
    top = reference_top(rb)
    out = []
    for cb, kind in zip(cbs, kinds[1]):
        cb = _widened(cb, "candidate", scratch)
        pr = pair(rb, cb, kinds[0], kind, temperature, scratch)
        measures = row_measures(rb, cb, pr, scratch)
        measures.update(rank_measures(rb, cb, pr.p, top))
        if t is not None and len(t) == len(rb):
            measures.update(token_measures(pr, np.where((t >= 0) & (t < width), t, 0)))
        out.append(measures)
    return out


def _measured(
    request: CompareRequest,
    blocks: Iterator[tuple[np.ndarray, list[np.ndarray]]],
    tokens: np.ndarray | None,
    kinds: tuple[str, list[str]],
    width: int,
) -> Iterator[list[dict[str, np.ndarray]]]:
    """The measures of each block pair, in order; blocks are measured on ``threads``
    threads at once (NumPy releases the GIL), read ahead in another. Each row's
    measures depend on that row alone, so the bits do not depend on the threads."""
    threads = request.threads or default_threads()
    start = 0

    def submit(rb: np.ndarray, cbs: list[np.ndarray]) -> Future[list[dict[str, np.ndarray]]]:
        nonlocal start
        t = tokens[start : start + len(rb)] if tokens is not None else None
        start += len(rb)
        return pool.submit(_measure_block, rb, cbs, kinds, request.temperature, t, width)

    from collections import deque
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(threads, thread_name_prefix="kldiv-compare") as pool:
        pending: deque[Future[list[dict[str, np.ndarray]]]] = deque()
        try:
            for rb, cbs in prefetch(blocks):
                pending.append(submit(rb, cbs))
                del rb, cbs
                if len(pending) >= threads:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for future in pending:
                future.cancel()


def _per_row(
    parts: dict[str, list[np.ndarray]],
    keep: np.ndarray,
    tokens: np.ndarray | None,
    sequences: tuple[int, int] | None,
) -> dict[str, np.ndarray]:
    def joined(name: str) -> np.ndarray:
        return np.concatenate(parts[name])[keep] if parts.get(name) else np.empty(0)

    out = {"row": np.flatnonzero(keep)}
    if sequences is not None:
        length, first = sequences
        out["sequence"], position = np.divmod(out["row"], length)
        out["position"] = position + first
    for name in MEASURES:
        out[name] = joined(name)
    out["top1_agree"] = joined("agree").astype(bool)
    out["top1_rank"] = joined("top1_rank").astype(np.int64)
    out[f"top{OVERLAP_K}_overlap"] = joined(f"top{OVERLAP_K}_overlap")
    out["reference_top1_prob"] = joined("reference_top1_prob")
    out["reference_top1_margin"] = joined("reference_top1_margin")
    if tokens is not None:
        out["token"] = tokens[keep]
        for name in TOKEN_COLUMNS[1:]:
            out[name] = joined(name)
    return out


def _share(hits: np.ndarray, n: int) -> dict[str, float]:
    value, stderr = proportion(float(np.count_nonzero(hits)) / n, n)
    return {"value": value, "stderr": stderr}


def _statistics(
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


def _warnings(per_row: dict[str, np.ndarray]) -> list[str]:
    bad = np.isnan(per_row["kl"])
    if not bad.any():
        return []
    first = int(per_row["row"][np.argmax(bad)])
    return [
        f"{int(bad.sum())} of {len(bad)} rows have a NaN divergence (first: row {first}: a NaN, "
        "+inf or all -inf logit, or a negative probability); the statistics are NaN"
    ]
