r"""KL estimators from sampled tokens, as RL frameworks log them (Schulman's k1, k2, k3).

In RLHF/GRPO/PPO only the log-probabilities of the sampled tokens are kept, under the
policy π that sampled them (``logp``) and under a reference π_ref (``ref_logp``). With
:math:`\log r = \log\pi_{ref} - \log\pi` per token, the KL(π ‖ π_ref) is estimated by

.. math::

    k_1 = -\log r, \qquad k_2 = \tfrac12 (\log r)^2, \qquad
    k_3 = (r - 1) - \log r = \operatorname{expm1}(\log r) - \log r,

plus ``abs`` :math:`= |\log r|`. k1 and k3 are unbiased; k3 is ≥ 0 and has low variance.
k3 is evaluated with ``expm1`` so small log-ratios do not cancel.

Clamp presets reproduce what each framework logs (checked against their code):

* ``none`` — TRL (``GRPOTrainer`` k3, ``PPOTrainer`` k1/k3): nothing is clamped.
* ``openrlhf`` — OpenRLHF ``compute_approx_kl``: every estimate clamped to [−10, 10].
* ``verl`` — verl ``kl_penalty``: k3 only, log r clamped to ±20 first, the result to ±10.
* ``LO,HI`` — every estimate clamped to [LO, HI].

Aggregations are verl's ``agg_loss`` modes over the tokens where ``mask`` is true, as
verl 0.9.1 computes them (``verl/trainer/ppo/core_algos.py``), plus verl 0.4–0.7's
``seq-mean-token-sum-norm`` under its own name and ``sum``. All sums are exact
(``math.fsum``) in float64 and rounded once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from .engine import as_float64, combine, combine_rows

if TYPE_CHECKING:
    from numpy.typing import ArrayLike, NDArray

__all__ = [
    "AGGREGATES",
    "CLAMP_PRESETS",
    "EMPTY_SEQUENCES",
    "ESTIMATORS",
    "Clamp",
    "aggregate_tokens",
    "estimate_diagnostics",
    "expm1_minus",
    "kl_estimate",
    "log_ratio",
    "parse_clamp",
    "per_token",
]

ESTIMATORS: tuple[str, ...] = ("k1", "k2", "k3", "abs")
#: verl 0.4.0–0.7.x's ``seq-mean-token-sum-norm``: Σ s_i / L, not divided by the sequences.
SUM_NORM_V07 = "seq-mean-token-sum-norm-verl0.7"
AGGREGATES: tuple[str, ...] = (
    "token-mean",
    "seq-mean-token-mean",
    "seq-mean-token-sum",
    "seq-mean-token-sum-norm",
    SUM_NORM_V07,
    "token-sum",
    "sum",
)
#: What the seq-mean modes do with a sequence that has no token: leave it out (``skip``,
#: verl's ``agg_loss``) or count it as 0 (``zero``, TRL PPO's ``kl.sum(1).mean()``).
EMPTY_SEQUENCES: tuple[str, ...] = ("skip", "zero")
CLAMP_PRESETS: tuple[str, ...] = ("none", "openrlhf", "verl")
#: verl's ``SAFETY_BOUND`` on log-ratios before ``exp`` (k3 and the χ² diagnostics).
LOG_BOUND = 20.0


@dataclass(frozen=True)
class Clamp:
    """Where an estimate is clamped.

    Attributes
    ----------
    name
        The preset (``none``, ``openrlhf``, ``verl``) or ``LO,HI``.
    result
        ``(lo, hi)`` applied to the estimate, or None.
    log_ratio
        ``(lo, hi)`` applied to log r before the estimate, or None.
    only
        The one estimator the clamps apply to (verl clamps k3 only); None for all.
    """

    name: str
    result: tuple[float, float] | None = None
    log_ratio: tuple[float, float] | None = None
    only: str | None = None

    def applies(self, estimator: str) -> bool:
        return self.only is None or self.only == estimator


_PRESETS = {
    "none": Clamp("none"),
    "openrlhf": Clamp("openrlhf", result=(-10.0, 10.0)),
    "verl": Clamp("verl", result=(-10.0, 10.0), log_ratio=(-LOG_BOUND, LOG_BOUND), only="k3"),
}


#: 1/k! for k = 2..18: the series of e^x − 1 − x, to float64 precision for |x| < 0.5.
_SERIES = tuple(1.0 / math.factorial(k) for k in range(18, 1, -1))
_SERIES_BELOW = 0.5


def expm1_minus(x: ArrayLike) -> np.ndarray:
    r"""``e^x − 1 − x`` in float64, to a few ulp everywhere.

    ``expm1(x) − x`` keeps its digits for |x| ≥ ½; below, the rounding of ``expm1``
    (½ ulp of x) would dominate a result of order x²/2, so the Taylor series
    :math:`x^2 \sum_{k \ge 2} x^{k-2}/k!` is summed instead. Exactly 0 at 0; +inf at
    +inf (the limit), NaN stays NaN.
    """
    a = np.asarray(x, dtype=np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        out = np.asarray(np.expm1(a) - a, dtype=np.float64)
        out[a == np.inf] = np.inf
        small = np.abs(a) < _SERIES_BELOW
        if small.any():
            s = a[small]
            acc = np.full(s.shape, _SERIES[0])
            for c in _SERIES[1:]:
                acc = acc * s + c
            out[small] = acc * (s * s)
    return out


def parse_clamp(spec: str | Clamp) -> Clamp:
    """A :class:`Clamp` from a preset name or ``"LO,HI"`` (LO ≤ HI, not NaN).

    Raises
    ------
    ValueError
        Anything else.
    """
    if isinstance(spec, Clamp):
        return spec
    preset = _PRESETS.get(spec.strip().lower())
    if preset is not None:
        return preset
    parts = spec.split(",")
    try:
        lo, hi = (float(p) for p in parts)
    except ValueError:
        raise ValueError(
            f"unknown clamp {spec!r}; choose one of {', '.join(CLAMP_PRESETS)} or LO,HI"
        ) from None
    if not lo <= hi:
        raise ValueError(f"clamp {spec!r}: LO must be <= HI (and neither NaN)")
    return Clamp(f"{lo:g},{hi:g}", result=(lo, hi))


def log_ratio(logp: ArrayLike, ref_logp: ArrayLike) -> NDArray[np.float64]:
    """``ref_logp − logp`` in float64 (the inputs widened exactly first).

    Raises
    ------
    ValueError
        Shapes that differ.
    TypeError
        Non-real inputs.
    """
    a, b = as_float64(logp, "logp"), as_float64(ref_logp, "ref_logp")
    if a.shape != b.shape:
        raise ValueError(f"shapes do not match: logp {a.shape}, ref_logp {b.shape}")
    with np.errstate(invalid="ignore"):
        return b - a


def per_token(logr: np.ndarray, estimator: str, clamp: str | Clamp = "none") -> np.ndarray:
    r"""The per-token estimate (float64) from log r = log π_ref − log π.

    ``k1 = −log r``, ``k2 = ½ (log r)²``, ``k3 = r − 1 − log r`` (:func:`expm1_minus`:
    ``expm1(log r) − log r``, its series for |log r| < ½), ``abs = |log r|``, with
    ``clamp``'s bounds on log r (before) and on the estimate (after).

    Edge cases: k3 of log r = +inf is +inf (the limit; ``expm1(inf) − inf`` would be
    NaN); NaN stays NaN through every clamp.
    """
    if estimator not in ESTIMATORS:
        raise ValueError(f"unknown estimator {estimator!r}; choose one of {', '.join(ESTIMATORS)}")
    c = parse_clamp(clamp)
    applies = c.applies(estimator)
    x = np.asarray(logr, dtype=np.float64)
    if applies and c.log_ratio is not None:
        x = np.clip(x, *c.log_ratio)
    with np.errstate(over="ignore", invalid="ignore"):
        if estimator == "k1":
            out = -x
        elif estimator == "k2":
            out = 0.5 * (x * x)
        elif estimator == "abs":
            out = np.abs(x)
        else:
            out = expm1_minus(x)
    if applies and c.result is not None:
        out = np.clip(out, *c.result)
    return np.asarray(out, dtype=np.float64)


def _layout(shape: tuple[int, ...], mask: ArrayLike | None) -> np.ndarray:
    """The mask as a 2-D bool array [sequences, tokens] (a 1-D input is one sequence)."""
    if len(shape) not in (1, 2):
        raise ValueError(f"expected [sequences, tokens] (1-D or 2-D), got shape {shape}")
    rows = (1, *shape) if len(shape) == 1 else shape
    if mask is None:
        return np.ones(rows, dtype=bool)
    m = np.asarray(mask)
    if m.shape != shape:
        raise ValueError(f"mask shape {m.shape} does not match the log-probabilities' {shape}")
    if m.dtype != bool:
        if m.dtype.kind not in "fiu" or not np.isin(m, (0, 1)).all():
            raise ValueError("mask must hold only 0 and 1 (or booleans)")
        m = m != 0
    return m.reshape(rows)


def _rows(values: np.ndarray) -> np.ndarray:
    return values.reshape(1, -1) if values.ndim < 2 else values


def aggregate_tokens(
    values: np.ndarray,
    mask: np.ndarray | None = None,
    how: str = "token-mean",
    norm_length: float | None = None,
    empty: str = "skip",
) -> float:
    r"""Aggregate per-token values ``[sequences, tokens]`` over the tokens in ``mask``.

    With :math:`s_i` the (exact) sum of sequence i over its :math:`n_i` tokens and
    :math:`S` the sequences averaged over — those with :math:`n_i > 0` (``empty="skip"``,
    verl 0.9.1's ``agg_loss``) or all of them, an empty one counting as 0
    (``empty="zero"``, TRL PPO's ``kl.sum(1).mean()``):

    * ``token-mean``: :math:`\sum_i s_i / \sum_i n_i`
    * ``seq-mean-token-mean``: :math:`\frac{1}{|S|}\sum_{i \in S} s_i / n_i`
      (verl divides by :math:`n_i + 10^{-8}`, which float32 rounds to :math:`n_i`)
    * ``seq-mean-token-sum``: :math:`\frac{1}{|S|}\sum_{i \in S} s_i`
    * ``seq-mean-token-sum-norm``: :math:`\frac{1}{|S|\,L}\sum_{i \in S} s_i` (verl
      0.8 and later), ``L = norm_length``, by default the padded length (the number of
      columns; verl's ``loss_mask.shape[-1]``, its horizon)
    * ``seq-mean-token-sum-norm-verl0.7``: :math:`\sum_i s_i / L` (verl 0.4–0.7's
      definition, not divided by the number of sequences)
    * ``token-sum`` (verl's name) and ``sum``: :math:`\sum_i s_i`

    Token-level sums are exact over all tokens (not a sum of row sums). No tokens gives
    NaN for the means (as verl's 0/0) and 0 for the sums and for
    ``seq-mean-token-sum-norm-verl0.7``; with ``empty="zero"`` the seq-means are then 0
    (as TRL's).
    """
    if how not in AGGREGATES:
        raise ValueError(f"unknown aggregate {how!r}; choose one of {', '.join(AGGREGATES)}")
    if empty not in EMPTY_SEQUENCES:
        raise ValueError(f"unknown empty-sequence rule {empty!r}; choose skip or zero")
    v = _rows(np.asarray(values, dtype=np.float64))
    m = np.ones(v.shape, dtype=bool) if mask is None else _rows(np.asarray(mask, dtype=bool))
    counts = m.sum(axis=1)
    if how in ("token-mean", "token-sum", "sum"):
        total = combine(v[m]) if m.any() else 0.0
        if how != "token-mean":
            return total
        n = int(counts.sum())
        return total / n if n else math.nan
    # Masked-out tokens count as 0, so a NaN outside the mask is ignored.
    sums = combine_rows(np.where(m, v, 0.0))
    length = v.shape[1] if norm_length is None else norm_length
    if how == SUM_NORM_V07:
        return combine(sums) / length if length else math.nan
    kept = counts > 0 if empty == "skip" else np.ones(len(counts), dtype=bool)
    if not kept.any():
        return math.nan
    if how == "seq-mean-token-mean":
        per_seq = sums[kept] / np.maximum(counts[kept], 1)  # an empty one's sum is 0
    else:
        per_seq = sums[kept]
    mean = combine(per_seq) / int(kept.sum())
    if how == "seq-mean-token-sum-norm":
        return mean / length if length else math.nan
    return mean


def kl_estimate(
    logp: ArrayLike,
    ref_logp: ArrayLike,
    estimator: str = "k3",
    mask: ArrayLike | None = None,
    clamp: str | Clamp = "none",
    aggregate: str = "token-mean",
    norm_length: float | None = None,
    empty: str = "skip",
) -> float | dict[str, float]:
    r"""The KL(π ‖ π_ref) estimated from the log-probabilities of sampled tokens.

    Parameters
    ----------
    logp : array_like
        log π of each sampled token under the policy that sampled it, shape
        ``[sequences, tokens]`` (or one sequence, 1-D).
    ref_logp : array_like
        log π_ref of the same tokens under the reference, same shape.
    estimator : {'k1', 'k2', 'k3', 'abs', 'all'}
        With log r = ref_logp − logp: ``k1 = −log r``, ``k2 = ½ (log r)²``,
        ``k3 = (r − 1) − log r`` (via ``expm1``), ``abs = |log r|``. ``all`` gives a
        dict of the four.
    mask : array_like, optional
        0/1 (or bool) of the same shape: the tokens that count. Values outside the
        mask are ignored, NaN included. Default: every token.
    clamp : str or Clamp
        ``none`` (TRL), ``openrlhf`` (each estimate to [−10, 10]), ``verl`` (k3: log r
        to ±20, then the result to ±10), or ``"LO,HI"``.
    aggregate : str
        ``token-mean`` (default), ``seq-mean-token-mean``, ``seq-mean-token-sum``,
        ``seq-mean-token-sum-norm``, ``token-sum`` (verl 0.9.1's ``agg_loss`` modes),
        ``seq-mean-token-sum-norm-verl0.7`` (verl 0.4–0.7's) or ``sum``; see
        :func:`aggregate_tokens`.
    norm_length : float, optional
        The divisor of ``seq-mean-token-sum-norm`` (verl's ``loss_scale_factor``);
        default the number of tokens per row (the padded length).
    empty : {'skip', 'zero'}
        The seq-mean modes leave sequences without tokens out (``skip``, verl) or count
        them as 0 (``zero``, TRL PPO).

    Returns
    -------
    float or dict
        The aggregated estimate in float64: per-token values in float64, sums exact
        and rounded once. A NaN inside the mask makes it NaN.

    Raises
    ------
    ValueError
        Shapes that differ, a mask that is not 0/1, unknown names.
    """
    logr = log_ratio(logp, ref_logp)
    m = _layout(logr.shape, mask)
    names = ESTIMATORS if estimator == "all" else (estimator,)
    out = {
        name: aggregate_tokens(
            _rows(per_token(logr, name, clamp)), m, aggregate, norm_length, empty
        )
        for name in names
    }
    return out if estimator == "all" else out[estimator]


def _exp(x: float) -> float:
    """``exp`` that overflows to inf (``math.exp`` raises)."""
    with np.errstate(over="ignore"):
        return float(np.exp(x))


def _share(flags: np.ndarray) -> float:
    return float(np.count_nonzero(flags)) / flags.size if flags.size else math.nan


def estimate_diagnostics(
    logp: np.ndarray, ref_logp: np.ndarray, mask: np.ndarray | None = None
) -> dict[str, Any]:
    r"""How far apart the two sides are, over the tokens in ``mask``.

    With :math:`\rho = \pi/\pi_{ref} = \exp(\text{logp} - \text{ref\_logp})` per token:

    * ``ratio``: mean, min, max of ρ, shares above 2 and below 0.5;
    * ``chi2_token`` :math:`= \overline{\rho^2} - 1` and ``chi2_sequence``
      :math:`= \overline{(\prod_t \rho_t)^2} - 1` over non-empty sequences, each log
      clamped to ±20 before ``exp`` (verl's ``SAFETY_BOUND``);
    * ``ess`` :math:`= 1/\overline{(\rho/\bar\rho)^2} = (\sum\rho)^2 / (N \sum\rho^2)`,
      in (0, 1], computed shifted by the largest log ρ so it never overflows;
    * ``delta_logp``: mean and max of :math:`|\text{logp} - \text{ref\_logp}|`;
    * ``perplexity``: :math:`\exp(-\overline{\text{logp}})` of each side and
      ``ratio`` = PPL(logp) / PPL(ref_logp) :math:`= \exp(\overline{\log r})`.

    Means are exact float64 means over the N tokens; no tokens gives NaN.
    """
    a = _rows(np.asarray(logp, dtype=np.float64))
    b = _rows(np.asarray(ref_logp, dtype=np.float64))
    m = np.ones(a.shape, dtype=bool) if mask is None else _rows(np.asarray(mask, dtype=bool))
    d = (a - b)[m]  # log ρ
    n = d.size

    def mean(x: np.ndarray) -> float:
        return combine(x) / x.size if x.size else math.nan

    with np.errstate(over="ignore", invalid="ignore"):
        rho = np.exp(d)
        chi2_token = mean(np.exp(2.0 * np.clip(d, -LOG_BOUND, LOG_BOUND))) - 1.0
        counts = m.sum(axis=1)
        seq = combine_rows(np.where(m, a - b, 0.0))[counts > 0]
        chi2_seq = mean(np.exp(2.0 * np.clip(seq, -LOG_BOUND, LOG_BOUND))) - 1.0
        if n and np.isfinite(d.max()):
            w = np.exp(d - d.max())  # log ρ = -inf is a weight of 0
            ess = combine(w) ** 2 / (n * combine(w * w))
        else:
            ess = math.nan
        mean_logp, mean_ref = mean(a[m]), mean(b[m])
        ppl, ppl_ref = _exp(-mean_logp), _exp(-mean_ref)
        ratio_ppl = _exp(mean_ref - mean_logp)
    absd = np.abs(d)
    return {
        "ratio": {
            "mean": mean(rho),
            "min": float(rho.min()) if n else math.nan,
            "max": float(rho.max()) if n else math.nan,
            "share_above_2": _share(rho > 2.0),
            "share_below_0.5": _share(rho < 0.5),
        },
        "chi2_token": chi2_token,
        "chi2_sequence": chi2_seq,
        "ess": ess,
        "delta_logp": {"mean": mean(absd), "max": float(absd.max()) if n else math.nan},
        "perplexity": {"logp": ppl, "ref_logp": ppl_ref, "ratio": ratio_ppl},
    }
