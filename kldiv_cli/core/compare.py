r"""Per-row measures between two models' distributions over the same classes.

Each row is one position (a token, a sample); the last axis holds the classes (the
vocabulary). ``p`` is the reference (base) model, ``q`` the candidate. Everything is
computed in float64 from the data as given (a float32 logit widens exactly), in
log space where digits would otherwise be lost:

* ``kl``         KL(p ‖ q) = Σ p·(log p − log q)
* ``kl_reverse`` KL(q ‖ p) = Σ q·(log q − log p)
* ``js``         Jensen–Shannon divergence (nats), ½ KL(p ‖ m) + ½ KL(q ‖ m), m = (p+q)/2
* ``tv``         total variation, ½ Σ |p − q|
* ``agree``      whether the argmax of the two rows is the same class (first index on
  ties, as ``np.argmax``, taken on the data as given)

A class with ``p = 0`` adds nothing to KL(p ‖ q) (``0·log 0 = 0``); ``p > 0`` where
``q = 0`` makes it ``+inf``. A NaN anywhere in a row makes every measure of the row NaN.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .stats import correlation, mean_stderr

__all__ = [
    "KINDS",
    "MEASURES",
    "Pair",
    "Scratch",
    "distribution",
    "OVERLAP_K",
    "TOPK",
    "pair",
    "perplexity_statistics",
    "rank_measures",
    "reference_top",
    "row_measures",
    "token_measures",
]

#: What an input's numbers are.
KINDS: tuple[str, ...] = ("logits", "log-probs", "probs")
#: The per-row divergences, in the order they are reported.
MEASURES: tuple[str, ...] = ("kl", "kl_reverse", "js", "tv")
#: The K of top-K agreement: the reference's top-1 class among the candidate's K most probable.
TOPK: tuple[int, ...] = (1, 2, 5, 10)
#: The size of the two top sets whose overlap is reported.
OVERLAP_K = 5

_LN2 = math.log(2.0)
#: Above this log-ratio ``expm1`` overflows; there ``log((1 + e^d)/2) = d − ln 2`` to
#: within e^-700.
_BIG = 700.0


def distribution(
    block: np.ndarray, kind: str, temperature: float = 1.0, scratch: Scratch | None = None
) -> tuple[np.ndarray, np.ndarray]:
    r"""``(log p, p)`` in float64 for each row of ``block`` (rows × classes).

    Parameters
    ----------
    block
        A 2-D float array: logits, log-probabilities or probabilities (``kind``).
    kind
        ``logits``: log p = log_softmax(x / T), from one ``exp`` pass in float64
        (``z = (x − max)/T``, ``log p = z − log Σ e^z``, ``p = e^z / Σ e^z``).
        ``log-probs``: taken as given (p = e^x); with ``T ≠ 1``, renormalised as
        log_softmax(x / T). ``probs``: taken as given (log p = log x); with ``T ≠ 1``,
        log_softmax(log x / T).
    temperature
        ``T > 0``; 1 leaves log-probabilities and probabilities untouched.
    scratch
        Work arrays (:class:`Scratch`, buffers ``dist_lp`` and ``dist_p``) for the
        logits path: the result lives in them until the next call with the same scratch
        (a fresh megabyte array is page-faulted in anew: 5x the cost of the maths).

    Edge cases
    ----------
    ``-inf`` logits (masked classes) get ``p = 0``; a row whose logits are all
    ``-inf``, or hold ``+inf`` or NaN, is NaN throughout (as torch's log_softmax).
    A probability of 0 has ``log p = -inf``; a negative one gives NaN.
    """
    _check_kind(kind)
    # Logits are taken as they are (float32 differences are exact in float64): no copy.
    a = block if kind == "logits" else np.asarray(block, dtype=np.float64)
    with np.errstate(all="ignore"):
        if temperature == 1.0 and kind == "probs":
            return np.log(a), a
        if temperature == 1.0 and kind == "log-probs":
            return a, np.exp(a)
        if kind == "probs":
            a = np.log(a)
        top = np.max(a, axis=-1, keepdims=True).astype(np.float64)
        z = np.subtract(
            a,
            top,
            out=None if scratch is None else scratch.get("dist_lp", a.shape),
            dtype=np.float64,
        )
        e = np.empty_like(z) if scratch is None else scratch.get("dist_p", a.shape)
        if temperature != 1.0:
            z /= temperature
        np.exp(z, out=e)
        s = np.sum(e, axis=-1, keepdims=True)
        z -= np.log(s)
        e /= s
    return z, e


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}; choose one of {', '.join(KINDS)}")


class Scratch:
    """Block-sized float64 work arrays kept from one call to the next (one per thread).

    Fresh temporaries of a megabyte or more come from ``mmap`` and are page-faulted
    in anew for every block; kept buffers are not. A :class:`Pair` made with a
    scratch lives in its buffers until the next call that uses the same scratch.
    """

    def __init__(self) -> None:
        self._buffers: dict[str, np.ndarray] = {}

    def get(self, name: str, shape: tuple[int, ...]) -> np.ndarray:
        """An uninitialised float64 array of ``shape``, the buffer ``name`` (grown as needed)."""
        size = math.prod(shape)
        buf = self._buffers.get(name)
        if buf is None or buf.size < size:
            buf = self._buffers[name] = np.empty(size)
        return buf[:size].reshape(shape)


@dataclass
class Pair:
    r"""Two blocks of distributions, row by row, in float64.

    ``d = log q − log p`` and ``ed = expm1(d) = q/p − 1`` are computed from both sides
    at once (see :func:`pair`), so they keep their digits when ``p ≈ q``; ``lq`` is
    None when it is ``lp + d``.
    """

    lp: np.ndarray
    p: np.ndarray
    q: np.ndarray
    d: np.ndarray
    ed: np.ndarray
    lq: np.ndarray | None = None

    def log_q_at(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        # Fancy indexing is typed Any in NumPy's stubs; the result is a float64 array.
        picked: np.ndarray = (
            self.lq[rows, cols] if self.lq is not None else self.lp[rows, cols] + self.d[rows, cols]
        )
        return picked


def pair(
    raw_p: np.ndarray,
    raw_q: np.ndarray,
    kind_p: str,
    kind_q: str,
    temperature: float = 1.0,
    scratch: Scratch | None = None,
) -> Pair:
    r"""Reference rows ``raw_p`` and candidate rows ``raw_q`` as a :class:`Pair`.

    The log-ratio ``d`` is where digits are lost when the two are close (a KL of
    1e-6 lives in the 7th digit of ``log p − log q``), so it is formed from both sides:

    * two logit inputs (and any input with ``T ≠ 1``, brought to logits): with
      ``z = (x − max x)/T``, ``d = δ − c`` where ``δ = z_q − z_p`` (a difference of
      the data, exact for float32/float16 values) and ``c = log(S_q/S_p) =
      log1p(ΔS/S_p)``, ``ΔS = Σ e^{z_p}·expm1(δ)``; then ``expm1(d) = (expm1(δ) −
      C)/(1 + C)`` with ``C = ΔS/S_p``, and ``q = p·(1 + expm1(d))``;
    * two log-probability inputs: ``d = y − x``;
    * two probability inputs: ``d = log1p((q − p)/p)`` where ``|q − p| ≤ p/2``;
    * mixed kinds: ``d = log q − log p`` from :func:`distribution`.

    ``scratch`` (see :class:`Scratch`) holds the logit path's arrays.
    """
    _check_kind(kind_p)
    _check_kind(kind_q)
    with np.errstate(all="ignore"):
        if temperature != 1.0 or kind_p == kind_q == "logits":
            return _logits_pair(
                np.log(raw_p, dtype=np.float64) if kind_p == "probs" else np.asarray(raw_p),
                np.log(raw_q, dtype=np.float64) if kind_q == "probs" else np.asarray(raw_q),
                temperature,
                scratch or Scratch(),
            )
        a = np.asarray(raw_p, dtype=np.float64)
        b = np.asarray(raw_q, dtype=np.float64)
        lp, p = distribution(a, kind_p)
        lq, q = distribution(b, kind_q)
        if kind_p == kind_q == "log-probs":
            d = b - a
        elif kind_p == kind_q == "probs":
            # log1p keeps the digits of a ratio near 1; far from 1, (q − p)/p near −1
            # would lose them, and the logs' difference is exact enough.
            near = np.abs(q - p) <= 0.5 * p
            d = np.where(near, np.log1p((q - p) / np.where(near, p, 1.0)), lq - lp)
        else:
            d = lq - lp
        return Pair(lp=lp, p=p, q=q, d=d, ed=np.expm1(d), lq=lq)


def _logits_pair(a: np.ndarray, b: np.ndarray, temperature: float, s: Scratch) -> Pair:
    """:func:`pair` of two logit blocks (any float dtype; differences taken in float64,
    where those of float32/float16 values are exact)."""
    f64 = np.float64
    shape = np.broadcast_shapes(a.shape, b.shape)
    ma = np.max(a, axis=-1, keepdims=True).astype(f64)
    mb = np.max(b, axis=-1, keepdims=True).astype(f64)
    z = np.subtract(a, ma, out=s.get("lp", shape), dtype=f64)
    delta = np.subtract(b, a, out=s.get("d", shape), dtype=f64)
    delta -= mb - ma
    if temperature != 1.0:
        z /= temperature
        delta /= temperature
    ep = np.exp(z, out=s.get("p", shape))
    sp = np.sum(ep, axis=-1, keepdims=True)
    e = np.expm1(delta, out=s.get("ed", shape))
    change = np.multiply(ep, e, out=s.get("q", shape))
    total = np.sum(change, axis=-1, keepdims=True)
    eq: np.ndarray | None = None
    bad = np.zeros((), dtype=bool)
    if not np.isfinite(total).all():
        # Where e^z_p·expm1(δ) is not a number (masked classes, overflow), the
        # candidate's terms are taken directly: |e^z_q − e^z_p| ≤ 1 cannot overflow.
        bad = ~np.isfinite(change)
        zq = np.subtract(b, mb, dtype=f64)
        if temperature != 1.0:
            zq /= temperature
        eq = np.exp(zq)
        total = np.sum(np.where(bad, eq - ep, change), axis=-1, keepdims=True)
    big_c = total / sp
    z -= np.log(sp)
    ep /= sp
    delta -= np.log1p(big_c)
    e -= big_c
    e /= 1.0 + big_c
    q = np.multiply(ep, e, out=change)
    q += ep
    if eq is not None:
        np.copyto(q, eq / (sp * (1.0 + big_c)), where=bad)
    return Pair(lp=z, p=ep, q=q, d=delta, ed=e)


def row_measures(
    raw_p: np.ndarray, raw_q: np.ndarray, pr: Pair, scratch: Scratch | None = None
) -> dict[str, np.ndarray]:
    r"""``kl, kl_reverse, js, tv`` (float64) and ``agree`` (bool) for each row.

    ``raw_p``/``raw_q`` are the rows as given (for the argmax), ``pr`` their
    :func:`pair`; ``scratch`` holds the work arrays (not those of ``pr``).

    With ``d = log q − log p``, the Jensen–Shannon term of a class is
    ``q·d − (p+q)·L`` with ``L = log((1+e^d)/2) = log1p(expm1(d)/2)``: each term is
    ≥ 0 and keeps its digits when ``d`` is tiny (the naive ``p·log(p/m)`` cancels);
    a class where only one side has mass adds ``(p+q)·ln 2``.
    """
    s = scratch or Scratch()
    p, q, d = pr.p, pr.q, pr.d
    with np.errstate(all="ignore"):
        qd = np.multiply(q, d, out=s.get("qd", d.shape))
        work = s.get("work", d.shape)
        if p.min(initial=1.0) > 0 and q.min(initial=1.0) > 0 and d.max(initial=0.0) <= _BIG:
            # Every class has mass on both sides (no NaN either): the general formulas
            # below without their special cases, and the same bits.
            kl = -np.multiply(p, d, out=work).sum(axis=-1)
            kl_reverse = qd.sum(axis=-1)
            half = np.log1p(np.multiply(pr.ed, 0.5, out=work), out=work)
            mass = np.add(p, q, out=s.get("mass", d.shape))
            terms = np.subtract(qd, np.multiply(mass, half, out=work), out=work)
            js = 0.5 * terms.sum(axis=-1)
        else:
            kl = np.where(p == 0, 0.0, p * -d).sum(axis=-1)
            kl_reverse = np.where(q == 0, 0.0, qd).sum(axis=-1)
            half = np.where(d > _BIG, d - _LN2, np.log1p(pr.ed * 0.5))
            mass = p + q
            terms = np.where((p > 0) & (q > 0), qd - mass * half, mass * _LN2)
            js = 0.5 * terms.sum(axis=-1)
        tv = 0.5 * np.abs(np.subtract(p, q, out=work), out=work).sum(axis=-1)
    # −Σ p·0 is −0.0: a row against itself reads 0 (x + 0.0 changes no other value).
    kl += 0.0
    agree = np.argmax(raw_p, axis=-1) == np.argmax(raw_q, axis=-1)
    return {"kl": kl, "kl_reverse": kl_reverse, "js": js, "tv": tv, "agree": agree}


#: Chunks per row whose maxima bound the top ``k`` from below (see :func:`_top_indices`).
_CHUNKS = 16


def _top_indices(x: np.ndarray, k: int) -> np.ndarray:
    """Each row's ``k`` largest classes (rows × k, int64), largest first, ties to the
    lower index; -1 fills a row with fewer comparable values (NaN compares false).

    No sort or partition of whole rows: the ``k``-th largest of the maxima of
    :data:`_CHUNKS` chunks is at most the row's ``k``-th largest value (``k`` chunks
    reach it), so the values at or above it hold the top ``k``; only those few are sorted.
    """
    n, v = x.shape
    k = min(k, v)
    m = min(v, _CHUNKS)
    peaks = np.maximum.reduceat(x, (np.arange(m) * v) // m, axis=1)
    low = np.partition(peaks, m - k, axis=1)[:, m - k : m - k + 1]
    # flatnonzero: 2-D nonzero is some 30x slower on a block.
    rows, cols = np.divmod(np.flatnonzero(x >= low), v)
    order = np.lexsort((cols, -x[rows, cols].astype(np.float64), rows))
    rows, cols = rows[order], cols[order]
    within = np.arange(len(rows)) - np.searchsorted(rows, np.arange(n))[rows]
    keep = within < k
    out = np.full((n, k), -1, dtype=np.int64)
    out[rows[keep], within[keep]] = cols[keep]
    return out


def reference_top(raw_p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each row's top-1 class and its :data:`OVERLAP_K` top classes, of the reference
    as given: what :func:`rank_measures` needs of it, the same for every candidate."""
    return np.argmax(raw_p, axis=-1), _top_indices(raw_p, OVERLAP_K)


def rank_measures(
    raw_p: np.ndarray,
    raw_q: np.ndarray,
    p: np.ndarray | None = None,
    top: tuple[np.ndarray, np.ndarray] | None = None,
) -> dict[str, np.ndarray]:
    r"""Where the candidate ranks the reference's choice, for each row (data as given).

    Classes are ordered by value, largest first, ties to the lower index (the order of
    ``np.argmax``; softmax, log and a temperature do not change it).

    * ``top1_rank`` (int64, from 1): the candidate's rank of the reference's top-1
      class; ``top1_rank ≤ K`` is top-K agreement, and ``top1_rank == 1`` is exactly
      ``agree`` of :func:`row_measures`.
    * ``top5_overlap`` (float64): ``|top5(p) ∩ top5(q)| / 5`` (``/V`` with ``V < 5``
      classes); see :data:`OVERLAP_K`.
    * with ``p`` (the reference's probabilities, float64): ``reference_top1_prob``, the
      probability of its top-1 class, and ``reference_top1_margin``, that minus the
      probability of its second class (how sure the reference is).

    ``top`` is :func:`reference_top` of ``raw_p``, when the caller has it already (one
    reference block against several candidates).

    A NaN compares false: a row with NaN gets an arbitrary rank (its divergences are NaN).
    """
    n = len(raw_p)
    rows = np.arange(n)
    best, tp = reference_top(raw_p) if top is None else top
    chosen = raw_q[rows, best][:, None]
    rank = 1 + np.count_nonzero(raw_q > chosen, axis=-1)
    equal = raw_q == chosen
    tied = np.flatnonzero(np.count_nonzero(equal, axis=-1) > 1)
    if tied.size:
        cols = np.arange(raw_q.shape[-1])
        rank[tied] += np.count_nonzero(equal[tied] & (cols < best[tied, None]), axis=-1)
    tq = _top_indices(raw_q, OVERLAP_K)
    same = (tp[:, :, None] == tq[:, None, :]) & (tp[:, :, None] >= 0)
    common = np.count_nonzero(same.any(axis=-1), axis=-1)
    out = {"top1_rank": rank.astype(np.int64), "top5_overlap": common / tp.shape[1]}
    if p is not None:
        first = p[rows, best]
        out["reference_top1_prob"] = first
        out["reference_top1_margin"] = first - p[rows, tp[:, 1]]
    return out


def token_measures(pr: Pair, tokens: np.ndarray) -> dict[str, np.ndarray]:
    r"""The observed next token's statistics for each row.

    ``nll_reference = −log p(token)``, ``nll_candidate = −log q(token)`` and
    ``delta_p = q(token) − p(token)`` (llama.cpp's Δp), all float64. ``tokens`` holds
    one valid class index per row (checked by the caller).
    """
    rows = np.arange(len(tokens))
    with np.errstate(all="ignore"):
        return {
            "nll_reference": -pr.lp[rows, tokens],
            "nll_candidate": -pr.log_q_at(rows, tokens),
            "delta_p": pr.q[rows, tokens] - pr.p[rows, tokens],
        }


def _exp(x: float) -> float:
    try:
        return math.exp(x)
    except OverflowError:
        return math.inf


def perplexity_statistics(nll_reference: np.ndarray, nll_candidate: np.ndarray) -> dict[str, float]:
    r"""llama.cpp's "Perplexity statistics" of two models on the same tokens.

    From the per-token negative log-likelihoods :math:`a_i` (reference, llama.cpp's
    *base*) and :math:`b_i` (candidate, *Q*), with :math:`s_a, s_b` the standard errors
    of their means (:func:`~kldiv_cli.core.stats.mean_stderr`) and
    :math:`c = \operatorname{cov}(\bar a, \bar b)`, as ``tools/perplexity/perplexity.cpp``
    computes them (llama.cpp commit 050fc7f3):

    * ``reference`` :math:`= e^{\bar a}` ± ``reference_stderr`` :math:`= e^{\bar a} s_a`,
      and ``candidate`` alike;
    * ``correlation``: Pearson's of :math:`a` and :math:`b` (llama.cpp's
      :math:`c/(s_a s_b)`, the same number);
    * ``ln_ratio`` :math:`= \overline{b - a}` ± ``ln_ratio_stderr``
      :math:`= \sqrt{s_a^2 + s_b^2 - 2c}`, evaluated as the standard error of the
      per-token differences (the same quantity without the cancellation);
    * ``ratio`` :math:`= e^{\text{ln\_ratio}}` ± ``ratio_stderr``
      :math:`= \text{ratio} \cdot \text{ln\_ratio\_stderr}`;
    * ``difference`` :math:`= e^{\bar b} - e^{\bar a}` ± ``difference_stderr``
      :math:`= \sqrt{u_b^2 + u_a^2 - 2 e^{\bar a} e^{\bar b} c}`, with
      :math:`u = e^{\bar x} s_x` each side's error and
      :math:`c = (s_a^2 + s_b^2 - s_{b-a}^2)/2`.

    Edge cases: llama.cpp prints errors of 0 below 11 tokens (and a covariance of 0
    below 10); here every error is reported for N ≥ 2 and NaN for N = 1. A variance
    that rounds below 0 is 0.
    """
    mean_a, se_a = mean_stderr(nll_reference)
    mean_b, se_b = mean_stderr(nll_candidate)
    with np.errstate(invalid="ignore", over="ignore"):
        ln_ratio, se_d = mean_stderr(np.asarray(nll_candidate) - np.asarray(nll_reference))
    ppl_a, ppl_b = _exp(mean_a), _exp(mean_b)
    u_a, u_b = ppl_a * se_a, ppl_b * se_b
    cov = 0.5 * (se_a * se_a + se_b * se_b - se_d * se_d)
    ratio = _exp(ln_ratio)
    var_difference = u_a * u_a + u_b * u_b - 2.0 * ppl_a * ppl_b * cov
    return {
        "reference": ppl_a,
        "reference_stderr": u_a,
        "candidate": ppl_b,
        "candidate_stderr": u_b,
        "correlation": correlation(nll_reference, nll_candidate),
        "ln_ratio": ln_ratio,
        "ln_ratio_stderr": se_d,
        "ratio": ratio,
        "ratio_stderr": ratio * se_d,
        "difference": ppl_b - ppl_a,
        "difference_stderr": math.sqrt(max(var_difference, 0.0))
        if not math.isnan(var_difference)
        else math.nan,
    }
