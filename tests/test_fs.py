"""Object storage (io/fs.py) against an in-process S3 server on 127.0.0.1 (moto):
ranged .npy reads, Parquet files and folders, tasks reading s3:// with the local bits,
atomic single-PUT outputs, and one-line errors that never show a credential.
Skipped when moto is not installed (the ``cluster-test`` extra)."""

from __future__ import annotations

import glob
import io
import os
import tempfile
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from .helpers import needs, s3_client, s3_server

needs("moto", "boto3")

from kldiv_cli.core import engine  # noqa: E402
from kldiv_cli.engines import tasks as T  # noqa: E402
from kldiv_cli.engines.dask import make_job, reduce_job  # noqa: E402
from kldiv_cli.errors import InputError, OutputError, UsageError  # noqa: E402
from kldiv_cli.io import fs  # noqa: E402
from kldiv_cli.jobs.compute import ComputeRequest, compute, open_sources, plan  # noqa: E402

BUCKET = "kldiv-data"
SECRET = "not-a-real-secret-0123456789"


@pytest.fixture(scope="module")
def s3() -> Iterator[dict[str, str]]:
    """A moto S3 server on 127.0.0.1 with dummy credentials in the environment; yields
    the storage options that point pyarrow at it."""
    with s3_server(SECRET) as endpoint:
        s3_client(endpoint).create_bucket(Bucket=BUCKET)
        yield {"endpoint_override": endpoint, "region": "us-east-1"}


@pytest.fixture(scope="module")
def data(s3, tmp_path_factory) -> tuple[Path, np.ndarray, np.ndarray]:
    """The same files locally and in the bucket: .npy, Parquet (row groups), a dataset."""
    d = tmp_path_factory.mktemp("s3data")
    rng = np.random.default_rng(0)
    t = rng.dirichlet(np.ones(40), 5000).astype(np.float32)
    x = np.log(rng.dirichlet(np.ones(40), 5000)).astype(np.float32)
    np.save(d / "x.npy", x)
    np.save(d / "t.npy", t)
    for name, a in (("x", x), ("t", t)):
        table = pa.table({f"c{j}": a[:, j] for j in range(a.shape[1])})
        pq.write_table(table, d / f"{name}.parquet", row_group_size=900)
        (d / f"{name}_ds").mkdir()
        pq.write_table(table.slice(0, 2000), d / f"{name}_ds" / "part-0.parquet")
        pq.write_table(table.slice(2000), d / f"{name}_ds" / "part-1.parquet")
        (d / f"{name}_ds" / "_SUCCESS").write_bytes(b"")
    client = s3_client(s3["endpoint_override"])
    for path in d.rglob("*"):
        if path.is_file():
            client.upload_file(str(path), BUCKET, str(path.relative_to(d)))
    return d, x, t


def url(name: str) -> str:
    return f"s3://{BUCKET}/{name}"


def test_storage_options_are_parsed_and_credentials_refused() -> None:
    assert fs.parse_options(["endpoint=http://h:1", "anonymous=true"]) == {
        "endpoint_override": "http://h:1",
        "anonymous": "true",
    }
    for bad in ("secret_key=abc", "access_key=abc", "session_token=abc"):
        with pytest.raises(UsageError, match="environment only") as caught:
            fs.parse_options([bad])
        assert "abc" not in str(caught.value)
    # A setting that does not parse is never echoed: it may be the credential itself.
    for bad in ("region", "aws_secret_access_key:SECRETxyz123", "SECRETxyz123", "=SECRETxyz123"):
        with pytest.raises(UsageError, match="KEY=VALUE") as caught:
            fs.parse_options([bad])
        assert bad.strip("=") not in str(caught.value)
    with pytest.raises(UsageError, match="does not apply to s3"):
        fs.filesystem(url("x.npy"), {"replication": "3"})
    with pytest.raises(UsageError, match="true or false"):
        fs.filesystem(url("x.npy"), {"anonymous": "maybe"})


def test_remote_paths_are_recognised() -> None:
    assert fs.is_remote("s3://b/k") and fs.is_remote("GS://b/k") and fs.is_remote("hdfs://h/p")
    assert fs.is_remote("abfs://container@account.dfs.core.windows.net/p")
    assert (
        not fs.is_remote("data/x.npy") and not fs.is_remote("file:///x") and not fs.is_remote(None)
    )


def test_npy_rows_are_ranged_reads(s3, data) -> None:
    d, x, _ = data
    with fs.open_input(url("x.npy"), s3) as f:
        assert f.read(6) == b"\x93NUMPY"
        assert fs.size(url("x.npy"), s3) == os.path.getsize(d / "x.npy")
    side = _side(d, "x.npy", s3)
    assert side.npy is not None
    assert np.array_equal(T.read_rows(side, 1234, 1300), x[1234:1300])


def test_a_parquet_folder_is_its_sorted_files(s3, data) -> None:
    assert fs.list_parquet(url("x_ds"), s3) == [
        url("x_ds/part-0.parquet"),
        url("x_ds/part-1.parquet"),
    ]
    assert fs.list_parquet(url("x.parquet"), s3) is None


def _side(d: Path, name: str, storage: dict[str, str]) -> T.Side:
    """A side whose header facts come from the local copy, and whose data is read from
    the bucket (the client-side opener for s3:// is the readers' hook)."""
    source = open_sources(ComputeRequest(str(d / name), str(d / name)), None)[0]
    return T.describe(source, url(name), ComputeRequest("a", "b").input_options, storage)


@pytest.mark.parametrize(
    ("xs", "ts"), [("x.npy", "t.npy"), ("x.parquet", "t.parquet"), ("x_ds", "t_ds")]
)
@pytest.mark.parametrize("reduction", ["sum", "batchmean"])
def test_tasks_reading_s3_give_the_local_bits(s3, data, xs, ts, reduction) -> None:
    d = data[0]
    local_request = ComputeRequest(str(d / xs), str(d / ts), reduction=reduction)
    local = compute(local_request)
    sx, st = open_sources(local_request, None)
    remote_request = ComputeRequest(url(xs), url(ts), reduction=reduction)
    job = make_job(local_request, sx, st, plan(local_request, sx, st), s3)
    job = replace(job, request=remote_request, x=_side(d, xs, s3), t=_side(d, ts, s3))
    assert job.x.path.startswith("s3://")

    def run(j: T.Job) -> list[T.Partial]:
        parts = [T.run_task(j, task) for task in T.split(j, 1)]
        assert all(isinstance(p, T.Partial) for p in parts), parts
        return parts  # type: ignore[return-value]

    result = reduce_job(local_request, sx, st, job, run)
    assert result.loss.tobytes() == local.loss.tobytes()


def test_missing_bucket_and_object_are_one_line(s3) -> None:
    with pytest.raises(InputError, match=r"s3://no-such-bucket-here/x.npy: no such bucket$"):
        fs.open_input("s3://no-such-bucket-here/x.npy", s3)
    with pytest.raises(InputError, match=r"no such file$"):
        fs.open_input(url("missing.npy"), s3)


def test_without_credentials_no_access_and_no_secret_shown(s3, data, monkeypatch) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    with pytest.raises(InputError) as caught:
        fs.open_input(url("x.npy"), s3)
    message = str(caught.value)
    assert "access denied" in message and "environment" in message
    assert SECRET not in message and "\n" not in message


def _objects(s3: dict[str, str], prefix: str) -> dict[str, bytes]:
    client = s3_client(s3["endpoint_override"])
    listed = client.list_objects_v2(Bucket=BUCKET, Prefix=prefix).get("Contents", [])
    return {o["Key"]: client.get_object(Bucket=BUCKET, Key=o["Key"])["Body"].read() for o in listed}


def _temps() -> set[str]:
    return set(glob.glob(os.path.join(tempfile.gettempdir(), ".kldiv-*.part")))


def test_outputs_are_one_put_and_all_or_nothing(s3) -> None:
    before = _temps()
    assert fs.write_remote(url("out/loss.json"), lambda f: f.write(b'{"loss": 1}'), s3) == 11
    assert _objects(s3, "out/") == {"out/loss.json": b'{"loss": 1}'}

    def fails(f: io.BufferedIOBase) -> None:
        f.write(b"partial")
        raise OutputError("stopped midway")

    with pytest.raises(OutputError, match="stopped midway"):
        fs.write_remote(url("out/loss.json"), fails, s3)
    with pytest.raises(OutputError, match="stopped midway"):
        fs.write_remote(url("out/new.json"), fails, s3)
    assert _objects(s3, "out/") == {"out/loss.json": b'{"loss": 1}'}  # old kept, none new
    with pytest.raises(OutputError, match="no such bucket"):
        fs.write_remote("s3://no-such-bucket-here/o.json", lambda f: f.write(b"x"), s3)
    assert _temps() == before
    fs.write_remote(url("out/empty.csv"), lambda f: None, s3)
    assert _objects(s3, "out/empty")["out/empty.csv"] == b""


def test_dask_workers_read_s3(dask_cluster, s3, data) -> None:
    """Real worker processes get the endpoint from the job and the credentials from
    their environment."""
    import distributed

    from kldiv_cli.engines.dask import run_tasks

    d = data[0]
    request = ComputeRequest(str(d / "x.npy"), str(d / "t.npy"), reduction="sum")
    want = compute(request).loss
    sx, st = open_sources(request, None)
    job = make_job(request, sx, st, plan(request, sx, st))
    job = replace(job, x=_side(d, "x.npy", s3), t=_side(d, "t.npy", s3))
    with distributed.Client(dask_cluster) as client:
        parts = run_tasks(client, job, T.split(job, 1))
    total = np.float32(engine.combine([p for part in parts for p in part.partials]))
    assert total.tobytes() == want.tobytes()


def test_run_settings_whole_objects_and_destinations(s3, data) -> None:
    d = data[0]
    fs.configure(s3)
    try:
        assert fs.current_options() == s3
        assert fs.read_bytes(url("x.npy")) == (d / "x.npy").read_bytes()
        fs.check_destination(url("new/loss.npy"))
        for bad, why in [
            ("s3://no-such-bucket-here/o.npy", "no such bucket"),
            (f"s3://{BUCKET}", "names a bucket"),
            (url("x_ds"), "is a folder"),
        ]:
            with pytest.raises(OutputError, match=why):
                fs.check_destination(bad)
    finally:
        fs.configure({})


def test_stores_that_cannot_be_opened_here_are_one_line() -> None:
    gcs, inner = fs.filesystem("gs://bucket/x.npy", {"anonymous": "true"})
    assert type(gcs).__name__ == "GcsFileSystem" and inner == "bucket/x.npy"
    azure, inner = fs.filesystem("abfs://c@acct.dfs.core.windows.net/d/x.npy")
    assert type(azure).__name__ == "AzureFileSystem" and inner == "c/d/x.npy"
    with pytest.raises(InputError, match="account_name") as caught:
        fs.filesystem("abfs://c/x.npy")
    assert "\n" not in str(caught.value)
    with pytest.raises(UsageError, match="port must be a number"):
        fs.filesystem("hdfs://namenode:http/x.npy")
    try:
        fs.filesystem("hdfs://namenode:8020/x.npy")
    except InputError as exc:  # no Java here: one line naming what is missing
        assert "libhdfs" in str(exc) and "\n" not in str(exc)


@pytest.mark.parametrize(("xs", "ts"), [("x.npy", "t.npy"), ("x_ds", "t_ds")])
def test_the_command_line_reads_and_writes_s3(s3, data, xs, ts) -> None:
    """compute on s3:// inputs (local engine) gives the local file's bits; -o s3:// works."""
    import json

    from .helpers import invoke

    d = data[0]
    options = [
        f"--storage-option=endpoint={s3['endpoint_override']}",
        "--storage-option=region=us-east-1",
    ]
    try:
        local = invoke("compute", d / xs, d / ts, "-r", "batchmean", "-f", "json")
        remote = invoke("compute", url(xs), url(ts), "-r", "batchmean", "-f", "json", *options)
        assert remote.exit_code == local.exit_code == 0, remote.stderr
        assert json.loads(remote.stdout)["loss"] == json.loads(local.stdout)["loss"]
        out = invoke(
            "compute", url(xs), url(ts), "-r", "sum", "-o", url(f"out-{xs}.json"), *options
        )
        assert out.exit_code == 0, out.stderr
        assert json.loads(fs.read_bytes(url(f"out-{xs}.json"), s3))["reduction"] == "sum"
    finally:
        fs.configure({})  # --storage-option is a setting of the run


def test_drift_reads_a_single_parquet_object(s3, data) -> None:
    from .helpers import invoke

    # Six columns in three row groups: every column chunk is a ranged GET to the
    # in-process server, so the module's 40-column files cost seconds for nothing more.
    d, x, t = data
    client = s3_client(s3["endpoint_override"])
    for name, a in (("x", x), ("t", t)):
        table = pa.table({f"c{j}": a[:1500, j] for j in range(6)})
        pq.write_table(table, d / f"{name}_drift.parquet", row_group_size=500)
        client.upload_file(str(d / f"{name}_drift.parquet"), BUCKET, f"{name}_drift.parquet")
    options = [
        f"--storage-option=endpoint={s3['endpoint_override']}",
        "--storage-option=region=us-east-1",
    ]
    try:
        local = invoke("drift", d / "x_drift.parquet", d / "t_drift.parquet", "-f", "json")
        remote = invoke(
            "drift", url("x_drift.parquet"), url("t_drift.parquet"), "-f", "json", *options
        )
    finally:
        fs.configure({})
    assert remote.exit_code == local.exit_code, remote.stderr
    import json

    strip = lambda doc: [(c["name"], c["value"]) for c in json.loads(doc)["columns"]]  # noqa: E731
    assert len(strip(local.stdout)) == 6
    assert strip(remote.stdout) == strip(local.stdout)
