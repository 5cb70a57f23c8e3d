"""Ctrl-C, SIGTERM, SIGHUP and closed pipes, with the real process."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest


def test_ctrl_c_exits_130_and_keeps_the_output(tmp_path) -> None:
    np.save(x := tmp_path / "x.npy", np.log(np.full((2, 2), 0.5)))
    out = tmp_path / "out.json"
    out.write_text("old")
    # Waits on stdin (a pipe that never closes) until interrupted.
    proc = subprocess.Popen(
        [sys.executable, "-m", "kldiv_cli", "compute", str(x), "-", "-o", str(out)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    time.sleep(1.0)  # Python's SIGINT handler is set in its first milliseconds
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=30)
    proc.stdin.close() if proc.stdin else None
    assert proc.returncode == 130, stderr
    assert b"Traceback" not in stderr
    assert stdout == b""
    assert out.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json", "x.npy"]


@pytest.mark.parametrize(
    "output", [("-f", "plain"), ("-o", "/dev/stdout")], ids=["stdout", "dev-stdout"]
)
def test_head_closes_the_pipe_quietly(tmp_path, output) -> None:
    """Into stdout, or into ``-o /dev/stdout`` (written as a stream): the same quiet end."""
    rng = np.random.default_rng(0)
    # 2,000 x 50 values: 2 MB of text, 30 times what a pipe holds before head closes it.
    np.save(x := tmp_path / "x.npy", np.log(rng.dirichlet(np.ones(50), 2000)))
    np.save(t := tmp_path / "t.npy", rng.dirichlet(np.ones(50), 2000))
    flags = " ".join(output)
    cmd = f"'{sys.executable}' -m kldiv_cli compute '{x}' '{t}' -r none {flags} -q | head -n 1"
    proc = subprocess.run(
        ["bash", "-o", "pipefail", "-c", cmd], capture_output=True, text=True, timeout=120
    )
    assert len(proc.stdout.splitlines()) == 1
    assert proc.stderr == ""
    assert proc.returncode == 0


def _temps(folder: Path) -> list[Path]:
    return [p for p in folder.iterdir() if p.name.startswith(".out.csv.") and p.suffix == ".tmp"]


@pytest.mark.parametrize(
    ("signum", "status"),
    [(signal.SIGTERM, -signal.SIGTERM), (signal.SIGHUP, -signal.SIGHUP), (signal.SIGINT, 130)],
    ids=["SIGTERM", "SIGHUP", "SIGINT"],
)
def test_a_signal_during_a_large_write_leaves_no_temp(
    tmp_path: Path, signum: int, status: int
) -> None:
    """Killed while ``-r none -o out.csv`` streams into its temporary file: the temporary
    file is removed, the old output is intact, and the process dies of the signal
    (returncode -N: the shell's exit status 128+N); Ctrl-C is kldiv's exit 130."""
    rng = np.random.default_rng(0)
    np.save(x := tmp_path / "x.npy", np.log(rng.dirichlet(np.ones(4), 20000)))
    np.save(t := tmp_path / "t.npy", rng.dirichlet(np.ones(4), 20000))
    out = tmp_path / "out.csv"
    out.write_text("old")
    argv = [sys.executable, "-m", "kldiv_cli", "compute", str(x), str(t), "-r", "none"]
    # One row per block: the write lasts seconds, long enough to be caught in the act.
    argv += ["--chunk-rows", "1", "-o", str(out), "-q"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while not any(p.stat().st_size > 0 for p in _temps(tmp_path) if p.exists()):
        assert proc.poll() is None and time.monotonic() < deadline, "the write ended first"
        time.sleep(0.01)
    proc.send_signal(signum)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == status, stderr
    assert b"Traceback" not in stderr
    assert stderr in (b"", b"kldiv: error: interrupted\n"), stderr
    assert stdout == b""
    assert out.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.csv", "t.npy", "x.npy"]


def test_mapped_blocks_release_their_pages_without_callbacks(tmp_path, monkeypatch) -> None:
    """A .npy streamed as views of its mapping releases each view's pages in the reading
    flow, not in a weakref callback: Python prints and drops a KeyboardInterrupt raised
    inside such a callback, and Ctrl-C during a --chunk-rows 1 compute (a callback per
    block) was then ignored, the command finishing with exit 0."""
    import weakref

    from kldiv_cli.io import npy
    from kldiv_cli.io.base import ReadOptions

    a = np.arange(64 * 4096, dtype=np.float64).reshape(-1, 4096)
    np.save(path := tmp_path / "a.npy", a)
    released: list[tuple[int, int]] = []
    original = npy._Mapped._release

    def spy(self, begin: int, end: int) -> None:  # type: ignore[no-untyped-def]
        released.append((begin, end))
        original(self, begin, end)

    monkeypatch.setattr(npy._Mapped, "_release", spy)
    source = npy.open_npy("a", str(path), None, "npy", ReadOptions())
    before = len(weakref.finalize._registry)  # type: ignore[attr-defined]
    total = 0.0
    for block in source.iter_rows(1):
        assert len(weakref.finalize._registry) == before  # type: ignore[attr-defined]
        total += float(block.sum())
        del block
    assert total == float(a.sum())
    # Each block dropped is released when the next one is taken (the last stays mapped
    # until the file closes).
    assert len(released) == 63 and len(set(released)) == 63
