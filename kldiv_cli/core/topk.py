r"""Sparse (top-K) references: a distribution kept as its K most probable classes and
the log of the mass left over, and the measures of a dense candidate against it.

A reference row ``p`` over V classes is stored as ``indices`` (its K most probable
classes, most probable first, ties to the lower index), ``logprobs`` (``log p`` of
each, under the full distribution) and ``tail`` = ``log Σ_{j ∉ K} p_j`` (the log of
the remaining mass, summed over the remaining classes themselves, not ``1 − Σ p_K``,
which loses its digits when the K classes hold nearly all the mass).

Against a dense candidate ``q`` the measures are taken on K + 1 cells (``tail``
``"bucket"``): the K classes and one tail bucket,

    P = (p_{i_1}, …, p_{i_K}, P_T),   Q = (q_{i_1}, …, q_{i_K}, Q_T),
    P_T = exp(tail),  Q_T = Σ_{j ∉ K} q_j,

so KL(P ‖ Q) = Σ_c P_c (log P_c − log Q_c), and the same for the reverse KL, JS and
TV. Merging classes into one cell is a Markov kernel applied to both distributions,
so by the data-processing inequality every one of these is at most its dense value:
a lower bound, equal when the candidate is proportional to the reference over the tail.
``"renormalize"`` takes instead the two distributions conditioned on the K classes,
``p̃_i = p_i / Σ_K p``, ``q̃_i = q_i / Σ_K q`` (neither a lower nor an upper bound).
"""

from __future__ import annotations

import numpy as np

from .compare import Pair

__all__ = ["TAILS", "cells", "log_rest", "top_classes"]

#: How the mass outside the K classes is treated.
TAILS: tuple[str, ...] = ("bucket", "renormalize")


def top_classes(x: np.ndarray, k: int) -> np.ndarray:
    """Each row's ``k`` largest values' classes (rows × min(k, V), int64), largest first,
    ties to the lower index (the order of a stable sort of ``-x``).

    ``x`` holds no NaN (the caller refuses such rows). Only the values at or above the
    row's ``k``-th largest (one partition) are sorted.
    """
    n, v = x.shape
    k = min(k, v)
    if k == 0 or n == 0:
        return np.empty((n, k), dtype=np.int64)
    kth = np.partition(x, v - k, axis=1)[:, v - k : v - k + 1]
    rows, cols = np.divmod(np.flatnonzero(x >= kth), v)
    order = np.lexsort((cols, -x[rows, cols], rows))
    rows, cols = rows[order], cols[order]
    within = np.arange(len(rows)) - np.searchsorted(rows, np.arange(n))[rows]
    keep = within < k
    out = np.empty((n, k), dtype=np.int64)
    out[rows[keep], within[keep]] = cols[keep]
    return out


def log_rest(lp: np.ndarray, indices: np.ndarray) -> np.ndarray:
    r"""``log Σ_{j ∉ indices} e^{lp_j}`` per row (float64): the log of the mass outside
    the chosen classes, from the remaining classes themselves.

    Evaluated as ``m + log Σ e^{lp_j − m}`` with ``m`` the largest remaining value (no
    underflow however small the mass); ``-inf`` when nothing remains (``K = V``) or the
    remaining classes all have ``p = 0``.
    """
    n = len(lp)
    rest = np.array(lp, dtype=np.float64)
    rest[np.arange(n)[:, None], indices] = -np.inf
    if rest.shape[1] == 0:
        return np.full(n, -np.inf)
    top = rest.max(axis=1, initial=-np.inf)
    safe = np.where(np.isfinite(top), top, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        rest -= safe[:, None]
        np.exp(rest, out=rest)
        out: np.ndarray = safe + np.log(rest.sum(axis=1))
    out[top == -np.inf] = -np.inf
    return out


def _logsumexp(x: np.ndarray) -> np.ndarray:
    top = x.max(axis=1, initial=-np.inf)
    safe = np.where(np.isfinite(top), top, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        out: np.ndarray = safe + np.log(np.exp(x - safe[:, None]).sum(axis=1))
    out[top == -np.inf] = -np.inf
    return out


def cells(
    indices: np.ndarray,
    logprobs: np.ndarray,
    tail: np.ndarray,
    lq: np.ndarray,
    mode: str = "bucket",
) -> Pair:
    r"""The reference's K + 1 cells (``bucket``) or K renormalised classes
    (``renormalize``) against the dense candidate ``lq`` (rows × V, ``log q``), as a
    :class:`~kldiv_cli.core.compare.Pair` for
    :func:`~kldiv_cli.core.compare.row_measures`.

    ``logprobs`` (rows × K) and ``tail`` (rows) are the reference's ``log p`` as stored
    (float64; not renormalised: the file's numbers are the reference), ``indices`` its
    classes. The candidate's tail ``log Q_T`` is :func:`log_rest` of ``lq``. With ``d =
    log Q_c − log P_c`` per cell; a cell with ``P_c = Q_c = 0`` adds nothing to any
    measure.
    """
    if mode not in TAILS:
        raise ValueError(f"unknown tail {mode!r}; choose one of {', '.join(TAILS)}")
    rows = np.arange(len(indices))[:, None]
    lp = np.asarray(logprobs, dtype=np.float64)
    lqk = lq[rows, indices]
    if mode == "bucket":
        lp = np.concatenate([lp, np.asarray(tail, dtype=np.float64)[:, None]], axis=1)
        lqk = np.concatenate([lqk, log_rest(lq, indices)[:, None]], axis=1)
    else:
        lp = lp - _logsumexp(lp)[:, None]
        lqk = lqk - _logsumexp(lqk)[:, None]
    with np.errstate(invalid="ignore"):
        d = lqk - lp
        ed = np.expm1(d)
    return Pair(lp=lp, p=np.exp(lp), q=np.exp(lqk), d=d, ed=ed, lq=lqk)
