"""``kldiv compute INPUT TOPK``: distillation against a top-K teacher file, recomputed
row by row in NumPy float64 with math.fsum from files written by independent code."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from .helpers import invoke


def log_softmax(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    m = x.max(axis=-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=-1, keepdims=True))


def teacher_student(seed: int, rows: int = 23, vocab: int = 40) -> tuple[np.ndarray, np.ndarray]:
    """Teacher and student logits of a small distillation batch (float32, as models emit)."""
    rng = np.random.default_rng(seed)
    teacher = (rng.standard_normal((rows, vocab)) * 2.5).astype(np.float32)
    student = (teacher + rng.standard_normal((rows, vocab)) * 0.7).astype(np.float32)
    return teacher, student


def write_exporter(path: Path, lp: np.ndarray, k: int) -> None:
    """A top-K file as a distillation exporter writes it (pyarrow alone): a free-text
    id column beside the lists, row groups that do not match any block size."""
    idx = np.argsort(-lp, axis=1, kind="stable")[:, :k]
    top = np.take_along_axis(lp, idx, axis=1)
    rest = [math.fsum(np.exp(np.delete(r, c))) for r, c in zip(lp, idx)]
    tail = [math.log(m) if m > 0 else -math.inf for m in rest]
    n = len(lp)
    offsets = pa.array(np.arange(0, n * k + 1, k, dtype=np.int32))
    table = pa.table(
        {
            "sample": pa.array([f"prompt #{i // 5}: «{i}»" for i in range(n)]),
            "indices": pa.ListArray.from_arrays(
                offsets, pa.array(idx.reshape(-1).astype(np.int32))
            ),
            "logprobs": pa.ListArray.from_arrays(
                offsets, pa.array(top.reshape(-1).astype(np.float32))
            ),
            "tail_logprob": pa.array(tail, type=pa.float64()),
        }
    )
    pq.write_table(table, path, row_group_size=7)


def expected_rows(path: Path, lq: np.ndarray, mode: str) -> np.ndarray:
    """Each row's KL on the file's cells, from the file as pyarrow reads it, with fsum."""
    table = pq.read_table(path)
    out = []
    for r, (idx, lps, tail) in enumerate(
        zip(
            table["indices"].to_pylist(),
            table["logprobs"].to_pylist(),
            table["tail_logprob"].to_pylist(),
        )
    ):
        q = [math.exp(lq[r, j]) for j in idx]
        p = [math.exp(v) for v in lps]
        if mode == "bucket":
            p.append(math.exp(tail))
            q.append(math.fsum(math.exp(lq[r, j]) for j in range(lq.shape[1]) if j not in idx))
        else:
            sp, sq = math.fsum(p), math.fsum(q)
            p, q = [v / sp for v in p], [v / sq for v in q]
        out.append(math.fsum(a * (math.log(a) - math.log(b)) for a, b in zip(p, q) if a > 0))
    return np.array(out)


def run_json(*args: object) -> dict:
    out = invoke("compute", *args, "-f", "json")
    assert out.exit_code == 0, out.stderr
    return json.loads(out.stdout)


@pytest.mark.parametrize("mode", ["bucket", "renormalize"])
@pytest.mark.parametrize("writer", ["kldiv", "exporter"])
def test_reductions_against_numpy(tmp_path: Path, mode: str, writer: str) -> None:
    teacher, student = teacher_student(1)
    np.save(tmp_path / "teacher.npy", teacher)
    np.save(tmp_path / "student.npy", student)
    top = tmp_path / "teacher_top8.parquet"
    if writer == "kldiv":
        assert invoke("topk", tmp_path / "teacher.npy", "-k", 8, "-o", top).exit_code == 0
    else:
        write_exporter(top, log_softmax(teacher), 8)
    want = expected_rows(top, log_softmax(student), mode)
    base = (tmp_path / "student.npy", top, "--input-transform", "log-softmax", "--tail", mode)
    total = run_json(*base, "-r", "sum")
    assert total["loss"] == pytest.approx(math.fsum(want), rel=1e-12)
    assert total["target"]["lower_bound"] is (mode == "bucket")
    mass = np.exp(np.asarray(pq.read_table(top)["logprobs"].to_pylist(), dtype=np.float64))
    assert total["target"]["coverage"]["min"] == pytest.approx(mass.sum(axis=1).min(), rel=1e-12)
    assert total["target"]["coverage"]["mean"] == pytest.approx(mass.sum(axis=1).mean(), rel=1e-12)
    mean = run_json(*base, "-r", "batchmean", "--per-row")
    assert mean["loss"] == pytest.approx(math.fsum(want) / len(want), rel=1e-12)
    np.testing.assert_allclose(mean["per_row"], want, rtol=1e-11)
    rows = run_json(*base, "-r", "none")
    np.testing.assert_allclose(rows["loss"], want, rtol=1e-11)
    worst = run_json(*base, "-r", "sum", "--top", 3)
    assert [t["row"] for t in worst["top"]] == list(np.argsort(-want, kind="stable")[:3])


def test_bucket_is_a_lower_bound_and_exact_at_full_vocabulary(tmp_path: Path) -> None:
    teacher, student = teacher_student(2, rows=9, vocab=16)
    lp = log_softmax(teacher)
    np.save(tmp_path / "student_lp.npy", log_softmax(student))
    write_exporter(tmp_path / "full.parquet", lp, 16)
    write_exporter(tmp_path / "top4.parquet", lp, 4)
    # The dense teacher as the file stores it (float32 log-probs, widened): the same p.
    stored = np.asarray(pq.read_table(tmp_path / "full.parquet")["logprobs"].to_pylist())
    order = np.asarray(pq.read_table(tmp_path / "full.parquet")["indices"].to_pylist())
    dense = np.empty_like(stored)
    np.put_along_axis(dense, order, stored, axis=1)
    np.save(tmp_path / "teacher_lp.npy", dense)
    student_lp = tmp_path / "student_lp.npy"
    terms = np.exp(dense) * (dense - log_softmax(student))
    exact = np.array([math.fsum(row) for row in terms])
    full = run_json(student_lp, tmp_path / "full.parquet", "-r", "none")
    np.testing.assert_array_max_ulp(np.array(full["loss"]), exact, maxulp=1)
    dense_sum = run_json(student_lp, tmp_path / "teacher_lp.npy", "--log-target", "-r", "sum")
    sparse_sum = run_json(student_lp, tmp_path / "full.parquet", "-r", "sum")
    np.testing.assert_array_max_ulp(sparse_sum["loss"], dense_sum["loss"], maxulp=1)
    bound = run_json(student_lp, tmp_path / "top4.parquet", "-r", "none")
    assert (np.array(bound["loss"]) <= exact + 1e-12).all()
    assert np.array(bound["loss"]).sum() < 0.999 * exact.sum()


def test_npz_pair_with_keys(tmp_path: Path) -> None:
    teacher, student = teacher_student(3, rows=6, vocab=12)
    lp = log_softmax(teacher)
    idx = np.argsort(-lp, axis=1, kind="stable")[:, :5]
    top = np.take_along_axis(lp, idx, axis=1).astype(np.float32)
    tail = np.log(1 - np.exp(top.astype(np.float64)).sum(axis=1))
    np.savez(tmp_path / "t.npz", ids=idx.astype(np.int32), lps=top, tail_logprob=tail)
    np.save(tmp_path / "s.npy", student)
    args = ("--indices-key", "ids", "--logprobs-key", "lps", "--input-transform", "log-softmax")
    got = run_json(tmp_path / "s.npy", tmp_path / "t.npz", *args, "-r", "none")
    write_exporter(tmp_path / "t.parquet", lp, 5)
    want = expected_rows(tmp_path / "t.parquet", log_softmax(student), "bucket")
    np.testing.assert_allclose(got["loss"], want, rtol=1e-6)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (("-r", "mean"), "use -r batchmean"),
        (("-r", "sum", "--log-target"), "drop --log-target and --target-transform"),
        (("-r", "sum", "--target-transform", "softmax"), "drop --log-target"),
        (("-r", "sum", "--input-transform", "softmax"), "does not give log q"),
        (("-r", "sum", "--tail", "both"), "--tail"),
    ],
)
def test_bad_combinations(tmp_path: Path, extra: tuple[str, ...], message: str) -> None:
    teacher, student = teacher_student(4, rows=5, vocab=8)
    np.save(tmp_path / "s.npy", student)
    write_exporter(tmp_path / "t.parquet", log_softmax(teacher), 3)
    out = invoke("compute", tmp_path / "s.npy", tmp_path / "t.parquet", *extra)
    assert out.exit_code == 2, out.stderr
    assert out.stderr.count("\n") == 1 and message in out.stderr, out.stderr
    assert out.stdout == ""


def test_bad_inputs(tmp_path: Path) -> None:
    teacher, student = teacher_student(5, rows=5, vocab=8)
    write_exporter(tmp_path / "t.parquet", log_softmax(teacher), 3)
    np.save(tmp_path / "short.npy", log_softmax(student[:4]))
    out = invoke("compute", tmp_path / "short.npy", tmp_path / "t.parquet", "-r", "sum")
    assert out.exit_code == 2 and "input 4, top-K target 5" in out.stderr, out.stderr
    np.save(tmp_path / "narrow.npy", log_softmax(student[:, :2]))
    out = invoke("compute", tmp_path / "narrow.npy", tmp_path / "t.parquet", "-r", "sum")
    assert out.exit_code == 2 and "outside INPUT's 2 classes" in out.stderr, out.stderr
    np.save(tmp_path / "logits.npy", student)
    out = invoke("compute", tmp_path / "logits.npy", tmp_path / "t.parquet", "-r", "sum")
    assert out.exit_code == 0 and "--input-transform log-softmax" in out.stderr, out.stderr


def test_batch_of_sequences_divides_by_the_batch(tmp_path: Path) -> None:
    """A (batch, positions, vocab) student against kldiv topk's file of the same teacher:
    the rows are positions, batchmean divides by the batch as torch does."""
    teacher, student = teacher_student(6, rows=2 * 7, vocab=12)
    np.save(tmp_path / "teacher.npy", teacher.reshape(2, 7, 12))
    np.save(tmp_path / "student.npy", student.reshape(2, 7, 12))
    top = tmp_path / "top5.parquet"
    assert invoke("topk", tmp_path / "teacher.npy", "-k", 5, "-o", top).exit_code == 0
    assert pq.read_table(top)["position"].to_pylist() == list(range(7)) * 2
    want = expected_rows(top, log_softmax(student), "bucket")
    args = (tmp_path / "student.npy", top, "--input-transform", "log-softmax")
    got = run_json(*args, "-r", "batchmean")
    assert got["loss"] == pytest.approx(math.fsum(want) / 2, rel=1e-12)


def test_unknown_tail_is_one_line_in_both_commands(tmp_path: Path) -> None:
    for command in ("compute", "compare"):
        out = invoke(command, tmp_path / "a.npy", tmp_path / "b.parquet", "--tail", "both")
        assert out.exit_code == 2 and out.stderr.count("\n") == 1, out.stderr
        assert "unknown --tail 'both'" in out.stderr and "bucket" in out.stderr
