"""kldiv compute / inspect end to end: formats, flags, outputs, exit codes."""

from __future__ import annotations

import errno
import io
import json
import math
import os
import warnings
from decimal import Decimal, localcontext
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.feather as feather
import pyarrow.parquet as pq
import pytest

from kldiv_cli import kl_div, log_softmax, softmax

from .conftest import SAMPLES, kldiv_subprocess
from .helpers import invoke


def api(x, t, reduction, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return kl_div(x, t, reduction, **kw)


def strict_json(text: str):
    def reject(token: str):
        raise AssertionError(f"invalid JSON token {token}")

    return json.loads(text, parse_constant=reject)


@pytest.mark.parametrize("reduction", ["sum", "mean", "batchmean"])
def test_npy_pair_matches_api(run_cli, pair, reduction) -> None:
    xp, tp, x, t = pair
    r = run_cli("compute", xp, tp, "-r", reduction, "-f", "json")
    assert r.exit_code == 0, r.stderr
    doc = strict_json(r.stdout)
    assert doc["loss"] == float(api(x, t, reduction))
    assert doc["reduction"] == reduction
    assert doc["input"]["shape"] == [6, 5] and doc["target"]["dtype"] == "float64"
    assert ("batchmean" in r.stderr) == (reduction == "mean")


def write_all_formats(tmp_path: Path, name: str, a: np.ndarray) -> list[Path]:
    cols = {f"p{j}": a[:, j] for j in range(a.shape[1])}
    paths = []
    np.save(p := tmp_path / f"{name}.npy", a)
    paths.append(p)
    np.savez(p := tmp_path / f"{name}.npz", only=a)
    paths.append(p)
    np.savetxt(p := tmp_path / f"{name}.csv", a, delimiter=",", header=",".join(cols), comments="")
    paths.append(p)
    np.savetxt(p := tmp_path / f"{name}.tsv", a, delimiter="\t")
    paths.append(p)
    pq.write_table(pa.table(cols), p := tmp_path / f"{name}.parquet")
    paths.append(p)
    feather.write_feather(pa.table(cols), p := tmp_path / f"{name}.feather")
    paths.append(p)
    return paths


def test_every_format_gives_the_same_number(run_cli, tmp_path, pair) -> None:
    _, _, x, t = pair
    expected = api(x, t, "batchmean")
    for xp in write_all_formats(tmp_path, "x", x):
        for tp in write_all_formats(tmp_path, "t", t)[:3]:
            r = run_cli("compute", xp, tp, "-r", "batchmean")
            assert r.exit_code == 0, (xp, tp, r.stderr)
            assert math.isclose(float(r.stdout), expected, rel_tol=1e-12), (xp, tp)


@pytest.mark.parametrize("suffix", [".npy", ".csv", ".parquet"])
def test_stdin_is_sniffed(tmp_path, pair, suffix) -> None:
    xp, _, x, t = pair
    target = write_all_formats(tmp_path, "t", t)
    data = next(p for p in target if p.suffix == suffix).read_bytes()
    out = invoke("compute", xp, "-", "-r", "sum", stdin=data)
    assert out.exit_code == 0, out.stderr
    assert math.isclose(float(out.stdout), api(x, t, "sum"), rel_tol=1e-12)
    if suffix == ".csv":  # and once through a real pipe, in a process of its own
        proc = kldiv_subprocess("compute", xp, "-", "-r", "sum", input=data)
        assert proc.returncode == 0, proc.stderr
        assert float(proc.stdout) == float(out.stdout)


#: Distillation's compute: student logits against teacher logits, T^2-scaled.
DISTILL = (
    "compute",
    "--input-transform",
    "log-softmax",
    "--target-transform",
    "softmax",
    "--t2-scale",
)


def test_transforms_temperature_and_t2(run_cli, tmp_path) -> None:
    rng = np.random.default_rng(5)
    s, te = rng.normal(size=(8, 6)), rng.normal(size=(8, 6))
    np.save(sp := tmp_path / "s.npy", s)
    np.save(tp := tmp_path / "t.npy", te)
    r = run_cli(
        *DISTILL,
        sp,
        tp,
        "-T",
        "2.5",
        "-r",
        "batchmean",
        "-f",
        "json",
    )
    assert r.exit_code == 0, r.stderr
    expected = (
        api(log_softmax(s, temperature=2.5), softmax(te, temperature=2.5), "batchmean") * 2.5**2
    )
    doc = strict_json(r.stdout)
    assert math.isclose(doc["loss"], expected, rel_tol=1e-12)
    assert doc["temperature"] == 2.5 and doc["t2_scale"] is True


def _exact_row_kl(s: np.ndarray, t: np.ndarray, temperature: float) -> list[Decimal]:
    """KL(softmax(t/T) || softmax(s/T)) of each row, with 40-digit decimals."""
    with localcontext() as ctx:
        ctx.prec = 40
        out = []
        for srow, trow in zip(s.tolist(), t.tolist()):
            zs = [Decimal(v) / Decimal(temperature) for v in srow]
            zt = [Decimal(v) / Decimal(temperature) for v in trow]
            ls = max(zs) + sum((z - max(zs)).exp() for z in zs).ln()
            lt = max(zt) + sum((z - max(zt)).exp() for z in zt).ln()
            out.append(sum((a - lt).exp() * ((a - lt) - (b - ls)) for a, b in zip(zt, zs)))
        return out


@pytest.mark.parametrize("reduction", ["per-row", "sum", "batchmean"])
def test_t2_scale_rounds_once(run_cli, tmp_path, reduction) -> None:
    """--t2-scale multiplies the float64 value, not the float32 loss: one rounding.
    Scaling the rounded float32 rows put 18 of 40 such rows more than half an ulp off."""
    rng = np.random.default_rng(9)
    s = (rng.normal(size=(12, 60)) * 2).astype(np.float32)
    t = (s + np.float32(1e-2) * rng.normal(size=s.shape)).astype(np.float32)
    np.save(sp := tmp_path / "s.npy", s)
    np.save(tp := tmp_path / "t.npy", t)
    T = 10.0
    exact = [v * Decimal(T * T) for v in _exact_row_kl(s, t, T)]
    options = ["--per-row", "-r", "sum"] if reduction == "per-row" else ["-r", reduction]
    r = run_cli(
        *DISTILL,
        sp,
        tp,
        "-T",
        T,
        *options,
        "-f",
        "json",
    )
    assert r.exit_code == 0, r.stderr
    doc = strict_json(r.stdout)
    if reduction == "per-row":
        got = [row["kl"] if isinstance(row, dict) else row for row in doc["per_row"]]
        want = exact
    else:
        got = [doc["loss"]]
        total = sum(exact)
        want = [total if reduction == "sum" else total / len(s)]
    for g, w in zip(got, want, strict=True):
        # Rounded once: the float32 nearest the exact value (ties aside, which these are not).
        assert np.float32(g) == np.float32(float(w)), (g, w)


def test_log_target(run_cli, pair) -> None:
    xp, tp, x, t = pair
    lt = tp.with_name("lt.npy")
    np.save(lt, np.log(t))
    r = run_cli("compute", xp, lt, "--log-target", "-r", "sum")
    assert math.isclose(float(r.stdout), api(x, np.log(t), "sum", log_target=True), rel_tol=1e-12)


def test_none_and_per_row_outputs(run_cli, pair, tmp_path) -> None:
    xp, tp, x, t = pair
    out = tmp_path / "none.npy"
    r = run_cli("compute", xp, tp, "-r", "none", "-o", out)
    assert r.exit_code == 0 and r.stdout == ""
    np.testing.assert_array_equal(np.load(out), api(x, t, "none"))
    r = run_cli("compute", xp, tp, "--per-row", "-r", "batchmean")
    rows = np.array([float(v) for v in r.stdout.split()])
    np.testing.assert_allclose(rows, api(x, t, "none").sum(axis=1), rtol=1e-12)
    r = run_cli("compute", xp, tp, "--per-row", "-o", tmp_path / "rows.parquet", "-r", "sum")
    table = pq.read_table(tmp_path / "rows.parquet")
    assert table.column_names == ["row", "kl"]
    np.testing.assert_allclose(table.column("kl").to_numpy(), rows, rtol=1e-12)
    r = run_cli("compute", xp, tp, "--top", "2", "-r", "sum", "-f", "json")
    doc = strict_json(r.stdout)
    assert [d["row"] for d in doc["top"]] == list(np.argsort(-rows)[:2])


def test_plain_top_keeps_the_loss_in_the_per_row_format(run_cli, tmp_path) -> None:
    rng = np.random.default_rng(4)
    np.save(xp := tmp_path / "x.npy", np.log(rng.dirichlet(np.ones(5), 8)).astype(np.float32))
    np.save(tp := tmp_path / "t.npy", rng.dirichlet(np.ones(5), 8).astype(np.float32))
    loss = run_cli("compute", xp, tp, "-r", "batchmean").stdout.strip()
    per_row = run_cli("compute", xp, tp, "-r", "batchmean", "--per-row").stdout.split()
    top = run_cli("compute", xp, tp, "-r", "batchmean", "--top", "3").stdout.splitlines()
    assert top[0] == loss
    order = np.argsort(-np.array([float(v) for v in per_row]), kind="stable")[:3]
    assert top[1:] == [f"{i},{per_row[i]}" for i in order]


@pytest.mark.parametrize("command", ["compute", "compare", "estimate", "inspect", "drift"])
def test_usage_line_names_arguments_without_braces(run_cli, command) -> None:
    usage = run_cli(command, "--help").stdout.splitlines()[0]
    assert usage.startswith(f"Usage: kldiv {command} [OPTIONS] ")
    assert "{" not in usage and "}" not in usage
    if command == "compute":
        assert usage.endswith("INPUT TARGET")


def test_dask_hint_names_the_source_install(run_cli, pair, monkeypatch) -> None:
    xp, tp, _, _ = pair
    monkeypatch.setitem(__import__("sys").modules, "distributed", None)  # import fails
    r = run_cli("compute", xp, tp, "--engine", "dask")
    assert r.exit_code == 2 and r.stderr.count("\n") == 1
    assert 'pip install "kldiv[dask]"' in r.stderr and 'pip install ".[dask]"' in r.stderr


def test_plain_none_prints_csv_rows(run_cli, pair) -> None:
    xp, tp, x, _ = pair
    r = run_cli("compute", xp, tp, "-r", "none", "-f", "plain")
    lines = r.stdout.splitlines()
    assert len(lines) == 6 and all(len(line.split(",")) == 5 for line in lines)


@pytest.mark.parametrize("fmt", ["csv", "markdown", "table", "json", "plain"])
def test_output_formats(run_cli, pair, fmt) -> None:
    xp, tp, x, t = pair
    r = run_cli("compute", xp, tp, "-r", "batchmean", "-f", fmt)
    assert r.exit_code == 0
    value = repr(float(api(x, t, "batchmean")))
    assert value in r.stdout
    if fmt == "csv":
        assert r.stdout.splitlines()[0].startswith("loss,reduction")
    if fmt == "markdown":
        assert "| loss |" in r.stdout


def test_json_is_valid_for_nan_and_inf(run_cli, tmp_path) -> None:
    np.save(x := tmp_path / "x.npy", np.array([[-np.inf, np.log(0.5)]]))
    np.save(t := tmp_path / "t.npy", np.array([[0.0, 1.0]]))
    r = run_cli("compute", x, t, "-r", "sum", "-f", "json")
    doc = strict_json(r.stdout)
    assert doc["loss"] == "NaN"
    assert "target 0" in r.stderr and "PyTorch gives nan there too" in r.stderr
    np.save(t, np.array([[0.5, 0.5]]))
    r = run_cli("compute", x, t, "-r", "none", "-f", "json")
    assert strict_json(r.stdout)["loss"][0][0] == "Infinity"


def test_gate(run_cli, pair, tmp_path) -> None:
    xp, tp, x, t = pair
    value = float(api(x, t, "batchmean"))
    assert (
        run_cli("compute", xp, tp, "-r", "batchmean", "--fail-above", value + 1e-9).exit_code == 0
    )
    r = run_cli("compute", xp, tp, "-r", "batchmean", "--fail-above", value / 2)
    assert r.exit_code == 1 and "check failed" in r.stderr and r.stdout.strip()
    rows = api(x, t, "none").sum(axis=1)
    r = run_cli("compute", xp, tp, "--per-row", "--fail-above", rows.max() - 1e-9, "-q")
    assert r.exit_code == 1 and "largest row" in r.stderr
    np.save(nan := tmp_path / "nan.npy", np.full((6, 5), np.nan))
    assert run_cli("compute", nan, tp, "-r", "sum", "--fail-above", "1e9", "-q").exit_code == 1


def test_quiet_keeps_stderr_empty(run_cli, pair) -> None:
    xp, tp, *_ = pair
    r = run_cli("compute", xp, tp, "-q")
    assert r.exit_code == 0 and r.stderr == ""


def test_diagnostics_and_strict(run_cli, tmp_path) -> None:
    np.save(x := tmp_path / "x.npy", np.array([[0.5, 0.5]]))
    np.save(t := tmp_path / "t.npy", np.array([[0.6, 0.6]]))
    r = run_cli("compute", x, t, "-r", "sum")
    assert r.exit_code == 0
    assert "--input-transform log" in r.stderr and "do not sum to 1" in r.stderr
    r = run_cli("compute", x, t, "-r", "sum", "--strict")
    assert r.exit_code == 2 and r.stdout == "" and "kldiv: error: --strict" in r.stderr


def test_columns_and_globs_from_one_file(run_cli, tmp_path) -> None:
    rng = np.random.default_rng(2)
    s, te = np.log(rng.dirichlet(np.ones(3), 5)), rng.dirichlet(np.ones(3), 5)
    table = {"id": [f"r{i}" for i in range(5)]}
    table.update({f"s_{j}": s[:, j] for j in range(3)})
    table.update({f"t_{j}": te[:, j] for j in range(3)})
    pq.write_table(pa.table(table), both := tmp_path / "both.parquet")
    r = run_cli(
        "compute", both, both, "--input-columns", "s_*", "--target-columns", "4,5,6", "-r", "sum"
    )
    assert r.exit_code == 0, r.stderr
    assert math.isclose(float(r.stdout), api(s, te, "sum"), rel_tol=1e-12)
    r = run_cli("compute", both, both, "--input-columns", "nope", "-r", "sum")
    assert r.exit_code == 2 and "no column matches 'nope'" in r.stderr


def test_list_column(run_cli, tmp_path) -> None:
    rng = np.random.default_rng(4)
    t = rng.dirichlet(np.ones(4), 3)
    pq.write_table(pa.table({"p": list(t)}), lp := tmp_path / "lists.parquet")
    np.save(xp := tmp_path / "x.npy", np.log(t))
    r = run_cli("compute", xp, lp, "-r", "sum")
    assert r.exit_code == 0 and abs(float(r.stdout)) < 1e-12
    pq.write_table(
        pa.table({"p": [[0.5, 0.5], [1.0], [0.2, 0.8]]}), rag := tmp_path / "rag.parquet"
    )
    r = run_cli("compute", xp, rag, "-r", "sum")
    assert r.exit_code == 2 and "row 1 has 1 values" in r.stderr


def test_target_labels(run_cli, tmp_path) -> None:
    x = np.log(np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]]))
    np.save(xp := tmp_path / "x.npy", x)
    (lp := tmp_path / "labels.csv").write_text("label\n0\n2\n")
    r = run_cli("compute", xp, lp, "--target-labels", "-r", "batchmean")
    assert math.isclose(float(r.stdout), -(x[0, 0] + x[1, 2]) / 2, rel_tol=1e-12)
    lp.write_text("label\n0\n3\n")
    r = run_cli("compute", xp, lp, "--target-labels", "-r", "batchmean")
    assert r.exit_code == 2 and "row 1: label 3 is out of range for 3 classes" in r.stderr


def test_inspect(run_cli) -> None:
    r = run_cli("inspect", SAMPLES / "teacher_logits.npy", "-f", "json")
    doc = strict_json(r.stdout)
    assert doc["looks_like"].startswith("logits") and doc["shape"] == [64, 10]
    r = run_cli("inspect", SAMPLES / "observed.csv", "-f", "json")
    assert strict_json(r.stdout)["looks_like"].startswith("probabilities")
    r = run_cli("inspect", SAMPLES / "labels.csv", "-f", "json")
    assert strict_json(r.stdout)["looks_like"].startswith("integer labels")


def test_help_says_the_argument_order(run_cli) -> None:
    r = run_cli("compute", "--help")
    assert "KL(TARGET || INPUT)" in r.stdout and "torch" in r.stdout


@pytest.mark.parametrize(
    ("args", "heavy"),
    [
        (["--version"], ("numpy", "pyarrow", "rich.console", "typer")),
        (["--help"], ("numpy", "pyarrow", "rich.console")),
        (["compute", "--help"], ("numpy", "pyarrow", "rich.console")),
        (
            ["compute", f"{SAMPLES}/student_logits.npy", f"{SAMPLES}/teacher_logits.npy", "-q"],
            # Only the command run is loaded (cli.app.COMMANDS), no optional extra, and no
            # module a local .npy never needs: start-up is mostly compiling modules.
            (
                *("pyarrow", "rich.console", "concurrent.futures", "json", "pandas", "scipy"),
                *("torch", "distributed", "kldiv_cli.cli.drift", "kldiv_cli.cli.compare"),
                *("kldiv_cli.io.fs", "kldiv_cli.io.roles", "kldiv_cli.engines.dask"),
                # Top-K and table modules, and the read-ahead thread of a one-block job.
                *("kldiv_cli.core.topk", "kldiv_cli.io.columns", "kldiv_cli.io.typed", "queue"),
                *("kldiv_cli.core.softmaxkl", "kldiv_cli.core.transforms"),
            ),
        ),
        (
            ["compute", f"{SAMPLES}/student_logits.parquet", f"{SAMPLES}/teacher_logits.parquet"],
            ("pyarrow.compute", "pyarrow.dataset", "rich.console", "pandas"),
        ),
        (
            ["compute", f"{SAMPLES}/predicted.csv", f"{SAMPLES}/observed.csv", "-q"],
            (
                *("pyarrow.compute", "pyarrow.dataset", "rich.console", "pandas", "scipy"),
                *("torch", "kldiv_cli.io.csv_parts", "kldiv_cli.core.transforms"),
            ),
        ),
        (
            [
                "compute",
                f"{SAMPLES}/student_logits.npy",
                f"{SAMPLES}/labels.csv",
                "-q",
                "--target-labels",
            ],
            ("pyarrow.compute", "rich.console", "pandas"),
        ),
    ],
)
def test_light_commands_do_not_import_heavy_modules(args, heavy) -> None:
    """Start-up must not depend on what else is installed: pyarrow's ``to_numpy`` and
    ``pyarrow.dataset`` import pandas when it is there (it is, in the test venv)."""
    import subprocess
    import sys

    code = (
        "import sys; from kldiv_cli import main\n"
        f"try:\n    main({args!r})\nexcept SystemExit:\n    pass\n"
        f"loaded = [m for m in {heavy!r} if m in sys.modules]\n"
        "assert not loaded, loaded"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    if args == ["--version"]:
        assert proc.stdout.strip() == __import__("kldiv_cli").__version__
    elif args[0] == "compute" and "--help" not in args:
        float(proc.stdout.strip())
    else:
        assert "KL(TARGET || INPUT)" in proc.stdout or "kldiv" in proc.stdout


def test_redirected_output_is_plain(pair, tmp_path) -> None:
    xp, tp, x, t = pair
    with open(tmp_path / "out.txt", "wb") as f:
        proc = kldiv_subprocess("compute", xp, tp, "-r", "sum", stdout=f, stderr=None)
    del proc
    assert float((tmp_path / "out.txt").read_text()) == float(api(x, t, "sum"))


class _FullStdout(io.StringIO):
    """A stdout on a full disk."""

    def write(self, text: str) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


#: One run of every command that reads data, on the sample files.
EVERY_COMMAND = [
    ("compute", SAMPLES / "student_logits.npy", SAMPLES / "teacher_logits.npy"),
    ("inspect", SAMPLES / "teacher_logits.npy"),
    ("compare", SAMPLES / "compare" / "base_logits.npy", SAMPLES / "compare" / "quant_logits.npy"),
    ("estimate", SAMPLES / "rl" / "logp.npy", SAMPLES / "rl" / "ref_logp.npy"),
    ("gaussian", SAMPLES / "vae" / "mu.npy", SAMPLES / "vae" / "logvar.npy"),
]


@pytest.mark.parametrize("args", EVERY_COMMAND, ids=lambda a: a[0])
def test_every_command_names_stdout_when_it_fails(args) -> None:
    from kldiv_cli.cli.app import run
    from kldiv_cli.cli.boundary import Environment

    err = io.StringIO()
    env = Environment(_FullStdout(), err, None, stdout_isatty=False, stderr_isatty=False)
    code = run([str(a) for a in args] + ["-q"], env)
    assert (code, err.getvalue()) == (2, "kldiv: error: stdout: no space left on device\n")


@pytest.mark.parametrize("args", EVERY_COMMAND, ids=lambda a: a[0])
def test_storage_options_last_one_run(run_cli, args) -> None:
    """Every command that reads takes --storage-option; the next run in the same process
    starts without the previous run's settings."""
    from kldiv_cli.io import fs

    r = run_cli(*args, "--storage-option", "region=eu-west-1", "-q")
    assert r.exit_code == 0, r.stderr
    assert fs.current_options() == {"region": "eu-west-1"}
    r = run_cli(*args, "-q")
    assert r.exit_code == 0, r.stderr
    assert fs.current_options() == {}


def test_every_command_is_in_the_table_that_loads_it() -> None:
    """cli.app.COMMANDS names each command's module: a command left out of it would
    never be loaded, one with the wrong module would load another."""
    import importlib
    import pkgutil

    import kldiv_cli.cli as cli
    from kldiv_cli.cli.app import COMMANDS, app

    for module in pkgutil.iter_modules(cli.__path__):
        importlib.import_module(f"kldiv_cli.cli.{module.name}")
    found = {
        info.name or info.callback.__name__.replace("_", "-"): info.callback.__module__
        for info in app.registered_commands
        if info.callback is not None
    }
    assert found == {name: f"kldiv_cli.cli.{module}" for name, module in COMMANDS.items()}
