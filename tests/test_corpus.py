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
