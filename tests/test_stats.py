"""kldiv_cli.core.stats: summaries recomputed independently (fractions.Fraction, plain NumPy)."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kldiv_cli.core.stats import mean_stderr, percentiles, proportion, summary

KEYS = [
    "mean",
    "stderr",
    "min",
    "p0.1",
    "p1",
    "p5",
    "p10",
    "median",
    "p90",
    "p95",
    "p99",
    "p99.9",
    "max",
]


def exact_mean_stderr(x: list[float]) -> tuple[float, float]:
    n = len(x)
    fx = [Fraction(v) for v in x]
    m = sum(fx) / n
    var = sum(v * v for v in fx) / n - m * m
    return float(m), math.sqrt(float(var) / (n - 1))


def interp(x: np.ndarray, frac: float) -> float:
    """Linear interpolation at frac*(N-1), written out."""
    s = np.sort(x)
    pos = frac * (len(s) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(s) - 1)
    return float(s[lo] + (s[hi] - s[lo]) * (pos - lo))


def test_keys_in_order() -> None:
    assert list(summary(np.arange(10.0))) == KEYS


def test_extra_percentiles_merge_by_fraction() -> None:
    out = summary(np.arange(101.0), extra=(("p75", 0.75), ("p25", 0.25)))
    keys = list(out)
    assert (
        keys.index("p10")
        < keys.index("p25")
        < keys.index("median")
        < keys.index("p75")
        < keys.index("p90")
    )
    assert out["p25"] == 25.0 and out["p75"] == 75.0


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False),
        min_size=2,
        max_size=200,
    )
)
def test_mean_stderr_match_exact_rational_arithmetic(x: list[float]) -> None:
    m, se = mean_stderr(np.array(x))
    em, ese = exact_mean_stderr(x)
    assert m == pytest.approx(em, rel=1e-15, abs=1e-300)
    assert se == pytest.approx(ese, rel=1e-9, abs=1e-15 * max(map(abs, x)))


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.floats(min_value=-1e3, max_value=1e3, allow_nan=False), min_size=1, max_size=300)
)
def test_percentiles_are_linear_interpolation(x: list[float]) -> None:
    a = np.array(x)
    out = summary(a)
    for key, frac in [
        ("min", 0),
        ("p0.1", 0.001),
        ("p1", 0.01),
        ("median", 0.5),
        ("p99.9", 0.999),
        ("max", 1),
    ]:
        assert out[key] == pytest.approx(interp(a, frac), rel=1e-12, abs=1e-12)
    assert out["min"] == a.min() and out["max"] == a.max()


def test_near_constant_values_keep_their_spread() -> None:
    # The textbook E[x²] − E[x]² in float64 loses these digits; the centred form does not.
    x = 1e8 + np.array([0.0, 1e-6, 2e-6, 3e-6])
    m, se = mean_stderr(x)
    em, ese = exact_mean_stderr(x.tolist())
    assert m == em
    assert se == pytest.approx(ese, rel=1e-6)


def test_mean_is_exact_sum() -> None:
    x = np.array([1e16, 1.0, -1e16, 1.0])
    assert mean_stderr(x)[0] == 0.5


def test_edge_cases() -> None:
    out = summary(np.array([]))
    assert all(math.isnan(v) for v in out.values())
    one = summary(np.array([2.5]))
    assert one["mean"] == 2.5 and math.isnan(one["stderr"]) and one["min"] == one["max"] == 2.5
    nan = summary(np.array([1.0, math.nan, 2.0]))
    assert all(math.isnan(v) for v in nan.values())
    inf = mean_stderr(np.array([1.0, math.inf]))
    assert inf[0] == math.inf and math.isnan(inf[1])
    assert percentiles(np.array([3.0, 1.0]), (0.5,)) == [2.0]
    with pytest.raises(TypeError):
        summary(np.array(["a"]))


def test_integer_and_float32_input_widen_to_float64() -> None:
    x32 = np.array([0.1, 0.2, 0.3], dtype=np.float32)
    assert summary(x32)["mean"] == math.fsum(x32.astype(np.float64).tolist()) / 3
    assert summary(np.array([1, 2, 3, 4]))["median"] == 2.5


def test_proportion() -> None:
    assert proportion(0.75, 5) == (0.75, math.sqrt(0.75 * 0.25 / 4))
    assert proportion(1.0, 10) == (1.0, 0.0)
    v, se = proportion(0.5, 1)
    assert v == 0.5 and math.isnan(se)
    assert all(math.isnan(v) for v in proportion(0.0, 0))
    with pytest.raises(ValueError):
        proportion(0.5, -1)
