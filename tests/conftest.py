from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import settings

from .helpers import ROOT, SAMPLES, kldiv_subprocess, local_cluster

__all__ = ["ROOT", "SAMPLES", "kldiv_subprocess"]

# As Typer's own CI: plain help, a wide terminal, no colour codes in assertions.
os.environ["_TYPER_FORCE_DISABLE_TERMINAL"] = "1"
os.environ["TERMINAL_WIDTH"] = "200"
os.environ.pop("FORCE_COLOR", None)

# Bytecode caches on, whatever the machine says (PYTHONDONTWRITEBYTECODE): without them
# every worker re-compiles the rewritten test modules (2.4 s of collection each) and
# every kldiv subprocess re-compiles the package's modules. Caches change no result.
sys.dont_write_bytecode = False
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)


def _ram_disk(path: str = "/dev/shm", room: int = 2 << 30) -> bool:
    """``path`` is a writable folder with ``room`` bytes free (on Linux, a RAM disk)."""
    try:
        st = os.statvfs(path)
    except OSError:
        return False
    return os.path.isdir(path) and os.access(path, os.W_OK) and st.f_bavail * st.f_frsize >= room


# Temporary files (pytest's tmp_path, kldiv's and its child processes') on a RAM disk when
# the machine has one and TMPDIR does not say otherwise: on this machine's disk (ext4
# mounted with discard) writing them cost I/O waits, and deleting one earlier run's (what
# pytest does at the end of a run) took 10 s. The xdist workers inherit TMPDIR.
if "TMPDIR" not in os.environ and _ram_disk():
    os.environ["TMPDIR"] = "/dev/shm"
    tempfile.tempdir = None  # gettempdir() reads TMPDIR again

# Property tests never time out (a loaded 2-core machine made deadlines flaky) and, by
# default, draw the same examples on every run (50 where a test does not say), so a CI
# run is reproducible and short: a new example that fails is found by exploring
# (KLDIV_HYPOTHESIS=explore: fresh random examples, hypothesis's own counts, the example
# database), then kept as an explicit test.
settings.register_profile("default", deadline=None, derandomize=True, max_examples=50)
settings.register_profile("explore", deadline=None)
settings.load_profile(os.environ.get("KLDIV_HYPOTHESIS", "default"))


@pytest.fixture()
def run_cli(monkeypatch: pytest.MonkeyPatch):
    """Run the CLI in-process with typer's CliRunner (stdout and stderr kept apart)."""
    import typer.testing

    from kldiv_cli.cli import app
    from kldiv_cli.cli.app import click_command

    # The runner would build the Click group of every loaded command on each call
    # (5-10 ms): it gets the one that kldiv's own run() builds once per process.
    monkeypatch.setattr(typer.testing, "_get_command", lambda typer_app: click_command())
    runner = typer.testing.CliRunner()

    def run(*args: str, input: bytes | str | None = None):
        return runner.invoke(app, [str(a) for a in args], input=input)

    return run


@pytest.fixture()
def pair(tmp_path: Path):
    """A small (input log-probs, target probs) pair as .npy files, and the arrays."""
    rng = np.random.default_rng(3)
    t = rng.dirichlet(np.ones(5), size=6)
    x = np.log(rng.dirichlet(np.ones(5), size=6))
    xp, tp = tmp_path / "x.npy", tmp_path / "t.npy"
    np.save(xp, x)
    np.save(tp, t)
    return xp, tp, x, t


@pytest.fixture(scope="session")
def dask_cluster():
    """One Dask cluster of two worker processes for every test on a real cluster in this
    process (each worker process costs 0.6 s of CPU to start). Its workers have dummy S3
    credentials, which the tests' moto servers accept. A task is retried once after its
    worker dies (the default three make the dying-worker tests long)."""
    pytest.importorskip("distributed")
    with local_cluster(2, allowed_failures=1) as cluster:
        yield cluster


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The modules with tests on :func:`dask_cluster` first, so that under xdist's
    ``--dist worksteal`` (which hands each worker a contiguous part of this order and
    steals from the end of it) one worker runs them and starts the cluster once."""
    on_cluster = {
        item.path for item in items if "dask_cluster" in getattr(item, "fixturenames", ())
    }
    items.sort(key=lambda item: item.path not in on_cluster)


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """``-n auto``: one worker more than the cores. Part of the suite waits rather than
    computes (child processes starting, a Dask cluster, a mute scheduler's timeout, a
    signal's delivery), and a third worker on two cores fills those waits: the whole
    suite 47.9 -> 44.0 s here."""
    return (os.cpu_count() or 1) + 1
