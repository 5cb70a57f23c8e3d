"""The ``estimate`` job: RL KL estimators from the log-probabilities of sampled tokens.

Reads LOGP and REF_LOGP as ``[sequences, tokens]`` arrays (padding marked by a 0/1 mask,
NaN or a pad value) or as long tables of one row per token grouped by a sequence-id
column, then computes with :mod:`kldiv_cli.core.estimators`. Never prints.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..choices import Aggregate, EmptySequences, Estimator, coerce
from ..core.estimators import (
    ESTIMATORS,
    Clamp,
    aggregate_tokens,
    estimate_diagnostics,
    parse_clamp,
    per_token,
)
from ..core.stats import FRAC_ABOVE, robust, summary
from ..errors import InputError, UsageError
from ..io.sources import ReadOptions, column_array, open_columns, open_source, select_columns
from ..text import clean
from .checks import Checked
from .diagnostics import LOGPROB_SLACK, refuse_if_strict, trailing_runs
from .gates import (
    Gate,
    Verdict,
    check_names,
    check_thresholds,
    evaluate,
    failure_text,
    flatten,
)
from .positions import first_position
from .slices import Slices, gate_names

__all__ = [
    "EstimateRequest",
    "EstimateResult",
    "clamp_option",
    "estimate",
]

#: ``--clamp none``.
NO_CLAMP = Clamp("none")

#: How messages name a position in LOGP, REF_LOGP or the mask (0-based).
_AXES = ("row", "token")
#: The aggregations divided by a horizon (``--norm-length``).
_NORMED = (Aggregate.SEQ_MEAN_TOKEN_SUM_NORM, Aggregate.SEQ_MEAN_TOKEN_SUM_NORM_VERL07)


def _gate_hint(numbers: dict[str, float]) -> str:
    known = ", ".join(n for n in numbers if "." not in n)
    return f"use one of {known} or a dotted name from -f json (e.g. diagnostics.chi2_token)"


def clamp_option(spec: str | Clamp) -> Clamp:
    """``--clamp``: a preset or ``LO,HI`` (:func:`~kldiv_cli.core.estimators.parse_clamp`).

    Raises
    ------
    UsageError
        ``--clamp: ...`` for anything else.
    """
    try:
        return parse_clamp(spec)
    except ValueError as exc:
        raise UsageError(f"--clamp: {exc}") from None


@dataclass(frozen=True)
class EstimateRequest(Checked):
    logp: str
    ref_logp: str
    logp_options: ReadOptions = ReadOptions()
    ref_options: ReadOptions = ReadOptions()
    mask_options: ReadOptions = ReadOptions()
    #: A 0/1 file of the same shape: 1 = the token counts.
    mask: str | None = None
    #: Without a mask, tokens equal to this (or NaN) on both sides are padding.
    pad_value: float | None = None
    #: Long tables: the column naming each row's sequence (rows in token order).
    sequence_column: str | None = None
    estimator: Estimator = Estimator.ALL
    #: ``--clamp`` (a preset name or ``LO,HI`` is parsed when the request is made).
    clamp: Clamp = NO_CLAMP
    aggregate: Aggregate = Aggregate.TOKEN_MEAN
    norm_length: float | None = None
    #: The seq-mean modes: ``skip`` sequences with no token (verl) or count them as 0 (TRL).
    empty_sequences: EmptySequences = EmptySequences.SKIP
    #: ``--strict``: a warning (suspected padding, no token at all) is an error.
    strict: bool = False
    #: ``--fail-above/--fail-below NAME=X`` (:func:`~kldiv_cli.jobs.gates.parse_gates`).
    gates: tuple[Gate, ...] = ()
    output: str | None = None
    #: ``--frac-above``: each per-token summary reports the share of tokens above each.
    frac_above: tuple[float, ...] = FRAC_ABOVE
    #: ``--top N``: report the N tokens of largest |log ratio| (None: none).
    top: int | None = None
    #: ``--positions``, ``--last``, ``--token-ids``, ``--by``: the estimates of parts of
    #: the tokens too (see :mod:`.slices`); ``--tokens``: the sampled ids, LOGP's shape.
    slices: Slices = Slices()
    tokens: str | None = None
    #: ``--html PATH``: a self-contained report page.
    html: str | None = None

    def __post_init__(self) -> None:
        # Parsed once, when the request is made (a library caller may pass text).
        coerce(self, estimator=Estimator, aggregate=Aggregate, empty_sequences=EmptySequences)
        object.__setattr__(self, "clamp", clamp_option(self.clamp))

    @property
    def estimators(self) -> tuple[str, ...]:
        return ESTIMATORS if self.estimator is Estimator.ALL else (self.estimator.value,)

    @property
    def inputs(self) -> tuple[str, str, str | None, str | None]:
        """The paths the job reads."""
        return (self.logp, self.ref_logp, self.mask, self.tokens)

    def check(self) -> None:
        if self.norm_length is not None:
            if self.aggregate not in _NORMED:
                raise UsageError("--norm-length is the divisor of seq-mean-token-sum-norm only")
            if not (math.isfinite(self.norm_length) and self.norm_length > 0):
                raise UsageError(f"--norm-length must be a number > 0, got {self.norm_length}")
        if self.mask is not None and self.pad_value is not None:
            raise UsageError("give either --mask or --pad-value, not both")
        if self.pad_value is not None and math.isnan(self.pad_value):
            raise UsageError("--pad-value nan is the default (NaN always marks padding)")
        if self.mask == "-":
            raise UsageError("--mask cannot be '-' (stdin holds LOGP or REF_LOGP)")
        if self.top is not None and self.top < 1:
            raise UsageError(f"--top must be at least 1, got {self.top}")
        check_thresholds(self.frac_above)
        # Gates name numbers of the output: checked now, before anything is read.
        zero = np.zeros((1, 1))
        skeleton = _numbers(
            dict.fromkeys(self.estimators, 0.0),
            0,
            0,
            _diagnostics(
                zero,
                zero,
                zero == 0,
                dict.fromkeys(self.estimators, zero[0]),
                self.frac_above,
                self.clamp,
            ),
        )
        numbers = flatten(skeleton)
        self._check_slices()
        names = list(numbers) + gate_names(self.slices.names(), ["rows", *numbers])
        check_names(self.gates, names, _gate_hint(numbers))
        from ..io.writers import check_page, guard

        if self.html is not None:
            check_page(self.html)
        output = self.output if self.output != "-" else None
        guard([output, self.html], [self.logp, self.ref_logp, self.mask or "", self.tokens or ""])

    def _check_slices(self) -> None:
        self.slices.validate()
        if self.tokens is not None and self.sequence_column is not None:
            raise UsageError(
                "--tokens takes a [sequences, tokens] array like LOGP, not a long table"
            )
        if self.tokens == "-":
            raise UsageError("--tokens cannot be '-' (stdin holds LOGP or REF_LOGP)")
        self.slices.check_available(True, self.tokens is not None, True, "")


@dataclass
class EstimateResult:
    request: EstimateRequest
    #: The aggregated estimate of each requested estimator.
    estimates: dict[str, float]
    tokens: int
    sequences: int
    #: Sequences with no token (all padding): left out of the seq-mean aggregations.
    empty_sequences: int
    #: Tokens per row of the padded layout: the default --norm-length.
    padded_length: int
    norm_length: float | None
    diagnostics: dict[str, Any]
    logp: dict[str, Any]
    ref_logp: dict[str, Any]
    gates: list[dict[str, Any]] = field(default_factory=list)
    #: ``--top N``: the N tokens of largest |log ratio| (see :func:`_offenders`).
    offenders: list[dict[str, Any]] = field(default_factory=list)
    #: Suspicious data that did not stop the job (``--strict`` makes them errors).
    warnings: list[str] = field(default_factory=list)
    #: Each slice's numbers: ``name``, ``rows`` (its tokens), then the keys of
    #: :attr:`numbers` (see :func:`_slices`).
    slices: list[dict[str, Any]] = field(default_factory=list)
    #: Per counted token, for the report page: ``sequence``, ``position``, ``ref_logp``
    #: and each estimator's value.
    per_token: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def numbers(self) -> dict[str, Any]:
        """The numbers of the output, nested as in its JSON (and as gates name them)."""
        numbers = _numbers(self.estimates, self.tokens, self.sequences, self.diagnostics)
        return {**numbers, "slices": self.slices} if self.slices else numbers

    @property
    def failed_check(self) -> str | None:
        """The ``check failed`` line when a gate failed, else None."""
        return failure_text(self.gates)

    @property
    def verdict(self) -> Verdict:
        """The exit code's reason: the gates."""
        return Verdict(failed=self.failed_check)


def _token_ids(request: EstimateRequest, shape: tuple[int, ...]) -> np.ndarray:
    """``--tokens``: the sampled token ids, LOGP's [sequences, tokens] shape."""
    src = open_source(request.tokens or "", ReadOptions(), None)
    ids = _as_2d(src.read(), src.label)
    if ids.shape != shape:
        raise InputError(src.label, f"shape {ids.shape} does not match LOGP's {shape}")
    return ids


def _slices(
    request: EstimateRequest,
    a: np.ndarray,
    b: np.ndarray,
    valid: np.ndarray,
    full: dict[str, np.ndarray],
    ids: np.ndarray | None,
) -> list[dict[str, Any]]:
    """Each slice's numbers, as the whole run's: the counted tokens of the slice are the
    only ones counted (aggregates, diagnostics, per-token summaries). Positions are token
    indices in their row; ``--by confidence`` buckets the reference's probability of the
    sampled token, exp(REF_LOGP)."""
    seq, pos = np.nonzero(valid)
    with np.errstate(over="ignore"):
        confidence = np.exp(b[valid])
    out = []
    pieces = request.slices.masks(seq, pos, None if ids is None else ids[valid], confidence)
    for name, mask, extra in pieces:
        part = np.zeros_like(valid)
        part[seq[mask], pos[mask]] = True
        counts = part.sum(axis=1)
        estimates = {
            n: aggregate_tokens(
                v, part, request.aggregate, request.norm_length, request.empty_sequences
            )
            for n, v in full.items()
        }
        values = {n: v[part] for n, v in full.items()}
        with np.errstate(all="ignore"):
            diagnostics = _diagnostics(a, b, part, values, request.frac_above, request.clamp)
        numbers = _numbers(estimates, int(counts.sum()), int(np.count_nonzero(counts)), diagnostics)
        out.append({"name": name, "rows": int(mask.sum()), **extra, **numbers})
    return out


def _numbers(
    estimates: dict[str, float], tokens: int, sequences: int, diagnostics: dict[str, Any]
) -> dict[str, Any]:
    return {**estimates, "tokens": tokens, "sequences": sequences, "diagnostics": diagnostics}


def _diagnostics(
    a: np.ndarray,
    b: np.ndarray,
    valid: np.ndarray,
    per_token: dict[str, np.ndarray],
    thresholds: tuple[float, ...],
    clamp: Clamp,
) -> dict[str, Any]:
    """The diagnostics object: how far apart the sides are, each per-token estimate's
    summary with its trimmed mean and shares above ``thresholds`` (``per_token`` holds
    the values of the valid tokens), and how many tokens each of ``clamp``'s bounds
    changed (:func:`_clamped`)."""
    out = estimate_diagnostics(a, b, valid)
    out["per_token"] = {
        name: {**summary(values), **robust(values, thresholds)}
        for name, values in per_token.items()
    }
    with np.errstate(invalid="ignore"):
        logr = (b - a)[valid]
    out["clamped"] = _clamped(logr, list(per_token), clamp)
    return out


def _clamped(logr: np.ndarray, names: list[str], clamp: Clamp) -> dict[str, dict[str, int]]:
    """For each estimator, the tokens whose value a bound of ``clamp`` changed:
    ``log_ratio`` (log r outside its bounds, clipped before the estimate) and ``result``
    (the estimate of the clipped log r outside its bounds, clipped after); 0 where the
    clamp has no such bound or does not apply to the estimator (verl: k3 only)."""
    out = {}
    for name in names:
        counts = {"log_ratio": 0, "result": 0}
        if clamp.applies(name) and clamp.log_ratio is not None:
            lo, hi = clamp.log_ratio
            counts["log_ratio"] = int(np.count_nonzero((logr < lo) | (logr > hi)))
        if clamp.applies(name) and clamp.result is not None:
            before = Clamp(clamp.name, log_ratio=clamp.log_ratio, only=clamp.only)
            values = per_token(logr, name, before)
            lo, hi = clamp.result
            counts["result"] = int(np.count_nonzero((values < lo) | (values > hi)))
        out[name] = counts
    return out


def _offenders(
    a: np.ndarray, b: np.ndarray, valid: np.ndarray, values: dict[str, np.ndarray], top: int
) -> list[dict[str, Any]]:
    """The ``top`` counted tokens of largest |log ratio| (ties: the earlier token):
    ``sequence`` and ``position`` (row and column of the [sequences, tokens] layout),
    ``logp``, ``ref_logp``, ``log_ratio`` = ref_logp − logp and each estimator's value
    after the clamp (``values``: each estimator's per-token values of the valid tokens)."""
    seq, pos = np.nonzero(valid)
    logp, ref = a[valid], b[valid]
    with np.errstate(invalid="ignore"):
        logr = ref - logp
    order = np.argsort(-np.abs(logr), kind="stable")[:top]
    return [
        {
            "sequence": int(seq[i]),
            "position": int(pos[i]),
            "logp": float(logp[i]),
            "ref_logp": float(ref[i]),
            "log_ratio": float(logr[i]),
            **{name: float(v[i]) for name, v in values.items()},
        }
        for i in order.tolist()
    ]


def _as_2d(a: np.ndarray, label: str) -> np.ndarray:
    if a.ndim == 1:
        return a.reshape(1, -1)
    if a.ndim != 2:
        raise InputError(label, f"expected [sequences, tokens] (1-D or 2-D), got shape {a.shape}")
    return a


def _valid_tokens(
    request: EstimateRequest,
    a: np.ndarray,
    b: np.ndarray,
    mask: np.ndarray | None,
    labels: tuple[str, str, str],
) -> np.ndarray:
    """The tokens that count: the mask's 1s, else those that are not padding."""
    if mask is not None:
        if not np.isin(mask, (0, 1)).all():
            bad = ~np.isin(mask, (0, 1))
            raise InputError(
                labels[2],
                f"{first_position(bad, _AXES)}: {mask[bad][0]:g} is not 0 or 1 (a mask is 0/1 only)",
            )
        # Comparisons of an untyped-dtype array are typed Any in NumPy's stubs: bool arrays.
        valid: np.ndarray = mask == 1
        for side, label in ((a, labels[0]), (b, labels[1])):
            nan = np.isnan(side) & valid
            if nan.any():
                raise InputError(label, f"{first_position(nan, _AXES)}: NaN where the mask is 1")
        return valid

    def padding(x: np.ndarray) -> np.ndarray:
        pad: np.ndarray = np.isnan(x)
        if request.pad_value is not None:
            pad = pad | (x == request.pad_value)
        return pad

    pa, pb = padding(a), padding(b)
    if (pa != pb).any():
        which, other = (labels[0], labels[1]) if (pa & ~pb).any() else (labels[1], labels[0])
        where = first_position(pa & ~pb if which == labels[0] else pb & ~pa, _AXES)
        raise InputError(
            which, f"{where}: padding (NaN or --pad-value) here but not in {other}; use --mask"
        )
    return ~pa


#: What a reader gives: LOGP and REF_LOGP as [sequences, tokens], the tokens that count,
#: and both inputs described.
Tokens = tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, Any], dict[str, Any]]


def _read_wide(request: EstimateRequest, stdin: bytes | None) -> Tokens:
    sa = open_source(request.logp, request.logp_options, stdin)
    sb = open_source(request.ref_logp, request.ref_options, stdin)
    a, b = _as_2d(sa.read(), sa.label), _as_2d(sb.read(), sb.label)
    if a.shape != b.shape:
        raise InputError(
            f"{sa.label} and {sb.label}",
            f"shapes do not match: LOGP {tuple(sa.shape)}, REF_LOGP {tuple(sb.shape)}",
        )
    mask, mask_label = None, ""
    if request.mask is not None:
        sm = open_source(request.mask, request.mask_options, None)
        mask_label = sm.label
        mask = _as_2d(sm.read(), sm.label)
        if mask.shape != a.shape:
            raise InputError(
                mask_label, f"shape {tuple(sm.shape)} does not match LOGP's {tuple(sa.shape)}"
            )
    valid = _valid_tokens(request, a, b, mask, (sa.label, sb.label, mask_label))
    return a, b, valid, sa.describe(), sb.describe()


def _value_column(path: str, options: ReadOptions, names: list[str], seq: str) -> str:
    """The one numeric column of a long table (besides the sequence id) as a column spec."""
    label = "<stdin>" if path == "-" else path
    chosen = select_columns(label, names, options.columns, [True] * len(names))
    chosen = [i for i in chosen if names[i] != seq]
    if len(chosen) != 1:
        listing = ", ".join(clean(names[i]) for i in chosen) or "none"
        raise UsageError(
            f"{clean(label)}: with --sequence-column, choose the one column of log-probabilities "
            f"(--logp-columns / --ref-columns); candidates: {listing}"
        )
    i = chosen[0]
    return str(i) if str(i) not in names else names[i]


def _sequence_codes(
    path: str, options: ReadOptions, seq: str, stdin: bytes | None
) -> tuple[np.ndarray, list[str]]:
    """Each row's sequence as 0..S-1 in order of first appearance, and the column names."""
    table = open_columns(
        path, ReadOptions(options.fmt, options.key, None, options.delimiter, options.missing), stdin
    )
    names = list(table.column_names)
    label = "<stdin>" if path == "-" else path
    if seq not in names:
        listing = ", ".join(clean(n) for n in names[:20])
        raise UsageError(
            f"{clean(label)}: no column {seq!r} (--sequence-column); columns are: {listing}"
        )
    column = table.column(seq)
    if hasattr(column, "num_chunks"):
        column = column.combine_chunks()
    if column.null_count:
        first = next(i for i, v in enumerate(column.is_valid().to_pylist()) if not v)
        raise InputError(label, f"column {seq!r}: row {first} has no sequence id")
    codes = column_array(column.dictionary_encode().indices, np.dtype(np.int64))
    return codes, names


def _read_long(request: EstimateRequest, stdin: bytes | None) -> Tokens:
    seq = request.sequence_column
    assert seq is not None
    sides = []
    for path, options in (
        (request.logp, request.logp_options),
        (request.ref_logp, request.ref_options),
    ):
        codes, names = _sequence_codes(path, options, seq, stdin)
        spec = _value_column(path, options, names, seq)
        source = open_source(
            path,
            ReadOptions(options.fmt, options.key, spec, options.delimiter, options.missing),
            stdin,
        )
        values = source.read().reshape(-1)
        sides.append((codes, values, source))
    (ca, va, sa), (cb, vb, sb) = sides
    if len(ca) != len(cb) or not np.array_equal(ca, cb):
        where = (
            "numbers of rows differ" if len(ca) != len(cb) else f"row {int(np.argmax(ca != cb))}"
        )
        raise InputError(
            f"{sa.label} and {sb.label}", f"sequence ids do not match ({where}); rows must pair up"
        )
    mask = None
    if request.mask is not None:
        sm = open_source(request.mask, request.mask_options, None)
        mask = sm.read().reshape(-1)
        if mask.size != va.size:
            raise InputError(sm.label, f"has {mask.size} values for {va.size} rows of tokens")
    valid = _valid_tokens(
        request,
        va.reshape(-1, 1),
        vb.reshape(-1, 1),
        None if mask is None else mask.reshape(-1, 1),
        (sa.label, sb.label, "" if request.mask is None else clean(request.mask)),
    ).reshape(-1)
    # One row per sequence, tokens in the order their rows appear.
    n_seq = int(ca.max()) + 1 if len(ca) else 0
    counts = np.bincount(ca, minlength=n_seq)
    order = np.argsort(ca, kind="stable")
    starts = np.cumsum(counts) - counts
    pos = np.empty(len(ca), dtype=np.intp)
    pos[order] = np.arange(len(ca)) - np.repeat(starts, counts)
    width = int(counts.max()) if len(counts) else 0
    grid_a, grid_b = np.zeros((n_seq, width)), np.zeros((n_seq, width))
    grid_valid = np.zeros((n_seq, width), dtype=bool)
    grid_a[ca, pos], grid_b[ca, pos], grid_valid[ca, pos] = va, vb, valid
    return grid_a, grid_b, grid_valid, sa.describe(), sb.describe()


def _check_log_probs(a: np.ndarray, valid: np.ndarray, label: str) -> None:
    """A log-probability is at most 0: refuse values above it (probabilities, logits)."""
    with np.errstate(invalid="ignore"):
        above = valid & (a > LOGPROB_SLACK)
    if above.any():
        n, first = int(np.count_nonzero(above)), a[above][0]
        raise InputError(
            label,
            f"{n:,} of {int(np.count_nonzero(valid)):,} log-probabilities are above 0 (first: "
            f"{first_position(above, _AXES)}: {first:g}); these look like probabilities or "
            "logits: pass log-probabilities of the sampled tokens",
        )


def _padding_warning(a: np.ndarray, b: np.ndarray, labels: tuple[str, str]) -> list[str]:
    """Rows that end in a run of identical values on both sides: right padding that no
    ``--mask`` or ``--pad-value`` marks (counted as tokens, it dilutes the means)."""
    runs = trailing_runs(a, b)
    padded = runs >= 2
    if not padded.any():
        return []
    ends = np.unique(a[padded, -1])
    value = f"{ends[0]:g} in every such row" if len(ends) == 1 else f"{len(ends)} values"
    return [
        f"{int(np.count_nonzero(padded)):,} of {len(runs):,} rows of {labels[0]} and "
        f"{labels[1]} end in runs of identical values ({int(runs[padded].sum()):,} tokens, "
        f"{value}): suspected padding, counted as tokens; give --mask FILE (or --pad-value X)"
    ]


def _no_token_warning(request: EstimateRequest) -> str:
    totals = (Aggregate.TOKEN_SUM, Aggregate.SUM, Aggregate.SEQ_MEAN_TOKEN_SUM_NORM_VERL07)
    zero = request.aggregate in totals or (
        request.empty_sequences is EmptySequences.ZERO
        and request.aggregate is not Aggregate.TOKEN_MEAN
    )
    value = "0" if zero else "NaN, as verl's agg_loss gives"
    return (
        f"no token counts (the mask is all 0, or every token is padding): the estimate is {value}"
    )


def estimate(request: EstimateRequest, stdin: bytes | None = None) -> EstimateResult:
    """Run the job: read, mask, estimate, aggregate, diagnose, gate (the request is
    validated first, unless it was already)."""
    request.validate()
    reader = _read_long if request.sequence_column is not None else _read_wide
    a, b, valid, da, db = reader(request, stdin)
    for side, described in ((a, da), (b, db)):
        _check_log_probs(side, valid, described["path"])
    warnings: list[str] = []
    if request.sequence_column is None and request.mask is None and request.pad_value is None:
        warnings += _padding_warning(a, b, (da["path"], db["path"]))
    if not valid.any():
        warnings.append(_no_token_warning(request))
    refuse_if_strict(request.strict, warnings)
    a64, b64 = a.astype(np.float64, copy=False), b.astype(np.float64, copy=False)
    with np.errstate(invalid="ignore"):  # inf - inf outside the mask
        logr = np.where(valid, b64 - a64, 0.0)
    clamp = request.clamp
    estimates: dict[str, float] = {}
    values: dict[str, np.ndarray] = {}
    full: dict[str, np.ndarray] = {}
    for name in request.estimators:
        full[name] = tokens = per_token(logr, name, clamp)
        estimates[name] = aggregate_tokens(
            tokens, valid, request.aggregate, request.norm_length, request.empty_sequences
        )
        values[name] = tokens[valid]
    counts = valid.sum(axis=1)
    diagnostics = _diagnostics(a64, b64, valid, values, request.frac_above, clamp)
    norm = None
    if request.aggregate in _NORMED:
        norm = request.norm_length if request.norm_length is not None else float(a.shape[1])
    result = EstimateResult(
        request=request,
        estimates=estimates,
        tokens=int(counts.sum()),
        sequences=int(np.count_nonzero(counts)),
        empty_sequences=int(np.count_nonzero(counts == 0)),
        padded_length=int(a.shape[1]),
        norm_length=norm,
        diagnostics=diagnostics,
        logp=da,
        ref_logp=db,
        warnings=warnings,
        offenders=_offenders(a64, b64, valid, values, request.top) if request.top else [],
    )
    seq, pos = np.nonzero(valid)
    result.per_token = {"sequence": seq, "position": pos, "ref_logp": b64[valid], **values}
    if request.slices:
        ids = _token_ids(request, a.shape) if request.tokens is not None else None
        result.slices = _slices(request, a64, b64, valid, full, ids)
    numbers = flatten(result.numbers)
    result.gates = evaluate(request.gates, numbers, _gate_hint(numbers))
    return result
