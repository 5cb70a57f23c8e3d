"""kldiv drift and kldiv profile, against the documented rules computed independently."""

from __future__ import annotations

import json
import math
import xml.etree.ElementTree as ET

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from .conftest import SAMPLES, kldiv_subprocess

DRIFT = SAMPLES / "drift"


def reference_kl(ref: np.ndarray, cur: np.ndarray, bins=10, eps=1e-4) -> dict:
    """The README's rules, written out with plain NumPy."""
    edges = np.unique(np.quantile(ref, np.arange(1, bins) / bins))
    p = np.bincount(np.searchsorted(edges, ref, side="right"), minlength=len(edges) + 1) / len(ref)
    q = np.bincount(np.searchsorted(edges, cur, side="right"), minlength=len(edges) + 1) / len(cur)
    k = len(p)
    p, q = (p + eps) / (1 + k * eps), (q + eps) / (1 + k * eps)
    kl = float(np.sum(p * np.log(p / q)))
    rev = float(np.sum(q * np.log(q / p)))
    m = (p + q) / 2
    js = 0.5 * float(np.sum(p * np.log(p / m)) + np.sum(q * np.log(q / m)))
    return {"kl": kl, "kl_reverse": rev, "psi": kl + rev, "js": js, "bins": k}


@pytest.fixture()
def tables(tmp_path):
    rng = np.random.default_rng(8)
    ref = {
        "x": rng.normal(0, 1, 3000),
        "y": rng.exponential(1, 3000),
        "c": rng.choice(list("abc"), 3000),
    }
    cur = {
        "x": rng.normal(0.4, 1, 1500),
        "y": rng.exponential(1, 1500),
        "c": rng.choice(list("abcd"), 1500),
    }
    pq.write_table(pa.table(ref), r := tmp_path / "ref.parquet")
    pq.write_table(pa.table(cur), c := tmp_path / "cur.parquet")
    return r, c, ref, cur


def run_json(*args):
    proc = kldiv_subprocess("drift", *args, "--format", "json")
    return proc, json.loads(proc.stdout) if proc.stdout else None


def test_values_follow_the_documented_rules(tables) -> None:
    r, c, ref, cur = tables
    proc, doc = run_json(r, c)
    assert proc.returncode == 1, proc.stderr
    cols = {col["name"]: col for col in doc["columns"]}
    assert doc["drift"] is True and cols["x"]["drift"] is True and cols["y"]["drift"] is False
    for name in ("x", "y"):
        expected = reference_kl(ref[name], cur[name])
        for key in ("kl", "kl_reverse", "psi", "js"):
            assert cols[name][key] == pytest.approx(expected[key], rel=1e-9, abs=1e-12), (name, key)
        assert cols[name]["value"] == cols[name]["kl"]
        assert cols[name]["bins"] == expected["bins"]
        assert cols[name]["n_reference"] == 3000 and cols[name]["n_current"] == 1500
    # Categorical: reference categories plus an unseen bucket.
    assert cols["c"]["kind"] == "categorical"
    assert cols["c"]["histogram"]["bins"] == ["a", "b", "c", "(unseen)"]
    assert (
        cols["c"]["histogram"]["reference"][-1] == 0 and cols["c"]["histogram"]["current"][-1] > 0
    )
    for key in (
        "name",
        "metric",
        "value",
        "threshold",
        "drift",
        "kl",
        "kl_reverse",
        "psi",
        "n_reference",
        "n_current",
    ):
        assert key in cols["x"]


def test_profile_gives_exactly_the_raw_results(tables, tmp_path) -> None:
    r, c, *_ = tables
    prof = tmp_path / "ref.profile.json"
    proc = kldiv_subprocess("profile", r, "-o", prof)
    assert proc.returncode == 0, proc.stderr
    _, raw = run_json(r, c)
    _, from_profile = run_json(prof, c)
    for a, b in zip(raw["columns"], from_profile["columns"]):
        for key in ("kl", "kl_reverse", "psi", "js", "drift", "histogram", "n_reference"):
            assert a[key] == b[key]
    assert raw["drift"] == from_profile["drift"]


def test_csv_and_sample_data(tmp_path) -> None:
    proc, doc = run_json(DRIFT / "reference.csv", DRIFT / "current.csv")
    assert proc.returncode == 1
    names = [c["name"] for c in doc["columns"]]
    assert names == ["age", "income", "plan", "rating", "active", "score"]
    kinds = {c["name"]: c["kind"] for c in doc["columns"]}
    assert (
        kinds["rating"] == "categorical"
        and kinds["active"] == "categorical"
        and kinds["age"] == "numeric"
    )
    score = next(c for c in doc["columns"] if c["name"] == "score")
    assert score["nan_share_current"] > score["nan_share_reference"] > 0
    proc, same = run_json(DRIFT / "reference.csv", DRIFT / "reference.parquet")
    assert proc.returncode == 0 and same["drift"] is False
    assert all(c["kl"] == 0 for c in same["columns"])


def test_epsilon_zero_and_base_two(tables) -> None:
    r, c, ref, cur = tables
    _, doc = run_json(r, c, "--epsilon", "0", "--columns", "c")
    col = doc["columns"][0]
    # 'd' is new: it costs nothing in KL(ref || cur) and is infinite the other way.
    assert (
        isinstance(col["kl"], float)
        and col["kl_reverse"] == "Infinity"
        and col["psi"] == "Infinity"
    )
    _, nats = run_json(r, c, "--columns", "x")
    _, bits = run_json(r, c, "--columns", "x", "--base", "2")
    assert bits["columns"][0]["kl"] == pytest.approx(
        nats["columns"][0]["kl"] / math.log(2), rel=1e-12
    )


def test_metric_threshold_and_fail_on(tables, tmp_path) -> None:
    r, c, *_ = tables
    proc, doc = run_json(r, c, "--metric", "psi", "--threshold", "10")
    assert proc.returncode == 0 and doc["drift"] is False and doc["columns"][0]["metric"] == "psi"
    (tf := tmp_path / "t.toml").write_text("default = 0.1\n[thresholds]\nx = 5.0\n")
    proc, doc = run_json(r, c, "--thresholds", tf, "--columns", "x,y")
    assert proc.returncode == 0 and doc["columns"][0]["threshold"] == 5.0
    proc, doc = run_json(r, c, "--fail-on", "share:0.9", "--columns", "x,y")
    assert proc.returncode == 0 and doc["n_drifted"] == 1
    proc, doc = run_json(r, c, "--fail-on", "count:1", "--columns", "x,y")
    assert proc.returncode == 1
    proc = kldiv_subprocess("drift", r, c, "--fail-on", "most")
    assert proc.returncode == 2 and b"--fail-on takes" in proc.stderr


def test_empty_column_is_an_error_for_that_column_only(tmp_path) -> None:
    rng = np.random.default_rng(1)
    ref = pa.table({"a": rng.normal(size=200), "b": pa.array([None] * 200, pa.float64())})
    cur = pa.table({"a": rng.normal(size=100), "b": pa.array([None] * 100, pa.float64())})
    pq.write_table(ref, r := tmp_path / "r.parquet")
    pq.write_table(cur, c := tmp_path / "c.parquet")
    proc, doc = run_json(r, c)
    cols = {col["name"]: col for col in doc["columns"]}
    assert "error" in cols["b"] and cols["a"]["value"] is not None
    assert proc.returncode == 2
    assert b"column 'b'" in proc.stderr


def test_small_samples_error_and_noise_floor_warning(tmp_path) -> None:
    rng = np.random.default_rng(2)
    pq.write_table(pa.table({"a": rng.normal(size=5)}), r := tmp_path / "r.parquet")
    pq.write_table(pa.table({"a": rng.normal(size=50)}), c := tmp_path / "c.parquet")
    proc, doc = run_json(r, c)
    assert "too few values" in doc["columns"][0]["error"] and proc.returncode == 2
    pq.write_table(pa.table({"a": rng.normal(size=60)}), r)
    proc, doc = run_json(r, c)
    col = doc["columns"][0]
    assert col["noise_floor"] == pytest.approx(9 / 2 * (1 / 60 + 1 / 50))
    assert "noise floor" in col["warning"] and b"noise floor" in proc.stderr


def test_junit_html_and_markdown(tables, tmp_path) -> None:
    r, c, *_ = tables
    junit, page = tmp_path / "drift.xml", tmp_path / "drift.html"
    proc = kldiv_subprocess("drift", r, c, "--junit", junit, "--html", page, "--format", "markdown")
    assert proc.returncode == 1
    assert b"| column |" in proc.stdout
    suite = ET.parse(junit).getroot().find("testsuite")
    cases = {tc.get("name"): tc for tc in suite.findall("testcase")}
    assert set(cases) == {"x", "y", "c"}
    assert cases["x"].find("failure") is not None and cases["y"].find("failure") is None
    text = page.read_text()
    assert (
        text.count("<svg") == 3
        and "<script" not in text
        and "http" not in text.replace("http://www.w3.org/2000/svg", "")
    )


def test_bad_drift_inputs(tables, tmp_path) -> None:
    r, c, *_ = tables
    pq.write_table(pa.table({"zzz": [1.0, 2.0]}), other := tmp_path / "o.parquet")
    proc = kldiv_subprocess("drift", r, other)
    assert proc.returncode == 2 and b"no column in common" in proc.stderr
    (bad := tmp_path / "bad.json").write_text("{}")
    proc = kldiv_subprocess("drift", bad, c)
    assert proc.returncode == 2 and b"is not a kldiv profile" in proc.stderr
    proc = kldiv_subprocess("drift", r, c, "--metric", "hellinger")
    assert proc.returncode == 2 and b"unknown metric" in proc.stderr
    proc = kldiv_subprocess("drift", r, tmp_path / "missing.csv")
    assert proc.returncode == 2 and b"no such file" in proc.stderr
