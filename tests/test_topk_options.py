"""Top-K references and their options: -T tempers the candidate (the file's temperature
recorded by kldiv topk, a different -T warned about), --indices-key or --logprobs-key
alone selects the top-K reading, options that do not apply to a dense reference."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from .helpers import invoke
from .test_topk import expected, log_softmax, logits


def test_temperature_tempers_the_candidate(tmp_path: Path) -> None:
    base, cand = logits(21, (2, 9, 40), noise=0.6)
    np.save(tmp_path / "base.npy", base)
    np.save(tmp_path / "cand.npy", cand)
    top = tmp_path / "base_T2.parquet"
    assert invoke("topk", tmp_path / "base.npy", "-k", 6, "-T", 2, "-o", top).exit_code == 0
    meta = pq.read_schema(top).metadata
    assert meta[b"kldiv.temperature"] == b"2.0" and meta[b"kldiv.k"] == b"6"
    assert meta[b"kldiv.source_dtype"] == b"float32" and meta[b"kldiv.version"]
    # The stored log-probabilities are the tempered reference's.
    lp = log_softmax(base.reshape(-1, 40).astype(np.float64) / 2)
    stored = np.asarray(pq.read_table(top).column("logprobs").to_pylist(), dtype=np.float32)
    assert np.array_equal(stored[:, 0], lp.max(axis=1).astype(np.float32))
    rows = tmp_path / "rows.parquet"
    out = invoke("compare", top, tmp_path / "cand.npy", "-T", 2, "-f", "json", "-o", rows)
    assert out.exit_code == 0 and "warning" not in out.stderr, out.stderr
    want = expected(top, log_softmax(cand.reshape(-1, 40).astype(np.float64) / 2), "bucket")
    np.testing.assert_allclose(pq.read_table(rows).column("kl").to_numpy(), want["kl"], rtol=1e-9)
    doc = json.loads(out.stdout)
    assert doc["kl"]["mean"] == pytest.approx(math.fsum(want["kl"]) / 18, rel=1e-9)
    # -T other than the recorded temperature: one warning line; --strict refuses.
    out = invoke("compare", top, tmp_path / "cand.npy", "-f", "json")
    assert out.exit_code == 0
    assert out.stderr.count("\n") == 1
    assert "written at temperature 2 (kldiv topk -T)" in out.stderr and "-T 1" in out.stderr
    out = invoke("compare", top, tmp_path / "cand.npy", "-T", 3, "--strict")
    assert out.exit_code == 2 and out.stderr.count("\n") == 1
    assert out.stderr.startswith("kldiv: error: --strict:") and "-T 3" in out.stderr


def _arrays(tmp_path: Path) -> tuple[np.ndarray, Path]:
    base, cand = logits(22, (25, 48), noise=0.3)
    lp = log_softmax(base)
    idx = np.argsort(-lp, axis=1, kind="stable")[:, :5]
    tail = np.array([math.log(math.fsum(np.exp(np.delete(r, c)))) for r, c in zip(lp, idx)])
    top = np.take_along_axis(lp, idx, axis=1).astype(np.float32)
    np.savez(tmp_path / "t.npz", indices=idx, lp=top, tail_logprob=tail)
    np.savez(tmp_path / "ix.npz", ix=idx, logprobs=top, tail_logprob=tail)
    np.save(tmp_path / "cand.npy", cand)
    return cand, tmp_path / "cand.npy"


@pytest.mark.parametrize(
    ("name", "options"),
    [("t.npz", ("--logprobs-key", "lp")), ("ix.npz", ("--indices-key", "ix"))],
)
def test_either_key_selects_topk(tmp_path: Path, name: str, options: tuple[str, str]) -> None:
    cand, cand_path = _arrays(tmp_path)
    out = invoke("compare", tmp_path / name, cand_path, *options, "-f", "json")
    assert out.exit_code == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["sparse"]["k"] == 5
    # Recomputed from the arrays: the bucket KL with math.fsum.
    arrays = np.load(tmp_path / name)
    lq = log_softmax(cand)
    kl = []
    for row, ids, lp_k, tail in zip(lq, *(arrays[k] for k in arrays.files)):
        lp_c = np.append(lp_k.astype(np.float64), tail)
        lq_c = np.append(row[ids], math.log(math.fsum(np.exp(np.delete(row, ids)))))
        kl.append(math.fsum(np.exp(lp_c) * (lp_c - lq_c)))
    assert doc["kl"]["mean"] == pytest.approx(math.fsum(kl) / len(kl), rel=1e-9)


def test_missing_key_names_both_options(tmp_path: Path) -> None:
    _, cand_path = _arrays(tmp_path)
    out = invoke("compare", tmp_path / "t.npz", cand_path, "--indices-key", "indices")
    assert out.exit_code == 2 and out.stderr.count("\n") == 1
    assert "has no array 'logprobs'" in out.stderr and "it holds: indices, lp" in out.stderr
    assert "--indices-key and --logprobs-key" in out.stderr


def test_topk_options_with_a_dense_reference(tmp_path: Path) -> None:
    base, cand = logits(23, (10, 30), noise=0.3)
    np.save(tmp_path / "base.npy", base)
    np.save(tmp_path / "cand.npy", cand)
    plain = invoke("compare", tmp_path / "base.npy", tmp_path / "cand.npy", "-f", "json")
    args = ("compare", tmp_path / "base.npy", tmp_path / "cand.npy", "--tail", "renormalize")
    out = invoke(*args, "--indices-key", "foo", "-f", "json")
    assert out.exit_code == 0 and out.stderr.count("\n") == 1
    assert "--tail renormalize and --indices-key foo apply to a top-K reference" in out.stderr
    assert json.loads(out.stdout)["kl"] == json.loads(plain.stdout)["kl"]
    out = invoke(*args, "--strict")
    assert out.exit_code == 2 and out.stderr.count("\n") == 1
    assert "--strict: --tail renormalize applies to a top-K reference" in out.stderr


def test_coverage_near_one_is_not_printed_as_one() -> None:
    from kldiv_cli.jobs.topk import WriteResult
    from kldiv_cli.render.topk import write_report

    result = WriteResult("t.parquet", 3, 8, 100, {"mean": 0.9999996, "min": 0.99999})
    (line,) = write_report(result).plain
    assert line.endswith("top-K mass mean 0.9999996, min 0.999990")
    result.coverage = {"mean": 1.0, "min": 0.25}
    assert write_report(result).plain[0].endswith("mean 1.000000, min 0.250000")
