"""The fused exact kernel: the compiled variants and the NumPy fallback give the same bits.

``kldiv_cli.core.kernel`` sums each chunk in one pass, in C (AVX-512, AVX2 or generic code,
when the library was built) or in NumPy. Every variant this machine can run is compared
bit for bit with the NumPy one, on data that reaches every branch of the logarithm (targets
near 1 on both sides, subnormal float32 and float16 targets, zeros, the extremes of each
dtype), on chunk lengths with ragged tails, and through the engine at several thread counts
and block splits. Without the library only the NumPy kernel is checked (the others skip).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from kldiv_cli.core import engine, kernel

DTYPES = ["float16", "float32", "float64"]
TARGETS = ["float16", "float32"]


def compiled_variants() -> list[str]:
    """The compiled variants this machine runs (none without the library)."""
    kernel.reset()
    try:
        found = kernel.accelerator()
    finally:
        kernel.reset()
    if not found.startswith("accelerator"):
        return []
    best = found.split(": ")[1]
    return ["generic", "avx2", "avx512"][: ["generic", "avx2", "avx512"].index(best) + 1]


VARIANTS = compiled_variants()


@pytest.fixture
def use(monkeypatch):
    """Switch the kernel (``KLDIV_KERNEL``) for the rest of the test."""

    def switch(name: str) -> None:
        monkeypatch.setenv("KLDIV_KERNEL", name)
        kernel.reset()
        # Loaded now: small inputs too then go through the library.
        assert name in kernel.accelerator() or name == "numpy"

    yield switch
    monkeypatch.delenv("KLDIV_KERNEL", raising=False)
    kernel.reset()


def awkward_targets(n: int, dtype: str, rng: np.random.Generator) -> np.ndarray:
    """Probabilities, plus every region the logarithm treats apart."""
    info = np.finfo(dtype)
    t = rng.dirichlet(np.ones(n)).astype(dtype)
    near_one = 1 + rng.normal(0, 1e-3, 64)
    specials = np.concatenate(
        [
            near_one,
            [0.0, 1.0, 2.0, 0.5, 1 - 1 / 64, 1 + 1 / 32, 1.96875, 1.9999],
            [float(info.max), float(info.tiny), float(info.smallest_subnormal)],
            rng.uniform(0, 2, 32) * float(info.tiny),  # subnormals of the dtype
            np.exp(rng.uniform(-80, 10, 64)),
        ]
    ).astype(dtype)
    t[: specials.size] = specials
    return rng.permutation(t)


def pair(
    n: int, xd: str, td: str, seed: int = 0, awkward: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    t = awkward_targets(n, td, rng) if awkward else rng.dirichlet(np.ones(n)).astype(td)
    with np.errstate(divide="ignore"):
        x = np.where(t > 0, np.log(t.astype(np.float64)), -3.0)
    x = (x + rng.normal(0, 1e-3, n)).astype(xd)
    return x, t


def rows(x: np.ndarray, t: np.ndarray, chunk: int, variant: str, use) -> np.ndarray:
    use(variant)
    return kernel.chunk_table(x, t, chunk).view(np.uint64)


def test_table_is_what_its_definition_computes() -> None:
    assert kernel.make_table() == list(kernel.TABLE_VALUES[: len(kernel.make_table())])


def test_table_makes_r_exact_and_its_logarithms_need_no_low_part() -> None:
    """29-bit reciprocals (``m * inv`` exact for 24-bit mantissas), ``|r| <= 1/32`` over
    each entry's mantissas (those with ``round(21 m - 16) = i`` in [0.75, 1.5)), entry 5
    exactly 1, ``log(1/inv)`` within 2^-61 of its multiple of 2^-42, and ``ln 2`` in two
    parts of 42 bits (exact products with exponents of up to 11 bits)."""
    from decimal import Context
    from fractions import Fraction

    ctx = Context(prec=60)
    table = kernel.TABLE_VALUES
    assert table[5] == 1.0 and table[16 + 5] == 0.0
    for i in range(16):
        inv = Fraction(table[i])
        assert inv * (1 << (28 if i < 5 else 29)) == kernel.RECIPROCALS[i] <= 1 << 29
        centre = 1 + Fraction(i - 5, 21)
        low = max(Fraction(3, 4), centre - Fraction(1, 42))
        high = min(Fraction(3, 2), centre + Fraction(1, 42))
        assert abs(low * inv - 1) <= Fraction(1, 32) and abs(high * inv - 1) <= Fraction(1, 32)
        logc = Fraction(table[16 + i])
        assert (logc * (1 << 42)).denominator == 1
        exact = ctx.minus(ctx.ln(ctx.create_decimal_from_float(table[i])))
        assert abs(exact - ctx.create_decimal_from_float(table[16 + i])) < ctx.power(2, -61)
    ln2_hi, ln2_lo = table[32], table[33]
    for part in (ln2_hi, ln2_lo):
        mantissa = Fraction(math.frexp(part)[0])
        assert (mantissa * (1 << 42)).denominator == 1
    assert abs(
        ctx.ln(2) - ctx.create_decimal_from_float(ln2_hi) - ctx.create_decimal_from_float(ln2_lo)
    ) < ctx.power(2, -85)


@pytest.mark.skipif(not VARIANTS, reason="the compiled kernel is not built")
@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("td", TARGETS)
def test_compiled_and_numpy_chunks_have_the_same_bits(variant, td, use) -> None:
    for xd in DTYPES:
        x, t = pair(5003, xd, td, seed=len(xd + td))
        for chunk in (1 << 18, 1000, 24):
            want = rows(x, t, chunk, "numpy", use)
            got = rows(x, t, chunk, variant, use)
            assert np.array_equal(got, want), (xd, td, chunk)


@pytest.mark.skipif(not VARIANTS, reason="the compiled kernel is not built")
@pytest.mark.parametrize("variant", VARIANTS)
def test_float64_targets_lane_sums_have_the_same_bits(variant, use) -> None:
    """kernel.log_lanes: compiled and NumPy, every input dtype, zero targets (their
    logarithm -inf, or already replaced), ragged tails, a NaN from 0 * inf."""
    rng = np.random.default_rng(5)
    for xd in DTYPES:
        for n in (5, 64 * 3 + 17, 70001):
            t = rng.dirichlet(np.ones(n))
            t[rng.integers(0, n, 4)] = 0.0
            x = (np.log(t + 1e-300) + rng.normal(0, 1e-3, n)).astype(xd)
            with np.errstate(divide="ignore"):
                logs = [np.log(t), np.log(np.where(t == 0, 1.0, t))]
            for log_t in logs:
                got = []
                for name in ("numpy", variant):
                    use(name)
                    lanes, zeros = kernel.log_lanes(log_t, x, t)
                    got.append(np.array(lanes).view(np.uint64))
                    assert np.isfinite(lanes).all() and zeros in (0, int((t == 0).sum()))
                assert np.array_equal(*got), (xd, n)
    x[rng.integers(0, n)] = np.inf
    x[t == 0] = np.inf
    for name in ("numpy", variant):
        use(name)
        assert np.isnan(math.fsum(kernel.log_lanes(logs[1], x, t)[0]))


@pytest.mark.skipif(not VARIANTS, reason="the compiled kernel is not built")
def test_every_value_of_float16_has_the_same_bits(use) -> None:
    t = np.arange(0x7C00, dtype=np.uint16).view(np.float16)  # every finite positive half
    x = np.zeros_like(t)
    want = rows(x, t, 1000, "numpy", use)
    for variant in VARIANTS:
        assert np.array_equal(rows(x, t, 1000, variant, use), want), variant


@pytest.mark.parametrize("td", TARGETS)
@pytest.mark.parametrize(
    "bad", [-0.0, -1e-3, np.inf, np.nan, "x inf", "x -inf", "x nan", "x inf, t 0", "x -inf, t 0"]
)
def test_chunks_the_fast_path_cannot_take_are_flagged(bad, td, use) -> None:
    x, t = pair(4000, "float64", td, awkward=False)
    if isinstance(bad, float):
        t[1234] = bad
    else:
        x[1234] = {"inf": np.inf, "-inf": -np.inf, "nan": np.nan}[bad.split(",")[0][2:]]
        t[1234] = 0 if "t 0" in bad else t[1234]
    for variant in ["numpy", *VARIANTS]:
        use(variant)
        flagged = kernel.flagged(kernel.chunk_table(x, t, 1000))
        assert flagged.tolist() == [False, True, False, False], variant


def test_chunk_sums_are_the_float64_value_of_the_data(use) -> None:
    """Each chunk within float64 rounding of its exactly summed float64 terms."""
    for td in TARGETS:
        x, t = pair(3000, "float64", td)
        use("numpy")
        got = [math.fsum(r[: kernel.LANES]) for r in kernel.chunk_table(x, t, 1000)]
        t64 = t.astype(np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            terms = np.where(t64 == 0, 0.0, t64 * (np.log(t64) - x))
        with np.errstate(all="ignore"):
            # What float64 rounding of each operation can move: t (|log t| + |x|).
            sizes = np.where(t64 == 0, 0.0, t64 * (np.abs(np.log(t64)) + np.abs(x)))
        for k, value in enumerate(got):
            part = slice(k * 1000, (k + 1) * 1000)
            scale = math.fsum(sizes[part].tolist())
            assert abs(value - math.fsum(terms[part].tolist())) <= 2.3e-16 * scale, (td, k)


@pytest.mark.parametrize("dtype", ["float32", "float16", "float64"])
def test_engine_bits_depend_on_the_data_only(dtype, use) -> None:
    """Both kernels, 1-3 threads, random block splits: one value."""
    rng = np.random.default_rng(7)
    x, t = pair(engine.PARALLEL_MIN + 4099, dtype, dtype, seed=3, awkward=False)
    t[rng.integers(0, t.size, 5)] = 0
    results = set()
    for variant in ["numpy", *VARIANTS[-1:]]:
        use(variant)
        for threads in (1, 2, 3):
            results.add(engine.total_loss(x, t, False, np.dtype(dtype), threads=threads))
        acc = engine.Accumulator(False, threads=2)
        cuts = np.sort(rng.integers(0, x.size, 4))
        for a, b in zip([0, *cuts], [*cuts, x.size]):
            acc.add(x[a:b], t[a:b], np.dtype(dtype))
        results.add(acc.total())
    assert len(results) == 1, results


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_special_values_keep_torchs_pattern_on_both_kernels(dtype, use) -> None:
    x, t = pair(1 << 16, dtype, dtype, awkward=False)
    t[100], x[70000 % x.size] = -0.5, np.inf
    want = None
    for variant in ["numpy", *VARIANTS[-1:]]:
        use(variant)
        got = engine.total_loss(x, t, False, np.dtype(dtype), chunk=4096)
        assert math.isnan(got)
        x2 = x.copy()
        x2[70000 % x.size] = 0.0
        t2 = t.copy()
        t2[100] = 0.0
        clean = engine.total_loss(x2, t2, False, np.dtype(dtype), chunk=4096)
        assert want is None or clean == want
        want = clean


def test_float64_targets_keep_numpys_log_so_identical_distributions_give_zero() -> None:
    """float64 targets are not fused: ``x = np.log(t)`` gives exactly 0, as in torch."""
    p = np.random.default_rng(2).dirichlet(np.ones(3 * kernel.SMALL))
    assert not kernel.fused_pair(np.dtype("float64"), np.dtype("float64"))
    assert engine.total_loss(np.log(p), p, False, np.dtype("float64")) == 0.0


def test_a_library_built_from_older_sources_means_the_numpy_kernel(monkeypatch) -> None:
    """A stale klkernel.so (an editable install not rebuilt) lacks newer functions: kldiv
    then sums with NumPy, as without a library, rather than failing."""
    import ctypes

    class Stale:
        def __init__(self, path: str) -> None:
            self.kl_isa = self.kl_chunks = lambda *args: 0

    monkeypatch.setattr(ctypes, "CDLL", Stale)
    monkeypatch.delenv("KLDIV_KERNEL", raising=False)
    kernel.reset()
    try:
        assert kernel.accelerator() == "numpy fallback (no compiled kernel)"
        x, t = pair(3 * kernel.SMALL, "float64", "float64", awkward=False)
        assert math.isfinite(engine.total_loss(x, t, False, np.dtype("float64")))
    finally:
        kernel.reset()
