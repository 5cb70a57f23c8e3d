"""The CSV reader's float64 fast path (columns of floats in the first 64 KiB read without
type inference) gives inference's table, bit for bit, and inference's errors."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kldiv_cli.errors import InputError
from kldiv_cli.io import csv as csv_reader
from kldiv_cli.io.base import ReadOptions

#: Rows of plain floats filling more than the 64 KiB head, so that the rows drawn after
#: them are read only by the whole-file read.
HEAD = b"".join(b"%r,%r,7\n" % (i / 7, -i / 3) for i in range(3000))

#: Cells the float64 converter, inference or both treat specially.
TOKENS = ["", "nan", "-nan", "NaN", "inf", "-inf", "Infinity", "1e400", "-0", "0", "7", "1.5"]
TOKENS += ["abc", " 2.5", "2.5 ", "+1", "0x10", "1_0", "1,5", "N/A", "null", "true", "1e", "."]

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


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tail=rows, strings_can_be_null=st.booleans())
def test_same_table_or_error_as_inference(tail, strings_can_be_null) -> None:
    body = b"".join(
        ",".join(f'"{c}"' if "," in c else c for c in row).encode() + b"\n" for row in tail
    )
    data = b"a,b,c\n" + HEAD + body
    try:
        expected = _inferred(data, strings_can_be_null)
    except pa.ArrowInvalid:
        expected = None
    try:
        table, header = csv_reader.read_csv_table(
            "t", None, data, "csv", ReadOptions(), strings_can_be_null
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
    csv_reader.read_csv_table("t", None, b"a,b,c\n" + HEAD, "csv", ReadOptions())
    # The probe of the head (inferred), then one read with a and b fixed; c holds integers.
    assert seen == [{}, {"a": pa.float64(), "b": pa.float64()}]


def test_a_head_without_a_whole_data_line_is_inferred() -> None:
    table, header = csv_reader.read_csv_table("t", None, b"a,b\n0.5,-0", "csv", ReadOptions())
    assert header and table.schema.types == [pa.float64(), pa.int64()]
    assert table.column("a").to_pylist() == [0.5] and table.column("b").to_pylist() == [0]
