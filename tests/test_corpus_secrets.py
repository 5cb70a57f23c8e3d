"""Round 3 of the corpus: secrets planted in paths, addresses and options never reach any
output (messages, ``--debug`` tracebacks, reports, profiles, recorded command lines), and
Dask schedulers that misbehave end in one line, in time, leaving nothing behind.

Every case plants :data:`SECRET` and searches for it in stdout, stderr and every file
the run left, with and without ``--debug``.
"""

from __future__ import annotations

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

from .corpus.make_corpus import pair_npy
from .test_corpus import assert_kldiv_stderr, run_kldiv, snapshot

SECRET = "SECRETxyz123"


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
        "not a Dask scheduler address",
    ),
    "scheduler-bare-userinfo": (
        _with("--engine", "dask", "--scheduler", f"user:{SECRET}@127.0.0.1:1"),
        "scheduler",
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
    assert_kldiv_stderr(stderr, code, r"tcp://\*\*\*@127.0.0.1:1")
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
