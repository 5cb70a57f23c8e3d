"""Every broken or hostile input ends in the promised exit code and at most one clear
line, loses nothing, leaves no temporary file and never controls the terminal.

The corpus runs in-process (``kldiv_cli.cli.app.run`` inside a ``CliRunner``
isolation); only the cases where a real process matters (stdout on /dev/full, fd 0
closed, memory bombs under a resource limit) start one.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from .corpus.make_corpus import (
    ATTACKS,
    CASES,
    ORIGINAL_OUTPUT,
    PWNED,
    Attack,
    Case,
    Run,
    drift_pair,
    pair_npy,
)

# Characters that act on a terminal or reorder text: C0 but newline and tab, DEL, C1,
# bidi controls, line/paragraph separators.
_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]")
_SGR = re.compile("\x1b\\[[0-9;]*m")


def run_kldiv(
    argv: list[str], stdin: bytes = b"", env: dict[str, str] | None = None
) -> tuple[int, bytes, bytes]:
    """The command line in this process: exit code, stdout and stderr bytes."""
    from typer.testing import CliRunner

    from kldiv_cli.cli.app import run

    # A wide screen, so that a Rich table shows each name on one line.
    env = {"COLUMNS": "400", **(env or {})}
    with warnings.catch_warnings(), CliRunner().isolation(input=stdin, env=env) as streams:
        code = int(run([str(a) for a in argv]))
        return code, streams[0].getvalue(), streams[1].getvalue()


def run_process(argv: list[str], stdin: bytes = b"", **kw) -> tuple[int, bytes, bytes]:
    """The real command in a child process, with 3 GiB of address space and 60 s
    (``kw``: e.g. ``stdout=`` a file)."""

    def limit() -> None:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))

    proc = subprocess.run(
        [sys.executable, "-m", "kldiv_cli", *map(str, argv)],
        input=stdin,
        stderr=subprocess.PIPE,
        stdout=kw.pop("stdout", subprocess.PIPE),
        timeout=60,
        preexec_fn=limit,
        **kw,
    )
    return proc.returncode, proc.stdout, proc.stderr


def assert_inert(stream: bytes, colors: bool = False) -> str:
    """Valid UTF-8 with no character a terminal acts on (colour codes when asked for)."""
    text = stream.decode("utf-8")
    shown = _SGR.sub("", text) if colors else text
    bad = _UNSAFE.findall(shown)
    assert not bad, f"raw control characters {bad!r} in {text[:2000]!r}"
    return text


def assert_kldiv_stderr(stderr: bytes, code: int, error: str | None = None) -> None:
    """Every line is kldiv's own; an error is one line, matching ``error``."""
    text = assert_inert(stderr)
    lines = text.splitlines()
    assert "Traceback" not in text and "unexpected" not in text, text
    assert all(line.startswith("kldiv") for line in lines), text
    if code == 2:
        errors = [line for line in lines if line.startswith("kldiv: error: ")]
        assert len(errors) == 1 and lines[-1] == errors[0], text
        if error:
            assert re.search(error, errors[0]), errors[0]


def _compact(text: str) -> str:
    return re.sub(r"[\s│┃]", "", text)


def snapshot(folder: Path) -> dict[str, tuple]:
    """Every file, link and folder under ``folder``, with content and mode."""
    found: dict[str, tuple] = {}
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            path = os.path.join(root, name)
            st = os.lstat(path)
            key = os.path.relpath(path, folder)
            if os.path.islink(path):
                found[key] = ("link", os.readlink(path))
            elif os.path.isdir(path):
                found[key] = ("dir", st.st_mode)
            else:
                with open(path, "rb") as f:
                    found[key] = ("file", f.read(), st.st_mode)
    return found


# --- the first corpus: broken inputs to compute, and the same files elsewhere ------------


def test_corpus_is_large_enough() -> None:
    assert len(CASES) >= 40 and len(ATTACKS) >= 80
    names = [c.name for c in CASES] + [a.name for a in ATTACKS]
    assert len(set(names)) == len(names)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_bad_input(case: Case, tmp_path: Path) -> None:
    data = tmp_path / "data"
    out_dir = tmp_path / "out"
    data.mkdir()
    out_dir.mkdir()
    args = case.build(data)
    existing = out_dir / "result.json"
    existing.write_bytes(ORIGINAL_OUTPUT)
    if "-o" not in args:
        args += ["-o", str(existing)]
    code, stdout, stderr = run_kldiv(["compute", *args], case.stdin or b"")
    assert code == 2, stderr
    assert stdout == b""
    assert_kldiv_stderr(stderr, code, case.error)
    assert len(stderr.splitlines()) == 1, stderr
    assert existing.read_bytes() == ORIGINAL_OUTPUT
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
    code, stdout, stderr = run_kldiv(argv)
    assert code == 2, stderr
    assert stdout == b""
    assert_kldiv_stderr(stderr, code)
    lines = stderr.decode().splitlines()
    assert len(lines) == 1, lines
    assert Path(bad).name.split(".")[0] in lines[0] or "directory" in lines[0], lines[0]
    assert not (data / PWNED).exists()


# --- round 2 (issue 13): data loss, injection, option abuse, faults ------------------------


@pytest.mark.parametrize("attack", [pytest.param(a, id=a.name) for a in ATTACKS])
def test_attack(attack: Attack, tmp_path: Path) -> None:
    folder = tmp_path / "case"
    folder.mkdir()
    run: Run = attack.build(folder)
    before = snapshot(folder)
    if run.process:
        code, stdout, stderr = run_process(run.argv, run.stdin)
    else:
        code, stdout, stderr = run_kldiv(run.argv, run.stdin, dict(run.env) or None)
    assert code == run.exit, stderr.decode(errors="replace")
    assert_kldiv_stderr(stderr, code, run.error)
    text = assert_inert(stdout, colors=run.colors)
    for literal in run.stdout_has:  # a Rich table may fold a long name over lines
        assert _compact(literal) in _compact(_SGR.sub("", text)), text
    if run.colors:
        assert "\x1b]" not in text  # no OSC (a hyperlink or a title)
    if code == 2:
        assert stdout == b""
    after = snapshot(folder)
    outputs = {os.path.relpath(os.path.realpath(o), os.path.realpath(folder)) for o in run.outputs}
    lost = {k for k in before if k not in outputs and after.get(k) != before[k]}
    assert not lost, f"changed or removed: {sorted(lost)}"
    assert set(after) - set(before) <= outputs, sorted(set(after) - set(before))
    assert not [k for k in after if k.endswith(".tmp")], sorted(after)
    for path, mode in run.modes:
        assert Path(path).stat().st_mode & 0o7777 == mode, oct(Path(path).stat().st_mode)
    for path in run.xml:
        import xml.etree.ElementTree as ET

        ET.parse(path)
    for path, raw in run.not_in:
        assert raw not in Path(path).read_text(encoding="utf-8")


# --- where a real process matters ----------------------------------------------------------

FULL = "/dev/full"


@pytest.mark.skipif(not os.path.exists(FULL), reason="no /dev/full")
@pytest.mark.parametrize(
    "argv",
    [["--version"], ["--help"], ["compute", "--help"], "compute", "inspect", "drift"],
    ids=["version", "help", "compute-help", "compute", "inspect", "drift"],
)
def test_stdout_on_a_full_disk(argv, tmp_path: Path) -> None:
    if argv == "compute":
        argv = ["compute", *pair_npy(tmp_path), "-r", "none", "-f", "plain", "-q"]
    elif argv == "inspect":
        argv = ["inspect", pair_npy(tmp_path)[0]]
    elif argv == "drift":
        argv = ["drift", *drift_pair(tmp_path), "-f", "plain", "-q"]
    with open(FULL, "wb") as full:
        code, _, stderr = run_process(argv, stdout=full)
    assert code == 2, stderr
    assert_kldiv_stderr(stderr, code, r"no space left on device")
    assert len(stderr.splitlines()) == 1, stderr


def test_stdin_closed(tmp_path: Path) -> None:
    """``kldiv compute x.npy - <&-``: fd 0 not open is an error about stdin, one line;
    a command that does not read stdin does not mind."""
    x, t = pair_npy(tmp_path)
    code, stdout, stderr = subprocess_closed_stdin(["compute", x, "-"])
    assert code == 2, stderr
    assert_kldiv_stderr(stderr, code, r"stdin")
    code, stdout, stderr = subprocess_closed_stdin(["compute", x, t, "-r", "sum", "-q"])
    assert code == 0, stderr
    assert float(stdout) >= 0


def subprocess_closed_stdin(argv: list[str]) -> tuple[int, bytes, bytes]:
    """The command with file descriptor 0 not open at all (``cmd <&-``)."""
    proc = subprocess.run(
        ["bash", "-c", 'exec "$@" <&-', "bash", sys.executable, "-m", "kldiv_cli", *argv],
        capture_output=True,
        timeout=60,
    )
    return proc.returncode, proc.stdout, proc.stderr
