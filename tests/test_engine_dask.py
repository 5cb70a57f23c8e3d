"""--engine dask on a real scheduler: the session's 2-process LocalCluster (conftest's
dask_cluster) for the task logic and real serialization, a worker that dies, and the
cluster errors. Skipped when the ``dask`` extra is not installed."""

from __future__ import annotations

import json
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from .helpers import local_cluster, needs

needs("distributed")

from kldiv_cli.core import engine  # noqa: E402
from kldiv_cli.engines import dask as D  # noqa: E402
from kldiv_cli.engines import tasks as T  # noqa: E402
from kldiv_cli.jobs.compute import ComputeRequest, compute, open_sources, plan  # noqa: E402


def _files(d: str, rows: int = 6000, width: int = 50, seed: int = 0) -> tuple[str, str]:
    rng = np.random.default_rng(seed)
    t = rng.dirichlet(np.ones(width), rows).astype(np.float32)
    x = np.log(rng.dirichlet(np.ones(width), rows)).astype(np.float32)
    np.save(f"{d}/x.npy", x)
    np.save(f"{d}/t.npy", t)
    for name, a in (("x", x), ("t", t)):
        table = pa.table({f"c{j}": a[:, j] for j in range(width)})
        pq.write_table(table, f"{d}/{name}.parquet", row_group_size=1000)
    return f"{d}/x", f"{d}/t"


def _job(request: ComputeRequest) -> T.Job:
    sx, st = open_sources(request, None)
    return D.make_job(request, sx, st, plan(request, sx, st))


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """Written once: no test changes the files (the truncating test has its own)."""
    return _files(str(tmp_path_factory.mktemp("dask")), rows=12000, width=40, seed=1)


def _client(cluster):
    """A client of ``cluster`` once its two workers are up (a test may have killed them)."""
    import distributed

    client = distributed.Client(cluster)
    client.wait_for_workers(2, timeout=30)
    return client


def test_tasks_in_any_split_and_order_give_the_local_bits(dask_cluster, tmp_path) -> None:
    x, t = _files(str(tmp_path))
    with _client(dask_cluster) as client:
        for ext in (".npy", ".parquet"):
            request = ComputeRequest(x + ext, t + ext, reduction="sum")
            want = compute(request).loss
            job = _job(request)
            for per_task in (1, 2, 5):
                work = T.split(job, per_task)[::-1]
                parts = client.gather(client.map(T.run_task, [job] * len(work), work, pure=False))
                total = engine.combine([p for part in parts for p in part.partials])
                assert np.float32(total).tobytes() == want.tobytes()


def test_a_task_error_comes_back_as_one_line(dask_cluster, tmp_path) -> None:
    x, t = _files(str(tmp_path), rows=10, width=3)
    job = _job(ComputeRequest(x + ".npy", t + ".npy"))
    os.truncate(x + ".npy", 200)  # shorter than its header says, after planning
    with _client(dask_cluster) as client:
        result = client.submit(T.run_task, job, T.Task(0, 1), pure=False).result()
    assert isinstance(result, T.Failure)
    assert "shorter than its header" in str(result.error())


@pytest.mark.parametrize("ext", [".npy", ".parquet"])
def test_two_worker_processes_give_the_local_bits(dask_cluster, data, ext) -> None:
    x, t = data
    for reduction in ("sum", "mean", "batchmean"):
        request = ComputeRequest(x + ext, t + ext, reduction=reduction)
        local = compute(request)
        remote = D.run_compute_dask(request, scheduler=dask_cluster.scheduler_address)
        assert remote.loss.tobytes() == local.loss.tobytes()
        assert remote.diagnostics == local.diagnostics
        assert remote.plan == local.plan


def test_a_scheduler_file_is_followed(dask_cluster, data, tmp_path) -> None:
    x, t = data
    request = ComputeRequest(x + ".npy", t + ".npy", reduction="batchmean")
    # What `dask scheduler --scheduler-file` writes, as much as a client reads of it.
    (tmp_path / "scheduler.json").write_text(
        json.dumps({"address": dask_cluster.scheduler_address})
    )
    result = D.run_compute_dask(request, scheduler_file=str(tmp_path / "scheduler.json"))
    assert result.loss.tobytes() == compute(request).loss.tobytes()


def test_a_worker_that_dies_is_retried_with_the_same_bits(data, tmp_path) -> None:
    """On a cluster of its own: on the shared one, a worker killed by an earlier test
    could still be listed while its restart came up, so the job's broadcast copy lived
    on one worker only, the one this test kills, and the scheduler cancelled the job
    (seen once in CI-like runs)."""
    x, t = data
    request = ComputeRequest(x + ".npy", t + ".npy", reduction="sum")
    want = compute(request).loss
    marker = str(tmp_path / "died")

    def dies_once(job: T.Job, task: T.Task):
        try:
            os.close(os.open(marker, os.O_CREAT | os.O_EXCL))
        except FileExistsError:
            return T.run_task(job, task)
        os._exit(1)  # the worker process dies mid-task, once

    job = _job(request)
    with local_cluster(2, allowed_failures=1) as cluster, _client(cluster) as client:
        parts = D.run_tasks(client, job, D.default_split(job, engine.CHUNK), dies_once)
    assert os.path.exists(marker)
    total = engine.combine([p for part in parts for p in part.partials])
    assert np.float32(total).tobytes() == want.tobytes()


def test_a_worker_that_always_dies_is_one_clear_error(dask_cluster, data) -> None:
    x, t = data
    job = _job(ComputeRequest(x + ".npy", t + ".npy"))

    def always_dies(job: T.Job, task: T.Task):
        os._exit(1)

    # No retry here: one death is the error (the retry is the test above), and each
    # death costs a worker process's start-up.
    scheduler = dask_cluster.scheduler
    allowed, scheduler.allowed_failures = scheduler.allowed_failures, 0
    with _client(dask_cluster) as client:
        try:
            # Killed on every retry; or, when the dying workers held the last copies of
            # the scattered job first, the scheduler cancels the task (a race under load).
            with pytest.raises(D.ClusterError, match="worker died|lost every worker") as caught:
                D.run_tasks(client, job, [T.Task(0, 1)], always_dies)
            assert "\n" not in str(caught.value)
        finally:
            scheduler.allowed_failures = allowed
            client.wait_for_workers(2, timeout=30)  # the next tests count two workers


def test_workers_with_another_version_are_refused(dask_cluster, data, monkeypatch) -> None:
    x, t = data
    _client(dask_cluster).close()  # both workers back, after the tests that kill them
    monkeypatch.setattr(D, "__version__", "0.0.0-client")  # the client's, not the workers'
    with pytest.raises(D.ClusterError, match=r"2 Dask worker\(s\) run kldiv .*0\.0\.0-client"):
        D.run_compute_dask(ComputeRequest(x + ".npy", t + ".npy"), dask_cluster.scheduler_address)


def test_an_unreachable_scheduler_is_one_line(data, monkeypatch) -> None:
    x, t = data
    request = ComputeRequest(x + ".npy", t + ".npy")
    where = "could not connect to the Dask scheduler at tcp://127.0.0.1:9 within 0.2 s"
    with pytest.raises(D.ClusterError, match=f"{where} \\(no connection"):
        D.run_compute_dask(request, "tcp://127.0.0.1:9", timeout=0.2)
    monkeypatch.setenv("DASK_SCHEDULER_ADDRESS", "tcp://127.0.0.1:9")
    with pytest.raises(D.ClusterError, match="could not connect"):
        D.run_compute_dask(request, timeout=0.2)


@pytest.mark.parametrize("address", ["foo", "http://127.0.0.1:1"])
def test_a_malformed_scheduler_address_is_a_usage_error(data, address) -> None:
    from kldiv_cli.errors import UsageError

    x, t = data
    with pytest.raises(UsageError, match="not a Dask scheduler address.*tcp://HOST:PORT"):
        D.run_compute_dask(ComputeRequest(x + ".npy", t + ".npy"), address)


def test_a_scheduler_without_workers_is_one_line(data) -> None:
    x, t = data
    with local_cluster(0) as empty:
        with pytest.raises(D.ClusterError, match="has no workers"):
            D.run_compute_dask(
                ComputeRequest(x + ".npy", t + ".npy"), empty.scheduler_address, timeout=0.5
            )


def test_without_an_address_a_local_cluster_is_started_noted_and_closed(data) -> None:
    x, t = data
    request = ComputeRequest(x + ".npy", t + ".npy", reduction="batchmean")
    notes: list[str] = []
    result = D.run_compute_dask(request, workers=1, note=notes.append)
    assert result.loss.tobytes() == compute(request).loss.tobytes()
    assert len(notes) == 1 and "1 worker process on 127.0.0.1, no dashboard" in notes[0]


def test_exact_quantiles_on_the_cluster(dask_cluster) -> None:
    """The two passes of engines.quantiles as tasks on worker processes."""
    pytest.importorskip("datasketches")
    from kldiv_cli.engines.quantiles import exact_quantiles

    rng = np.random.default_rng(4)
    parts = [rng.normal(size=n) for n in (50_000, 1, 20_000, 0, 70_000)]
    qs = np.arange(1, 10) / 10
    with _client(dask_cluster) as client:
        got = exact_quantiles(parts, lambda p: p, qs, D.runner(client))
    assert got.tobytes() == np.quantile(np.concatenate(parts), qs).tobytes()


def test_the_command_line_runs_on_the_cluster(dask_cluster, data) -> None:
    from .helpers import invoke

    x, t = data
    args = ("compute", x + ".npy", t + ".npy", "-r", "batchmean", "-f", "json")
    local = invoke(*args)
    remote = invoke(*args, "--engine", "dask", "--scheduler", dask_cluster.scheduler_address)
    assert remote.exit_code == local.exit_code == 0, remote.stderr
    import json

    assert json.loads(remote.stdout)["loss"] == json.loads(local.stdout)["loss"]
    bad = invoke(*args, "--engine", "spark")
    assert bad.exit_code == 2 and bad.stderr.count("\n") == 1 and "local or dask" in bad.stderr
