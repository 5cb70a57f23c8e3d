"""first_position: how messages name the first flagged element of an array."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import array_shapes, arrays

from kldiv_cli.jobs.positions import first_position


@given(arrays(bool, array_shapes(min_dims=0, max_dims=4, min_side=1)).filter(np.any))
def test_names_the_first_true_element_in_c_order(flags) -> None:
    axes = ("row", "column", "axis 2")
    first = np.unravel_index(int(np.flatnonzero(flags)[0]), flags.shape)
    expected = ", ".join(f"{a} {i}" for a, i in zip(axes, first))
    assert first_position(flags, axes) == expected


@given(st.integers(0, 5), st.integers(0, 6))
def test_row_and_token(i: int, j: int) -> None:
    flags = np.zeros((6, 7), dtype=bool)
    flags[i, j] = flags[-1, -1] = True
    assert first_position(flags, ("row", "token")) == f"row {i}, token {j}"
    assert first_position(flags[i], ("row",)) == f"row {j}"
    assert first_position(np.array(True), ("row",)) == ""
