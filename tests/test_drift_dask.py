"""``drift`` and ``profile`` with ``--engine dask`` (engines/drift.py): the profile of a
Parquet reference computed by tasks has the local profile's bits, in one process
(hypothesis), and on the session's 2-process LocalCluster (conftest's dask_cluster), by
tasks and through the command line. Skipped without the ``dask`` extra."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytest.importorskip("datasketches")

from kldiv_cli.engines import drift as E  # noqa: E402
from kldiv_cli.engines import quantiles as Q  # noqa: E402
from kldiv_cli.io.drift_tables import open_table  # noqa: E402
from kldiv_cli.jobs.drift import ColumnRules, build_profile  # noqa: E402


def _columns(n: int, seed: int) -> dict[str, pa.Array]:
    """Every path of the role rules: numbers, few-valued numbers, identifiers, all
    missing, infinities, NaN and nulls, text and booleans (profiled on the client)."""
    rng = np.random.default_rng(seed)
    normal = rng.normal(size=n)
    normal[rng.random(n) < 0.05] = np.nan
    normal[rng.random(n) < 0.01] = np.inf
    ints = rng.integers(0, 1000, n)
    return {
        "normal": pa.array(normal),
        "lognormal32": pa.array(rng.lognormal(sigma=2, size=n).astype(np.float32)),
        "ties": pa.array(rng.integers(0, 4, n).astype(np.float64) / 2),
        "levels": pa.array(rng.integers(1, 6, n), mask=rng.random(n) < 0.1),
        "counts": pa.array(ints, mask=rng.random(n) < 0.02),
        "user_id": pa.array(rng.permutation(n) + 10**6),
        "empty": pa.array(np.full(n, np.nan)),
        "nulls": pa.array([None] * n, type=pa.int64()),
        "infinite": pa.array(np.where(rng.random(n) < 0.5, np.inf, np.nan)),
        "nan_few": pa.array(np.where(rng.random(n) < 0.5, 1.0, np.nan)),
        "label": pa.array(rng.choice(["a", "b", "c"], n)),
        "flag": pa.array(rng.random(n) < 0.3),
    }


def _write(path: Path, columns: dict[str, pa.Array], groups: list[int]) -> None:
    table = pa.table(columns)
    with pq.ParquetWriter(path, table.schema) as w:
        start = 0
        for size in groups:
            w.write_table(table.slice(start, size))
            start += size


def _local(paths: list[str], rules: ColumnRules) -> list[dict]:
    return [c.to_json() for c in build_profile(open_table(paths, None, None), rules)]


def _tasks(paths: list[str], rules: ColumnRules, run: Q.Runner = Q._map) -> list[dict]:
    files = E.reference_files(paths)
    assert files is not None
    profiler = E.TaskProfiler(files, run)
    return [
        c.to_json() for c in build_profile(open_table(paths, None, None), rules, None, profiler)
    ]


def _no_values(doc):
    """A local profile or report as the Dask engine gives it: its numeric profiles keep no
    sketch of the values, so no measure on raw values (Wasserstein, K-S) either."""
    if isinstance(doc, list):
        return [_no_values(d) for d in doc]
    if isinstance(doc, dict):
        return {
            k: _no_values(v) for k, v in doc.items() if k not in ("sketch", "wasserstein", "ks")
        }
    return doc


def _same(a: list[dict], b: list[dict]) -> None:
    # JSON text compares the floats by their shortest repr: equal text, equal bits.
    assert json.dumps(_no_values(a)) == json.dumps(_no_values(b))


@settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    groups=st.lists(st.integers(1, 700), min_size=1, max_size=5),
    files=st.integers(1, 3),
    bins=st.integers(2, 12),
    binning=st.sampled_from(["quantile", "uniform"]),
    seed=st.integers(0, 2**16),
)
def test_tasks_give_the_local_profile(tmp_path_factory, groups, files, bins, binning, seed) -> None:
    d = tmp_path_factory.mktemp("ref")
    n = sum(groups)
    columns = _columns(n * files, seed)
    for i in range(files):
        part = {k: v.slice(i * n, n) for k, v in columns.items()}
        _write(d / f"part-{i}.parquet", part, groups)
    rules = ColumnRules(bins=bins, binning=binning, numeric=("ties",), skip=("flag",))
    paths = [str(d)]
    _same(_tasks(paths, rules), _local(paths, rules))


def test_roles_of_large_columns_use_the_sample_as_locally(tmp_path: Path) -> None:
    """Above ID_SAMPLE rows the identifier check samples rows across the partitions."""
    n = 30_000
    rng = np.random.default_rng(5)
    columns = {
        "user_id": pa.array(rng.permutation(n)),
        "wide": pa.array(rng.integers(0, 5000, n)),
        "few": pa.array(rng.integers(0, 15, n)),
    }
    _write(tmp_path / "ref.parquet", columns, [7000, 7000, 16_000])
    rules = ColumnRules(categorical=("few",))
    _same(
        _tasks([str(tmp_path / "ref.parquet")], rules),
        _local([str(tmp_path / "ref.parquet")], rules),
    )
    roles = [c["role"] for c in _tasks([str(tmp_path / "ref.parquet")], ColumnRules())]
    assert roles == ["identifier", "numeric", "categorical"]


@pytest.mark.parametrize("bins", [10, 100])
def test_brackets_of_a_large_reference_keep_the_bits(tmp_path: Path, bins: int) -> None:
    """200,000 values in 8 row groups: the edges go through the sketch's brackets."""
    rng = np.random.default_rng(9)
    n = 200_000
    columns = {
        "lognormal": pa.array(rng.lognormal(sigma=3, size=n)),
        "float32": pa.array(rng.normal(size=n).astype(np.float32)),
        "ties": pa.array(rng.integers(0, 50, n).astype(np.float64)),
    }
    _write(tmp_path / "ref.parquet", columns, [25_000] * 8)
    paths, rules = [str(tmp_path / "ref.parquet")], ColumnRules(bins=bins)
    got = _tasks(paths, rules)
    assert [c["role"] for c in got] == ["numeric"] * 3
    _same(got, _local(paths, rules))


def test_a_column_stored_with_other_types_is_profiled_on_the_client(tmp_path: Path) -> None:
    """Arrow promotes int64 and float64 files to one column; tasks see each file's type."""
    rng = np.random.default_rng(2)
    _write(
        tmp_path / "a.parquet",
        {"v": pa.array(rng.integers(0, 9, 500)), "w": pa.array(rng.normal(size=500))},
        [500],
    )
    _write(
        tmp_path / "b.parquet",
        {"v": pa.array(rng.normal(size=500)), "w": pa.array(rng.normal(size=500))},
        [500],
    )
    paths = [str(tmp_path)]
    profiler = E.TaskProfiler(E.reference_files(paths) or [], Q._map)
    assert profiler("v", ColumnRules()) is None
    assert profiler("w", ColumnRules()) is not None
    _same(_tasks(paths, ColumnRules()), _local(paths, ColumnRules()))


def test_other_references_stay_on_the_client(tmp_path: Path) -> None:
    (tmp_path / "r.csv").write_text("a\n1\n")
    assert E.reference_files([str(tmp_path / "r.csv")]) is None
    assert E.reference_files(["-"]) is None
    assert E.reference_files([str(tmp_path / "ref.profile.json")]) is None
    _write(tmp_path / "r.parquet", {"a": pa.array([1.0])}, [1])
    assert E.reference_files([str(tmp_path / "r.parquet")]) == [str(tmp_path / "r.parquet")]


@pytest.mark.parametrize("missing", ["distributed", "datasketches"])
def test_without_the_extra_one_line_names_it(tmp_path, run_cli, monkeypatch, missing) -> None:
    _write(tmp_path / "r.parquet", {"a": pa.array([1.0])}, [1])
    monkeypatch.setitem(__import__("sys").modules, missing, None)  # import fails
    result = run_cli("profile", tmp_path / "r.parquet", "--engine", "dask")
    assert result.exit_code == 2 and result.stdout == ""
    assert result.stderr.count("\n") == 1 and 'pip install "kldiv[dask]"' in result.stderr


# ------------------------------------------------------------------ on Dask

from .helpers import needs, s3_client, s3_server  # noqa: E402

needs("distributed")


def test_census_tasks_on_the_cluster(dask_cluster) -> None:
    import distributed

    column = pa.chunked_array([pa.array([3, None, 3, 7, 1], type=pa.int32())])
    rows = np.array([0, 1, 4])
    with distributed.Client(dask_cluster) as client:
        got = client.submit(E.census, column, "integer", rows, pure=False).result()
    want = E.census(column, "integer", rows)
    assert (got.rows, got.nulls, got.missing, got.sample_nulls) == (5, 1, 1, 1)
    assert got.distinct.tolist() == want.distinct.tolist() == [1, 3, 7]
    assert got.counts.tolist() == [1, 2, 1]
    assert got.sample.tolist() == [3, 1]


@pytest.fixture(scope="module")
def tables(tmp_path_factory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("drift")
    (d / "ref").mkdir()
    for i in range(2):
        _write(d / "ref" / f"part-{i}.parquet", _columns(3000, i), [1000, 2000])
    current = _columns(4000, 7)
    current["normal"] = pa.array(np.random.default_rng(8).normal(0.3, 1, 4000))
    _write(d / "current.parquet", current, [4000])
    return d / "ref", d / "current.parquet"


def _report(stdout: str) -> dict:
    doc = json.loads(stdout)
    doc.pop("seconds")
    return doc


def test_the_command_line_gives_the_local_bits(dask_cluster, tables, run_cli, tmp_path) -> None:
    ref, cur = tables
    address = ("--engine", "dask", "--scheduler", dask_cluster.scheduler_address)
    for extra in ((), ("--bins", "7", "--binning", "uniform")):
        local = run_cli("profile", ref, *extra)
        remote = run_cli("profile", ref, *extra, *address)
        assert local.exit_code == remote.exit_code == 0, remote.stderr
        assert json.loads(remote.stdout) == _no_values(json.loads(local.stdout))
    local = run_cli("drift", ref, cur, "-f", "json")
    remote = run_cli("drift", ref, cur, "-f", "json", *address)
    assert local.exit_code == remote.exit_code == 1, remote.stderr
    assert _report(remote.stdout) == _no_values(_report(local.stdout))
    assert _report(remote.stdout)["n_drifted"] >= 1
    # Schema changes: a column lost, one gained, integers (profiled by tasks) now text.
    import pyarrow.compute as pc

    changed = pq.read_table(cur).drop_columns(["flag"])
    changed = changed.append_column("extra", pa.array(np.arange(changed.num_rows) % 7))
    at = changed.schema.get_field_index("counts")
    changed = changed.set_column(at, "counts", pc.cast(changed["counts"], pa.string()))
    pq.write_table(changed, schema := tmp_path / "schema.parquet")
    local = run_cli("drift", ref, schema, "-f", "json", "--exclude", "normal")
    remote = run_cli("drift", ref, schema, "-f", "json", "--exclude", "normal", *address)
    assert local.exit_code == remote.exit_code == 1, remote.stderr
    assert _report(remote.stdout) == _no_values(_report(local.stdout))
    reasons = {c["name"]: c["reasons"] for c in _report(remote.stdout)["columns"]}
    assert reasons["flag"] == ["column_removed"] and reasons["extra"] == ["column_added"]
    assert reasons["counts"] == ["type_changed"]


def test_windows_on_the_cluster_are_the_local_windows(dask_cluster, run_cli, tmp_path) -> None:
    """--window with --engine dask: the reference profiled by tasks, the current windows
    here; the same report as the local engine's (less the measures on values)."""
    from .drift_time_data import events

    reference, current = events(0, rows_per_day=400, small_rows=12)
    pq.write_table(reference, ref := tmp_path / "ref.parquet", row_group_size=2000)
    pq.write_table(current, cur := tmp_path / "cur.parquet")
    window = ("-f", "json", "--window", "ts:1d")
    local = run_cli("drift", ref, cur, *window)
    remote = run_cli(
        "drift",
        ref,
        cur,
        *window,
        "--engine",
        "dask",
        "--scheduler",
        dask_cluster.scheduler_address,
    )
    assert local.exit_code == remote.exit_code == 1, remote.stderr
    assert _report(remote.stdout) == _no_values(_report(local.stdout))
    assert len(_report(remote.stdout)["windows"]) == 6


def test_a_reference_that_is_not_parquet_runs_here_with_a_note(tables, run_cli, tmp_path) -> None:
    ref, cur = tables
    csv = tmp_path / "ref.csv"
    csv.write_text("normal\n" + "\n".join(str(v) for v in np.linspace(0, 1, 50)) + "\n")
    # The unreachable address proves that no cluster is needed for it.
    result = run_cli(
        "drift", csv, cur, "-f", "json", "--engine", "dask", "--scheduler", "tcp://127.0.0.1:9"
    )
    assert result.exit_code in (0, 1), result.stderr
    assert "is not Parquet; it is read on this machine" in result.stderr
    assert _report(result.stdout) == _report(run_cli("drift", csv, cur, "-f", "json").stdout)
    profile = tmp_path / "ref.profile.json"
    assert run_cli("profile", ref, "-o", profile).exit_code == 0
    dask = ("--engine", "dask", "--scheduler", "tcp://127.0.0.1:9")
    result = run_cli("drift", profile, cur, "-f", "json", *dask)
    assert result.exit_code == 1, result.stderr
    assert "is a profile; it is read on this machine" in result.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (("--engine", "spark"), "unknown engine 'spark'; choose local or dask"),
        (("--engine", "dask", "--workers", "0"), "--workers must be at least 1"),
        (
            ("--engine", "dask", "--scheduler", "tcp://127.0.0.1:9", "--timeout", "0.2"),
            "could not connect to the Dask scheduler at tcp://127.0.0.1:9 within 0.2 s",
        ),
    ],
)
def test_engine_errors_are_one_line(tables, run_cli, args, message) -> None:
    ref, _ = tables
    result = run_cli("profile", ref, *args)
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1 and message in result.stderr
    assert result.stdout == ""


# ------------------------------------------------------------------ on S3


@pytest.fixture(scope="module")
def s3():
    """A moto S3 server on 127.0.0.1 (dummy credentials), with the tables uploaded;
    yields the --storage-option arguments that point kldiv at it."""
    needs("moto", "boto3")
    with s3_server() as endpoint:
        s3_client(endpoint).create_bucket(Bucket="drift")
        yield (
            s3_client(endpoint),
            [f"--storage-option=endpoint={endpoint}", "--storage-option=region=us-east-1"],
        )


def test_a_reference_in_s3_gives_the_local_bits(dask_cluster, tables, s3, run_cli) -> None:
    """On the session's cluster, whose workers read dummy credentials from their
    environment; a few columns, as the in-process server is slow."""
    from kldiv_cli.io import fs

    client, options = s3
    ref, cur = tables
    for path in sorted(ref.iterdir()):
        client.upload_file(str(path), "drift", f"ref/{path.name}")
    some = ("--columns", "normal,levels,user_id,label")
    address = ("--engine", "dask", "--scheduler", dask_cluster.scheduler_address, *options)
    try:
        local = run_cli("profile", ref, *some)
        remote = run_cli("profile", "s3://drift/ref", *some, *address)
        assert remote.exit_code == 0, remote.stderr
        profile = json.loads(remote.stdout)
        assert profile.pop("source") == "s3://drift/ref"
        want = json.loads(local.stdout)
        want.pop("source")
        assert profile == _no_values(want)
        local = run_cli("drift", ref, cur, "-f", "json", *some)
        remote = run_cli("drift", "s3://drift/ref", cur, "-f", "json", *some, *address)
        assert remote.exit_code == local.exit_code == 1, remote.stderr
        got, want = _report(remote.stdout), _report(local.stdout)
        assert got.pop("reference") == "s3://drift/ref"
        want.pop("reference")
        assert got == _no_values(want)
    finally:
        fs.configure({})  # --storage-option is a setting of the run
