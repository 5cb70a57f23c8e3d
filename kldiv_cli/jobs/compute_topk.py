r"""``kldiv compute INPUT TOPK``: distillation against stored top-K teacher log-probs.

TARGET is a top-K file (:mod:`kldiv_cli.io.topk`, what ``kldiv topk`` writes and
distillation pipelines store); INPUT the student's dense log-probabilities ``log q``
(or logits with ``--input-transform log-softmax``, probabilities with ``log``). Each row's
KL is taken on the teacher's cells (:func:`kldiv_cli.core.topk.cells`):

* ``bucket`` (default): the K classes and one tail bucket, P = (exp(logprobs),
  exp(tail_logprob)), Q = (q at the K classes, Σ_{j ∉ K} q_j summed exactly); a lower
  bound of the dense KL(p ‖ q) by the data-processing inequality;
* ``renormalize``: both distributions renormalised over the K classes.

Each row is ``Σ_c P_c (log P_c − log Q_c)`` summed exactly (``math.fsum``, rounded
once); ``sum`` is the exact sum of the rows, ``batchmean`` that divided by INPUT's first
axis (torch's batch size: the rows of a 2-D input), ``none`` the rows themselves. Memory:
one block of rows of each side, and the per-row values.
"""

from __future__ import annotations

import numpy as np

from ..choices import Reduction, Transform
from ..core.sums import combine, combine_rows
from ..core.topk import cells
from ..core.transforms import apply_transform
from ..errors import InputError, UsageError
from ..io.sources import Source, open_source
from ..io.topk import TopKSource, open_topk
from .compare_inputs import layout, zip_blocks
from .compute_plan import (
    ComputeRequest,
    ComputeResult,
    Progress,
    block_rows,
    settle,
    t2_factor,
    top_rows,
)

__all__ = ["check_sparse", "compute_sparse"]

#: Transforms of INPUT that give ``log q``.
_LOG_INPUTS = (Transform.NONE, Transform.LOG_SOFTMAX, Transform.LOG)
#: How far a row's logsumexp may be from 0 before INPUT is said not to be log q.
_NORMALISED = 1e-3


def check_sparse(request: ComputeRequest) -> None:
    """Refuse what has no meaning against a top-K TARGET, one line each.

    Raises
    ------
    UsageError
        ``-r mean``, ``--log-target``, ``--target-transform``, ``--target-labels``, an
        INPUT transform that does not give log q, ``--dim`` other than the last axis,
        or an engine other than the local one.
    """
    if request.reduction is Reduction.MEAN:
        raise UsageError(
            "-r mean divides by every element, which a top-K TARGET's K + 1 cells do not "
            "have: use -r batchmean (the KL per row), sum or none"
        )
    if request.log_target or request.target_transform is not Transform.NONE:
        raise UsageError(
            "a top-K TARGET holds log-probabilities already: drop --log-target and "
            "--target-transform"
        )
    if request.target_labels:
        raise UsageError("a top-K TARGET is not labels: drop --target-labels")
    if request.input_transform not in _LOG_INPUTS:
        raise UsageError(
            f"--input-transform {request.input_transform} does not give log q; against a "
            "top-K TARGET use none, log-softmax (logits) or log (probabilities)"
        )
    if request.dim != -1:
        raise UsageError("against a top-K TARGET the classes are INPUT's last axis: drop --dim")
    if request.engine != "local":
        raise UsageError(f"--engine {request.engine} does not read a top-K TARGET; drop --engine")


def compute_sparse(
    request: ComputeRequest, stdin: bytes | None = None, progress: Progress | None = None
) -> ComputeResult:
    """The compute job against a top-K TARGET (see the module's docstring).

    Raises
    ------
    UsageError
        See :func:`check_sparse`.
    InputError
        Different numbers of rows, a class index outside INPUT's classes.
    """
    request.validate()
    check_sparse(request)
    st = open_topk(request.target, stdin, request.indices_key, request.logprobs_key)
    sx = open_source(request.input, request.input_options, stdin)
    rows, width = layout(sx, request.input_options)
    if rows != -1 and rows != st.rows:
        raise InputError(
            f"{sx.label} and {st.label}",
            f"hold different numbers of rows: input {rows}, top-K target {st.rows}",
        )
    per_row, coverage, worst = _rows(request, sx, st, width, progress)
    result = _result(request, sx, st, per_row, worst)
    # The teacher's top-K mass, as compare reports it: how much of p the cells see.
    result.target["coverage"] = {
        "mean": combine(coverage.tolist()) / len(coverage) if len(coverage) else None,
        "min": float(coverage.min()) if len(coverage) else None,
    }
    return result


def _rows(
    request: ComputeRequest,
    sx: Source,
    st: TopKSource,
    width: int,
    progress: Progress | None,
) -> tuple[np.ndarray, np.ndarray, float]:
    """Every row's KL on the cells, every row's top-K mass Σ exp(logprobs), and the
    largest distance of an INPUT row's logsumexp from 0 (how far INPUT is from log q)."""
    parts: list[np.ndarray] = []
    coverage: list[np.ndarray] = []
    worst = 0.0
    done = 0
    for tb, (xb,) in zip_blocks(st, [sx], block_rows(request.chunk_rows, width), width):
        if tb.indices.size and int(tb.indices.max()) >= width:
            raise InputError(
                st.label,
                f"has a class index {int(tb.indices.max())} outside INPUT's {width} classes",
            )
        lq = _log_q(request, xb)
        worst = max(worst, _off_by(lq))
        pr = cells(tb.indices, tb.logprobs, tb.tail, lq, request.tail)
        with np.errstate(invalid="ignore", over="ignore"):
            terms = np.where(pr.p == 0, 0.0, pr.p * -pr.d)
        parts.append(combine_rows(terms))
        coverage.append(np.exp(tb.logprobs).sum(axis=1))
        done += len(xb)
        if progress is not None:
            progress(done * width, st.rows * width)
    if not parts:
        return np.empty(0), np.empty(0), worst
    return np.concatenate(parts), np.concatenate(coverage), worst


def _log_q(request: ComputeRequest, xb: np.ndarray) -> np.ndarray:
    """A block of INPUT as float64 ``log q`` (the transform in float64, as for every
    aggregate of the dense compute)."""
    if request.input_transform is Transform.NONE:
        return np.asarray(xb, dtype=np.float64)
    return apply_transform(
        request.input_transform,
        np.ascontiguousarray(xb),
        -1,
        request.temperature,
        dtype=np.float64,
        threads=request.threads,
    )


def _off_by(lq: np.ndarray) -> float:
    """The largest |logsumexp| of the finite rows of ``lq`` (0 for log-probabilities)."""
    if lq.size == 0:
        return 0.0
    with np.errstate(all="ignore"):
        top = lq.max(axis=1)
        ok = np.isfinite(top)
        if not ok.any():
            return 0.0
        lse = top[ok] + np.log(np.exp(lq[ok] - top[ok, None]).sum(axis=1))
        return float(np.nanmax(np.abs(lse)))


def _result(
    request: ComputeRequest, sx: Source, st: TopKSource, per_row: np.ndarray, worst: float
) -> ComputeResult:
    """The reduction of ``per_row``, T^2 applied, the target described, the gate."""
    dtype = np.dtype(np.float64)
    with np.errstate(over="ignore"):  # T = 1e300: T^2 is inf, and so is the scaled loss
        per_row = per_row * t2_factor(request)
    loss: np.generic | np.ndarray
    if request.reduction is Reduction.NONE:
        loss = per_row
    else:
        total = combine(per_row.tolist())
        if request.reduction is Reduction.BATCHMEAN:
            batch = sx.shape[0] if sx.shape else 1
            with np.errstate(invalid="ignore", divide="ignore"):
                total = np.float64(total) / np.float64(batch)
        loss = np.float64(total)
    bound = request.tail == "bucket"
    target = {
        **st.describe(),
        "tail": request.tail,
        "lower_bound": bound,
        "note": (
            "KL on the K classes and one tail bucket: a lower bound of the dense KL "
            "(data-processing inequality)"
            if bound
            else "KL of both distributions renormalised over the K classes (not a bound)"
        ),
    }
    warnings = list(st.notes)
    if worst > _NORMALISED:
        warnings.append(
            f"INPUT's rows are not log-probabilities (a row's logsumexp is {worst:.3g} from 0): "
            "logits need --input-transform log-softmax, probabilities --input-transform log"
        )
    result = ComputeResult(
        request=request,
        loss=loss,
        input=sx.describe(),
        target=target,
        dtype=str(dtype),
        shape=tuple(sx.shape),
        per_row=per_row if request.per_row else None,
        top=top_rows(per_row, request.top),
        warnings=warnings,
    )
    return settle(request, result)
