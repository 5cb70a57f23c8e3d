"""drift's measures beyond KL against SciPy (``tests/golden/drift_measures.json``, written
by ``make_drift_measures.py``): chi-square and Kolmogorov distributions, the two-sample
K-S test, Wasserstein, chi-square of a 2 x k table, p-value corrections; then the same
numbers through ``kldiv drift`` on a table, raw and from a profile, and the gate."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from kldiv_cli.core import twosample as T

from .helpers import invoke

GOLDEN = json.loads((Path(__file__).parent / "golden" / "drift_measures.json").read_text())


def test_distribution_functions_match_scipy() -> None:
    for x, dof, want in GOLDEN["chi2_sf"]:
        assert T.chi2_sf(x, dof) == pytest.approx(want, rel=1e-12, abs=1e-300), (x, dof)
    for x, want in GOLDEN["kolmogorov"]:
        assert T.kolmogorov_sf(x) == pytest.approx(want, rel=1e-12, abs=1e-15), x
    assert T.chi2_sf(0, 3) == T.kolmogorov_sf(0) == 1.0
    a, b = np.arange(1500.0), np.arange(1200.0) + 40
    d, p = T.ks_2samp(a, b, exact_limit=1000)
    assert p == pytest.approx(T.kolmogorov_sf(d * math.sqrt(1500 * 1200 / 2700)), rel=1e-15)
    assert T.chi2_sf(math.inf, 3) == 0.0 and math.isnan(T.chi2_sf(math.nan, 3))


def test_two_sample_measures_match_scipy() -> None:
    for case in GOLDEN["samples"]:
        a, b = np.array(case["a"]), np.array(case["b"])
        d, p = T.ks_2samp(a, b)
        assert d == pytest.approx(case["ks"][0], rel=1e-12)
        assert p == pytest.approx(case["ks"][1], rel=1e-8, abs=1e-14), (a.size, b.size)
        assert T.ks_2samp(b, a) == pytest.approx((d, p), rel=1e-8)
        assert T.wasserstein_1d(a, b) == pytest.approx(case["wasserstein"], rel=1e-12)
    for case in GOLDEN["tables"]:
        got = T.chi2_contingency_2xk(*map(np.array, case["table"]))
        assert got == pytest.approx(tuple(case["expected"]), rel=1e-12)
    p = GOLDEN["p_values"]
    for method in ("bh", "bonferroni"):
        assert T.adjust_p_values(np.array(p["p"]), method) == pytest.approx(p[method], rel=1e-12)
    with pytest.raises(ValueError):
        T.ks_2samp(np.array([1.0, np.nan]), np.array([1.0]))


def _write(doc: dict, path: Path) -> str:
    pq.write_table(pa.table(doc), path)
    return str(path)


def _drift(*args) -> tuple[int, dict, str]:
    out = invoke("drift", *args, "--format", "json")
    return out.exit_code, json.loads(out.stdout) if out.stdout else {}, out.stderr


def _hellinger(column: dict, eps: float = 1e-4) -> float:
    h = column["histogram"]
    ref, cur = np.array(h["reference"], float), np.array(h["current"], float)
    k = ref.size
    p = (ref / ref.sum() + eps / k) / (1 + eps)
    q = (cur / cur.sum() + eps / k) / (1 + eps)
    return float(np.sqrt(0.5 * np.sum((np.sqrt(p) - np.sqrt(q)) ** 2)))


@pytest.fixture(scope="module")
def tables(tmp_path_factory) -> tuple[str, str, str]:
    d = tmp_path_factory.mktemp("measures")
    t = GOLDEN["table"]
    ref = _write({"id": np.arange(400), **t["reference"]}, d / "ref.parquet")
    cur = _write({"id": np.arange(400, 700), **t["current"]}, d / "cur.parquet")
    profile = d / "ref.profile.json"
    assert invoke("profile", ref, "-o", profile).exit_code == 0
    return ref, cur, str(profile)


def test_every_measure_in_the_json_raw_and_from_a_profile(tables) -> None:
    ref, cur, profile = tables
    want = GOLDEN["table"]
    docs = [_drift(r, cur)[1] for r in (ref, profile)]
    assert docs[0]["columns"] == docs[1]["columns"]
    cols = {c["name"]: c for c in docs[0]["columns"]}
    amount, device = cols["amount"]["measures"], cols["device"]["measures"]
    assert amount["ks"]["statistic"] == pytest.approx(want["amount"]["ks"][0], rel=1e-12)
    assert amount["ks"]["p_value"] == pytest.approx(want["amount"]["ks"][1], rel=1e-8)
    assert amount["wasserstein"] == pytest.approx(want["amount"]["wasserstein"], rel=1e-12)
    assert amount["ks"]["method"] == "exact"  # 400 and 300 values: exact even when not the gate
    stat, p, dof = want["device"]["chi2"]
    assert device["chi2"] == pytest.approx({"statistic": stat, "p_value": p, "dof": dof})
    for c in (cols["amount"], cols["device"]):
        assert c["measures"]["kl"] == c["kl"]
        assert c["measures"]["hellinger"] == pytest.approx(_hellinger(c), rel=1e-12)
    assert "measures" not in cols["id"]  # a row key: not compared


def test_any_measure_gates_with_alpha_and_corrections(tables) -> None:
    ref, cur, _ = tables
    p_amount, p_device = GOLDEN["table"]["amount"]["ks"][1], GOLDEN["table"]["device"]["chi2"][1]
    code, doc, _ = _drift(ref, cur, "--metric", "ks", "--alpha", "0.01")
    cols = {c["name"]: c for c in doc["columns"]}
    assert (cols["amount"]["metric"], cols["device"]["metric"]) == ("ks", "chi2")
    assert cols["amount"]["value"] == pytest.approx(p_amount, rel=1e-8)
    assert doc["alpha"] == 0.01 and cols["amount"]["threshold"] == 0.01
    for name, p in (("amount", p_amount), ("device", p_device)):
        assert cols[name]["drift"] == (p < 0.01)
    assert code == (1 if min(p_amount, p_device) < 0.01 else 0)
    # Bonferroni over the two tested columns: at an alpha between p and 2p, no drift.
    p = min(p_amount, p_device)
    alpha = str(1.5 * p)
    plain = _drift(ref, cur, "--metric", "chi2", "--alpha", alpha)[1]
    corrected = _drift(ref, cur, "--metric", "chi2", "--alpha", alpha, "--correction", "bonferroni")
    assert plain["n_drifted"] == 1 and corrected[0] == 0 and corrected[1]["n_drifted"] == 0
    adjusted = sorted(c.get("p_value_adjusted") or 2 for c in corrected[1]["columns"])
    assert adjusted[:2] == pytest.approx(sorted([min(1, 2 * p_amount), min(1, 2 * p_device)]))
    # Distances: wasserstein gates numbers (js categories); hellinger has a noise bound.
    code, doc, _ = _drift(ref, cur, "--metric", "wasserstein", "--threshold", "0.1")
    cols = {c["name"]: c for c in doc["columns"]}
    assert cols["device"]["metric"] == "js" and cols["amount"]["metric"] == "wasserstein"
    assert cols["amount"]["drift"] == (cols["amount"]["measures"]["wasserstein"] > 0.1)
    _, doc, _ = _drift(ref, cur, "--metric", "hellinger", "--threshold", "0")
    for c in doc["columns"]:
        if "measures" in c:
            assert c["value"] == c["measures"]["hellinger"]
            assert c["drift"] == (c["value"] > c["noise_bound"] > 0)


def test_old_profiles_load_without_values_and_bad_options_are_one_line(tables, tmp_path) -> None:
    ref, cur, profile = tables
    doc = json.loads(Path(profile).read_text())
    doc["kldiv_profile"] = 3
    for c in doc["columns"].values():
        c.pop("sketch", None)
    old = tmp_path / "old.profile.json"
    old.write_text(json.dumps(doc))
    code, report, _ = _drift(old, cur)
    assert code in (0, 1) and "ks" not in report["columns"][1]["measures"]
    out = invoke("drift", old, cur, "--metric", "ks")
    assert out.exit_code in (1, 2) and "the profile does not hold" not in out.stderr
    assert "amount" in out.stderr and "needs the reference's values" in out.stderr
    doc = json.loads(Path(profile).read_text())
    doc["columns"]["amount"]["sketch"]["values"].reverse()
    bad = tmp_path / "bad.profile.json"
    bad.write_text(json.dumps(doc))
    out = invoke("drift", bad, cur)
    assert out.exit_code == 2 and "the sketch is not sorted" in out.stderr
    for args, message in (
        (("--alpha", "0.05"), "--alpha and --correction apply to the p-value tests"),
        (("--metric", "ks", "--alpha", "1.5"), "--alpha must be in (0, 1)"),
        (
            ("--metric", "ks", "--correction", "holm"),
            "unknown --correction 'holm'; choose one of none, bonferroni, bh",
        ),
        (("--metric", "ks", "--engine", "dask"), "--engine dask does not keep"),
    ):
        out = invoke("drift", ref, cur, *args)
        assert out.exit_code == 2, args
        assert out.stderr.startswith("kldiv: error: ") and message in out.stderr, out.stderr
        assert out.stderr.count("\n") == 1 and not out.stdout


def test_learned_thresholds_from_a_calibrated_profile(tmp_path) -> None:
    """``profile --calibrate``: reproducible with a seed, each measure's mean and standard
    deviation over random halves; ``drift --threshold learned[:K]`` gates at mean + K sigma
    scaled by (1/n + 1/m) / (1/a + 1/b), falls back to the fixed threshold where nothing
    was learned, and says which in every column."""
    from .drift_data import cars, split

    ref, cur = split(cars(0), 5)
    r, c = _write_table(ref, tmp_path / "r.parquet"), _write_table(cur, tmp_path / "c.parquet")
    paths = [tmp_path / f"p{i}.json" for i in range(3)]
    some = ("--columns", "Displacement,Horsepower,Name")
    for path, seed in zip(paths, (7, 7, 8)):
        out = invoke("profile", r, "--calibrate", "6", "--calibrate-seed", seed, "-o", path, *some)
        assert out.exit_code == 0, out.stderr
    assert paths[0].read_text() == paths[1].read_text() != paths[2].read_text()
    profile = json.loads(paths[0].read_text())["columns"]
    cal = profile["Displacement"]["calibration"]
    assert cal["resamples"] == 6 and set(cal["metrics"]) >= {"kl", "hellinger", "wasserstein"}
    assert "calibration" not in profile["Name"] or profile["Name"]["role"] == "text"
    code, doc, _ = _drift(paths[0], c, "--threshold", "learned:2", "--base", "2")
    assert code == 0 and doc["threshold_learned_k"] == 2
    col = {x["name"]: x for x in doc["columns"]}["Displacement"]
    mean, sigma = cal["metrics"]["kl"]
    a, b = cal["sizes"]
    factor = (1 / col["n_reference"] + 1 / col["n_current"]) / (1 / a + 1 / b)
    assert col["threshold_origin"] == "learned"
    assert col["threshold"] == pytest.approx((mean + 2 * sigma) * factor / math.log(2), rel=1e-12)
    # Hellinger scales with the square root; a v3-style profile without calibration falls back.
    _, doc, _ = _drift(paths[0], c, "--threshold", "learned", "--metric", "hellinger")
    col = {x["name"]: x for x in doc["columns"]}["Displacement"]
    mean, sigma = cal["metrics"]["hellinger"]
    assert col["threshold"] == pytest.approx((mean + 3 * sigma) * math.sqrt(factor), rel=1e-12)
    bare = json.loads(paths[0].read_text())
    del bare["columns"]["Displacement"]["calibration"]
    (tmp_path / "bare.json").write_text(json.dumps(bare))
    out = invoke("drift", tmp_path / "bare.json", c, "--threshold", "learned", "-f", "csv")
    rows = {line.split(",")[0]: line for line in out.stdout.splitlines()}
    assert ",0.1,fixed," in rows["Displacement"] and ",learned," in rows["Horsepower"]
    for args, message in (
        ((r, c, "--threshold", "learned"), "needs a profile made with 'kldiv profile --calibrate"),
        ((paths[0], c, "--threshold", "learned:x"), "--threshold learned:K takes a number"),
        ((paths[0], c, "--threshold", "lots"), "--threshold takes a number or learned[:K]"),
        ((paths[0], c, "--threshold", "learned", "--metric", "ks"), "gated by --alpha"),
    ):
        out = invoke("drift", *args)
        assert out.exit_code == 2 and message in out.stderr, (args, out.stderr)
    out = invoke("profile", r, "--calibrate", "1")
    assert out.exit_code == 2 and "at least 2 splits" in out.stderr
    bad = json.loads(paths[0].read_text())
    bad["columns"]["Displacement"]["calibration"]["metrics"]["kl"] = [-1, 0]
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    out = invoke("drift", tmp_path / "bad.json", c)
    assert out.exit_code == 2 and "kl must be [mean, std]" in out.stderr


def _write_table(table: pa.Table, path: Path) -> str:
    pq.write_table(table, path)
    return str(path)


def test_warn_tier_never_fails_the_check(tmp_path) -> None:
    from .drift_data import cars, split

    ref, cur = split(cars(0), 5)
    r, c = _write_table(ref, tmp_path / "r.parquet"), _write_table(cur, tmp_path / "c.parquet")
    code, doc, _ = _drift(r, c, "--warn-threshold", "0.03")
    assert code == 0 and doc["n_warn"] >= 1
    for col in doc["columns"]:
        if col["state"] in ("ok", "warn"):
            assert (col["state"] == "warn") == (col["value"] > 0.03), col["name"]
            assert col["warn_threshold"] == 0.03
    xml = tmp_path / "d.xml"
    plain = invoke("drift", r, c, "--warn-threshold", "0.03", "--junit", xml)
    assert plain.exit_code == 0 and "warn: kl " in plain.stdout
    assert "<failure" not in xml.read_text() and "warn: kl" in xml.read_text()
    for args, message in (
        (("--warn-threshold", "learned"), "--warn-threshold learned needs a profile"),
        (("--warn-threshold", "-1"), "--warn-threshold must be >= 0"),
        (("--warn-threshold", "x"), "--warn-threshold takes a number or learned[:K]"),
    ):
        out = invoke("drift", r, c, *args)
        assert out.exit_code == 2 and message in out.stderr, (args, out.stderr)
