"""Ctrl-C and closed pipes, with the real process."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import numpy as np


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
    time.sleep(2.0)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=30)
    proc.stdin.close() if proc.stdin else None
    assert proc.returncode == 130, stderr
    assert b"Traceback" not in stderr
    assert stdout == b""
    assert out.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json", "x.npy"]


def test_head_closes_the_pipe_quietly(tmp_path) -> None:
    rng = np.random.default_rng(0)
    np.save(x := tmp_path / "x.npy", np.log(rng.dirichlet(np.ones(50), 20000)))
    np.save(t := tmp_path / "t.npy", rng.dirichlet(np.ones(50), 20000))
    cmd = f"'{sys.executable}' -m kldiv_cli compute '{x}' '{t}' -r none -f plain | head -n 1"
    proc = subprocess.run(
        ["bash", "-o", "pipefail", "-c", cmd], capture_output=True, text=True, timeout=120
    )
    assert len(proc.stdout.splitlines()) == 1
    assert proc.stderr == ""
    assert proc.returncode == 0
