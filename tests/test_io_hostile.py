"""Hostile inputs, generated here: every one fails in one clean line or works.

The contract for a refused input: exit code 2, ONE line on stderr starting
``kldiv: error:`` that names the file, nothing on stdout, no control characters
anywhere, an existing output file untouched and no temp file left beside it.
Families: .npy headers that lie, .npz bombs, streams (FIFOs, devices, ``/dev/fd``,
stdin), CSV cells and lines without bounds, duplicate column names, symbolic link
loops under a glob, and empty dimensions.
"""

from __future__ import annotations

import os
import re
import struct
import subprocess
import sys
import threading
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.feather as feather
import pyarrow.parquet as pq
import pytest

from .helpers import SAMPLES, Outcome, invoke

# C0 controls but newline, DEL and C1 controls: none may reach the terminal.
CONTROL = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f]")


@pytest.fixture()
def target(tmp_path: Path) -> Path:
    """A valid 4 x 3 target next to which every hostile input is written."""
    path = tmp_path / "t.npy"
    np.save(path, np.full((4, 3), 1 / 3))
    return path


def refused(out: Outcome, name: str) -> None:
    """The one-line error contract."""
    assert out.exit_code == 2, (out.exit_code, out.stdout, out.stderr)
    lines = out.stderr.splitlines()
    assert len(lines) == 1, out.stderr
    assert lines[0].startswith("kldiv: error:"), out.stderr
    assert name in lines[0], out.stderr
    assert out.stdout == ""
    assert not CONTROL.search(out.stdout + out.stderr)


def refused_keeping_output(
    tmp_path: Path,
    bad: Path | str,
    target: Path,
    name: str,
    because: str = "",
    stdin: bytes = b"",
    options: tuple[str, ...] = (),
) -> Outcome:
    """Refused with ``-o`` (for the reason ``because``, when given): the old output is
    kept and no temp file is left."""
    old = tmp_path / "out.npy"
    old.write_bytes(b"old")
    before = sorted(os.listdir(tmp_path))
    out = invoke("compute", bad, target, "-r", "none", "-o", old, *options, stdin=stdin)
    refused(out, name)
    assert because in out.stderr
    assert old.read_bytes() == b"old"
    assert sorted(os.listdir(tmp_path)) == before
    return out


def npy_with_header(path: Path, header: str, data: bytes = b"") -> Path:
    """A .npy file (version 1.0) with a hand-written header dictionary."""
    text = header.encode("latin1")
    pad = 64 - (10 + len(text) + 1) % 64
    body = text + b" " * pad + b"\n"
    path.write_bytes(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(body)) + body + data)
    return path


# ---------------------------------------------------------------- .npy headers

_F8 = "{'descr': '<f8', 'fortran_order': False, 'shape': %s, }"
#: A header, and why it is refused.
LYING_HEADERS = {
    "negative": (_F8 % "(-3, 3)", "negative dimension"),
    "negative-inner": (_F8 % "(4, -1)", "negative dimension"),
    "2**64 x 0": (_F8 % "(18446744073709551616, 0)", "too large"),
    "0 x 2**64": (_F8 % "(0, 18446744073709551616)", "too large"),
    "2**63": (_F8 % "(9223372036854775808,)", "too large"),
    "trillion": (_F8 % "(1000000000000, 3)", "truncated"),
    "one too many": (_F8 % "(5, 3)", "truncated"),
    "huge product": (_F8 % "(4294967296, 4294967296)", "truncated"),
    "object": ("{'descr': '|O', 'fortran_order': False, 'shape': (4, 3), }", "Python objects"),
    "not a dict": ("[1, 2, 3]", "malformed"),
    "unknown dtype": ("{'descr': '<q9', 'fortran_order': False, 'shape': (4, 3), }", "malformed"),
}


@pytest.mark.parametrize("case", sorted(LYING_HEADERS))
def test_npy_headers_that_lie_are_refused(tmp_path, target, case) -> None:
    header, because = LYING_HEADERS[case]
    bad = npy_with_header(tmp_path / "bad.npy", header, b"\0" * 96)
    refused_keeping_output(tmp_path, bad, target, "bad.npy", because)


def test_npy_header_names_the_declared_and_available_bytes(tmp_path, target) -> None:
    bad = npy_with_header(tmp_path / "bad.npy", LYING_HEADERS["trillion"][0], b"\0" * 96)
    out = invoke("compute", bad, target)
    refused(out, "bad.npy")
    assert "24,000,000,000,000 bytes" in out.stderr and "96 bytes follow" in out.stderr


@pytest.mark.parametrize("shape", [(5, 0), (0, 5), (0,), (5, 0, 2)])
@pytest.mark.parametrize("reduction", ["none", "sum", "batchmean", "mean"])
def test_empty_dimensions_are_computed_or_refused_cleanly(tmp_path, shape, reduction) -> None:
    """An empty row is a sum of nothing (0); no rows at all may be refused, in one line."""
    np.save(x := tmp_path / "x.npy", np.zeros(shape))
    out = invoke("compute", x, x, "-r", reduction, "-q", "-f", "json")
    if out.exit_code == 2:
        refused(out, "x.npy")
    else:
        assert out.exit_code == 0 and out.stderr == "", out.stderr
        assert shape[0] == 0 or "loss" in out.stdout


# ---------------------------------------------------------------- .npz bombs


def _npz(path: Path, arrays: dict[str, np.ndarray]) -> Path:
    np.savez_compressed(path, **arrays)
    return path


def _patch_declared_size(path: Path, size: int) -> None:
    """Make the zip's local and central headers declare ``size`` uncompressed bytes."""
    raw = bytearray(path.read_bytes())
    local = raw.index(b"PK\x03\x04")
    raw[local + 22 : local + 26] = struct.pack("<I", size)
    central = raw.index(b"PK\x01\x02")
    raw[central + 24 : central + 28] = struct.pack("<I", size)
    path.write_bytes(bytes(raw))


def test_npz_member_declaring_an_impossible_ratio_is_refused(tmp_path, target) -> None:
    bad = _npz(tmp_path / "bomb.npz", {"x": np.zeros((4, 3))})
    _patch_declared_size(bad, 0xFFFFFFF0)
    refused_keeping_output(tmp_path, bad, target, "bomb.npz", "zip bomb")


def test_stored_npz_member_declaring_more_than_it_holds(tmp_path, target) -> None:
    """The zip says 4 KiB, the .npy header 960 bytes of data; only 96 are there."""
    header = "{'descr': '<f8', 'fortran_order': False, 'shape': (40, 3), }"
    member = npy_with_header(tmp_path / "m.npy", header, b"\0" * 96).read_bytes()
    with zipfile.ZipFile(bad := tmp_path / "stored.npz", "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("x.npy", member)
    _patch_declared_size(bad, 4096)
    np.save(target, np.full((40, 3), 1 / 3))
    refused_keeping_output(tmp_path, bad, target, "stored.npz[x]", "is truncated")


def test_npz_member_larger_than_memory_is_refused_before_inflating(
    tmp_path, target, monkeypatch
) -> None:
    from kldiv_cli.io import paths

    bad = _npz(tmp_path / "big.npz", {"x": np.zeros((4096, 3))})  # 98 KiB inflated
    monkeypatch.setattr(paths, "memory_available", lambda: 64 << 10)
    out = invoke("compute", bad, target)
    refused(out, "big.npz[x]")
    assert "memory available" in out.stderr


def test_large_npz_members_stream_with_the_bits_of_a_whole_read(tmp_path, monkeypatch) -> None:
    from kldiv_cli.io import base

    rng = np.random.default_rng(5)
    x = np.log(rng.dirichlet(np.ones(7), size=1000))
    t = rng.dirichlet(np.ones(7), size=1000)
    _npz(xp := tmp_path / "x.npz", {"x": x})
    _npz(tp := tmp_path / "t.npz", {"t": t})
    whole = invoke("compute", xp, tp, "-r", "sum", "-f", "plain")
    monkeypatch.setattr(base, "STREAM_ABOVE", 0)
    streamed = invoke("compute", xp, tp, "-r", "sum", "-f", "plain", "--chunk-rows", "64")
    assert whole.exit_code == streamed.exit_code == 0, whole.stderr + streamed.stderr
    assert whole.stdout == streamed.stdout


def test_npz_damaged_midway_fails_in_one_line(tmp_path, target, monkeypatch) -> None:
    from kldiv_cli.io import base

    bad = _npz(tmp_path / "bad.npz", {"x": np.random.default_rng(2).random((2000, 3))})
    raw = bytearray(bad.read_bytes())
    raw[len(raw) // 2 : len(raw) // 2 + 64] = b"\xff" * 64
    bad.write_bytes(bytes(raw))
    np.save(target, np.full((2000, 3), 1 / 3))
    for stream_above in (1 << 30, 0):
        monkeypatch.setattr(base, "STREAM_ABOVE", stream_above)
        refused_keeping_output(tmp_path, bad, target, "bad.npz", "damaged")


def test_npz_member_names_with_escapes_are_shown_escaped(tmp_path, target) -> None:
    bad = _npz(tmp_path / "names.npz", {"a\x1b[2J": np.zeros(3), "b\x1b]0;pwn\x07": np.zeros(3)})
    out = invoke("compute", bad, target)
    refused(out, "names.npz")
    assert "\\x1b[2J" in out.stderr


def test_npz_with_a_member_not_npy_only(tmp_path, target) -> None:
    with zipfile.ZipFile(bad := tmp_path / "none.npz", "w") as zf:
        zf.writestr("readme.txt", "hello")
    refused_keeping_output(tmp_path, bad, target, "none.npz")


def test_encrypted_npz(tmp_path, target) -> None:
    with zipfile.ZipFile(bad := tmp_path / "enc.npz", "w") as zf:
        zf.writestr("x.npy", target.read_bytes())
    raw = bytearray(bad.read_bytes())
    raw[6] |= 1  # the "encrypted" flag, local and central headers
    raw[raw.index(b"PK\x01\x02") + 8] |= 1
    bad.write_bytes(bytes(raw))
    refused_keeping_output(tmp_path, bad, target, "enc.npz", "encrypted")


# ---------------------------------------------------------------- streams


def _fifo(
    tmp_path: Path, name: str, feed: Callable[[object], None]
) -> tuple[Path, threading.Thread]:
    """A FIFO whose writer runs in a thread (it blocks until kldiv opens the FIFO)."""
    path = tmp_path / name
    os.mkfifo(path)

    def write() -> None:
        try:
            with open(path, "wb") as f:
                feed(f)
        except BrokenPipeError:  # kldiv stopped reading: what an endless stream meets
            pass

    thread = threading.Thread(target=write, daemon=True)
    thread.start()
    return path, thread


def test_a_fifo_is_read_like_stdin(tmp_path, target) -> None:
    x = np.log(np.full((4, 3), 1 / 3))
    np.save(xp := tmp_path / "x.npy", x)
    fifo, thread = _fifo(tmp_path, "pipe", lambda f: f.write(xp.read_bytes()))
    out = invoke("compute", fifo, target, "-r", "sum", "-f", "plain")
    thread.join(5)
    assert out.exit_code == 0, out.stderr
    assert float(out.stdout) == pytest.approx(0.0, abs=1e-12)


def test_a_fifo_with_an_extension_uses_it(tmp_path, target) -> None:
    text = "a,b,c\n" + "\n".join(
        ["-1.0986122886681098,-1.0986122886681098,-1.0986122886681098"] * 4
    )
    fifo, thread = _fifo(tmp_path, "x.csv", lambda f: f.write(text.encode()))
    out = invoke("compute", fifo, target, "-r", "sum", "-f", "plain")
    thread.join(5)
    assert out.exit_code == 0, out.stderr
    assert abs(float(out.stdout)) < 1e-12


def test_an_endless_fifo_hits_the_stream_limit(tmp_path, target, monkeypatch) -> None:
    from kldiv_cli.io import paths

    monkeypatch.setattr(paths, "memory_available", lambda: 8 << 20)

    def endless(f) -> None:
        line = b"0.5,0.5,0.5\n" * 4096
        while True:
            f.write(line)

    fifo, thread = _fifo(tmp_path, "endless", endless)
    refused_keeping_output(tmp_path, fifo, target, "endless", "larger than the 4,194,304 bytes")


def test_a_fifo_is_checked_against_its_extension_from_its_first_bytes(tmp_path, target) -> None:
    fifo, thread = _fifo(tmp_path, "x.parquet", lambda f: f.write(b"0.5,0.5,0.5\n" * 10))
    refused_keeping_output(tmp_path, fifo, target, "x.parquet", "not parquet data")


def test_an_empty_fifo(tmp_path, target) -> None:
    fifo, thread = _fifo(tmp_path, "empty", lambda f: None)
    refused_keeping_output(tmp_path, fifo, target, "empty", "is empty")


@pytest.mark.parametrize("fmt", [None, "npy", "npz", "parquet", "csv"])
def test_dev_zero_fails_at_once(tmp_path, target, fmt) -> None:
    args = ("--input-format", fmt) if fmt else ()
    refused_keeping_output(tmp_path, "/dev/zero", target, "/dev/zero", options=args)


def test_dev_null_is_empty(tmp_path, target) -> None:
    refused_keeping_output(tmp_path, "/dev/null", target, "/dev/null", "is empty")


def test_a_directory_is_not_a_file(tmp_path, target) -> None:
    (d := tmp_path / "d.npy").mkdir()
    refused_keeping_output(tmp_path, d, target, "d.npy", "directory")


def test_stdin_is_bounded(tmp_path, target, monkeypatch) -> None:
    from kldiv_cli.io import paths

    monkeypatch.setattr(paths, "memory_available", lambda: 1 << 20)
    big = b"0.5,0.5,0.5\n" * 100_000
    refused_keeping_output(tmp_path, "-", target, "<stdin>", "larger than", stdin=big)


def test_stdin_of_binary_noise_fails_from_its_head(tmp_path, target) -> None:
    noise = np.random.default_rng(1).bytes(1 << 20).replace(b"PK", b"pk")
    refused_keeping_output(tmp_path, "-", target, "<stdin>", "binary", stdin=b"\x00" + noise)


def test_process_substitution_works(tmp_path, target) -> None:
    """``kldiv compute <(cat x.npy) t.npy``: the shell passes /dev/fd/63, a pipe."""
    np.save(xp := tmp_path / "x.npy", np.log(np.full((4, 3), 1 / 3)))
    pq.write_table(
        pa.table({"a": [1 / 3] * 4, "b": [1 / 3] * 4, "c": [1 / 3] * 4}),
        tp := tmp_path / "t.parquet",
    )
    kldiv = f"'{sys.executable}' -m kldiv_cli compute"
    script = f"{kldiv} <(cat '{xp}') <(cat '{tp}') -r sum -f plain && {kldiv} <(cat '{xp}') '{target}' -q"
    proc = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert [abs(float(v)) < 1e-12 for v in proc.stdout.split()] == [True, True]


def test_dev_fd_of_a_parquet_file_works(tmp_path, target) -> None:
    pq.write_table(pa.table({c: [np.log(1 / 3)] * 4 for c in "abc"}), xp := tmp_path / "x.parquet")
    with open(xp, "rb") as f:
        fd = f.fileno()
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "kldiv_cli",
                "compute",
                f"/dev/fd/{fd}",
                str(target),
                "-r",
                "sum",
                "-f",
                "plain",
            ],
            pass_fds=(fd,),
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert proc.returncode == 0, proc.stderr
    assert abs(float(proc.stdout)) < 1e-12


# ---------------------------------------------------------------- CSV without bounds


def _long_cell_csv(path: Path, where: str) -> Path:
    cell = "x" * (200 << 10)
    rows = ["a,b,c", "0.1,0.2,0.7", "0.1,0.2,0.7", "0.1,0.2,0.7", "0.1,0.2,0.7"]
    if where == "header":
        rows[0] = f"{cell},b,c"
    elif where == "text":
        rows[2] = f"{cell},0.2,0.7"
    else:  # quoted, with the delimiter and newlines inside
        rows[3] = '"' + "1,\n" * (70 << 10) + '",0.2,0.7'
    path.write_text("\n".join(rows) + "\n")
    return path


@pytest.mark.parametrize("where", ["header", "text", "quoted"])
def test_csv_cell_over_128_kib(tmp_path, target, where) -> None:
    bad = _long_cell_csv(tmp_path / "cell.csv", where)
    refused_keeping_output(tmp_path, bad, target, "cell.csv", "131,072")
    assert len(invoke("compute", bad, target).stderr) < 1000


def test_csv_single_line_without_newline(tmp_path, target, monkeypatch) -> None:
    from kldiv_cli.io import csv_text

    # The limit is 64 MiB: a smaller one here keeps the test fast, the path the same.
    monkeypatch.setattr(csv_text, "MAX_LINE", 1 << 16)
    (bad := tmp_path / "line.csv").write_bytes(b"0.5," * (1 << 18))
    refused_keeping_output(tmp_path, bad, target, "line.csv", "line 1 is longer")


def test_csv_error_search_is_bounded(tmp_path, target, monkeypatch) -> None:
    """A parse error's line is searched line by line, never the whole file at once."""
    from kldiv_cli.io import csv_text

    monkeypatch.setattr(csv_text, "MAX_LINE", 1 << 16)
    (bad := tmp_path / "ragged.csv").write_bytes(b"a,b\n" + b"1" * (1 << 20) + b"\n1,2,3\n")
    out = invoke("compute", bad, target)
    refused(out, "ragged.csv")


def test_a_semicolon_file_read_with_commas_names_the_delimiter(tmp_path, target) -> None:
    (bad := tmp_path / "semi.csv").write_text("a;b;c\n0.1;0.2;0.7\n")
    refused_keeping_output(tmp_path, bad, target, "semi.csv", "--delimiter ';'")


@pytest.mark.parametrize("delimiter", ["\n", "\r", '"', "ab"])
def test_impossible_delimiters_are_usage_errors(target, delimiter) -> None:
    out = invoke(
        "compute", SAMPLES / "predicted.csv", SAMPLES / "observed.csv", "--delimiter", delimiter
    )
    assert out.exit_code == 2 and out.stdout == ""
    assert len(out.stderr.splitlines()) == 1 and "delimiter" in out.stderr
    assert not CONTROL.search(out.stderr)


@pytest.mark.parametrize("spec", ["", ",", " , "])
def test_an_empty_column_selection_is_a_usage_error(spec) -> None:
    out = invoke(
        "compute", SAMPLES / "predicted.csv", SAMPLES / "observed.csv", "--target-columns", spec
    )
    assert out.exit_code == 2 and "names no column" in out.stderr
    assert len(out.stderr.splitlines()) == 1


DUPLICATES: dict[str, Callable[[Path], Path]] = {
    "csv": lambda d: (d / "dup.csv", (d / "dup.csv").write_text("a,b,a\n0.1,0.2,0.7\n" * 1))[0],
    "tsv": lambda d: (d / "dup.tsv", (d / "dup.tsv").write_text("a\ta\tb\n0.1\t0.2\t0.7\n"))[0],
    "parquet": lambda d: (
        d / "dup.parquet",
        pq.write_table(pa.table([[0.1], [0.2], [0.7]], names=["a", "b", "a"]), d / "dup.parquet"),
    )[0],
    "arrow": lambda d: (
        d / "dup.arrow",
        feather.write_feather(
            pa.table([[0.1], [0.2], [0.7]], names=["a", "a", "b"]), d / "dup.arrow"
        ),
    )[0],
}


@pytest.mark.parametrize("fmt", sorted(DUPLICATES))
def test_duplicate_column_names(tmp_path, target, fmt) -> None:
    bad = DUPLICATES[fmt](tmp_path)
    refused_keeping_output(tmp_path, bad, target, bad.name, "two columns named 'a'")


@pytest.mark.parametrize("fmt", ["csv", "tsv", "arrow"])
def test_duplicate_column_names_in_drift(tmp_path, fmt) -> None:
    """Through the typed-columns API (drift reads Parquet files itself)."""
    bad = DUPLICATES[fmt](tmp_path)
    out = invoke("drift", bad, bad)
    refused(out, bad.name)
    assert "two columns named 'a'" in out.stderr


# ---------------------------------------------------------------- datasets


def test_a_recursive_glob_over_symlink_loops_terminates(tmp_path, target) -> None:
    part = tmp_path / "ds" / "day=1"
    part.mkdir(parents=True)
    pq.write_table(pa.table({c: [np.log(1 / 3)] * 4 for c in "abc"}), part / "p.parquet")
    for name, to in (("up", ".."), ("self", "."), ("root", str(tmp_path))):
        (part / name).symlink_to(to)
    out = invoke(
        "compute", str(tmp_path / "ds" / "**" / "*.parquet"), target, "-r", "sum", "-f", "plain"
    )
    assert out.exit_code == 0, out.stderr
    assert abs(float(out.stdout)) < 1e-12
    out = invoke("compute", tmp_path / "ds", target, "-r", "sum", "-f", "plain")
    assert out.exit_code == 0, out.stderr


def test_a_glob_matching_nothing(tmp_path, target) -> None:
    pattern = str(tmp_path / "**" / "*.parquet")
    refused_keeping_output(tmp_path, pattern, target, "*.parquet", "matches no files")


@pytest.mark.parametrize("fmt", ["arrow", "parquet"])
@pytest.mark.parametrize("command", ["compute", "drift", "inspect"])
def test_a_column_name_that_is_not_utf8_is_one_line(run_cli, tmp_path, fmt, command) -> None:
    """pyarrow decodes names on access: a name's bytes that are not UTF-8 (found by the
    mutation fuzzer) are the file's error, not 'unexpected UnicodeDecodeError'."""
    import io

    buf = io.BytesIO()
    table = pa.table({"zq": [0.5, 0.5], "c1": [0.5, 0.5]})
    if fmt == "arrow":
        feather.write_feather(table, buf, compression="uncompressed")
    else:
        pq.write_table(table, buf, compression="none")
    data = buf.getvalue()
    assert data.count(b"zq") >= 1
    path = tmp_path / f"t.{fmt}"
    path.write_bytes(data.replace(b"zq", b"\xff\xfe"))
    x = tmp_path / "x.npy"
    np.save(x, np.log(np.full((2, 2), 0.5)))
    args = {"compute": (x, path), "drift": (path, path), "inspect": (path,)}[command]
    r = run_cli(command, *args)
    assert r.exit_code == 2, r.stderr
    assert r.stderr.splitlines() == [
        f"kldiv: error: {path}: has a column name that is not valid UTF-8"
    ]
    assert r.stdout == ""
