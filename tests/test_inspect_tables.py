"""kldiv inspect on an ordinary public-like table (a titanic-like CSV: a passenger id,
names, categories, ages with missing cells, timestamps, a column mixing numbers and
text): exit 0, every column's type, missing cells and both roles with reasons, in every
format and through -o; the counts recomputed from the rows written."""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from .helpers import invoke

N = 200


def titanic_like(path: Path, seed: int = 3) -> list[dict[str, str]]:
    """Write the table and return its rows (cells as written, "" for missing)."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(N):
        rows.append(
            {
                "PassengerId": str(i + 1),
                "survived": str(int(rng.random() < 0.4)),
                "pclass": str(rng.integers(1, 4)),
                "name": f"Passenger {rng.integers(10**6)}, Mr. Somebody {i}",
                "sex": str(rng.choice(["male", "female"])),
                "age": "" if rng.random() < 0.2 else f"{rng.uniform(1, 80):.1f}",
                "fare": f"{rng.gamma(2.0, 15.0):.4f}",
                "embarked": "" if i % 50 == 7 else str(rng.choice(["S", "C", "Q"])),
                "boarded": f"2026-04-{10 + i % 3:02d}T{8 + i % 10:02d}:{i % 60:02d}:00",
                "cabin": "" if i % 3 else (str(i) if i % 2 else f"C{i}"),
            }
        )
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return rows


def inspected(tmp_path: Path) -> tuple[list[dict[str, str]], dict[str, Any]]:
    """The rows written, and inspect's JSON of them (exit 0, one valid document); every
    column's missing cells are the empty cells written."""
    path = tmp_path / "titanic.csv"
    rows = titanic_like(path)
    r = invoke("inspect", path, "-f", "json")
    assert r.exit_code == 0, r.stderr
    doc = json.loads(r.stdout)
    cols = columns_of(doc)
    assert list(cols) == list(rows[0])
    missing = {name: sum(row[name] == "" for row in rows) for name in rows[0]}
    assert {n: c["missing"] for n, c in cols.items()} == missing
    assert missing["age"] > 0 and doc["missing"] == sum(missing.values())
    assert doc["table_rows"] == N
    return rows, doc


def columns_of(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in document["column_roles"]}


def test_titanic_like_table_is_described_not_refused(tmp_path: Path) -> None:
    rows, doc = inspected(tmp_path)
    cols = columns_of(doc)
    assert doc["drift_roles_from"] == "all rows"
    # compute/compare: the numbers, not the id (a key), nor text, nor timestamps.
    assert cols["PassengerId"]["role"] == "key" and not cols["PassengerId"]["used"]
    assert "key" in cols["PassengerId"]["reason"]
    # The integers beside the floats are metadata (labels, counts), as compute leaves them.
    assert [n for n, c in cols.items() if c["used"]] == ["age", "fare"]
    assert cols["survived"]["role"] == cols["pclass"]["role"] == "metadata"
    assert cols["name"]["reason"] and cols["cabin"]["reason"]
    # drift: the roles its own rules give, with their reasons.
    roles = {n: c["drift_role"] for n, c in cols.items()}
    assert roles == {
        "PassengerId": "identifier",
        "survived": "categorical",
        "pclass": "categorical",
        "name": "text",
        "sex": "categorical",
        "age": "numeric",
        "fare": "numeric",
        "embarked": "categorical",
        "boarded": "datetime",
        "cabin": "text",
    }
    assert cols["name"]["drift_reason"].startswith("free text")
    assert cols["embarked"]["drift_reason"] == "3 distinct values"
    assert cols["age"]["type"] == "double" and cols["boarded"]["type"].startswith("timestamp")
    assert cols["cabin"]["type"] == "string" and cols["name"]["type"] == "string"
    # The statistics over the used columns count the missing ages as NaN.
    assert doc["nan"] == cols["age"]["missing"] and doc["shape"] == [N, 2]


@pytest.mark.parametrize("fmt", ["plain", "csv", "markdown", "table"])
def test_every_format_carries_the_columns(fmt: str, tmp_path: Path) -> None:
    path = tmp_path / "titanic.csv"
    rows = titanic_like(path)
    r = invoke("inspect", path, "-f", fmt)
    assert r.exit_code == 0, r.stderr
    ages = sum(row["age"] == "" for row in rows)
    if fmt == "table":  # wrapped at the terminal's width: the rows are there
        assert "column age" in r.stdout and "column PassengerId" in r.stdout
        return
    line = f"double, {ages} missing; compute: used, a class; drift: numeric"
    assert f"column age{':' if fmt == 'plain' else ''}" in r.stdout and line in r.stdout
    assert "compute: left out, a row key" in r.stdout
    assert re.search(r"column name\W+string, 0 missing; compute: left out .*drift: text", r.stdout)


@pytest.mark.parametrize("suffix", [".json", ".csv", ".md"])
def test_output_file(suffix: str, tmp_path: Path) -> None:
    path = tmp_path / "titanic.csv"
    titanic_like(path)
    out = tmp_path / f"report{suffix}"
    r = invoke("inspect", path, "-o", out)
    assert r.exit_code == 0, r.stderr
    assert r.stdout == "" and f"wrote {out}" in r.stderr
    text = out.read_text()
    if suffix == ".json":
        assert columns_of(json.loads(text))["age"]["drift_role"] == "numeric"
    elif suffix == ".csv":
        table = dict(csv.reader(io.StringIO(text)))
        assert table["column boarded"].startswith("timestamp[s], 0 missing;")
    else:
        assert text.startswith("### kldiv inspect") and "| column cabin |" in text


def test_output_refused_before_reading(tmp_path: Path) -> None:
    path = tmp_path / "titanic.csv"
    titanic_like(path)
    r = invoke("inspect", path, "-o", tmp_path / "out.npy")
    assert r.exit_code == 2 and r.stdout == ""
    assert r.stderr.strip().splitlines() == [
        f"kldiv: error: {tmp_path / 'out.npy'}: --output writes .csv, .json, .md, not .npy"
    ]
    r = invoke("inspect", path, "-o", path.with_suffix(".csv"))
    assert r.exit_code == 2 and path.read_text().startswith("PassengerId,")


def test_formula_names_are_neutralised_in_csv(tmp_path: Path) -> None:
    path = tmp_path / "f.csv"
    path.write_text(
        'id,"=HYPERLINK(""http://x"")",v\n' + "".join(f"{i},a{i % 3},{i}.5\n" for i in range(9))
    )
    out = tmp_path / "r.csv"
    assert invoke("inspect", path, "-o", out).exit_code == 0
    assert not any(cell.startswith("=") for row in csv.reader(out.open()) for cell in row)


def test_streamed_table_counts_every_block(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A CSV streamed in small blocks: missing cells of all blocks, drift's roles from
    the first block (and said so)."""
    import kldiv_cli.io.csv as csv_io
    import kldiv_cli.jobs.inspect as job

    monkeypatch.setattr(csv_io, "STREAM_ABOVE", 0)
    monkeypatch.setattr(csv_io, "_BLOCK", 4096)
    monkeypatch.setattr(job, "TABLE_ROWS", 50)
    _, doc = inspected(tmp_path)
    cols = columns_of(doc)
    assert re.fullmatch(rf"the first \d+ of {N} rows", doc["drift_roles_from"])
    assert cols["age"]["drift_role"] == "numeric" and cols["PassengerId"]["role"] == "key"
