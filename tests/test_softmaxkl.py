"""Distillation's KL on logits in one pass per row: exact, and the same bits everywhere.

``kldiv_cli.core.softmaxkl`` computes the KL of ``softmax(t/T)`` against
``log_softmax(s/T)`` row by row, in C (AVX-512, AVX2 or generic code, when the library
was built) or in NumPy. Every compiled variant is compared bit for bit with the NumPy
steps, at several thread counts and row groupings; the values are checked against exact
decimal arithmetic (near-identical rows, where a materialised float64 pipeline loses
digits), and the compute job against the materialised path on the rows the kernel does not
take (NaN, infinities, masked classes, wide spans), the Dask engine's tasks and
``KLDIV_KERNEL=numpy``.
"""

from __future__ import annotations

import math
import os
from dataclasses import replace
from decimal import Context, Decimal
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from kldiv_cli import kl_div, log_softmax, softmax
from kldiv_cli.core import softmaxkl
from kldiv_cli.engines import tasks as T
from kldiv_cli.engines.dask import make_job, reduce_job
from kldiv_cli.jobs.compute import ComputeRequest, compute, open_sources, plan

from .helpers import invoke


def compiled_variants() -> list[str]:
    """The compiled variants this machine runs (none without the library)."""
    softmaxkl.reset()
    try:
        found = softmaxkl.accelerator()
    finally:
        softmaxkl.reset()
    if not found.startswith("accelerator"):
        return []
    names = ["generic", "avx2", "avx512"]
    return names[: names.index(found.split(": ")[1]) + 1]


VARIANTS = compiled_variants()
needs_library = pytest.mark.skipif(not VARIANTS, reason="the compiled kernel is not built")


@pytest.fixture
def use(monkeypatch):
    """Switch the kernel (``KLDIV_KERNEL``) for the rest of the test."""

    def switch(name: str) -> None:
        monkeypatch.setenv("KLDIV_KERNEL", name)
        softmaxkl.reset()
        # Loaded now: small inputs too then go through the library.
        assert name in softmaxkl.accelerator() or name == "numpy"

    yield switch
    monkeypatch.delenv("KLDIV_KERNEL", raising=False)
    softmaxkl.reset()


def awkward_rows(width: int, dtype: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Student and teacher rows reaching every branch: near-identical and far apart,
    large offsets, a -0 and +0 maximum, constant rows, spans of hundreds and thousands,
    classes masked with -1e9 or -inf in the teacher, and rows the kernel refuses (NaN,
    +inf, a student -inf, a class masked on both sides)."""
    rng = np.random.default_rng(seed)
    s = rng.standard_normal((14, width)) * 3
    t = s + rng.normal(0, 1e-2, s.shape)
    t[1] = s[1] + rng.normal(0, 1e-5, width)
    t[2] = rng.standard_normal(width) * 8  # unrelated
    s[3], t[3] = s[3] + 3e4, t[3] + 3e4  # large logits
    s[4], t[4] = 0.0, 0.0
    s[4, 0], t[4, 0] = -0.0, -0.0
    s[5, :] = 1.0  # constant student
    t[6, 0] = t[6].max() + 650 if width > 1 else t[6, 0]  # zt near the floor
    s[7, 0] = s[7, 0] - 1e4  # a student far below (expm1 near -1)
    t[8, 0] = t[8].max() + 2000 if width > 1 else np.nan  # far below the floor
    s[9, -1] = np.nan
    t[10, :2] = -np.inf  # masked teacher classes: taken
    s[11, 0] = np.inf
    s[12, 0], t[12, 0] = -np.inf, -np.inf
    t[13, : max(1, width // 8)] = -1e9  # masked teacher classes, as masked_fill writes them
    with np.errstate(over="ignore"):  # float16: -1e9 is -inf, a row refused
        return s.astype(dtype), t.astype(dtype)


def lanes_bits(s: np.ndarray, t: np.ndarray, temperature: float, threads: int) -> np.ndarray:
    with np.errstate(all="ignore"):
        return softmaxkl.lanes(s, t, temperature, threads).view(np.uint64)


def test_table_is_what_its_definition_computes() -> None:
    made = softmaxkl.make_table()
    assert made == softmaxkl.TABLE_VALUES[: len(made)]
    tab = softmaxkl.table()
    ctx = Context(prec=50)
    for j in range(16):
        exact = Fraction(ctx.power(Decimal(2), ctx.divide(Decimal(j), Decimal(16))))
        assert abs(Fraction(tab[j]) + Fraction(tab[16 + j]) - exact) < Fraction(1, 1 << 104)
    # The polynomial: r + r^2 q(r) within 2^-58 |r| of expm1(r) where the kernel uses it.
    q = [Fraction(c) for c in tab[34:]]
    edge = Fraction(math.log(2) / 32) * Fraction(10001, 10000)
    for k in [*range(-64, 0), *range(1, 65)]:
        r = edge * k / 64
        exact = Fraction(ctx.exp(Decimal(r.numerator) / Decimal(r.denominator)) - 1)
        poly = r + r * r * sum(c * r**i for i, c in enumerate(q))
        assert abs(poly - exact) < abs(r) / (1 << 58), k


@needs_library
@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize(
    ("sd", "td"), [("float32", "float32"), ("float16", "float16"), ("float16", "float32")]
)
def test_compiled_and_numpy_rows_have_the_same_bits(variant, sd, td, use) -> None:
    for width in (1, 15, 16, 17, 70, 1003):
        s, _ = awkward_rows(width, sd, width)
        _, t = awkward_rows(width, td, width)
        for temperature in (1.0, 0.5, 3.7):
            use("numpy")
            want = lanes_bits(s, t, temperature, 1)
            use(variant)
            got = lanes_bits(s, t, temperature, 1)
            assert np.array_equal(got, want), (width, temperature)


@needs_library
def test_rows_wider_than_the_numpy_pieces_have_the_same_bits(use) -> None:
    """The NumPy steps take a wide row in pieces, carrying the lanes' sums across them."""
    rng = np.random.default_rng(8)
    s = (rng.standard_normal((3, 2 * 8192 + 21)) * 3).astype(np.float32)
    t = (s + rng.normal(0, 0.1, s.shape)).astype(np.float32)
    use("numpy")
    want = lanes_bits(s, t, 1.5, 1)
    use(VARIANTS[-1])
    assert np.array_equal(lanes_bits(s, t, 1.5, 2), want)


@pytest.mark.parametrize("kernel", ["numpy", *VARIANTS[-1:]])
def test_threads_and_row_groupings_give_the_same_bits(kernel, use) -> None:
    use(kernel)
    s, t = awkward_rows(300, "float32", 7)
    s, t = np.tile(s, (8, 1)), np.tile(t, (8, 1))
    want = lanes_bits(s, t, 2.0, 1)
    for threads in (2, 3, 5):
        assert np.array_equal(lanes_bits(s, t, 2.0, threads), want)
    halves = np.concatenate(
        [lanes_bits(s[:37], t[:37], 2.0, 2), lanes_bits(s[37:], t[37:], 2.0, 3)]
    )
    assert np.array_equal(halves, want)


def test_an_error_on_a_worker_thread_is_raised_by_the_caller(use, monkeypatch) -> None:
    use("numpy")

    def broken(*args: object) -> None:
        raise MemoryError("no room")

    monkeypatch.setattr(softmaxkl, "_numpy_lanes", broken)
    s = np.zeros((64, 4096), np.float32)
    with pytest.raises(MemoryError, match="no room"):
        softmaxkl.lanes(s, s, threads=2)


def test_rows_not_taken_are_reported() -> None:
    s, t = awkward_rows(40, "float32", 3)
    kl, taken = softmaxkl.row_kl(s, t)
    refused = np.isin(np.arange(len(s)), [9, 11, 12])
    assert np.array_equal(taken, ~refused)
    assert np.isnan(kl[refused]).all() and np.isfinite(kl[~refused]).all()
    empty, taken = softmaxkl.row_kl(np.empty((3, 0), np.float32), np.empty((3, 0), np.float32))
    assert not taken.any()


def exact_kl(s: np.ndarray, t: np.ndarray, temperature: float) -> float:
    """The KL of softmax(t/T) against log_softmax(s/T), in 50-digit decimals."""
    ctx = Context(prec=50)
    temp = Decimal(float(temperature))
    zs = [ctx.divide(Decimal(float(v)), temp) for v in s]
    zt = [ctx.divide(Decimal(float(v)), temp) for v in t]
    log_ss = ctx.ln(sum(ctx.exp(v) for v in zs))
    log_st = ctx.ln(sum(ctx.exp(v) for v in zt))
    # A masked teacher class (-inf: probability 0) adds nothing.
    terms = (
        ctx.exp(b - log_st) * ((b - log_st) - (a - log_ss)) for a, b in zip(zs, zt) if b.is_finite()
    )
    return float(sum(terms))


@pytest.mark.parametrize("sigma", [1e-2, 1e-4, 1e-6])
@pytest.mark.parametrize(("dtype", "temperature"), [("float32", 1.0), ("float16", 2.0)])
def test_rows_are_exact_where_materialised_float64_loses_digits(sigma, dtype, temperature) -> None:
    """Near-identical rows: the KL is sigma^2/2 of terms of size 1, which a float64
    log-softmax and softmax lose ~1e-16 of each; the kernel keeps 1e-9 of the KL."""
    rng = np.random.default_rng(int(-math.log10(sigma)))
    s = (rng.standard_normal((4, 200)) * 3).astype(dtype)
    t = (s.astype(np.float64) + rng.normal(0, sigma, s.shape)).astype(dtype)
    t[0] = s[0]  # identical rows: exactly 0
    kl, taken = softmaxkl.row_kl(s, t, temperature)
    exact = np.array([exact_kl(a, b, temperature) for a, b in zip(s, t)])
    assert taken.all() and kl[0] == 0.0
    same = exact == 0  # float16 cannot hold the smallest differences
    assert np.array_equal(kl[same], exact[same])
    assert np.max(np.abs(kl[~same] / exact[~same] - 1), initial=0.0) < 1e-9


@pytest.mark.parametrize("temperature", [1.0, 0.25])
def test_masked_and_far_apart_rows_are_exact(temperature) -> None:
    """A teacher (or both sides) masked with -1e9, a teacher masked with -inf, a teacher
    spanning thousands, a student far below: the floor of zt changes nothing the decimal
    reference can see."""
    rng = np.random.default_rng(9)
    s = (rng.standard_normal((5, 64)) * 3).astype(np.float32)
    t = (s + rng.normal(0, 1e-3, s.shape)).astype(np.float32)
    t[0, :5] = -1e9
    s[1, :5], t[1, :5] = -1e9, -1e9
    t[2, 0] = 3000.0
    s[3, :3] = -3e4
    t[4, 7] = -800.0
    t[4, 9:12] = -np.inf
    kl, taken = softmaxkl.row_kl(s, t, temperature)
    exact = np.array([exact_kl(a, b, temperature) for a, b in zip(s, t)])
    assert taken.all()
    assert np.max(np.abs(kl / exact - 1)) < 1e-9


def write(folder: Path, s: np.ndarray, t: np.ndarray) -> tuple[str, str]:
    np.save(folder / "s.npy", s)
    np.save(folder / "t.npy", t)
    return str(folder / "s.npy"), str(folder / "t.npy")


def request_for(s: str, t: str, **changes: object) -> ComputeRequest:
    return ComputeRequest(
        s, t, input_transform="log-softmax", target_transform="softmax", **changes
    )


def within_one_ulp(got: np.ndarray, exact: np.ndarray) -> bool:
    got, exact = np.asarray(got), np.asarray(exact, dtype=np.float64)
    ulp = np.spacing(np.abs(exact).astype(got.dtype)).astype(np.float64)
    return bool(np.all(np.abs(got.astype(np.float64) - exact) <= ulp))


@pytest.mark.parametrize("reduction", ["sum", "mean", "batchmean"])
def test_compute_is_within_one_ulp_of_the_exact_value(tmp_path, reduction) -> None:
    rng = np.random.default_rng(11)
    s = (rng.standard_normal((2, 5, 40)) * 4).astype(np.float32)  # batch, tokens, vocab
    t = (s + rng.normal(0, 1e-4, s.shape)).astype(np.float32)
    rows = np.array([exact_kl(a, b, 1.5) for a, b in zip(s.reshape(-1, 40), t.reshape(-1, 40))])
    divisor = {"sum": 1, "mean": s.size, "batchmean": 2}[reduction]
    request = request_for(*write(tmp_path, s, t), reduction=reduction, temperature=1.5)
    seen = set()
    for chunk_rows, threads in ((None, None), (1, 1), (3, 2)):
        changes = {"chunk_rows": chunk_rows, "threads": threads, "per_row": True}
        result = compute(replace(request, **changes))
        assert result.dtype == "float32"
        exact = math.fsum(rows.tolist()) / divisor
        assert within_one_ulp(result.loss, exact), (float(result.loss), exact)
        assert within_one_ulp(result.per_row, rows)
        seen.add(result.loss.tobytes() + result.per_row.tobytes())
    assert len(seen) == 1  # the same bits for any block size and thread count


def test_rows_the_kernel_refuses_keep_the_materialised_answers(tmp_path) -> None:
    """NaN, +inf, a student -inf, a class masked on both sides: each such row gets the
    float64 transforms' value (nan or inf), the other rows (a teacher masked with -inf or
    -1e9 among them) the kernel's, within 1 ulp of that value."""
    s, t = awkward_rows(40, "float32", 5)
    with np.errstate(all="ignore"):
        reference = np.asarray(
            kl_div(
                log_softmax(s, dtype=np.float64),
                softmax(t, dtype=np.float64),
                reduction="none",
            )
        ).sum(axis=-1)
    paths = write(tmp_path, s, t)
    result = compute(request_for(*paths, reduction="sum", per_row=True))
    assert np.array_equal(np.isnan(result.per_row), np.isnan(reference))
    assert np.array_equal(np.isinf(result.per_row), np.isinf(reference))
    finite = np.isfinite(reference)
    assert np.allclose(result.per_row[finite], reference[finite], rtol=1e-6, atol=1e-12)
    assert np.isnan(result.loss)
    assert any("NaN" in d or "nan" in d for d in result.diagnostics)
    keep = np.r_[0:9, 10, 13]  # finite rows, a teacher class masked with -inf or -1e9
    masked = compute(request_for(*write(tmp_path, s[keep], t[keep]), reduction="sum"))
    assert within_one_ulp(masked.loss, math.fsum(reference[keep].tolist()))


def test_float64_logits_and_pointwise_keep_their_paths(tmp_path) -> None:
    s, t = awkward_rows(30, "float64", 1)
    sx, st_ = open_sources(request_for(*write(tmp_path, s, t)), None)
    assert not softmaxkl.takes(sx.dtype, st_.dtype)
    paths = write(tmp_path, s[:4].astype(np.float32), t[:4].astype(np.float32))
    loss = compute(request_for(*paths, reduction="none")).loss
    with np.errstate(all="ignore"):
        torch_like = kl_div(
            log_softmax(s[:4].astype(np.float32)),
            softmax(t[:4].astype(np.float32)),
            reduction="none",
        )
    assert loss.tobytes() == np.asarray(torch_like).tobytes()


@needs_library
def test_forced_numpy_and_the_dask_tasks_give_the_local_bits(tmp_path, use) -> None:
    rng = np.random.default_rng(4)
    s = (rng.standard_normal((300, 500)) * 3).astype(np.float16)
    t = (s + rng.normal(0, 0.05, s.shape)).astype(np.float16)
    request = request_for(*write(tmp_path, s, t), reduction="batchmean", temperature=2.0)
    use(VARIANTS[-1])
    local = compute(request)
    sx, st_ = open_sources(request, None)
    job = replace(make_job(request, sx, st_, plan(request, sx, st_)), chunk=1 << 12)
    assert job.fused and job.layout == T.GRID and T.units(job) > 3
    work = T.split(job, 2)[::-1]
    tasks = reduce_job(request, sx, st_, job, lambda j: [T.run_task(j, w) for w in work])
    assert tasks.loss.tobytes() == local.loss.tobytes()
    use("numpy")
    assert compute(request).loss.tobytes() == local.loss.tobytes()


def test_small_jobs_do_not_load_the_library(tmp_path) -> None:
    softmaxkl.reset()
    s = np.arange(12, dtype=np.float32).reshape(3, 4)
    out = invoke("compute", *write(tmp_path, s, s[:, ::-1].copy()), "--input-transform",
                 "log-softmax", "--target-transform", "softmax", "-r", "sum", "-T", "2", "-q")  # fmt: skip
    assert out.exit_code == 0 and float(out.stdout) > 0
    assert not softmaxkl.loaded()


def _rows_in_child(s: np.ndarray, want: np.ndarray) -> None:
    got, _ = softmaxkl.row_kl(s, s * 1.01, threads=2)
    raise SystemExit(0 if np.array_equal(got, want) else 3)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork here")
def test_a_forked_child_starts_its_own_threads() -> None:
    """The parent's pool threads do not exist in a forked child: waiting on them would hang."""
    import multiprocessing

    s = np.random.default_rng(2).standard_normal((600, 512)).astype(np.float32)  # 3 tasks
    want, _ = softmaxkl.row_kl(s, s * 1.01, threads=2)  # the parent's pool is running
    child = multiprocessing.get_context("fork").Process(target=_rows_in_child, args=(s, want))
    child.start()
    child.join(60)
    if child.is_alive():
        child.kill()
    assert child.exitcode == 0
