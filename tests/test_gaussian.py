"""kldiv gaussian and gaussian_kl against torch's kl_divergence(Normal, Normal) (golden file
from tests/golden/make_gaussian_golden.py) and a 40-digit reference; reductions, scale
parameters, free bits, active units, inputs and errors."""

from __future__ import annotations

import json
import struct
from fractions import Fraction
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kldiv_cli import gaussian_kl
from kldiv_cli.core.gaussian import active_units

from .conftest import SAMPLES

GOLDEN = np.load(Path(__file__).parent / "golden" / "gaussian.npz", allow_pickle=False)
CASES = sorted({k.split("__")[0] for k in GOLDEN.files})


def case(name: str):
    g = {k.split("__")[1]: GOLDEN[k] for k in GOLDEN.files if k.startswith(name + "__")}
    prior = {k: g[k] for k in ("prior_mu", "prior_logvar") if k in g}
    return g, prior


def ulps(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    scale = np.maximum(np.spacing(np.abs(b)), np.finfo(np.float64).smallest_subnormal)
    return float(np.max(np.abs(a - b) / scale))


@pytest.mark.parametrize("name", CASES)
def test_pointwise_matches_the_exact_value_and_torch(name):
    g, prior = case(name)
    ours = gaussian_kl(g["mu"], g["logvar"], reduction="none", **prior)
    assert ours.dtype == np.float64 and ours.shape == g["mu"].shape
    assert ulps(ours, g["exact"]) <= 4
    if not name.startswith("near"):
        # where torch's formula does not cancel, it agrees to a few ulp of float64 ...
        assert ulps(ours, g["torch64"]) <= 16
    # ... and torch's own-dtype number is the float64 value within its rounding
    eps = np.finfo(g["torch"].dtype).eps
    assert np.all(np.abs(g["torch"] - ours) <= 8 * eps * np.maximum(np.abs(ours), 1.0))


@pytest.mark.parametrize("name", CASES)
def test_reductions_match_torchs_sums(name):
    g, prior = case(name)
    exact = g["exact"]
    sums = {
        "batch-mean": (
            g["batch_mean"],
            Fraction(sum(map(Fraction, exact.ravel().tolist()))) / len(exact),
        ),
        "sum": (g["sum"], Fraction(sum(map(Fraction, exact.ravel().tolist())))),
    }
    for reduction, (torch_value, want) in sums.items():
        ours = gaussian_kl(g["mu"], g["logvar"], reduction=reduction, **prior)
        assert isinstance(ours, float)
        assert abs(Fraction(ours) - want) <= 8 * Fraction(float(np.spacing(float(want) or 1e-300)))
        if not name.startswith("near"):
            assert ours == pytest.approx(float(torch_value), rel=1e-14, abs=1e-300)
            # torch's number in its own dtype is ours within its rounding
            own = g["own_" + reduction.replace("-", "_")]
            assert abs(float(own) - ours) <= 64 * np.finfo(own.dtype).eps * abs(ours)
    per_dim = gaussian_kl(g["mu"], g["logvar"], reduction="per-dim", **prior)
    per_row = gaussian_kl(g["mu"], g["logvar"], reduction="per-row", **prior)
    if not name.startswith("near"):  # torch's sums of its cancelled terms: not a reference
        np.testing.assert_allclose(per_dim, g["per_dim"], rtol=1e-14, atol=1e-300)
        np.testing.assert_allclose(per_row, g["per_row"], rtol=1e-14, atol=1e-300)
    np.testing.assert_allclose(per_dim, exact.mean(axis=0), rtol=1e-15, atol=1e-300)
    np.testing.assert_allclose(per_row, exact.sum(axis=1), rtol=1e-15, atol=1e-300)


def test_equal_to_the_prior_is_exactly_zero():
    for name in ("equal_f64", "equal_f32", "standard_equal_f64"):
        g, prior = case(name)
        for reduction in ("none", "per-row", "per-dim"):
            assert not gaussian_kl(g["mu"], g["logvar"], reduction=reduction, **prior).any()
        assert gaussian_kl(g["mu"], g["logvar"], **prior) == 0.0


def test_scale_parameters_agree():
    rng = np.random.default_rng(1)
    mu, lv = rng.normal(size=(7, 3)), rng.normal(size=(7, 3))
    want = gaussian_kl(mu, lv, reduction="none")
    for param, scale in (
        ("logstd", lv / 2),
        ("std", np.exp(lv / 2)),
        ("var", np.exp(lv)),
    ):
        got = gaussian_kl(mu, scale, scale_param=param, reduction="none")
        np.testing.assert_allclose(got, want, rtol=1e-13, err_msg=param)
    # The classic bug: log sigma read as log sigma^2 gives a different KL.
    assert gaussian_kl(mu, lv / 2) != pytest.approx(gaussian_kl(mu, lv))
    with pytest.raises(ValueError, match="must be >= 0"):
        gaussian_kl(mu, -np.ones_like(mu), scale_param="std")
    assert gaussian_kl(mu, np.zeros_like(mu), scale_param="var") == np.inf


def test_free_bits_and_active_units():
    rng = np.random.default_rng(2)
    mu = rng.normal(size=(50, 6))
    mu[:, 3:] *= 0.01
    lv = rng.normal(-1, 0.3, size=(50, 6))
    lv[:, 3:] = 0.0
    per_dim = gaussian_kl(mu, lv, reduction="per-dim")
    kl, fb = gaussian_kl(mu, lv, free_bits=0.25)
    assert kl == pytest.approx(per_dim.sum(), rel=1e-14)
    assert fb == pytest.approx(np.maximum(per_dim, 0.25).sum(), rel=1e-14)
    assert fb > kl
    total, total_fb = gaussian_kl(mu, lv, reduction="sum", free_bits=0.25)
    assert total_fb == pytest.approx(50 * fb, rel=1e-14)
    dims, dims_fb = gaussian_kl(mu, lv, reduction="per-dim", free_bits=0.25)
    np.testing.assert_array_equal(dims_fb, np.maximum(dims, 0.25))
    assert active_units(mu) == int((np.var(mu, axis=0, ddof=1) > 0.01).sum()) == 3
    assert active_units(mu[:1]) == 0
    for reduction in ("none", "per-row"):
        with pytest.raises(ValueError, match="free bits"):
            gaussian_kl(mu, lv, reduction=reduction, free_bits=0.1)


def test_prior_broadcasts_and_shapes_are_checked():
    rng = np.random.default_rng(3)
    mu, lv = rng.normal(size=(4, 3)), rng.normal(size=(4, 3))
    pm, plv = rng.normal(size=3), rng.normal(size=3)
    np.testing.assert_array_equal(
        gaussian_kl(mu, lv, prior_mu=pm, prior_logvar=plv, reduction="none"),
        gaussian_kl(
            mu,
            lv,
            prior_mu=np.tile(pm, (4, 1)),
            prior_logvar=np.tile(plv, (4, 1)),
            reduction="none",
        ),
    )
    with pytest.raises(ValueError, match="shapes"):
        gaussian_kl(mu, lv[:, :2])
    with pytest.raises(ValueError, match="broadcast"):
        gaussian_kl(mu, lv, prior_mu=np.zeros(4))
    with pytest.raises(ValueError, match="reduction"):
        gaussian_kl(mu, lv, reduction="mean")


@settings(max_examples=80, deadline=None)
@given(
    st.floats(-5, 5),
    st.floats(-8, 8),
    st.floats(-1e-7, 1e-7),
    st.floats(-1e-7, 1e-7),
)
def test_nearly_equal_is_not_lost(mu, lv, dmu, dlv):
    # KL ~ ½(d²/2 + Δμ² e^{-lv}): the leading terms, to relative 1e-6 (d < 1e-7).
    pm, plv = mu + dmu, lv + dlv
    d, dm = lv - plv, mu - pm  # what the function sees, after float rounding
    ours = gaussian_kl([[mu]], [[lv]], prior_mu=[[pm]], prior_logvar=[[plv]])
    want = 0.5 * (d * d / 2 + d**3 / 6 + dm * dm * np.exp(-plv))
    assert ours >= 0.0
    assert ours == pytest.approx(want, rel=1e-6, abs=1e-300)


# ---------------------------------------------------------------- CLI


@pytest.fixture()
def vae(tmp_path):
    rng = np.random.default_rng(4)
    mu = rng.normal(size=(8, 4)).astype(np.float32)
    lv = rng.normal(-1, 0.5, size=(8, 4)).astype(np.float32)
    np.save(tmp_path / "mu.npy", mu)
    np.save(tmp_path / "lv.npy", lv)
    return tmp_path, mu, lv


def doc_of(result):
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def test_cli_reductions(run_cli, vae):
    d, mu, lv = vae
    args = ["gaussian", d / "mu.npy", d / "lv.npy", "-f", "json"]
    doc = doc_of(run_cli(*args))
    assert doc["kl"] == gaussian_kl(mu, lv) and doc["reduction"] == "batch-mean"
    assert (doc["batch"], doc["latent_dims"], doc["scale_param"]) == (8, 4, "logvar")
    for reduction in ("sum", "none", "per-dim", "per-row"):
        doc = doc_of(run_cli(*args, "-r", reduction))
        want = gaussian_kl(mu, lv, reduction=reduction)
        np.testing.assert_array_equal(np.array(doc["kl"]), want)
        assert ("active_units" in doc) == (reduction == "per-dim")
    doc = doc_of(run_cli(*args, "-r", "per-dim", "--free-bits", "0.3"))
    assert doc["active_units"] == active_units(mu)
    np.testing.assert_array_equal(doc["kl_free_bits"], np.maximum(doc["kl"], 0.3))
    r = run_cli("gaussian", d / "mu.npy", d / "lv.npy")
    assert float(r.stdout) == gaussian_kl(mu, lv)
    r = run_cli("gaussian", d / "mu.npy", d / "lv.npy", "--free-bits", "2")
    assert r.stdout.splitlines()[1].startswith("kl_free_bits,")


def test_cli_prior_and_scale_param(run_cli, vae):
    d, mu, lv = vae
    np.save(d / "std.npy", np.exp(lv.astype(np.float64) / 2))
    r = run_cli("gaussian", d / "mu.npy", d / "std.npy", "--scale-param", "std")
    assert float(r.stdout) == pytest.approx(gaussian_kl(mu, lv), rel=1e-13)
    np.save(d / "pm.npy", mu[0])
    np.save(d / "plv.npy", lv[0])
    args = ["--prior-mu", d / "pm.npy", "--prior-logvar", d / "plv.npy", "-r", "per-row"]
    doc = doc_of(run_cli("gaussian", d / "mu.npy", d / "lv.npy", *args, "-f", "json"))
    assert doc["kl"][0] == 0.0
    np.testing.assert_array_equal(
        doc["kl"],
        gaussian_kl(mu, lv, prior_mu=mu[0], prior_logvar=lv[0], reduction="per-row"),
    )
    assert doc["prior"]["mu"]["path"].endswith("pm.npy")


def test_cli_one_table_and_one_npz(run_cli, vae):
    d, mu, lv = vae
    want = gaussian_kl(mu, lv)
    columns = {f"mu{j}": mu[:, j] for j in range(4)} | {f"lv{j}": lv[:, j] for j in range(4)}
    pq.write_table(pa.table(columns), d / "z.parquet")
    r = run_cli("gaussian", d / "z.parquet", "--mu-columns", "mu*", "--logvar-columns", "lv*")
    assert r.exit_code == 0, r.stderr
    assert float(r.stdout) == want
    np.savez(d / "z.npz", mu=mu, logvar=lv)
    r = run_cli("gaussian", d / "z.npz", "--mu-key", "mu", "--logvar-key", "logvar")
    assert float(r.stdout) == want
    with open(d / "z.csv", "w") as f:
        f.write(",".join(columns) + "\n")
        for row in zip(*columns.values()):
            f.write(",".join(repr(float(v)) for v in row) + "\n")
    r = run_cli(
        "gaussian",
        "-",
        "--mu-columns",
        "mu*",
        "--logvar-columns",
        "lv*",
        input=(d / "z.csv").read_bytes(),
    )
    assert r.exit_code == 0, r.stderr
    assert float(r.stdout) == want


def write_safetensors(path: Path, tensors: dict[str, np.ndarray]) -> None:
    header, blobs, offset = {}, [], 0
    for name, arr in tensors.items():
        data = np.ascontiguousarray(arr, dtype="<f4").tobytes()
        header[name] = {
            "dtype": "F32",
            "shape": list(arr.shape),
            "data_offsets": [offset, offset + len(data)],
        }
        blobs.append(data)
        offset += len(data)
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + b"".join(blobs))


def test_cli_safetensors(run_cli, vae):
    d, mu, lv = vae
    write_safetensors(d / "z.safetensors", {"mu": mu, "logvar": lv})
    r = run_cli("gaussian", d / "z.safetensors", "--mu-key", "mu", "--logvar-key", "logvar")
    assert r.exit_code == 0, r.stderr
    assert float(r.stdout) == gaussian_kl(mu, lv)


@pytest.mark.parametrize(
    "args, message",
    [
        (["mu.npy", "short.npy"], "shapes do not match"),
        (["mu.npy", "lv.npy", "--scale-param", "std"], "negative std"),
        (["mu.npy", "lv.npy", "--scale-param", "var"], "negative var"),
        (["nan.npy", "lv.npy"], "MU: NaN at row 2, column 1"),
        (["mu.npy", "lv.npy", "--prior-mu", "short.npy"], "does not broadcast"),
        (["mu.npy", "lv.npy", "-r", "per-row", "--free-bits", "1"], "--free-bits"),
        (["mu.npy", "lv.npy", "--scale-param", "sigma"], "--scale-param"),
        (["mu.npy"], "LOGVAR"),
        (["mu.npy", "lv.npy", "-o", "lv.npy"], "input"),
    ],
)
def test_cli_errors_are_one_line(run_cli, vae, monkeypatch, args, message):
    d, mu, lv = vae
    np.save(d / "short.npy", lv[:, :3])
    bad = mu.copy()
    bad[2, 1] = np.nan
    np.save(d / "nan.npy", bad)
    monkeypatch.chdir(d)
    r = run_cli("gaussian", *args)
    assert r.exit_code == 2, r.stdout
    assert r.stderr.startswith("kldiv: error:") and r.stderr.count("\n") == 1
    assert message in r.stderr


def test_help_warns_about_logvar_vs_logstd(run_cli):
    r = run_cli("gaussian", "--help")
    assert "logvar vs log-std confusion is the most common VAE bug" in " ".join(r.stdout.split())


def test_sample_data(run_cli):
    vae = SAMPLES / "vae"
    a = run_cli("gaussian", vae / "mu.npy", vae / "logvar.npy", "-r", "per-dim", "-f", "json")
    b = run_cli(
        "gaussian",
        vae / "latents.parquet",
        "--mu-columns",
        "mu_*",
        "--logvar-columns",
        "logvar_*",
        "-r",
        "per-dim",
        "-f",
        "json",
    )
    da, db = doc_of(a), doc_of(b)
    assert da["kl"] == db["kl"] and da["active_units"] == db["active_units"] == 4


def test_conv_latents_and_array_output(run_cli, tmp_path):
    rng = np.random.default_rng(6)
    mu, lv = rng.normal(size=(3, 2, 2, 2)), rng.normal(size=(3, 2, 2, 2))
    flat = gaussian_kl(mu.reshape(3, -1), lv.reshape(3, -1), reduction="per-dim")
    np.testing.assert_array_equal(gaussian_kl(mu, lv, reduction="per-dim"), flat)
    assert gaussian_kl(mu, lv, reduction="none").shape == mu.shape
    np.save(tmp_path / "mu.npy", mu)
    np.save(tmp_path / "lv.npy", lv)
    out = tmp_path / "rows.npy"
    r = run_cli("gaussian", tmp_path / "mu.npy", tmp_path / "lv.npy", "-r", "per-row", "-o", out)
    assert r.exit_code == 0 and r.stdout == ""
    np.testing.assert_array_equal(np.load(out), gaussian_kl(mu, lv, reduction="per-row"))
