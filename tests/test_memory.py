"""Memory bounded by the per-row results: arrays of rank 3+ stream along their leading
axes with the bits of the 2-D file, and peak RSS stays far below the file's size."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from .helpers import invoke
from .test_safetensors_kld import write_safetensors


def _batch1(tmp_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """A batch-1 dump, (1, positions, vocabulary), of close logits, as .npy and
    safetensors, and the same rows as a 2-D .npy."""
    rng = np.random.default_rng(20)
    x = rng.normal(0, 3, (1, 301, 40)).astype(np.float32)
    t = (x + rng.normal(0, 0.3, x.shape)).astype(np.float32)
    for name, a in (("x", x), ("t", t)):
        np.save(tmp_path / f"{name}3.npy", a)
        np.save(tmp_path / f"{name}2.npy", a.reshape(-1, a.shape[-1]))
        write_safetensors(
            tmp_path / f"{name}3.safetensors", {"l": ("F32", list(a.shape), a.tobytes())}
        )
    return x, t


SOFT = ["--input-transform", "log-softmax", "--target-transform", "softmax"]


@pytest.mark.parametrize("ext", ["npy", "safetensors"])
@pytest.mark.parametrize(
    "flags",
    [["-r", "batchmean", *SOFT], ["-r", "sum", "--per-row", *SOFT], ["-r", "mean", "--top", "3"]],
)
def test_rank3_compute_streams_with_the_bits_of_2d(tmp_path: Path, ext: str, flags) -> None:
    x, _ = _batch1(tmp_path)
    three = json.loads(
        invoke(
            "compute",
            tmp_path / f"x3.{ext}",
            tmp_path / f"t3.{ext}",
            *flags,
            "--chunk-rows",
            "16",
            "-f",
            "json",
        ).stdout
    )
    # torch's batchmean divides by the first axis: 1 for a batch-1 dump, the sum of the rows
    flat = ["sum" if f == "batchmean" else f for f in flags]
    two = json.loads(
        invoke("compute", tmp_path / "x2.npy", tmp_path / "t2.npy", *flat, "-f", "json").stdout
    )
    assert three["shape"] == list(x.shape)
    assert three["loss"] == two["loss"]
    assert three.get("per_row") == two.get("per_row") and three.get("top") == two.get("top")
    if "--per-row" in flags:
        assert len(three["per_row"]) == x.shape[1]


def test_rank3_pointwise_loss_keeps_its_shape(tmp_path: Path) -> None:
    x, t = _batch1(tmp_path)
    out = tmp_path / "loss.npy"
    r = invoke(
        "compute", tmp_path / "x3.safetensors", tmp_path / "t3.npy", "-r", "none", *SOFT, "-o", out
    )
    assert r.exit_code == 0, r.stderr
    streamed = np.load(out)
    whole = invoke(
        "compute", tmp_path / "x3.npy", tmp_path / "t3.npy", "-r", "none", *SOFT, "-f", "json"
    )
    assert streamed.shape == x.shape
    assert streamed.tolist() == json.loads(whole.stdout)["loss"]


def test_rank3_compare_matches_2d(tmp_path: Path) -> None:
    _batch1(tmp_path)
    three = invoke(
        "compare",
        tmp_path / "x3.safetensors",
        tmp_path / "t3.npy",
        "--chunk-rows",
        "7",
        "-f",
        "json",
    )
    two = invoke("compare", tmp_path / "x2.npy", tmp_path / "t2.npy", "-f", "json")
    assert three.exit_code == 0, three.stderr
    a, b = json.loads(three.stdout), json.loads(two.stdout)
    assert a["rows"] == 301
    assert {k: a[k] for k in ("rows", "kl", "js", "tv")} == {
        k: b[k] for k in ("rows", "kl", "js", "tv")
    }
