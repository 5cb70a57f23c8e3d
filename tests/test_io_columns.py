"""Arrow columns to NumPy through their buffers: the same values as pyarrow's own
``to_numpy`` (which imports pandas), for every numeric type, nulls, slices and chunks."""

from __future__ import annotations

import decimal
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kldiv_cli.io.base import ReadOptions
from kldiv_cli.io.columns import array_values, column_array, list_column_to_array, table_to_array

TYPES = [
    pa.float16(),
    pa.float32(),
    pa.float64(),
    pa.int8(),
    pa.int16(),
    pa.int32(),
    pa.int64(),
    pa.uint8(),
    pa.uint16(),
    pa.uint32(),
    pa.uint64(),
]


@st.composite
def arrays(draw):
    """A numeric Arrow array, maybe with nulls, maybe a slice of a longer one."""
    t = draw(st.sampled_from(TYPES))
    n = draw(st.integers(0, 40))
    dtype = np.dtype(t.to_pandas_dtype())
    if dtype.kind == "f":
        values = draw(
            st.lists(st.floats(width=dtype.itemsize * 8, allow_nan=True), min_size=n, max_size=n)
        )
    else:
        info = np.iinfo(dtype)
        values = draw(st.lists(st.integers(int(info.min), int(info.max)), min_size=n, max_size=n))
    nulls = draw(st.lists(st.booleans(), min_size=n, max_size=n))
    array = pa.array(np.array(values, dtype=dtype), type=t, mask=np.array(nulls, dtype=bool))
    start = draw(st.integers(0, n))
    return array.slice(start, draw(st.integers(0, n - start)))


@settings(max_examples=150, deadline=None)
@given(arrays())
def test_array_values_match_pyarrow(array) -> None:
    got = array_values(array)
    want = array.to_numpy(zero_copy_only=False)
    if array.null_count and want.dtype.kind != "f":
        want = want.astype(np.float64)
    assert got.shape == (len(array),)
    np.testing.assert_array_equal(got, want.astype(got.dtype))
    if array.null_count:
        assert got.dtype.kind == "f"
        assert np.isnan(got[~array.is_valid().to_numpy(zero_copy_only=False)]).all()


def test_floats_without_nulls_are_zero_copy() -> None:
    table = pa.table({"a": np.arange(10, dtype=np.float32)})
    column = table.column(0)
    values = column_array(column, np.dtype(np.float32))
    assert not values.flags.owndata


def test_decimal_and_null_columns() -> None:
    dec = pa.array([decimal.Decimal("0.25"), None, decimal.Decimal("1.5")], pa.decimal128(5, 2))
    np.testing.assert_array_equal(array_values(dec), [0.25, np.nan, 1.5])
    np.testing.assert_array_equal(array_values(pa.nulls(3)), [np.nan] * 3)


def test_chunked_columns_of_a_table(tmp_path) -> None:
    a = np.arange(12, dtype=np.float64)
    table = pa.concat_tables(
        [pa.table({"a": a[:5], "b": a[:5]}), pa.table({"a": a[5:], "b": a[5:]})]
    )
    assert table.column(0).num_chunks == 2
    out = table_to_array("t", table, ["a", "b"], ReadOptions())
    np.testing.assert_array_equal(out, np.column_stack([a, a]))
    np.testing.assert_array_equal(column_array(table.column(1), np.dtype(np.float32)), a)


@pytest.mark.parametrize(
    "type_", [pa.list_(pa.float32()), pa.large_list(pa.float64()), pa.list_(pa.int32(), 3)]
)
def test_list_columns_sliced(type_) -> None:
    rows = [[1, 2, 3], [4, 5, 6], [7, 8, 9], [10, 11, 12]]
    column = pa.array(rows, type=type_).slice(1, 2)
    out = list_column_to_array("t", "p", column, ReadOptions(), "row", 0)
    np.testing.assert_array_equal(out, [[4, 5, 6], [7, 8, 9]])


def test_ragged_list_column_names_the_row() -> None:
    from kldiv_cli.errors import InputError

    column = pa.array([[1.0, 2.0], [1.0, 2.0], [1.0]], type=pa.list_(pa.float64()))
    with pytest.raises(InputError, match="row 2 has 1 values, but row 0 has 2"):
        list_column_to_array("t", "p", column, ReadOptions(), "row", 0)


def test_parquet_nulls_read_as_nan_on_request(run_cli, tmp_path) -> None:
    t = np.full((4, 2), 0.5)
    np.save(xp := tmp_path / "x.npy", np.log(t))
    ints = pa.array([1, None, 1, 1], pa.int64())
    pq.write_table(
        pa.table({"a": pa.array([0.5, 0.5, None, 0.5]), "b": ints}), tp := tmp_path / "t.parquet"
    )
    r = run_cli("compute", xp, tp, "-r", "none", "--missing", "nan", "-f", "json", "-q")
    assert r.exit_code == 0, r.stderr
    assert r.stdout.count('"NaN"') == 2


# ---------------------------------------------------------------- wide CSVs through NumPy

_cells = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(-(2**70), 2**70).map(str),
    st.sampled_from(["1e5", ".5", "5.", "+1.5", "-0.0", "1E-300", '"0.25"', " 7 "]),
)


@st.composite
def numeric_csvs(draw):
    """A CSV of plain numbers: header or not, comma or tab, LF or CRLF, quoted cells."""
    rows, cols = draw(st.integers(1, 6)), draw(st.integers(1, 6))
    delimiter = draw(st.sampled_from([",", "\t"]))
    newline = draw(st.sampled_from(["\n", "\r\n"]))
    lines = [delimiter.join(f"c{j}" for j in range(cols))] if draw(st.booleans()) else []
    for _ in range(rows):
        lines.append(delimiter.join(draw(_cells) for _ in range(cols)))
    return delimiter, (newline.join(lines) + newline).encode()


@settings(max_examples=150, deadline=None)
@given(numeric_csvs())
def test_wide_numpy_reader_reads_what_pyarrow_reads(case) -> None:
    from kldiv_cli.io import csv as csv_reader

    delimiter, data = case
    options = ReadOptions(delimiter=delimiter)
    layout = csv_reader.csv_layout("t", None, data, "csv", options)
    wide = csv_reader.read_wide("t", None, data, "csv", layout)
    assert wide is not None
    # Every column by index: the parse is compared, not the column rule (pyarrow's
    # integer columns beside floats are left out; NumPy sees floats only).
    every = ",".join(map(str, range(layout.width)))
    options = ReadOptions(delimiter=delimiter, columns=every)
    whole = csv_reader.CsvSource("t", "csv", None, data, options)
    assert wide.shape == whole.shape and wide.columns == whole.columns
    np.testing.assert_array_equal(wide.read(), whole.read())


@pytest.mark.parametrize(
    "text",
    ["a,b\n1,x\n", "a,b\n1,\n", "a,b\n1,2\n3\n", "a,b\n1,2,\n", "a,b\n", "1,0x10\n", "a,a\n1,2\n"],
)
def test_wide_numpy_reader_leaves_anything_else_to_pyarrow(text) -> None:
    from kldiv_cli.errors import InputError
    from kldiv_cli.io import csv as csv_reader

    data = text.encode()
    layout = csv_reader.csv_layout("t", None, data, "csv", ReadOptions())
    try:
        assert csv_reader.read_wide("t", None, data, "csv", layout) is None
    except InputError as exc:  # duplicate names are refused by either reader
        assert "two columns named" in str(exc)


def test_a_wide_csv_is_read_by_numpy_and_a_text_cell_still_names_its_line(
    run_cli, tmp_path, monkeypatch
) -> None:
    from kldiv_cli.io import csv as csv_reader

    rng = np.random.default_rng(9)
    t = rng.dirichlet(np.ones(6000), size=3)
    np.savetxt(tp := tmp_path / "t.csv", t, delimiter=",", fmt="%.17g")
    np.save(xp := tmp_path / "x.npy", np.log(t))
    r = run_cli("compute", xp, tp, "-r", "sum", "-f", "json", "-q")
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout)["target"]["shape"] == [3, 6000]
    lines = tp.read_text().splitlines()
    lines[2] = "oops," + lines[2].split(",", 1)[1]
    tp.write_text("\n".join(lines) + "\n")
    r = run_cli("compute", xp, tp, "-r", "sum")
    assert r.exit_code == 2 and "line 3: 'oops' is not a number" in r.stderr, r.stderr
    assert csv_reader.WIDE <= 6000


def test_a_dataset_file_without_the_chosen_columns_is_one_line(tmp_path) -> None:
    """Arrow gives such a file zero columns; its rows must never be read as data."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from .helpers import invoke

    (tmp_path / "ds").mkdir()
    t = np.full((4, 3), 1 / 3)
    pq.write_table(pa.table({f"c{j}": t[:, j] for j in range(3)}), tmp_path / "ds" / "a.parquet")
    pq.write_table(pa.table({"other": np.ones(4)}), tmp_path / "ds" / "b.parquet")
    for command in ("compute", "compare"):
        out = invoke(command, tmp_path / "ds", tmp_path / "ds")
        assert out.exit_code == 2, (command, out)
        assert out.stderr.count("\n") == 1 and "b.parquet: has no column 'c0'" in out.stderr
