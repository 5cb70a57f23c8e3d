"""drift per time window and per segment (``--window``, ``--segment``), and thresholds
learned from time chunks (``profile --calibrate-by``), on the event tables of
``tests/drift_time_data.py``: known shifts in known days and countries are the only ones
flagged, in every output format; small windows and random days stay quiet."""

from __future__ import annotations

import csv
import io
import json
import xml.etree.ElementTree as ET

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from .drift_time_data import events, window_labels
from .helpers import invoke

DAYS = window_labels()  # the current table's local days with rows (day 5 is a gap)


def run_json(*args: object) -> tuple[int, dict, str]:
    out = invoke("drift", *args, "--format", "json")
    return out.exit_code, json.loads(out.stdout) if out.stdout else {}, out.stderr


@pytest.fixture(scope="module")
def days(tmp_path_factory):
    """Reference and current (day 3 shifted, day 5 empty, day 6 with 25 rows), Parquet."""
    folder = tmp_path_factory.mktemp("days")
    reference, current = events(0)
    pq.write_table(reference, ref := folder / "ref.parquet")
    pq.write_table(current, cur := folder / "cur.parquet")
    return ref, cur, current


def local_day(table: pa.Table, day: str) -> pa.Table:
    """The rows of one local (Europe/Paris) day."""
    dates = pc.strftime(pc.local_timestamp(table["ts"]), "%Y-%m-%d")
    return table.filter(pc.equal(dates, day))


def test_windows_flag_only_the_shifted_day(days, tmp_path) -> None:
    ref, cur, current = days
    code, doc, err = run_json(ref, cur, "--window", "ts:1d")
    assert code == 1
    assert doc["drifted_windows"] == [DAYS[3]]
    assert [w["label"] for w in doc["windows"]] == DAYS  # local days; the gap is not listed
    for w in doc["windows"]:
        assert w["rows"] == local_day(current, w["label"]).num_rows
        assert w["end"] > w["start"] == w["label"]
        assert w["drift"] is (w["label"] == DAYS[3])
    assert doc["windows"][3]["drifted_columns"] == ["amount", "device"]
    missing_ts = current["ts"].null_count
    assert doc["ungrouped_rows"] == missing_ts > 0
    assert f"{missing_ts} current row(s) have no window" in err
    assert "check failed: drift in 1 of 6 windows: " + DAYS[3] in err
    names = {c["name"] for c in doc["columns"]}
    assert "ts" not in names and "event_id" in names  # the window column is never checked
    rows = {(c["window"], c["name"]): c for c in doc["columns"]}
    assert all(rows[(d, "event_id")]["state"] == "skipped" for d in DAYS)
    # The 25-row day: nothing drifts there, and its compared columns say they are weak.
    small = [c for c in doc["columns"] if c["window"] == DAYS[-1]]
    assert {c["state"] for c in small} <= {"ok", "weak", "skipped"}
    assert all(c["weak"] for c in small if c["name"] in ("amount", "session_s", "device"))
    # A window's numbers are those of a check of that day's rows alone.
    pq.write_table(local_day(current, DAYS[3]), one := tmp_path / "day.parquet")
    _, alone, _ = run_json(ref, one)
    alone_rows = {c["name"]: c for c in alone["columns"]}
    for name in ("amount", "device", "items", "session_s"):
        assert rows[(DAYS[3], name)]["kl"] == alone_rows[name]["kl"]
        assert rows[(DAYS[3], name)]["state"] == alone_rows[name]["state"]


def test_iso_text_windows_are_utc_days_and_weeks_pool_them(days, tmp_path) -> None:
    ref, _, current = days
    # The current data as CSV with ISO-8601 text with offsets: windows are UTC days (the
    # shifted Paris day starts at 23:00 UTC the day before).
    moments = pc.strftime(current["ts"], "%Y-%m-%dT%H:%M:%S%z")
    table = current.set_column(current.schema.get_field_index("ts"), "ts", moments)
    buffer = io.BytesIO()
    pacsv.write_csv(table, buffer)
    (cur := tmp_path / "cur.csv").write_bytes(buffer.getvalue())
    code, doc, _ = run_json(ref, cur, "--window", "ts:1d")
    assert code == 1
    assert doc["drifted_windows"] == [DAYS[3]]
    assert doc["windows"][0]["label"] == "2026-11-01"  # the first Paris hour
    assert doc["windows"][0]["rows"] < 100
    code, doc, _ = run_json(ref, cur, "--window", "ts:1w", "--fail-on", "share:0.5")
    assert [w["label"] for w in doc["windows"]] == ["2026-11-01", "2026-11-08"]
    assert code == 0 and doc["drifted_windows"] == []  # a shifted day in 7 does not move 2/4


def test_segments_flag_only_the_shifted_country(tmp_path) -> None:
    reference, current = events(
        1, shifted_days=(), gap_day=None, small_day=None, shifted_segment="DE"
    )
    pq.write_table(reference, ref := tmp_path / "ref.parquet")
    pq.write_table(current, cur := tmp_path / "cur.parquet")
    for extra in ((), ("--reference-segment",)):
        code, doc, err = run_json(ref, cur, "--segment", "country", *extra)
        assert code == 1, err
        assert doc["drifted_segments"] == ["DE"]
        labels = [s["label"] for s in doc["segments"]]
        counts = pc.value_counts(current["country"].drop_null()).to_pylist()
        by_count = sorted(counts, key=lambda v: (-v["counts"], v["values"]))
        assert labels == [v["values"] for v in by_count] + ["(other)"]  # missing: other
        assert doc["segments"][-1]["rows"] == current["country"].null_count
        assert "country" not in {c["name"] for c in doc["columns"]}
        if extra:
            de = reference.filter(pc.equal(reference["country"], "DE")).num_rows
            assert doc["segments"][1]["reference_rows"] == de
    code, doc, _ = run_json(ref, cur, "--segment", "country", "--max-segments", "2")
    assert [s["label"] for s in doc["segments"]] == ["FR", "DE", "(other)"]
    assert doc["drifted_segments"] == ["DE"]


def test_a_segment_new_in_the_current_data_is_skipped_saying_why(tmp_path) -> None:
    """--reference-segment: a country only in the current data has no reference rows.
    Its columns are skipped naming it, the run warns once and lists it; the other
    segments' results are those of the same run without it."""
    reference, current = events(
        1, shifted_days=(), gap_day=None, small_day=None, shifted_segment="DE"
    )
    jp = current.slice(0, 40)
    jp = jp.set_column(jp.schema.get_field_index("country"), "country", pa.array(["JP"] * 40))
    pq.write_table(reference, ref := tmp_path / "ref.parquet")
    pq.write_table(current, cur := tmp_path / "cur.parquet")
    pq.write_table(pa.concat_tables([current, jp]), new := tmp_path / "new.parquet")
    args = ("--segment", "country", "--reference-segment")
    _, before, _ = run_json(ref, cur, *args)
    code, doc, err = run_json(ref, new, *args)
    assert code == 1 and doc["drifted_segments"] == ["DE"]
    assert doc["new_segments"] == ["JP"]
    segment = next(s for s in doc["segments"] if s["label"] == "JP")
    assert segment["new"] and segment["reference_rows"] == 0 and segment["rows"] == 40
    rows = [c for c in doc["columns"] if c.get("segment") == "JP"]
    assert rows and all(c["state"] == "skipped" for c in rows)
    assert {c["skip_reason"] for c in rows} == {"no reference rows for segment JP"}
    warnings = [line for line in err.splitlines() if "JP" in line]
    assert warnings == [
        "kldiv: warning: 1 segment(s) only in the current data, not compared (no reference "
        "rows): JP (40 rows); drop --reference-segment to compare them with the whole reference"
    ]
    assert not any(s["new"] for s in before["segments"]) and before["new_segments"] == []
    others = [c for c in doc["columns"] if c.get("segment") != "JP"]
    for key in ("name", "segment", "state", "value", "n_reference", "n_current"):
        assert [c.get(key) for c in others] == [c.get(key) for c in before["columns"]]


def test_learned_thresholds_from_time_chunks(tmp_path) -> None:
    """Unshifted days under thresholds learned from the reference's days: quiet (at most
    5 % of windows); the shifted day still drifts."""
    checks, alarms = 0, 0
    for seed in (2, 3):
        reference, current = events(
            seed, shifted_days=(), gap_day=None, small_day=None, rows_per_day=600
        )
        pq.write_table(reference, ref := tmp_path / f"ref{seed}.parquet")
        pq.write_table(current, cur := tmp_path / f"cur{seed}.parquet")
        out = invoke(
            "profile",
            ref,
            "--calibrate",
            "14",
            "--calibrate-by",
            "ts:1d",
            "-o",
            prof := tmp_path / f"p{seed}.json",
        )
        assert out.exit_code == 0, out.stderr
        calibration = json.loads(prof.read_text())["columns"]["amount"]["calibration"]
        assert calibration["by"] == "ts:1d" and calibration["resamples"] == 14
        values = pc.drop_null(pc.if_else(pc.is_nan(reference["amount"]), None, reference["amount"]))
        assert calibration["sizes"][0] == len(values)  # each chunk against the whole
        code, doc, _ = run_json(prof, cur, "--window", "ts:1d", "--threshold", "learned")
        learned = [c for c in doc["columns"] if c["threshold_origin"] == "learned"]
        assert learned
        checks += len(doc["windows"])
        alarms += len(doc["drifted_windows"])
    assert alarms <= 0.05 * checks
    _, current = events(2, gap_day=None, small_day=None, rows_per_day=600)
    pq.write_table(current, cur := tmp_path / "shifted.parquet")
    code, doc, _ = run_json(prof, cur, "--window", "ts:1d", "--threshold", "learned")
    assert code == 1 and doc["drifted_windows"] == [DAYS[3]]


def test_every_output_format(days, tmp_path) -> None:
    ref, cur, _ = days
    base = (ref, cur, "--segment", "device", "--max-segments", "3")
    out = invoke(
        "drift",
        *base,
        "--format",
        "csv",
        "--junit",
        junit := tmp_path / "d.xml",
        "--html",
        page := tmp_path / "d.html",
    )
    rows = list(csv.DictReader(io.StringIO(out.stdout)))
    assert list(rows[0])[:2] == ["segment", "column"]
    assert {r["segment"] for r in rows} == {"mobile", "desktop", "tablet"}
    window = (ref, cur, "--window", "ts:1d")
    _, doc, _ = run_json(*window)
    amount = next(c for c in doc["columns"] if (c["window"], c["name"]) == (DAYS[3], "amount"))
    out = invoke("drift", *window, "--format", "plain")
    line = f"drift {amount['value']:.4g} distribution {DAYS[3]} amount"
    assert line in out.stdout.splitlines()
    out = invoke("drift", *window, "--format", "markdown")
    assert out.stdout.splitlines()[2].startswith("| window | column |")
    out = invoke("drift", *window, "--format", "table", "--no-color")
    assert DAYS[3] in out.stdout and "windows drifted" in out.stdout
    out = invoke(
        "drift", *window, "--junit", junit, "--html", page, "-o", report := tmp_path / "r.json"
    )
    assert out.exit_code == 1
    suites = ET.parse(junit).getroot().findall("testsuite")
    assert [s.get("name") for s in suites] == [f"kldiv drift window {d}" for d in DAYS]
    assert [s.get("failures") for s in suites] == ["2" if d == DAYS[3] else "0" for d in DAYS]
    assert ET.parse(junit).getroot().get("failures") == "2"
    text = page.read_text()
    assert "columns × windows (ts)" in text and "<script" not in text
    assert all(f"<span>{d}</span>" in text for d in DAYS)
    assert text.count('class="hm drift"') == 2
    assert json.loads(report.read_text())["drifted_windows"] == [DAYS[3]]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--window", "ts:1q"), "--window takes COL:PERIOD with PERIOD a count and a unit"),
        (("--window", "ts"), "--window takes COL:PERIOD (such as created_at:1d), got 'ts'"),
        (("--window", "ts:0d"), "--window takes COL:PERIOD with PERIOD"),
        (("--window", "amount:1d"), "column 'amount': is not a date/time column"),
        (("--window", "nope:1d"), "has no column 'nope' to group by"),
        (("--window", "ts:1s"), "gives"),
        (("--window", "ts:1d", "--segment", "country"), "give --window or --segment, not both"),
        (("--reference-segment",), "--reference-segment needs --segment COL"),
        (("--segment", "amount"), "--segment needs categories"),
        (("--segment", "country", "--max-segments", "0"), "--max-segments must be between 1"),
    ],
)
def test_bad_grouping_is_one_line(days, args, message) -> None:
    ref, cur, _ = days
    out = invoke("drift", ref, cur, *args)
    assert out.exit_code == 2, out.stderr
    assert out.stdout == ""
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("kldiv: error: ") and message in lines[0]


def test_profile_options_that_cannot_work(days, tmp_path) -> None:
    ref, cur, _ = days
    out = invoke("profile", ref, "--calibrate-by", "ts:1d")
    assert out.exit_code == 2 and "--calibrate-by needs --calibrate N" in out.stderr
    out = invoke("profile", ref, "--calibrate", "3", "--calibrate-by", "nope:1d")
    assert out.exit_code == 2 and "has no column 'nope' to calibrate by" in out.stderr
    assert invoke("profile", ref, "-o", prof := tmp_path / "p.json").exit_code == 0
    out = invoke("drift", prof, cur, "--segment", "country", "--reference-segment")
    assert out.exit_code == 2 and "give the reference table, not a profile" in out.stderr


def _csv(path, rows) -> str:
    path.write_text("ts,x\n" + "".join(f"{t},{x}\n" for t, x in rows))
    return str(path)


def test_window_text_that_is_not_a_time(days, tmp_path) -> None:
    """A text column with no times is refused naming it and a value; a value that is not
    a time among ISO text is a row without a time (counted, warned); ISO text with and
    without an offset is refused naming one of each."""
    ref, cur, current = days
    out = invoke("drift", ref, cur, "--window", "device:1d")
    assert out.exit_code == 2 and out.stdout == ""
    first = current["device"].drop_null()[0].as_py()  # the first value, in table order
    assert out.stderr.splitlines() == [
        f"kldiv: error: {cur}: column 'device': holds no dates or times (text such as "
        f"'{first}'); --window needs dates, timestamps or ISO-8601 text"
    ]
    times = [f"2026-11-0{1 + i % 3}T10:00:00Z" for i in range(60)]
    good = _csv(tmp_path / "good.csv", [(t, i % 7) for i, t in enumerate(times)])
    bad_value = "not a date\x1b[2J" + "x" * 60  # cleaned and shortened in the warning
    bad = _csv(tmp_path / "bad.csv", [(t, i % 7) for i, t in enumerate([*times, bad_value])])
    want_code, want, _ = run_json(good, good, "--window", "ts:1d")
    code, doc, err = run_json(good, bad, "--window", "ts:1d")
    assert code == want_code and doc["ungrouped_rows"] == 1 and doc["unparsed_rows"] == 1
    assert doc["windows"] == want["windows"] and doc["columns"] == want["columns"]
    line = next(x for x in err.splitlines() if "have no window" in x)
    assert line.startswith(
        "kldiv: warning: 1 current row(s) have no window (text that is not a date/time in "
        "'ts', such as 'not a date\\x1b[2Jxx"
    )
    assert "\x1b" not in err and len(line) < 200
    mixed = _csv(tmp_path / "mixed.csv", [(t, 1) for t in [*times, "2026-11-02 10:00:00"]])
    out = invoke("drift", good, mixed, "--window", "ts:1d")
    assert out.exit_code == 2 and out.stdout == ""
    assert out.stderr.splitlines() == [
        f"kldiv: error: {mixed}: column 'ts': mixes ISO times with and without a UTC offset "
        "('2026-11-01T10:00:00Z' has one, '2026-11-02 10:00:00' has none); give every "
        "value an offset, or none (then they are taken as UTC)"
    ]
