"""Exact aggregates through the compute job, on every plan and format.

Near-identical float32 distributions (logits differing by N(0, 0.001²)) are where float32
arithmetic fails: a KL there is a small difference of large terms. Every aggregate of
``kldiv compute`` must be the float64 value of the data as given — transforms included —
rounded once: within 1 ulp of the float32 result.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import pytest

from kldiv_cli.jobs.compute import ComputeRequest, Plan, compute

from .helpers import invoke

ROWS, COLS = 600, 300


def _logits() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(21)
    teacher = rng.normal(0, 2, (ROWS, COLS)).astype(np.float32)
    student = (teacher + rng.normal(0, 1e-3, (ROWS, COLS))).astype(np.float32)
    return student, teacher


def _f64_log_softmax(a: np.ndarray) -> np.ndarray:
    z = a.astype(np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


STUDENT, TEACHER = _logits()
# The probability files hold torch's float32 transforms: the data as given is float32.
X32 = (_f64_log_softmax(STUDENT)).astype(np.float32)
T32 = np.exp(_f64_log_softmax(TEACHER)).astype(np.float32)


def _reference_rows(x: np.ndarray, t: np.ndarray) -> np.ndarray:
    """The float64 value of each row's KL, computed independently (long double sums)."""
    x64, t64 = x.astype(np.longdouble), t.astype(np.longdouble)
    return np.sum(t64 * (np.log(t64) - x64), axis=-1)


def _within_one_ulp(value: float | np.ndarray, exact: float | np.ndarray) -> bool:
    value = np.asarray(value, dtype=np.float32)
    exact64 = np.asarray(exact, dtype=np.float64)
    return bool(np.all(np.abs(value.astype(np.float64) - exact64) <= np.spacing(np.abs(value))))


def _write(folder: Path, name: str, a: np.ndarray, fmt: str) -> str:
    table = pa.table({f"c{j}": a[:, j] for j in range(a.shape[1])})
    if fmt == "npy":
        np.save(path := folder / f"{name}.npy", a)
    elif fmt == "parquet":
        pq.write_table(table, path := folder / f"{name}.parquet", row_group_size=128)
    elif fmt == "csv":
        pcsv.write_csv(table, path := folder / f"{name}.csv")
    else:  # a dataset: a folder of Parquet files
        (path := folder / name).mkdir()
        for i, start in enumerate(range(0, len(a), 250)):
            pq.write_table(table.slice(start, 250), path / f"part-{i}.parquet")
    return str(path)


@pytest.fixture(scope="module")
def probability_files(tmp_path_factory):
    """``files(fmt)``: the probability pair as ``fmt`` (written once per module, for
    every reduction), the data as given and the float64 reference of its total."""
    written: dict[str, tuple[str, str, np.ndarray, np.floating]] = {}

    def files(fmt: str) -> tuple[str, str, np.ndarray, np.floating]:
        if fmt not in written:
            folder = tmp_path_factory.mktemp(fmt)
            xp, tp = _write(folder, "x", X32, fmt), _write(folder, "t", T32, fmt)
            if fmt == "csv":  # CSV text is read back as float64: the data as given is that
                x, t = (
                    np.column_stack(pcsv.read_csv(p).columns).astype(np.float64) for p in (xp, tp)
                )
            else:
                x, t = X32, T32
            written[fmt] = xp, tp, x, _reference_rows(x, t).sum()
        return written[fmt]

    return files


@pytest.mark.parametrize(
    ("fmt", "plan"),
    [
        ("npy", Plan.ROW_BLOCKS),
        ("parquet", Plan.ROW_GROUPS),
        ("csv", Plan.COLUMNS),
        ("dataset", Plan.COLUMNS),  # small: read whole
    ],
)
@pytest.mark.parametrize("reduction", ["sum", "batchmean", "mean"])
def test_probabilities_exact_on_every_plan(probability_files, fmt, plan, reduction) -> None:
    xp, tp, x, total = probability_files(fmt)
    result = compute(ComputeRequest(xp, tp, reduction=reduction))
    assert result.plan is plan
    divisor = {"sum": 1, "batchmean": ROWS, "mean": ROWS * COLS}[reduction]
    if x.dtype == np.float64:
        assert result.loss == pytest.approx(float(total / divisor), rel=1e-12)
    else:
        assert _within_one_ulp(result.loss, total / divisor)


@pytest.mark.parametrize("fmt", ["npy", "parquet"])
def test_logits_with_transforms_exact(tmp_path, fmt) -> None:
    """A log-softmax of float32 logits is computed in float64 for an aggregate."""
    sp, tp = _write(tmp_path, "s", STUDENT, fmt), _write(tmp_path, "t", TEACHER, fmt)
    request = ComputeRequest(
        sp,
        tp,
        reduction="batchmean",
        input_transform="log-softmax",
        target_transform="softmax",
        per_row=True,
    )
    log_q, log_p = _f64_log_softmax(STUDENT), _f64_log_softmax(TEACHER)
    rows = np.sum(np.exp(log_p) * (log_p - log_q), axis=-1)
    for chunk_rows in (None, 7):
        result = compute(replace(request, chunk_rows=chunk_rows))
        assert str(result.dtype) == "float32"
        assert _within_one_ulp(result.loss, rows.sum() / ROWS)
        assert _within_one_ulp(result.per_row, rows)
    # The float32 pipeline (torch's) is far off here; the exact value is not.
    assert abs(float(result.loss) / (rows.sum() / ROWS) - 1) < 1e-6


def test_per_row_exact_where_float32_terms_cancel(tmp_path) -> None:
    xp, tp = _write(tmp_path, "x", X32, "npy"), _write(tmp_path, "t", T32, "npy")
    result = compute(ComputeRequest(xp, tp, reduction="batchmean", per_row=True, top=3))
    exact = _reference_rows(X32, T32)
    assert _within_one_ulp(result.per_row, exact)
    torch_like = (T32 * (np.log(T32) - X32)).sum(axis=-1, dtype=np.float32)
    assert np.max(np.abs(torch_like / exact.astype(np.float64) - 1)) > 1e-3  # what it fixes
    assert [row for row, _ in result.top] == list(np.argsort(-exact, kind="stable")[:3])


def test_cli_prints_the_exact_value(tmp_path) -> None:
    xp, tp = _write(tmp_path, "x", X32, "npy"), _write(tmp_path, "t", T32, "npy")
    out = invoke("compute", xp, tp, "-r", "batchmean", "-f", "json")
    assert out.exit_code == 0, out.stderr
    import json

    loss = json.loads(out.stdout)["loss"]
    assert _within_one_ulp(np.float32(loss), _reference_rows(X32, T32).sum() / ROWS)


def test_float16_files_exact(tmp_path) -> None:
    x16, t16 = X32.astype(np.float16), T32.astype(np.float16)
    xp, tp = _write(tmp_path, "x", x16, "npy"), _write(tmp_path, "t", t16, "npy")
    result = compute(ComputeRequest(xp, tp, reduction="sum", per_row=True))
    assert str(result.dtype) == "float16"
    exact = _reference_rows(x16, t16)
    loss = np.float16(result.loss)
    assert abs(float(loss) - float(exact.sum())) <= np.spacing(np.abs(loss))
    assert np.all(
        np.abs(result.per_row.astype(np.float64) - exact.astype(np.float64))
        <= np.spacing(np.abs(result.per_row))
    )
