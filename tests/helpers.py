"""What the test files share: running kldiv in-process and as a real process, and small data.

In-process runs go through :func:`kldiv_cli.cli.app.run`, the same boundary as the
installed command (usage errors, stdout failures, exit codes), with injected streams.
Subprocesses are for what only a real process shows: signals, pipes, ``python -m``.
"""

from __future__ import annotations

import importlib.util
import io
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "sample_data"


@dataclass
class Outcome:
    """What a run left behind: its exit code and its two streams, kept apart."""

    exit_code: int
    stdout: str
    stderr: str


class _Stdin(io.TextIOWrapper):
    """A text stdin with a ``buffer`` of bytes, as a real one has."""


def invoke(
    *args: object,
    stdin: bytes = b"",
    stdout_isatty: bool = False,
    stderr_isatty: bool = False,
    environ: dict[str, str] | None = None,
) -> Outcome:
    """Run ``kldiv ARGS`` in this process, through the real boundary."""
    from kldiv_cli.cli.app import run
    from kldiv_cli.cli.boundary import Environment

    out, err = io.StringIO(), io.StringIO()
    raw_in = io.BytesIO(stdin)
    env = Environment(
        stdout=out,
        stderr=err,
        stdin=raw_in,
        stdout_isatty=stdout_isatty,
        stderr_isatty=stderr_isatty,
        environ=environ if environ is not None else {},
    )
    saved = sys.stdin, sys.stdout, sys.stderr
    # Readers and Typer's own help still look at sys.*: point them at the same streams.
    sys.stdin, sys.stdout, sys.stderr = _Stdin(raw_in), out, err
    try:
        code = run([str(a) for a in args], env)
    finally:
        sys.stdin, sys.stdout, sys.stderr = saved
    return Outcome(int(code), out.getvalue(), err.getvalue())


def kldiv_subprocess(*args: object, input: bytes | None = None, cwd: Path | None = None, **kw):
    """The real command in a child process (``python -m kldiv_cli``)."""
    return subprocess.run(
        [sys.executable, "-m", "kldiv_cli", *map(str, args)],
        input=input,
        stdout=kw.pop("stdout", subprocess.PIPE),
        stderr=kw.pop("stderr", subprocess.PIPE),
        cwd=cwd,
        timeout=120,
        **kw,
    )


def needs(*modules: str) -> None:
    """Skip the calling test module unless the top-level ``modules`` are installed, without
    importing them: distributed, moto and boto3 take 0.3-0.7 s each to import, which every
    xdist worker paid while collecting (the tests import them when they run)."""
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        pytest.skip(f"needs {', '.join(missing)}", allow_module_level=True)


#: Dummy S3 credentials and region, which moto's server accepts.
S3_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_EC2_METADATA_DISABLED": "true",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@contextmanager
def s3_server(secret: str = "testing") -> Iterator[str]:
    """A moto S3 server on 127.0.0.1 (moto imported only now), with :data:`S3_ENV` in this
    process's environment meanwhile (``secret`` the secret key); its endpoint URL."""
    from moto.server import ThreadedMotoServer

    with pytest.MonkeyPatch.context() as mp:
        for name, value in {**S3_ENV, "AWS_SECRET_ACCESS_KEY": secret}.items():
            mp.setenv(name, value)
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        try:
            host, port = server.get_host_and_port()
            yield f"http://{host}:{port}"
        finally:
            server.stop()


def s3_client(endpoint: str) -> Any:
    """A boto3 S3 client of the server at ``endpoint`` (boto3 imported only now)."""
    import boto3

    return boto3.client("s3", endpoint_url=endpoint)


def local_cluster(workers: int = 2, **scheduler: Any) -> Any:
    """A Dask ``LocalCluster`` as the tests run it: worker processes of one thread on
    127.0.0.1 with :data:`S3_ENV` in their environment, no dashboard, quiet logs (a
    context manager); ``scheduler``: more keywords of its scheduler."""
    import distributed

    from kldiv_cli.engines.dask import LOCAL_SCHEDULER

    return distributed.LocalCluster(
        n_workers=workers,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address=None,
        scheduler_kwargs={**LOCAL_SCHEDULER, **scheduler},
        silence_logs=50,
        env=S3_ENV,
    )


#: Runs kldiv in a child that reports its own peak RSS (``VmHWM``, which ``exec``
#: resets) on stderr at exit. The child's ``ru_maxrss`` would not do: it includes the
#: memory of the parent it was forked (or vforked) from.
# The console script leaves through os._exit when pyarrow is loaded (cli.app.leave),
# which runs no atexit hook: the report is taken there too, once.
_PEAK_RUNNER = """
import atexit, os, runpy, sys
done = []
def report():
    if done:
        return
    done.append(1)
    with open("/proc/self/status") as f:
        peak = next(line.split()[1] for line in f if line.startswith("VmHWM"))
    sys.stderr.write(f"\\nkldiv-peak-rss-kb {peak}\\n")
    sys.stderr.flush()
atexit.register(report)
_exit = os._exit
def leave(code):
    report()
    _exit(code)
os._exit = leave
sys.argv[0] = "kldiv"
runpy.run_module("kldiv_cli", run_name="__main__")
"""


def peak_rss(*args: object, env: dict[str, str] | None = None) -> tuple[int, str, float]:
    """Run ``kldiv ARGS`` in a child process: ``(exit code, stderr, peak RSS in MB)``.

    ``env`` (default: this process's) chooses the tree through ``PYTHONPATH``; ``-P``
    keeps the current folder off the path."""
    proc = subprocess.run(
        [sys.executable, "-P", "-c", _PEAK_RUNNER, *map(str, args)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
        timeout=300,
        check=False,
    )
    err = proc.stderr.decode(errors="replace")
    text, _, peak = err.rpartition("\nkldiv-peak-rss-kb ")
    return proc.returncode, text, int(peak.split()[0]) / 1024
