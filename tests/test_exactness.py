"""Every aggregate is the float64 value of the data, rounded once (issue 10, part 1).

Near-identical distributions (logits plus N(0, 0.001^2) noise) are where a KL is a small
difference of large terms: float32 terms leave percent-level errors there. Each result is
compared with an independent reference (float64 terms from the widened data, summed with
``math.fsum`` or in long double) and must be within 1 ulp of its dtype.
"""

from __future__ import annotations

import math
import warnings
from functools import cache

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kldiv_cli import kl_div, log_softmax, softmax
from kldiv_cli.core import engine, half
from kldiv_cli.core.pointwise import pointwise
from kldiv_cli.core.transforms import apply_transform

SHAPES = [(400, 2000), (20000, 100)]


@cache
def _logits(shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """The logits and log q (float64), drawn once per shape for every dtype and target."""
    rng = np.random.default_rng(sum(shape))
    logits = rng.normal(size=shape)
    return logits, log_softmax(logits + rng.normal(0, 1e-3, shape))


@cache
def close_pair(shape: tuple[int, int], dtype: str, log_target: bool):
    """(x, t) of ``dtype``: log q and p (or log p) from logits that differ by N(0, 0.001^2)."""
    logits, logq = _logits(shape)
    t = (log_softmax(logits) if log_target else softmax(logits)).astype(dtype)
    return logq.astype(dtype), t


def terms64(x: np.ndarray, t: np.ndarray, log_target: bool) -> np.ndarray:
    """The reference terms: the operands widened to float64, xlogy's 0 for a zero target."""
    x, t = x.astype(np.float64), t.astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        if log_target:
            return np.exp(t) * (t - x)
        return np.where(t == 0, 0.0, t * (np.log(t) - x))


@cache
def exact_total(shape: tuple[int, int], dtype: str, log_target: bool) -> float:
    x, t = close_pair(shape, dtype, log_target)
    return math.fsum(terms64(x, t, log_target).ravel().tolist())


def assert_within_one_ulp(got, exact, dtype) -> None:
    got = np.asarray(got)
    exact = np.asarray(exact, dtype=np.float64)
    assert got.dtype == np.dtype(dtype)
    ulp = np.spacing(np.abs(exact).astype(dtype)).astype(np.float64)
    err = np.abs(got.astype(np.float64) - exact)
    assert (err <= ulp).all(), f"{np.max(err / ulp):.3g} ulp away"


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("dtype", ["float32", "float16"])
@pytest.mark.parametrize("log_target", [False, True], ids=["p", "logp"])
@pytest.mark.parametrize("reduction", ["sum", "mean", "batchmean"])
def test_aggregates_are_within_one_ulp_of_the_float64_value(
    shape, dtype, log_target, reduction
) -> None:
    x, t = close_pair(shape, dtype, log_target)
    total = exact_total(shape, dtype, log_target)
    divisor = {"sum": 1, "mean": x.size, "batchmean": shape[0]}[reduction]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        got = kl_div(x, t, reduction, log_target)
    assert_within_one_ulp(got, total / divisor, dtype)


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("dtype", ["float32", "float16"])
@pytest.mark.parametrize("log_target", [False, True], ids=["p", "logp"])
def test_row_sums_are_within_one_ulp_of_the_float64_value(shape, dtype, log_target) -> None:
    x, t = close_pair(shape, dtype, log_target)
    exact = terms64(x, t, log_target).astype(np.longdouble).sum(axis=-1)
    got = engine.row_sums(x, t, log_target, np.dtype(dtype))
    assert got.shape == (shape[0],)
    assert_within_one_ulp(got, exact, dtype)


def test_float32_terms_are_not_good_enough() -> None:
    """The reference is sharp: float32 terms (torch's way, or a float32 log summed in
    float64) are far more than 1 ulp away on these data."""
    x, t = close_pair(SHAPES[0], "float32", False)
    total = exact_total(SHAPES[0], "float32", False)
    f32_terms = pointwise(x, t, False, np.dtype(np.float32)).astype(np.float64)
    f32_log = (t * (np.log(t) - x)).astype(np.float64)
    for approx in (math.fsum(f32_terms.ravel().tolist()), math.fsum(f32_log.ravel().tolist())):
        assert abs(approx - total) > 100 * float(np.spacing(np.float32(total)))


def test_float64_aggregates_are_within_float64_rounding() -> None:
    x, t = close_pair(SHAPES[1], "float32", False)
    x, t = x.astype(np.float64), t.astype(np.float64)
    terms = terms64(x, t, False)
    exact = math.fsum(terms.ravel().tolist())
    scale = math.fsum(np.abs(terms).ravel().tolist())
    assert abs(float(kl_div(x, t, "sum")) - exact) <= 1e-14 * scale


def test_mixed_dtypes_widen_each_operand_exactly() -> None:
    x16, t16 = close_pair(SHAPES[1], "float16", False)
    x32, t32 = close_pair(SHAPES[1], "float32", False)
    for x, t in ((x16, t32), (x32, t16)):
        total = math.fsum(terms64(x, t, False).ravel().tolist())
        assert_within_one_ulp(kl_div(x, t, "sum"), total, "float32")


def test_float16_widening_is_exact_for_every_value() -> None:
    values = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16).view(np.float16)
    finite = values[np.isfinite(values)]
    normal_negative = finite[finite < -np.finfo(np.float16).tiny]
    # Each one-signed bit path (positive; negative with and without zeros and subnormals)
    # and the general one (mixed signs, inf, nan).
    for part in (finite[~np.signbit(finite)], finite[np.signbit(finite)], normal_negative):
        buf = engine._buffers(part.size)
        operand = engine._Operand(part, buf.t[: part.size], buf)
        assert (operand.lo(), operand.hi()) == (float(part.min()), float(part.max()))
        assert np.array_equal(operand.a64, part.astype(np.float64))
        assert np.array_equal(np.signbit(operand.a64), np.signbit(part))
    for part in (values, finite, values.reshape(256, 256)[:, ::3]):
        for dtype in (np.float64, np.float32):
            widened = half.widen(part, dtype)
            assert widened.shape == part.shape and widened.dtype == dtype
            assert np.array_equal(widened, part.astype(dtype), equal_nan=True)
            assert np.array_equal(np.signbit(widened), np.signbit(part))


def test_float16_narrowing_has_numpys_bits() -> None:
    """Round to nearest even, ties, subnormals, overflow, inf and NaN payloads: the bits
    of NumPy's cast, for every float32 exponent and float16 mantissa, with the bits below
    it at and around each rounding boundary, both signs, and random bit patterns."""
    rng = np.random.default_rng(3)
    exponents = np.arange(256, dtype=np.uint32)[:, None, None] << 23
    mantissas = np.arange(1024, dtype=np.uint32)[None, :, None] << 13
    below = np.array([0, 1, 0x7FF, 0x800, 0xFFF, 0x1000, 0x1001, 0x1FFF], np.uint32)
    bits = (exponents | mantissas | below[None, None, :]).reshape(-1)
    # Results that are float16 subnormals round at other bits: random low bits there.
    small = (np.arange(100, 114, dtype=np.uint32)[:, None] << 23) | rng.integers(
        0, 1 << 23, (14, 20_000), dtype=np.uint32
    )
    bits = np.concatenate([bits, small.ravel(), rng.integers(0, 1 << 32, 200_000, np.uint32)])
    bits = np.concatenate([bits, bits | np.uint32(0x80000000)])
    values = bits.view(np.float32).reshape(-1, 4)
    with np.errstate(all="ignore"):
        expected = values.astype(np.float16)
    got = half.narrow(values)
    assert got.shape == values.shape and got.dtype == np.float16
    assert np.array_equal(got.view(np.uint16), expected.view(np.uint16))
    assert isinstance(half.narrow(np.float32(1.5)), np.float16)
    assert half.narrow(np.array(1.5, np.float32)).shape == ()


def test_float16_pointwise_is_numpys_float16_arithmetic() -> None:
    """The float16 pointwise loss through the bit conversions has the bits of the same
    operations through NumPy's float16 casts (what it was computed with before)."""
    rng = np.random.default_rng(4)
    x = np.log(rng.dirichlet(np.ones(64), 300)).astype(np.float16)
    t = rng.dirichlet(np.full(64, 0.05), 300).astype(np.float16)  # many subnormals
    t.flat[rng.choice(t.size, 40)] = rng.choice(SPECIALS, 40)
    x.flat[rng.choice(x.size, 40)] = rng.choice(SPECIALS, 40)
    f32 = np.float32
    with np.errstate(all="ignore"):
        xlogy = np.where(t == 0, np.float16(0), t * np.log(t))
        tx = (t.astype(f32) * x.astype(f32)).astype(np.float16)
        plain = (xlogy.astype(f32) - tx.astype(f32)).astype(np.float16)
        e = np.exp(t)
        d = (t.astype(f32) - x.astype(f32)).astype(np.float16)
        logged = (e.astype(f32) * d.astype(f32)).astype(np.float16)
    for log_target, expected in ((False, plain), (True, logged)):
        got = pointwise(x, t, log_target, np.dtype(np.float16))
        assert np.array_equal(got.view(np.uint16), expected.view(np.uint16))


def test_one_hot_targets_and_masked_inputs_keep_torch_pattern() -> None:
    x, t = close_pair(SHAPES[1], "float32", False)
    labels = np.zeros_like(t)
    labels[np.arange(len(t)), 3] = 1
    exact = math.fsum(terms64(x, labels, False).ravel().tolist())
    assert_within_one_ulp(kl_div(x, labels, "sum"), exact, "float32")
    masked = x.copy()
    masked[5, 7] = -np.inf  # a zero target against -inf: torch's 0 * inf = nan
    assert np.isnan(kl_div(masked, labels, "sum"))
    assert np.isnan(engine.row_sums(masked, labels, False, np.dtype(np.float32))[5])
    assert np.isfinite(engine.row_sums(masked, labels, False, np.dtype(np.float32))[4])


@pytest.mark.parametrize(
    ("x", "t", "log_target", "x_dtype", "t_dtype"),
    [
        # torch's float32 exp(100) overflows: inf * (t - x) = inf * 0 = nan.
        ([100.0, -1.0], [100.0, -1.0], True, "float32", "float32"),
        # torch's float16 t * x overflows: xlogy(300, 300) - (-90000) = inf.
        ([-300.0, -1.0], [300.0, 0.5], False, "float16", "float16"),
        # inf - inf in torch's float32 terms.
        ([1e30, -1.0], [1e37, 0.5], False, "float32", "float32"),
        # exp(t) and xlogy(t, t) are computed in the target's dtype, whatever the result's.
        ([0.0, -1.0], [12.0, -1.0], True, "float64", "float16"),
        ([-1.0, -1.0], [8000.0, 0.5], False, "float64", "float16"),
    ],
)
def test_terms_that_overflow_in_torch_give_torch_result(x, t, log_target, x_dtype, t_dtype):
    x, t = np.array(x, dtype=x_dtype), np.array(t, dtype=t_dtype)
    dtype = np.result_type(x, t)
    torch_terms = pointwise(x, t, log_target, dtype)
    with np.errstate(invalid="ignore"):
        expected = torch_terms.sum(dtype=np.float64)
    assert not np.isfinite(expected)
    for got in (
        kl_div(x, t, "sum", log_target),
        kl_div(x, t, "batchmean", log_target),
        engine.row_sums(x, t, log_target, dtype),
    ):
        assert np.isnan(got) == np.isnan(expected)
        assert np.isposinf(got) == np.isposinf(expected)


SPECIALS = [
    np.nan,
    np.inf,
    -np.inf,
    0.0,
    -0.0,
    -0.5,
    0.25,
    1.0,
    3.0,
    20.0,
    8000.0,
    math.log(0.5),
    -40.0,
]
FLOATS = ["float16", "float32", "float64"]


@st.composite
def operands(draw):
    """Same-shape operands of any float dtypes, mostly distributions, with specials."""
    rows, cols = draw(st.integers(1, 40)), draw(st.integers(1, 40))
    dx, dt = draw(st.sampled_from(FLOATS)), draw(st.sampled_from(FLOATS))
    log_target = draw(st.booleans())
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    t = rng.dirichlet(np.ones(cols), rows)
    x = np.log(rng.dirichlet(np.ones(cols), rows))
    t = np.log(t) if log_target else t
    specials = draw(st.lists(st.sampled_from(SPECIALS), max_size=4))
    for k, value in enumerate(specials):
        target = t if k % 2 else x
        target.flat[draw(st.integers(0, target.size - 1))] = value
    return x.astype(dx), t.astype(dt), log_target


@settings(max_examples=60, deadline=None)
@given(operands(), st.lists(st.integers(1, 300), min_size=1, max_size=6), st.integers(1, 3))
def test_bits_do_not_depend_on_threads_chunks_or_blocks(data, cuts, threads) -> None:
    x, t, log_target = data
    dtype = np.result_type(x, t)
    chunk = 64  # small chunks: several per example, some with specials, some without
    one_shot = engine.total_loss(x, t, log_target, dtype, 1, chunk)
    acc = engine.Accumulator(log_target, threads=threads, chunk=chunk)
    rows, start = len(x), 0
    for cut in cuts * (rows // max(1, sum(cuts)) + 1):
        if start >= rows:
            break
        acc.add(x[start : start + cut], t[start : start + cut], dtype)
        start += cut
    acc.add(x[start:], t[start:], dtype)
    total = acc.total()
    assert total == one_shot or (np.isnan(total) and np.isnan(one_shot))
    rows_once = engine.row_sums(x, t, log_target, dtype, threads=1)
    rows_split = np.concatenate(
        [
            engine.row_sums(x[i : i + 7], t[i : i + 7], log_target, dtype, threads)
            for i in range(0, rows, 7)
        ]
    )
    np.testing.assert_array_equal(rows_once, rows_split)


@settings(max_examples=80, deadline=None)
@given(operands())
def test_nan_and_inf_pattern_is_torchs(data) -> None:
    x, t, log_target = data
    dtype = np.result_type(x, t)
    torch_terms = pointwise(x, t, log_target, dtype)
    with np.errstate(all="ignore"):
        torch_rows = torch_terms.sum(axis=-1, dtype=np.float64).astype(dtype)
        torch_total = dtype.type(torch_terms.sum(dtype=np.float64))
    got_rows = engine.row_sums(x, t, log_target, dtype)
    got_total = kl_div(x, t, "sum", log_target)
    for got, expected in ((got_total, torch_total), (got_rows, torch_rows)):
        for test in (np.isnan, np.isposinf, np.isneginf):
            np.testing.assert_array_equal(test(got), test(expected))


def test_broadcast_operands_sum_like_their_materialised_broadcast() -> None:
    x, t = close_pair(SHAPES[1], "float32", False)
    row = t[:1]
    expected = engine.total_loss(
        x, np.broadcast_to(row, x.shape).copy(), False, np.dtype("float32")
    )
    assert engine.total_loss(x, row, False, np.dtype("float32")) == expected
    rows = engine.row_sums(x, row, False, np.dtype("float32"))
    np.testing.assert_array_equal(
        rows, engine.row_sums(x, np.broadcast_to(row, x.shape), False, np.dtype("float32"))
    )
    # A 0-d operand and a 1-d shape give one row.
    assert (
        engine.row_sums(np.float64(-1.0), np.array([0.5, 0.5]), False, np.dtype("float64")).shape
        == ()
    )


@pytest.mark.parametrize("dtype", ["float16", "float32"])
def test_float64_transforms_round_nothing(dtype) -> None:
    rng = np.random.default_rng(1)
    logits = (rng.normal(size=(6, 9)) * 4).astype(dtype)
    logits[1, [0, 3]] = -np.inf
    logits[2, :] = -np.inf
    wide = logits.astype(np.float64)
    for temperature in (1.0, 0.5, 3.0):
        for fn in (log_softmax, softmax):
            got = fn(logits, temperature=temperature, dtype=np.float64)
            assert got.dtype == np.float64
            np.testing.assert_array_equal(got, fn(wide, temperature=temperature))
        masked = log_softmax(logits, temperature=temperature, dtype=np.float64)
        assert np.isneginf(masked[1, [0, 3]]).all() and np.isnan(masked[2]).all()
    assert apply_transform("log-softmax", logits, dtype=np.float64).dtype == np.float64
    assert apply_transform("exp", logits, dtype=np.float64).dtype == np.float64
    assert apply_transform("none", logits, dtype=np.float64) is logits
    assert log_softmax(logits).dtype == np.dtype(dtype)  # None: torch's dtype


def test_engine_calls_inside_its_own_pool_do_not_wait_on_it() -> None:
    """The job layer may call the engine from workers of the engine's pool: nested calls
    run on their worker, where waiting for the busy pool would deadlock it."""
    x, t = close_pair(SHAPES[1], "float32", False)
    f32 = np.dtype("float32")

    def both() -> tuple[float, np.ndarray]:
        return engine.total_loss(x, t, False, f32, 2), engine.row_sums(x, t, False, f32, 2)

    expected = both()
    pool = engine._pool(2)
    for future in [pool.submit(both) for _ in range(2)]:  # every worker busy at once
        total, rows = future.result(timeout=60)
        assert total == expected[0]
        np.testing.assert_array_equal(rows, expected[1])
