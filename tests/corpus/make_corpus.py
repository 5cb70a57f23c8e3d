"""A corpus of broken and hostile inputs for ``kldiv compute``.

Each :class:`Case` writes its files into a folder and returns the command-line
arguments that feed them to kldiv, with a regular expression the one-line error
must match. The tests (tests/test_corpus.py) run every case through the real
command; to look at the files yourself:

    python tests/corpus/make_corpus.py /tmp/kldiv-corpus

To add a case, append to CASES.
"""

from __future__ import annotations

import io
import os
import sys
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

# What a successful unpickle of the hostile payload would create.
PWNED = "PWNED-by-unpickling"


@dataclass(frozen=True)
class Case:
    name: str
    build: Callable[[Path], list[str]]
    error: str  # regex the stderr line must match
    stdin: bytes | None = None


class Payload:
    """Unpickling this creates a file: proof that something was unpickled."""

    def __init__(self, folder: str) -> None:
        self.folder = folder

    def __reduce__(self):
        return (open, (os.path.join(self.folder, PWNED), "w"))


def good(folder: Path, name: str = "good.npy", rows: int = 4, cols: int = 3) -> str:
    rng = np.random.default_rng(0)
    path = folder / name
    np.save(path, np.log(rng.dirichlet(np.ones(cols), rows)))
    return str(path)


def write(folder: Path, name: str, data: bytes | str) -> str:
    path = folder / name
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return str(path)


def npy_bytes(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, a, allow_pickle=True)
    return buf.getvalue()


def npy_header(shape, dtype="<f8", version=(1, 0)) -> bytes:
    buf = io.BytesIO()
    header = {"descr": dtype, "fortran_order": False, "shape": shape}
    writer = (
        np.lib.format.write_array_header_1_0
        if version == (1, 0)
        else np.lib.format.write_array_header_2_0
    )
    writer(buf, header)
    return buf.getvalue()


def pickled_npy(folder: Path) -> bytes:
    a = np.empty(2, dtype=object)
    a[0], a[1] = Payload(str(folder)), 1
    return npy_bytes(a)


def parquet_bytes(table: pa.Table) -> bytes:
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()


def npz(folder: Path, name: str, **arrays) -> str:
    path = folder / name
    np.savez(path, **arrays)
    return str(path)


def _c(name, build, error, stdin=None) -> Case:
    return Case(name, build, error, stdin)


G = good
CASES: list[Case] = [
    # --- .npy
    _c(
        "npy-empty",
        lambda d: [write(d, "empty.npy", b""), G(d)],
        r"empty.npy: is empty or truncated",
    ),
    _c(
        "npy-truncated",
        lambda d: [write(d, "trunc.npy", npy_bytes(np.ones((4, 3)))[:-20]), G(d)],
        r"trunc.npy: is truncated: its header declares shape \(4, 3\)",
    ),
    _c(
        "npy-header-only",
        lambda d: [write(d, "hdr.npy", npy_header((10, 5))), G(d)],
        r"hdr.npy: is truncated",
    ),
    _c(
        "npy-text",
        lambda d: [write(d, "text.npy", "hello, I am text\n1,2,3\n"), G(d)],
        r"text.npy: is not a .npy file",
    ),
    _c(
        "npy-trillion",
        lambda d: [write(d, "huge.npy", npy_header((10**6, 10**6)) + b"\0" * 64), G(d)],
        r"huge.npy: is truncated: its header declares shape \(1000000, 1000000\)",
    ),
    _c(
        "npy-strings",
        lambda d: [write(d, "str.npy", npy_bytes(np.array([["a", "b"], ["c", "d"]]))), G(d)],
        r"str.npy: holds text",
    ),
    _c(
        "npy-pickled",
        lambda d: [write(d, "obj.npy", pickled_npy(d)), G(d)],
        r"obj.npy: holds Python objects \(a pickled array\)",
    ),
    _c(
        "npy-complex",
        lambda d: [write(d, "cplx.npy", npy_bytes(np.ones((4, 3), np.complex128))), G(d)],
        r"cplx.npy: holds complex numbers",
    ),
    _c(
        "npy-bool",
        lambda d: [write(d, "bool.npy", npy_bytes(np.ones((4, 3), bool))), G(d)],
        r"bool.npy: holds booleans",
    ),
    _c(
        "npy-structured",
        lambda d: [
            write(d, "rec.npy", npy_bytes(np.zeros(4, dtype=[("a", "f8"), ("b", "f8")]))),
            G(d),
        ],
        r"rec.npy: holds a structured",
    ),
    _c(
        "npy-bad-header",
        lambda d: [write(d, "badhdr.npy", b"\x93NUMPY\x01\x00\x10\x00{'descr': oops}   \n"), G(d)],
        r"badhdr.npy: has a malformed .npy header",
    ),
    _c(
        "npy-bad-version",
        lambda d: [write(d, "ver.npy", b"\x93NUMPY\x09\x09" + b"\0" * 40), G(d)],
        r"ver.npy: has a malformed .npy header",
    ),
    _c(
        "npy-target-truncated",
        lambda d: [G(d), write(d, "t.npy", npy_bytes(np.ones((4, 3)))[:90])],
        r"t.npy: is truncated",
    ),
    # --- .npz
    _c("npz-no-arrays", lambda d: [npz_empty(d), G(d)], r"none.npz: holds no arrays"),
    _c(
        "npz-several-no-key",
        lambda d: [npz(d, "many.npz", a=np.ones((4, 3)), b=np.ones((4, 3))), G(d)],
        r"many.npz: holds 2 arrays \(a, b\); choose one with --input-key",
    ),
    _c(
        "npz-missing-key",
        lambda d: [npz(d, "one.npz", a=np.ones((4, 3))), G(d), "--input-key", "zz"],
        r"one.npz: has no array 'zz'; it holds: a",
    ),
    _c(
        "npz-not-zip",
        lambda d: [write(d, "fake.npz", b"not a zip at all"), G(d)],
        r"fake.npz: is not a valid .npz file",
    ),
    _c("npz-pickled", lambda d: [npz_pickled(d), G(d)], r"obj.npz\[x\]: holds Python objects"),
    # --- CSV
    _c(
        "csv-ragged",
        lambda d: [write(d, "rag.csv", "a,b,c\n1,2,3\n4,5\n6,7,8\n"), G(d)],
        r"rag.csv: line 3 has 2 fields, expected 3",
    ),
    _c(
        "csv-non-numeric",
        lambda d: [write(d, "word.csv", "a,b,c\n-1,-2,-3\n-4,oops,-6\n-1,-1,-1\n-2,-2,-2\n"), G(d)],
        r"word.csv: column 'b': line 3: 'oops' is not a number",
    ),
    _c(
        "csv-missing-cell",
        lambda d: [write(d, "hole.csv", "a,b,c\n-1,-2,-3\n-4,,-6\n-1,-1,-1\n-2,-2,-2\n"), G(d)],
        r"hole.csv: column 'b': line 3 is missing a value",
    ),
    _c(
        "csv-header-only",
        lambda d: [write(d, "hdr.csv", "a,b,c\n"), G(d)],
        r"hdr.csv: has a header but no data rows",
    ),
    _c("csv-empty", lambda d: [write(d, "empty.csv", b""), G(d)], r"empty.csv: is empty"),
    _c("csv-blank", lambda d: [write(d, "blank.csv", "\n\n  \n"), G(d)], r"blank.csv: is empty"),
    _c(
        "csv-binary",
        lambda d: [write(d, "bin.csv", bytes(range(256)) * 4), G(d)],
        r"bin.csv: is not a text file",
    ),
    _c(
        "csv-latin1",
        lambda d: [write(d, "latin.csv", "caf\xe9,b\n1,2\n".encode("latin-1")), G(d)],
        r"latin.csv: is not UTF-8 text",
    ),
    _c(
        "csv-text-only",
        lambda d: [write(d, "names.csv", "name,kind\nfoo,bar\nbaz,qux\n"), G(d)],
        r"names.csv: has no numeric columns",
    ),
    # --- Parquet / Arrow
    _c(
        "parquet-empty",
        lambda d: [write(d, "empty.parquet", b""), G(d)],
        r"empty.parquet: is empty",
    ),
    _c(
        "parquet-truncated",
        lambda d: [
            write(d, "trunc.parquet", parquet_bytes(pa.table({"a": [1.0, 2.0]}))[:-30]),
            G(d),
        ],
        r"trunc.parquet: is not a readable Parquet file",
    ),
    _c(
        "parquet-garbage",
        lambda d: [write(d, "junk.parquet", b"PAR1" + os.urandom(64)), G(d)],
        r"junk.parquet: is not a readable Parquet file",
    ),
    _c(
        "parquet-strings",
        lambda d: [
            write(d, "str.parquet", parquet_bytes(pa.table({"a": ["x", "y"], "b": ["z", "w"]}))),
            G(d),
        ],
        r"str.parquet: has no numeric columns",
    ),
    _c(
        "parquet-nulls",
        lambda d: [
            write(
                d,
                "null.parquet",
                parquet_bytes(
                    pa.table({"a": [-1.0, None, -2.0, -1.0], "b": [-1.0] * 4, "c": [-1.0] * 4})
                ),
            ),
            G(d),
        ],
        r"null.parquet: column 'a': row 1 is missing a value",
    ),
    _c(
        "parquet-ragged-lists",
        lambda d: [
            write(
                d,
                "rag.parquet",
                parquet_bytes(
                    pa.table({"p": [[-1.0, -1.0, -1.0], [-1.0, -1.0], [-1.0] * 3, [-1.0] * 3]})
                ),
            ),
            G(d),
        ],
        r"rag.parquet: column 'p': row 1 has 2 values, but row 0 has 3",
    ),
    _c(
        "parquet-no-rows",
        lambda d: [
            write(d, "norows.parquet", parquet_bytes(pa.table({"a": pa.array([], pa.float64())}))),
            G(d),
        ],
        r"norows.parquet: has no rows",
    ),
    _c(
        "arrow-garbage",
        lambda d: [write(d, "junk.arrow", b"ARROW1\0\0" + os.urandom(40)), G(d)],
        r"junk.arrow: is not a readable Arrow/Feather file",
    ),
    _c(
        "feather-empty",
        lambda d: [write(d, "empty.feather", b""), G(d)],
        r"empty.feather: is empty",
    ),
    # --- paths
    _c("path-directory", lambda d: [str(d), G(d)], r": is a directory, not a file"),
    _c("path-missing", lambda d: [str(d / "missing.npy"), G(d)], r"missing.npy: no such file"),
    _c("path-symlink-loop", lambda d: [loop(d), G(d)], r"loop.npy: .*(symbolic links|loop)"),
    _c("path-dangling-link", lambda d: [dangling(d), G(d)], r"dangling.npy: no such file"),
    _c(
        "path-unknown-extension",
        lambda d: [write(d, "data.xyz", "1,2,3\n"), G(d)],
        r"data.xyz: unknown file type \(extension '.xyz'\)",
    ),
    _c(
        "path-no-extension",
        lambda d: [write(d, "data", "1,2,3\n"), G(d)],
        r"data: unknown file type \(no extension\)",
    ),
    # --- shapes
    _c(
        "shape-rows",
        lambda d: [G(d, "a.npy", rows=4), G(d, "b.npy", rows=5)],
        r"a.npy and .*b.npy: shapes do not match: input \(4, 3\), target \(5, 3\)",
    ),
    _c(
        "shape-columns",
        lambda d: [G(d, "a.npy", cols=3), G(d, "b.npy", cols=4)],
        r"shapes do not match",
    ),
    # --- options
    _c(
        "opt-reduction",
        lambda d: [G(d), G(d), "-r", "avg"],
        r"unknown reduction 'avg'; choose one of none, mean, batchmean, sum",
    ),
    _c(
        "opt-temperature-zero",
        lambda d: [G(d), G(d), "-T", "0"],
        r"--temperature must be a finite number > 0",
    ),
    _c(
        "opt-temperature-negative",
        lambda d: [G(d), G(d), "-T", "-2"],
        r"--temperature must be a finite number > 0",
    ),
    _c(
        "opt-temperature-nan",
        lambda d: [G(d), G(d), "-T", "nan"],
        r"--temperature must be a finite number > 0",
    ),
    _c(
        "opt-transform",
        lambda d: [G(d), G(d), "--input-transform", "sigmoid"],
        r"unknown transform 'sigmoid'",
    ),
    _c(
        "opt-unknown-column",
        lambda d: [
            write(d, "c.csv", "a,b\n-1,-1\n"),
            write(d, "t.csv", "a,b\n0.5,0.5\n"),
            "--input-columns",
            "zz",
        ],
        r"c.csv: no column matches 'zz'; columns are: a, b",
    ),
    _c(
        "opt-column-index",
        lambda d: [
            write(d, "c.csv", "a,b\n-1,-1\n"),
            write(d, "t.csv", "a,b\n0.5,0.5\n"),
            "--target-columns",
            "7",
        ],
        r"t.csv: column index 7 is out of range",
    ),
    _c("opt-both-stdin", lambda d: ["-", "-"], r"only one of INPUT and TARGET can be '-'"),
    _c(
        "opt-label-out-of-range",
        lambda d: [G(d), write(d, "labels.csv", "y\n0\n1\n5\n2\n"), "--target-labels"],
        r"labels.csv: row 2: label 5 is out of range for 3 classes",
    ),
    _c(
        "opt-label-negative",
        lambda d: [G(d), write(d, "labels.csv", "y\n0\n-1\n1\n2\n"), "--target-labels"],
        r"labels.csv: row 1: label -1 is out of range",
    ),
    _c(
        "opt-label-fraction",
        lambda d: [G(d), write(d, "labels.csv", "y\n0\n1.5\n1\n2\n"), "--target-labels"],
        r"labels.csv: row 1: label 1.5 is not an integer class index",
    ),
    _c("opt-top-zero", lambda d: [G(d), G(d), "--top", "0"], r"--top must be at least 1"),
    _c("opt-format", lambda d: [G(d), G(d), "-f", "yaml"], r"unknown output format 'yaml'"),
    _c(
        "opt-input-format", lambda d: [G(d), G(d), "--input-format", "xls"], r"unknown format 'xls'"
    ),
    _c(
        "opt-key-on-csv",
        lambda d: [write(d, "c.csv", "a\n-1\n"), G(d), "--input-key", "a"],
        r"a key selects an array in a .npz",
    ),
    _c(
        "opt-dim",
        lambda d: [G(d), G(d), "--input-transform", "softmax", "--dim", "5"],
        r"--dim 5 is out of range",
    ),
    _c(
        "opt-missing-policy",
        lambda d: [G(d), G(d), "--missing", "zero"],
        r"unknown missing-value policy 'zero'",
    ),
    _c("stdin-empty", lambda d: [G(d), "-"], r"<stdin>: is empty", stdin=b""),
    _c(
        "stdin-garbage-npy",
        lambda d: [G(d), "-"],
        r"<stdin>: is truncated",
        stdin=npy_bytes(np.ones((4, 3)))[:100],
    ),
    # --- outputs (checked before any work is done)
    _c(
        "output-directory",
        lambda d: [G(d), G(d), "-o", str(d)],
        r": is a directory; give a file name",
    ),
    _c(
        "output-extension",
        lambda d: [G(d), G(d), "-o", str(d / "out.xlsx")],
        r"out.xlsx: unknown output type",
    ),
    _c(
        "output-missing-folder",
        lambda d: [G(d), G(d), "-o", str(d / "nope" / "out.json")],
        r"out.json: folder .* does not exist",
    ),
]


def npz_empty(folder: Path) -> str:
    path = folder / "none.npz"
    with zipfile.ZipFile(path, "w"):
        pass
    return str(path)


def npz_pickled(folder: Path) -> str:
    path = folder / "obj.npz"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("x.npy", pickled_npy(folder))
    return str(path)


def loop(folder: Path) -> str:
    a, b = folder / "loop.npy", folder / "loop2.npy"
    os.symlink(b, a)
    os.symlink(a, b)
    return str(a)


def dangling(folder: Path) -> str:
    path = folder / "dangling.npy"
    os.symlink(folder / "gone.npy", path)
    return str(path)


def main(target: str) -> None:
    root = Path(target)
    for case in CASES:
        folder = root / case.name
        folder.mkdir(parents=True, exist_ok=True)
        args = case.build(folder)
        (folder / "ARGS").write_text(" ".join(args) + "\n")
    print(f"{len(CASES)} cases in {root}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "corpus")
