"""The ``compare`` job: two models' distributions, row by row -> statistics and gates.

KL(reference ‖ candidate): the reference (base, teacher) model's distribution is p.
Both files are read block of rows by block (bounded memory: only a few floats per
row are kept), each block pair goes through :func:`kldiv_cli.core.compare.pair`, and
the per-row measures are summarised (:mod:`kldiv_cli.core.stats`) with llama.cpp's
names and formulas. No printing here (see :mod:`kldiv_cli.render.compare`).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..core.compare import KINDS
from ..core.stats import FRAC_ABOVE
from ..core.topk import TAILS
from ..errors import InputError, UsageError
from ..io import formats
from ..io.formats import STREAMED_KINDS, kinds_text, output_extension_kind
from ..io.sources import ReadOptions, Source, open_source
from ..io.topk import TopKSource, is_topk, open_topk
from ..io.writers import (
    check_page,
    guard,
    is_stream,
    output_kind,
    stream_fd,
)
from .checks import temperature
from .compare_inputs import (
    check_tokens,
    kind_of,
    layout,
    read_tokens,
    sequences,
    side_options,
    space_warnings,
    zip_blocks,
)
from .compare_measure import measured
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
from .gates import (
    Gate,
    Verdict,
    check_names,
    check_thresholds,
    evaluate,
    failure_text,
    flatten,
    parse_gates,
)
from .slices import Slices, gate_names

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
    #: ``--fail-above/--fail-below NAME=X`` (:func:`~kldiv_cli.jobs.gates.parse_gates`);
    #: the library may give the specs as text instead (``fail_above=("kl.p99=0.1",)``).
    gates: tuple[Gate, ...] = ()
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
    #: ``--positions``, ``--last``, ``--token-ids``, ``--by``...: the statistics of parts
    #: of the rows too (see :mod:`.slices`).
    slices: Slices = Slices()
    #: ``--html PATH``: a self-contained page of the statistics and figures; ``--size
    #: LABEL=BYTES`` (each candidate's size) adds mean KL against size.
    html: str | None = None
    sizes: tuple[str, ...] = ()
    #: A top-K reference: how the mass outside its K classes is treated (see
    #: :data:`kldiv_cli.core.topk.TAILS`), and the arrays of a .npz/safetensors one.
    tail: str = "bucket"
    indices_key: str | None = None
    logprobs_key: str | None = None

    def __post_init__(self) -> None:
        if self.fail_above or self.fail_below:
            parsed = parse_gates(self.fail_above, self.fail_below)
            object.__setattr__(self, "gates", (*self.gates, *parsed))
            object.__setattr__(self, "fail_above", ())
            object.__setattr__(self, "fail_below", ())

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
    def reference_options(self) -> ReadOptions:
        return self._side(self.reference, self.reference_key)

    def options_of(self, candidate: str) -> ReadOptions:
        """How a candidate file is read."""
        return self._side(candidate, self.candidate_key)

    @property
    def tokens_options(self) -> ReadOptions:
        return ReadOptions(None, None, self.tokens_column, self.delimiter, self.missing)

    @property
    def inputs(self) -> tuple[str, ...]:
        """Every input path (the output must be none of them)."""
        return (self.reference, *self.candidates, *([self.tokens] if self.tokens else []))

    def _side(self, path: str, own_key: str | None) -> ReadOptions:
        # --key and --columns apply to the sides they can: --key to files of several
        # arrays, --columns to tables.
        options = side_options(path, self.key, self.columns, self.delimiter, self.missing)
        # A side's own key applies whatever the file is (a wrong one is an error there).
        return dataclasses.replace(options, key=own_key) if own_key else options

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
        temperature(self.temperature)
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
        self.slices.validate()
        names = statistic_names(True, self.frac_above, True)
        check_names(self.gates, names + gate_names(self.slices.names(), names), _GATE_HINT)
        self._check_kld_sides()
        if self.output is not None:
            _check_streamed(self.output)
        if self.tail not in TAILS:
            raise UsageError(f"--tail: unknown {self.tail!r}; choose one of {', '.join(TAILS)}")
        self.size_of()
        if self.html is not None:
            check_page(self.html)
        guard([self.output, self.html], self.inputs)

    def size_of(self) -> dict[str, float]:
        """``--size LABEL=BYTES`` by label (checked: known labels, sizes > 0)."""
        if self.sizes and self.html is None:
            raise UsageError("--size labels the mean-KL-against-size plot of --html; give --html")
        out: dict[str, float] = {}
        for spec in self.sizes:
            label, _, text = spec.rpartition("=")
            try:
                size = float(text)
            except ValueError:
                size = math.nan
            if not label or not (math.isfinite(size) and size > 0):
                raise UsageError(f"--size takes LABEL=BYTES (a number > 0), got {spec!r}")
            if label not in self.candidate_labels:
                known = ", ".join(self.candidate_labels)
                raise UsageError(f"--size {label}: no candidate has that label ({known})")
            out[label] = size
        return out

    def _check_kld_sides(self) -> None:
        """A .kld side holds log-probs in one array: ``--as`` and ``--key`` do not apply."""
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
        f"a 3-D input (sequences × positions × classes), a {_KLD} file, or a top-K file "
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
    block = request.chunk_rows or max(1, BLOCK_ELEMENTS // width)
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
                checks=evaluate(request.gates, flatten(stats), _GATE_HINT),
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


_GATE_HINT = "use a name from the JSON, e.g. kl.p99, js.mean, top1_agreement"


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
            need = f"the next tokens (--tokens FILE, or {_KLD} inputs)"
        raise UsageError(f"{gate.option} {gate.name}: needs {need}")
