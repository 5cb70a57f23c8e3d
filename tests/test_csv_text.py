"""CSV text limits: a header of a few MB (wide files), and text that is not UTF-8."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .helpers import invoke


def test_a_header_of_four_and_a_half_megabytes_is_read(tmp_path: Path) -> None:
    """270,000 names of 15 characters: a 4.3 MB first line (over the 4 MiB that was the
    limit), two rows of small integers and a NaN."""
    n = 270_000
    names = [f"feat_{i:06d}_val" for i in range(n)]
    rng = np.random.default_rng(0)
    values = rng.integers(-9, 10, size=(2, n)).astype(np.float64)
    values[1, 7] = np.nan
    body = "\n".join(",".join("nan" if v != v else str(int(v)) for v in row) for row in values)
    header = ",".join(names)
    assert len(header) > 4 << 20
    path = tmp_path / "wide.csv"
    path.write_text(header + "\n" + body + "\n")
    out = invoke("inspect", path)
    assert out.exit_code == 0, out.stderr
    assert f"elements: {2 * n}" in out.stdout
    assert "nan: 1" in out.stdout


def test_latin1_text_is_named_as_another_encoding(tmp_path: Path) -> None:
    path = tmp_path / "cafés.csv"
    path.write_bytes("café,prix\nthé,1.5\ncrème,2.0\n".encode("latin-1"))
    out = invoke("inspect", path)
    assert out.exit_code == 2 and out.stdout == ""
    assert out.stderr == (
        f"kldiv: error: {path}: is not UTF-8 text (byte 0xe9 at offset 3); convert it, "
        "e.g. iconv -f latin1 -t utf-8 FILE > FILE.utf8\n"
    )
    # With a BOM the offset still counts the file's bytes.
    path.write_bytes(b"\xef\xbb\xbf" + "x,y\n1,2\n\xe9,3\n4,5\n6,7\n".encode("latin-1"))
    out = invoke("drift", path, path)
    assert out.exit_code == 2 and out.stdout == ""
    assert out.stderr.count("\n") == 1 and "(byte 0xe9 at offset 11)" in out.stderr


def test_nul_bytes_are_still_binary_data(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    path.write_bytes(b"a,b\n1,\x00\xe9\n")
    out = invoke("inspect", path)
    assert out.exit_code == 2 and out.stdout == ""
    assert out.stderr == f"kldiv: error: {path}: is not a text file (it holds binary data)\n"
