"""kldiv topk and top-K references in compare: files written and read by independent code
(pyarrow, NumPy), the bucket and renormalised measures recomputed with math.fsum, the
lower bound, the sweep, and bad files."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from .helpers import SAMPLES, invoke


def log_softmax(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    m = x.max(axis=-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=-1, keepdims=True))


def logits(seed: int, shape: tuple[int, ...], noise: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    base = (rng.standard_normal(shape) * 2.5).astype(np.float32)
    cand = (base + rng.standard_normal(shape) * noise).astype(np.float32)
    return base, cand


def write_independent(path: Path, lp: np.ndarray, k: int, list_type: str = "list") -> None:
    """A top-K file as a distillation exporter writes it: NumPy's stable sort, fsum tails."""
    idx = np.argsort(-lp, axis=1, kind="stable")[:, :k]
    top = np.take_along_axis(lp, idx, axis=1)
    tail = []
    for row, chosen in zip(lp, idx):
        rest = np.delete(row, chosen)
        tail.append(math.log(math.fsum(np.exp(rest))) if rest.size else -math.inf)
    n = len(lp)
    if list_type == "fixed":
        indices = pa.FixedSizeListArray.from_arrays(pa.array(idx.reshape(-1).astype(np.int32)), k)
        logprobs = pa.FixedSizeListArray.from_arrays(
            pa.array(top.reshape(-1).astype(np.float32)), k
        )
    else:
        offsets = pa.array(np.arange(0, n * k + 1, k, dtype=np.int32))
        indices = pa.ListArray.from_arrays(offsets, pa.array(idx.reshape(-1).astype(np.int32)))
        logprobs = pa.ListArray.from_arrays(offsets, pa.array(top.reshape(-1).astype(np.float32)))
    table = pa.table(
        {
            "doc_id": pa.array([f"doc-{i // 7}" for i in range(n)]),
            "indices": indices,
            "logprobs": logprobs,
            "tail_logprob": pa.array(tail, type=pa.float64()),
        }
    )
    pq.write_table(table, path, row_group_size=13)


def expected(path: Path, lq: np.ndarray, mode: str) -> dict[str, np.ndarray]:
    """The measures on the file's cells, row by row with math.fsum."""
    table = pq.read_table(path)
    idx = [np.asarray(r, dtype=np.int64) for r in table.column("indices").to_pylist()]
    lps = [
        np.asarray(r, dtype=np.float32).astype(np.float64)
        for r in table.column("logprobs").to_pylist()
    ]
    tails = table.column("tail_logprob").to_numpy()
    out: dict[str, list[float]] = {"kl": [], "kl_reverse": [], "js": [], "tv": []}
    for i, (chosen, lp_k) in enumerate(zip(idx, lps)):
        row = lq[i]
        if mode == "bucket":
            rest = np.delete(row, chosen)
            lp_c = np.append(lp_k, tails[i])
            lq_c = np.append(row[chosen], math.log(math.fsum(np.exp(rest))))
        else:
            lp_c = lp_k - math.log(math.fsum(np.exp(lp_k)))
            lq_c = row[chosen] - math.log(math.fsum(np.exp(row[chosen])))
        p, q = np.exp(lp_c), np.exp(lq_c)
        m = (p + q) / 2
        out["kl"].append(math.fsum(p * (lp_c - lq_c)))
        out["kl_reverse"].append(math.fsum(q * (lq_c - lp_c)))
        out["js"].append(0.5 * math.fsum(p * np.log(p / m)) + 0.5 * math.fsum(q * np.log(q / m)))
        out["tv"].append(0.5 * math.fsum(np.abs(p - q)))
    return {k: np.asarray(v) for k, v in out.items()}


@pytest.mark.parametrize(("mode", "list_type"), [("bucket", "list"), ("renormalize", "fixed")])
def test_independent_file_measures(tmp_path: Path, mode: str, list_type: str) -> None:
    base, cand = logits(1, (40, 300), noise=0.3)
    ref = tmp_path / "teacher_top16.parquet"
    write_independent(ref, log_softmax(base), 16, list_type)
    np.save(tmp_path / "student.npy", cand)
    rows = tmp_path / "rows.parquet"
    out = invoke("compare", ref, tmp_path / "student.npy", "--tail", mode, "-f", "json", "-o", rows)
    assert out.exit_code == 0, out.stderr
    doc = json.loads(out.stdout)
    want = expected(ref, log_softmax(cand), mode)
    got = pq.read_table(rows).to_pydict()
    for name, values in want.items():
        np.testing.assert_allclose(got[name], values, rtol=1e-9, atol=1e-15)
        assert doc[name]["mean"] == pytest.approx(math.fsum(values) / len(values), rel=1e-9)
    assert doc["sparse"] == {
        "k": 16,
        "tail": mode,
        "lower_bound": mode == "bucket",
        "note": doc["sparse"]["note"],
    }
    cover = [
        math.fsum(np.exp(np.asarray(r, dtype=np.float64)))
        for r in pq.read_table(ref).column("logprobs").to_pylist()
    ]
    assert doc["coverage"]["mean"] == pytest.approx(math.fsum(cover) / len(cover), rel=1e-12)
    assert doc["coverage"]["min"] == pytest.approx(min(cover), rel=1e-12)
    # The candidate's rank of the reference's top-1, from the dense candidate.
    best = np.argsort(-base, axis=1, kind="stable")[:, 0]
    ranks = [1 + int(np.sum(c > c[b]) + np.sum((c == c[b])[:b])) for c, b in zip(cand, best)]
    assert got["top1_rank"] == ranks


def test_written_file_and_lower_bound(tmp_path: Path) -> None:
    base, cand = logits(2, (3, 20, 500), noise=0.5)
    np.save(tmp_path / "base.npy", base)
    np.save(tmp_path / "cand.npy", cand)
    tokens = np.random.default_rng(3).integers(0, 500, size=(3, 20))
    np.save(tmp_path / "tokens.npy", tokens)
    top = tmp_path / "base_top8.parquet"
    out = invoke(
        "topk",
        tmp_path / "base.npy",
        "-k",
        8,
        "-o",
        top,
        "--tokens",
        tmp_path / "tokens.npy",
        "--chunk-rows",
        7,
    )
    assert out.exit_code == 0, out.stderr
    assert "wrote" in out.stderr and out.stdout == ""
    table = pq.read_table(top)
    assert table.schema.field("indices").type == pa.list_(pa.int32())
    assert table.schema.field("logprobs").type == pa.list_(pa.float32())
    assert table.schema.field("tail_logprob").type == pa.float64()
    assert table.column("token").to_pylist() == tokens.reshape(-1).tolist()
    lp = log_softmax(base.reshape(-1, 500))
    idx = np.argsort(-lp, axis=1, kind="stable")[:, :8]
    assert np.array_equal(np.asarray(table.column("indices").to_pylist()), idx)
    stored = np.asarray(table.column("logprobs").to_pylist(), dtype=np.float32)
    assert np.array_equal(stored, np.take_along_axis(lp, idx, axis=1).astype(np.float32))
    for row, chosen, tail in zip(lp, idx, table.column("tail_logprob").to_pylist()):
        assert tail == pytest.approx(math.log(math.fsum(np.exp(np.delete(row, chosen)))), rel=1e-13)
    # compare against the file: a lower bound of the dense KL, row by row.
    sparse_rows, dense_rows = tmp_path / "sparse.csv", tmp_path / "dense.csv"
    assert invoke("compare", top, tmp_path / "cand.npy", "-o", sparse_rows, "-q").exit_code == 0
    assert (
        invoke(
            "compare", tmp_path / "base.npy", tmp_path / "cand.npy", "-o", dense_rows, "-q"
        ).exit_code
        == 0
    )
    sparse = np.genfromtxt(sparse_rows, delimiter=",", names=True)
    dense = np.genfromtxt(dense_rows, delimiter=",", names=True)
    for name in ("kl", "kl_reverse", "js", "tv"):
        assert (sparse[name] <= dense[name] * (1 + 1e-6) + 1e-12).all(), name
    assert np.array_equal(sparse["token"], tokens.reshape(-1))
    assert np.array_equal(sparse["sequence"], dense["sequence"])
    assert np.array_equal(sparse["position"], dense["position"])
    assert np.array_equal(sparse["top1_rank"], dense["top1_rank"])


def test_npz_pair_and_keys(tmp_path: Path) -> None:
    base, cand = logits(4, (30, 64), noise=0.2)
    lp = log_softmax(base)
    idx = np.argsort(-lp, axis=1, kind="stable")[:, :5]
    top = np.take_along_axis(lp, idx, axis=1).astype(np.float32)
    tail = np.array([math.log(math.fsum(np.exp(np.delete(r, c)))) for r, c in zip(lp, idx)])
    np.savez(tmp_path / "teacher.npz", top_ids=idx.astype(np.int32), top_lp=top, tail_logprob=tail)
    np.save(tmp_path / "student.npy", cand)
    write_independent(tmp_path / "same.parquet", lp, 5)
    keyed = invoke(
        "compare",
        tmp_path / "teacher.npz",
        tmp_path / "student.npy",
        "--indices-key",
        "top_ids",
        "--logprobs-key",
        "top_lp",
        "-f",
        "json",
    )
    assert keyed.exit_code == 0, keyed.stderr
    parquet = invoke("compare", tmp_path / "same.parquet", tmp_path / "student.npy", "-f", "json")
    a, b = json.loads(keyed.stdout), json.loads(parquet.stdout)
    assert a["kl"] == b["kl"] and a["coverage"] == b["coverage"]


def test_sweep(tmp_path: Path) -> None:
    base, cand = logits(5, (50, 200), noise=0.4)
    np.save(tmp_path / "base.npy", base)
    np.save(tmp_path / "cand.npy", cand)
    out = invoke(
        "topk",
        tmp_path / "base.npy",
        "--candidate",
        tmp_path / "cand.npy",
        "--sweep",
        "1,4,16,64,256",
        "-f",
        "json",
    )
    assert out.exit_code == 0, out.stderr
    doc = json.loads(out.stdout)
    ks = [r["k"] for r in doc["sweep"]]
    assert ks == [1, 4, 16, 64, 200]  # K beyond the vocabulary is the vocabulary
    dense = json.loads(
        invoke("compare", tmp_path / "base.npy", tmp_path / "cand.npy", "-f", "json").stdout
    )
    for r in doc["sweep"]:
        assert r["dense_kl_mean"] == dense["kl"]["mean"]
        assert r["relative_error"] == pytest.approx(
            (r["dense_kl_mean"] - r["sparse_kl_mean"]) / r["dense_kl_mean"]
        )
    errors = [r["relative_error"] for r in doc["sweep"]]
    assert errors == sorted(errors, reverse=True) and errors[0] > 0.05
    assert abs(errors[-1]) < 1e-5  # K = V: only the float32 rounding of the stored log-probs
    sizes = [r["bytes_per_position"] for r in doc["sweep"]]
    assert sizes == sorted(sizes)
    # The sparse mean is what compare computes from the file itself.
    assert (
        invoke("topk", tmp_path / "base.npy", "-k", 16, "-o", tmp_path / "t16.parquet").exit_code
        == 0
    )
    from_file = json.loads(
        invoke("compare", tmp_path / "t16.parquet", tmp_path / "cand.npy", "-f", "json").stdout
    )
    assert from_file["kl"]["mean"] == doc["sweep"][2]["sparse_kl_mean"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda idx, lp: (np.where(np.arange(idx.shape[1]) == 1, idx[:, :1], idx), lp),
            "row 0 is not a top-K row",
        ),
        (lambda idx, lp: (idx + 1000, lp), "outside the candidate's 64 classes"),
        (lambda idx, lp: (idx, lp + 5.0), "row 0 is not a top-K row"),
    ],
)
def test_bad_files(tmp_path: Path, change, message: str) -> None:
    base, cand = logits(6, (12, 64))
    lp = log_softmax(base)
    idx = np.argsort(-lp, axis=1, kind="stable")[:, :4]
    idx, top = change(idx, np.take_along_axis(lp, idx, axis=1))
    np.savez(
        tmp_path / "bad.npz",
        indices=idx,
        logprobs=top.astype(np.float32),
        tail_logprob=np.full(12, -1.0),
    )
    np.save(tmp_path / "cand.npy", cand)
    out = invoke("compare", tmp_path / "bad.npz", tmp_path / "cand.npy")
    assert out.exit_code == 2
    assert out.stderr.count("\n") == 1 and message in out.stderr, out.stderr


def test_usage_errors(tmp_path: Path) -> None:
    kld = SAMPLES / "compare" / "base.kld"
    out = invoke("topk", kld, "-k", 4)
    assert out.exit_code == 2 and "needs both -k K and -o OUT.parquet" in out.stderr
    out = invoke("topk", kld, "-k", 4, "-o", tmp_path / "t.csv")
    assert out.exit_code == 2 and "parquet" in out.stderr
    assert not (tmp_path / "t.csv").exists()
    assert invoke("topk", kld, "-k", 4, "-o", tmp_path / "t.parquet").exit_code == 0
    out = invoke(
        "compare", tmp_path / "t.parquet", SAMPLES / "compare" / "quant.kld", "-T", 2, "--strict"
    )
    assert out.exit_code == 2 and "was written at temperature 1" in out.stderr
    out = invoke(
        "compare",
        tmp_path / "t.parquet",
        SAMPLES / "compare" / "quant.kld",
        "--fail-above",
        "perplexity.ratio=1.1",
    )
    assert out.exit_code == 2 and "needs a dense reference" in out.stderr
    out = invoke(
        "compare",
        SAMPLES / "compare" / "base.kld",
        SAMPLES / "compare" / "quant.kld",
        "--fail-below",
        "coverage.min=0.9",
    )
    assert out.exit_code == 2 and "needs a top-K reference" in out.stderr
