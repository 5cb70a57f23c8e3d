"""Tokens and labels of a batch's leading shape: (B, T) ids beside (B, T, V) logits,
flattened in the logits' row order (compare --tokens, compute --target-labels)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from .helpers import invoke
from .test_gaussian import write_safetensors


def _log_softmax(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    z = x - x.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def _batch(tmp_path: Path, batch: int, steps: int, vocab: int, seed: int):
    """Reference and candidate logits (B, T, V), float32, a padded RL-style batch's
    next tokens (B, T), as a model's ids are: skewed towards small ids."""
    rng = np.random.default_rng(seed)
    ref = (rng.normal(size=(batch, steps, vocab)) * 2.5).astype(np.float32)
    cand = (ref + rng.normal(size=ref.shape) * 0.4).astype(np.float32)
    tokens = np.minimum(rng.geometric(0.08, size=(batch, steps)) - 1, vocab - 1).astype(np.int64)
    return ref, cand, tokens


@pytest.mark.parametrize("batch,container", [(1, "safetensors"), (2, "npy")])
def test_compare_takes_tokens_of_the_leading_shape(tmp_path, batch, container) -> None:
    ref, cand, tokens = _batch(tmp_path, batch, 64 // batch, 40, seed=batch)
    if container == "safetensors":
        write_safetensors(tmp_path / "ref.safetensors", {"logits": ref})
        write_safetensors(tmp_path / "cand.safetensors", {"logits": cand})
    else:
        np.save(tmp_path / "ref.npy", ref)
        np.save(tmp_path / "cand.npy", cand)
    np.save(tmp_path / "tok.npy", tokens)
    out = invoke(
        "compare",
        tmp_path / f"ref.{container}",
        tmp_path / f"cand.{container}",
        "--tokens",
        tmp_path / "tok.npy",
        "-o",
        tmp_path / "rows.csv",
        "-f",
        "json",
    )
    assert out.exit_code == 0, out.stderr
    lp = _log_softmax(ref).reshape(-1, 40)
    lq = _log_softmax(cand).reshape(-1, 40)
    flat = tokens.reshape(-1)  # row b*T + t is sequence b, position t
    rows = list(csv.DictReader((tmp_path / "rows.csv").open()))
    assert len(rows) == 64
    kl = (np.exp(lp) * (lp - lq)).sum(axis=1)
    np.testing.assert_allclose([float(r["kl"]) for r in rows], kl, rtol=1e-9)
    nll_ref = -lp[np.arange(64), flat]
    nll_cand = -lq[np.arange(64), flat]
    np.testing.assert_allclose([float(r["nll_reference"]) for r in rows], nll_ref, rtol=1e-9)
    np.testing.assert_allclose([float(r["nll_candidate"]) for r in rows], nll_cand, rtol=1e-9)
    assert [int(r["token"]) for r in rows] == flat.tolist()
    doc = json.loads(out.stdout)
    assert doc["perplexity"]["reference"] == pytest.approx(np.exp(nll_ref.mean()), rel=1e-9)


def test_compare_refuses_tokens_of_another_shape(tmp_path) -> None:
    ref, cand, tokens = _batch(tmp_path, 1, 32, 20, seed=5)
    np.save(tmp_path / "ref.npy", ref)
    np.save(tmp_path / "cand.npy", cand)
    np.save(tmp_path / "tok.npy", np.concatenate([tokens, tokens]))  # (2, 32)
    out = invoke(
        "compare", tmp_path / "ref.npy", tmp_path / "cand.npy", "--tokens", tmp_path / "tok.npy"
    )
    assert out.exit_code == 2
    assert out.stdout == "" and out.stderr.count("\n") == 1
    assert out.stderr.startswith("kldiv: error: ")
    assert "leading shape (1, 32), got shape (2, 32)" in out.stderr


def _labels(tmp_path: Path, *args: object):
    """compute logp.npy labels.npy --target-labels ARGS."""
    return invoke(
        "compute", tmp_path / "logp.npy", tmp_path / "labels.npy", "--target-labels", *args
    )


@pytest.mark.parametrize("batch", [1, 2])
def test_compute_takes_labels_of_the_leading_shape(tmp_path, batch) -> None:
    ref, _, labels = _batch(tmp_path, batch, 48 // batch, 30, seed=10 + batch)
    logp = _log_softmax(ref).astype(np.float32)
    np.save(tmp_path / "logp.npy", logp)
    np.save(tmp_path / "labels.npy", labels)
    out = _labels(tmp_path, "-r", "batchmean", "-f", "json")
    assert out.exit_code == 0, out.stderr
    # One-hot target: KL = -log q(label) summed over positions, divided by the batch size.
    picked = np.take_along_axis(logp.astype(np.float64), labels[..., None], axis=-1)
    assert json.loads(out.stdout)["loss"] == pytest.approx(-picked.sum() / batch, rel=1e-6)
    # Per-position values keep the input's shape and its row order.
    out = _labels(tmp_path, "-r", "none", "-o", tmp_path / "none.npy")
    assert out.exit_code == 0, out.stderr
    none = np.load(tmp_path / "none.npy")
    assert none.shape == logp.shape
    np.testing.assert_allclose(none.sum(axis=-1), -picked[..., 0], rtol=1e-6)


def test_compute_refuses_labels_of_another_shape(tmp_path) -> None:
    ref, _, labels = _batch(tmp_path, 2, 8, 10, seed=3)
    np.save(tmp_path / "logp.npy", _log_softmax(ref).astype(np.float32))
    np.save(tmp_path / "labels.npy", labels.T)  # (8, 2) beside (2, 8, 10)
    out = invoke("compute", tmp_path / "logp.npy", tmp_path / "labels.npy", "--target-labels")
    assert out.exit_code == 2
    assert out.stdout == "" and out.stderr.count("\n") == 1
    assert "leading shape (2, 8), got shape (8, 2)" in out.stderr
