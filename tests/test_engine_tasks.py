"""The task layout (engines/tasks.py): any split of the work into tasks, run in any order,
gives the local engine's bits. No scheduler here: tasks are plain functions."""

from __future__ import annotations

import tempfile
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kldiv_cli import kl_div
from kldiv_cli.core import engine
from kldiv_cli.engines import tasks as T
from kldiv_cli.engines.dask import check_request, default_split, make_job, reduce_job
from kldiv_cli.errors import InputError, UsageError
from kldiv_cli.jobs.compute import ComputeRequest, compute, convert, open_sources, plan

from .helpers import SAMPLES


def _pair(rows: int, width: int, dtype: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    t = rng.dirichlet(np.ones(width), rows).astype(dtype)
    x = np.log(rng.dirichlet(np.ones(width), rows)).astype(dtype)
    return x, t


def _job(request: ComputeRequest, chunk: int | None = None) -> tuple[T.Job, object, object]:
    sx, st_ = open_sources(request, None)
    job = make_job(request, sx, st_, plan(request, sx, st_))
    if chunk is not None:
        job = replace(job, chunk=chunk)
    return job, sx, st_


def _shuffled_split(job: T.Job, cuts: list[int], order: list[int]) -> list[T.Task]:
    """Tasks cut at ``cuts`` (unit positions), listed in the order of ``order``."""
    n = T.units(job)
    edges = sorted({0, n, *(c % (n + 1) for c in cuts)})
    work = [T.Task(a, b) for a, b in zip(edges, edges[1:])]
    first = [i % len(work) for i in order]
    return [work[i] for i in dict.fromkeys(first + list(range(len(work))))]


def _run(job: T.Job, work: list[T.Task]) -> list[T.Partial]:
    parts = [T.run_task(job, task) for task in work]
    assert all(isinstance(p, T.Partial) for p in parts), parts
    return parts  # type: ignore[return-value]


@settings(max_examples=40, deadline=None)
@given(
    rows=st.integers(1, 40),
    width=st.integers(1, 9),
    chunk=st.sampled_from([1, 2, 5, 16, 64]),
    dtype=st.sampled_from(["float32", "float64"]),
    log_target=st.booleans(),
    transform=st.sampled_from(["none", "log-softmax"]),
    cuts=st.lists(st.integers(0, 10_000), max_size=8),
    order=st.lists(st.integers(0, 50), max_size=10),
    seed=st.integers(0, 2**16),
)
def test_any_split_and_order_gives_the_engine_bits(
    rows, width, chunk, dtype, log_target, transform, cuts, order, seed
) -> None:
    """Small chunks make many tasks out of small data; the reference is the engine's
    own sum of the converted data at the same chunk size."""
    x, t = _pair(rows, width, dtype, seed)
    if width == 1:
        transform = "none"  # a softmax over one class is refused (jobs.compute.check_classes)
    if log_target:
        t = np.log(t)
    with tempfile.TemporaryDirectory() as d:
        np.save(f"{d}/x.npy", x)
        np.save(f"{d}/t.npy", t)
        request = ComputeRequest(
            f"{d}/x.npy", f"{d}/t.npy", reduction="sum", log_target=log_target,
            input_transform=transform,
        )  # fmt: skip
        job, _, _ = _job(request, chunk)
        assert job.layout == T.GRID
        parts = _run(job, _shuffled_split(job, cuts, order))
    xc, tc = convert(request, x, t, "t")
    want = engine.total_loss(xc, tc, log_target, np.dtype(dtype), 1, chunk)
    got = engine.combine([p for part in parts for p in part.partials])
    assert np.float64(got).tobytes() == np.float64(want).tobytes()
    assert sum(part.count for part in parts) == x.size


@pytest.mark.parametrize("reduction", ["sum", "mean", "batchmean"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_compute_result_equals_local_for_random_splits(tmp_path: Path, reduction, dtype) -> None:
    """At the engine's real chunk size: the compute job's result, and kl_div's sum."""
    rows = int(2.5 * engine.CHUNK) // 37  # 3 chunks, rows across chunk boundaries
    x, t = _pair(rows, 37, dtype, 1)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "t.npy", t)
    request = ComputeRequest(str(tmp_path / "x.npy"), str(tmp_path / "t.npy"), reduction=reduction)
    local = compute(request)
    rng = np.random.default_rng(7)
    for _ in range(3):
        job, sx, st_ = _job(request)
        assert T.units(job) == -(-x.size // engine.CHUNK) == 3
        cuts = rng.integers(0, 4, 2).tolist()
        order = rng.permutation(3).tolist()
        result = reduce_job(
            request, sx, st_, job, lambda j, c=cuts, o=order: _run(j, _shuffled_split(j, c, o))
        )
        assert result.loss.tobytes() == local.loss.tobytes()
        assert result.diagnostics == local.diagnostics
        assert result.shape == local.shape and result.dtype == local.dtype
    if reduction == "sum":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            assert np.asarray(kl_div(x, t, "sum")).tobytes() == local.loss.tobytes()


def _parquet(path: Path, a: np.ndarray, row_group_size: int) -> None:
    table = pa.table({f"c{j}": a[:, j] for j in range(a.shape[1])})
    pq.write_table(table, path, row_group_size=row_group_size)


@pytest.mark.parametrize(
    ("x_groups", "t_groups", "layout"),
    [(700, 700, T.GROUPS), (700, 1100, T.COLUMNS)],
)
def test_parquet_layouts_equal_local(tmp_path: Path, x_groups, t_groups, layout) -> None:
    x, t = _pair(5000, 11, "float32", 2)
    _parquet(tmp_path / "x.parquet", x, x_groups)
    _parquet(tmp_path / "t.parquet", t, t_groups)
    for reduction in ("sum", "batchmean"):
        request = ComputeRequest(
            str(tmp_path / "x.parquet"), str(tmp_path / "t.parquet"), reduction=reduction
        )
        local = compute(request)
        job, sx, st_ = _job(request)
        assert job.layout == layout
        n = T.units(job)
        work = _shuffled_split(job, [3, 5], list(range(n))[::-1])
        result = reduce_job(request, sx, st_, job, lambda j, w=work: _run(j, w))
        assert result.loss.tobytes() == local.loss.tobytes()
        assert result.diagnostics == local.diagnostics


def test_parquet_grid_reads_rows_across_row_groups(tmp_path: Path) -> None:
    """A grid task's rows straddle row groups: read_rows joins them."""
    x, _ = _pair(1000, 3, "float64", 3)
    _parquet(tmp_path / "x.parquet", x, 64)
    request = ComputeRequest(str(tmp_path / "x.parquet"), str(tmp_path / "x.parquet"))
    job, _, _ = _job(request)
    assert np.array_equal(T.read_rows(job.x, 60, 200), x[60:200])
    assert np.array_equal(T.read_all(job.x), x)


def test_non_finite_loss_gets_the_local_explanations(tmp_path: Path) -> None:
    x, t = _pair(3000, 50, "float32", 4)
    t[5, 3] = -0.5
    x[2999, 0] = np.nan
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "t.npy", t)
    request = ComputeRequest(str(tmp_path / "x.npy"), str(tmp_path / "t.npy"), reduction="sum")
    local = compute(request)
    job, sx, st_ = _job(request)
    passes = []

    def run(j: T.Job) -> list[T.Partial]:
        passes.append(j.explain)
        return _run(j, default_split(j, engine.CHUNK))

    result = reduce_job(request, sx, st_, job, run)
    assert passes == [False, True]
    assert np.isnan(result.loss) and np.isnan(local.loss)
    assert result.diagnostics == local.diagnostics


def test_errors_in_tasks_come_back_as_data(tmp_path: Path) -> None:
    """A missing value found by a task is the local engine's kind of error, one line."""
    x, t = _pair(100, 2, "float64", 5)
    table = pa.table({"a": pa.array(x[:, 0]), "b": pa.array([*x[:99, 1], None])})
    pq.write_table(table, tmp_path / "x.parquet")
    _parquet(tmp_path / "t.parquet", t, 1000)
    request = ComputeRequest(str(tmp_path / "x.parquet"), str(tmp_path / "t.parquet"))
    job, _, _ = _job(request)
    failure = T.run_task(job, T.Task(0, T.units(job)))
    assert isinstance(failure, T.Failure)
    error = failure.error()
    assert isinstance(error, InputError) and "missing a value" in str(error)
    assert "\n" not in str(error)


@pytest.mark.parametrize(
    "changes", [{"reduction": "none"}, {"per_row": True}, {"top": 3}, {"input": "-"}]
)
def test_dask_engine_computes_scalar_losses_only(changes) -> None:
    request = ComputeRequest(**{"input": "x.npy", "target": "t.npy", **changes})
    with pytest.raises(UsageError, match="--engine dask"):
        check_request(request)


@pytest.mark.parametrize("ext", [".npy", ".parquet"])
def test_transforms_of_small_tables_equal_local(ext) -> None:
    """A small Parquet table is read whole locally (column-major): one WHOLE task reads it
    the same way, so a softmax's row sums add in the same order."""
    request = ComputeRequest(
        str(SAMPLES / f"student_logits{ext}"),
        str(SAMPLES / f"teacher_logits{ext}"),
        reduction="batchmean",
        input_transform="log-softmax",
        target_transform="softmax",
    )
    local = compute(request)
    job, sx, st_ = _job(request)
    result = reduce_job(request, sx, st_, job, lambda j: _run(j, T.split(j, 1)))
    assert result.loss.tobytes() == local.loss.tobytes()
    assert result.diagnostics == local.diagnostics


def test_a_whole_plan_without_transforms_is_spread(tmp_path: Path) -> None:
    """A 3-D .npy streams locally as rows of its last axis; untransformed, its partials
    are the grid's."""
    x, t = _pair(int(1.5 * engine.CHUNK) // 10, 10, "float32", 8)
    x, t = x.reshape(-1, 5, 2), t.reshape(-1, 5, 2)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "t.npy", t)
    request = ComputeRequest(str(tmp_path / "x.npy"), str(tmp_path / "t.npy"), reduction="sum")
    local = compute(request)
    job, sx, st_ = _job(request)
    assert local.plan.value == "row-blocks" and job.layout == T.GRID and T.units(job) == 2
    result = reduce_job(request, sx, st_, job, lambda j: _run(j, T.split(j, 1)[::-1]))
    assert result.loss.tobytes() == local.loss.tobytes()
    assert result.diagnostics == local.diagnostics
    # Transformed along the last axis, rows stay row-local: the grid has the local bits.
    transformed = ComputeRequest(request.input, request.target, input_transform="log-softmax")
    job, sx, st_ = _job(transformed)
    assert job.layout == T.GRID
    result = reduce_job(transformed, sx, st_, job, lambda j: _run(j, T.split(j, 1)))
    assert result.loss.tobytes() == compute(transformed).loss.tobytes()


def test_log_target_diagnostics_look_at_the_first_block_as_locally(tmp_path: Path) -> None:
    """With --log-target the local engine checks the row sums of its first block only."""
    x, t = _pair(40_000, 20, "float32", 9)
    t = np.log(t * 1.5)  # no row sums to 1
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "t.npy", t)
    request = ComputeRequest(
        str(tmp_path / "x.npy"), str(tmp_path / "t.npy"), reduction="sum", log_target=True
    )
    local = compute(request)
    job, sx, st_ = _job(request)
    assert T.units(job) > 2
    result = reduce_job(request, sx, st_, job, lambda j: _run(j, T.split(j, 1)[::-1]))
    assert result.loss.tobytes() == local.loss.tobytes()
    assert any("do not sum to 1" in m for m in local.diagnostics)
    assert result.diagnostics == local.diagnostics


def test_without_distributed_the_dask_engine_names_the_extra(monkeypatch) -> None:
    import sys

    from kldiv_cli.engines import dask as D

    monkeypatch.setitem(sys.modules, "distributed", None)  # import fails as if absent
    with pytest.raises(UsageError, match=r'pip install "kldiv\[dask\]"') as caught:
        D.run_compute_dask(ComputeRequest(str(SAMPLES / "student_logits.npy"), "t.npy"))
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("cluster", "message"),
    [
        ({"workers": 0}, "--workers must be at least 1"),
        ({"scheduler": "tcp://h:1", "scheduler_file": "s.json"}, "not both"),
        ({"scheduler": "tcp://h:1", "workers": 2}, "sizes a local cluster"),
    ],
)
def test_cluster_options_are_checked_first(cluster, message) -> None:
    from kldiv_cli.engines.dask import Cluster

    with pytest.raises(UsageError, match=message):
        Cluster(**cluster).validate()


def test_a_missing_scheduler_file_is_one_line(tmp_path: Path) -> None:
    pytest.importorskip("distributed")
    from kldiv_cli.engines.dask import Cluster, connect

    with pytest.raises(UsageError, match="--scheduler-file .*nope.json: no such file"):
        with connect(Cluster(scheduler_file=str(tmp_path / "nope.json"))):
            pass


def test_streams_cannot_be_read_again_by_tasks(tmp_path: Path) -> None:
    import os

    x, t = _pair(10, 3, "float64", 10)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "t.npy", t)
    os.mkfifo(tmp_path / "t.fifo")
    request = ComputeRequest(str(tmp_path / "x.npy"), str(tmp_path / "t.fifo"))
    sx = open_sources(ComputeRequest(request.input, request.input), None)[0]
    with pytest.raises(UsageError, match="is a stream"):
        T.describe(sx, request.target, request.target_options, {})
    with pytest.raises(UsageError, match="not stdin"):
        T.describe(sx, "-", request.target_options, {})


@pytest.mark.parametrize("streamed", [False, True])
def test_transforms_of_float64_tables_equal_local_read_whole_or_streamed(
    tmp_path: Path, monkeypatch, streamed
) -> None:
    """float64 logits in Parquet with softmax transforms: the local engine reads a small
    table whole (column-major) and streams a large one in row blocks; the tasks read rows
    as the local plan does, so the last bits agree both ways."""
    if streamed:
        monkeypatch.setattr("kldiv_cli.io.base.STREAM_ABOVE", 1024)
    rng = np.random.default_rng(11)
    for name in ("x", "t"):
        a = rng.normal(size=(12_000, 37)) * 3
        table = pa.table({f"c{j}": a[:, j] for j in range(37)})
        pq.write_table(
            table, tmp_path / f"{name}.parquet", row_group_size=int(rng.integers(900, 5000))
        )
    request = ComputeRequest(
        str(tmp_path / "x.parquet"),
        str(tmp_path / "t.parquet"),
        reduction="sum",
        input_transform="log-softmax",
        target_transform="softmax",
    )
    local = compute(request)
    assert local.plan.value == ("row-blocks" if streamed else "whole")
    job, sx, st_ = _job(request, chunk=None)
    result = reduce_job(request, sx, st_, job, lambda j: _run(j, T.split(j, 1)))
    assert result.loss.dtype == np.float64
    assert result.loss.tobytes() == local.loss.tobytes()
