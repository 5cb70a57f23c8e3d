"""The format registry (kldiv_cli.io.formats): every format round-trips through every
command, the docs' table is the registry's, a new format is one module and one entry,
an unknown extension is one line, and a misnamed binary file is read as what it is."""

from __future__ import annotations

import json
import runpy
from pathlib import Path

import numpy as np
import pytest

from kldiv_cli.io import formats
from tests.format_files import WRITERS
from tests.helpers import invoke
from tests.toy_format import write_f64

ROOT = Path(__file__).resolve().parent.parent


def _log_probs(seed: int, rows: int = 12, classes: int = 5) -> np.ndarray:
    x = np.random.default_rng(seed).normal(size=(rows, classes)) * 2
    return x - np.log(np.exp(x).sum(axis=1, keepdims=True))


def _json(*args: object) -> dict:
    out = invoke(*args, "-f", "json")
    assert out.exit_code in (0, 1), out.stderr
    return json.loads(out.stdout)


_COMPUTE = ("-r", "batchmean", "--log-target")
_AS_LOG_PROBS = ("--reference-as", "log-probs", "--candidate-as", "log-probs")
#: What compute, compare and drift give the same numbers as .npy files, by their bytes
#: (every format but .kld writes the same numbers: one run serves them all).
_AS_NPY: dict[bytes, tuple[dict, dict, dict]] = {}


def _as_npy(tmp_path: Path, a: np.ndarray, b: np.ndarray) -> tuple[dict, dict, dict]:
    key = a.tobytes() + b.tobytes()
    if key not in _AS_NPY:
        ref_a, ref_b = tmp_path / "ref_a.npy", tmp_path / "ref_b.npy"
        np.save(ref_a, a)
        np.save(ref_b, b)
        _AS_NPY[key] = (
            _json("compute", ref_a, ref_b, *_COMPUTE),
            _json("compare", ref_a, ref_b, *_AS_LOG_PROBS),
            _json("drift", ref_a, ref_b),
        )
    return _AS_NPY[key]


def _round_trip(tmp_path: Path, name: str) -> None:
    """compute, compare, inspect and drift read the format's files as the same numbers
    in .npy give."""
    write = WRITERS[name] if name in WRITERS else write_f64
    ext = formats.get(name).extensions[0]
    a, b = tmp_path / f"a{ext}", tmp_path / f"b{ext}"
    computed, compared, drifted = _as_npy(
        tmp_path, write(a, _log_probs(1)), write(b, _log_probs(2))
    )
    # Tables sum column by column: the same number to the last bits or so.
    loss = _json("compute", a, b, *_COMPUTE)["loss"]
    assert loss == pytest.approx(computed["loss"], rel=1e-13)
    assert _json("compare", a, b, *_AS_LOG_PROBS)["kl"] == compared["kl"]
    shown = _json("inspect", a)
    assert shown["format"] == name and shown["shape"] == [12, 5]
    drift = _json("drift", a, b)
    assert _unnamed(drift) == _unnamed(drifted) and drift["n_columns"] == 5


def _unnamed(report: dict) -> list[dict]:
    """Drift's columns without their names (an array's are 0, 1, ...; a table's its own)."""
    return [{k: v for k, v in c.items() if k != "name"} for c in report["columns"]]


@pytest.mark.parametrize("name", formats.names())
def test_every_format_round_trips_through_every_command(tmp_path: Path, name: str) -> None:
    _round_trip(tmp_path, name)


def test_every_format_has_a_writer_and_its_functions() -> None:
    assert set(WRITERS) == set(formats.names())
    for f in formats.REGISTRY:
        assert callable(formats.opener(f.name))
        assert (formats.table_reader(f.name) is not None) == (f.kind == formats.TABLE)
        assert f.kind in formats.KINDS and all(e.startswith(".") for e in f.extensions)


@pytest.mark.parametrize("name", formats.names())
def test_each_format_is_sniffed_from_its_bytes(tmp_path: Path, name: str) -> None:
    path = tmp_path / f"x{formats.get(name).extensions[0]}"
    WRITERS[name](path, _log_probs(3))
    assert formats.sniff(path.read_bytes()) == name


def test_the_docs_table_is_the_registry() -> None:
    script = runpy.run_path(str(ROOT / "scripts" / "format_table.py"))
    page = (ROOT / "docs" / "inputs.md").read_text(encoding="utf-8")
    assert script["with_table"](page) == page, "run python scripts/format_table.py"
    for f in formats.REGISTRY:
        assert f"| `{f.name}` |" in page


def test_an_unknown_extension_is_one_line_naming_the_formats(tmp_path: Path) -> None:
    path = tmp_path / "data.xyz"
    path.write_text("a,b\n1,2\n")
    for command in ("compute", "inspect", "drift", "compare"):
        out = invoke(command, path) if command == "inspect" else invoke(command, path, path)
        assert out.exit_code == 2 and out.stdout == ""
        line = out.stderr.removeprefix("kldiv: error: ")
        assert out.stderr.count("\n") == 1 and line.startswith(f"{path}: unknown file type")
        assert formats.extensions_text() in line
    out = invoke("compute", path, path, "--input-format", "xls")
    assert out.exit_code == 2
    assert out.stderr == (
        f"kldiv: error: unknown format 'xls'; choose one of {', '.join(formats.names())}\n"
    )


@pytest.mark.parametrize("name,misnamed", [("npy", "x.csv"), ("parquet", "x.npy"), ("npz", "x")])
def test_a_misnamed_binary_file_is_read_as_its_bytes_say(
    tmp_path: Path, name: str, misnamed: str
) -> None:
    real = tmp_path / f"real{formats.get(name).extensions[0]}"
    WRITERS[name](real, _log_probs(4))
    wrong = tmp_path / misnamed
    wrong.write_bytes(real.read_bytes())
    assert _json("inspect", wrong)["format"] == name
    args = ("-r", "sum", "--log-target")
    assert _json("compute", wrong, real, *args)["loss"] == 0.0
    assert _json("drift", wrong, real)["n_drifted"] == 0


def test_a_text_file_is_never_guessed_from_its_bytes(tmp_path: Path) -> None:
    # A CSV whose header starts like Parquet's magic stays a CSV.
    path = tmp_path / "x.csv"
    path.write_text("PAR1,PAR2\n1,2\n3,4\n")
    assert _json("inspect", path)["format"] == "csv"


def test_a_new_format_is_one_module_and_one_entry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(formats, "REGISTRY", list(formats.REGISTRY))
    entry = formats.Format(
        "f64", (".f64",), formats.ARRAY, "tests.toy_format", "toy", magic=(b"F64ROWS\x00",)
    )
    formats.register(entry)
    assert formats.names().index("f64") < formats.names().index("csv")
    _round_trip(tmp_path, "f64")
    # Its magic bytes name it on stdin and under another name; its help lists it.
    a = tmp_path / "a.f64"
    assert formats.sniff(a.read_bytes()) == "f64"
    (tmp_path / "a.bin").write_bytes(a.read_bytes())
    assert _json("inspect", tmp_path / "a.bin")["format"] == "f64"
    assert "f64" in formats.names_text() and ".f64" in formats.extensions_text()
    with pytest.raises(ValueError, match="clashes"):
        formats.register(entry)


def test_the_architecture_diff_is_the_toy_format() -> None:
    """ARCHITECTURE.md's diff adding a format holds the module the test above registers."""
    doc = (ROOT / "ARCHITECTURE.md").read_text(encoding="utf-8")
    added = [line.strip()[1:] for line in doc.splitlines() if line.strip().startswith("+")]
    toy = (ROOT / "tests" / "toy_format.py").read_text(encoding="utf-8")
    body = toy[toy.index("MAGIC = ") : toy.index("\n\ndef write_f64")].splitlines()
    start = added.index(body[0])
    assert added[start : start + len(body)] == body
    entry = 'Format("f64", (".f64",), ARRAY, "f64", "float64 rows", magic=(b"F64ROWS\\x00",)),'
    assert entry in [line.strip() for line in added]


@pytest.mark.parametrize("command", ["compute", "inspect", "estimate", "gaussian", "topk"])
def test_the_help_lists_the_registry(command: str) -> None:
    out = invoke(command, "--help", environ={"COLUMNS": "300"})
    assert out.exit_code == 0
    text = " ".join(out.stdout.split())
    assert formats.names_text() in text
    assert formats.extensions_text([formats.KEYED]) in text
