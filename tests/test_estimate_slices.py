"""estimate's slices and report page: each slice's estimates recomputed in NumPy (the
slice's tokens are the only ones counted), gates on a slice, --tokens, --html."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from .helpers import invoke


@pytest.fixture(scope="module")
def rollout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A padded RL batch: 6 responses of up to 10 tokens, a mask, sampled token ids."""
    folder = tmp_path_factory.mktemp("rl")
    rng = np.random.default_rng(11)
    logp = -rng.gamma(2.0, 0.6, size=(6, 10))
    ref = logp + rng.normal(0, 0.2, size=(6, 10))
    ref = np.minimum(ref, 0.0)
    mask = np.zeros((6, 10))
    for i, n in enumerate((10, 7, 4, 9, 1, 6)):
        mask[i, :n] = 1
    ids = rng.integers(0, 50, size=(6, 10))
    for name, a in (("logp", logp), ("ref", ref), ("mask", mask), ("ids", ids)):
        np.save(folder / f"{name}.npy", a)
    return folder


def test_slices_recomputed(rollout: Path) -> None:
    f = rollout
    out = invoke(
        "estimate",
        f / "logp.npy",
        f / "ref.npy",
        "--mask",
        f / "mask.npy",
        "--tokens",
        f / "ids.npy",
        "-a",
        "seq-mean-token-mean",
        "--last",
        3,
        "--positions",
        "2:5",
        "--exclude-token-ids",
        "1,2,3",
        "--by",
        "confidence",
        "-f",
        "json",
    )
    assert out.exit_code == 0, out.stderr
    doc = json.loads(out.stdout)
    logp, ref = np.load(f / "logp.npy"), np.load(f / "ref.npy")
    mask, ids = np.load(f / "mask.npy") == 1, np.load(f / "ids.npy")
    logr = ref - logp
    k3 = np.expm1(logr) - logr
    cols = np.arange(10)[None, :]
    counts = mask.sum(axis=1, keepdims=True)
    conf = np.exp(ref)
    parts = {
        "positions 2:5": mask & (cols >= 2) & (cols < 5),
        "last 3": mask & (cols >= counts - 3),
        "exclude-token-ids 1,2,3": mask & ~np.isin(ids, [1, 2, 3]),
    }
    edges = [0, 0.2, 0.4, 0.6, 0.8, 1.0]
    for i in range(5):
        upper = conf <= 1 if i == 4 else conf < edges[i + 1]
        parts[f"confidence {edges[i]:g}-{edges[i + 1]:g}"] = mask & (conf >= edges[i]) & upper
    assert [s["name"] for s in doc["slices"]] == list(parts)
    for piece in doc["slices"]:
        part = parts[piece["name"]]
        assert piece["rows"] == piece["tokens"] == int(part.sum())
        means = [math.fsum(k3[i][part[i]]) / part[i].sum() for i in range(6) if part[i].any()]
        expected = math.fsum(means) / len(means) if means else math.nan
        if means:
            assert piece["k3"] == pytest.approx(expected, rel=1e-12)
            assert piece["diagnostics"]["per_token"]["k1"]["max"] == pytest.approx(
                (-logr)[part].max()
            )
        else:
            assert math.isnan(piece["k3"])


def test_gate_html_and_errors(rollout: Path, tmp_path: Path) -> None:
    f = rollout
    base = ["estimate", f / "logp.npy", f / "ref.npy", "--mask", f / "mask.npy"]
    doc = json.loads(invoke(*base, "--last", 2, "-f", "json").stdout)
    value = doc["slices"][0]["k3"]
    out = invoke(*base, "--last", 2, "--fail-above", f"slices[last 2].k3={value / 2}")
    assert out.exit_code == 1 and "slices[last 2].k3" in out.stderr
    out = invoke(*base, "--token-ids", "4")
    assert out.exit_code == 2 and "need the tokens (--tokens FILE)" in out.stderr
    out = invoke(*base, "--fail-above", "slices[last 2].k3=1")
    assert out.exit_code == 2 and "unknown statistic" in out.stderr
    page = tmp_path / "rl.html"
    out = invoke(*base, "--by", "position:3", "--top", 2, "--html", page, "-q")
    assert out.exit_code == 0, out.stderr
    text = page.read_text()
    assert "default-src 'none'" in text and "<script" not in text and "://" not in text
    assert text.count("<svg") == 3 and "position 3/3" in text
