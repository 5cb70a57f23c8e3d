"""Mutated valid files (truncated, flipped bytes, inserted garbage): every outcome is a
result or a clean exit 2 with one designed error line; never a crash or a hang."""

from __future__ import annotations

import io
import warnings

import numpy as np
import pyarrow as pa
import pyarrow.feather as feather
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import array_shapes, arrays

from kldiv_cli import kl_div

rng = np.random.default_rng(11)
X = np.log(rng.dirichlet(np.ones(4), 6))
T = rng.dirichlet(np.ones(4), 6)


def _bytes(fmt: str) -> bytes:
    buf = io.BytesIO()
    if fmt == "npy":
        np.save(buf, T)
    elif fmt == "npz":
        np.savez(buf, t=T)
    elif fmt == "csv":
        buf.write(
            b"a,b,c,d\n" + b"".join(b",".join(b"%r" % float(v) for v in row) + b"\n" for row in T)
        )
    elif fmt == "parquet":
        pq.write_table(pa.table({f"c{j}": T[:, j] for j in range(4)}), buf)
    elif fmt == "arrow":
        feather.write_feather(pa.table({f"c{j}": T[:, j] for j in range(4)}), buf)
    return buf.getvalue()


VALID = {fmt: _bytes(fmt) for fmt in ("npy", "npz", "csv", "parquet", "arrow")}


@st.composite
def mutated(draw):
    fmt = draw(st.sampled_from(sorted(VALID)))
    data = bytearray(VALID[fmt])
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["truncate", "flip", "insert", "overwrite"]))
        pos = draw(st.integers(0, max(len(data) - 1, 0)))
        if kind == "truncate":
            del data[pos:]
        elif kind == "flip" and data:
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif kind == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=16))
        elif data:
            chunk = draw(st.binary(min_size=1, max_size=8))
            data[pos : pos + len(chunk)] = chunk
    return fmt, bytes(data)


@pytest.fixture(scope="module")
def good_input(tmp_path_factory):
    path = tmp_path_factory.mktemp("fuzz") / "x.npy"
    np.save(path, X)
    return path


@settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(mutated(), st.booleans())
def test_mutated_target_files(run_cli, good_input, tmp_path_factory, case, on_stdin) -> None:
    """As a file (format from the extension) or on stdin (format sniffed from the bytes)."""
    fmt, data = case
    if on_stdin:
        r = run_cli("compute", good_input, "-", "-r", "sum", "-q", input=data)
    else:
        path = tmp_path_factory.mktemp("m") / f"t.{fmt}"
        path.write_bytes(data)
        r = run_cli("compute", good_input, path, "-r", "sum", "-q")
    assert r.exit_code in (0, 2), (r.exit_code, r.stderr, r.exception)
    if r.exit_code == 0:
        float(r.stdout)
        assert r.stderr == ""
    else:
        assert r.stdout == ""
        lines = r.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("kldiv: error: "), r.stderr
        assert "unexpected" not in lines[0], lines[0]


finite_or_special = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True, width=64),
    st.sampled_from([0.0, -0.0, np.inf, -np.inf, np.nan]),
)


@settings(max_examples=200, deadline=None)
@given(
    arrays(
        np.float64,
        array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4),
        elements=finite_or_special,
    ),
    st.sampled_from(["none", "sum", "mean", "batchmean"]),
    st.booleans(),
)
def test_core_invariants_on_random_values(x, reduction, log_target) -> None:
    t = np.flip(x).copy()
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        warnings.simplefilter("ignore", UserWarning)
        out = kl_div(x, t, reduction, log_target)
        pointwise = kl_div(x, t, "none", log_target)
    assert np.shape(pointwise) == np.broadcast_shapes(x.shape, t.shape)
    with np.errstate(invalid="ignore"):
        total = np.sum(pointwise, dtype=np.float64)
    if reduction == "sum":
        # The exact sum and NumPy's sum of rounded terms differ by up to a few ulps of
        # the terms' magnitudes, which is far more than 1e-12 of a sum that cancels
        # (x = [1.19e-07, 0] with log_target: terms of 1e-7 summing to 1e-14).
        with np.errstate(invalid="ignore"):
            scale = np.sum(np.abs(pointwise), dtype=np.float64)
        atol = 1e-13 * scale if np.isfinite(scale) else 0.0
        np.testing.assert_allclose(out, total, rtol=1e-12, atol=atol, equal_nan=True)
    elif reduction == "none":
        np.testing.assert_array_equal(out, pointwise)


def test_npz_of_a_zip_version_python_cannot_read(run_cli, good_input, tmp_path) -> None:
    """Found by the fuzzer above: a central directory asking for zip version 6.4 made
    zipfile raise NotImplementedError while opening the archive."""
    import io

    buf = io.BytesIO()
    np.savez(buf, t=X)
    data = bytearray(buf.getvalue())
    central = data.index(b"PK\x01\x02")
    data[central + 6 : central + 8] = (64).to_bytes(2, "little")  # version needed: 6.4
    (path := tmp_path / "t.npz").write_bytes(bytes(data))
    r = run_cli("compute", good_input, path, "-r", "sum", "-q")
    assert r.exit_code == 2 and r.stdout == ""
    assert (
        r.stderr
        == f"kldiv: error: {path}: is a .npz file Python cannot read (zip file version 6.4)\n"
    )


def test_a_cancelling_float64_sum_keeps_the_documented_bound() -> None:
    """Found by the property above: terms of ±1.19e-07 whose exact sum is ~1.4e-14. For a
    float64 result the promise is float64's rounding of the terms: within a few ulps of
    the sum of their magnitudes (docs/exactness.md), not 1e-12 of a sum that cancels."""
    import math
    from fractions import Fraction

    x = np.array([1.19e-07, 0.0])
    t = np.flip(x).copy()
    a = Fraction(1.19e-07)
    # exp(t)·(t − x) summed exactly: −a + e^a·a = a·(e^a − 1), e^a − 1 by its series.
    truth = a * sum(a**k / math.factorial(k) for k in range(1, 8))
    out = float(kl_div(x, t, "sum", log_target=True))
    scale = float(np.sum(np.abs(kl_div(x, t, "none", log_target=True))))
    assert abs(Fraction(out) - truth) <= 4 * np.finfo(np.float64).eps * scale
