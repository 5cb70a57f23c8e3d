"""compare -o to a stream (``-``, /dev/null, /dev/stdout): the per-row measures as CSV,
as compute, estimate, gaussian, profile and drift write their outputs to streams."""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

import numpy as np
import pytest

from .helpers import invoke, kldiv_subprocess


def _log_softmax(x: np.ndarray) -> np.ndarray:
    z = x - x.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


@pytest.fixture()
def pair(tmp_path: Path) -> tuple[Path, Path, np.ndarray]:
    """Two float32 logit files of 12 rows × 50 classes and their per-row KL in NumPy."""
    rng = np.random.default_rng(11)
    a = rng.normal(size=(12, 50)).astype(np.float32) * 2
    b = (a + rng.normal(size=a.shape).astype(np.float32) * 0.3).astype(np.float32)
    np.save(tmp_path / "ref.npy", a)
    np.save(tmp_path / "cand.npy", b)
    lp, lq = _log_softmax(a.astype(np.float64)), _log_softmax(b.astype(np.float64))
    kl = (np.exp(lp) * (lp - lq)).sum(axis=1)
    return tmp_path / "ref.npy", tmp_path / "cand.npy", kl


def _rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def test_dash_puts_the_rows_on_stdout_and_the_statistics_on_stderr(pair) -> None:
    ref, cand, kl = pair
    out = invoke("compare", ref, cand, "-o", "-", "-f", "json")
    assert out.exit_code == 0, out.stderr
    rows = _rows(out.stdout)
    assert [int(r["row"]) for r in rows] == list(range(12))
    np.testing.assert_allclose([float(r["kl"]) for r in rows], kl, rtol=1e-9)
    # The statistics are whole on stderr (stdout is one CSV table).
    doc = json.loads(out.stderr[out.stderr.index("{") :])
    assert doc["kl"]["mean"] == pytest.approx(kl.mean(), rel=1e-9)


def test_dev_null_takes_the_rows_and_stdout_keeps_the_statistics(pair) -> None:
    ref, cand, kl = pair
    out = invoke("compare", ref, cand, "-o", os.devnull, "-f", "json")
    assert out.exit_code == 0, out.stderr
    assert json.loads(out.stdout)["kl"]["mean"] == pytest.approx(kl.mean(), rel=1e-9)
    assert out.stderr.strip().splitlines()[-1] == f"kldiv: wrote {os.devnull}"


def test_gate_still_fails_with_the_rows_on_stdout(pair) -> None:
    ref, cand, kl = pair
    out = invoke("compare", ref, cand, "-o", "-", "--fail-above", f"kl.mean={kl.mean() / 2}")
    assert out.exit_code == 1
    assert len(_rows(out.stdout)) == 12
    assert "check failed" in out.stderr and "kl.mean" in out.stderr


def test_a_file_of_another_kind_is_still_refused(pair, tmp_path: Path) -> None:
    ref, cand, _ = pair
    out = invoke("compare", ref, cand, "-o", tmp_path / "rows.json")
    assert out.exit_code == 2
    assert out.stderr.count("\n") == 1 and out.stderr.startswith("kldiv: error: -o ")
    assert ".npy, .csv or .parquet file, or as CSV to a stream" in out.stderr
    assert out.stdout == "" and not (tmp_path / "rows.json").exists()


def test_dev_stdout_in_a_child_process(pair) -> None:
    ref, cand, kl = pair
    r = kldiv_subprocess("compare", ref, cand, "-o", "/dev/stdout")
    assert r.returncode == 0, r.stderr
    rows = _rows(r.stdout.decode())
    np.testing.assert_allclose([float(x["kl"]) for x in rows], kl, rtol=1e-9)
    err = r.stderr.decode()
    assert "KL divergence" in err and "kldiv: wrote /dev/stdout" in err
