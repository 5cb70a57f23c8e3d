"""compare's fused path for logits (core/compare_fused.py, cmpkernel.c): the compiled passes
and their NumPy twins give the same bits, at every thread count and block size, and the
numbers are those of a long-double evaluation of the same data."""

from __future__ import annotations

import numpy as np
import pytest

from kldiv_cli.core import compare_fused
from kldiv_cli.core.compare import Scratch, pair, rank_measures, row_measures, token_measures
from kldiv_cli.jobs.compare import CompareRequest, compare

ISAS = ("generic", "avx2", "avx512")


@pytest.fixture
def use(monkeypatch):
    """Switch the passes (``KLDIV_KERNEL``: numpy or an instruction set) for the rest of
    the test."""

    def switch(name: str) -> None:
        monkeypatch.setenv("KLDIV_KERNEL", name)
        compare_fused.reset()

    yield switch
    monkeypatch.delenv("KLDIV_KERNEL", raising=False)
    compare_fused.reset()


def logits(rows: int, width: int, noise: float, dtype=np.float32, seed: int = 0):
    """Reference logits with ties at the top and a candidate close to them (a realistic
    pair: the candidate is the reference plus small noise, a few rows far off)."""
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((rows, width)) * 3).astype(dtype)
    y = (x + noise * rng.standard_normal((rows, width))).astype(dtype)
    x[0, width - 1] = x[0, 1] = x[0].max() + 1  # tied top-1 of the reference
    y[1] = np.round(y[1])  # many ties in the candidate
    y[2] = (rng.standard_normal(width) * 5).astype(dtype)  # an unrelated candidate row
    return x, y


def measures_of(x, y, temperature=1.0, tokens=None):
    top = compare_fused.reference_tops(x, ~np.isnan(np.max(x, axis=-1)))
    return compare_fused.logit_measures(x, y, temperature, Scratch(), top, tokens)


def same_bits(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for name in a:
        u, v = np.ascontiguousarray(a[name]), np.ascontiguousarray(b[name])
        assert u.dtype == v.dtype and np.array_equal(u.view(np.uint8), v.view(np.uint8)), name


@pytest.mark.parametrize(
    "width,dtype,temperature",
    [(3000, np.float32, 1.0), (2051, np.float32, 0.7), (37, np.float64, 1.0), (5, np.float32, 2.0)],
)
def test_compiled_passes_give_the_numpy_bits(use, width, dtype, temperature) -> None:
    x, y = logits(6, width, 1e-2, dtype)
    tokens = np.arange(6) % width
    use("numpy")
    assert not compare_fused.accelerated()
    want = measures_of(x, y, temperature, tokens)
    use("")
    if not compare_fused.accelerated():
        pytest.skip("no compiled kernel with compare's passes here")
    for isa in ISAS:
        use(isa)
        same_bits(measures_of(x, y, temperature, tokens), want)


def long_double_reference(x: np.ndarray, y: np.ndarray) -> dict[str, np.ndarray]:
    L = np.longdouble

    def ls(a):
        a = a.astype(L)
        z = a - a.max(axis=1, keepdims=True)
        return z - np.log(np.exp(z).sum(axis=1, keepdims=True))

    lp, lq = ls(x), ls(y)
    p, q = np.exp(lp), np.exp(lq)
    lm = np.log((p + q) / 2)
    return {
        "kl": (p * (lp - lq)).sum(axis=1),
        "kl_reverse": (q * (lq - lp)).sum(axis=1),
        "js": 0.5 * (p * (lp - lm)).sum(axis=1) + 0.5 * (q * (lq - lm)).sum(axis=1),
        "tv": 0.5 * np.abs(p - q).sum(axis=1),
    }


@pytest.mark.parametrize("noise", [1e-4, 1e-2, 1.0])
@pytest.mark.parametrize("kernel", ["numpy", ""])
def test_divergences_are_those_of_a_long_double_evaluation(use, noise, kernel) -> None:
    """Within 1e-12 relative (1e-9 for noise 1e-4: a divergence of 1e-9 formed from
    log-ratios of 1e-4 keeps 7 fewer digits, in any float64 evaluation), and never further
    than pair()'s general formulas."""
    x, y = logits(8, 3000, noise)
    use(kernel)
    got = measures_of(x, y)
    general = row_measures(x, y, pair(x, y, "logits", "logits"))
    for name, want in long_double_reference(x, y).items():
        rel = np.abs(got[name] / want.astype(np.float64) - 1)
        assert rel.max() < (1e-9 if noise < 1e-3 else 1e-12), (name, rel.max())
        before = np.abs(general[name] / want.astype(np.float64) - 1)
        assert rel.max() <= 2 * before.max() + 1e-15, name


def test_rows_with_special_values_keep_the_general_path(use) -> None:
    """A row with -inf (masked classes), NaN or a span above 600 goes through pair();
    its neighbours keep the fused path's bits, whatever block they share."""
    x, y = logits(7, 300, 1e-2)
    x[1, :5] = -np.inf
    y[3, 9] = np.nan
    x[5, 0] = 650.0
    tokens = np.arange(7) * 11
    got = measures_of(x, y, 1.0, tokens)
    for r in (1, 3, 5):
        sl = slice(r, r + 1)
        pr = pair(x[sl], y[sl], "logits", "logits")
        want = row_measures(x[sl], y[sl], pr)
        want.update(rank_measures(x[sl], y[sl], pr.p))
        want.update(token_measures(pr, tokens[sl]))
        for name, values in want.items():
            np.testing.assert_array_equal(got[name][sl], values, err_msg=name)
    for r in (0, 2, 4, 6):
        alone = measures_of(x[r : r + 1], y[r : r + 1], 1.0, tokens[r : r + 1])
        same_bits({k: v[r : r + 1] for k, v in got.items()}, alone)


def test_ranks_match_a_full_sort(use) -> None:
    x, y = logits(9, 4000, 0.5)
    y[4, :100] = y[4, 100]  # ties with the reference's choice
    for kernel in ("numpy", ""):
        use(kernel)
        got = measures_of(x, y)
        order_p = np.argsort(-x.astype(np.float64), axis=1, kind="stable")
        order_q = np.argsort(-y.astype(np.float64), axis=1, kind="stable")
        rank = [list(oq).index(op[0]) + 1 for op, oq in zip(order_p, order_q)]
        overlap = [len(set(op[:5]) & set(oq[:5])) / 5 for op, oq in zip(order_p, order_q)]
        np.testing.assert_array_equal(got["top1_rank"], rank)
        np.testing.assert_array_equal(got["top5_overlap"], overlap)
        np.testing.assert_array_equal(got["agree"], order_p[:, 0] == order_q[:, 0])


@pytest.mark.parametrize("kernel", ["numpy", ""])
def test_per_row_bits_depend_on_neither_threads_nor_blocks(tmp_path, use, kernel) -> None:
    """The job's per-row measures, at 1, 2 and 3 threads and blocks of 1, 3, 7 and the
    default rows: the same bits (a row with -inf among them), those of long double."""
    x, y = logits(23, 2100, 1e-2)
    x[4, :3] = -np.inf
    np.save(tmp_path / "ref.npy", x)
    np.save(tmp_path / "cand.npy", y)
    np.save(tmp_path / "tokens.npy", np.arange(23) * 13)
    use(kernel)
    runs = [
        compare(
            CompareRequest(
                str(tmp_path / "ref.npy"),
                str(tmp_path / "cand.npy"),
                tokens=str(tmp_path / "tokens.npy"),
                threads=threads,
                chunk_rows=rows,
            )
        ).per_row
        for threads, rows in ((1, None), (2, 1), (3, 3), (2, 7), (3, None))
    ]
    for other in runs[1:]:
        same_bits(other, runs[0])
    clean = np.arange(23) != 4
    for name, want in long_double_reference(x[clean], y[clean]).items():
        rel = np.abs(runs[0][name][clean] / want.astype(np.float64) - 1)
        assert rel.max() < 1e-12, name


@pytest.mark.parametrize(
    "name,lo,hi",
    [
        ("exp_", -700.0, 0.0),
        ("expm1_", -700.0, 700.0),
        ("expm1_", -0.5, 0.5),
        ("log1p_", -0.5, 3.0),
        ("log1p_", -1e-3, 1e-3),
    ],
)
def test_own_functions_are_within_2_ulp(name: str, lo: float, hi: float) -> None:
    """kldiv's exp, expm1 and log1p (what the compiled pass and the NumPy steps both
    compute) against long double, on values spread over their range."""
    rng = np.random.default_rng(7)
    x = lo + (hi - lo) * rng.random(20_000)
    want = getattr(np, name.rstrip("_"))(x.astype(np.longdouble))
    got = getattr(compare_fused, name)(x)
    ulp = np.spacing(np.abs(want.astype(np.float64))).astype(np.longdouble)
    assert np.abs((got - want) / ulp).max() <= 2.0


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_row_ranges_compiled_and_numpy(use, dtype) -> None:
    """Largest, smallest, NaN: the compiled pass (integer keys of the bits) and NumPy."""
    rng = np.random.default_rng(5)
    a = (rng.standard_normal((6, 301)) * 50).astype(dtype)
    a[0] = -np.abs(a[0])  # all negative
    a[1, 7] = np.inf
    a[2, 0], a[2, 9] = -np.inf, -0.0
    a[3, 100] = np.nan
    a[4] = 0.0
    a[4, ::2] = -0.0
    use("numpy")
    want = compare_fused.row_range(a)
    use("")
    if not compare_fused.accelerated():
        pytest.skip("no compiled kernel with compare's passes here")
    got = compare_fused.row_range(a)
    np.testing.assert_array_equal(got[2], want[2])
    ok = ~want[2]
    for g, w in zip(got[:2], want[:2]):
        np.testing.assert_array_equal(g[ok], w[ok])
    np.testing.assert_array_equal(np.signbit(got[0][ok]), np.signbit(want[0][ok]))  # -0 max: +0


def test_a_span_near_the_limit_stays_finite(use) -> None:
    """A candidate row spanning 599 against a flat reference: q/p − 1 near e^600 · V, the
    divergences finite and those of the general formulas."""
    x = np.zeros((2, 4000), dtype=np.float64)
    y = np.zeros_like(x)
    y[:, 0] = 599.0
    got = measures_of(x, y)
    want = row_measures(x, y, pair(x, y, "logits", "logits"))
    for name in ("kl", "kl_reverse", "js", "tv"):
        assert np.isfinite(got[name]).all(), name
        np.testing.assert_allclose(got[name], want[name], rtol=1e-12, err_msg=name)


def test_float16_files_give_the_bits_of_their_float32_values(tmp_path) -> None:
    """float16 logits (widened exactly) and the same values stored as float32: the same
    per-row bits (the fused pass sees the same doubles)."""
    x, y = logits(9, 700, 1e-2, np.float16)
    for name, dtype in (("16", np.float16), ("32", np.float32)):
        np.save(tmp_path / f"ref{name}.npy", x.astype(dtype))
        np.save(tmp_path / f"cand{name}.npy", y.astype(dtype))
    rows = [
        compare(
            CompareRequest(str(tmp_path / f"ref{n}.npy"), str(tmp_path / f"cand{n}.npy"))
        ).per_row
        for n in ("16", "32")
    ]
    same_bits(rows[0], rows[1])
