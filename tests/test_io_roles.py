"""The row-key rule (io/roles.py): keys by name, by order, by disjoint sides; never a
float, never a column with a repeat, never a measurement with many distinct values."""

from __future__ import annotations

import uuid

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kldiv_cli.io.roles import MIN_ROWS, is_key_name, key_reason


@pytest.mark.parametrize(
    "name",
    ["id", "ID", "idx", "index", "row", "key", "uuid", "GUID", "user_id", "sample-idx",
     "Row Number", "row_number", "userId", "sampleID", "rowIndex", "Unnamed: 0",
     "__index_level_0__", "", "item_key"],
)  # fmt: skip
def test_key_names(name: str) -> None:
    assert is_key_name(name)


@pytest.mark.parametrize(
    "name", ["c0", "paid", "valid", "GRID", "Weight_in_lbs", "keyboard", "identity", "rows"]
)
def test_not_key_names(name: str) -> None:
    assert not is_key_name(name)


def test_named_key_needs_unique_integers_or_strings() -> None:
    assert key_reason("id", np.array([3, 1, 2])) == "named like a key and unique"
    assert key_reason("user_id", pa.array(["b", "a", "c"])) == "named like a key and unique"
    assert key_reason("id", np.array([1, 1, 2])) is None  # a repeat: a grouping column
    assert key_reason("id", np.array([0.5, 1.0, 2.0])) is None  # floats with a fraction
    # Whole-number floats are integers (pandas writes an int column with a NaN as 12.0).
    assert key_reason("id", np.array([2.0, 0.0, 1.0])) == "named like a key and unique"
    assert key_reason("id", pa.array([2.0, 0.0, 1.0])) == "named like a key and unique"
    assert key_reason("score", np.array([2.0, 0.0, 1.0])) is None
    assert key_reason("id", pa.array([1, None, 3])) is None  # a missing value
    assert key_reason("id", np.array([True, False])) is None


def test_pyarrow_chunked_and_dictionary() -> None:
    chunked = pa.chunked_array([pa.array(range(5)), pa.array(range(5, 12))])
    assert key_reason("n", chunked) == "unique and increasing"
    words = pa.array([f"k{i:03d}" for i in range(10)]).dictionary_encode()
    assert key_reason("code", words) == "unique and increasing"


def test_measurement_with_many_distinct_values_is_not_a_key() -> None:
    # As a public car table: 182 distinct integer weights in 189 rows, unsorted.
    rng = np.random.default_rng(0)
    weights = rng.choice(np.arange(1600, 5200), size=182, replace=False)
    weights = np.concatenate([weights, weights[:7]])
    rng.shuffle(weights)
    assert key_reason("Weight_in_lbs", weights) is None
    half = weights[:94], weights[94:]
    assert key_reason("Weight_in_lbs", *half) is None


def test_unique_measurement_split_in_halves_is_sparse_not_a_key() -> None:
    rng = np.random.default_rng(1)
    w = rng.choice(np.arange(1600, 5200), size=200, replace=False)
    assert key_reason("weight", w[:100], w[100:]) is None


def test_disjoint_ids_and_uuids() -> None:
    rng = np.random.default_rng(2)
    ids = rng.permutation(400)
    assert key_reason("sample", ids[:200], ids[200:]) == (
        "unique and disjoint from the other side's values"
    )
    assert key_reason("sample", ids[:200], ids[:200]) is None  # the same rows: not disjoint
    a = np.array([str(uuid.UUID(int=int(i))) for i in rng.integers(0, 2**62, 20)], dtype=object)
    b = np.array([str(uuid.UUID(int=int(i))) for i in rng.integers(0, 2**62, 20)], dtype=object)
    rng.shuffle(a)
    assert key_reason("request", a, b) == "unique and disjoint from the other side's values"
    text = np.array([f"comment number {i} was fine" for i in range(20)], dtype=object)
    rng.shuffle(text)
    assert key_reason("comment", text[:10], text[10:]) is None  # free text, not tokens


def test_few_rows_are_not_keys_by_order() -> None:
    assert key_reason("count", np.arange(MIN_ROWS - 1)) is None
    assert key_reason("count", np.arange(MIN_ROWS)) == "unique and increasing"


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(-(2**40), 2**40), min_size=MIN_ROWS, max_size=60, unique=True))
def test_monotone_unique_integers_are_keys(values: list[int]) -> None:
    up = np.sort(np.array(values, dtype=np.int64))
    assert key_reason("v", up) == "unique and increasing"
    assert key_reason("v", pa.array(up[::-1])) == "unique and decreasing"
    assert key_reason("v", up.astype(np.float64)) is None


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(0, 50), min_size=2, max_size=60))
def test_a_repeat_is_never_a_key(values: list[int]) -> None:
    v = np.array(values + values[:1], dtype=np.int64)
    assert key_reason("id", v) is None
    assert key_reason("v", v, np.arange(1000, 1100)) is None
