"""kldiv compare: every statistic recomputed independently (plain NumPy float64), gates,
inputs, outputs and bad input."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from kldiv_cli.core.compare import pair, row_measures

from .helpers import SAMPLES, invoke

FRACS = {
    "min": 0.0,
    "p0.1": 0.001,
    "p1": 0.01,
    "p5": 0.05,
    "p10": 0.1,
    "median": 0.5,
    "p90": 0.9,
    "p95": 0.95,
    "p99": 0.99,
    "p99.9": 0.999,
    "max": 1.0,
}


# ---------------------------------------------------------------- independent reference


def log_softmax(x: np.ndarray, t: float = 1.0) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64) / t
    m = x.max(axis=-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=-1, keepdims=True))


def describe(v: np.ndarray, extra: dict[str, float] | None = None, thresholds=(0.01, 0.1, 1)):
    n = len(v)
    out = {"mean": v.mean(), "stderr": math.sqrt((np.mean(v * v) - v.mean() ** 2) / (n - 1))}
    for k, f in {**FRACS, **(extra or {})}.items():
        out[k] = np.percentile(v, 100 * f)
    g = n // 100  # a 1 % cut at each end, scipy.stats.trim_mean's rule
    out["trimmed_mean"] = np.sort(v)[g : n - g].mean()
    out["frac_above"] = {f"{t:g}": np.mean(v > t) for t in thresholds}
    return out


def share(hits: np.ndarray) -> dict[str, float]:
    m, n = hits.mean(), len(hits)
    return {"value": m, "stderr": math.sqrt(m * (1 - m) / (n - 1))}


def candidate_ranks(rp: np.ndarray, rq: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The candidate's rank (from 1) of the reference's top-1, and the top-5 overlap, from
    a full stable sort of each row (largest first, ties to the lower index)."""
    order_p = np.argsort(-np.asarray(rp, dtype=np.float64), axis=1, kind="stable")
    order_q = np.argsort(-np.asarray(rq, dtype=np.float64), axis=1, kind="stable")
    rank = np.array([list(oq).index(op[0]) + 1 for op, oq in zip(order_p, order_q)])
    k = min(5, rp.shape[1])
    overlap = np.array([len(set(op[:k]) & set(oq[:k])) / k for op, oq in zip(order_p, order_q)])
    return rank, overlap


def reference(lp: np.ndarray, lq: np.ndarray, tokens: np.ndarray | None = None, raw=None) -> dict:
    """The statistics, written out from their definitions."""
    p, q = np.exp(lp), np.exp(lq)
    m = (p + q) / 2
    with np.errstate(all="ignore"):
        kl = np.where(p > 0, p * (lp - lq), 0).sum(axis=1)
        rkl = np.where(q > 0, q * (lq - lp), 0).sum(axis=1)
        js = 0.5 * np.where(p > 0, p * (lp - np.log(m)), 0).sum(axis=1) + 0.5 * np.where(
            q > 0, q * (lq - np.log(m)), 0
        ).sum(axis=1)
    tv = 0.5 * np.abs(p - q).sum(axis=1)
    rp, rq = raw if raw is not None else (lp, lq)
    agree = (np.argmax(rp, axis=1) == np.argmax(rq, axis=1)).astype(float)
    n = len(kl)
    out = {
        "rows": n,
        "kl": describe(kl),
        "kl_reverse": describe(rkl),
        "js": describe(js),
        "tv": describe(tv),
        "top1_agreement": {
            "value": agree.mean(),
            "stderr": math.sqrt(agree.mean() * (1 - agree.mean()) / (n - 1)),
        },
    }
    rank, overlap = candidate_ranks(rp, rq)
    out["topk_agreement"] = {str(k): share(rank <= k) for k in (1, 2, 5, 10)}
    out["top5_overlap"] = {
        "value": overlap.mean(),
        "stderr": math.sqrt((np.mean(overlap**2) - overlap.mean() ** 2) / (n - 1)),
    }
    if tokens is not None:
        r = np.arange(n)
        dp = q[r, tokens] - p[r, tokens]
        d = describe(dp, {"p25": 0.25, "p75": 0.75})
        d["rms"] = math.sqrt(np.mean(dp**2))
        mse_se = math.sqrt((np.mean(dp**4) - np.mean(dp**2) ** 2) / (n - 1))
        d["rms_stderr"] = 0.5 / d["rms"] * mse_se
        out["delta_p"] = d
        out["perplexity"] = llama_perplexity(-lp[r, tokens], -lq[r, tokens])
    return out


def llama_perplexity(nll_base: np.ndarray, nll: np.ndarray) -> dict:
    """llama.cpp's "Perplexity statistics", transcribed line by line from kl_divergence()
    in tools/perplexity/perplexity.cpp (commit 050fc7f3): running sums of nll, nll²,
    nll_base, nll_base², nll·nll_base, then mean_and_uncertainty() and covariance()."""
    count = len(nll)
    sum_nll, sum_nll2 = float(np.sum(nll)), float(np.sum(nll * nll))
    sum_nll_base, sum_nll_base2 = float(np.sum(nll_base)), float(np.sum(nll_base * nll_base))
    sum_nll_nll_base = float(np.sum(nll * nll_base))

    def mean_and_uncertainty(total, total2, count):
        if count < 1:
            return 0.0, 0.0
        f = total / count
        df = total2 / count - f * f
        df = math.sqrt(df / (count - 1)) if df > 0 and count > 10 else 0.0
        return f, df

    def covariance(suma, sumb, sumab, count):
        if count < 10:
            return 0.0
        var = sumab / count - (suma / count) * (sumb / count)
        return var / (count - 1)

    log_ppl = mean_and_uncertainty(sum_nll, sum_nll2, count)
    ppl_val = math.exp(log_ppl[0])
    ppl_unc = ppl_val * log_ppl[1]
    log_ppl_base = mean_and_uncertainty(sum_nll_base, sum_nll_base2, count)
    ppl_base_val = math.exp(log_ppl_base[0])
    ppl_base_unc = ppl_base_val * log_ppl_base[1]
    log_ppl_cov = covariance(sum_nll, sum_nll_base, sum_nll_nll_base, count)
    log_ppl_cor = log_ppl_cov / (log_ppl[1] * log_ppl_base[1])
    log_ppl_ratio_val = log_ppl[0] - log_ppl_base[0]
    log_ppl_ratio_unc = math.sqrt(
        log_ppl[1] * log_ppl[1] + log_ppl_base[1] * log_ppl_base[1] - 2.0 * log_ppl_cov
    )
    ppl_ratio_val = math.exp(log_ppl_ratio_val)
    ppl_ratio_unc = ppl_ratio_val * log_ppl_ratio_unc
    ppl_cov = ppl_val * ppl_base_val * log_ppl_cov
    ppl_diff_val = ppl_val - ppl_base_val
    ppl_diff_unc = math.sqrt(ppl_unc * ppl_unc + ppl_base_unc * ppl_base_unc - 2.0 * ppl_cov)
    return {
        "reference": ppl_base_val,
        "reference_stderr": ppl_base_unc,
        "candidate": ppl_val,
        "candidate_stderr": ppl_unc,
        "correlation": log_ppl_cor,
        "ln_ratio": log_ppl_ratio_val,
        "ln_ratio_stderr": log_ppl_ratio_unc,
        "ratio": ppl_ratio_val,
        "ratio_stderr": ppl_ratio_unc,
        "difference": ppl_diff_val,
        "difference_stderr": ppl_diff_unc,
    }


def assert_matches(doc: dict, expected: dict, rel: float = 1e-9) -> None:
    assert set(expected) <= set(doc)
    for key, value in expected.items():
        if isinstance(value, dict):
            assert list(doc[key]) == list(value) or set(doc[key]) == set(value), key
            for sub, v in value.items():
                assert doc[key][sub] == pytest.approx(v, rel=rel, abs=1e-13), f"{key}.{sub}"
        else:
            assert doc[key] == value


@pytest.fixture()
def models(tmp_path: Path):
    rng = np.random.default_rng(7)
    a = (rng.normal(size=(200, 30)) * 2).astype(np.float32)
    b = (a + rng.normal(size=a.shape) * 0.2).astype(np.float32)
    t = rng.integers(0, 30, size=200)
    np.save(tmp_path / "ref.npy", a)
    np.save(tmp_path / "cand.npy", b)
    np.save(tmp_path / "tokens.npy", t)
    return tmp_path, a, b, t


#: The JSON's keys that describe the run rather than the data's statistics.
RUN_KEYS = ("reference", "candidate", "tokens", "warnings", "kldiv_version")


def statistics(doc: dict) -> dict:
    """The statistics of a compare document (what two runs on the same data share)."""
    return {k: v for k, v in doc.items() if k not in RUN_KEYS}


def run_json(*args, full: bool = False) -> dict:
    out = invoke("compare", *args, "-f", "json")
    assert out.exit_code == 0, out.stderr
    doc = json.loads(out.stdout)
    return doc if full else statistics(doc)


# ---------------------------------------------------------------- statistics

#: The top-level groups of every compare document, in order.
GROUPS = [
    "rows",
    "kl",
    "kl_reverse",
    "js",
    "tv",
    "top1_agreement",
    "topk_agreement",
    "top5_overlap",
]


def test_statistics_without_tokens(models) -> None:
    d, a, b, _ = models
    doc = run_json(d / "ref.npy", d / "cand.npy")
    assert list(doc) == GROUPS
    assert list(doc["kl"]) == ["mean", "stderr", *FRACS, "trimmed_mean", "frac_above"]
    assert list(doc["kl"]["frac_above"]) == ["0.01", "0.1", "1"]
    assert list(doc["topk_agreement"]) == ["1", "2", "5", "10"]
    assert doc["topk_agreement"]["1"] == doc["top1_agreement"]
    assert_matches(doc, reference(log_softmax(a), log_softmax(b), raw=(a, b)))


def test_statistics_with_tokens(models) -> None:
    d, a, b, t = models
    doc = run_json(d / "ref.npy", d / "cand.npy", "--tokens", d / "tokens.npy")
    assert list(doc) == [*GROUPS, "delta_p", "perplexity"]
    assert list(doc["delta_p"])[-2:] == ["rms", "rms_stderr"] and "p25" in doc["delta_p"]
    assert "trimmed_mean" in doc["delta_p"] and "frac_above" in doc["delta_p"]
    expected = reference(log_softmax(a), log_softmax(b), t, raw=(a, b))
    # llama.cpp's lines in its order, each with its error (the transcription's keys)
    assert list(doc["perplexity"]) == list(expected["perplexity"])
    assert_matches(doc, expected, rel=1e-7)


def test_temperature_and_kinds(models) -> None:
    d, a, b, _ = models
    doc = run_json(d / "ref.npy", d / "cand.npy", "-T", "2.5")
    assert_matches(doc, reference(log_softmax(a, 2.5), log_softmax(b, 2.5), raw=(a, b)))
    lp, lq = log_softmax(a), log_softmax(b)
    np.save(d / "lp.npy", lp)
    np.save(d / "q.npy", np.exp(lq))
    assert_matches(
        run_json(
            d / "lp.npy", d / "q.npy", "--reference-as", "log-probs", "--candidate-as", "probs"
        ),
        reference(lp, np.log(np.exp(lq))),
    )
    np.save(d / "lq.npy", lq)
    assert_matches(run_json(d / "lp.npy", d / "lq.npy", "--as", "log-probs"), reference(lp, lq))


def test_3d_inputs_are_rows_of_positions(models) -> None:
    d, a, b, _ = models
    np.save(d / "ref3.npy", a.reshape(10, 20, 30))
    np.save(d / "cand3.npy", b.reshape(10, 20, 30))
    assert run_json(d / "ref3.npy", d / "cand3.npy") == run_json(d / "ref.npy", d / "cand.npy")


def test_blocks_and_threads_do_not_change_any_bit(models) -> None:
    d, *_ = models
    whole = run_json(d / "ref.npy", d / "cand.npy", "--tokens", d / "tokens.npy")
    for rows, threads in (("1", "1"), ("7", "3"), ("64", "2")):
        args = ("--chunk-rows", rows, "--threads", threads)
        assert run_json(d / "ref.npy", d / "cand.npy", "--tokens", d / "tokens.npy", *args) == whole


def test_other_formats_give_the_same_numbers(models) -> None:
    d, a, b, _ = models
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({f"c{j}": a[:, j] for j in range(30)}), d / "ref.parquet")
    np.savetxt(
        d / "cand.csv",
        b.astype(np.float64),
        delimiter=",",
        header=",".join(f"c{j}" for j in range(30)),
        comments="",
    )
    doc = run_json(d / "ref.parquet", d / "cand.csv")
    assert_matches(doc, reference(log_softmax(a), log_softmax(b.astype(np.float64)), raw=(a, b)))
    # --columns selects from the tables and leaves arrays alone.
    np.save(d / "cand3.npy", b[:, :3])
    picked = run_json(d / "ref.parquet", d / "cand3.npy", "--columns", "c0,c1,c2")
    lp, lq = log_softmax(a[:, :3]), log_softmax(b[:, :3])
    assert_matches(picked, reference(lp, lq, raw=(a[:, :3], b[:, :3])))


def test_near_identical_float32_gives_the_float64_value(tmp_path: Path) -> None:
    """Per-row KL within 1e-10 of a long-double evaluation of the same float32 logits."""
    rng = np.random.default_rng(3)
    a = (rng.normal(size=(16, 4000)) * 3).astype(np.float32)
    b = (a + rng.normal(size=a.shape) * 1e-3).astype(np.float32)
    np.save(tmp_path / "a.npy", a)
    np.save(tmp_path / "b.npy", b)
    out = invoke(
        "compare", tmp_path / "a.npy", tmp_path / "b.npy", "-o", tmp_path / "rows.npy", "-f", "json"
    )
    assert out.exit_code == 0, out.stderr
    rows = np.load(tmp_path / "rows.npy")
    L = np.longdouble

    def ls(x):
        x = x.astype(L)
        z = x - x.max(axis=1, keepdims=True)
        return z - np.log(np.exp(z).sum(axis=1, keepdims=True))

    lp, lq = ls(a), ls(b)
    p, q = np.exp(lp), np.exp(lq)
    m = (p + q) / 2
    kl = (p * (lp - lq)).sum(axis=1)
    js = 0.5 * (p * (lp - np.log(m))).sum(axis=1) + 0.5 * (q * (lq - np.log(m))).sum(axis=1)
    assert np.abs(rows[:, 1] / kl - 1).max() < 1e-10
    assert np.abs(rows[:, 2] / (q * (lq - lp)).sum(axis=1) - 1).max() < 1e-10
    assert np.abs(rows[:, 3] / js - 1).max() < 1e-10
    doc = json.loads(out.stdout)
    assert doc["kl"]["mean"] == pytest.approx(float(kl.mean()), rel=1e-10)


def test_masked_classes() -> None:
    a = np.array([[0.0, 1.0, -np.inf], [0.0, 1.0, 2.0], [-np.inf, -np.inf, -np.inf]])
    b = np.array([[0.0, 1.0, -np.inf], [0.0, -np.inf, 2.0], [0.0, 0.0, 0.0]])
    m = row_measures(a, b, pair(a, b, "logits", "logits"))
    assert m["kl"][0] == pytest.approx(0.0, abs=1e-15) and m["js"][0] == pytest.approx(
        0.0, abs=1e-15
    )
    assert m["kl"][1] == math.inf and math.isfinite(m["kl_reverse"][1])
    p1 = np.exp(log_softmax(a[1]))
    assert m["js"][1] > 0 and m["tv"][1] == pytest.approx(p1[1], rel=1e-12)
    assert all(math.isnan(m[k][2]) for k in ("kl", "kl_reverse", "js", "tv"))


def test_ties_take_the_first_index() -> None:
    a = np.array([[1.0, 3.0, 3.0]])
    b = np.array([[3.0, 3.0, 1.0]])
    assert not row_measures(a, b, pair(a, b, "logits", "logits"))["agree"][0]
    assert row_measures(b, b, pair(b, b, "logits", "logits"))["agree"][0]


# ---------------------------------------------------------------- tokens


def test_ignore_index_skips_rows(models) -> None:
    d, a, b, t = models
    t2 = t.copy()
    t2[::3] = -100
    np.save(d / "masked.npy", t2)
    doc = run_json(
        d / "ref.npy", d / "cand.npy", "--tokens", d / "masked.npy", "--ignore-index", "-100"
    )
    keep = t2 != -100
    assert doc["rows"] == keep.sum()
    expected = reference(
        log_softmax(a[keep]), log_softmax(b[keep]), t2[keep], raw=(a[keep], b[keep])
    )
    assert_matches(doc, expected, rel=1e-7)


def test_tokens_from_csv_column(models) -> None:
    d, a, b, t = models
    (d / "tok.csv").write_text("id,token\n" + "".join(f"{i},{v}\n" for i, v in enumerate(t)))
    doc = run_json(
        d / "ref.npy", d / "cand.npy", "--tokens", d / "tok.csv", "--tokens-column", "token"
    )
    assert (
        doc["perplexity"]
        == run_json(d / "ref.npy", d / "cand.npy", "--tokens", d / "tokens.npy")["perplexity"]
    )


@pytest.mark.parametrize(
    "tokens,extra,message",
    [
        (np.arange(199) % 30, (), "holds 199 tokens for 200 rows"),
        (np.full(200, 30), (), "token 30 at row 0 is outside the vocabulary [0, 30)"),
        (np.full(200, -100), (), "skip such rows with --ignore-index -100"),
        (np.full(200, 0.5), (), "not a whole number"),
        (np.zeros((200, 2)), (), "one column"),
        (np.full(200, -100), ("--ignore-index", "-100"), "no rows to compare"),
    ],
)
def test_bad_tokens(models, tokens, extra, message) -> None:
    d, *_ = models
    np.save(d / "bad_tokens.npy", tokens)
    (d / "rows.csv").write_text("keep")
    out = invoke(
        "compare",
        d / "ref.npy",
        d / "cand.npy",
        "--tokens",
        d / "bad_tokens.npy",
        *extra,
        "-o",
        d / "rows.csv",
    )
    assert out.exit_code == 2
    assert (
        out.stderr.startswith("kldiv: error:")
        and out.stderr.count("\n") == 1
        and message in out.stderr
    )
    assert out.stdout == "" and (d / "rows.csv").read_text() == "keep"


# ---------------------------------------------------------------- gates


def test_gates_pass_and_fail(models) -> None:
    d, a, b, _ = models
    exp = reference(log_softmax(a), log_softmax(b), raw=(a, b))
    p99, top = exp["kl"]["p99"], exp["top1_agreement"]["value"]
    ok = invoke(
        "compare",
        d / "ref.npy",
        d / "cand.npy",
        "--fail-above",
        f"kl.p99={p99 * 1.01}",
        "--fail-below",
        f"top1_agreement={top * 0.99}",
        "-f",
        "json",
    )
    assert ok.exit_code == 0 and ok.stderr == ""
    doc = json.loads(ok.stdout)
    assert doc["verdict"] == "pass"
    assert doc["thresholds"][0] == {
        "name": "kl.p99",
        "fail_above": p99 * 1.01,
        "value": pytest.approx(p99),
        "passed": True,
    }
    assert doc["thresholds"][1]["fail_below"] == top * 0.99

    bad = invoke(
        "compare",
        d / "ref.npy",
        d / "cand.npy",
        "--fail-above",
        f"kl.p99={p99 * 0.99}",
        "--fail-above",
        "js.mean=1",
        "--fail-below",
        "top1_agreement.value=1",
        "-f",
        "json",
    )
    assert bad.exit_code == 1
    assert bad.stderr.count("\n") == 1 and bad.stderr.startswith("kldiv: check failed: kl.p99 = ")
    assert "top1_agreement.value" in bad.stderr and "js.mean" not in bad.stderr
    doc = json.loads(bad.stdout)
    assert doc["verdict"] == "fail" and [c["passed"] for c in doc["thresholds"]] == [
        False,
        True,
        False,
    ]


def test_gate_on_nan_fails(tmp_path: Path) -> None:
    a = np.array([[0.0, 1.0], [np.nan, 0.0]])
    np.save(tmp_path / "a.npy", a)
    out = invoke(
        "compare", tmp_path / "a.npy", tmp_path / "a.npy", "--fail-above", "kl.max=1", "-f", "json"
    )
    assert out.exit_code == 1 and "kl.max is NaN" in out.stderr
    assert "NaN divergence" in out.stderr  # the warning says why
    assert json.loads(out.stdout)["kl"]["max"] == "NaN"


@pytest.mark.parametrize(
    "args,message",
    [
        (("--fail-above", "kl.p99=nan"), "threshold is NaN"),
        (("--fail-above", "kl.p42=0.1"), "unknown statistic 'kl.p42'"),
        (("--fail-above", "kl.p99"), "takes NAME=VALUE"),
        (("--fail-below", "top1_agreement=high"), "not a number"),
        (("--fail-above", "delta_p.rms=0.1"), "needs the next tokens"),
        (("--fail-above", "kl=0.1"), "unknown statistic 'kl'"),
        (("--as", "logprobs"), "unknown kind"),
        (("-T", "0"), "temperature"),
        (("-o", "rows.json"), ".npy, .csv or .parquet"),
        (("-o", "rows.txt"), ".npy, .csv or .parquet"),
        (("--ignore-index", "-100"), "give --tokens FILE"),
        (("--tokens-column", "t"), "give the file"),
        (("--threads", "0"), "--threads must be at least 1"),
        (("-f", "yaml"), "unknown output format"),
    ],
)
def test_usage_errors(models, args, message) -> None:
    d, *_ = models
    out = invoke("compare", d / "ref.npy", d / "cand.npy", *args)
    assert out.exit_code == 2, out.stderr
    assert (
        out.stderr.startswith("kldiv: error:")
        and out.stderr.count("\n") == 1
        and message in out.stderr
    )


# ---------------------------------------------------------------- bad input


def test_bad_inputs(models) -> None:
    d, a, b, _ = models
    np.save(d / "wide.npy", np.zeros((200, 31), dtype=np.float32))
    np.save(d / "short.npy", np.zeros((199, 30), dtype=np.float32))
    bf16 = d / "bf16.npy"
    header = "{'descr': '<V2', 'fortran_order': False, 'shape': (200, 30), }"
    header += " " * (-(len(header) + 11) % 64) + "\n"
    bf16.write_bytes(
        b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header.encode() + b"\0" * 12000
    )
    out_file = d / "rows.parquet"
    out_file.write_bytes(b"old")
    for other, message in [
        (d / "wide.npy", "different vocabularies: 30 and 31 classes"),
        (d / "short.npy", "different numbers of rows: 200 and 199"),
        (bf16, "bf16.npy"),
        (d / "missing.npy", "no such file"),
    ]:
        out = invoke("compare", d / "ref.npy", other, "-o", out_file)
        assert out.exit_code == 2, (other, out.stderr)
        assert (
            out.stderr.startswith("kldiv: error:")
            and out.stderr.count("\n") == 1
            and message in out.stderr
        )
        assert out.stdout == "" and out_file.read_bytes() == b"old"


def test_output_may_not_be_an_input(models) -> None:
    d, *_ = models
    before = (d / "cand.npy").read_bytes()
    out = invoke("compare", d / "ref.npy", d / "cand.npy", "-o", d / "cand.npy")
    assert out.exit_code == 2 and "is also an input" in out.stderr
    assert (d / "cand.npy").read_bytes() == before


# ---------------------------------------------------------------- outputs


def test_per_row_outputs(models) -> None:
    d, a, b, t = models
    for name in ("rows.npy", "rows.csv", "rows.parquet"):
        out = invoke(
            "compare",
            d / "ref.npy",
            d / "cand.npy",
            "--tokens",
            d / "tokens.npy",
            "-o",
            d / name,
            "-f",
            "json",
        )
        assert out.exit_code == 0, out.stderr
    arr = np.load(d / "rows.npy")
    cols = [
        "row",
        "kl",
        "kl_reverse",
        "js",
        "tv",
        "top1_agree",
        "top1_rank",
        "top5_overlap",
        "reference_top1_prob",
        "reference_top1_margin",
        "token",
        "nll_reference",
        "nll_candidate",
        "delta_p",
    ]
    assert arr.shape == (200, len(cols))
    exp_kl = (np.exp(log_softmax(a)) * (log_softmax(a) - log_softmax(b))).sum(axis=1)
    np.testing.assert_allclose(arr[:, 1], exp_kl, rtol=1e-10)
    assert np.array_equal(arr[:, 0], np.arange(200)) and np.array_equal(arr[:, 10], t)
    rank, overlap = candidate_ranks(a, b)
    assert np.array_equal(arr[:, 6], rank) and np.array_equal(arr[:, 7], overlap)
    p = np.sort(np.exp(log_softmax(a)), axis=1)
    np.testing.assert_allclose(arr[:, 8], p[:, -1], rtol=1e-12)
    np.testing.assert_allclose(arr[:, 9], p[:, -1] - p[:, -2], rtol=1e-9, atol=1e-15)
    import pyarrow.parquet as pq

    table = pq.read_table(d / "rows.parquet")
    assert table.column_names == cols
    assert np.array_equal(table.column("kl").to_numpy(), arr[:, 1])
    lines = (d / "rows.csv").read_text().splitlines()
    assert lines[0] == ",".join(cols) and len(lines) == 201
    assert float(lines[1].split(",")[1]) == arr[0, 1]


def test_text_formats(models) -> None:
    d, *_ = models
    csv = invoke(
        "compare", d / "ref.npy", d / "cand.npy", "-f", "csv", "--fail-above", "kl.max=100"
    )
    lines = csv.stdout.splitlines()
    assert (
        lines[0] == "statistic,value" and lines[1] == "rows,200" and lines[2].startswith("kl.mean,")
    )
    assert lines[-1] == "verdict,pass"
    md = invoke("compare", d / "ref.npy", d / "cand.npy", "-f", "markdown").stdout
    assert "| statistic | value |" in md and "| kl.p99.9 |" in md
    human = invoke(
        "compare", d / "ref.npy", d / "cand.npy", "--tokens", d / "tokens.npy", stdout_isatty=True
    )
    assert human.exit_code == 0
    text = human.stdout
    for label in (
        "Mean    KLD:",
        "99.9%   KLD:",
        "Minimum JSD:",
        "Same top p:",
        "RMS Δp    :",
        "Mean PPL(Q)                   : ",
        "Mean PPL(base)                : ",
        "Cor(ln(PPL(Q)), ln(PPL(base))): ",
        "Mean ln(PPL(Q)/PPL(base))     : ",
        "Mean PPL(Q)/PPL(base)         : ",
        "Mean PPL(Q)-PPL(base)         : ",
    ):
        assert label in text
    assert (
        human.stdout
        == invoke("compare", d / "ref.npy", d / "cand.npy", "--tokens", d / "tokens.npy").stdout
    )


def test_stdin_reference(models) -> None:
    d, *_ = models
    out = invoke("compare", "-", d / "cand.npy", "-f", "json", stdin=(d / "ref.npy").read_bytes())
    assert out.exit_code == 0, out.stderr
    assert statistics(json.loads(out.stdout)) == run_json(d / "ref.npy", d / "cand.npy")


def test_help_states_the_order() -> None:
    out = invoke("compare", "--help")
    text = " ".join(out.stdout.split())
    assert (
        "compare puts the reference first: KL(REFERENCE ‖ CANDIDATE); unlike compute, whose order is torch's (INPUT, TARGET)"
        in text
    )
    assert text.index("Examples") < text.index("--fail-above")


# ---------------------------------------------------------------- properties

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.extra.numpy import arrays  # noqa: E402

logit_rows = arrays(
    np.float64,
    st.tuples(st.integers(1, 4), st.integers(1, 12)),
    elements=st.floats(-30, 30, allow_nan=False, width=32),
)


@settings(max_examples=40, deadline=None)
@given(logit_rows, st.data())
def test_measure_properties(a: np.ndarray, data) -> None:
    b = data.draw(
        arrays(np.float64, a.shape, elements=st.floats(-30, 30, allow_nan=False, width=32))
    )
    m = row_measures(a, b, pair(a, b, "logits", "logits"))
    swapped = row_measures(b, a, pair(b, a, "logits", "logits"))
    same = row_measures(a, a, pair(a, a, "logits", "logits"))
    for k in ("kl", "kl_reverse", "js", "tv"):
        assert np.all(same[k] == 0), k
        assert np.all(m[k] >= -1e-12), k
    assert np.all(m["js"] <= math.log(2) + 1e-12) and np.all(m["tv"] <= 1 + 1e-12)
    np.testing.assert_allclose(m["kl"], swapped["kl_reverse"], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(m["js"], swapped["js"], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(m["tv"], swapped["tv"], rtol=1e-12, atol=1e-15)
    shifted = row_measures(a + 7.0, b - 3.0, pair(a + 7.0, b - 3.0, "logits", "logits"))
    np.testing.assert_allclose(shifted["kl"], m["kl"], rtol=1e-9, atol=1e-12)
    # The same distributions given as log-probs and as probs.
    lp, lq = log_softmax(a), log_softmax(b)
    via_lp = row_measures(lp, lq, pair(lp, lq, "log-probs", "log-probs"))
    via_p = row_measures(np.exp(lp), np.exp(lq), pair(np.exp(lp), np.exp(lq), "probs", "probs"))
    for k in ("kl", "js", "tv"):
        np.testing.assert_allclose(via_lp[k], m[k], rtol=1e-7, atol=1e-12)
        np.testing.assert_allclose(via_p[k], m[k], rtol=1e-7, atol=1e-12)


def test_progress_counts_elements(models) -> None:
    from kldiv_cli.jobs.compare import CompareRequest, compare

    d, *_ = models
    calls: list[tuple[int, int]] = []
    request = CompareRequest(str(d / "ref.npy"), str(d / "cand.npy"), chunk_rows=64)
    compare(request, progress=lambda done, total: calls.append((done, total)))
    assert calls == [(64 * 30, 6000), (128 * 30, 6000), (192 * 30, 6000), (6000, 6000)]


@pytest.mark.parametrize("ext", [".kld", ".safetensors"])
def test_stdin_reference_of_every_compare_format(ext: str) -> None:
    """compare opens every input through io.sources: .kld and .safetensors come from
    stdin too (sniffed by their header), with the file's result."""
    d = SAMPLES / "compare"
    files = invoke("compare", d / f"base{ext}", d / f"quant{ext}", "-f", "json")
    piped = invoke(
        "compare", "-", d / f"quant{ext}", "-f", "json", stdin=(d / f"base{ext}").read_bytes()
    )
    assert files.exit_code == piped.exit_code == 0, piped.stderr
    assert statistics(json.loads(piped.stdout)) == statistics(json.loads(files.stdout))
    assert json.loads(piped.stdout)["reference"]["path"] == "<stdin>"


# ------------------------------------------------ llama.cpp's perplexity headline


def test_perplexity_lines_match_llama_cpp_transcription() -> None:
    """perplexity_statistics against llama.cpp's own formulas (llama_perplexity above),
    on correlated and on independent NLLs, N > 10 (where llama.cpp reports errors)."""
    from kldiv_cli.core.compare import perplexity_statistics

    rng = np.random.default_rng(3)
    base = rng.gamma(2.0, 1.5, 400)
    for nll in (base + rng.normal(0, 0.05, 400), rng.gamma(2.0, 1.6, 400)):
        ours = perplexity_statistics(base, nll)
        want = llama_perplexity(base, nll)
        assert list(ours) == list(want)
        for key, value in want.items():
            assert ours[key] == pytest.approx(value, rel=1e-9), key
    # the covariance matters: with it the difference's error is far below the naive one
    nll = base + rng.normal(0, 0.01, 400)
    ours = perplexity_statistics(base, nll)
    naive = math.hypot(ours["reference_stderr"], ours["candidate_stderr"])
    assert ours["difference_stderr"] < naive / 10


def test_perplexity_gates_and_json_inputs(models) -> None:
    d, a, b, t = models
    args = ["compare", d / "ref.npy", d / "cand.npy", "--tokens", d / "tokens.npy"]
    doc = run_json(*args[1:], full=True)
    ppl = doc["perplexity"]
    assert ppl["ratio"] == pytest.approx(ppl["candidate"] / ppl["reference"], rel=1e-12)
    assert ppl["difference"] == ppl["candidate"] - ppl["reference"]
    r = invoke(*args, "--fail-above", f"perplexity.ratio={ppl['ratio'] - 1e-4}")
    assert r.exit_code == 1
    assert f"kldiv: check failed: perplexity.ratio = {ppl['ratio']:.6g} is above" in r.stderr
    r = invoke(*args, "--fail-above", f"perplexity.ratio={ppl['ratio'] + 1e-4}")
    assert r.exit_code == 0
    r = invoke(*args, "--fail-below", "perplexity.difference_stderr=1e9", "-f", "json")
    assert r.exit_code == 1 and json.loads(r.stdout)["verdict"] == "fail"
    r = invoke("compare", d / "ref.npy", d / "cand.npy", "--fail-above", "perplexity.ratio=1")
    assert r.exit_code == 2 and "needs the next tokens" in r.stderr
    # compare's JSON carries the version and both inputs, as compute's does
    from kldiv_cli import __version__

    assert doc["kldiv_version"] == __version__
    assert doc["reference"] == {
        "path": str(d / "ref.npy"),
        "format": "npy",
        "shape": [200, 30],
        "dtype": "float32",
        "as": "logits",
    }
    assert doc["candidate"]["path"] == str(d / "cand.npy") and doc["candidate"]["as"] == "logits"
    assert doc["tokens"] == str(d / "tokens.npy") and doc["warnings"] == []
    kld = run_json(SAMPLES / "compare" / "base.kld", SAMPLES / "compare" / "quant.kld", full=True)
    assert kld["reference"]["format"] == "kld" and kld["reference"]["as"] == "log-probs"
    assert kld["reference"]["n_ctx"] > 0 and kld["tokens"].endswith("base.kld")


# ------------------------------------------------ wrong-space diagnostics


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def test_probabilities_read_as_logits_are_warned_about(models) -> None:
    """The issue's case: two softmax outputs compared as logits give a tiny KL that passes
    a gate; compare now says so, naming --as, and --strict refuses."""
    d, a, b, _ = models
    np.save(d / "pb.npy", softmax(a.astype(np.float64)).astype(np.float32))
    np.save(d / "pq.npy", softmax(b.astype(np.float64)).astype(np.float32))
    args = ["compare", d / "pb.npy", d / "pq.npy", "--fail-above", "kl.mean=0.01", "-f", "json"]
    r = invoke(*args)
    assert r.exit_code == 0  # the wrong number passes the gate...
    wrong = json.loads(r.stdout)["kl"]["mean"]
    warnings = [line for line in r.stderr.splitlines() if line.startswith("kldiv: warning:")]
    assert warnings == [
        f"kldiv: warning: {d / side}.npy looks like probabilities (every value in [0, 1], rows "
        "summing to 1) but is read as logits: a softmax of probabilities flattens them and the "
        f"divergences come out far too small; give --as probs (or --{name}-as probs)"
        for side, name in (("pb", "reference"), ("pq", "candidate"))
    ]  # ...but not silently
    assert json.loads(r.stdout)["warnings"] == [w[len("kldiv: warning: ") :] for w in warnings]
    r = invoke(*args, "--as", "probs")
    right = json.loads(r.stdout)["kl"]["mean"]
    assert r.exit_code == 1 and "warning" not in r.stderr and right > 10 * wrong
    r = invoke(*args, "--strict", "-o", d / "rows.npy")
    assert r.exit_code == 2 and r.stdout == "" and r.stderr.count("\n") == 1
    assert r.stderr.startswith(f"kldiv: error: --strict: {d / 'pb.npy'} looks like probabilities")
    assert not (d / "rows.npy").exists()
    # streamed in small blocks: the first block is enough
    r = invoke("compare", d / "pq.npy", d / "ref.npy", "--chunk-rows", "7")
    assert r.exit_code == 0 and r.stderr.count("looks like probabilities") == 1


def test_log_probabilities_read_as_logits_are_warned_about(models) -> None:
    d, a, b, _ = models
    la = a - np.log(np.exp(a.astype(np.float64)).sum(axis=1, keepdims=True))
    np.save(d / "la.npy", la)
    r = invoke("compare", d / "la.npy", d / "cand.npy", "-f", "json")
    assert r.exit_code == 0
    assert r.stderr == (
        f"kldiv: warning: {d / 'la.npy'} looks like log-probabilities (every value <= 0, each "
        "row's logsumexp 0) but is read as logits: the numbers are the same (a softmax gives "
        "log-probabilities back); say so with --as log-probs (or --reference-as log-probs)\n"
    )
    said = invoke(
        "compare", d / "la.npy", d / "cand.npy", "-f", "json", "--reference-as", "log-probs"
    )
    assert said.exit_code == 0 and said.stderr == ""
    doc, doc_said = json.loads(r.stdout), json.loads(said.stdout)
    assert doc["kl"]["mean"] == pytest.approx(doc_said["kl"]["mean"], rel=1e-9)
    # logits, .kld files (log-probs by format): no warning
    for sides in ((d / "ref.npy", d / "cand.npy"), (SAMPLES / "compare" / "base.kld",) * 2):
        r = invoke("compare", *sides, "--strict")
        assert r.exit_code == 0 and "warning" not in r.stderr, r.stderr


def test_kld_target_hint_names_log_target() -> None:
    """compute with a .kld target (log-probabilities) and no --log-target: the first
    diagnostic says what to add, and --strict stops on it."""
    d = SAMPLES / "compare"
    r = invoke("compute", d / "quant.kld", d / "base.kld", "-r", "batchmean")
    assert r.exit_code == 0
    first = r.stderr.splitlines()[0]
    assert first == (
        "kldiv: warning: the target looks like log-probabilities (every value <= 0, each row's "
        "logsumexp 0; a llama.cpp .kld file holds them): add --log-target"
    )
    assert "(--log-target reads log-probabilities)" in r.stderr
    r = invoke("compute", d / "quant.kld", d / "base.kld", "-r", "batchmean", "--strict")
    assert r.exit_code == 2 and "--strict: the target looks like log-probabilities" in r.stderr
    r = invoke("compute", d / "quant.kld", d / "base.kld", "-r", "batchmean", "--log-target")
    assert r.exit_code == 0 and r.stderr == "" and float(r.stdout) > 0


def test_compute_input_of_probabilities_gets_the_specific_hint(models) -> None:
    """The same check (looks_like) on compute's input: probabilities, not logits."""
    d, a, b, _ = models
    np.save(d / "p.npy", softmax(a.astype(np.float64)))
    np.save(d / "q.npy", softmax(b.astype(np.float64)))
    r = invoke("compute", d / "p.npy", d / "q.npy", "-r", "batchmean")
    assert r.exit_code == 0
    assert r.stderr == (
        "kldiv: warning: 6,000 input values are positive: the input looks like probabilities "
        "(every value in [0, 1], rows summing to 1), not log-probabilities; did you mean "
        "--input-transform log?\n"
    )
    r = invoke("compute", d / "ref.npy", d / "q.npy", "-r", "batchmean")  # logits: both hints
    assert "--input-transform log-softmax (logits)" in r.stderr


def test_looks_like_reads_a_few_rows_and_knows_the_edges() -> None:
    from kldiv_cli.jobs.diagnostics import SPACE_VALUES, looks_like

    rng = np.random.default_rng(4)
    p = rng.dirichlet(np.ones(6), size=(3, 5))  # a batch-1-style stack of rows
    assert looks_like(p) == "probs" and looks_like(p.astype(np.float16)) == "probs"
    p[0, 0, 0] = 0.0  # a class of probability 0: log-probability -inf
    p[0, 0] /= p[0, 0].sum()
    with np.errstate(divide="ignore"):
        lp = np.log(p)
    assert looks_like(lp) == "log-probs" and looks_like(p) == "probs"
    assert looks_like(lp.transpose(1, 0, 2)) == "log-probs"  # strided: sliced, not copied
    assert looks_like(rng.normal(size=(4, 6))) is None  # logits
    assert looks_like(p * 2) is None and looks_like(lp + 1) is None
    bad = p.copy()
    bad[0, 0, 0] = np.nan
    assert looks_like(bad) is None
    assert looks_like(np.ones((4, 1))) is None and looks_like(np.float64(1.0)) is None
    # only the first rows count: a bad row further down is not read
    rows = np.vstack([p[0], rng.normal(size=(400, 6))])
    assert looks_like(rows) is None
    assert looks_like(np.vstack([rng.dirichlet(np.ones(6), 300), rows])) == "probs"
    # very wide rows: one row is read, never more than SPACE_VALUES values
    wide = rng.dirichlet(np.ones(SPACE_VALUES), size=2)
    wide[1] = 5.0
    assert looks_like(wide) == "probs"


# ---------------------------------------------------------------- robust statistics


def test_robust_statistics_thresholds_and_gates(models) -> None:
    d, a, b, t = models
    # A heavy tail: the trimmed mean and the shares move, the mean would flip.
    b = b.copy()
    b[:3] = -b[:3] * 4
    np.save(d / "tail.npy", b)
    thresholds = (0.005, 0.05, 2.0)
    exp = reference(log_softmax(a), log_softmax(b), t, raw=(a, b))
    lp, lq = log_softmax(a), log_softmax(b)
    exp["kl"] = describe((np.exp(lp) * (lp - lq)).sum(1), thresholds=thresholds)
    exp["kl_reverse"] = describe((np.exp(lq) * (lq - lp)).sum(1), thresholds=thresholds)
    doc = run_json(
        d / "ref.npy", d / "tail.npy", "--tokens", d / "tokens.npy", "--frac-above", "0.005,0.05,2"
    )
    for m in ("kl", "kl_reverse"):
        assert doc[m]["trimmed_mean"] == pytest.approx(exp[m]["trimmed_mean"], rel=1e-9)
        assert doc[m]["frac_above"] == exp[m]["frac_above"]
        assert doc[m]["trimmed_mean"] < doc[m]["mean"]
    assert list(doc["delta_p"]["frac_above"]) == ["0.005", "0.05", "2"]
    assert_matches({"top5_overlap": doc["top5_overlap"]}, {"top5_overlap": exp["top5_overlap"]})
    for k in ("1", "2", "5", "10"):
        assert doc["topk_agreement"][k] == pytest.approx(exp["topk_agreement"][k], rel=1e-12)
    tm, top5 = doc["kl"]["trimmed_mean"], doc["topk_agreement"]["5"]["value"]
    args = ("--frac-above", "0.005,0.05,2", "-f", "json")
    ok = invoke(
        "compare",
        d / "ref.npy",
        d / "tail.npy",
        *args,
        "--fail-above",
        f"kl.trimmed_mean={tm * 1.001}",
        "--fail-above",
        f"kl.frac_above.0.05={doc['kl']['frac_above']['0.05']}",
        "--fail-below",
        f"topk_agreement.5={top5}",
        "--fail-below",
        f"top5_overlap={doc['top5_overlap']['value']}",
    )
    assert ok.exit_code == 0, ok.stderr
    bad = invoke(
        "compare",
        d / "ref.npy",
        d / "tail.npy",
        *args,
        "--fail-above",
        f"kl.trimmed_mean={tm * 0.999}",
        "--fail-below",
        "topk_agreement.10.value=1.01",
    )
    assert bad.exit_code == 1
    assert "kl.trimmed_mean" in bad.stderr and "topk_agreement.10.value" in bad.stderr
    # a threshold that is not asked for is not a statistic
    out = invoke("compare", d / "ref.npy", d / "tail.npy", "--fail-above", "kl.frac_above.0.5=1")
    assert out.exit_code == 2 and "unknown statistic 'kl.frac_above.0.5'" in out.stderr


@pytest.mark.parametrize("value", ["", "0.1,x", "nan", "0.1,inf"])
def test_bad_frac_above(models, value) -> None:
    d, *_ = models
    out = invoke("compare", d / "ref.npy", d / "cand.npy", "--frac-above", value)
    assert out.exit_code == 2 and out.stderr.startswith("kldiv: error: --frac-above")
    assert out.stderr.count("\n") == 1 and out.stdout == ""


def test_candidate_rank_ties_and_small_vocabularies() -> None:
    from kldiv_cli.core.compare import rank_measures

    rng = np.random.default_rng(3)
    # integers: many ties, which the stable sort orders by index
    a = rng.integers(0, 3, size=(300, 7)).astype(np.float64)
    b = rng.integers(0, 3, size=(300, 7)).astype(np.float64)
    got = rank_measures(a, b)
    rank, overlap = candidate_ranks(a, b)
    assert np.array_equal(got["top1_rank"], rank) and np.array_equal(got["top5_overlap"], overlap)
    assert np.array_equal(
        got["top1_rank"] == 1, row_measures(a, b, pair(a, b, "logits", "logits"))["agree"]
    )
    small = rank_measures(a[:, :3], b[:, :3])  # 3 classes: the overlap of the top 3
    rank, overlap = candidate_ranks(a[:, :3], b[:, :3])
    assert np.array_equal(small["top5_overlap"], overlap) and np.array_equal(
        small["top1_rank"], rank
    )


def test_robust_statistics_in_text_formats(models) -> None:
    d, *_ = models
    csv = invoke("compare", d / "ref.npy", d / "cand.npy", "-f", "csv").stdout.splitlines()
    doc = run_json(d / "ref.npy", d / "cand.npy")
    assert f"kl.frac_above.0.1,{doc['kl']['frac_above']['0.1']!r}" in csv
    assert any(line.startswith("topk_agreement.5.value,") for line in csv)
    md = invoke("compare", d / "ref.npy", d / "cand.npy", "-f", "markdown").stdout
    assert "| kl.trimmed_mean |" in md and "| top5_overlap.stderr |" in md
    text = invoke("compare", d / "ref.npy", d / "cand.npy", "-f", "plain").stdout
    assert "Trimmed mean (1 % cut each end) KLD:" in text and "Share with KLD > 0.1:" in text
    assert "Reference top-1 in candidate top 5:" in text and "Top-5 set overlap:" in text


# ---------------------------------------------------------------- many candidates


@pytest.mark.parametrize("ext", [".npy", ".kld"])
def test_self_check_reference_against_itself_is_exactly_zero(models, ext) -> None:
    d, *_ = models
    ref = SAMPLES / "compare" / "base.kld" if ext == ".kld" else d / "ref.npy"
    tokens = () if ext == ".kld" else ("--tokens", d / "tokens.npy")
    doc = run_json(ref, ref, *tokens)
    for group in ("kl", "kl_reverse", "js", "tv", "delta_p"):
        # rms_stderr = 0.5/rms · se(Δp²) has no value at rms 0 (checked below)
        values = [v for k, v in doc[group].items() if k not in ("frac_above", "rms_stderr")]
        values += list(doc[group]["frac_above"].values())
        # exactly 0, and +0.0: a sign would print as -0.0
        assert all(v == 0 and math.copysign(1, v) == 1 for v in values), group
    for group in (
        "top1_agreement",
        "top5_overlap",
        *(f"topk_agreement.{k}" for k in "1 2 5 10".split()),
    ):
        node = doc
        for part in group.split("."):
            node = node[part]
        assert node == {"value": 1.0, "stderr": 0.0}, group
    assert doc["delta_p"]["rms_stderr"] == "NaN"
    assert doc["delta_p"]["rms_stderr"] == "NaN"
    ppl = doc["perplexity"]
    assert ppl["ln_ratio"] == 0 and ppl["ratio"] == 1 and ppl["difference"] == 0


@pytest.fixture()
def quants(models):
    d, a, b, t = models
    rng = np.random.default_rng(5)
    c = (a + rng.normal(size=a.shape) * 0.5).astype(np.float32)
    np.save(d / "worse.npy", c)
    return d, a, [b, c]


def test_many_candidates_json_and_paired_errors(quants) -> None:
    d, a, (b, c) = quants
    paths = [d / "cand.npy", d / "worse.npy", d / "ref.npy"]
    out = invoke("compare", d / "ref.npy", *paths, "--tokens", d / "tokens.npy", "-f", "json")
    assert out.exit_code == 0, out.stderr
    doc = json.loads(out.stdout)
    assert list(doc) == ["candidates", "paired", "kldiv_version"]
    assert [x["label"] for x in doc["candidates"]] == ["cand.npy", "worse.npy", "ref.npy"]
    for entry, path in zip(doc["candidates"], paths):
        alone = run_json(d / "ref.npy", path, "--tokens", d / "tokens.npy", full=True)
        assert entry["path"] == str(path)
        assert {k: v for k, v in entry.items() if k not in ("label", "path")} == alone
    lp = log_softmax(a)
    kl = [(np.exp(lp) * (lp - log_softmax(x))).sum(axis=1) for x in (b, c, a)]
    labels = ["cand.npy", "worse.npy", "ref.npy"]
    assert [(p["a"], p["b"]) for p in doc["paired"]] == [
        (labels[0], labels[1]),
        (labels[0], labels[2]),
        (labels[1], labels[2]),
    ]
    for p in doc["paired"]:
        diff = kl[labels.index(p["a"])] - kl[labels.index(p["b"])]
        se = math.sqrt((np.mean(diff**2) - diff.mean() ** 2) / (len(diff) - 1))
        assert p["kl_mean_difference"] == pytest.approx(diff.mean(), rel=1e-9)
        assert p["stderr"] == pytest.approx(se, rel=1e-7)
    # the pairing matters: far below the two errors in quadrature
    first = doc["candidates"]
    unpaired = math.hypot(first[0]["kl"]["stderr"], first[1]["kl"]["stderr"])
    assert doc["paired"][0]["stderr"] < unpaired


def test_many_candidates_tables_labels_and_gates(quants) -> None:
    d, *_ = quants
    args = (d / "ref.npy", d / "cand.npy", d / "worse.npy", "--label", "Q8", "--label", "Q2")
    single = run_json(d / "ref.npy", d / "worse.npy")
    csv = invoke("compare", *args, "-f", "csv")
    assert csv.exit_code == 0, csv.stderr
    lines = csv.stdout.splitlines()
    header = lines[0].split(",")
    assert header[:5] == ["label", "path", "rows", "kl.mean", "kl.stderr"]
    assert "topk_agreement.5.value" in header and "kl.frac_above.0.1" in header
    assert len(lines) == 3 and lines[2].startswith(f"Q2,{d / 'worse.npy'},200,")
    assert float(lines[2].split(",")[header.index("kl.p99")]) == single["kl"]["p99"]
    assert "Q8 - Q2: mean KLD difference" in csv.stderr  # the paired line, a note
    md = invoke("compare", *args, "-f", "markdown").stdout
    assert md.count("| Q8 |") == 1 and "| label | path |" in md
    plain = invoke("compare", *args, "-f", "plain").stdout.splitlines()
    assert [line.split(":")[0] for line in plain] == ["Q8", "Q2"]
    # a gate applies to every candidate; the failure names the one that failed
    limit = single["kl"]["mean"] / 2
    gated = invoke("compare", *args, "--fail-above", f"kl.mean={limit}", "-f", "json")
    assert gated.exit_code == 1
    assert gated.stderr.startswith("kldiv: check failed: Q2: kl.mean = ")
    assert "Q8" not in gated.stderr
    doc = json.loads(gated.stdout)
    assert doc["verdict"] == "fail"
    assert [c["verdict"] for c in doc["candidates"]] == ["pass", "fail"]
    ok = invoke("compare", *args, "--fail-above", "kl.mean=100", "-f", "csv")
    assert ok.exit_code == 0 and ok.stdout.splitlines()[0].endswith(",verdict")


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (("--label", "a"), "--label: 1 labels for 2 candidates"),
        (("--label", "a", "--label", "a"), "two candidates have the same label"),
        (("-o", "rows.csv"), "-o writes the per-row measures of one candidate"),
    ],
)
def test_many_candidates_usage_errors(quants, extra, message) -> None:
    d, *_ = quants
    out = invoke("compare", d / "ref.npy", d / "cand.npy", d / "worse.npy", *extra)
    assert out.exit_code == 2 and message in out.stderr and out.stdout == ""
    assert out.stderr.count("\n") == 1 and not (d / "rows.csv").exists()


def test_many_candidates_rows_must_match(quants) -> None:
    d, a, _ = quants
    np.save(d / "short.npy", a[:150])
    out = invoke("compare", d / "ref.npy", d / "cand.npy", d / "short.npy")
    assert out.exit_code == 2 and "short.npy" in out.stderr and "numbers of rows" in out.stderr


# ---------------------------------------------------------------- offenders


def test_top_rows_of_largest_kl(models) -> None:
    d, a, b, t = models
    np.save(d / "ref3.npy", a.reshape(8, 25, 30))
    np.save(d / "cand3.npy", b.reshape(8, 25, 30))
    t = t.copy()
    t[::7] = -100  # ignored rows keep their input index
    np.save(d / "t.npy", t)
    args = ("--tokens", d / "t.npy", "--ignore-index", "-100", "--top", "5")
    doc = run_json(d / "ref3.npy", d / "cand3.npy", *args)
    lp, lq = log_softmax(a), log_softmax(b)
    kl = (np.exp(lp) * (lp - lq)).sum(axis=1)
    kl[t == -100] = -np.inf
    rows = np.argsort(-kl, kind="stable")[:5]
    assert [o["row"] for o in doc["offenders"]] == rows.tolist()
    for o, r in zip(doc["offenders"], rows):
        assert (o["sequence"], o["position"]) == divmod(int(r), 25)
        assert o["token"] == t[r]
        assert o["logp_reference"] == pytest.approx(lp[r, t[r]], rel=1e-12)
        assert o["logp_candidate"] == pytest.approx(lq[r, t[r]], rel=1e-12)
        assert o["kl"] == pytest.approx(kl[r], rel=1e-10)
        assert o["tv"] == pytest.approx(0.5 * np.abs(np.exp(lp[r]) - np.exp(lq[r])).sum())
        assert o["top1_rank"] == candidate_ranks(a[r : r + 1], b[r : r + 1])[0][0]
    assert "offenders" not in run_json(d / "ref3.npy", d / "cand3.npy")
    out = invoke("compare", d / "ref3.npy", d / "cand3.npy", *args, "-o", d / "rows.parquet")
    assert out.exit_code == 0, out.stderr
    import pyarrow.parquet as pq

    table = pq.read_table(d / "rows.parquet").to_pydict()
    assert list(table)[:3] == ["row", "sequence", "position"]
    rows_used = np.flatnonzero(t != -100)
    assert table["sequence"] == (rows_used // 25).tolist()
    assert table["position"] == (rows_used % 25).tolist()
    plain = invoke("compare", d / "ref3.npy", d / "cand3.npy", *args, "-f", "plain").stdout
    assert f"row {rows[0]} (sequence {rows[0] // 25}, position {rows[0] % 25})" in plain
    csv = invoke("compare", d / "ref3.npy", d / "cand3.npy", *args, "-f", "csv").stdout
    assert "offender" not in csv  # records, not statistics
    # 2-D without tokens: the row and the measures only
    flat = run_json(d / "ref.npy", d / "cand.npy", "--top", "300")["offenders"]
    assert len(flat) == 200 and set(flat[0]) == {"row", "kl", "kl_reverse", "js", "tv", "top1_rank"}
    assert [o["kl"] for o in flat] == sorted((o["kl"] for o in flat), reverse=True)


def test_top_rows_of_a_kld_file_name_chunk_and_position() -> None:
    kld = SAMPLES / "compare"
    doc = run_json(kld / "base.kld", kld / "quant.kld", "--top", "2", full=True)
    n_ctx = doc["reference"]["n_ctx"]
    first, per_chunk = n_ctx // 2, n_ctx - 1 - n_ctx // 2
    for o in doc["offenders"]:
        assert (o["sequence"], o["position"]) == (
            o["row"] // per_chunk,
            first + o["row"] % per_chunk,
        )
    out = invoke("compare", kld / "base.kld", kld / "quant.kld", "--top", "0")
    assert out.exit_code == 2 and "--top must be at least 1" in out.stderr
