"""Every broken or hostile input ends in the promised exit code and at most one clear
line, loses nothing, leaves no temporary file and never controls the terminal.

The corpus runs in-process (``kldiv_cli.cli.app.run`` inside a ``CliRunner``
isolation); only the cases where a real process matters (stdout on /dev/full, fd 0
closed, memory bombs under a resource limit) start one.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import warnings
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
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


def run_process(
    argv: list[str], stdin: bytes = b"", file_size: int | None = None, **kw
) -> tuple[int, bytes, bytes]:
    """The real command in a child process, with 3 GiB of address space and 60 s, and
    files of at most ``file_size`` bytes (``ulimit -f``) when given (``kw``: e.g.
    ``stdout=`` a file)."""

    def limit() -> None:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))
        if file_size is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (file_size, file_size))

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
#: Missing cells are what inspect counts, and a column of numbers with a word in it is
#: described as text: not reasons to refuse the file.
VALID_FOR_INSPECT = {"csv-missing-cell", "parquet-nulls", "csv-non-numeric"}
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
    if command == "inspect" and case.name in VALID_FOR_INSPECT:
        pytest.skip("valid data for inspect (it counts missing cells)")
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
    for where, kind in run.reports:
        assert_safe_report(kind, stdout if where == "-" else Path(where).read_bytes())


# A cell a spreadsheet runs: OWASP's first characters (and their full-width forms).
_FORMULA = tuple("=+-@\t\r\uff1d\uff0b\uff0d\uff20")
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*([eE][+-]?\d+)?|\.\d+([eE][+-]?\d+)?|inf|infinity|nan)", re.I)


def assert_safe_report(kind: str, data: bytes) -> None:
    """``data`` is safe as a report of ``kind``: valid UTF-8 always; CSV with no cell a
    spreadsheet would run as a formula (numbers excepted); Markdown with no HTML, image,
    link or bare URL from data; HTML with no external URL of any kind and a CSP; JSON
    that a strict parser takes (no lone surrogate); well-formed XML."""
    import csv
    import io
    import json
    import xml.etree.ElementTree as ET

    text = data.decode("utf-8")  # strict: a lone surrogate is not UTF-8
    if kind == "csv":
        for row in csv.reader(io.StringIO(text)):
            for cell in row:
                assert not cell.startswith(_FORMULA) or _NUMBER.fullmatch(cell), (cell, row)
    elif kind == "markdown":
        assert "<" not in text and not re.search(r"(?<!\\)[\[\]`]", text), text
        assert not re.search(r"(?<!\\)://", text), text
    elif kind == "html":
        assert "Content-Security-Policy" in text and "default-src 'none'" in text
        # Text from data may say "url(" (escaped, inert), but nothing names a place to load.
        assert "://" not in text and not re.search(r"url\(\s*['\"]?(https?:|//)", text), text
        assert not re.search(r"<(script|link|img|iframe|object|embed|base)\b", text, re.I)
    elif kind == "json":

        def strings(value: object) -> None:
            if isinstance(value, str):
                value.encode("utf-8")  # a lone surrogate (a \\udcff escape) fails here
            elif isinstance(value, dict):
                [(strings(k), strings(v)) for k, v in value.items()]
            elif isinstance(value, list):
                [strings(v) for v in value]

        strings(json.loads(text))
    elif kind == "xml":
        ET.fromstring(data)


# --- where a real process matters ----------------------------------------------------------

FULL = "/dev/full"


@pytest.mark.skipif(not os.path.exists(FULL), reason="no /dev/full")
@pytest.mark.parametrize(
    "argv",
    [["--version"], ["compute", "--help"], "compute", "inspect", "drift"],
    ids=["version", "help", "compute", "inspect", "drift"],
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
    assert (code, stdout) == (2, b""), stderr
    assert_kldiv_stderr(stderr, code, r"^kldiv: error: <stdin>")
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


# --- round 3: standard streams as they really are (real processes) ---------------------


def run_redirected(argv: list[str], redirect: str, **kw) -> tuple[int, bytes, bytes]:
    """The command with a shell redirection applied to it (``>&-``: stdout closed)."""
    proc = subprocess.run(
        ["bash", "-c", f'exec "$@" {redirect}', "bash", sys.executable, "-m", "kldiv_cli", *argv],
        capture_output=True,
        timeout=60,
        **kw,
    )
    return proc.returncode, proc.stdout, proc.stderr


def test_stdout_closed(tmp_path: Path) -> None:
    """``>&-``: a command that writes to stdout fails in one line (exit 2), one whose
    output goes to ``-o`` works; ``--version`` is one line too, never a traceback."""
    x, t = pair_npy(tmp_path)
    out = tmp_path / "out.json"
    out.write_bytes(ORIGINAL_OUTPUT)
    for argv, code, error in [
        (["--version"], 2, r"stdout: is closed"),
        (["compute", x, t, "-r", "sum", "-q"], 2, r"stdout: is closed; give -o FILE"),
        (["compute", x, t, "-r", "sum", "-o", "/dev/stdout", "-q"], 2, r"/dev/stdout: cannot"),
    ]:
        got, stdout, stderr = run_redirected(argv, ">&-")
        assert got == code, stderr
        assert_kldiv_stderr(stderr, got, error)
        assert len(stderr.splitlines()) == 1, stderr
    assert out.read_bytes() == ORIGINAL_OUTPUT
    got, _, stderr = run_redirected(["compute", x, t, "-r", "sum", "-o", str(out)], ">&-")
    assert got == 0, stderr
    assert_kldiv_stderr(stderr, got)
    assert "loss" in json.loads(out.read_text())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json", "t.npy", "x.npy"]


def test_stderr_closed_keeps_the_exit_codes(tmp_path: Path) -> None:
    """``2>&-``: a missing file is still exit 2 (not 1), a run with warnings exit 0."""
    x, t = pair_npy(tmp_path)
    got, stdout, _ = run_redirected(["compute", str(tmp_path / "gone.npy"), t], "2>&-")
    assert (got, stdout) == (2, b"")
    # Probabilities given as the input: two warnings, then the number.
    got, stdout, _ = run_redirected(["compute", t, t, "-r", "sum"], "2>&-")
    assert got == 0 and float(stdout) < 0


def test_a_file_size_limit_is_an_error(tmp_path: Path) -> None:
    """``ulimit -f``: stdout redirected to a file that reaches the limit is exit 2 and
    one line, never exit 0 with the output cut (an unbuffered stdout dropped the rest
    of a short write); an -o output that reaches it leaves the old file and no temp."""
    rng = np.random.default_rng(0)
    np.save(x := tmp_path / "x.npy", np.log(rng.dirichlet(np.ones(8), 2000)))
    np.save(t := tmp_path / "t.npy", rng.dirichlet(np.ones(8), 2000))
    old = tmp_path / "old.csv"
    old.write_bytes(ORIGINAL_OUTPUT)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    base = ["compute", str(x), str(t), "-r", "none", "-q"]
    with open(tmp_path / "stdout.txt", "wb") as f:
        code, _, stderr = run_process([*base, "-f", "plain"], stdout=f, file_size=8192, env=env)
    assert code == 2, stderr
    assert_kldiv_stderr(stderr, code, r"^kldiv: error: stdout: file too large")
    code, _, stderr = run_process([*base, "-o", str(old)], file_size=8192, env=env)
    assert code == 2, stderr
    assert_kldiv_stderr(stderr, code, r"old\.csv: cannot write \(file too large\); nothing was")
    assert old.read_bytes() == ORIGINAL_OUTPUT
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old.csv", "stdout.txt", "t.npy", "x.npy"]


def test_devices_and_descriptors_are_outputs(tmp_path: Path) -> None:
    """``-o /dev/stdout``, ``--junit /dev/stderr``: written as streams, in the kind
    ``--format`` names (JSON by default), never replaced, nothing left behind."""
    x, t = pair_npy(tmp_path)
    code, stdout, stderr = run_process(
        ["compute", x, t, "-r", "sum", "-o", "/dev/stdout", "-f", "csv", "-q"]
    )
    assert code == 0, stderr
    assert stdout.decode().splitlines()[0].startswith("loss,reduction,")
    ref, cur = drift_pair(tmp_path)
    argv = ["drift", ref, cur, "--junit", "/dev/stderr", "-o", "/dev/stdout", "-q"]
    code, stdout, stderr = run_process(argv)
    assert code == 0, stderr
    assert json.loads(stdout)["n_drifted"] == 0
    ET.fromstring(stderr)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cur.csv", "ref.csv", "t.npy", "x.npy"]


def test_help_into_a_closed_pipe_is_quiet() -> None:
    """``kldiv --help | true`` (the reader gone before the help is written): exit 0 and
    nothing on stderr, as any other closed pipe; a message that meets a closed pipe
    changes no exit code."""
    for argv in (["--help"], ["drift", "--help"]):
        proc = subprocess.Popen(
            [sys.executable, "-m", "kldiv_cli", *argv],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert proc.stdout is not None and proc.stderr is not None
        proc.stdout.close()
        stderr = proc.stderr.read()
        assert (proc.wait(timeout=60), stderr) == (0, b"")
    # The other way round: stderr a closed pipe under a usage error is still exit 2.
    proc = subprocess.Popen(
        [sys.executable, "-m", "kldiv_cli", "compute"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stderr.close()
    assert (proc.stdout.read(), proc.wait(timeout=60)) == (b"", 2)


def test_an_ascii_locale_escapes_names(tmp_path: Path) -> None:
    """``LC_ALL=C`` without UTF-8 mode (stdout ASCII): names shown escaped, not a crash."""
    path = tmp_path / "u.csv"
    path.write_text("été,b\n0.5,0.5\n", encoding="utf-8")
    env = {**os.environ, "LC_ALL": "C", "PYTHONUTF8": "0", "PYTHONIOENCODING": ""}
    code, stdout, stderr = run_process(["inspect", path, "-f", "plain"], env=env)
    assert code == 0, stderr
    assert b"columns: \\xe9t\\xe9, b" in stdout
