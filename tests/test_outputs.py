"""Output files never lose data; rendered names never control a terminal."""

from __future__ import annotations

import csv
import errno
import io
import os
import signal
import stat
from pathlib import Path

import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kldiv_cli.errors import OutputError, UsageError
from kldiv_cli.io import writers
from kldiv_cli.io.writers import atomic_write, check_outputs, guard, output_kind, write_all
from kldiv_cli.render import Report, print_report, render_text

OLD = b"the previous result\n"


def files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


@pytest.fixture()
def old(tmp_path: Path) -> Path:
    path = tmp_path / "out.json"
    path.write_bytes(OLD)
    return path


# --- check_outputs: refused before any work ------------------------------------------


def test_an_output_that_is_an_input_is_refused(tmp_path: Path) -> None:
    data = tmp_path / "x.npy"
    data.write_bytes(b"input")
    (tmp_path / "link.npy").symlink_to(data)
    os.link(data, tmp_path / "hard.npy")
    sub = tmp_path / "sub"
    sub.mkdir()
    for output in [
        data,
        tmp_path / "link.npy",
        tmp_path / "hard.npy",
        sub / ".." / "x.npy",
        f"{tmp_path}//./x.npy",
    ]:
        with pytest.raises(OutputError, match="is also an input of this command"):
            check_outputs([str(output)], ["-", str(data)])
    with pytest.raises(OutputError, match="is also an input"):
        check_outputs([str(data)], [str(tmp_path / "link.npy")])
    assert data.read_bytes() == b"input"


def test_stdin_redirected_from_the_output_is_refused(tmp_path: Path) -> None:
    data = tmp_path / "t.npy"
    data.write_bytes(b"target")
    saved = os.dup(0)
    try:
        with open(data, "rb") as f:
            os.dup2(f.fileno(), 0)
        with pytest.raises(OutputError, match=r"t.npy: is also an input of this command \(stdin\)"):
            check_outputs([str(data)], ["x.npy", "-"])
        check_outputs([str(tmp_path / "other.npy")], ["-"])
    finally:
        os.dup2(saved, 0)
        os.close(saved)
    assert data.read_bytes() == b"target"


def test_two_outputs_that_are_one_file_are_refused(tmp_path: Path) -> None:
    a = tmp_path / "a.xml"
    (tmp_path / "to-a.xml").symlink_to(a)  # dangling until a is written
    for pair in [(a, a), (a, tmp_path / "to-a.xml"), (a, tmp_path / "." / "a.xml")]:
        with pytest.raises(OutputError, match="is named as two outputs"):
            check_outputs([str(p) for p in pair], [])
    a.write_text("old")
    os.link(a, tmp_path / "b.xml")
    with pytest.raises(OutputError, match="is named as two outputs"):
        check_outputs([str(a), None, "-", str(tmp_path / "b.xml")], [])
    check_outputs([str(a), str(tmp_path / "c.xml"), None, "-", "-"], [str(tmp_path / "gone")])


def test_destinations_are_checked(tmp_path: Path) -> None:
    with pytest.raises(OutputError, match="is a directory"):
        check_outputs([str(tmp_path)], [])
    with pytest.raises(OutputError, match="folder .* does not exist"):
        check_outputs([str(tmp_path / "no" / "out.json")], [])
    with pytest.raises(
        OutputError, match=r"the file name is too long \(256 bytes; the limit is 255\)"
    ):
        check_outputs([str(tmp_path / ("n" * 251 + ".json"))], [])
    with pytest.raises(OutputError) as info:
        check_outputs([str(tmp_path / "a\x1b[2J\n" / "o.json")], [])
    assert "\x1b" not in str(info.value) and "\n" not in str(info.value)


def test_output_kind_takes_the_kinds_a_command_writes(tmp_path: Path) -> None:
    assert output_kind(str(tmp_path / "p.JSON"), allowed=("json",)) == "json"
    assert output_kind("-", allowed=("json",)) == "stdout"
    with pytest.raises(UsageError, match=r"p.npy: --output writes .json, not .npy"):
        output_kind(str(tmp_path / "p.npy"), allowed=("json",))
    with pytest.raises(UsageError, match=r"--out writes .csv, .json, not .parquet"):
        output_kind(str(tmp_path / "p.parquet"), allowed=("json", "csv"), option="--out")
    with pytest.raises(OutputError, match="unknown output type; name it .json"):
        output_kind(str(tmp_path / "p.xlsx"), allowed=("json",))


def test_guard_types_the_first_output_then_checks_them_all(tmp_path: Path) -> None:
    data = tmp_path / "x.npy"
    data.write_bytes(b"")
    guard([None], [str(data)])
    guard(["-", str(tmp_path / "r.xml")], [str(data)], allowed=("json",))
    guard([str(tmp_path / "r.json"), str(tmp_path / "r.xml")], [str(data)], ("json", "csv"))
    with pytest.raises(UsageError, match=r"r.npy: --profile writes .json, not .npy"):
        guard([str(tmp_path / "r.npy")], [], allowed=("json",), option="--profile")
    with pytest.raises(OutputError, match="unknown output type"):
        guard([str(tmp_path / "r.xlsx")], [])
    # The other outputs are not typed here, but they may not be an input or each other.
    with pytest.raises(OutputError, match="is also an input"):
        guard([None, str(data)], [str(data)], allowed=("json",))
    with pytest.raises(OutputError, match="named as two outputs"):
        guard([str(tmp_path / "o.json"), str(tmp_path / "o.json")], [])
    # The kind is checked before the inputs: a wrong -o is a UsageError even over an input.
    with pytest.raises(UsageError):
        guard([str(data)], [str(data)], allowed=("json",))


# --- atomic_write / write_all ------------------------------------------------------------


@pytest.mark.parametrize("mode", [0o600, 0o640, 0o604])
def test_the_mode_of_a_replaced_file_is_kept(old: Path, mode: int) -> None:
    old.chmod(mode)
    atomic_write(str(old), lambda f: f.write(b"new"))
    assert old.read_bytes() == b"new"
    assert stat.S_IMODE(old.stat().st_mode) == mode
    assert files(old.parent) == ["out.json"]


def test_a_new_file_gets_the_umask_mode(tmp_path: Path) -> None:
    umask = os.umask(0o027)
    try:
        atomic_write(str(tmp_path / "new.json"), lambda f: f.write(b"x"))
    finally:
        os.umask(umask)
    assert stat.S_IMODE((tmp_path / "new.json").stat().st_mode) == 0o640


def test_a_255_byte_name_is_written(tmp_path: Path) -> None:
    for name in ["n" * 250 + ".json", "é" * 125 + "a.csv"]:
        assert len(name.encode()) == 255
        path = tmp_path / name
        path.write_bytes(OLD)
        check_outputs([str(path)], [])
        atomic_write(str(path), lambda f: f.write(b"new"))
        assert path.read_bytes() == b"new"
        path.unlink()
    assert files(tmp_path) == []


def test_a_symlinked_output_replaces_its_target(tmp_path: Path) -> None:
    real = tmp_path / "real.json"
    real.write_bytes(OLD)
    (tmp_path / "link.json").symlink_to(real)
    atomic_write(str(tmp_path / "link.json"), lambda f: f.write(b"new"))
    assert (tmp_path / "link.json").is_symlink()
    assert real.read_bytes() == b"new"


def test_all_outputs_or_none(tmp_path: Path) -> None:
    junit, html = tmp_path / "j.xml", tmp_path / "h.html"
    junit.write_bytes(OLD)
    html.write_bytes(OLD)

    def fails(f) -> None:
        f.write(b"half a page")
        raise ValueError("the page could not be made")

    with pytest.raises(ValueError):
        write_all([(str(junit), lambda f: f.write(b"new junit")), (str(html), fails)])
    assert junit.read_bytes() == OLD and html.read_bytes() == OLD
    assert files(tmp_path) == ["h.html", "j.xml"]
    assert write_all([(str(junit), lambda f: f.write(b"J")), (str(html), lambda f: 7)]) == [1, 7]
    assert junit.read_bytes() == b"J" and html.read_bytes() == b""


class Full(io.FileIO):
    """A file on a disk that fills up after ``room`` bytes."""

    room = 10

    def write(self, data) -> int:  # type: ignore[override]
        if self.tell() + len(data) > self.room:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return super().write(data)


def test_a_full_disk_is_one_clean_line(old: Path, monkeypatch) -> None:
    monkeypatch.setattr(writers.os, "fdopen", lambda fd, mode: Full(fd, "wb"))
    with pytest.raises(OutputError) as info:
        atomic_write(str(old), lambda f: f.write(b"x" * 100))
    assert str(info.value) == f"{old}: cannot write (no space left on device); nothing was replaced"
    assert old.read_bytes() == OLD
    assert files(old.parent) == ["out.json"]


@pytest.mark.parametrize(
    ("where", "code", "text"),
    [
        ("replace", errno.EACCES, "permission denied"),
        ("fsync", errno.EIO, "input/output error"),
        ("mkstemp", errno.EROFS, "read-only file system"),
        ("fsync", errno.EDQUOT, "disk quota exceeded"),
    ],
)
def test_os_errors_while_writing(old: Path, monkeypatch, where: str, code: int, text: str) -> None:
    def refuse(*args, **kwargs):
        raise OSError(code, os.strerror(code))

    module = writers.tempfile if where == "mkstemp" else writers.os
    monkeypatch.setattr(module, where, refuse)
    with pytest.raises(OutputError, match=f"out.json: cannot write \\({text}\\)"):
        atomic_write(str(old), lambda f: f.write(b"new"))
    assert old.read_bytes() == OLD
    assert files(old.parent) == ["out.json"]


def test_an_error_about_another_file_is_not_an_output_error(old: Path) -> None:
    def reads_an_input(f) -> None:
        open(old.parent / "missing-input.npy", "rb")

    with pytest.raises(FileNotFoundError):
        atomic_write(str(old), reads_an_input)
    assert files(old.parent) == ["out.json"]


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="no /dev/full")
def test_dev_full_is_written_in_place_and_fails_cleanly() -> None:
    with pytest.raises(OutputError, match=r"^/dev/full: cannot write \(no space left on device\)"):
        atomic_write("/dev/full", lambda f: f.write(b"x" * 10000))
    assert stat.S_ISCHR(os.stat("/dev/full").st_mode)
    atomic_write(os.devnull, lambda f: f.write(b"x"))
    assert stat.S_ISCHR(os.stat(os.devnull).st_mode)


def test_ctrl_c_while_writing_removes_the_temp(old: Path) -> None:
    def interrupted(f) -> None:
        f.write(b"partial")
        os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(KeyboardInterrupt):
        atomic_write(str(old), interrupted)
    assert old.read_bytes() == OLD
    assert files(old.parent) == ["out.json"]


def test_signal_handlers_only_while_a_temp_exists(old: Path) -> None:
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    seen = {}

    def look(f) -> None:
        seen.update({s: signal.getsignal(s) for s in before})
        assert len(writers._live) == 1

    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        atomic_write(str(old), look)
        assert seen[signal.SIGTERM] is writers._on_signal
        assert seen[signal.SIGINT] is writers._on_signal
        assert seen[signal.SIGHUP] is signal.SIG_IGN  # nohup stays nohup
        assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGHUP, before[signal.SIGHUP])
    assert {s: signal.getsignal(s) for s in before} == before
    assert writers._live == set()


# --- rendering hostile names ---------------------------------------------------------

HOSTILE = ["[/]", "[link=https://evil.example]x", "\x1b]0;title\x07", "a\nb", 'c,"d', "|p|"]


def hostile_report() -> Report:
    table = {name: [name, 1.5] for name in HOSTILE}
    return Report(
        title="\x1b[2Jtitle [bold]",
        document={"columns": HOSTILE},
        table=table,
        plain=[f"{n}: 1" for n in HOSTILE],
        notes=["note \x1b[31m[/]"],
    )


@pytest.mark.parametrize("fmt", ["table", "plain", "csv", "markdown", "json"])
@pytest.mark.parametrize("color", [None, True, False])
def test_hostile_names_render_inert(fmt: str, color: bool | None) -> None:
    out = io.StringIO()
    print_report(hostile_report(), fmt, out, color)
    text = out.getvalue()
    if color is not True or fmt != "table":
        assert not any(ord(c) < 0x20 and c not in "\n" for c in text), repr(text)
    assert "\x1b]" not in text and "\x1b[2J" not in text
    assert "\\x1b" in text or fmt == "json"
    if fmt == "table":
        assert "[link=https://evil.example]x" in text and "[/]" in text


def test_csv_quoting_stays_correct() -> None:
    rows = list(csv.reader(io.StringIO(render_text(hostile_report(), "csv"))))
    assert rows[0] == [
        "[/]",
        "[link=https://evil.example]x",
        "\\x1b]0;title\\x07",
        "a\\nb",
        'c,"d',
        "|p|",
    ]
    assert len(rows) == 3 and all(len(r) == len(HOSTILE) for r in rows)


def test_markdown_cells_stay_in_their_column() -> None:
    lines = render_text(hostile_report(), "markdown").splitlines()
    header = [line for line in lines if line.startswith("| ")][0]
    assert header.replace("\\|", "").count("|") == len(HOSTILE) + 1
    assert lines[0] == "### \\\\x1b\\[2Jtitle \\[bold\\]"


def test_a_member_of_a_dataset_input_is_an_input(tmp_path: Path) -> None:
    """A folder or glob given as an input protects each of its files."""
    (tmp_path / "ds").mkdir()
    part = tmp_path / "ds" / "p0.parquet"
    part.write_bytes(b"PAR1")
    for named in (str(tmp_path / "ds"), str(tmp_path / "ds" / "*.parquet")):
        with pytest.raises(OutputError, match="is also an input"):
            check_outputs([str(part)], [named])
    check_outputs([str(tmp_path / "out.parquet")], [str(tmp_path / "ds")])


# --- streamed blocks and whole reports give the same bytes ----------------------------


def _pointwise_report(values: np.ndarray) -> Report:
    flat = values.reshape(-1, 1) if values.ndim <= 1 else values.reshape(-1, values.shape[-1])
    table = {f"c{j}": flat[:, j] for j in range(flat.shape[1])}
    return Report("loss", {}, table, [], array=values)


@settings(max_examples=40, deadline=None)
@given(
    values=hnp.arrays(
        st.sampled_from([np.float16, np.float32, np.float64]),
        hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=5),
        elements={"allow_subnormal": True},
    ),
    rows=st.integers(1, 4),
)
def test_block_writer_csv_and_npy_match_the_whole_report(values: np.ndarray, rows: int) -> None:
    """BlockWriter (io, streamed -r none) and report_writer (render, whole arrays) write
    the same .csv and .npy bytes, NaN, infinities and float16 included."""
    from kldiv_cli.render.files import report_writer

    for kind in ("csv", "npy"):
        streamed = io.BytesIO()
        sink = writers.BlockWriter(kind, streamed)
        for start in range(0, len(values), rows):
            sink.write(values[start : start + rows], values.shape)
        sink.close()
        whole = io.BytesIO()
        report_writer(kind, _pointwise_report(values))(whole)
        assert streamed.getvalue() == whole.getvalue(), kind


def test_io_does_not_import_render() -> None:
    """io sits below render: output files take bytes or a writer, never a Report."""
    import ast

    root = Path(writers.__file__).parent
    for module in root.glob("*.py"):
        for node in ast.walk(ast.parse(module.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                name = node.module.removeprefix("kldiv_cli.")
                assert not name.startswith(("render", "jobs", "cli")), module.name


# --- streams as outputs, held stdout, names in messages ------------------------------


def _pair(folder: Path) -> tuple[str, str]:
    rng = np.random.default_rng(0)
    np.save(x := folder / "x.npy", np.log(rng.dirichlet(np.ones(4), 6)))
    np.save(t := folder / "t.npy", rng.dirichlet(np.ones(4), 6))
    return str(x), str(t)


def test_streams_are_outputs_of_the_kind_format_names(tmp_path: Path) -> None:
    """/dev/null, /dev/stdout and /dev/fd/N have no extension: their kind is --format's
    (or the command's first kind), they are written in place and never refused as the
    same file twice."""
    assert output_kind("/dev/null") == "json"
    assert output_kind("/dev/stdout", fmt="csv") == "csv"
    assert output_kind("/dev/stderr", ("json", "csv"), fmt="markdown") == "json"
    assert output_kind("/dev/null", ("csv",)) == "csv"
    os.mkfifo(fifo := tmp_path / "rows.csv")
    assert output_kind(str(fifo)) == "csv"  # a FIFO named by its kind, --format auto
    assert output_kind(str(fifo), fmt="json") == "json"
    fifo.unlink()
    check_outputs(["/dev/null", "/dev/null"], ["/dev/null"])
    with pytest.raises(OutputError, match=r"^/dev/fd/987: descriptor 987 is not open$"):
        output_kind("/dev/fd/987")
    from .helpers import invoke

    x, t = _pair(tmp_path)
    out = invoke("compute", x, t, "-r", "sum", "-o", "/dev/null", "-q")
    assert (out.exit_code, out.stdout, out.stderr) == (0, "", "")
    read, write = os.pipe()
    try:
        out = invoke("compute", x, t, "-r", "sum", "-o", f"/dev/fd/{write}", "-f", "csv", "-q")
        os.close(write)
        with os.fdopen(read, "rb") as f:
            assert f.read().decode().startswith("loss,reduction,")
    finally:
        for fd in (read, write):
            try:
                os.close(fd)
            except OSError:
                pass
    assert (out.exit_code, out.stdout, out.stderr) == (0, "", "")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.npy", "x.npy"]


def test_a_dash_is_stdout_for_every_output(tmp_path: Path, monkeypatch, capfd) -> None:
    """``drift --junit -`` writes the XML to stdout (it wrote a file named '-')."""
    from xml.etree import ElementTree as ET

    from .helpers import invoke

    monkeypatch.chdir(tmp_path)
    for name in ("ref.csv", "cur.csv"):
        Path(name).write_text("a,b\n" + "".join(f"{i % 7},{i % 3}\n" for i in range(40)))
    out = invoke("drift", "ref.csv", "cur.csv", "--junit", "-", "-o", "/dev/null", "-q")
    assert (out.exit_code, out.stderr) == (0, "")
    assert ET.fromstring(capfd.readouterr().out).tag == "testsuites"
    assert sorted(os.listdir(tmp_path)) == ["cur.csv", "ref.csv"]


def test_an_output_nobody_can_create_names_the_output(tmp_path: Path) -> None:
    """A folder where the temporary file cannot be made (/proc refuses new files even to
    root): the message names the output, never .NAME.XXXXXXXX.tmp."""
    from .helpers import invoke

    x, t = _pair(tmp_path)
    out = invoke("compute", x, t, "-r", "sum", "-o", "/proc/kldiv-out.json", "-q")
    assert out.exit_code == 2
    assert (
        out.stderr.startswith("kldiv: error: /proc/kldiv-out.json: ") and ".tmp" not in out.stderr
    )
    assert len(out.stderr.splitlines()) == 1 and out.stdout == ""


def test_a_failed_command_leaves_nothing_on_stdout() -> None:
    """A command's stdout is held until it ends: written when it returns or exits with
    its own code (a failed check), dropped when it fails."""
    import typer

    from kldiv_cli.cli.boundary import Environment, current, error_boundary, restore, use
    from kldiv_cli.errors import InputError

    @error_boundary
    def command(outcome: str, quiet: bool = False, debug: bool = False) -> None:
        current().stdout.write("half a report\n")
        if outcome == "error":
            raise InputError("x.csv", "damaged at line 9")
        if outcome == "check":
            raise typer.Exit(1)

    for outcome, code, stdout in [
        ("ok", None, "half a report\n"),
        ("check", 1, "half a report\n"),
        ("error", 2, ""),
    ]:
        out, err = io.StringIO(), io.StringIO()
        token = use(Environment(out, err, None, stdout_isatty=False, stderr_isatty=False))
        try:
            command(outcome)
            got = None
        except typer.Exit as exc:
            got = exc.exit_code
        finally:
            restore(token)
        assert (got, out.getvalue()) == (code, stdout)
        assert err.getvalue() == ("kldiv: error: x.csv: damaged at line 9\n" if code == 2 else "")


def test_a_verdict_follows_the_output_it_judges() -> None:
    """A failed check writes the held output before its verdict: when stdout cannot take
    it (closed, >&-), the one line is that error, exit 2, with no verdict beside it."""
    import typer

    from kldiv_cli.cli.boundary import (
        ClosedStream,
        Environment,
        current,
        error_boundary,
        restore,
        use,
    )

    @error_boundary
    def command(quiet: bool = False, debug: bool = False) -> None:
        current().stdout.write("drift 0.3 age\n")
        current().check_failed("drift in 1 of 1 columns")
        raise typer.Exit(1)

    err = io.StringIO()
    closed = ClosedStream("stdout")
    token = use(Environment(closed, err, None, stdout_isatty=False, stderr_isatty=False))
    try:
        with pytest.raises(typer.Exit) as exited:
            command()
    finally:
        restore(token)
    assert exited.value.exit_code == 2
    assert err.getvalue() == "kldiv: error: stdout: is closed; give -o FILE, or leave stdout open\n"
