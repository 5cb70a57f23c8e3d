"""drift that neither misses nor invents: random splits pass, real shifts fail, free text,
rare categories, weak columns and schema changes, on the realistic tables of
``tests/drift_data.py`` (``benchmarks/bench_drift_splits.py`` runs the 200-split version).
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from kldiv_cli.jobs.drift import DriftRequest, run_drift

from .drift_data import cars, orders, split
from .helpers import invoke


def write(table: pa.Table, path) -> str:
    pq.write_table(table, path)
    return str(path)


def drift_json(*args) -> tuple[int, dict, str]:
    out = invoke("drift", *args, "--format", "json")
    return out.exit_code, json.loads(out.stdout) if out.stdout else {}, out.stderr


def by_name(doc: dict) -> dict:
    return {c["name"]: c for c in doc["columns"]}


def test_random_splits_pass_the_default_gate(tmp_path) -> None:
    """A property of the default gate: halves of one table pass in at least 95 % of
    random splits (40 of cars, 20 of orders here; 200 each in the benchmark)."""
    failed = []
    for table, seeds in ((cars(0), range(40)), (orders(0, rows=1500), range(20))):
        for seed in seeds:
            ref, cur = split(table, seed)
            report = run_drift(
                DriftRequest(
                    reference=(write(ref, tmp_path / "r.parquet"),),
                    current=(write(cur, tmp_path / "c.parquet"),),
                )
            )
            if report.drift:
                failed.append((seed, [c.name for c in report.columns if c.state.value == "drift"]))
    assert len(failed) <= 0.05 * 60, failed


def test_cars_split_by_year_is_a_real_shift(tmp_path) -> None:
    table = cars(0)
    old = write(table.filter(pc.less(table["Year"], 1976)), tmp_path / "old.parquet")
    new = write(table.filter(pc.greater_equal(table["Year"], 1976)), tmp_path / "new.parquet")
    code, doc, _ = drift_json(old, new)
    cols = by_name(doc)
    assert code == 1
    # Integers nearly all distinct: a measurement, binned as numbers, and it moved.
    assert cols["Weight_in_lbs"]["role"] == "numeric"
    for name in ("Weight_in_lbs", "Miles_per_Gallon", "Year"):
        assert cols[name]["state"] == "drift", name
        assert cols[name]["value"] > cols[name]["noise_bound"] > cols[name]["threshold"] / 2
    assert cols["Name"]["role"] == "text" and cols["Name"]["role_reason"].startswith("free text: ")


def test_synthetic_shift_fails_and_names_the_column(tmp_path) -> None:
    ref, cur = split(orders(0, rows=1500), 1)
    cur = cur.set_column(
        cur.schema.get_field_index("amount"), "amount", pc.multiply(cur["amount"], 1.5)
    )
    out = invoke("drift", write(ref, tmp_path / "r.parquet"), write(cur, tmp_path / "c.parquet"))
    assert out.exit_code == 1
    lines = out.stdout.splitlines()
    drifted = [line.split(" ", 3)[3] for line in lines if line.startswith("drift ")]
    assert drifted == ["amount"]
    why = lines[lines.index(next(x for x in lines if x.endswith(" amount"))) + 1]
    assert why.startswith("  kl ") and "> 0.1" in why


def test_rare_categories_are_joined_not_called_drift(tmp_path) -> None:
    """Cylinders 3 (4 rows) and 5 (3 rows) all in one half: joined with the smallest
    common category, so an empty bin on the other side cannot make drift."""
    table = cars(0)
    rare = pc.is_in(table["Cylinders"], pa.array([3, 5]))
    ref = table.filter(pc.invert(rare)).slice(0, 200)
    cur = pa.concat_tables([table.filter(rare), table.filter(pc.invert(rare)).slice(200)])
    # Rare values in the current half only, then in the reference half only: the
    # rare values (7 of ~200, empty on one side) alone would score above 0.1.
    expected_bins = (
        ["4", "6", "8", "(new)"],
        # 3 and 5 (7 values) pooled with values the reference never had, still short of
        # 10, so joined with 6, the smallest other category.
        ["(3 + 5 + 6 + (new))", "4", "8"],
    )
    for (first, second), bins in zip(((ref, cur), (cur, ref)), expected_bins):
        r, c = write(first, tmp_path / "r.parquet"), write(second, tmp_path / "c.parquet")
        code, doc, _ = drift_json(r, c, "--columns", "Cylinders")
        col = doc["columns"][0]
        assert col["histogram"]["bins"] == bins
        assert code == 0 and col["state"] == "ok", col
    new = [{"value": 3, "count": 4}, {"value": 5, "count": 3}]
    assert drift_json(c, r, "--columns", "Cylinders")[1]["columns"][0]["new_categories"] == new


def test_free_text_is_compared_by_length_and_stored_in_profiles(tmp_path) -> None:
    ref, cur = split(orders(0), 0)
    r, c = write(ref, tmp_path / "r.parquet"), write(cur, tmp_path / "c.parquet")
    code, doc, _ = drift_json(r, c)
    cols = by_name(doc)
    assert code == 0
    comments = cols["comments"]
    assert comments["role"] == "text" and comments["state"] in ("ok", "weak")
    assert comments["histogram"]["bins"][0].endswith(" chars") and comments["bins"] < 14
    assert cols["order_id"]["role"] == "identifier" and cols["created_at"]["role"] == "datetime"
    assert cols["country"]["role"] == "categorical" and cols["customer_id"]["role"] != "categorical"
    prof = tmp_path / "ref.profile.json"
    assert invoke("profile", r, "-o", prof).exit_code == 0
    stored = json.loads(prof.read_text())
    assert stored["kldiv_profile"] == 4 and stored["columns"]["comments"]["role"] == "text"
    assert (
        stored["columns"]["comments"]["kind"] == "text" and "edges" in stored["columns"]["comments"]
    )
    assert drift_json(prof, c)[1]["columns"] == doc["columns"]
    # Comments that became much longer drift on their lengths.
    longer = cur.set_column(
        cur.schema.get_field_index("comments"),
        "comments",
        pc.binary_join_element_wise(cur["comments"], cur["comments"], cur["comments"], " "),
    )
    code, doc, _ = drift_json(prof, write(longer, tmp_path / "long.parquet"))
    assert code == 1 and by_name(doc)["comments"]["state"] == "drift"
    assert by_name(doc)["comments"]["outside_range_share"] > 0.5


def test_version_2_profiles_are_still_read(tmp_path) -> None:
    ref, cur = split(cars(0), 3)
    r, c = write(ref, tmp_path / "r.parquet"), write(cur, tmp_path / "c.parquet")
    prof = tmp_path / "ref.profile.json"
    invoke("profile", r, "-o", prof, "--columns", "Cylinders,Weight_in_lbs,Origin")
    doc = json.loads(prof.read_text())
    # Version 3 knows the columns left out: the current data's others are not new.
    assert len(doc["table_columns"]) == 9
    code, report, err = drift_json(prof, c)
    assert code == 0 and report["only_in_current"] == [], err
    doc["kldiv_profile"] = 2
    del doc["table_columns"]
    for col in doc["columns"].values():
        del col["kind"]
    prof.write_text(json.dumps(doc))
    code, report, err = drift_json(prof, c, "--columns", "Cylinders,Weight_in_lbs,Origin")
    assert code == 0, err
    assert [col["role"] for col in report["columns"]] == ["categorical", "numeric", "categorical"]
    doc["columns"]["Origin"]["role"] = "text"
    prof.write_text(json.dumps(doc))
    code, _, err = drift_json(prof, c)
    assert code == 2 and "unknown role 'text'" in err
    # A version 2 profile does not know them: without --columns they are new columns.
    doc["columns"]["Origin"]["role"] = "categorical"
    prof.write_text(json.dumps(doc))
    code, report, _ = drift_json(prof, c)
    assert code == 1 and len(report["only_in_current"]) == 6


def test_weak_columns_say_how_many_rows_they_need_even_when_quiet(tmp_path) -> None:
    """Two small samples of one distribution: the metric crosses 0.1 by chance, within
    the noise bound, so the column is weak (exit 0) and says why on stdout."""
    for seed in range(50):
        rng = np.random.default_rng(seed)
        ref, cur = rng.normal(size=80), rng.normal(size=80)
        pq.write_table(pa.table({"latency_ms": ref}), r := tmp_path / "r.parquet")
        pq.write_table(pa.table({"latency_ms": cur}), c := tmp_path / "c.parquet")
        code, doc, _ = drift_json(r, c)
        if doc["columns"][0]["state"] == "weak":
            break
    col = doc["columns"][0]
    assert (
        code == 0 and col["weak"] is True and col["threshold"] < col["value"] <= col["noise_bound"]
    )
    assert col["rows_needed"] > 80
    out = invoke("drift", r, c, "-q")
    assert out.exit_code == 0 and out.stderr == ""
    lines = out.stdout.splitlines()
    assert lines[0].startswith("weak ") and lines[0].endswith(" latency_ms")
    assert (
        "within the noise bound" in lines[1]
        and f"needs ≈ {col['rows_needed']} rows per side" in lines[1]
    )
    # --strict: the warning that the threshold sits below the noise bound is an error,
    # and nothing is written.
    report = tmp_path / "report.json"
    strict = invoke("drift", r, c, "--strict", "-o", report)
    assert strict.exit_code == 2 and strict.stdout == "" and not report.exists()
    assert strict.stderr.startswith("kldiv: error: --strict: 1 column(s) (latency_ms) have ")
    assert len(strict.stderr.splitlines()) == 1


@pytest.fixture()
def schema_pair(tmp_path):
    """Cars halves; the current one lost Acceleration, gained Color, and its Horsepower
    is text (an exporter wrote "130 hp")."""
    ref, cur = split(cars(0), 5)
    cur = cur.drop_columns(["Acceleration"])
    cur = cur.append_column(
        "Color", pa.array(["red", "blue"] * (cur.num_rows // 2) + ["red"] * (cur.num_rows % 2))
    )
    hp = pc.binary_join_element_wise(pc.cast(cur["Horsepower"], pa.string()), "hp", " ")
    cur = cur.set_column(cur.schema.get_field_index("Horsepower"), "Horsepower", hp)
    return write(ref, tmp_path / "r.parquet"), write(cur, tmp_path / "c.parquet")


def test_schema_changes_fail_in_every_format(schema_pair, tmp_path) -> None:
    r, c = schema_pair
    junit, page, csv = tmp_path / "d.xml", tmp_path / "d.html", tmp_path / "d.csv"
    out = invoke("drift", r, c, "-q", "--junit", junit, "--html", page, "-o", csv)
    assert out.exit_code == 1
    assert out.stderr == "kldiv: check failed: drift in 3 of 10 columns (3 schema changes)\n"
    code, doc, _ = drift_json(r, c)
    cols = by_name(doc)
    assert code == 1 and doc["n_schema_changes"] == 3
    assert cols["Acceleration"]["reasons"] == ["column_removed"]
    assert cols["Color"]["reasons"] == ["column_added"]
    assert cols["Horsepower"]["reasons"] == ["type_changed"]
    assert (
        cols["Horsepower"]["schema_change"] == "numbers in the reference, text in the current data"
    )
    assert doc["only_in_reference"] == ["Acceleration"] and doc["only_in_current"] == ["Color"]
    plain = invoke("drift", r, c, "-q").stdout.splitlines()
    assert "drift - column_removed Acceleration" in plain
    assert "drift - column_added Color" in plain
    at = plain.index("drift - type_changed Horsepower")
    assert plain[at + 1] == "  schema change: numbers in the reference, text in the current data"
    md = invoke("drift", r, c, "-f", "markdown").stdout
    assert "| Acceleration |" in md and "column_removed" in md and "type_changed" in md
    assert "column_added" in csv.read_text()
    suite = ET.parse(junit).getroot().find("testsuite")
    failed = {case.get("name"): case.find("failure") for case in suite.iter("testcase")}
    for name in ("Acceleration", "Color", "Horsepower"):
        assert failed[name] is not None and "schema change" in failed[name].get("message"), name
    html = page.read_text()
    for name in ("Acceleration", "Color", "Horsepower"):
        assert f'<p class="hot">schema change: {name}: ' in html
    table = invoke("drift", r, c, stdout_isatty=True).stdout
    assert "schema" in table and "3 schema changes" in " ".join(table.split())


def test_schema_warn_lists_without_failing_and_profiles_see_changes(schema_pair, tmp_path) -> None:
    r, c = schema_pair
    keep = "--exclude", "Acceleration,Color,Horsepower"
    assert invoke("drift", r, c, *keep).exit_code == 0  # the rest did not drift
    code, doc, err = drift_json(r, c, "--schema", "warn")
    cols = by_name(doc)
    assert "3 schema change(s), not failing (--schema warn): Horsepower, Acceleration, Color" in err
    assert code == 0 and doc["drift"] is False and doc["n_schema_changes"] == 3
    assert cols["Acceleration"]["state"] == "warning" and cols["Acceleration"]["warnings"] == [
        "column_removed"
    ]
    junit = tmp_path / "w.xml"
    assert invoke("drift", r, c, "--schema", "warn", "--junit", junit).exit_code == 0
    skipped = [
        case for case in ET.parse(junit).iter("testcase") if case.find("skipped") is not None
    ]
    assert {case.get("name") for case in skipped} >= {"Acceleration", "Color", "Horsepower"}
    prof = tmp_path / "ref.profile.json"
    assert invoke("profile", r, "-o", prof).exit_code == 0
    code, stored, _ = drift_json(prof, c)
    assert code == 1 and stored["n_schema_changes"] == 3
    assert by_name(stored)["Acceleration"]["role"] == "numeric"
    out = invoke("drift", r, c, "--schema", "maybe")
    assert out.exit_code == 2 and "unknown --schema 'maybe'; choose fail or warn" in out.stderr


def test_a_missing_share_that_moves_by_chance_is_weak_not_drift(tmp_path) -> None:
    """52 yearly rows with 2 missing wages, both in one half: 7.7 points more missing,
    above --max-missing-change 0.05 but within chance at 26 rows a side."""
    rng = np.random.default_rng(6)
    wages = rng.normal(30, 8, 52).round(1)
    ref = pa.table({"wages": pa.array(wages[:26])})
    cur = pa.table({"wages": pa.array(wages[26:], mask=np.arange(26) >= 24)})
    r, c = write(ref, tmp_path / "r.parquet"), write(cur, tmp_path / "c.parquet")
    code, doc, _ = drift_json(r, c)
    col = doc["columns"][0]
    assert code == 0 and col["state"] == "weak" and col["reasons"] == []
    assert col["missing_share_change"] == pytest.approx(2 / 26)
    pi = 2 / 52
    assert col["missing_change_bound"] == pytest.approx(
        3.719 * (pi * (1 - pi) * 2 / 26) ** 0.5, rel=1e-4
    )
    lines = invoke("drift", r, c, "-q").stdout.splitlines()
    assert lines[0].startswith("weak ") and "missing +7.7 pts > 5 pts but within" in lines[1]
    # The same change over 2,600 rows a side is no accident.
    big_ref = pa.table({"wages": pa.array(np.tile(wages[:26], 100))})
    big_cur = pa.table(
        {"wages": pa.array(np.tile(wages[:26], 100), mask=np.tile(np.arange(26) >= 24, 100))}
    )
    code, doc, _ = drift_json(
        write(big_ref, tmp_path / "R.parquet"), write(big_cur, tmp_path / "C.parquet")
    )
    assert code == 1 and doc["columns"][0]["reasons"] == ["missing"]
