"""Chunked, threaded and streamed results are the one-shot result, bit for bit."""

from __future__ import annotations

import os
import warnings
from dataclasses import replace

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from kldiv_cli import kl_div
from kldiv_cli.core import engine, pointwise
from kldiv_cli.io.sources import ReadOptions
from kldiv_cli.jobs.compute import ComputeRequest, compute


def data(rows: int, cols: int, dtype, seed: int = 0, specials: bool = False):
    rng = np.random.default_rng(seed)
    t = rng.dirichlet(np.ones(cols), rows).astype(dtype)
    x = np.log(rng.dirichlet(np.ones(cols), rows)).astype(dtype)
    if specials:
        t[1, 0] = 0.0  # exact fallback in the chunk that holds it
        x[rows - 2, 1] = -np.inf
    return x, t


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("log_target", [False, True])
@pytest.mark.parametrize("specials", [False, True])
def test_partials_do_not_depend_on_threads(dtype, log_target, specials) -> None:
    x, t = data(3001, 77, dtype, specials=specials)
    if log_target:
        with np.errstate(divide="ignore"):
            t = np.log(t)
    totals = {
        (threads, chunk): engine.total_loss(x, t, log_target, np.dtype(dtype), threads, chunk)
        for threads in (1, 2, 3)
        for chunk in (engine.CHUNK, 4096)
    }
    for chunk in (engine.CHUNK, 4096):
        values = {totals[(th, chunk)] for th in (1, 2, 3)}
        assert len(values) == 1 or all(np.isnan(v) for v in values)
    exact = float(np.sum(pointwise(x, t, log_target, np.dtype(dtype)), dtype=np.float64))
    got = totals[(1, engine.CHUNK)]
    if np.isfinite(exact):
        assert got == pytest.approx(exact, rel=1e-6 if dtype == np.float32 else 1e-12)
    else:
        assert np.isnan(got) == np.isnan(exact)


def test_fast_path_falls_back_exactly_for_zero_targets() -> None:
    x, t = data(10, 8, np.float64)
    t[3, :4] = 0.0
    t[4, 0] = -0.5
    got = engine.total_loss(x, t, False, np.dtype(np.float64), 1, 16)
    assert np.isnan(got)
    t[4, 0] = 0.5
    got = engine.total_loss(x, t, False, np.dtype(np.float64), 1, 16)
    exact = float(np.sum(pointwise(x, t, False, np.dtype(np.float64))))
    assert got == pytest.approx(exact, rel=1e-14)


@pytest.mark.parametrize("block", [1, 7, 64, 1000])
def test_accumulator_matches_one_shot_bitwise(block) -> None:
    x, t = data(2049, 33, np.float32, seed=3)
    one_shot = engine.total_loss(x, t, False, np.dtype(np.float32), chunk=1024)
    acc = engine.Accumulator(False, threads=2, chunk=1024)
    for i in range(0, len(x), block):
        acc.add(x[i : i + block], t[i : i + block], np.dtype(np.float32))
    assert acc.total() == one_shot


@pytest.mark.parametrize("reduction", ["sum", "mean", "batchmean"])
@pytest.mark.parametrize("suffix", ["npy", "parquet"])
@pytest.mark.parametrize("chunk_rows", [1, 5, 99, 10_000])
def test_streamed_cli_equals_api(tmp_path, reduction, suffix, chunk_rows) -> None:
    x, t = data(503, 12, np.float32, seed=4)
    paths = []
    for name, a in (("x", x), ("t", t)):
        path = tmp_path / f"{name}.{suffix}"
        if suffix == "npy":
            np.save(path, a)
        else:
            pq.write_table(
                pa.table({f"c{j}": a[:, j] for j in range(a.shape[1])}), path, row_group_size=37
            )
        paths.append(str(path))
    request = ComputeRequest(paths[0], paths[1], reduction=reduction, per_row=True)
    result = compute(replace(request, chunk_rows=chunk_rows, threads=2))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = kl_div(x, t, reduction)
    assert result.loss.dtype == expected.dtype
    assert result.loss == expected  # Parquet's column-major blocks too
    # Per-row values are exact: the float64 value of each row, rounded once.
    np.testing.assert_array_equal(result.per_row, engine.row_sums(x, t, False, np.float32))
    x64, t64 = x.astype(np.float64), t.astype(np.float64)
    exact = np.sum(t64 * (np.log(t64) - x64), axis=-1)
    assert np.all(np.abs(result.per_row - exact) <= np.spacing(np.abs(exact).astype(np.float32)))
    assert result.shape == (503, 12)


def test_streamed_transforms_and_labels(tmp_path) -> None:
    rng = np.random.default_rng(9)
    logits = rng.normal(size=(211, 6)).astype(np.float32)
    labels = rng.integers(0, 6, 211)
    np.save(xp := tmp_path / "x.npy", logits)
    np.save(lp := tmp_path / "y.npy", labels.reshape(-1, 1))
    request = ComputeRequest(
        str(xp), str(lp), reduction="batchmean", input_transform="log-softmax", target_labels=True
    )
    a = compute(replace(request, chunk_rows=13)).loss
    b = compute(replace(request, chunk_rows=10_000)).loss
    from kldiv_cli import log_softmax

    expected = -log_softmax(logits)[np.arange(211), labels].astype(np.float64).sum() / 211
    assert a == b
    assert float(a) == pytest.approx(expected, rel=1e-6)


def test_streamed_row_count_mismatch(tmp_path) -> None:
    x, t = data(20, 4, np.float64)
    np.save(xp := tmp_path / "x.npy", x)
    np.save(tp := tmp_path / "t.npy", t[:19])
    from kldiv_cli.errors import InputError

    with pytest.raises(InputError, match="shapes do not match|different numbers of rows"):
        compute(ComputeRequest(str(xp), str(tp), reduction="sum", chunk_rows=3))


@pytest.mark.parametrize("stream", [False, True])
def test_parquet_dataset_folder_and_glob(tmp_path, monkeypatch, stream) -> None:
    from kldiv_cli.io import base

    if stream:
        monkeypatch.setattr(base, "STREAM_ABOVE", 0)
    x, t = data(120, 5, np.float64, seed=6)
    folder = tmp_path / "ds"
    for k, start in enumerate(range(0, 120, 40)):
        part = folder / f"day={k}"
        part.mkdir(parents=True)
        block = t[start : start + 40]
        pq.write_table(pa.table({f"p{j}": block[:, j] for j in range(5)}), part / "part-0.parquet")
    np.save(xp := tmp_path / "x.npy", x)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = kl_div(x, t, "batchmean")
    for target in (str(folder), str(folder / "day=*" / "*.parquet")):
        result = compute(
            ComputeRequest(str(xp), target, reduction="batchmean", per_row=True, chunk_rows=7)
        )
        assert result.loss == pytest.approx(expected, rel=1e-12)
        assert result.per_row.shape == (120,)


def test_streamed_csv(tmp_path, monkeypatch) -> None:
    from kldiv_cli.errors import InputError
    from kldiv_cli.io import base
    from kldiv_cli.io import csv as csv_reader

    monkeypatch.setattr(base, "STREAM_ABOVE", 0)
    monkeypatch.setattr(csv_reader, "CSV_STREAM_ABOVE", 0)
    x, t = data(301, 4, np.float64, seed=7)
    np.savetxt(xp := tmp_path / "x.csv", x, delimiter=",", header="a,b,c,d", comments="")
    np.savetxt(tp := tmp_path / "t.csv", t, delimiter=",")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = kl_div(x, t, "batchmean")
    result = compute(ComputeRequest(str(xp), str(tp), reduction="batchmean", chunk_rows=50))
    assert result.loss == pytest.approx(expected, rel=1e-12)
    assert result.shape == (301, 4)
    lines = tp.read_text().splitlines()
    lines[200] = "0.1,oops,0.2,0.3"
    tp.write_text("\n".join(lines) + "\n")
    with pytest.raises(InputError, match="oops"):
        compute(ComputeRequest(str(xp), str(tp), reduction="sum", chunk_rows=50))


def test_streamed_label_errors_name_the_global_row(tmp_path) -> None:
    from kldiv_cli.errors import InputError

    labels = np.zeros((50, 1))
    labels[37] = 9
    np.save(xp := tmp_path / "x.npy", np.log(np.full((50, 3), 1 / 3)))
    np.save(lp := tmp_path / "y.npy", labels)
    with pytest.raises(InputError, match="row 37: label 9 is out of range"):
        compute(ComputeRequest(str(xp), str(lp), reduction="sum", target_labels=True, chunk_rows=8))


def write_parquet(path, a: np.ndarray, row_group_size: int) -> str:
    pq.write_table(
        pa.table({f"c{j}": a[:, j] for j in range(a.shape[1])}), path, row_group_size=row_group_size
    )
    return str(path)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("log_target", [False, True])
def test_parquet_row_groups_summed_column_by_column(tmp_path, monkeypatch, dtype, log_target):
    """Matching row groups are read group by group, a few columns at a time: the loss
    is kl_div's, its bits do not depend on the threads, and the diagnostics see
    every group (rows off, the causes of a NaN, with global counts)."""
    from kldiv_cli.engines import local as compute_module

    x, t = data(1000, 9, dtype, seed=11)
    t[0] *= 2  # a row off in the first group
    t[950] *= 3  # and in the last
    if log_target:
        t = np.log(t)
    xp = write_parquet(tmp_path / "x.parquet", x, 128)
    tp = write_parquet(tmp_path / "t.parquet", t, 128)
    # 4 columns per group read: each row group arrives as three column groups.
    monkeypatch.setattr(compute_module, "GROUP_BYTES", 128 * 8 * 4)
    losses = {
        threads: compute(
            ComputeRequest(xp, tp, reduction="sum", log_target=log_target, threads=threads)
        ).loss
        for threads in (1, 2, 3)
    }
    request = ComputeRequest(xp, tp, reduction="sum", log_target=log_target)
    assert losses[1] == losses[2] == losses[3]
    expected = kl_div(x, t, "sum", log_target=log_target)
    assert losses[1].dtype == expected.dtype
    assert losses[1] == pytest.approx(expected, rel=1e-6 if dtype == np.float32 else 1e-12)
    diagnostics = " ".join(compute(request).diagnostics)
    if not log_target:
        assert "2 of 1,000 target rows do not sum to 1" in diagnostics

    t2 = t.copy()
    t2[700, 3] = np.nan
    t2[5, 1] = -0.5 if not log_target else np.nan
    tp2 = write_parquet(tmp_path / "t2.parquet", t2, 128)
    result = compute(ComputeRequest(xp, tp2, reduction="mean", log_target=log_target))
    assert np.isnan(result.loss)
    messages = " ".join(result.diagnostics)
    if log_target:
        assert "2 target values are NaN" in messages
    else:
        assert "1 target value is NaN" in messages and "1 target value is negative" in messages


@pytest.mark.parametrize("stream", [False, True])
def test_parquet_row_groups_that_differ_still_line_up(tmp_path, monkeypatch, stream) -> None:
    """Read whole (small), or block by block of rows (large): never group by group."""
    from kldiv_cli.io import base

    if stream:
        monkeypatch.setattr(base, "STREAM_ABOVE", 0)
    x, t = data(777, 5, np.float64, seed=12)
    xp = write_parquet(tmp_path / "x.parquet", x, 100)
    tp = write_parquet(tmp_path / "t.parquet", t, 64)
    for reduction in ("sum", "batchmean"):
        result = compute(ComputeRequest(xp, tp, reduction=reduction, threads=2))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            assert result.loss == pytest.approx(kl_div(x, t, reduction), rel=1e-12)


def test_parquet_row_groups_name_the_global_row_of_a_missing_value(tmp_path) -> None:
    from kldiv_cli.errors import InputError

    x, t = data(300, 4, np.float64, seed=13)
    xp = write_parquet(tmp_path / "x.parquet", x, 100)
    columns = {f"c{j}": pa.array(t[:, j], mask=np.arange(300) == 250) for j in range(4)}
    pq.write_table(pa.table(columns), tp := tmp_path / "t.parquet", row_group_size=100)
    with pytest.raises(InputError, match=r"column 'c0': row 250 is missing a value"):
        compute(ComputeRequest(xp, str(tp), reduction="sum"))
    result = compute(
        ComputeRequest(xp, str(tp), reduction="sum", target_options=ReadOptions(missing="nan"))
    )
    assert np.isnan(result.loss)


@pytest.mark.parametrize("suffix", ["npy", "parquet"])
def test_progress_reaches_every_element(tmp_path, suffix) -> None:
    x, t = data(1000, 6, np.float32, seed=14)
    paths = []
    for name, a in (("x", x), ("t", t)):
        if suffix == "npy":
            np.save(path := tmp_path / f"{name}.npy", a)
            paths.append(str(path))
        else:
            paths.append(write_parquet(tmp_path / f"{name}.parquet", a, 300))
    calls = []
    compute(
        ComputeRequest(*paths, reduction="sum", chunk_rows=250),
        progress=lambda done, total: calls.append((done, total)),
    )
    assert calls[-1] == (6000, 6000)  # elements: wide files of few rows get progress too
    assert [d for d, _ in calls] == sorted(d for d, _ in calls) and len(calls) >= 4


def test_parquet_row_group_damaged_midway(tmp_path) -> None:
    """A page broken in the third row group: found by a reader thread after two groups
    were summed; still one error line, exit 2, and the output file untouched."""
    from .conftest import kldiv_subprocess

    x, t = data(4000, 8, np.float64, seed=15)
    xp = write_parquet(tmp_path / "x.parquet", x, 1000)
    tp = write_parquet(tmp_path / "t.parquet", t, 1000)
    raw = bytearray(open(tp, "rb").read())
    page = pq.ParquetFile(tp).metadata.row_group(2).column(3).data_page_offset
    raw[page + 10 : page + 200] = b"\xab" * 190
    (bad := tmp_path / "bad.parquet").write_bytes(bytes(raw))
    (out := tmp_path / "out.json").write_text('{"keep": 1}')
    r = kldiv_subprocess("compute", xp, bad, "-r", "sum", "-o", out)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        f"kldiv: error: {bad}: is not a readable Parquet"
    )
    assert r.stdout == b"" and out.read_text() == '{"keep": 1}'
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "bad.parquet",
        "out.json",
        "t.parquet",
        "x.parquet",
    ]


def test_whole_tables_in_row_blocks_give_the_same_bits(tmp_path) -> None:
    """A table read whole is still summed in blocks of rows (bounded temporaries for
    --per-row): the block size never changes a bit of the loss or of the rows."""
    x, t = data(301, 7, np.float64, seed=16)
    paths = []
    for name, a in (("x", x), ("t", t)):
        path = tmp_path / f"{name}.csv"
        np.savetxt(path, a, delimiter=",", fmt="%.17g")
        paths.append(str(path))
    request = ComputeRequest(*paths, reduction="batchmean", per_row=True, top=3)
    results = [
        compute(replace(request, chunk_rows=rows, threads=2)) for rows in (1, 7, 300, 10_000)
    ]
    for r in results[1:]:
        assert r.loss == results[0].loss
        np.testing.assert_array_equal(r.per_row, results[0].per_row)
        assert r.top == results[0].top
    expected = pointwise(x, t, False, np.dtype(np.float64)).sum(axis=1)
    np.testing.assert_allclose(results[0].per_row, expected, rtol=1e-13)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert results[0].loss == pytest.approx(kl_div(x, t, "batchmean"), rel=1e-13)


@pytest.mark.parametrize("suffix", ["npy", "csv", "parquet"])
def test_reduction_none_streams_into_the_output_file(run_cli, tmp_path, suffix) -> None:
    """-r none -o FILE with .npy inputs (read block by block): the file holds what the
    whole computation writes, T^2 scaling included."""
    x, t = data(257, 6, np.float32, seed=17)
    np.save(xp := tmp_path / "x.npy", x)
    np.save(tp := tmp_path / "t.npy", t)
    out = tmp_path / f"out.{suffix}"
    args = ("compute", xp, tp, "-r", "none", "-T", "2", "--t2-scale", "--chunk-rows", "10")
    r = run_cli(*args, "-o", out)
    assert r.exit_code == 0, r.stderr
    assert f"wrote {out}" in r.stderr
    expected = (kl_div(x, t, "none") * np.float32(4)).astype(np.float32)
    if suffix == "npy":
        got = np.load(out)
        assert got.dtype == np.float32 and got.shape == (257, 6)
        np.testing.assert_array_equal(got, expected)
    elif suffix == "csv":
        whole = run_cli(*args, "-f", "csv")
        assert out.read_text() == whole.stdout
    else:
        table = pq.read_table(out)
        assert table.column_names == [f"c{j}" for j in range(6)]
        np.testing.assert_array_equal(
            np.column_stack([c.to_numpy() for c in table.columns]), expected
        )


def test_reduction_none_streamed_failures_keep_the_old_file(run_cli, tmp_path, monkeypatch):
    """A bad row found midway, or --strict, or --fail-above: the streamed file never
    replaces the old one on error, and the gate sees every value."""
    from kldiv_cli.io import base

    monkeypatch.setattr(base, "STREAM_ABOVE", 0)
    x, t = data(300, 4, np.float64, seed=18)
    xp = write_parquet(tmp_path / "x.parquet", x, 100)
    columns = {f"c{j}": pa.array(t[:, j], mask=np.arange(300) == 250) for j in range(4)}
    pq.write_table(pa.table(columns), tp := tmp_path / "t.parquet", row_group_size=100)
    (out := tmp_path / "out.npy").write_bytes(b"old")
    r = run_cli("compute", xp, tp, "-r", "none", "--chunk-rows", "50", "-o", out)
    assert r.exit_code == 2 and "row 250 is missing a value" in r.stderr
    assert out.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.npy", "t.parquet", "x.parquet"]

    t2 = t * 2  # rows sum to 2: a diagnostic
    tp2 = write_parquet(tmp_path / "t2.parquet", t2, 100)
    r = run_cli("compute", xp, tp2, "-r", "none", "--strict", "-o", out)
    assert r.exit_code == 2 and "--strict" in r.stderr and out.read_bytes() == b"old"

    top = float(kl_div(x, t2, "none").max())
    r = run_cli("compute", xp, tp2, "-r", "none", "-o", out, "--fail-above", str(top * 0.99))
    assert r.exit_code == 1 and "check failed" in r.stderr
    np.testing.assert_array_equal(np.load(out), kl_div(x, t2, "none"))
    r = run_cli("compute", xp, tp2, "-r", "none", "-o", out, "--fail-above", str(top * 1.01))
    assert r.exit_code == 0, r.stderr


def test_block_writer_puts_column_major_blocks_in_row_order(tmp_path) -> None:
    import io

    from kldiv_cli.io.writers import BlockWriter

    whole = np.arange(24, dtype=np.float32).reshape(6, 4)
    f = io.BytesIO()
    writer = BlockWriter("npy", f)
    for start in (0, 4):
        writer.write(np.asfortranarray(whole[start : start + 4]), whole.shape)
    writer.close()
    np.testing.assert_array_equal(np.load(io.BytesIO(f.getvalue())), whole)


def test_an_engine_is_one_registry_record(tmp_path, monkeypatch, run_cli) -> None:
    """The compute job dispatches through the registry: a record added there is found
    by name (by the job and by ``kldiv compute --engine``), its limits refuse a request
    before anything is read, and its result is the job's. An unknown name is one line
    naming every engine."""
    from kldiv_cli.engines import local, registry
    from kldiv_cli.errors import UsageError

    ran: list[str] = []

    def run(request, stdin, progress, note):
        ran.append(request.engine)
        return local.compute(request, stdin, progress, note)

    def scalar_only(request) -> None:
        if request.per_row:
            raise UsageError("--engine inline computes a scalar loss")

    inline = registry.Engine("inline", "a test's engine", run, local.profiler, scalar_only)
    monkeypatch.setitem(registry.ENGINES, "inline", inline)
    x, t = data(40, 5, np.float32, seed=3)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "t.npy", t)
    request = ComputeRequest(str(tmp_path / "x.npy"), str(tmp_path / "t.npy"), engine="inline")
    assert compute(request).loss == compute(replace(request, engine="local")).loss
    assert ran == ["inline"]
    with pytest.raises(UsageError, match="scalar loss"):
        compute(replace(request, per_row=True))
    assert ran == ["inline"]
    with pytest.raises(UsageError, match="unknown engine 'ray'; choose local or dask or inline"):
        compute(replace(request, engine="ray"))
    cli = run_cli("compute", request.input, request.target, "--engine", "inline", "-f", "json")
    assert cli.exit_code == 0, cli.stderr
    assert ran == ["inline", "inline"]
    refused = run_cli("compute", request.input, request.target, "--engine", "inline", "--per-row")
    assert (refused.exit_code, refused.stderr.count("\n")) == (2, 1)
    assert "--engine inline computes a scalar loss" in refused.stderr
    assert ran == ["inline", "inline"]


def _pools_in_child(x: np.ndarray, t: np.ndarray, want: list[float], soft: np.ndarray) -> None:
    from kldiv_cli.core import rows

    sums = engine.partial_sums(x, t, False, np.dtype(np.float32), threads=2)
    got = rows.by_rows(x.reshape(-1, 1024), 1.0, np.dtype(np.float64), rows.softmax_rows, 2)
    raise SystemExit(0 if sums == want and np.array_equal(got, soft) else 3)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork here")
def test_a_forked_child_starts_its_own_engine_and_rows_threads() -> None:
    """The parent's pool threads do not exist in a forked child: waiting on them would hang."""
    import multiprocessing

    from kldiv_cli.core import rows

    rng = np.random.default_rng(3)
    x = rng.standard_normal(engine.PARALLEL_MIN).astype(np.float32)  # 4 chunks, 2 threads
    t = rng.dirichlet(np.ones(1024), engine.PARALLEL_MIN // 1024).astype(np.float32).ravel()
    # The parent's pools are running when the child is forked.
    want = engine.partial_sums(x, t, False, np.dtype(np.float32), threads=2)
    soft = rows.by_rows(x.reshape(-1, 1024), 1.0, np.dtype(np.float64), rows.softmax_rows, 2)
    child = multiprocessing.get_context("fork").Process(
        target=_pools_in_child, args=(x, t, want, soft)
    )
    child.start()
    child.join(60)
    if child.is_alive():
        child.kill()
    assert child.exitcode == 0
