"""Round 3 of the corpus: secrets planted in paths, addresses and options never reach any
output (messages, ``--debug`` tracebacks, reports, profiles, recorded command lines), and
Dask schedulers that misbehave end in one line, in time, leaving nothing behind.

Every case plants :data:`SECRET` and searches for it in stdout, stderr and every file
the run left, with and without ``--debug``.
"""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from .corpus.make_corpus import pair_npy, table_csv
from .test_corpus import assert_kldiv_stderr, run_kldiv, snapshot

SECRET = "SECRETxyz123"

#: Without Dask's extra, an --engine dask run ends at the missing package, before any
#: address is looked at: the line to expect then (and still no secret in it).
NO_DASK = importlib.util.find_spec("distributed") is None
NEEDS_DASK = "needs Dask's distributed package"


def _everything(folder: Path) -> Iterator[tuple[str, bytes]]:
    for root, _, files in os.walk(folder):
        for name in files:
            path = os.path.join(root, name)
            yield path, Path(path).read_bytes()


def assert_no_secret(folder: Path, *streams: bytes) -> None:
    """The marker is in no stream and in no file under ``folder`` but the inputs'
    names (the test planted it there)."""
    for stream in streams:
        assert SECRET.encode() not in stream, stream.decode(errors="replace")
    for path, data in _everything(folder):
        assert SECRET.encode() not in data, path


def _parquet_folder(d: Path, name: str, seed: int) -> str:
    folder = d / name
    folder.mkdir()
    rng = np.random.default_rng(seed)
    table = pa.table({"id": np.arange(50), "x": rng.normal(size=50), "y": rng.integers(0, 3, 50)})
    pq.write_table(table, folder / "part-0.parquet")
    return str(folder)


# --- secrets in the error line (exit 2) ------------------------------------------------

Build = Callable[[Path], list[str]]


def _compute(first: str) -> Build:
    return lambda d: ["compute", first, pair_npy(d)[1]]


def _with(*extra: str) -> Build:
    return lambda d: ["compute", *pair_npy(d), *extra]


ERRORS: dict[str, tuple[Build, str]] = {
    "s3-userinfo": (_compute(f"s3://AKIAKEY:{SECRET}@bucket/x.npy"), "credentials in the URL"),
    "s3-key-only": (_compute(f"s3://{SECRET}@bucket/x.npy"), "credentials in the URL"),
    "gs-userinfo": (_compute(f"gs://u:{SECRET}@bucket/x.npy"), "credentials in the URL"),
    "hdfs-userinfo": (_compute(f"hdfs://user:{SECRET}@host/x.npy"), "credentials in the URL"),
    "abfs-userinfo": (_compute(f"abfs://c:{SECRET}@acct/x.npy"), "credentials in the URL"),
    "https-userinfo": (_compute(f"https://user:{SECRET}@host/x.npy"), "no such file"),
    "presigned-query": (
        _compute(f"x.npy?X-Amz-Credential=AKIA&X-Amz-Signature={SECRET}"),
        r"X-Amz-Signature=\*\*\*",
    ),
    "sas-query": (_compute(f"x.npy?sv=2024&sig={SECRET}&se=1"), r"sig=\*\*\*"),
    "secret-key-query": (_compute(f"data.npy?secret_key={SECRET}"), "no such file"),
    "storage-option-colon": (
        _with("--storage-option", f"aws_secret_access_key:{SECRET}"),
        "KEY=VALUE",
    ),
    "storage-option-bare-value": (_with("--storage-option", SECRET), "KEY=VALUE"),
    "storage-option-secret-key": (
        _with("--storage-option", f"aws_secret_access_key={SECRET}"),
        "environment only",
    ),
    "storage-option-bad-boolean": (
        lambda d: [*_compute("s3://bucket/x.npy")(d), "--storage-option", f"anonymous={SECRET}"],
        "true or false",
    ),
    "scheduler-userinfo": (
        _with("--engine", "dask", "--scheduler", f"tcp://user:{SECRET}@127.0.0.1:1"),
        NEEDS_DASK if NO_DASK else "not a Dask scheduler address",
    ),
    "scheduler-bare-userinfo": (
        _with("--engine", "dask", "--scheduler", f"user:{SECRET}@127.0.0.1:1"),
        NEEDS_DASK if NO_DASK else "scheduler",
    ),
}


@pytest.mark.parametrize("debug", [False, True], ids=["plain", "debug"])
@pytest.mark.parametrize("name", list(ERRORS))
def test_a_planted_secret_is_in_no_error(name: str, debug: bool, tmp_path: Path) -> None:
    build, error = ERRORS[name]
    argv = build(tmp_path)
    before = snapshot(tmp_path)
    code, stdout, stderr = run_kldiv([*argv, *(["--debug"] if debug else [])])
    assert code == 2, stderr
    assert stdout == b""
    assert_no_secret(tmp_path, stdout, stderr)
    if not debug:
        assert_kldiv_stderr(stderr, code, error)
        assert len(stderr.splitlines()) == 1, stderr
    else:
        assert stderr.decode().splitlines()[-1].startswith("kldiv: error: "), stderr
    assert snapshot(tmp_path) == before


def test_the_scheduler_address_from_the_environment_is_redacted(tmp_path: Path) -> None:
    argv = ["compute", *pair_npy(tmp_path), "--engine", "dask"]
    env = {"DASK_SCHEDULER_ADDRESS": f"tcp://u:{SECRET}@127.0.0.1:1"}
    code, stdout, stderr = run_kldiv(argv, env=env)
    assert code == 2
    assert_kldiv_stderr(stderr, code, NEEDS_DASK if NO_DASK else r"tcp://\*\*\*@127.0.0.1:1")
    assert_no_secret(tmp_path, stdout, stderr)


def test_the_catch_all_and_debug_tracebacks_are_redacted() -> None:
    """An unexpected exception whose arguments hold a credential (as pyarrow's and
    distributed's do, quoting the URL they were given)."""
    import io

    from kldiv_cli.cli.boundary import Environment, exit_code_for

    for debug in (False, True):
        err = io.StringIO()
        env = Environment(io.StringIO(), err, None, False, False, debug=debug)
        try:
            raise RuntimeError(f"got a URI: 'AKIA:{SECRET}@bucket/x' (s3://k:{SECRET}@b/x)")
        except RuntimeError as exc:
            assert exit_code_for(exc, env) == 2
        text = err.getvalue()
        assert SECRET not in text and "unexpected RuntimeError" in text
        assert ("Traceback" in text) == debug


# --- secrets in paths that succeed: every report, profile and recorded command ------------


def test_no_secret_in_reports_profiles_or_recorded_commands(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    ref = _parquet_folder(data, f"ref?token={SECRET}", 0)
    cur = _parquet_folder(data, f"cur?sig={SECRET}", 1)
    out = tmp_path / "out"
    out.mkdir()
    hidden = ["--storage-option", f"endpoint=http://u:{SECRET}@127.0.0.1:9"]
    runs = [
        [
            "drift",
            ref,
            cur,
            "-o",
            out / "r.json",
            "--junit",
            out / "r.xml",
            "--html",
            out / "r.html",
        ],
        ["drift", ref, cur, "-f", "json", *hidden],
        ["drift", ref, cur, "-f", "markdown"],
        ["drift", ref, cur, "-o", out / "r.csv", *hidden, "--storage-option", "region=x"],
        ["profile", ref, "-o", out / "ref.profile.json"],
        ["inspect", ref, "-f", "json"],
        ["compute", ref, ref, "--input-columns", "x", "--target-columns", "x", "-f", "json"],
    ]
    for argv in runs:
        code, stdout, stderr = run_kldiv(argv)
        assert code in (0, 1), (argv, stderr)
        assert_no_secret(out, stdout, stderr)
    profile = json.loads((out / "ref.profile.json").read_text())
    assert profile["source"].endswith("ref?token=***"), profile["source"]
    report = json.loads((out / "r.json").read_text())
    assert "token=***" in json.dumps(report)
    code, stdout, stderr = run_kldiv(["drift", out / "ref.profile.json", cur, "-f", "json"])
    assert code in (0, 1) and SECRET not in (stdout + stderr).decode()


# --- Dask schedulers that misbehave ----------------------------------------------------


class MuteScheduler:
    """A TCP server on 127.0.0.1 that accepts every connection and never answers."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.held: list[socket.socket] = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            self.held.append(conn)

    def close(self) -> None:
        self.server.close()
        for conn in self.held:
            conn.close()


@pytest.fixture
def mute() -> Iterator[MuteScheduler]:
    server = MuteScheduler()
    yield server
    server.close()


@pytest.fixture
def scratch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """This process's temporary folder, to see what a run leaves there."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


@pytest.mark.parametrize("command", ["compute", "drift"])
def test_a_mute_scheduler_fails_in_time(command, mute, scratch, tmp_path: Path) -> None:
    pytest.importorskip("distributed")
    if command == "compute":
        argv = ["compute", *pair_npy(tmp_path)]
    else:
        argv = ["profile", _parquet_folder(tmp_path, "ref", 0)]
    address = f"tcp://u:{SECRET}@127.0.0.1:{mute.port}"
    started = time.monotonic()
    code, stdout, stderr = run_kldiv(
        [
            *argv,
            "--engine",
            "dask",
            "--scheduler",
            address.replace(f"u:{SECRET}@", ""),
            "--timeout",
            "0.2",
        ]
    )
    assert time.monotonic() - started < 8
    assert code == 2 and stdout == b""
    assert_kldiv_stderr(
        stderr,
        code,
        rf"could not connect to the Dask scheduler at tcp://127.0.0.1:{mute.port} "
        r"within 0.2 s \(it accepted the connection but did not answer",
    )
    assert list(scratch.iterdir()) == []


@pytest.mark.parametrize(
    "content, error",
    [
        (b"garbage", r"not a Dask scheduler file \(not JSON\)"),
        (b"{}", r"names no 'address'"),
        (b"[1, 2]", r"names no 'address'"),
        (b'{"address": 5}', r"names no 'address'"),
        (b'{"address": ""}', r"names no 'address'"),
        (b"\xff\xfe", r"not JSON"),
    ],
)
def test_a_bad_scheduler_file_is_one_line(content, error, scratch, tmp_path: Path) -> None:
    pytest.importorskip("distributed")
    file = tmp_path / "scheduler.json"
    file.write_bytes(content)
    argv = ["compute", *pair_npy(tmp_path), "--engine", "dask", "--scheduler-file", file]
    code, stdout, stderr = run_kldiv(argv)
    assert code == 2 and stdout == b""
    assert_kldiv_stderr(stderr, code, rf"--scheduler-file .*scheduler.json: is {error}|{error}")
    assert len(stderr.splitlines()) == 1
    assert list(scratch.iterdir()) == []


@pytest.mark.parametrize(
    "extra, error",
    [
        (("--scheduler", ""), r"'--scheduler'.*is empty"),
        (("--scheduler", "  "), r"'--scheduler'.*is empty"),
        (("--scheduler-file", ""), r"'--scheduler-file'.*is empty"),
        (("--timeout", "0"), r"--timeout must be"),
        (("--timeout", "nan"), r"--timeout must be"),
        (("--timeout", "inf"), r"--timeout must be"),
        (("--timeout", "1e9"), r"--timeout must be"),
    ],
)
def test_scheduler_options_at_the_edges(extra, error, tmp_path: Path) -> None:
    pytest.importorskip("distributed")
    argv = ["compute", *pair_npy(tmp_path), "--engine", "dask", *extra]
    code, stdout, stderr = run_kldiv(argv)
    assert code == 2 and stdout == b""
    assert_kldiv_stderr(stderr, code, error)


def test_a_scheduler_file_naming_a_mute_scheduler(mute, scratch, tmp_path: Path) -> None:
    pytest.importorskip("distributed")
    file = tmp_path / "scheduler.json"
    file.write_text(json.dumps({"address": f"tcp://127.0.0.1:{mute.port}"}))
    argv = ["compute", *pair_npy(tmp_path), "--engine", "dask", "--scheduler-file", file]
    code, _, stderr = run_kldiv([*argv, "--timeout", "0.2"])
    assert code == 2
    assert_kldiv_stderr(stderr, code, r"scheduler of --scheduler-file .* within 0.2 s")
    assert list(scratch.iterdir()) == []


# --- the redaction function itself ----------------------------------------------------

_URL_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~%!$'()*+,;"


@settings(max_examples=60, deadline=None)
@given(
    scheme=st.sampled_from(["s3", "gs", "hdfs", "https", "tcp", "tls", "abfss"]),
    user=st.text(_URL_CHARS, min_size=1, max_size=8),
    password=st.text(_URL_CHARS + ":@", min_size=1, max_size=12),
    query=st.lists(
        st.tuples(st.text("abcXYZ-_", min_size=1), st.text(_URL_CHARS + ":/", min_size=1)),
        max_size=3,
    ),
    wrap=st.sampled_from(["{}", "'{}'", '"{}"', "({})", "{}: no such file", "got a URI: {}."]),
)
def test_redact_hides_user_info_and_query_values(scheme, user, password, query, wrap) -> None:
    from kldiv_cli.redact import redact

    marked = SECRET + password
    qs = "".join(f"{'&' if i else '?'}{k}={SECRET}{v}" for i, (k, v) in enumerate(query))
    text = wrap.format(f"{scheme}://{user}:{marked}@host.example:8786/bucket/x.npy{qs}")
    shown = redact(text)
    assert SECRET not in shown, shown
    assert "host.example:8786/bucket/x.npy" in shown
    assert redact(shown) == shown  # idempotent


@pytest.mark.parametrize(
    "text",
    [
        "column 'token_logp' of data.csv: line 3",
        "/data/token_counts.csv:3: not a number",
        "kl.p99=0.5, top1_agreement=0.93",
        "data/part-?.parquet: no such file (the pattern matches no files)",
        "time 12:30:00, ports 127.0.0.1:8786 and [::1]:8786",
        "--scheduler foo: not a Dask scheduler address; give tcp://HOST:PORT",
        "abfss://container@account.dfs.core.windows.net/x.parquet",
    ],
)
def test_redact_leaves_ordinary_messages_alone(text: str) -> None:
    from kldiv_cli.redact import redact

    assert redact(text) == text


def test_redact_argv_keeps_public_storage_options_only() -> None:
    from kldiv_cli.io import fs
    from kldiv_cli.redact import redact_argv

    argv = [
        "drift",
        f"s3://k:{SECRET}@b/x",
        "--storage-option",
        "region=eu-west-1",
        "--storage-option",
        SECRET,
        f"--storage-option=aws_secret_access_key:{SECRET}",
        "--storage-option",
        f"endpoint=http://u:{SECRET}@h:9",
        f"--scheduler=tcp://u:{SECRET}@h:1",
    ]
    shown = redact_argv(argv, fs.option_names())
    assert SECRET not in " ".join(shown)
    assert "region=eu-west-1" in shown and "endpoint=http://***@h:9" in shown


# --- messages stay short ------------------------------------------------------------------


def test_a_path_of_300_folders_is_one_short_line(tmp_path: Path) -> None:
    deep = "/".join(["d" * 200] * 300) + "/x.npy"
    code, _, stderr = run_kldiv(["compute", deep, pair_npy(tmp_path)[1]])
    assert code == 2
    assert_kldiv_stderr(stderr, code, r"(?i)\.\.\.d*/x\.npy: (no such file|file name too long)")
    assert len(stderr) < 400, len(stderr)


def test_an_npz_of_many_members_is_named_in_a_short_line(tmp_path: Path) -> None:
    many = tmp_path / "many.npz"
    np.savez(many, **{f"m{i:05d}": np.zeros(1) for i in range(3_000)})
    code, _, stderr = run_kldiv(["inspect", many, "--key", "nope"])
    assert code == 2
    assert_kldiv_stderr(stderr, code, r"has no array 'nope'; it holds: m00000, .*\(3,000 in all\)")
    assert len(stderr) < 400, len(stderr)


def test_shorten_bounds_any_line() -> None:
    from kldiv_cli.text import LINE_LIMIT, WORD_LIMIT, shorten

    assert shorten("short: message") == "short: message"
    long_word = shorten("x" * 100_000 + ": no such file")
    assert len(long_word) <= WORD_LIMIT + len(": no such file") and "..." in long_word
    many = shorten(", ".join(f"name{i}" for i in range(50_000)))
    assert len(many) <= LINE_LIMIT and many.startswith("name0, name1")


# --- option values at the edges -------------------------------------------------------

EDGES = [
    (("--dim", "-9223372036854775809"), r"--dim must be a 64-bit integer"),
    (("--dim", "1000"), r"--dim must be at most 63"),
    (("--threads", "99999999999999999999"), r"--threads must be a 64-bit integer"),
    (("--threads", "100000"), r"--threads must be at most 4,096"),
    (("--chunk-rows", "0"), r"--chunk-rows must be at least 1, got 0"),
    (("-T", "1e400"), r"--temperature must be a finite number"),
    (("--fail-above", "1e400"), r"--fail-above must be a finite number"),
    (("--fail-above", "-inf"), r"--fail-above must be a finite number"),
    (("--top", str(1 << 64)), r"--top must be a 64-bit integer"),
]


@pytest.mark.parametrize("extra, error", EDGES, ids=[e[0][0] + e[0][1][:6] for e in EDGES])
def test_numeric_options_are_range_checked(extra, error, tmp_path: Path) -> None:
    code, stdout, stderr = run_kldiv(["compute", *pair_npy(tmp_path), *extra])
    assert code == 2 and stdout == b""
    assert_kldiv_stderr(stderr, code, error)


@pytest.mark.parametrize(
    "toml, error",
    [
        ("default = 1e400\n", r"1e400 is too large for a float64"),
        ("[thresholds]\na = -1e999\n", r"too large for a float64"),
        ("default = nan\n", r"default must be a number >= 0"),
        ("default = -0.5\n", r"default must be a number >= 0"),
    ],
)
def test_thresholds_files_are_checked_on_load(toml, error, tmp_path: Path) -> None:
    ref, cur = table_csv(tmp_path, "ref.csv", ["a"]), table_csv(tmp_path, "cur.csv", ["a"])
    file = tmp_path / "t.toml"
    file.write_text(toml)
    code, stdout, stderr = run_kldiv(["drift", ref, cur, "--thresholds", file])
    assert code == 2 and stdout == b""
    assert_kldiv_stderr(stderr, code, error)


def test_an_inf_threshold_written_as_inf_still_turns_a_gate_off(tmp_path: Path) -> None:
    ref, cur = table_csv(tmp_path, "ref.csv", ["a"]), table_csv(tmp_path, "cur.csv", ["a"])
    file = tmp_path / "t.toml"
    file.write_text("default = inf\n")
    code, _, stderr = run_kldiv(["drift", ref, cur, "--thresholds", file, "-q"])
    assert code == 0, stderr


def test_a_gate_threshold_beyond_float64_is_refused(tmp_path: Path) -> None:
    from kldiv_cli.errors import UsageError
    from kldiv_cli.jobs.gates import parse_gate

    with pytest.raises(UsageError, match="too large for a float64"):
        parse_gate("kl.p99=1e400", "above")
    assert parse_gate("kl.p99=inf", "above").threshold == float("inf")


# --- files that are valid but unusual ---------------------------------------------------


def test_a_csv_whose_header_is_megabytes(tmp_path: Path) -> None:
    """A 2 MB header (20 names of 100,000 characters), beyond pyarrow's 1 MiB block:
    pyarrow said "Empty CSV file or block" before the block was sized to the header."""
    names = [f"{chr(97 + i)}" * 100_000 for i in range(20)]
    path = tmp_path / "long-header.csv"
    rows = "".join(",".join(f"{(r + c) % 7 / 7:.3f}" for c in range(20)) + "\n" for r in range(5))
    path.write_text(",".join(names) + "\n" + rows)
    assert path.stat().st_size > 1 << 20
    code, stdout, stderr = run_kldiv(["inspect", path, "-f", "json"])
    assert code == 0, stderr
    assert json.loads(stdout)["shape"] == [5, 20]
    code, stdout, stderr = run_kldiv(["compute", path, path, "-r", "sum", "-q"])
    assert code == 0, stderr
    t = np.array([[(r + c) % 7 / 7 for c in range(20)] for r in range(5)]).round(3)
    xlogy = t * np.log(t, out=np.zeros_like(t), where=t > 0)  # torch's xlogy(t, t)
    assert float(stdout) == pytest.approx(float(np.sum(xlogy - t * t)))


@pytest.mark.parametrize(
    "spelling, kind",
    [(s, "posinf") for s in ("inf", "Inf", "+inf", "Infinity", "+Infinity", "INFINITY", "1e999")]
    + [(s, "neginf") for s in ("-inf", "-Infinity", "-INF", "-1e999")]
    + [(s, "nan") for s in ("nan", "NaN", "NAN")],
)
def test_inspect_counts_every_spelling_compute_reads(spelling, kind, tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    path.write_text(f"id,a,b\n1,0.5,{spelling}\n2,0.25,0.75\n")
    code, stdout, stderr = run_kldiv(["inspect", path, "-f", "json", "--columns", "a,b"])
    assert code == 0, stderr
    counts = json.loads(stdout)
    assert counts[kind] == 1 and counts["nan"] + counts["posinf"] + counts["neginf"] == 1
    code, stdout, _ = run_kldiv(
        [
            "compute",
            path,
            path,
            "-r",
            "none",
            "-f",
            "json",
            "--input-columns",
            "a,b",
            "--target-columns",
            "a,b",
        ]
    )
    assert code == 0
    assert "NaN" in stdout.decode() or "nan" in stdout.decode().lower()


def _safetensors(path: Path, shape: list[int], offsets: tuple[int, int], data: bytes) -> None:
    import struct

    header = json.dumps({"t": {"dtype": "F32", "shape": shape, "data_offsets": list(offsets)}})
    path.write_bytes(struct.pack("<Q", len(header)) + header.encode() + data)


@pytest.mark.parametrize(
    "shape, offsets, error",
    [
        ([2**64, 0], (0, 0), r"has a dimension beyond 2\*\*62"),
        ([0, 2**70], (0, 0), r"has a dimension beyond 2\*\*62"),
        ([2**62 - 1, 2**62 - 1], (0, 16), r"data_offsets hold 16 bytes"),
        ([2**32, 2**32], (0, 0), r"data_offsets hold 0 bytes"),
    ],
)
@pytest.mark.parametrize("command", ["inspect", "compute"])
def test_safetensors_shapes_that_overflow(shape, offsets, error, command, tmp_path) -> None:
    path = tmp_path / "t.safetensors"
    _safetensors(path, shape, offsets, b"\0" * offsets[1])
    argv = ["inspect", path] if command == "inspect" else ["compute", path, path]
    code, stdout, stderr = run_kldiv(argv)
    assert code == 2 and stdout == b""
    assert_kldiv_stderr(stderr, code, error)
    assert len(stderr.splitlines()) == 1


def test_rows_of_no_values_are_refused_before_any_loop(tmp_path: Path) -> None:
    """An .npy header of 10**15 rows of width 0 holds no byte of data; summing it row
    block by row block would run for ever."""
    from numpy.lib import format as npformat

    path = tmp_path / "z.npy"
    with open(path, "wb") as f:
        npformat.write_array_header_1_0(
            f, {"descr": "<f4", "fortran_order": False, "shape": (10**15, 0)}
        )
    code, _, stderr = run_kldiv(["compute", path, path])
    assert code == 2
    assert_kldiv_stderr(
        stderr,
        code,
        r"z.npy: holds no values in more than 2,147,483,648 rows \(shape \(1000000000000000, 0\)\)",
    )


def test_sdk_chatter_never_reaches_stderr(capfd) -> None:
    """A store's SDK that runs a subprocess writing to fd 2 (Azure's credential chain
    running ``az``): dropped while a store call runs; stderr works again after it."""
    import subprocess
    import sys

    from kldiv_cli.io.fs import sdk_quiet

    with sdk_quiet(), sdk_quiet():  # nested and repeated calls share the redirection
        subprocess.run(["sh", "-c", "echo '/bin/sh: 1: az: not found' >&2"], check=True)
    sys.stderr.write("after\n")
    sys.stderr.flush()
    err = capfd.readouterr().err
    assert "az: not found" not in err and "after" in err
