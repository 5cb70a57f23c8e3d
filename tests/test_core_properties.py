"""Invariants of kl_div that hold for any valid data (hypothesis)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from kldiv_cli import kl_div, kl_div_grad, log_softmax, softmax


@st.composite
def distributions(draw, rows=st.integers(1, 6), cols=st.integers(1, 8)):
    n, c = draw(rows), draw(cols)
    logits = draw(arrays(np.float64, (n, c), elements=st.floats(-20, 20)))
    return softmax(logits)


@st.composite
def pairs(draw):
    p = draw(distributions())
    logits = draw(arrays(np.float64, p.shape, elements=st.floats(-20, 20)))
    return log_softmax(logits), p


@given(pairs())
def test_row_sums_are_non_negative(pair) -> None:
    x, p = pair
    rows = kl_div(x, p, reduction="none").sum(axis=-1)
    assert (rows >= -1e-12).all()


@given(distributions())
def test_identical_distributions_give_zero(p) -> None:
    with np.errstate(divide="ignore"):
        x = np.log(p)
    assert abs(kl_div(x, p, reduction="sum")) <= 1e-12 * p.size
    assert abs(kl_div(x, x, reduction="sum", log_target=True)) <= 1e-12 * p.size


@given(pairs(), st.randoms(use_true_random=False))
def test_batchmean_is_invariant_under_row_permutation(pair, rnd) -> None:
    x, p = pair
    order = list(range(x.shape[0]))
    rnd.shuffle(order)
    a = kl_div(x, p, reduction="batchmean")
    b = kl_div(x[order], p[order], reduction="batchmean")
    assert np.isclose(a, b, rtol=1e-12, atol=1e-15)


@given(pairs())
def test_log_target_agrees_with_plain_target(pair) -> None:
    x, p = pair
    positive = p > 1e-300
    a = kl_div(x, p, reduction="none")[positive]
    b = kl_div(x, np.log(p), reduction="none", log_target=True)[positive]
    np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)


@settings(max_examples=50)
@given(pairs(), st.sampled_from(["sum", "mean", "batchmean"]), st.booleans())
def test_gradients_match_finite_differences(pair, reduction, log_target) -> None:
    x, p = pair
    # Keep the target away from 0, where the step would leave the domain.
    p = np.clip(p, 1e-3, None)
    t = np.log(p) if log_target else p
    gx, gt = kl_div_grad(x, t, reduction, log_target)
    h = 1e-6

    def loss(a, b):
        return (
            float(kl_div(a, b, reduction=reduction, log_target=log_target))
            if reduction != "mean"
            else float(kl_div(a, b, reduction="sum", log_target=log_target) / a.size)
        )

    for grad, which in ((gx, 0), (gt, 1)):
        for idx in np.ndindex(x.shape):
            args = [x.copy(), t.copy()]
            args[which][idx] += h
            up = loss(*args)
            args[which][idx] -= 2 * h
            down = loss(*args)
            np.testing.assert_allclose(grad[idx], (up - down) / (2 * h), rtol=1e-4, atol=1e-6)


@given(
    arrays(
        np.float64, st.tuples(st.integers(1, 4), st.integers(1, 5)), elements=st.floats(-50, 50)
    ),
    st.floats(0.1, 10),
)
def test_softmax_rows_sum_to_one(logits, temperature) -> None:
    p = softmax(logits, temperature=temperature)
    np.testing.assert_allclose(p.sum(axis=-1), 1.0, rtol=1e-12)
    np.testing.assert_allclose(
        np.exp(log_softmax(logits, temperature=temperature)), p, rtol=1e-9, atol=1e-300
    )


@given(
    arrays(
        np.float64,
        st.tuples(st.integers(0, 5), st.integers(0, 7)),
        elements=st.floats(allow_nan=True, allow_infinity=True),
    )
)
def test_combine_rows_is_combine_of_each_row(rows) -> None:
    from kldiv_cli.core.engine import combine, combine_rows

    got = combine_rows(rows)
    assert got.dtype == np.float64 and got.shape == (len(rows),)
    np.testing.assert_array_equal(got, [combine(r) for r in rows])


def test_as_float64_widens_real_numbers_only() -> None:
    from kldiv_cli.core.engine import as_float64

    x = np.arange(3, dtype=np.float64)
    assert as_float64(x, "x") is x
    assert as_float64(np.array([1, 2], dtype=np.int8), "x").dtype == np.float64
    np.testing.assert_array_equal(as_float64(np.array([True, False]), "x", bools=True), [1, 0])
    for bad, kwargs in ((np.array([True]), {}), (np.array([1j]), {"bools": True})):
        with pytest.raises(TypeError, match="x: expected real numbers"):
            as_float64(bad, "x", **kwargs)


def test_exact_combines_overflow_to_inf_as_torch_does() -> None:
    """fsum raises OverflowError when finite values sum beyond float64; the sum is inf."""
    from kldiv_cli.core import engine

    big = [3.59538627e307] * 5
    assert engine.combine(big) == np.inf
    assert engine.combine([-v for v in big]) == -np.inf
    rows = engine.combine_rows(np.array([big, [1.0, 2.0, 3.0, 4.0, 5.0]]))
    assert rows[0] == np.inf and rows[1] == 15.0
