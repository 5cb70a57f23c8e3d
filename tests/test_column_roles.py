"""The column rule on exporter-shaped tables (tests/corpus/make_tables.py): compute,
compare and inspect use the distribution's columns (keys and metadata left out with a
note naming them), give the number NumPy gives, or one clear error; never a silent 0."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from .corpus.make_tables import TABLES, Table, Written
from .helpers import invoke

SOFTMAX = ("--input-transform", "log-softmax", "--target-transform", "softmax")


def log_softmax(a: np.ndarray) -> np.ndarray:
    a = a.astype(np.float64) - a.max(axis=1, keepdims=True)
    return a - np.log(np.exp(a).sum(axis=1, keepdims=True))


def batchmean_kl(x: np.ndarray, t: np.ndarray) -> float:
    """KL(softmax(t) || softmax(x)) averaged over rows, from the logits written."""
    lt = log_softmax(t)
    return float(np.sum(np.exp(lt) * (lt - log_softmax(x))) / len(x))


def build(table: Table, tmp_path: Path) -> Written:
    return table.build(tmp_path, np.random.default_rng(TABLES.index(table)))


@pytest.mark.parametrize("table", TABLES, ids=lambda t: t.name)
def test_compute_gives_the_right_number_or_one_error(table: Table, tmp_path: Path) -> None:
    w = build(table, tmp_path)
    args = ("-r", "sum") if table.plain else ("-r", "batchmean", *SOFTMAX)
    r = invoke("compute", w.input, w.target, *args, "-f", "json")
    if table.error is not None:
        assert r.exit_code == 2, r.stderr
        assert r.stdout == ""
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("kldiv: error: "), r.stderr
        assert re.search(table.error, lines[0]), lines[0]
        return
    assert r.exit_code == 0, r.stderr
    doc = json.loads(r.stdout)
    loss = doc["loss"]
    # The JSON says which columns were left out, and why.
    left = {c["name"] for c in doc["input"].get("left_out", []) if c["role"] != "unused"}
    assert left == set(table.left_out)
    if table.plain:
        want = float(np.sum(w.t * (np.log(w.t) - w.x)))
    else:
        want = batchmean_kl(w.x, w.t)
    assert loss != 0.0
    assert math.isclose(loss, want, rel_tol=1e-5), (loss, want)
    notes = [line for line in r.stderr.splitlines() if "left out" in line]
    if table.left_out:
        # One note a side, naming every column left out and the flag that chooses.
        assert len(notes) == 2, r.stderr
        for name in table.left_out:
            assert f"'{name}'" in notes[0] and f"'{name}'" in notes[1]
        assert "--input-columns" in notes[0] and "--target-columns" in notes[1]
    else:
        assert notes == []


def test_issue_example_and_its_override(tmp_path: Path) -> None:
    """An ``id`` then c0..c9: the same number with and without ``--*-columns``; naming the
    id column alone is the one-class error, not 0."""
    table = next(t for t in TABLES if t.name == "id_then_classes")
    w = build(table, tmp_path)
    base = ("compute", w.input, w.target, "-r", "batchmean", *SOFTMAX)
    auto = invoke(*base)
    chosen = invoke(*base, "--input-columns", "c*", "--target-columns", "c*")
    assert auto.exit_code == chosen.exit_code == 0
    assert auto.stdout == chosen.stdout
    assert "left out" not in chosen.stderr
    only_id = invoke(*base, "--input-columns", "id", "--target-columns", "id")
    assert only_id.exit_code == 2
    assert "log-softmax over 1 class (column 'id'" in only_id.stderr


def test_one_named_column_may_be_summed_pointwise(tmp_path: Path) -> None:
    table = next(t for t in TABLES if t.name == "id_and_one_column")
    w = build(table, tmp_path)
    p = np.exp(log_softmax(w.t))[:, :1]  # any positive column
    np.savetxt(tp := tmp_path / "p.csv", p, header="p", comments="", delimiter=",")
    named = invoke(
        "compute", w.input, tp, "-r", "sum", "--input-columns", "score", "--target-columns", "p"
    )
    assert named.exit_code == 0, named.stderr
    want = float(np.sum(p[:, 0] * (np.log(p[:, 0]) - w.x[:, 0])))
    assert math.isclose(float(named.stdout), want, rel_tol=1e-12)
    auto = invoke("compute", w.input, tp, "-r", "sum")
    assert auto.exit_code == 2
    assert "input: 1 class (column 'score'" in auto.stderr and "--input-columns" in auto.stderr


@pytest.mark.parametrize("name", ["list_beside_metadata", "id_then_classes"])
def test_compare_uses_the_same_columns(name: str, tmp_path: Path) -> None:
    table = next(t for t in TABLES if t.name == name)
    w = build(table, tmp_path)
    r = invoke("compare", w.input, w.target, "-f", "json")
    assert r.exit_code == 0, r.stderr
    kl = json.loads(r.stdout)["kl"]["mean"]
    # compare's KL(reference || candidate) per row, from the logits written.
    lx = log_softmax(w.x)
    want = float(np.mean(np.sum(np.exp(lx) * (lx - log_softmax(w.t)), axis=1)))
    assert math.isclose(kl, want, rel_tol=1e-5), (kl, want)
    assert sum("left out" in line for line in r.stderr.splitlines()) == 2


def test_compare_refuses_one_class(tmp_path: Path) -> None:
    table = next(t for t in TABLES if t.name == "id_and_one_column")
    w = build(table, tmp_path)
    r = invoke("compare", w.input, w.target)
    assert r.exit_code == 2 and r.stdout == ""
    assert "1 class (column 'score'" in r.stderr and "--columns" in r.stderr
    two = next(t for t in TABLES if t.name == "two_lists")
    w2 = build(two, tmp_path)
    r2 = invoke("compare", w2.input, w2.target)
    assert r2.exit_code == 2 and "has 2 list columns" in r2.stderr and "--columns" in r2.stderr
    r3 = invoke("compare", w2.input, w2.target, "--columns", "logits")
    assert r3.exit_code == 0, r3.stderr


@pytest.mark.parametrize("fmt", ["plain", "csv", "json", "table"])
def test_inspect_shows_the_roles(fmt: str, tmp_path: Path) -> None:
    table = next(t for t in TABLES if t.name == "list_beside_metadata")
    w = build(table, tmp_path)
    r = invoke("inspect", w.input, "-f", fmt)
    assert r.exit_code == 0, r.stderr
    if fmt == "json":
        roles = {c["name"]: c for c in json.loads(r.stdout)["column_roles"]}
        assert roles["logits"]["role"] == "distribution" and roles["logits"]["used"]
        assert roles["id"]["role"] == "metadata" and not roles["id"]["used"]
        return
    if fmt == "table":  # a terminal table wraps the long values: the rows are there
        assert "column logits" in r.stdout and "column id" in r.stdout
        return
    assert re.search(r"column logits\W+[^;]+; compute: used, one distribution per row", r.stdout)
    assert re.search(r"column id\W+int64, 0 missing; compute: left out, metadata", r.stdout)


def test_inspect_names_the_key_and_why(tmp_path: Path) -> None:
    table = next(t for t in TABLES if t.name == "pandas_index")
    w = build(table, tmp_path)
    r = invoke("inspect", w.input)
    assert "column Unnamed: 0: int64, 0 missing;" in r.stdout
    assert "compute: left out, a row key (named like a key and unique)" in r.stdout
    assert "columns: c0, c1, c2" in r.stdout
    assert re.search(
        r"column c0: double, 0 missing; compute: used, a class; drift: numeric", r.stdout
    )


def test_list_column_streams_in_row_groups(tmp_path: Path) -> None:
    """A list column read block by block (several row groups) gives the whole read's
    number; a group whose lists are longer than the first row's is an error."""
    rng = np.random.default_rng(5)
    x, t = rng.normal(size=(60, 6)), rng.normal(size=(60, 6))
    for name, a in (("x", x), ("t", t)):
        table = pa.table({"id": np.arange(60), "logits": list(a)})
        pq.write_table(table, tmp_path / f"{name}.parquet", row_group_size=16)
    args = ("compute", tmp_path / "x.parquet", tmp_path / "t.parquet", "-r", "batchmean")
    whole = invoke(*args, *SOFTMAX, "-f", "json")
    blocks = invoke(*args, *SOFTMAX, "-f", "json", "--chunk-rows", "7", "--per-row")
    assert whole.exit_code == blocks.exit_code == 0, whole.stderr + blocks.stderr
    assert math.isclose(json.loads(whole.stdout)["loss"], batchmean_kl(x, t), rel_tol=1e-12)
    per_row = json.loads(blocks.stdout)["per_row"]
    assert math.isclose(sum(per_row) / 60, batchmean_kl(x, t), rel_tol=1e-12)
    rows = [list(r) for r in x[:40]] + [list(r) + [0.0] for r in x[40:]]
    pq.write_table(pa.table({"logits": rows}), tmp_path / "r.parquet", row_group_size=16)
    bad = invoke("compute", tmp_path / "r.parquet", tmp_path / "t.parquet", *SOFTMAX)
    assert bad.exit_code == 2
    assert "row 40 has 7 values, but row 0 has 6 (ragged lists)" in bad.stderr


@pytest.mark.parametrize("name", ["id_then_classes", "monotone_step"])
def test_streamed_csv_leaves_the_key_out_too(name: str, tmp_path: Path, monkeypatch) -> None:
    """A CSV too large to read whole decides on its first block, with the same note."""
    from kldiv_cli.io import csv as csv_reader

    monkeypatch.setattr(csv_reader, "CSV_STREAM_ABOVE", 0)
    table = next(t for t in TABLES if t.name == name)
    w = build(table, tmp_path)
    r = invoke("compute", w.input, w.target, "-r", "batchmean", *SOFTMAX, "-f", "json")
    assert r.exit_code == 0, r.stderr
    assert math.isclose(json.loads(r.stdout)["loss"], batchmean_kl(w.x, w.t), rel_tol=1e-12)
    assert f"left out column '{table.left_out[0]}'" in r.stderr


def test_parquet_dataset_folder_leaves_the_key_out(tmp_path: Path) -> None:
    rng = np.random.default_rng(8)
    x, t = rng.normal(size=(30, 4)), rng.normal(size=(30, 4))
    for name, a in (("x", x), ("t", t)):
        (tmp_path / name).mkdir()
        for part, rows in enumerate((slice(0, 12), slice(12, 30))):
            cols = {"row_id": np.arange(30)[rows], **{f"c{j}": a[rows, j] for j in range(4)}}
            pq.write_table(pa.table(cols), tmp_path / name / f"part-{part}.parquet")
    r = invoke("compute", tmp_path / "x", tmp_path / "t", "-r", "batchmean", *SOFTMAX)
    assert r.exit_code == 0, r.stderr
    assert math.isclose(float(r.stdout), batchmean_kl(x, t), rel_tol=1e-12)
    assert "left out column 'row_id' (named like a key and unique)" in r.stderr


def test_a_repeated_key_name_is_a_class_but_never_silently(tmp_path: Path) -> None:
    """In a table of integers (counts), a ``sample_id`` that repeats is not a row key by
    the rule, so it stays a class (the number is the one with it), with a note naming
    it and the flag; beside float columns it is left out as integers are."""
    rng = np.random.default_rng(9)
    x, t = rng.integers(0, 6, size=(16, 3)), rng.integers(0, 6, size=(16, 3))
    for name, a in (("x", x), ("t", t)):
        a[:, 0] = np.arange(16) // 4
        pq.write_table(pa.table({"sample_id": a[:, 0], "c0": a[:, 1], "c1": a[:, 2]}),
                       tmp_path / f"{name}.parquet")  # fmt: skip
        floats = {"sample_id": a[:, 0], "c0": a[:, 1] + 0.5, "c1": a[:, 2] + 0.5}
        pq.write_table(pa.table(floats), tmp_path / f"f{name}.parquet")
    args = ("-r", "batchmean", *SOFTMAX)
    r = invoke("compute", tmp_path / "x.parquet", tmp_path / "t.parquet", *args)
    assert r.exit_code == 0, r.stderr
    assert math.isclose(float(r.stdout), batchmean_kl(x, t), rel_tol=1e-12)
    assert "column 'sample_id' is named like a key but repeats values" in r.stderr
    assert "--input-columns" in r.stderr
    f = invoke("compute", tmp_path / "fx.parquet", tmp_path / "ft.parquet", *args)
    assert f.exit_code == 0, f.stderr
    assert math.isclose(float(f.stdout), batchmean_kl(x[:, 1:], t[:, 1:]), rel_tol=1e-12)
    assert "left out column 'sample_id' (integers beside float columns" in f.stderr


def test_strict_makes_the_column_notes_errors(tmp_path: Path) -> None:
    """--strict: a column left out is an error (exit 2, nothing on stdout) in compute and
    compare, before any work; naming the columns is the way through."""
    table = next(t for t in TABLES if t.name == "shuffled_doc_ids")
    w = build(table, tmp_path)
    compute = ("compute", w.input, w.target, "-r", "batchmean", *SOFTMAX, "--strict")
    for args in (
        compute,
        ("compare", w.input, w.target, "--fail-above", "kl.mean=0.01", "--strict"),
    ):
        r = invoke(*args)
        assert r.exit_code == 2 and r.stdout == "", r.stderr
        assert r.stderr.startswith("kldiv: error: --strict: ") and len(r.stderr.splitlines()) == 1
        assert "left out column 'doc' (integers beside float columns" in r.stderr
    named = invoke(*compute, "--input-columns", "c*", "--target-columns", "c*")
    assert named.exit_code == 0 and named.stderr == "", named.stderr
    assert math.isclose(float(named.stdout), batchmean_kl(w.x, w.t), rel_tol=1e-12)


def test_text_columns_are_named_in_the_note(tmp_path: Path) -> None:
    table = next(t for t in TABLES if t.name == "uuid_and_camel_ids")
    w = build(table, tmp_path)
    r = invoke("compute", w.input, w.target, "-r", "batchmean", *SOFTMAX)
    assert r.exit_code == 0, r.stderr
    notes = [line for line in r.stderr.splitlines() if "left out" in line]
    assert len(notes) == 2 and "'uuid' (not numbers (string))" in notes[0], r.stderr


def test_gaussian_notes_its_left_out_columns(tmp_path: Path) -> None:
    rng = np.random.default_rng(11)
    mu, lv = rng.normal(size=(12, 3)), 0.1 * rng.normal(size=(12, 3))
    for name, a in (("mu", mu), ("lv", lv)):
        cols = {"id": np.arange(12), **{f"z{j}": a[:, j] for j in range(3)}}
        pq.write_table(pa.table(cols), tmp_path / f"{name}.parquet")
    r = invoke("gaussian", tmp_path / "mu.parquet", tmp_path / "lv.parquet")
    assert r.exit_code == 0, r.stderr
    want = float(np.mean(np.sum(0.5 * (np.exp(lv) + mu**2 - 1 - lv), axis=1)))
    assert math.isclose(float(r.stdout), want, rel_tol=1e-12)
    assert "mu.parquet: left out column 'id' (named like a key and unique)" in r.stderr
    assert "--mu-columns" in r.stderr and "--logvar-columns" in r.stderr
    strict = invoke("gaussian", tmp_path / "mu.parquet", tmp_path / "lv.parquet", "--strict")
    assert strict.exit_code == 2 and strict.stdout == ""
    assert strict.stderr.startswith("kldiv: error: --strict: ")
    assert "left out column 'id'" in strict.stderr and len(strict.stderr.splitlines()) == 1
