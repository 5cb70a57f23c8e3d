"""kl_div, its gradients and the softmax conversions against PyTorch 2.13's own numbers.

The golden files come from tests/golden/make_golden.py (run with real torch).
"""

from __future__ import annotations

import json
import math
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


def exact_value(case: dict, out_dtype: np.dtype) -> tuple[float, float]:
    """The float64 value of a finite reducing case, independently: float64 terms from
    the widened operands (xlogy's 0 for a zero target), ``math.fsum``, one division;
    and the same for the terms' absolute values (the scale of float64's own error)."""
    x = arr(case, "x").astype(np.float64)
    t = arr(case, "t").astype(np.float64)
    x, t = np.broadcast_arrays(x, t)
    with np.errstate(all="ignore"):
        if case["log_target"]:
            terms = np.exp(t) * (t - x)
        else:
            terms = np.where(t == 0, 0.0, t * (np.log(t) - x))
    total = math.fsum(terms.ravel().tolist())
    scale = math.fsum(np.abs(terms).ravel().tolist())
    if case["reduction"] == "mean":
        return total / terms.size, scale / terms.size
    if case["reduction"] == "batchmean" and arr(case, "x").ndim:
        batch = arr(case, "x").shape[0]
        return total / batch, scale / batch
    return total, scale


def torch_precision(case: dict) -> np.dtype:
    """The precision torch's own result has: torch computes ``xlogy(t, t)`` and ``exp(t)``
    in the target's dtype and ``t * x`` in the result dtype, so a mixed-dtype result is
    only as accurate as its narrower operand."""
    return min((arr(case, "x").dtype, arr(case, "t").dtype), key=lambda d: d.itemsize)


@pytest.mark.parametrize("case", KL_CASES, ids=case_id)
def test_kl_div_forward(case: dict) -> None:
    legacy = {k: case[k] for k in ("size_average", "reduce") if k in case}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = kl_div(
            arr(case, "x"), arr(case, "t"), case["reduction"], case["log_target"], **legacy
        )
    expected = arr(case, "out")
    if expected.ndim or legacy or case["reduction"] == "none":
        # The pointwise loss is torch's, term by term (legacy cases: either kind).
        assert_same(out, expected)
        return
    assert isinstance(out, np.generic)
    # Aggregates: torch's pattern, torch's number within torch's own rounding error ...
    assert_same(out, expected, torch_precision(case))
    # ... and the float64 value of the data, rounded once: within 1 ulp of the dtype.
    if np.isfinite(expected) and expected.dtype != np.float64:
        exact, _ = exact_value(case, expected.dtype)
        assert abs(float(out) - exact) <= float(np.spacing(out.dtype.type(abs(exact))))
    elif np.isfinite(expected):
        # float64 terms carry float64 rounding: 1e-12 relative to the terms' scale.
        exact, scale = exact_value(case, expected.dtype)
        assert abs(float(out) - exact) <= 1e-12 * scale


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
