"""kldiv drift and kldiv profile, against the rules of docs/drift.md recomputed independently.

Everything runs in-process (tests/helpers.invoke), on small tables made here.
"""

from __future__ import annotations

import json
import math
import xml.etree.ElementTree as ET

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from .helpers import SAMPLES, invoke

DRIFT = SAMPLES / "drift"


def reference_divergences(p_counts, q_counts, eps=1e-4) -> dict:
    """docs/drift.md's smoothing and divergences, written out with plain NumPy."""
    p = np.asarray(p_counts, float) / np.sum(p_counts)
    q = np.asarray(q_counts, float) / np.sum(q_counts)
    k = p.size
    p, q = (p + eps / k) / (1 + eps), (q + eps / k) / (1 + eps)
    kl = float(np.sum(p * np.log(p / q)))
    rev = float(np.sum(q * np.log(q / p)))
    m = (p + q) / 2
    js = 0.5 * float(np.sum(p * np.log(p / m)) + np.sum(q * np.log(q / m)))
    return {"kl": kl, "kl_reverse": rev, "psi": kl + rev, "js": js}


def reference_bins(ref: np.ndarray, cur: np.ndarray, bins=10) -> tuple[np.ndarray, np.ndarray]:
    """Quantile edges with the minimum first; a bin below, a bin above the range."""
    edges = np.unique(np.concatenate([[ref.min()], np.quantile(ref, np.arange(1, bins) / bins)]))

    def counts(v):
        index = np.searchsorted(edges, v, side="right")
        index[v > ref.max()] = edges.size + 1
        return np.bincount(index, minlength=edges.size + 2)

    return counts(ref), counts(cur)


#: Chi-square quantiles at 99.99 % by degrees of freedom (printed tables).
CHI2_9999 = {
    1: 15.137,
    2: 18.421,
    3: 21.108,
    4: 23.513,
    5: 25.745,
    6: 27.856,
    7: 29.878,
    8: 31.828,
    9: 33.720,
    10: 35.564,
    11: 37.367,
    12: 39.134,
    13: 40.871,
}


def drift_json(*args) -> tuple[int, dict, str]:
    out = invoke("drift", *args, "--format", "json")
    return out.exit_code, json.loads(out.stdout) if out.stdout else {}, out.stderr


def by_name(doc: dict) -> dict:
    return {c["name"]: c for c in doc["columns"]}


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


def production(rows: int, current: bool, seed: int) -> pa.Table:
    """Issue 12's realistic table, small: ids, timestamps, NaN, categories, booleans."""
    rng = np.random.default_rng(seed)
    start = np.datetime64("2026-02-01" if current else "2026-01-01", "s")
    session = rng.gamma(2.0, 6.0, rows)
    if current:
        session[: rows // 10] = np.nan
    devices = ["ios", "android", "web"] + (["smart_tv"] if current else [])
    weights = [0.3, 0.3, 0.2, 0.2] if current else [0.4, 0.4, 0.2]
    return pa.table(
        {
            "user_id": [f"u{i + (10**6 if current else 0)}" for i in range(rows)],
            "account": np.arange(rows) + (10**6 if current else 0),
            "signup_ts": pa.array(start + rng.integers(0, 27 * 86400, rows)),
            "signup_day": [
                str(start + np.timedelta64(int(d), "D"))[:10] for d in rng.integers(0, 27, rows)
            ],
            "avg_session_min": session,
            "device": rng.choice(devices, rows, p=weights),
            "rating": rng.integers(1, 6, rows),
            "active": rng.random(rows) < 0.7,
        }
    )


@pytest.fixture()
def prod(tmp_path):
    pq.write_table(production(2000, False, 1), r := tmp_path / "reference.parquet")
    pq.write_table(production(2000, True, 2), c := tmp_path / "current.parquet")
    return r, c


# ----------------------------------------------------------------- the documented rules


def test_values_follow_the_documented_rules(tables) -> None:
    r, c, ref, cur = tables
    code, doc, _ = drift_json(r, c)
    assert code == 1
    cols = by_name(doc)
    assert cols["x"]["state"] == "drift" and cols["y"]["state"] == "ok"
    for name in ("x", "y"):
        p, q = reference_bins(ref[name], cur[name])
        expected = reference_divergences(p, q)
        for key in ("kl", "kl_reverse", "psi", "js"):
            assert cols[name][key] == pytest.approx(expected[key], rel=1e-9, abs=1e-12), (name, key)
        assert cols[name]["histogram"]["reference"] == p.tolist()
        assert cols[name]["histogram"]["current"] == q.tolist()
        assert cols[name]["value"] == cols[name]["kl"] and cols[name]["bins"] == p.size
        assert cols[name]["n_reference"] == 3000 and cols[name]["n_current"] == 1500
    # Categorical: reference categories plus a bucket for new values, named.
    assert cols["c"]["role"] == "categorical"
    assert cols["c"]["histogram"]["bins"] == ["a", "b", "c", "(new)"]
    n_d = int(np.sum(cur["c"] == "d"))
    assert cols["c"]["new_categories"] == [{"value": "d", "count": n_d}]
    assert cols["c"]["new_category_share"] == pytest.approx(n_d / 1500)
    counts = [int(np.sum(ref["c"] == v)) for v in "abc"] + [0]
    now = [int(np.sum(cur["c"] == v)) for v in "abcd"]
    assert cols["c"]["kl"] == pytest.approx(reference_divergences(counts, now)["kl"], rel=1e-9)


def test_profile_gives_exactly_the_raw_results(prod, tmp_path) -> None:
    r, c = prod
    prof = tmp_path / "ref.profile.json"
    out = invoke("profile", r, "-o", prof)
    assert out.exit_code == 0, out.stderr
    _, raw, _ = drift_json(r, c)
    _, stored, _ = drift_json(prof, c)
    for a, b in zip(raw["columns"], stored["columns"]):
        for key in a:
            assert a[key] == b[key], (a["name"], key)
    roles = {n: col["role"] for n, col in json.loads(prof.read_text())["columns"].items()}
    assert roles["user_id"] == "identifier" and roles["signup_ts"] == "datetime"


def test_sample_data(tmp_path) -> None:
    code, doc, _ = drift_json(DRIFT / "reference.csv", DRIFT / "current.csv")
    assert code == 1
    cols = by_name(doc)
    assert list(cols) == ["age", "income", "plan", "rating", "active", "score"]
    assert cols["rating"]["role"] == "categorical" and cols["age"]["role"] == "numeric"
    assert cols["score"]["reasons"] == ["missing"]
    assert cols["rating"]["histogram"]["bins"][:5] == ["1", "2", "3", "4", "5"]
    code, same, _ = drift_json(DRIFT / "reference.csv", DRIFT / "reference.parquet")
    assert code == 0 and same["drift"] is False
    assert all(c["kl"] == 0 for c in same["columns"])


def test_epsilon_zero_and_base_two(tables) -> None:
    r, c, *_ = tables
    _, doc, _ = drift_json(r, c, "--epsilon", "0", "--columns", "c")
    col = doc["columns"][0]
    # 'd' is new: it costs nothing in KL(ref || cur) and is infinite the other way.
    assert isinstance(col["kl"], float) and col["kl_reverse"] == "Infinity"
    _, nats, _ = drift_json(r, c, "--columns", "x")
    _, bits, _ = drift_json(r, c, "--columns", "x", "--base", "2")
    assert bits["columns"][0]["kl"] == pytest.approx(nats["columns"][0]["kl"] / math.log(2))


def test_metric_threshold_thresholds_file_and_fail_on(tables, tmp_path) -> None:
    r, c, *_ = tables
    code, doc, _ = drift_json(r, c, "--metric", "psi", "--threshold", "10")
    assert code == 0 and doc["columns"][0]["metric"] == "psi"
    (tf := tmp_path / "t.toml").write_text("default = 0.1\n[thresholds]\nx = 5.0\nzz = 1\n")
    code, doc, err = drift_json(r, c, "--thresholds", tf, "--columns", "x,y")
    assert code == 0 and doc["columns"][0]["threshold"] == 5.0
    assert err.count("zz") == 1 and "not checked: zz" in err
    code, doc, _ = drift_json(r, c, "--fail-on", "share:0.9", "--columns", "x,y")
    assert code == 0 and doc["n_drifted"] == 1
    assert drift_json(r, c, "--fail-on", "count:1", "--columns", "x,y")[0] == 1
    out = invoke("drift", r, c, "--fail-on", "most")
    assert out.exit_code == 2 and "--fail-on takes" in out.stderr


# ----------------------------------------------------------------- roles


def test_identifiers_and_datetimes_are_skipped_with_reasons(prod) -> None:
    r, c = prod
    code, doc, _ = drift_json(r, c)
    cols = by_name(doc)
    for name, role in (
        ("user_id", "identifier"),
        ("account", "identifier"),
        ("signup_ts", "datetime"),
        ("signup_day", "datetime"),
    ):
        assert cols[name]["role"] == role and cols[name]["state"] == "skipped", name
        assert cols[name]["skip_reason"] and cols[name]["value"] is None
    assert cols["user_id"]["skip_reason"] == "row key: named like a key and unique"
    assert cols["account"]["skip_reason"] == "row key: unique and increasing"
    assert cols["user_id"]["n_reference"] == cols["user_id"]["n_current"] == 2000
    assert cols["avg_session_min"]["reasons"] == ["missing"]
    # Plain output says why on an indented line after the column's, -q or not.
    for quiet in ((), ("-q",)):
        plain = invoke("drift", r, c, *quiet).stdout.splitlines()
        at = plain.index("skipped - - user_id")
        assert plain[at + 1] == "  row key: named like a key and unique"
        assert plain[plain.index("skipped - - signup_ts") + 1].startswith("  date/time values")
    md = invoke("drift", r, c, "-f", "markdown").stdout
    assert "| user_id | identifier | skipped |" in md and "row key:" in md


def test_roles_of_keys_text_and_measurements(tmp_path) -> None:
    rng = np.random.default_rng(3)
    n = 1000
    table = {
        # 600 distinct of 1000: more distinct values than repeats, so not categories.
        "session": [f"s{i % 600}" for i in range(n)],
        # Integers 90 % distinct: a measurement, binned as numbers.
        "income": np.concatenate([np.arange(900) * 37, np.arange(100) * 37]),
        # Unique but neither named like a key nor monotone: still a measurement.
        "weight_lbs": rng.permutation(n) * 3 + 1500,
        "row": rng.permutation(n),
        "city": rng.choice([f"c{i}" for i in range(300)], n),
    }
    pq.write_table(pa.table(table), r := tmp_path / "r.parquet")
    cols = by_name(drift_json(r, r)[1])
    assert cols["session"]["role"] == "text" and cols["session"]["state"] == "ok"
    assert cols["income"]["role"] == "numeric" and cols["city"]["role"] == "categorical"
    assert cols["weight_lbs"]["role"] == "numeric" and cols["row"]["role"] == "identifier"


def test_datetime_numeric_sees_a_month_apart(prod) -> None:
    r, c = prod
    _, doc, _ = drift_json(r, c, "--datetime", "numeric", "--columns", "signup_ts,signup_day")
    for col in doc["columns"]:
        assert col["role"] == "numeric" and col["state"] == "drift", col["name"]
        assert col["outside_range_share"] == 1.0 and col["kl"] > 5
    assert doc["columns"][0]["histogram"]["bins"][0].startswith("< 2026-01-01")


def test_columns_on_one_side_are_named_once(tables, tmp_path) -> None:
    r, c, ref, cur = tables
    pq.write_table(pa.table({**cur, "extra": cur["x"]}), more := tmp_path / "more.parquet")
    pq.write_table(pa.table({"x": cur["x"]}), fewer := tmp_path / "fewer.parquet")
    code, doc, err = drift_json(r, more)
    assert doc["only_in_current"] == ["extra"] and by_name(doc)["extra"]["reasons"] == [
        "column_added"
    ]
    code, doc, err = drift_json(r, fewer)
    assert doc["only_in_reference"] == ["y", "c"] and doc["n_schema_changes"] == 2
    assert drift_json(r, fewer, "--exclude", "y,c")[1]["only_in_reference"] == []


def test_odd_arrow_types_never_crash(tmp_path) -> None:
    from decimal import Decimal

    n = 60
    table = pa.table(
        {
            "dict": pa.array(["a", "b", "c"] * 20).dictionary_encode(),
            "dur": pa.array(range(n), pa.duration("s")),
            "t": pa.array(range(n), pa.time32("s")),
            "d": pa.array(np.arange(n).astype("datetime64[D]")),
            "dec": pa.array([Decimal("1.5"), Decimal("2.5")] * 30, pa.decimal128(5, 2)),
            "huge": pa.array(np.arange(2**63, 2**63 + n, dtype=np.uint64)),
            "big": pa.array(np.arange(n) + 2**60),
            "lst": pa.array([[1, 2]] * n),
            "null": pa.nulls(n),
        }
    )
    pq.write_table(table, r := tmp_path / "r.parquet")
    for extra in ([], ["--datetime", "numeric"], ["--categorical", "dur,t,d,huge"]):
        code, doc, err = drift_json(r, r, *extra)
        assert code == 0, (extra, err)
        cols = by_name(doc)
        assert cols["lst"]["state"] == "skipped" and "unsupported" in cols["lst"]["skip_reason"]
        assert cols["dict"]["role"] == "categorical" and cols["dict"]["kl"] == 0
        assert all(col.get("kl", 0) == 0 for col in doc["columns"])
    assert by_name(drift_json(r, r)[1])["d"]["role"] == "datetime"
    assert by_name(drift_json(r, r, "--numeric", "huge")[1])["huge"]["role"] == "numeric"


def test_overrides_exclude_skip_categorical_numeric(prod) -> None:
    r, c = prod
    _, doc, _ = drift_json(
        r, c, "--exclude", "user_*", "--skip", "device", "--categorical", "account",
        "--numeric", "rating",
    )  # fmt: skip
    cols = by_name(doc)
    assert "user_id" not in cols
    assert (
        cols["device"]["state"] == "skipped"
        and cols["device"]["skip_reason"] == "skipped by --skip"
    )
    # Ids as categories: each seen once, so all are rare and pooled with the new values;
    # all-new ids are what a random split gives too, so only the new-category gate sees it.
    account = cols["account"]
    assert account["role"] == "categorical" and account["state"] == "ok"
    assert account["histogram"]["bins"] == ["(0 + 1 + 2 + 3 + 4 + 47 more)"]
    assert account["new_category_share"] == 1.0
    _, doc, _ = drift_json(r, c, "--categorical", "account", "--max-new-category-share", "0.5")
    assert by_name(doc)["account"]["reasons"] == ["new_categories"]
    assert cols["rating"]["role"] == "numeric"
    out = invoke("drift", r, c, "--exclude", "nope")
    assert out.exit_code == 2 and "--exclude: no column matches 'nope'" in out.stderr
    out = invoke("drift", r, c, "--numeric", "device")
    assert out.exit_code == 2 and "--numeric takes numbers" in out.stderr


def test_category_cap_pools_the_rest_into_other(tmp_path) -> None:
    rng = np.random.default_rng(4)
    names = [f"k{i:03d}" for i in range(120)]
    weights = np.linspace(2, 1, 120) / np.linspace(2, 1, 120).sum()
    pq.write_table(pa.table({"k": rng.choice(names, 5000, p=weights)}), r := tmp_path / "r.parquet")
    pq.write_table(pa.table({"k": rng.choice(names, 5000, p=weights)}), c := tmp_path / "c.parquet")
    prof = tmp_path / "p.json"
    assert invoke("profile", r, "-o", prof, "--max-categories", "50").exit_code == 0
    col = json.loads(prof.read_text())["columns"]["k"]
    assert len(col["categories"]) == 50 and len(col["pooled"]) == 70
    assert set(col["categories"]) | set(col["pooled"]) == set(names)
    assert len(col["counts"]) == 51 and sum(col["counts"]) == 5000
    code, doc, _ = drift_json(prof, c)
    k = doc["columns"][0]
    assert k["histogram"]["bins"][-2:] == ["(other: 70 categories)", "(new)"]
    assert code == 0 and k["new_categories"] == []


# ----------------------------------------------------------------- smoothing


def test_total_change_always_drifts_and_identical_is_zero(tmp_path) -> None:
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from kldiv_cli.jobs.drift_measures import bin_measures

    @settings(max_examples=40, deadline=None)
    @given(
        st.lists(st.integers(1, 10**6), min_size=1, max_size=300),
        st.lists(st.integers(1, 10**6), min_size=1, max_size=50),
        st.integers(0, 1000),
    )
    def moved(ref_counts: list[int], cur_counts: list[int], empty: int) -> None:
        # The reference fills its bins, the current one fills bins the reference never had.
        p = np.array(ref_counts + [0] * (len(cur_counts) + empty))
        q = np.array([0] * len(ref_counts) + cur_counts + [0] * empty)
        assert bin_measures(p, q, 1e-4, math.e).values["kl"] > 0.1
        same = bin_measures(p, p, 1e-4, math.e).values
        assert same["kl"] == same["kl_reverse"] == same["psi"] == same["js"] == 0.0

    moved()


def test_all_values_moved_drift_end_to_end(tmp_path) -> None:
    rng = np.random.default_rng(5)
    ids = [f"c{i}" for i in range(3000)]
    ref = {"cat": rng.choice(ids, 40_000), "x": rng.normal(size=40_000)}
    cur = {
        "cat": rng.choice([f"n{i}" for i in range(3000)], 40_000),
        "x": rng.normal(50, 1, 40_000),
    }
    pq.write_table(pa.table(ref), r := tmp_path / "r.parquet")
    pq.write_table(pa.table(cur), c := tmp_path / "c.parquet")
    code, doc, _ = drift_json(r, c)
    cols = by_name(doc)
    assert code == 1 and cols["cat"]["state"] == "drift" and cols["x"]["state"] == "drift"
    assert cols["cat"]["new_category_share"] == 1.0 and cols["x"]["outside_range_share"] == 1.0
    assert cols["cat"]["n_new_categories"] == 3000 and len(cols["cat"]["new_categories"]) == 10


def test_noise_floor_warning_once_and_too_few_values(tmp_path) -> None:
    rng = np.random.default_rng(2)
    pq.write_table(pa.table({"a": rng.normal(size=5)}), r := tmp_path / "r.parquet")
    pq.write_table(pa.table({"a": rng.normal(size=50)}), c := tmp_path / "c.parquet")
    code, doc, _ = drift_json(r, c)
    assert "too few values" in doc["columns"][0]["error"] and code == 2
    pq.write_table(pa.table({"a": rng.normal(size=60), "b": rng.normal(size=60)}), r)
    pq.write_table(pa.table({"a": rng.normal(size=50), "b": rng.normal(size=50)}), c)
    code, doc, err = drift_json(r, c)
    col = doc["columns"][0]
    # 10 quantile bins of ~6 values are joined in neighbours of at least 12 (10 x 60/50).
    inner = col["histogram"]["reference"][1:-1]
    assert all(c >= 12 for c in inner) and col["bins"] == len(inner) + 2 < 12
    assert sum(inner) == 60 and col["histogram"]["bins"][1].startswith("[")
    filled = len(inner)
    assert col["noise_floor"] == pytest.approx((filled - 1) / 2 * (1 / 60 + 1 / 50))
    assert col["weak"] is True
    assert err.count("noise bound") == 1 and "2 column(s) (a, b)" in err
    # The bound: the 99.99 % chi-square quantile (filled - 1 + 2 outer bins degrees of
    # freedom, from a table) in KL units; the rows needed put it at the threshold 0.1.
    chi2 = CHI2_9999[filled + 1]
    assert col["noise_bound"] == pytest.approx(chi2 / 2 * (1 / 60 + 1 / 50), rel=0.03)
    assert col["rows_needed"] == pytest.approx(chi2 / 0.1, rel=0.03)


# ----------------------------------------------------------------- missing and new values


def test_missing_and_new_categories_in_every_output(prod, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    r, c = prod
    junit, page, csv = tmp_path / "d.xml", tmp_path / "d.html", tmp_path / "d.csv"
    out = invoke("drift", r, c, "--junit", junit, "--html", page, "-o", csv)
    assert out.exit_code == 1, out.stderr
    code, doc, _ = drift_json(r, c)
    cols = by_name(doc)
    s = cols["avg_session_min"]
    assert s["missing_share_reference"] == 0 and s["missing_share_current"] == 0.1
    assert s["missing_share_change"] == pytest.approx(0.1) and s["reasons"] == ["missing"]
    assert cols["device"]["new_categories"][0]["value"] == "smart_tv"
    n_tv = cols["device"]["new_categories"][0]["count"]
    text = csv.read_text()
    assert "avg_session_min,numeric,drift,missing" in text and f"smart_tv ({n_tv})" in text
    md = invoke("drift", r, c, "-f", "markdown").stdout
    # Markdown escapes HTML: the '>' from text is an entity, rendered as '>'.
    assert "missing +10.0 pts &gt; 5 pts" in md and f"smart_tv ({n_tv})" in md
    table = invoke("drift", r, c, "-f", "table").stdout
    assert "0.0% → 10.0%" in table and "smart_tv" in table
    suite = ET.parse(junit).getroot().find("testsuite")
    cases = {tc.get("name"): tc for tc in suite.findall("testcase")}
    assert "missing +10.0 pts" in cases["avg_session_min"].find("failure").get("message")
    assert f"smart_tv ({n_tv})" in cases["device"].find("system-out").text
    assert cases["user_id"].find("skipped") is not None
    html = page.read_text()
    assert "10.0%" in html and "smart_tv" in html and 'class="flag"' in html
    # The gate on new categories, off by default.
    share = cols["device"]["new_category_share"]
    _, gated, _ = drift_json(r, c, "--max-new-category-share", f"{share / 2}")
    assert by_name(gated)["device"]["reasons"][-1] == "new_categories"
    _, loose, _ = drift_json(r, c, "--max-missing-change", "0.2")
    assert by_name(loose)["avg_session_min"]["state"] == "ok"


def test_all_missing_current_drifts_on_missing(tmp_path) -> None:
    rng = np.random.default_rng(1)
    ref = pa.table({"a": rng.normal(size=200), "b": pa.array([None] * 200, pa.float64())})
    cur = pa.table(
        {"a": pa.array([None] * 100, pa.float64()), "b": pa.array([None] * 100, pa.float64())}
    )
    pq.write_table(ref, r := tmp_path / "r.parquet")
    pq.write_table(cur, c := tmp_path / "c.parquet")
    code, doc, _ = drift_json(r, c)
    cols = by_name(doc)
    assert cols["a"]["state"] == "drift" and cols["a"]["reasons"] == ["missing"]
    assert cols["b"]["state"] == "skipped" and "all missing" in cols["b"]["skip_reason"]
    assert code == 1


def test_integer_categories_print_as_integers(tmp_path) -> None:
    ref = pa.table({"r": pa.array([1.0, 2.0, None, 3.0] * 50)})
    pq.write_table(ref, r := tmp_path / "r.parquet")
    pq.write_table(
        pa.table({"r": pa.array([1.0, 2.0, 3.0, 4.0] * 50)}), c := tmp_path / "c.parquet"
    )
    _, doc, _ = drift_json(r, c)
    col = doc["columns"][0]
    assert col["histogram"]["bins"] == ["1", "2", "3", "(new)"]
    assert col["new_categories"] == [{"value": 4, "count": 50}]


# ----------------------------------------------------------------- datasets


def test_folders_globs_and_lists_of_parquet_files(prod, tmp_path) -> None:
    r, c = prod
    whole = pq.read_table(c)
    parts = tmp_path / "parts"
    parts.mkdir()
    for i in range(4):
        pq.write_table(whole.slice(i * 500, 500), parts / f"day{i}.parquet")
    _, expected, _ = drift_json(r, c)
    files = sorted(str(p) for p in parts.iterdir())
    for current in ([parts], [str(parts / "*.parquet")], files):
        code, doc, err = drift_json(r, *current)
        assert code == 1, err
        assert [x["kl"] if "kl" in x else None for x in doc["columns"]] == [
            x["kl"] if "kl" in x else None for x in expected["columns"]
        ]
    ref_parts = tmp_path / "ref"
    ref_parts.mkdir()
    pq.write_table(pq.read_table(r), ref_parts / "all.parquet")
    assert drift_json(ref_parts, parts)[0] == 1
    out = invoke("drift", r, str(tmp_path / "none" / "*.parquet"))
    assert out.exit_code == 2 and "matches no files" in out.stderr
    (tmp_path / "x.txt").write_text("a\n")
    out = invoke("drift", r, tmp_path / "x.txt")
    assert out.exit_code == 2 and "unknown file type" in out.stderr
    assert ".safetensors" in out.stderr and "--input-format" not in out.stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    out = invoke("drift", r, empty)
    assert out.exit_code == 2 and "no .parquet files" in out.stderr


def test_column_by_column_reading_gives_the_same_report(prod, tmp_path, monkeypatch) -> None:
    r, c = prod
    parts = tmp_path / "parts"
    parts.mkdir()
    whole = pq.read_table(c)
    for i in range(2):
        pq.write_table(whole.slice(i * 1000, 1000), parts / f"{i}.parquet")
    _, at_once, _ = drift_json(r, parts)
    import kldiv_cli.io.typed as tables

    monkeypatch.setattr(tables, "WHOLE_BELOW", 0)
    _, lazily, _ = drift_json(r, parts)
    at_once.pop("seconds")
    lazily.pop("seconds")
    assert at_once == lazily


# ----------------------------------------------------------------- outputs


def test_html_is_bounded_drifted_first_and_says_how_it_was_made(tmp_path) -> None:
    rng = np.random.default_rng(6)
    rows = 20_000
    cols = {f"cat{j}": rng.choice([f"v{i}" for i in range(3000)], rows) for j in range(6)}
    cols.update({f"num{j}": rng.normal(size=rows) for j in range(7)})
    pq.write_table(pa.table(cols), r := tmp_path / "r.parquet")
    cols["num3"] = cols["num3"] + 3
    pq.write_table(pa.table(cols), c := tmp_path / "c.parquet")
    page = tmp_path / "d.html"
    out = invoke("drift", r, c, "--html", page, "--bins", "1000", "--max-categories", "1000")
    assert out.exit_code == 1, out.stderr
    text = page.read_text()
    assert len(text.encode()) < 1_000_000
    assert text.index("num3") < text.index("num0") and text.index("num3") < text.index("cat0")
    assert "kldiv 0" in text or "kldiv " in text
    assert "<code>kldiv " in text and "<script" not in text
    assert text.count("<svg") == 13


def test_junit_well_formed_with_hostile_names_and_each_metric_once(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    rng = np.random.default_rng(7)
    name = 'evil\x1b[2J<&>"]]>[/]'
    pq.write_table(pa.table({name: rng.normal(size=300)}), r := tmp_path / "r.parquet")
    pq.write_table(pa.table({name: rng.normal(2, 1, 300)}), c := tmp_path / "c.parquet")
    junit, page = tmp_path / "d.xml", tmp_path / "d.html"
    out = invoke("drift", r, c, "--junit", junit, "--html", page)
    assert out.exit_code == 1 and "\x1b" not in out.stdout + out.stderr
    case = ET.parse(junit).getroot().find("testsuite/testcase")
    assert case.get("name") == 'evil\\x1b[2J<&>"]]>[/]'
    system_out = case.find("system-out").text
    assert system_out.count("kl=") == 1 and system_out.count("psi=") == 1
    html = page.read_text()
    assert "\x1b" not in html and "<&>" not in html and "evil\\x1b[2J&lt;&amp;&gt;" in html
    table = invoke("drift", r, c, "-f", "table").stdout
    assert "\x1b" not in table and "[/]" in table


def test_colour_for_state_and_no_color(tables) -> None:
    r, c, *_ = tables
    coloured = invoke("drift", r, c, stdout_isatty=True, environ={"FORCE_COLOR": "1"}).stdout
    assert "\x1b[1;31mdrift" in coloured and "\x1b[32mok" in coloured
    plain = invoke("drift", r, c, stdout_isatty=True, environ={"NO_COLOR": "1"}).stdout
    assert "\x1b[" not in plain and "drift" in plain
    assert "\x1b[" not in invoke("drift", r, c, "--no-color", "-f", "table").stdout


def test_help_describes_plain_output(tables) -> None:
    r, c, *_ = tables
    lines = invoke("drift", r, c, "-f", "plain").stdout.splitlines()
    assert lines[0].split(" ") == ["drift", lines[0].split(" ")[1], "distribution", "x"]
    assert "state value reasons name" in " ".join(invoke("drift", "--help").stdout.split())


def test_bad_inputs_and_outputs(tables, tmp_path) -> None:
    r, c, *_ = tables
    pq.write_table(pa.table({"zzz": [1.0, 2.0]}), other := tmp_path / "o.parquet")
    checks = [
        ((r, other), "no column in common"),
        ((r, c, "--metric", "energy"), "unknown metric"),
        ((r, tmp_path / "missing.csv"), "no such file"),
        ((r, c, "-o", tmp_path / "out.npy"), "--output writes"),
        ((r, c, "--junit", r), "--junit writes"),
        ((r, c, "--html", tmp_path / "r.html", "--junit", tmp_path / "r.html"), ".xml"),
        ((r, c, "-o", r.with_suffix(".json")), None),
        ((r, c, "--bins", "1000000000"), "--bins must be between"),
        ((r, c, "--max-missing-change", "nan"), "--max-missing-change"),
        ((r,), "REFERENCE and a CURRENT"),
        (("-", "-"), "only one of"),
    ]
    for args, message in checks:
        out = invoke("drift", *args)
        if message is None:
            assert out.exit_code in (0, 1)
            continue
        assert out.exit_code == 2, (args, out.stderr)
        assert message in out.stderr and out.stderr.count("\n") == 1, (args, out.stderr)
    link = tmp_path / "link.html"
    link.symlink_to(c)
    out = invoke("drift", r, c, "--html", link)
    assert out.exit_code == 2 and "is also an input" in out.stderr
    assert pq.read_table(c).num_rows == 1500
    (bad := tmp_path / "bad.json").write_text("{}")
    out = invoke("drift", bad, c)
    assert out.exit_code == 2 and "is not a kldiv profile" in out.stderr


def test_profile_outputs(tables, tmp_path) -> None:
    r, *_ = tables
    out = invoke("profile", r)
    assert out.exit_code == 0 and json.loads(out.stdout)["kldiv_profile"] == 4
    out = invoke("profile", r, "-o", tmp_path / "p.npy")
    assert out.exit_code == 2 and "--output writes .json" in out.stderr
    (link := tmp_path / "link.json").symlink_to(r)
    out = invoke("profile", r, "-o", link)
    assert out.exit_code == 2 and "is also an input" in out.stderr


def test_wide_table_of_few_rows(tmp_path) -> None:
    rng = np.random.default_rng(9)
    wide = pa.table({f"c{j}": rng.normal(size=20) for j in range(500)})
    pq.write_table(wide, r := tmp_path / "r.parquet")
    pq.write_table(wide, c := tmp_path / "c.parquet")
    code, doc, _ = drift_json(r, c)
    assert code == 0 and doc["n_columns"] == 500
    assert all(col["kl"] == 0 for col in doc["columns"])


def test_request_validation_names_the_option() -> None:
    from kldiv_cli.errors import UsageError
    from kldiv_cli.jobs.drift import ColumnRules, DriftRequest

    with pytest.raises(UsageError, match="--datetime"):
        DriftRequest(("a.parquet",), ("b.parquet",), rules=ColumnRules(datetime="yes")).validate()
    with pytest.raises(UsageError, match="both --categorical and --numeric"):
        ColumnRules(categorical=("a",), numeric=("a",)).validate()


def test_parquet_datasets_load_no_pandas_and_duplicate_names_are_one_line(tmp_path) -> None:
    import subprocess
    import sys

    folder = tmp_path / "parts"
    folder.mkdir()
    for i in range(2):
        pq.write_table(
            pa.table({"a": np.arange(50.0) + i, "b": ["x", "y"] * 25}), folder / f"{i}.parquet"
        )
    code = (
        "import sys; from kldiv_cli.cli.app import run\n"
        f"code = run(['drift', {str(folder)!r}, {str(folder)!r}, '-q', '-f', 'json'])\n"
        "assert 'pandas' not in sys.modules, 'pandas was imported'\n"
        "sys.exit(int(code))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    dup = tmp_path / "dup.parquet"
    pq.write_table(
        pa.Table.from_arrays([pa.array([1.0] * 20), pa.array([2.0] * 20)], ["a", "a"]), dup
    )
    out = invoke("drift", dup, dup)
    assert out.exit_code == 2 and out.stderr.count("\n") == 1
    assert "two columns named 'a'" in out.stderr and "unexpected" not in out.stderr


@pytest.mark.parametrize("quiet", [False, True])
def test_a_column_that_cannot_be_compared_is_an_error_line_even_when_quiet(tmp_path, quiet) -> None:
    ref, cur = tmp_path / "r.csv", tmp_path / "c.csv"
    ref.write_text("weight\n" + "".join(f"{2000 + (i * 37) % 900}\n" for i in range(30)))
    cur.write_text("weight\n" + "".join(f"{2100 + i * 53}\n" for i in range(6)))
    out = invoke("drift", ref, cur, "-f", "json", *(["-q"] if quiet else []))
    assert out.exit_code == 2
    errors = [line for line in out.stderr.splitlines() if line.startswith("kldiv: error:")]
    assert errors == [
        "kldiv: error: 1 column could not be compared: weight "
        "(weight: too few values to compare (30 reference, 6 current; at least 10 each))"
    ]
    assert json.loads(out.stdout)["n_errors"] == 1
