"""kl_div, its gradients and the softmax conversions against PyTorch 2.13's own numbers.

The golden files come from tests/golden/make_golden.py (run with real torch).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest

from kldiv_cli import kl_div, kl_div_grad, log_softmax, softmax

GOLDEN = Path(__file__).parent / "golden"
CASES = json.loads((GOLDEN / "cases.json").read_text())
ARRAYS = np.load(GOLDEN / "arrays.npz")
RTOL = {np.dtype("float16"): 2e-3, np.dtype("float32"): 1e-6, np.dtype("float64"): 1e-12}


def arr(case: dict, name: str) -> np.ndarray:
    return ARRAYS[f"c{case['id']}_{name}"]


def assert_same(actual, expected: np.ndarray, precision: np.dtype | None = None) -> None:
    """Same shape, dtype and NaN/inf pattern; values within the tolerance of the
    dtype the result was computed in (``precision``, default its own dtype)."""
    actual = np.asarray(actual)
    assert actual.shape == expected.shape
    assert actual.dtype == expected.dtype
    assert np.array_equal(np.isnan(actual), np.isnan(expected))
    assert np.array_equal(np.isposinf(actual), np.isposinf(expected))
    assert np.array_equal(np.isneginf(actual), np.isneginf(expected))
    finite = np.isfinite(expected)
    rtol = RTOL[np.dtype(precision or expected.dtype)]
    scale = np.max(np.abs(expected[finite]), initial=0.0)
    # atol covers results that are small differences of large terms, where torch
    # itself is only accurate relative to the terms.
    np.testing.assert_allclose(actual[finite], expected[finite], rtol=rtol, atol=rtol * scale)


def case_id(case: dict) -> str:
    extra = "-".join(
        f"{k}={case[k]}" for k in ("reduction", "log_target", "axis", "temperature") if k in case
    )
    return f"{case['id']}-{case['op']}-{case['tag']}-{extra}"


KL_CASES = [c for c in CASES if c["op"] == "kl_div"]
TRANSFORM_CASES = [c for c in CASES if c["op"] != "kl_div"]


@pytest.mark.parametrize("case", KL_CASES, ids=case_id)
def test_kl_div_forward(case: dict) -> None:
    legacy = {k: case[k] for k in ("size_average", "reduce") if k in case}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = kl_div(
            arr(case, "x"), arr(case, "t"), case["reduction"], case["log_target"], **legacy
        )
    assert_same(out, arr(case, "out"))
    if np.ndim(out) == 0:
        assert isinstance(out, np.generic)


@pytest.mark.parametrize(
    "case",
    [c for c in KL_CASES if "gx" in c["arrays"] and "size_average" not in c and "reduce" not in c],
    ids=case_id,
)
def test_kl_div_gradients(case: dict) -> None:
    go = arr(case, "go") if "go" in case["arrays"] else None
    gx, gt = kl_div_grad(arr(case, "x"), arr(case, "t"), case["reduction"], case["log_target"], go)
    precision = np.asarray(arr(case, "out")).dtype
    assert_same(gx, arr(case, "gx"), precision)
    assert_same(gt, arr(case, "gt"), precision)


@pytest.mark.parametrize("case", TRANSFORM_CASES, ids=case_id)
def test_softmax_family(case: dict) -> None:
    fn = softmax if case["op"] == "softmax" else log_softmax
    out = fn(arr(case, "x"), axis=case["axis"], temperature=case["temperature"])
    assert_same(out, arr(case, "out"))
