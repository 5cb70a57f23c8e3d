"""Exact quantiles of partitioned data (engines/quantiles.py): bit-identical to
np.quantile of everything, moving only brackets. Skipped without datasketches."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("datasketches")

from kldiv_cli.engines import quantiles as Q  # noqa: E402


def _identity(part: np.ndarray) -> np.ndarray:
    return part


def _same(got: np.ndarray, want: np.ndarray) -> bool:
    return got.dtype == want.dtype and got.tobytes() == want.tobytes()


@settings(max_examples=60, deadline=None)
@given(
    sizes=st.lists(st.integers(0, 400), min_size=1, max_size=6).filter(lambda s: sum(s) > 0),
    kind=st.sampled_from(["normal", "lognormal", "ties", "float32", "constant"]),
    qs=st.lists(st.floats(0, 1), min_size=1, max_size=12),
    k=st.sampled_from([8, 64, 2000]),
    seed=st.integers(0, 2**16),
)
def test_partitioned_quantiles_are_numpys_bits(sizes, kind, qs, k, seed) -> None:
    rng = np.random.default_rng(seed)
    make = {
        "normal": lambda n: rng.normal(size=n),
        "lognormal": lambda n: rng.lognormal(sigma=3, size=n),
        "ties": lambda n: rng.integers(0, 4, n).astype(np.float64),
        "float32": lambda n: rng.normal(size=n).astype(np.float32),
        "constant": lambda n: np.full(n, 2.5),
    }[kind]
    parts = [make(n) for n in sizes]
    got = Q.exact_quantiles(parts, _identity, qs, k=k)
    assert _same(got, np.quantile(np.concatenate(parts), np.asarray(qs)))


@pytest.mark.parametrize("kind", ["normal", "lognormal", "ties"])
def test_decile_edges_move_a_few_percent(kind) -> None:
    """At 1e6 values in 8 partitions, the count pass ships about 5 % of the values."""
    rng = np.random.default_rng(1)
    n = 1_000_000
    values = {
        "normal": rng.normal(size=n),
        "lognormal": rng.lognormal(size=n),
        "ties": rng.integers(0, 50, n).astype(np.float64),
    }[kind]
    parts = np.array_split(values, 8)
    qs = np.arange(1, 10) / 10
    shipped: list[int] = []

    def runner(f, items):
        out = [f(x) for x in items]
        shipped.extend(sum(a.size for a in r.between) for r in out if isinstance(r, Q.Cut))
        return out

    assert _same(Q.exact_quantiles(parts, _identity, qs, runner), np.quantile(values, qs))
    assert sum(shipped) < 0.06 * n  # ties travel as counts


def test_a_sketch_that_misses_is_caught_and_redone_exactly(monkeypatch) -> None:
    """No slack: brackets miss; the exact counts see it and the ranks are redone."""
    monkeypatch.setattr(Q, "SLACK", 0.0)
    rng = np.random.default_rng(2)
    parts = [rng.normal(size=5000) for _ in range(4)]
    calls: list[str] = []

    def runner(f, items):
        calls.append(type(f).__name__)
        return [f(x) for x in items]

    qs = np.linspace(0, 1, 41)
    got = Q.exact_quantiles(parts, _identity, qs, runner, k=8)
    assert _same(got, np.quantile(np.concatenate(parts), qs))
    assert calls[0] == "_Sketch" and calls[1:] == ["_Cut"] * (len(calls) - 1)
    assert len(calls) >= 3  # at least one bracket redone


def test_no_values_is_an_error() -> None:
    with pytest.raises(ValueError, match="no values"):
        Q.exact_quantiles([np.empty(0)], _identity, [0.5])


def test_parquet_row_groups_as_partitions(tmp_path) -> None:
    """A Parquet folder's row groups (nulls and NaN dropped) give np.quantile's bits."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(3)
    values = rng.lognormal(size=30_000)
    values[::97] = np.nan
    (tmp_path / "ref").mkdir()
    for i, piece in enumerate(np.array_split(values, 3)):
        column = pa.array(piece, mask=np.arange(piece.size) % 101 == 5)
        pq.write_table(
            pa.table({"v": column}), tmp_path / "ref" / f"p{i}.parquet", row_group_size=4000
        )
    parts = Q.parquet_parts(str(tmp_path / "ref"), "v")
    assert len(parts) == 9 and parts[0].path.endswith("p0.parquet")
    present = np.concatenate([Q.read_present(p) for p in parts])
    qs = np.arange(1, 20) / 20
    assert _same(Q.exact_quantiles(parts, Q.read_present, qs), np.quantile(present, qs))


@pytest.mark.parametrize("binning", ["quantile", "uniform"])
@pytest.mark.parametrize("bins", [1, 10, 37])
def test_numeric_bins_equal_drifts_on_all_values(binning, bins) -> None:
    from kldiv_cli.jobs.drift_roles import bin_counts, numeric_edges

    rng = np.random.default_rng(6)
    parts = [rng.lognormal(size=n) for n in (900, 0, 4000, 1)]
    parts[0][:3] = [np.inf, -np.inf, 5.0]
    parts[2][::7] = 2.0  # ties
    present = np.concatenate(parts)
    finite = present[np.isfinite(present)]
    edges = numeric_edges(finite, bins, binning)
    got = Q.numeric_bins(parts, _identity, bins, binning)
    assert got is not None
    assert _same(got[0], edges) and got[1] == finite.max()
    assert np.array_equal(got[2], bin_counts(present, edges, float(finite.max())))
    assert Q.numeric_bins([np.array([np.inf])], _identity, 10, binning) is None
