"""kldiv estimate and kl_estimate: every estimator, clamp preset and aggregation recomputed
independently (Decimal for k3, the frameworks' own formulas for the presets, fractions for
the sums), padding by mask / NaN / pad value / long tables, diagnostics, gates, errors."""

from __future__ import annotations

import json
import math
from decimal import Decimal, localcontext
from fractions import Fraction

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kldiv_cli import kl_estimate
from kldiv_cli.core.estimators import (
    estimate_diagnostics,
    expm1_minus,
    parse_clamp,
    per_token,
)

from .conftest import SAMPLES


def batch(seed: int = 0, sequences: int = 5, width: int = 9, scale: float = 0.3):
    rng = np.random.default_rng(seed)
    logp = np.log(rng.uniform(0.02, 1.0, (sequences, width))).astype(np.float32)
    # A log-probability is at most 0 (kldiv refuses more): the noisy side is capped.
    ref = np.minimum(logp + rng.normal(0.0, scale, (sequences, width)), np.log(0.999))
    ref = ref.astype(np.float32)
    lengths = rng.integers(1, width + 1, sequences)
    lengths[0] = width
    mask = (np.arange(width) < lengths[:, None]).astype(np.int8)
    return logp, ref, mask


def exact_mean(values) -> float:
    values = [Fraction(float(v)) for v in values]
    return float(sum(values) / len(values)) if values else math.nan


def exact_k3(x: float) -> float:
    """e^x − 1 − x to 60 significant digits: the series, whose terms never cancel badly
    for |x| < 1, else Decimal's exp."""
    with localcontext() as ctx:
        ctx.prec = 60
        d = Decimal(x)
        if abs(d) >= 1:
            return float(d.exp() - 1 - d)
        term, total, k = d * d / 2, Decimal(0), 2
        while term != 0 and abs(term) > abs(total) * Decimal("1e-70"):
            total += term
            k += 1
            term = term * d / k
        return float(total)


# ---------------------------------------------------------------- estimators


@pytest.mark.parametrize(
    "x", [0.0, 1e-300, -1e-12, 3e-9, -2e-6, 1e-4, -0.01, 0.3, -0.49, 0.5, -0.7, 2.0, -15.0, 30.0]
)
def test_k3_is_exact_to_an_ulp_or_two(x):
    ours = float(per_token(np.array([x]), "k3")[0])
    want = exact_k3(x)
    assert ours >= 0.0
    assert abs(ours - want) <= 2 * np.spacing(want), (x, ours, want)


def test_k3_edges():
    out = expm1_minus(np.array([np.inf, -np.inf, np.nan, 0.0]))
    assert out[0] == np.inf and out[1] == np.inf and np.isnan(out[2]) and out[3] == 0.0


def test_estimators_follow_schulman():
    logp, ref, _ = batch()
    logr = ref.astype(np.float64) - logp.astype(np.float64)
    np.testing.assert_array_equal(per_token(logr, "k1"), -logr)
    np.testing.assert_array_equal(per_token(logr, "k2"), 0.5 * logr**2)
    np.testing.assert_array_equal(per_token(logr, "abs"), np.abs(logr))
    want = np.array([exact_k3(v) for v in logr.ravel()]).reshape(logr.shape)
    np.testing.assert_allclose(per_token(logr, "k3"), want, rtol=4e-16, atol=0)


# ---------------------------------------------------------------- clamp presets


def openrlhf_approx_kl(log_probs, log_probs_base, kl_estimator):
    """OpenRLHF 0.11.2's compute_approx_kl (openrlhf/models/utils.py, forward value),
    transcribed to NumPy: k3 bounds its log ratio below at -10 before exp."""
    log_ratio = log_probs.astype(np.float64) - log_probs_base.astype(np.float64)
    if kl_estimator == "k1":
        value = log_ratio
    elif kl_estimator == "k2":
        value = log_ratio**2 / 2.0
    else:
        k3_log_ratio = np.maximum(log_ratio, -10)
        value = np.exp(-k3_log_ratio) - 1 + k3_log_ratio
    return np.clip(value, -10, 10)


def verl_kl_penalty(logprob, ref_logprob, kl_penalty):
    """verl/trainer/ppo/core_algos.py kl_penalty_forward, transcribed to NumPy."""
    logprob, ref_logprob = logprob.astype(np.float64), ref_logprob.astype(np.float64)
    if kl_penalty in ("kl", "k1"):
        return logprob - ref_logprob
    if kl_penalty == "abs":
        return np.abs(logprob - ref_logprob)
    if kl_penalty in ("mse", "k2"):
        return 0.5 * (logprob - ref_logprob) ** 2
    kl = np.clip(ref_logprob - logprob, -20, 20)
    return np.clip(np.exp(kl) - kl - 1, -10, 10)


def wild_batch():
    """Log-ratios up to ±40: every clamp bites somewhere."""
    rng = np.random.default_rng(5)
    logp = rng.uniform(-45, 0, (6, 10))
    ref = rng.uniform(-45, 0, (6, 10))
    return logp, ref


@pytest.mark.parametrize("estimator", ["k1", "k2", "k3"])
def test_openrlhf_preset_matches_compute_approx_kl(estimator):
    logp, ref = wild_batch()
    ours = per_token(ref - logp, estimator, "openrlhf")
    np.testing.assert_allclose(ours, openrlhf_approx_kl(logp, ref, estimator), rtol=1e-12)
    assert ours.max() == 10.0


@pytest.mark.parametrize("estimator", ["k1", "k2", "k3", "abs"])
def test_verl_preset_matches_kl_penalty(estimator):
    logp, ref = wild_batch()
    ours = per_token(ref - logp, estimator, "verl")
    np.testing.assert_allclose(ours, verl_kl_penalty(logp, ref, estimator), rtol=1e-12, atol=1e-12)
    if estimator == "k3":
        assert ours.max() == 10.0
    else:  # verl clamps k3 only
        assert np.abs(ours).max() > 10.0


def test_verl_clamps_the_log_ratio_before_k3():
    # log r = -30: unclamped k3 = e^-30 - 1 + 30 (~29); verl: clamp to -20 first, then 10.
    assert per_token(np.array([-30.0]), "k3", "verl")[0] == 10.0
    # log r = -9: k3 = 8.0001..., below 10 and untouched by verl.
    assert per_token(np.array([-9.0]), "k3", "verl")[0] == pytest.approx(math.exp(-9) + 8)


def test_none_preset_is_trl():
    logp, ref = wild_batch()
    logr = ref - logp
    # trl PPOTrainer: kl = -logr (k1) or (logr.exp() - 1) - logr (k3); GRPO: k3; no clamp.
    np.testing.assert_array_equal(per_token(logr, "k1", "none"), -logr)
    np.testing.assert_allclose(per_token(logr, "k3", "none"), np.expm1(logr) - logr, rtol=1e-12)


def test_custom_clamp_and_bad_clamps():
    c = parse_clamp("-0.5,2")
    assert (c.result, c.only, c.log_ratio) == ((-0.5, 2.0), None, None)
    np.testing.assert_array_equal(per_token(np.array([3.0, -3.0]), "k1", c), [-0.5, 2.0])
    for bad in ("2,1", "a,b", "1", "nan,1", "1,2,3", "tight"):
        with pytest.raises(ValueError):
            parse_clamp(bad)


# ---------------------------------------------------------------- aggregation


def verl_agg_loss(loss_mat, loss_mask, mode, loss_scale_factor=None):
    """verl 0.9.1's agg_loss (verl/trainer/ppo/core_algos.py; dp_size 1, no global batch
    sizes), transcribed to NumPy float64: masked_sum zeroes what the mask leaves out."""
    m = loss_mask.astype(np.float64)

    def masked_sum(values, mask):
        return (np.where(mask.astype(bool), values, 0.0) * mask).sum()

    with np.errstate(invalid="ignore", divide="ignore"):
        if mode == "token-mean":
            return masked_sum(loss_mat, m) / m.sum()
        if mode == "token-sum":
            return masked_sum(loss_mat, m)
        if mode in ("seq-mean-token-sum", "seq-mean-token-sum-norm"):
            seq_losses = (loss_mat * m).sum(-1)
            seq_mask = (m.sum(-1) > 0).astype(float)
            loss = masked_sum(seq_losses, seq_mask) / seq_mask.sum()
            if mode == "seq-mean-token-sum-norm":
                loss /= m.shape[-1] if loss_scale_factor is None else loss_scale_factor
            return loss
        if mode == "seq-mean-token-mean":
            n = m.sum(-1)
            seq_losses = (loss_mat * m).sum(-1) / (n + 1e-8)
            seq_mask = (n > 0).astype(float)
            return masked_sum(seq_losses, seq_mask) / seq_mask.sum()
    raise ValueError(mode)


def verl07_sum_norm(loss_mat, loss_mask):
    """verl 0.4.0-0.7.x's seq-mean-token-sum-norm: torch.sum(seq_losses) / loss_mask.shape[-1]."""
    return (loss_mat * loss_mask).sum(-1).sum() / loss_mask.shape[-1]


def trl_ppo_mean_kl(logprobs, ref_logprobs, lengths, estimator):
    """TRL's PPOTrainer (trl/experimental/ppo/ppo_trainer.py): padding set to
    INVALID_LOGPROB = 1.0 on both sides, then kl.sum(1).mean() over every sequence."""
    response_idxs = np.arange(logprobs.shape[1])
    padding_mask = response_idxs[None, :] > (lengths - 1)[:, None]
    a = np.where(padding_mask, 1.0, logprobs.astype(np.float64))
    b = np.where(padding_mask, 1.0, ref_logprobs.astype(np.float64))
    logr = b - a
    kl = -logr if estimator == "k1" else (np.exp(logr) - 1) - logr
    return kl.sum(1).mean()


def exact_aggregate(values, mask, how, norm=None, empty="skip"):
    rows = [[Fraction(float(v)) for v, k in zip(r, mr) if k] for r, mr in zip(values, mask)]
    if how in ("sum", "token-sum"):
        return float(sum(sum(r) for r in rows))
    if how == "token-mean":
        return float(sum(sum(r) for r in rows) / sum(len(r) for r in rows))
    length = norm or values.shape[1]
    if how == "seq-mean-token-sum-norm-verl0.7":
        return float(sum(Fraction(float(sum(r))) for r in rows) / length)
    kept = [r for r in rows if r] if empty == "skip" else rows
    sums = [Fraction(float(sum(r))) for r in kept]
    if how == "seq-mean-token-sum":
        return float(sum(sums) / len(kept))
    if how == "seq-mean-token-sum-norm":
        return float(sum(sums) / len(kept) / length)
    return float(sum(Fraction(float(sum(r)) / len(r)) if r else 0 for r in kept) / len(kept))


AGG = ["token-mean", "seq-mean-token-mean", "seq-mean-token-sum", "seq-mean-token-sum-norm"]


@pytest.mark.parametrize("how", AGG)
@pytest.mark.parametrize("estimator", ["k1", "k3"])
def test_aggregations_match_verl_agg_loss(how, estimator):
    logp, ref, mask = batch(seed=3)
    mask[3] = 0  # an empty sequence: verl leaves it out of the seq-means
    values = per_token(ref.astype(np.float64) - logp, estimator)
    ours = kl_estimate(logp, ref, estimator, mask, aggregate=how)
    np.testing.assert_allclose(ours, verl_agg_loss(values, mask, how), rtol=1e-7)
    # and exactly: each sum rounded once, as the docstring says
    want = exact_aggregate(values, mask, how)
    assert abs(ours - want) <= 2 * np.spacing(abs(want))


def test_seq_mean_token_sum_norm_is_verl_09_and_verl07_keeps_its_name():
    """The issue's example: verl 0.9.1 divides the summed sequence losses by the non-empty
    sequences and by the horizon; the verl 0.4-0.7 definition is off by exactly that count."""
    logp, ref, mask = batch(seed=5, sequences=6)
    mask[2] = 0
    values = per_token(ref.astype(np.float64) - logp, "k3", "verl")
    new = kl_estimate(logp, ref, "k3", mask, "verl", "seq-mean-token-sum-norm")
    old = kl_estimate(logp, ref, "k3", mask, "verl", "seq-mean-token-sum-norm-verl0.7")
    np.testing.assert_allclose(new, verl_agg_loss(values, mask, "seq-mean-token-sum-norm"))
    np.testing.assert_allclose(old, verl07_sum_norm(values, mask), rtol=1e-12)
    np.testing.assert_allclose(old / new, 5.0, rtol=1e-12)  # 5 non-empty sequences
    for how in ("seq-mean-token-sum-norm", "seq-mean-token-sum-norm-verl0.7"):
        got = kl_estimate(logp, ref, "k3", mask, "verl", how, norm_length=64)
        assert abs(got - exact_aggregate(values, mask, how, 64)) <= 2 * np.spacing(got)
    np.testing.assert_allclose(
        kl_estimate(logp, ref, "k3", mask, "verl", "seq-mean-token-sum-norm", norm_length=64),
        verl_agg_loss(values, mask, "seq-mean-token-sum-norm", loss_scale_factor=64),
    )


def test_sum_and_token_sum():
    logp, ref, mask = batch(seed=4)
    values = per_token(ref.astype(np.float64) - logp, "k2")
    want = exact_aggregate(values, mask, "sum")
    assert kl_estimate(logp, ref, "k2", mask, aggregate="sum") == want
    assert kl_estimate(logp, ref, "k2", mask, aggregate="token-sum") == want
    np.testing.assert_allclose(want, verl_agg_loss(values, mask, "token-sum"), rtol=1e-12)


@pytest.mark.parametrize("estimator", ["k1", "k3"])
def test_empty_sequences_zero_is_trl_ppo(estimator):
    """TRL PPO's objective/kl counts an empty response as 0 KL; --empty-sequences zero too."""
    logp, ref, mask = batch(seed=6, sequences=7)
    mask[[1, 4]] = 0
    lengths = mask.sum(1)
    trl = trl_ppo_mean_kl(logp, ref, lengths, estimator)
    ours = kl_estimate(logp, ref, estimator, mask, aggregate="seq-mean-token-sum", empty="zero")
    np.testing.assert_allclose(ours, trl, rtol=1e-6)  # TRL's exp(0) - 1 - 0 adds exact zeros
    values = per_token(ref.astype(np.float64) - logp, estimator)
    for how in ("seq-mean-token-sum", "seq-mean-token-mean", "seq-mean-token-sum-norm"):
        got = kl_estimate(logp, ref, estimator, mask, aggregate=how, empty="zero")
        want = exact_aggregate(values, mask, how, empty="zero")
        assert abs(got - want) <= 2 * np.spacing(abs(want)), how
    skip = kl_estimate(logp, ref, estimator, mask, aggregate="seq-mean-token-sum")
    np.testing.assert_allclose(skip * 5 / 7, ours, rtol=1e-12)
    with pytest.raises(ValueError, match="skip or zero"):
        kl_estimate(logp, ref, estimator, mask, empty="drop")


def test_no_tokens_gives_nan_means_and_zero_sum():
    """As verl 0.9.1: 0/0 for every mean (seq-mean-token-sum-norm included), 0 for sums."""
    z = np.zeros((2, 3))
    m = np.zeros((2, 3))
    for how in AGG:
        assert math.isnan(kl_estimate(z, z, "k3", m, aggregate=how)), how
        assert math.isnan(verl_agg_loss(per_token(z, "k3"), m, how)), how
    for how in ("sum", "token-sum", "seq-mean-token-sum-norm-verl0.7"):
        assert kl_estimate(z, z, "k3", m, aggregate=how) == 0.0
    assert kl_estimate(z, z, "k3", m, aggregate="seq-mean-token-sum", empty="zero") == 0.0


def test_nan_outside_the_mask_is_ignored_inside_propagates():
    logp, ref, mask = batch()
    a = logp.astype(np.float64)
    a[mask == 0] = np.nan
    assert kl_estimate(a, ref, "k3", mask) == kl_estimate(logp, ref, "k3", mask)
    a[0, 0] = np.nan
    assert math.isnan(kl_estimate(a, ref, "k3", mask))


def test_api_all_and_errors():
    logp, ref, mask = batch()
    out = kl_estimate(logp, ref, "all", mask, clamp="openrlhf", aggregate="seq-mean-token-sum")
    assert set(out) == {"k1", "k2", "k3", "abs"}
    assert out["k3"] == kl_estimate(logp, ref, "k3", mask, "openrlhf", "seq-mean-token-sum")
    with pytest.raises(ValueError, match="shapes"):
        kl_estimate(logp, ref[:, :3])
    with pytest.raises(ValueError, match="0 and 1"):
        kl_estimate(logp, ref, mask=mask * 2)
    with pytest.raises(ValueError, match="estimator"):
        kl_estimate(logp, ref, "k4")
    with pytest.raises(ValueError, match="aggregate"):
        kl_estimate(logp, ref, aggregate="mean")


@settings(max_examples=30, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.floats(-30, 0, allow_nan=False), st.floats(-30, 0, allow_nan=False), st.booleans()
        ),
        min_size=1,
        max_size=40,
    ),
    st.integers(1, 8),
)
def test_properties(tokens, width):
    n = -(-len(tokens) // width) * width
    tokens = tokens + [(0.0, 0.0, False)] * (n - len(tokens))
    a = np.array([t[0] for t in tokens]).reshape(-1, width)
    b = np.array([t[1] for t in tokens]).reshape(-1, width)
    m = np.array([t[2] for t in tokens]).reshape(-1, width)
    if not m.any():
        return
    k3 = kl_estimate(a, b, "k3", m)
    assert k3 >= 0.0
    # k3 <= k1 + k2-ish is not a law; but k3 = E[r] - 1 + k1 is, token by token.
    r_mean = exact_mean(np.exp(b - a)[m])
    assert k3 == pytest.approx(r_mean - 1 + kl_estimate(a, b, "k1", m), abs=1e-9 * (1 + r_mean))
    # the order of the sequences never matters
    order = np.arange(len(a))[::-1]
    for how in AGG:
        assert kl_estimate(a[order], b[order], "k2", m[order], aggregate=how) == pytest.approx(
            kl_estimate(a, b, "k2", m, aggregate=how), rel=1e-15
        )


# ---------------------------------------------------------------- diagnostics


def test_diagnostics_recomputed():
    logp, ref, mask = batch(seed=9, scale=0.8)
    valid = mask.astype(bool)
    a, b = logp.astype(np.float64), ref.astype(np.float64)
    d = estimate_diagnostics(a, b, valid)
    rho = np.exp(a - b)[valid]
    assert d["ratio"]["mean"] == pytest.approx(rho.mean(), rel=1e-14)
    assert d["ratio"]["min"] == rho.min() and d["ratio"]["max"] == rho.max()
    assert d["ratio"]["share_above_2"] == np.mean(rho > 2)
    assert d["ratio"]["share_below_0.5"] == np.mean(rho < 0.5)
    assert d["chi2_token"] == pytest.approx(np.mean(rho**2) - 1, rel=1e-13)
    seq = np.array([(a - b)[i][valid[i]].sum() for i in range(len(a)) if valid[i].any()])
    assert d["chi2_sequence"] == pytest.approx(np.mean(np.exp(2 * seq)) - 1, rel=1e-13)
    w = rho / rho.mean()
    assert d["ess"] == pytest.approx(1 / np.mean(w**2), rel=1e-13)
    assert d["delta_logp"]["mean"] == pytest.approx(np.abs(a - b)[valid].mean(), rel=1e-14)
    assert d["delta_logp"]["max"] == np.abs(a - b)[valid].max()
    ppl, ppl_ref = np.exp(-a[valid].mean()), np.exp(-b[valid].mean())
    assert d["perplexity"]["logp"] == pytest.approx(ppl, rel=1e-14)
    assert d["perplexity"]["ref_logp"] == pytest.approx(ppl_ref, rel=1e-14)
    assert d["perplexity"]["ratio"] == pytest.approx(ppl / ppl_ref, rel=1e-13)


def test_chi2_log_is_clamped_and_ess_never_overflows():
    a = np.array([[0.0, -800.0, -1.0]])
    b = np.array([[-30.0, 0.0, -1.0]])
    d = estimate_diagnostics(a, b)
    assert d["chi2_token"] == pytest.approx((math.exp(40) + math.exp(-40) + 1) / 3 - 1)
    assert d["chi2_sequence"] == pytest.approx(math.exp(-40) - 1)  # sum -770 clamped to -20
    assert d["ess"] == pytest.approx(1 / 3 * (1 + math.exp(-30)) ** 2 / (1 + math.exp(-60)))


# ---------------------------------------------------------------- CLI


@pytest.fixture()
def files(tmp_path):
    logp, ref, mask = batch(seed=11)
    paths = {}
    for name, arr in (("logp", logp), ("ref", ref), ("mask", mask)):
        paths[name] = tmp_path / f"{name}.npy"
        np.save(paths[name], arr)
    padded = {}
    for name, arr in (("logp", logp), ("ref", ref)):
        x = arr.copy()
        x[mask == 0] = np.nan
        padded[name] = tmp_path / f"{name}_nan.npy"
        np.save(padded[name], x)
        y = arr.copy()
        y[mask == 0] = -999.0
        padded[name + "_pad"] = tmp_path / f"{name}_pad.npy"
        np.save(padded[name + "_pad"], y)
    return paths, padded, (logp, ref, mask)


def as_json(result):
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def test_cli_json_keys_and_values(run_cli, files):
    paths, _, (logp, ref, mask) = files
    args = [paths["logp"], paths["ref"], "--mask", paths["mask"], "-f", "json"]
    doc = as_json(run_cli("estimate", *args, "--clamp", "verl", "-a", "seq-mean-token-mean"))
    for key in ("k1", "k2", "k3", "abs", "tokens", "sequences", "estimator", "clamp"):
        assert key in doc
    assert doc["tokens"] == int(mask.sum()) and doc["sequences"] == len(mask)
    assert (doc["estimator"], doc["clamp"], doc["aggregate"]) == (
        "all",
        "verl",
        "seq-mean-token-mean",
    )
    for name in ("k1", "k2", "k3", "abs"):
        assert doc[name] == kl_estimate(logp, ref, name, mask, "verl", "seq-mean-token-mean")
    diag = doc["diagnostics"]
    for key in ("ratio", "chi2_token", "chi2_sequence", "ess", "delta_logp", "perplexity"):
        assert key in diag
    values = per_token(ref.astype(np.float64) - logp, "k3", "verl")[mask == 1]
    assert diag["per_token"]["k3"]["median"] == float(np.median(values))
    assert diag["per_token"]["k3"]["p99"] == float(np.quantile(values, 0.99))


def test_cli_one_estimator_plain_is_a_bare_number(run_cli, files):
    paths, _, (logp, ref, mask) = files
    r = run_cli("estimate", paths["logp"], paths["ref"], "--mask", paths["mask"], "-e", "k3")
    assert r.exit_code == 0, r.stderr
    assert float(r.stdout) == kl_estimate(logp, ref, "k3", mask)
    doc = as_json(
        run_cli("estimate", paths["logp"], paths["ref"], "-e", "k2", "-f", "json", "-a", "sum")
    )
    assert "k1" not in doc and doc["k2"] == kl_estimate(logp, ref, "k2", aggregate="sum")


def test_mask_nan_and_pad_value_agree(run_cli, files):
    paths, padded, _ = files
    by_mask = run_cli("estimate", paths["logp"], paths["ref"], "--mask", paths["mask"]).stdout
    by_nan = run_cli("estimate", padded["logp"], padded["ref"]).stdout
    by_pad = run_cli(
        "estimate", padded["logp_pad"], padded["ref_pad"], "--pad-value", "-999"
    ).stdout
    assert by_mask == by_nan == by_pad and by_mask.count("\n") == 4


def test_long_tables_by_sequence_column(run_cli, files, tmp_path):
    paths, _, (logp, ref, mask) = files
    rng = np.random.default_rng(0)
    seq, tok = np.nonzero(mask)
    order = rng.permutation(len(seq))
    order = order[np.lexsort((tok[order],))]  # tokens in order within each sequence
    ids = np.array([f"s{i}" for i in seq[order]])
    table = pa.table(
        {
            "step": np.arange(len(order)),
            "seq": ids,
            "logp": logp[seq[order], tok[order]],
            "ref_logp": ref[seq[order], tok[order]],
        }
    )
    pq.write_table(table, tmp_path / "long.parquet")
    with open(tmp_path / "long.csv", "w") as f:
        f.write("step,seq,logp,ref_logp\n")
        for row in zip(*(table.column(i).to_pylist() for i in range(4))):
            f.write(",".join(repr(v) if isinstance(v, float) else str(v) for v in row) + "\n")
    wide = run_cli("estimate", paths["logp"], paths["ref"], "--mask", paths["mask"], "-f", "json")
    want = as_json(wide)
    for name in ("long.parquet", "long.csv"):
        path = tmp_path / name
        args = ["--sequence-column", "seq", "--logp-columns", "logp", "--ref-columns", "ref_logp"]
        doc = as_json(run_cli("estimate", path, path, *args, "-f", "json"))
        for key in ("k1", "k2", "k3", "abs", "tokens", "sequences"):
            assert doc[key] == want[key], (name, key)
    # stdin, both sides from the same table
    data = (tmp_path / "long.csv").read_bytes()
    r = run_cli("estimate", "-", "-", *args, "-e", "k3", input=data)
    assert r.exit_code == 0, r.stderr
    assert float(r.stdout) == want["k3"]


def test_long_table_needs_one_value_column(run_cli, tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("seq,a,b\n1,-1,-2\n1,-2,-1\n")
    r = run_cli("estimate", path, path, "--sequence-column", "seq")
    assert r.exit_code == 2 and r.stderr.count("\n") == 1 and "one column" in r.stderr
    r = run_cli("estimate", path, path, "--sequence-column", "nope", "--logp-columns", "a")
    assert r.exit_code == 2 and "nope" in r.stderr


def test_gates(run_cli, files):
    paths, _, (logp, ref, mask) = files
    base = ["estimate", paths["logp"], paths["ref"], "--mask", paths["mask"], "-q"]
    k3 = kl_estimate(logp, ref, "k3", mask)
    r = run_cli(*base, "--fail-above", f"k3={k3 / 2}")
    assert r.exit_code == 1
    assert r.stderr.startswith("kldiv: check failed: k3 = ") and r.stderr.count("\n") == 1
    assert run_cli(*base, "--fail-above", f"k3={k3 * 2}").exit_code == 0
    r = run_cli(*base, "--fail-below", "diagnostics.ess=1.01", "-f", "json")
    assert r.exit_code == 1
    doc = json.loads(r.stdout)
    assert doc["verdict"] == "fail" and doc["thresholds"][0]["name"] == "diagnostics.ess"
    for bad in ("k3=nan", "k9=1", "k3", "k3=x", "diagnostics.nope=1"):
        r = run_cli(*base, "--fail-above", bad)
        assert r.exit_code == 2 and r.stderr.startswith("kldiv: error:"), bad
    # names are checked before anything is read
    r = run_cli("estimate", "missing.npy", "missing.npy", "-e", "k3", "--fail-above", "k1=1")
    assert r.exit_code == 2 and "unknown statistic 'k1'" in r.stderr
    empty = paths["mask"].parent / "empty.npy"
    np.save(empty, np.zeros_like(mask))
    r = run_cli("estimate", paths["logp"], paths["ref"], "--mask", empty, "--fail-above", "k3=1")
    assert r.exit_code == 1 and "k3 is NaN --fail-above 1" in r.stderr
    r = run_cli("estimate", paths["logp"], paths["logp"], "-e", "k3", "--clamp", "none")
    assert r.exit_code == 0 and float(r.stdout) == 0.0


@pytest.mark.parametrize(
    "case, message",
    [
        ("shapes", "shapes do not match"),
        ("mask_values", "not 0 or 1"),
        ("mask_shape", "does not match"),
        ("nan_in_mask", "row 0, token 0: NaN where the mask is 1"),
        ("padding_differs", "padding"),
        ("3d", "1-D or 2-D"),
    ],
)
def test_bad_input_is_one_line_exit_2(run_cli, files, tmp_path, case, message):
    paths, padded, (logp, ref, mask) = files
    args = [paths["logp"], paths["ref"], "--mask", paths["mask"]]
    if case == "shapes":
        np.save(tmp_path / "short.npy", ref[:, :4])
        args = [paths["logp"], tmp_path / "short.npy"]
    elif case == "mask_values":
        np.save(tmp_path / "m2.npy", mask * 2)
        args[-1] = tmp_path / "m2.npy"
    elif case == "mask_shape":
        np.save(tmp_path / "m3.npy", mask[:, :3])
        args[-1] = tmp_path / "m3.npy"
    elif case == "nan_in_mask":
        x = logp.copy()
        x[0, 0] = np.nan
        np.save(tmp_path / "x.npy", x)
        args[0] = tmp_path / "x.npy"
    elif case == "padding_differs":
        args = [padded["logp"], paths["ref"]]
    else:
        np.save(tmp_path / "cube.npy", np.zeros((2, 2, 2)))
        args = [tmp_path / "cube.npy", tmp_path / "cube.npy"]
    r = run_cli("estimate", *args)
    assert r.exit_code == 2, r.stdout
    assert r.stderr.startswith("kldiv: error:") and r.stderr.count("\n") == 1
    assert message in r.stderr
    assert r.stdout == ""


def test_usage_errors(run_cli, files):
    paths, _, _ = files
    base = ["estimate", paths["logp"], paths["ref"]]
    for extra in (
        ["-e", "k4"],
        ["-a", "mean"],
        ["--clamp", "3,1"],
        ["--norm-length", "4"],
        ["-a", "seq-mean-token-sum-norm", "--norm-length", "0"],
        ["--mask", paths["mask"], "--pad-value", "0"],
    ):
        r = run_cli(*base, *extra)
        assert r.exit_code == 2 and r.stderr.count("\n") == 1, extra


def test_output_file_and_guard(run_cli, files, tmp_path):
    paths, _, _ = files
    out = tmp_path / "kl.json"
    r = run_cli("estimate", paths["logp"], paths["ref"], "-o", out)
    assert r.exit_code == 0 and r.stdout == ""
    assert "k3" in json.loads(out.read_text())
    r = run_cli("estimate", paths["logp"], paths["ref"], "-o", paths["ref"])
    assert r.exit_code == 2 and "input" in r.stderr


def test_sample_data_long_and_wide_agree(run_cli):
    rl = SAMPLES / "rl"
    wide = run_cli("estimate", rl / "logp.npy", rl / "ref_logp.npy", "--mask", rl / "mask.npy")
    long = run_cli(
        "estimate",
        rl / "rollout.csv",
        rl / "rollout.csv",
        "--sequence-column",
        "seq",
        "--logp-columns",
        "logp",
        "--ref-columns",
        "ref_logp",
    )
    assert wide.exit_code == long.exit_code == 0
    assert wide.stdout == long.stdout


def test_help_names_the_presets(run_cli):
    r = run_cli("estimate", "--help")
    assert r.exit_code == 0
    for word in ("openrlhf", "verl", "TRL", "seq-mean-token-sum-norm", "--fail-above"):
        assert word in r.stdout
    for word in ("verl 0.9.1", "--empty-sequences", "--strict", "verl0.7"):
        assert word in r.stdout


# ------------------------------------------------ wrong-space and padding diagnostics


def test_probabilities_as_log_probs_are_one_error_line(run_cli, files, tmp_path):
    """A log-probability is at most 0: probabilities given as LOGP exit 2, with the count
    and the first position (only the tokens that count are looked at)."""
    paths, _, (logp, ref, mask) = files
    probs = np.exp(logp)
    probs[mask == 0] = 5.0  # padding is never looked at
    np.save(tmp_path / "probs.npy", probs)
    r = run_cli("estimate", tmp_path / "probs.npy", paths["ref"], "--mask", paths["mask"])
    assert r.exit_code == 2 and r.stdout == "" and r.stderr.count("\n") == 1
    n = int(mask.sum())
    assert r.stderr.startswith(f"kldiv: error: {tmp_path / 'probs.npy'}: {n} of {n} ")
    assert f"log-probabilities are above 0 (first: row 0, token 0: {probs[0, 0]:g})" in r.stderr
    # rounding just above 0 (float32 log-softmax) is no error
    near = logp.copy()
    near[0, 0] = 1e-7
    np.save(tmp_path / "near.npy", near)
    r = run_cli("estimate", tmp_path / "near.npy", paths["ref"], "--mask", paths["mask"])
    assert r.exit_code == 0 and "warning" not in r.stderr, r.stderr


def padded_batch(tmp_path, pad: float = 0.0):
    """The issue's case: right-padded rows, the padding 0.0 in both files, no mask."""
    logp, ref, _ = batch(seed=21, sequences=6, width=10)
    mask = np.ones_like(logp, dtype=np.int8)
    mask[1:, 7:] = 0
    mask[3, 4:] = 0
    for x in (logp, ref):
        x[mask == 0] = pad
    np.save(tmp_path / "lp.npy", logp)
    np.save(tmp_path / "rf.npy", ref)
    np.save(tmp_path / "m.npy", mask)
    return [tmp_path / "lp.npy", tmp_path / "rf.npy"], tmp_path / "m.npy", (logp, ref, mask)


def test_padding_without_a_mask_is_warned_about_with_counts(run_cli, tmp_path):
    sides, mask_path, (logp, ref, mask) = padded_batch(tmp_path)
    r = run_cli("estimate", *sides, "-e", "k3")
    assert r.exit_code == 0
    warnings = [line for line in r.stderr.splitlines() if "warning" in line]
    assert warnings == [
        f"kldiv: warning: 5 of 6 rows of {sides[0]} and {sides[1]} end in runs of identical "
        "values (18 tokens, 0 in every such row): suspected padding, counted as tokens; "
        "give --mask FILE (or --pad-value X)"
    ]
    unmasked, masked = float(r.stdout), kl_estimate(logp, ref, "k3", mask)
    assert unmasked == kl_estimate(logp, ref, "k3") and unmasked < masked  # diluted
    r = run_cli("estimate", *sides, "-e", "k3", "--mask", mask_path)
    assert r.exit_code == 0 and "warning" not in r.stderr and float(r.stdout) == masked
    r = run_cli("estimate", *sides, "-e", "k3", "--pad-value", "0")
    assert r.exit_code == 0 and "warning" not in r.stderr and float(r.stdout) == masked
    r = run_cli("estimate", *sides, "--strict")
    assert r.exit_code == 2 and r.stdout == "" and r.stderr.count("\n") == 1
    assert r.stderr.startswith("kldiv: error: --strict: 5 of 6 rows")
    # rows that end in two different values: no warning
    np.save(tmp_path / "full.npy", logp + np.linspace(-1, 0, logp.shape[1], dtype=np.float32))
    r = run_cli("estimate", tmp_path / "full.npy", sides[1], "--strict")
    assert r.exit_code == 0, r.stderr


def test_all_masked_batch_is_nan_with_one_warning_as_verl(run_cli, files, tmp_path):
    paths, _, (logp, ref, mask) = files
    np.save(tmp_path / "none.npy", np.zeros_like(mask))
    args = ["estimate", paths["logp"], paths["ref"], "--mask", tmp_path / "none.npy"]
    r = run_cli(*args, "-e", "k3", "-a", "seq-mean-token-sum-norm")
    assert r.exit_code == 0 and r.stdout == "nan\n"
    warnings = [line for line in r.stderr.splitlines() if "warning" in line]
    assert warnings == [
        "kldiv: warning: no token counts (the mask is all 0, or every token is padding): the "
        "estimate is NaN, as verl's agg_loss gives"
    ]
    r = run_cli(*args, "-e", "k3", "-a", "sum")
    assert r.stdout == "0\n" or float(r.stdout) == 0.0
    assert "the estimate is 0" in r.stderr
    r = run_cli(*args, "--strict")
    assert r.exit_code == 2 and "--strict: no token counts" in r.stderr


def test_cli_empty_sequences_and_verl07(run_cli, files):
    paths, _, (logp, ref, mask) = files
    mask = mask.copy()
    mask[2] = 0
    np.save(paths["mask"], mask)
    base = ["estimate", paths["logp"], paths["ref"], "--mask", paths["mask"], "-e", "k1"]
    r = run_cli(*base, "-a", "seq-mean-token-sum", "--empty-sequences", "zero", "-f", "json")
    doc = as_json(r)
    assert doc["k1"] == kl_estimate(
        logp, ref, "k1", mask, aggregate="seq-mean-token-sum", empty="zero"
    )
    assert doc["empty_sequences"] == 1 and doc["empty_sequences_rule"] == "zero"
    r = run_cli(*base, "-a", "seq-mean-token-sum-norm-verl0.7", "--norm-length", "32")
    assert float(r.stdout) == kl_estimate(
        logp, ref, "k1", mask, aggregate="seq-mean-token-sum-norm-verl0.7", norm_length=32
    )
    r = run_cli(*base, "--empty-sequences", "drop")
    assert r.exit_code == 2 and "--empty-sequences" in r.stderr and r.stderr.count("\n") == 1


def test_cli_robust_statistics_of_each_estimator(run_cli, files):
    paths, _, (logp, ref, mask) = files
    args = [paths["logp"], paths["ref"], "--mask", paths["mask"], "--clamp", "verl"]
    doc = as_json(run_cli("estimate", *args, "--frac-above", "0.001,0.05", "-f", "json"))
    for name in ("k1", "k2", "k3", "abs"):
        v = np.sort(per_token(ref.astype(np.float64) - logp, name, "verl")[mask == 1])
        g = len(v) // 100  # 1 % cut at each end (scipy.stats.trim_mean's rule)
        got = doc["diagnostics"]["per_token"][name]
        assert got["trimmed_mean"] == pytest.approx(v[g : len(v) - g].mean(), rel=1e-12)
        assert got["frac_above"] == {"0.001": np.mean(v > 0.001), "0.05": np.mean(v > 0.05)}
    share = doc["diagnostics"]["per_token"]["k3"]["frac_above"]["0.05"]
    gate = f"diagnostics.per_token.k3.frac_above.0.05={share}"
    ok = run_cli("estimate", *args, "--frac-above", "0.001,0.05", "--fail-above", gate)
    assert ok.exit_code == 0, ok.stderr
    bad = run_cli("estimate", *args, "--fail-below", "diagnostics.per_token.k3.trimmed_mean=9")
    assert bad.exit_code == 1 and "diagnostics.per_token.k3.trimmed_mean" in bad.stderr
    unknown = run_cli("estimate", *args, "--fail-above", gate)  # 0.05 is not asked for
    assert unknown.exit_code == 2 and "unknown statistic" in unknown.stderr
    csv = run_cli("estimate", *args, "-f", "csv").stdout.splitlines()
    assert csv[0].endswith(",trimmed_mean,frac_above_0.01,frac_above_0.1,frac_above_1")
    wrong = run_cli("estimate", *args, "--frac-above", "0.1,abc")
    assert (
        wrong.exit_code == 2
        and wrong.stderr == "kldiv: error: --frac-above: 'abc' is not a number\n"
    )


def test_cli_top_tokens_and_clamp_counts(run_cli, tmp_path):
    logp, ref, mask = batch(seed=4, sequences=6, width=12, scale=3.0)
    ref = ref.copy()
    ref[0, 3] = -40.0  # a spike: log ratio below verl's -20 bound
    logp[mask == 0] = 0.0  # padding that is never an offender
    ref[mask == 0] = -60.0
    for name, arr in (("logp", logp), ("ref", ref), ("mask", mask)):
        np.save(tmp_path / f"{name}.npy", arr)
    args = [tmp_path / "logp.npy", tmp_path / "ref.npy", "--mask", tmp_path / "mask.npy"]
    a, b = logp.astype(np.float64), ref.astype(np.float64)
    x = (b - a)[mask == 1]
    seq, pos = np.nonzero(mask == 1)
    order = np.argsort(-np.abs(x), kind="stable")[:4]
    formulas = {"k1": -x, "k2": 0.5 * x**2, "k3": np.exp(x) - 1 - x, "abs": np.abs(x)}

    doc = as_json(run_cli("estimate", *args, "--clamp", "-1,1", "--top", "4", "-f", "json"))
    assert [(o["sequence"], o["position"]) for o in doc["offenders"]] == [
        (seq[i], pos[i]) for i in order
    ]
    assert (doc["offenders"][0]["sequence"], doc["offenders"][0]["position"]) == (0, 3)
    for o, i in zip(doc["offenders"], order):
        assert (o["logp"], o["ref_logp"]) == (a[mask == 1][i], b[mask == 1][i])
        assert o["log_ratio"] == x[i]
        for name, v in formulas.items():
            assert o[name] == pytest.approx(np.clip(v[i], -1, 1), rel=1e-12)
    clamped = doc["diagnostics"]["clamped"]
    for name, v in formulas.items():
        assert clamped[name] == {"log_ratio": 0, "result": int(np.sum((v < -1) | (v > 1)))}

    verl = as_json(run_cli("estimate", *args, "--clamp", "verl", "-f", "json"))
    k3 = np.exp(np.clip(x, -20, 20)) - 1 - np.clip(x, -20, 20)
    assert verl["diagnostics"]["clamped"]["k3"] == {
        "log_ratio": int(np.sum(np.abs(x) > 20)),
        "result": int(np.sum(np.abs(k3) > 10)),
    }
    assert verl["diagnostics"]["clamped"]["k1"] == {"log_ratio": 0, "result": 0}  # k3 only
    assert "offenders" not in verl
    gate = run_cli(
        "estimate", *args, "--clamp", "verl", "--fail-above", "diagnostics.clamped.k3.log_ratio=0"
    )
    assert gate.exit_code == 1 and "diagnostics.clamped.k3.log_ratio = 1" in gate.stderr
    notes = run_cli("estimate", *args, "--clamp", "verl", "--top", "1", "-f", "csv").stderr
    assert "clamp verl changed tokens: k1 0 (log ratio) + 0 (result)" in notes
    assert "sequence 0, position 3: logp" in notes
    bad = run_cli("estimate", *args, "--top", "0")
    assert bad.exit_code == 2 and "--top must be at least 1" in bad.stderr
