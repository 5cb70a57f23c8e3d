"""The CSV reader's fast paths (columns of floats in the first 64 KiB read without type
inference; a file of float columns parsed in parts on threads) give inference's table of
the whole file, bit for bit, and inference's errors."""

from __future__ import annotations

from unittest import mock

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kldiv_cli.errors import InputError
from kldiv_cli.io import csv as csv_reader
from kldiv_cli.io import csv_parts
from kldiv_cli.io.base import ReadOptions

from .helpers import invoke

#: Rows of plain floats filling more than the 64 KiB head, so that the rows drawn after
#: them are read only by the whole-file read.
HEAD = b"".join(b"%r,%r,7.5\n" % (i / 7, -i / 3) for i in range(3000))

#: Cells the float64 converter, inference or both treat specially.
TOKENS = ["", "nan", "-nan", "NaN", "inf", "-inf", "Infinity", "1e400", "-0", "0", "7", "1.5"]
TOKENS += ["abc", " 2.5", "2.5 ", "+1", "0x10", "1_0", "1,5", "N/A", "null", "true", "1e", "."]
TOKENS += ["1\n2", "1.5\n", "\n"]

cells = st.one_of(
    st.sampled_from(TOKENS),
    st.floats(allow_nan=True).map(repr),
    st.text(alphabet="0123456789.e-+ ", max_size=6),
)
rows = st.lists(st.tuples(cells, cells, cells), max_size=4)


def _inferred(data: bytes, strings_can_be_null: bool) -> pa.Table:
    """The file read as before the fast path: pyarrow's inference for every column."""
    return pcsv.read_csv(
        pa.BufferReader(data),
        convert_options=pcsv.ConvertOptions(
            null_values=[""], strings_can_be_null=strings_can_be_null
        ),
    )


def _bits(table: pa.Table) -> list[tuple[str, list[object]]]:
    """Each column's type and values, floats by their bits (NaN payloads and -0 kept)."""
    out = []
    for col in table.columns:
        col = col.combine_chunks()
        if pa.types.is_float64(col.type):
            values = np.asarray(col.fill_null(0.0)).view(np.int64).tolist()
            out.append((str(col.type), [values, col.is_null().to_pylist()]))
        else:
            out.append((str(col.type), col.to_pylist()))
    return out


def _body(tail: list[tuple[str, str, str]], quote: bool) -> bytes:
    """Rows as CSV lines; cells holding the delimiter or a line end quoted, or all when
    ``quote``."""
    return b"".join(
        ",".join(f'"{c}"' if quote or "," in c or "\n" in c else c for c in row).encode() + b"\n"
        for row in tail
    )


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tail=rows, strings_can_be_null=st.booleans(), quote=st.booleans(), split=st.booleans())
def test_same_table_or_error_as_inference(
    tmp_path_factory, tail, strings_can_be_null, quote, split
):
    data = b"a,b,c\n" + HEAD + _body(tail, quote)
    try:
        expected = _inferred(data, strings_can_be_null)
    except pa.ArrowInvalid:
        expected = None
    path = None
    if split:
        # From a file, cut into parts whatever its size and the machine's cores.
        path = str(tmp_path_factory.mktemp("csv") / "t.csv")
        with open(path, "wb") as f:
            f.write(data)
    with (
        mock.patch.object(csv_reader, "SPLIT_ABOVE", 0 if split else 1 << 62),
        mock.patch.object(pa, "cpu_count", return_value=3),
    ):
        try:
            table, header = csv_reader.read_csv_table(
                "t", path, None if split else data, "csv", ReadOptions(), strings_can_be_null
            )
        except InputError:
            assert expected is None
            return
    assert header and expected is not None
    assert table.schema == expected.schema
    assert _bits(table) == _bits(expected)


def test_a_word_after_the_head_is_the_same_error() -> None:
    data = b"a,b,c\n" + HEAD + b"1.5,abc,7\n"
    source = csv_reader.CsvSource("t", "csv", None, data, ReadOptions())
    with pytest.raises(InputError, match=r"column 'b': line 3002: 'abc' is not a number"):
        source.read()


def test_float_columns_of_the_head_skip_inference(monkeypatch) -> None:
    seen: list[dict[str, object]] = []
    read_csv = pcsv.read_csv

    def spy(source, **kwargs):
        seen.append(dict(kwargs["convert_options"].column_types))
        return read_csv(source, **kwargs)

    monkeypatch.setattr(pcsv, "read_csv", spy)
    integers = HEAD.replace(b",7.5\n", b",7\n")
    csv_reader.read_csv_table("t", None, b"a,b,c\n" + integers, "csv", ReadOptions())
    # The probe of the head (inferred), then one read with a and b fixed; c holds integers.
    assert seen == [{}, {"a": pa.float64(), "b": pa.float64()}]


def test_a_head_without_a_whole_data_line_is_inferred() -> None:
    table, header = csv_reader.read_csv_table("t", None, b"a,b\n0.5,-0", "csv", ReadOptions())
    assert header and table.schema.types == [pa.float64(), pa.int64()]
    assert table.column("a").to_pylist() == [0.5] and table.column("b").to_pylist() == [0]


@pytest.mark.parametrize("header", [True, False])
def test_a_file_of_floats_is_read_in_parts(tmp_path, monkeypatch, header) -> None:
    data = (b"a,b,c\n" if header else b"") + HEAD
    path = tmp_path / "t.csv"
    path.write_bytes(data)
    monkeypatch.setattr(csv_reader, "SPLIT_ABOVE", 0)
    monkeypatch.setattr(pa, "cpu_count", lambda: 2)
    table, found = csv_reader.read_csv_table("t", str(path), None, "csv", ReadOptions())
    expected, _ = csv_reader.read_csv_table("t", None, data, "csv", ReadOptions())
    assert found == header and table.num_rows == 3000
    # Parts parsed into one array: a chunk per column, viewing it (no copy to NumPy).
    assert table.column(0).num_chunks == 1
    assert table.equals(expected) and _bits(table) == _bits(expected)


def _missing(lines: bytes, every: int) -> bytes:
    """Every ``every``-th line's first cell and others' last cell left empty."""
    rows = lines.splitlines(keepends=True)
    return b"".join(
        b"," + r.split(b",", 1)[1] if i % every == 0 else r.replace(b",7.5\n", b",\n")
        for i, r in enumerate(rows)
    )


#: Files of floats whose rows are not one per line end, or that end without one, or
#: with missing cells (nulls in every part).
ODD_LINES = {
    "blank lines": HEAD.replace(b"\n", b"\n\n", 2) + b"\n",
    "no last line end": HEAD.rstrip(b"\n"),
    "CRLF": HEAD.replace(b"\n", b"\r\n"),
    "lone CR": HEAD.replace(b"\n", b"\r"),
    "missing cells": _missing(HEAD, 7),
}


@pytest.mark.parametrize("name", list(ODD_LINES))
def test_parts_of_odd_lines_are_the_whole_read(tmp_path, monkeypatch, name) -> None:
    data = b"a,b,c\n" + ODD_LINES[name]
    path = tmp_path / "t.csv"
    path.write_bytes(data)
    monkeypatch.setattr(csv_reader, "SPLIT_ABOVE", 0)
    monkeypatch.setattr(pa, "cpu_count", lambda: 2)
    table, _ = csv_reader.read_csv_table("t", str(path), None, "csv", ReadOptions())
    expected = _inferred(data, False)
    assert table.schema == expected.schema and _bits(table) == _bits(expected)


def test_a_ragged_line_in_a_later_part_is_the_same_error(tmp_path, monkeypatch) -> None:
    path = tmp_path / "t.csv"
    path.write_bytes(b"a,b,c\n" + HEAD + b"1.5,2.5\n")
    monkeypatch.setattr(csv_reader, "SPLIT_ABOVE", 0)
    with pytest.raises(InputError, match="line 3002 has 2 fields, expected 3"):
        csv_reader.read_csv_table("t", str(path), None, "csv", ReadOptions())


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_parts_cut_at_any_line_ends_are_the_whole_read_or_none(tmp_path_factory, data) -> None:
    # A few rows of floats, then drawn rows (quoted cells, line ends in quotes), cut at
    # drawn line ends, inside quoted fields too.
    text = b"a,b,c\n" + HEAD[:400] + _body(data.draw(rows), data.draw(st.booleans()))
    ends = [i + 1 for i in range(len(text) - 1) if text[i] == 10]
    cuts = sorted(set(data.draw(st.lists(st.sampled_from(ends), min_size=1, max_size=4))))
    path = str(tmp_path_factory.mktemp("csv") / "t.csv")
    with open(path, "wb") as f:
        f.write(text)
    floats = {n: pa.float64() for n in "abc"}
    convert = pcsv.ConvertOptions(null_values=[""], column_types=floats)
    with mock.patch.object(csv_parts, "cuts", return_value=[0, *cuts, len(text)]):
        table = csv_parts.read_parts(
            path, list("abc"), pcsv.ReadOptions(), pcsv.ParseOptions(), convert
        )
    if table is not None:
        expected = _inferred(text, False)
        assert table.schema == expected.schema
        assert _bits(table) == _bits(expected)


def test_a_compute_on_parts_has_the_bits_of_whole_reads(tmp_path, monkeypatch) -> None:
    rng = np.random.default_rng(5)
    t = rng.dirichlet(np.ones(6), 4000).astype(np.float32)
    x = np.log(rng.dirichlet(np.ones(6), 4000)).astype(np.float32)
    for name, a in (("x", x), ("t", t)):
        np.savetxt(tmp_path / f"{name}.csv", a, delimiter=",", header="a,b,c,d,e,f", comments="")
    args = ("compute", tmp_path / "x.csv", tmp_path / "t.csv", "-r", "batchmean", "-q")
    whole = invoke(*args)
    monkeypatch.setattr(csv_reader, "SPLIT_ABOVE", 0)
    monkeypatch.setattr(pa, "cpu_count", lambda: 3)
    parts = invoke(*args)
    assert whole.exit_code == parts.exit_code == 0
    assert parts.stdout == whole.stdout and float(whole.stdout) > 0
