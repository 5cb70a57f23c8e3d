"""Every broken or hostile input ends in exit 2 and one clear line, and loses nothing."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from .conftest import kldiv_subprocess
from .corpus.make_corpus import CASES, PWNED, Case

ORIGINAL = b'{"loss": "the previous result, which must survive"}\n'


def test_corpus_is_large_enough() -> None:
    assert len(CASES) >= 40
    assert len({c.name for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_bad_input(case: Case, tmp_path: Path) -> None:
    data = tmp_path / "data"
    out_dir = tmp_path / "out"
    data.mkdir()
    out_dir.mkdir()
    args = case.build(data)
    existing = out_dir / "result.json"
    existing.write_bytes(ORIGINAL)
    if "-o" not in args:
        args += ["-o", str(existing)]
    proc = kldiv_subprocess("compute", *args, input=case.stdin if case.stdin is not None else b"")
    stderr = proc.stderr.decode()
    assert proc.returncode == 2, stderr
    assert proc.stdout == b""
    assert "Traceback" not in stderr
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("kldiv: error: ")
    assert re.search(case.error, lines[0]), lines[0]
    assert existing.read_bytes() == ORIGINAL
    assert sorted(p.name for p in out_dir.iterdir()) == ["result.json"]
    assert not (data / PWNED).exists()


# The same broken files through `inspect` and `drift`: file problems are the reader's,
# so the command changes, the promise does not.
FILE_CASES = [
    c
    for c in CASES
    if c.name.split("-")[0] in ("npy", "npz", "csv", "parquet", "arrow", "feather", "path")
    and c.name not in ("npy-target-truncated", "npz-missing-key")
]
# Text, missing values and list cells are data for drift (categories, NaN shares).
VALID_FOR_DRIFT = {
    "csv-non-numeric",
    "csv-missing-cell",
    "csv-text-only",
    "parquet-strings",
    "parquet-nulls",
    "parquet-ragged-lists",
    "parquet-no-rows",
}


@pytest.mark.parametrize("case", FILE_CASES, ids=lambda c: c.name)
@pytest.mark.parametrize("command", ["inspect", "drift"])
def test_bad_file_in_other_commands(case: Case, command: str, tmp_path: Path) -> None:
    if command == "drift" and case.name in VALID_FOR_DRIFT:
        pytest.skip("valid data for drift")
    data = tmp_path / "data"
    data.mkdir()
    args = case.build(data)
    bad = args[0]
    if command == "drift":
        good_table = data / "good.csv"
        good_table.write_text("a,b\n" + "".join(f"{i},{i % 3}\n" for i in range(20)))
        argv = ["drift", str(good_table), bad]
    else:
        argv = ["inspect", bad]
    proc = kldiv_subprocess(*argv)
    stderr = proc.stderr.decode()
    assert proc.returncode == 2, stderr
    assert proc.stdout == b""
    lines = stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("kldiv: error: "), stderr
    assert "Traceback" not in stderr and "unexpected" not in stderr, stderr
    assert Path(bad).name.split(".")[0] in lines[0] or "directory" in lines[0], lines[0]
    assert not (data / PWNED).exists()
