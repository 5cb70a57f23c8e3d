"""The public API's contract beyond the golden values: warnings, errors, types."""

from __future__ import annotations

import subprocess
import sys
import warnings

import numpy as np
import pytest

import kldiv_cli
from kldiv_cli import KLDivLoss, kl_div, kl_div_grad, log_softmax, softmax

X = np.log(np.array([[0.5, 0.5], [0.25, 0.75]]))
T = np.array([[0.25, 0.75], [0.5, 0.5]])


def test_import_does_not_load_cli_libraries() -> None:
    code = (
        "import sys, kldiv_cli; kldiv_cli.kl_div; "
        "bad = [m for m in ('typer', 'rich', 'pyarrow') if m in sys.modules]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_mean_warns_and_mentions_batchmean() -> None:
    with pytest.warns(UserWarning, match="batchmean"):
        kl_div(X, T)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        kl_div(X, T, reduction="batchmean")
        kl_div(X, T, reduction="sum")
        kl_div(X, T, reduction="none")


@pytest.mark.parametrize(
    ("x", "t", "error"),
    [
        (np.zeros(3, dtype=np.int64), T[0, :3], TypeError),
        (X, np.zeros((4, 5)), ValueError),
    ],
)
def test_mean_warns_before_an_invalid_operand_raises(x, t, error) -> None:
    """torch resolves the reduction (and warns) before it looks at the operands."""
    with pytest.warns(UserWarning, match="batchmean"), pytest.raises(error):
        kl_div(x, t)


def test_unknown_reduction() -> None:
    with pytest.raises(ValueError, match="^bogus is not a valid value for reduction$"):
        kl_div(X, T, reduction="bogus")


@pytest.mark.parametrize(
    ("legacy", "expected"),
    [
        (dict(size_average=False), "sum"),
        (dict(reduce=False), "none"),
        (dict(size_average=True), "mean"),
        (dict(reduce=True, size_average=False), "sum"),
    ],
)
def test_legacy_arguments(legacy: dict, expected: str) -> None:
    with pytest.warns(UserWarning, match=f"please use reduction='{expected}' instead"):
        out = kl_div(X, T, reduction="bogus-ignored", **legacy)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        np.testing.assert_array_equal(out, kl_div(X, T, reduction=expected))


@pytest.mark.parametrize("dtype", [np.int64, np.int8, np.bool_, np.complex64, np.uint8])
def test_rejects_non_float_dtypes(dtype) -> None:
    bad = np.ones((2, 2), dtype=dtype)
    with pytest.raises(TypeError, match="not supported"):
        kl_div(bad, T, reduction="sum")
    with pytest.raises(TypeError, match="not supported"):
        kl_div(X, bad, reduction="sum")


def test_incompatible_shapes() -> None:
    with pytest.raises(ValueError, match=r"\(3, 5\).*\(4, 5\).*broadcast"):
        kl_div(np.zeros((3, 5)), np.zeros((4, 5)), reduction="sum")


def test_empty_inputs_leak_no_numpy_warning() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert kl_div(np.zeros((0, 3)), np.zeros((0, 3)), reduction="sum") == 0
        assert np.isnan(kl_div(np.zeros((0, 3)), np.zeros((0, 3)), reduction="batchmean"))
        assert kl_div(np.zeros((3, 0)), np.zeros((3, 0)), reduction="batchmean") == 0
        with pytest.warns(UserWarning, match="batchmean"):
            assert np.isnan(kl_div(np.zeros((0,)), np.zeros((0,))))


def test_scalar_results_are_numpy_scalars_of_the_promoted_dtype() -> None:
    out = kl_div(X.astype(np.float32), T, reduction="sum")
    assert isinstance(out, np.float64)
    out = kl_div(X.astype(np.float32), np.float64(0.5), reduction="sum")
    assert isinstance(out, np.float32)  # a 0-d operand is weak, as in torch


def test_kldivloss_object() -> None:
    loss = KLDivLoss(reduction="batchmean", log_target=True)
    assert loss.reduction == "batchmean" and loss.log_target is True
    with pytest.raises(AttributeError):
        loss.reduction = "sum"  # type: ignore[misc]
    np.testing.assert_array_equal(
        loss(X, np.log(T)), kl_div(X, np.log(T), reduction="batchmean", log_target=True)
    )
    assert loss.forward(X, np.log(T)) == loss(X, np.log(T))
    assert "batchmean" in repr(loss)
    with pytest.warns(UserWarning, match="batchmean"):
        KLDivLoss()(X, T)
    with pytest.raises(ValueError):
        KLDivLoss(reduction="nope")(X, T)


def test_kldivloss_legacy_arguments() -> None:
    with pytest.warns(UserWarning, match="reduction='sum'"):
        loss = KLDivLoss(size_average=False)
    assert loss.reduction == "sum"


def test_grad_output_must_be_scalar_when_reducing() -> None:
    with pytest.raises(ValueError, match="scalar"):
        kl_div_grad(X, T, "sum", grad_output=np.ones(2))


def test_grad_shapes_and_dtypes_follow_operands() -> None:
    x = np.log(np.full((3, 1), 0.5, dtype=np.float32))
    t = np.full((3, 4), 0.25)
    gx, gt = kl_div_grad(x, t, "batchmean")
    assert gx.shape == (3, 1) and gx.dtype == np.float32
    assert gt.shape == (3, 4) and gt.dtype == np.float64
    np.testing.assert_allclose(gx, np.full((3, 1), -4 * 0.25 / 3))


def test_softmax_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="temperature"):
        softmax(np.zeros(3), temperature=0)
    with pytest.raises(ValueError, match="temperature"):
        log_softmax(np.zeros(3), temperature=float("nan"))
    with pytest.raises(TypeError):
        softmax(np.arange(3))
    with pytest.raises(ValueError, match="axis"):
        softmax(np.zeros((2, 3)), axis=2)


def test_masked_logits_are_exact() -> None:
    logits = np.array([[1.0, -np.inf, 2.0], [-np.inf, -np.inf, -np.inf]])
    p = softmax(logits)
    assert p[0, 1] == 0.0 and np.isclose(p[0].sum(), 1.0)
    assert np.isneginf(log_softmax(logits)[0, 1])
    assert np.isnan(p[1]).all() and np.isnan(log_softmax(logits)[1]).all()


@pytest.mark.parametrize("shape", [(3, 1), (7, 5), (2, 3, 40_000), (70_000, 4)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softmax_by_blocks_of_rows_on_threads_has_the_bits_of_whole_passes(shape, dtype) -> None:
    """The last-axis (log-)softmax works on cache-sized blocks of rows shared among
    threads: the bits of the plain passes over the whole array, for any thread count
    (masked, infinite and NaN logits included)."""
    rng = np.random.default_rng(sum(shape))
    logits = (rng.standard_normal(shape) * 4).astype(np.float32)
    flat = logits.reshape(-1, shape[-1])
    flat[0, 0], flat[-1, -1], flat[len(flat) // 2, :] = -np.inf, np.inf, -np.inf
    flat[1 % len(flat), -1] = np.nan
    with np.errstate(all="ignore"):
        z = logits.astype(dtype) / dtype(0.7)
        z -= z.max(axis=-1, keepdims=True)
        e = np.exp(z)
        expected = {softmax: e / e.sum(axis=-1, keepdims=True)}
        expected[log_softmax] = z - np.log(e.sum(axis=-1, keepdims=True))
        for f, want in expected.items():
            for threads in (1, 2, 3):
                got = f(logits, -1, 0.7, dtype=dtype, threads=threads)
                bits = f"u{got.itemsize}"
                assert got.dtype == want.dtype
                assert np.array_equal(got.view(bits), want.view(bits))


def test_public_names() -> None:
    assert set(kldiv_cli.__all__) >= {
        "kl_div",
        "kl_div_grad",
        "KLDivLoss",
        "softmax",
        "log_softmax",
    }
    with pytest.raises(AttributeError):
        kldiv_cli.not_a_thing  # noqa: B018
