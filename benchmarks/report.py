"""The README's performance table, from one benchmark run on this machine.

    python benchmarks/report.py            # run every benchmark, print the section
    python benchmarks/report.py --write    # ... and put it in README.md between the markers
    python benchmarks/report.py --quick    # small data and few repeats: a check, not numbers

Runs the side-by-side scripts of this folder in one go (core, transforms, compare,
Parquet and CSV end to end, start-up) and writes their ratios as a Markdown table, with
what they depend on: the CPU (model, cores, the instruction sets kldiv's kernel uses),
the library versions, kldiv's version, commit and kernel, and the machine's load before
and after. The README's section between ``<!-- perf:begin -->`` and
``<!-- perf:end -->`` is this script's output, never edited by hand; run it on a quiet
machine (the peers need ``pip install torch polars duckdb``), with the compiled kernel
built (``pip install .``, or ``python hatch_build.py`` in a checkout): the machine line
says which kernel ran.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
README = HERE.parent / "README.md"
BEGIN, END = "<!-- perf:begin -->", "<!-- perf:end -->"
HEADER = "| measure (script) | result here | target | depends on the instruction set |"
#: The CPU flags that decide which kernel path runs.
FLAGS = ("avx2", "fma", "avx512f")


@dataclass
class Row:
    measure: str
    result: str
    target: str
    #: Whether the number changes with the instruction set (the compiled kernel's path).
    isa: bool

    def line(self) -> str:
        cells = (self.measure, self.result, self.target, "yes" if self.isa else "no")
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"


def _cpu() -> tuple[str, set[str]]:
    """The CPU's model name and flags (Linux), else what ``platform`` knows."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or platform.machine(), set()
    fields = dict(re.findall(r"^(model name|cpu family|model|flags)\s*:\s*(.*)$", text, re.M))
    name = fields.get("model name", platform.machine()).strip()
    if "cpu family" in fields and "model" in fields:
        name += f" (family {fields['cpu family']}, model {fields['model']})"
    return name, set(fields.get("flags", "").split())


def _version(module: str) -> str | None:
    try:
        return str(__import__(module).__version__)
    except ImportError:
        return None


def _commit() -> str:
    done = subprocess.run(
        ["git", "-C", str(HERE), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    )
    return done.stdout.strip() or "unknown"


def _kldiv_verbose() -> str:
    """``kldiv --version --verbose`` on one line (the kernel in use), or the version."""
    done = subprocess.run(
        [sys.executable, "-m", "kldiv_cli", "--version", "--verbose"],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        done = subprocess.run(
            [sys.executable, "-m", "kldiv_cli", "--version"], capture_output=True, text=True
        )
    return "; ".join(line.strip() for line in done.stdout.splitlines() if line.strip())


def machine() -> str:
    """One paragraph: the CPU, the versions, kldiv's build."""
    model, flags = _cpu()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    isa = ", ".join(f"{f} {'yes' if f in flags else 'no'}" for f in FLAGS) if flags else "unknown"
    libs = ", ".join(
        f"{name} {v}"
        for name, v in (
            ("NumPy", _version("numpy")),
            ("pyarrow", _version("pyarrow")),
            ("Typer", _version("typer")),
            ("torch", _version("torch")),
            ("Polars", _version("polars")),
            ("DuckDB", _version("duckdb")),
        )
        if v is not None
    )
    return (
        f"Machine: {model}, {cores} cores ({isa}); {platform.system()} "
        f"{platform.release()}, Python {platform.python_version()}, {libs}. "
        f"kldiv {_kldiv_verbose()} (commit {_commit()})."
    )


def _load() -> str:
    return f"{os.getloadavg()[0]:.2f}" if hasattr(os, "getloadavg") else "unknown"


def core_rows(quick: bool, repeats: int) -> list[Row]:
    """``kl_div(..., "sum")`` against torch and one ``np.log`` pass (bench_core.py)."""
    import warnings

    import numpy as np
    from bench_core import best_of, close_pair, exact, peers, ulps

    warnings.simplefilter("ignore")
    rows, cols = (20_000, 100) if quick else (200_000, 100)
    seconds: dict[str, dict[str, float]] = {}
    errors: dict[str, dict[str, float]] = {}
    for dtype in ("float16", "float32", "float64"):
        x, t = close_pair(rows, cols, dtype)
        fns = peers(x, t)
        reference = exact(x, t)
        errors[dtype] = {
            name: ulps(fn(), reference, np.dtype(dtype))
            for name, fn in fns.items()
            if "pass" not in name and "read" not in name
        }
        seconds[dtype] = best_of(fns, repeats)
    n = rows * cols
    f32, f64 = seconds["float32"], seconds["float64"]
    ours = f32["kldiv kl_div"]
    out = [
        Row(
            "... float32: time over one single-threaded float32 `np.log` pass",
            f"{ours / f32['np.log pass float32 (1 thread)']:.2f}x "
            f"(kldiv {n / ours / 1e6:.0f} Melem/s; reading x and t once on 2 threads, the "
            "memory floor of any kernel here: "
            f"{f32['read x and t (2 threads)'] / f32['np.log pass float32 (1 thread)']:.2f}x)",
            "<= 0.7x",
            True,
        ),
        Row(
            "... float64: time over one float64 `np.log` pass",
            f"{f64['kldiv kl_div'] / f64['np.log pass float64 (1 thread)']:.2f}x",
            "<= 1.0x",
            True,
        ),
        Row(
            "... float16 / float32 time",
            f"{seconds['float16']['kldiv kl_div'] / ours:.2f}",
            "<= 1",
            True,
        ),
    ]
    if "torch kl_div" in f32:
        out.insert(
            0,
            Row(
                "... float32: speed-up over `torch.nn.functional.kl_div` (all cores)",
                f"{f32['torch kl_div'] / ours:.1f}x (torch {n / f32['torch kl_div'] / 1e6:.0f} "
                "Melem/s)",
                ">= 10x",
                True,
            ),
        )
    e = errors["float32"]
    peers_err = " / ".join(
        f"{e[k]:,.3g}" for k in ("kldiv kl_div", "torch kl_div", "naive numpy") if k in e
    )
    out.append(
        Row(
            "... error from the float64 value of the data, float32 ulps: kldiv"
            + (" / torch" if "torch kl_div" in e else "")
            + " / naive NumPy",
            peers_err,
            "<= 1 ulp",
            False,
        )
    )
    lead = (
        f'`kl_div(x, t, reduction="sum")`, {n:,} elements, near-identical distributions '
        "(`bench_core.py`)"
    )
    out[0].measure = lead + "," + out[0].measure.removeprefix("...")
    return out


def transforms_row(folder: Path, quick: bool, repeats: int) -> list[Row]:
    from bench_transforms import measure

    rows, vocab = (64, 32_000) if quick else (625, 32_000)
    got = measure(folder, rows, vocab, repeats)
    if "torch" not in got:
        return []
    return [
        Row(
            f"`compute --input-transform log-softmax --target-transform softmax`, {rows} x "
            f"{vocab} float32 logits, the CLI's work (start-up aside): speed-up over torch's "
            "`F.kl_div(F.log_softmax(s), F.softmax(t))` (`bench_transforms.py`)",
            f"{got['torch'] / got['kldiv']:.2f}x (kldiv {got['kldiv']:.3f} s, torch "
            f"{got['torch']:.3f} s)",
            ">= 4x",
            True,
        )
    ]


def compare_row(folder: Path, quick: bool, repeats: int) -> list[Row]:
    from bench_compare import make_data, side_by_side, torch_python

    rows, vocab = (64, 8_000) if quick else (2000, 32_000)
    a, b = make_data(folder, rows, vocab, 0.01)
    best = side_by_side(folder, a, b, repeats, torch_python(None))
    ours = best["kldiv"]
    also = f"; over float64 NumPy {ours / best['numpy64']:.2f}x"
    if "torch32" in best:
        also += f", over torch {ours / best['torch32']:.2f}x"
    return [
        Row(
            f"`compare` {rows} x {vocab} float32 logits per side: time over a naive float32 "
            "NumPy script (`bench_compare.py`)",
            f"{ours / best['numpy32']:.2f}x (kldiv {ours:.2f} s, NumPy {best['numpy32']:.2f} s"
            f"{also})",
            "<= 0.5x",
            True,
        )
    ]


def peer_rows(folder: Path, quick: bool, repeats: int) -> list[Row]:
    from bench_peers import compare_end_to_end

    rows = 20_000 if quick else 1_000_000
    out = []
    for fmt, n in (("parquet", rows), ("csv", rows // 5)):
        best = compare_end_to_end(folder, fmt, n, 50, repeats)
        peer = min(best["polars"], best["duckdb"])
        out.append(
            Row(
                f"`kldiv compute` {fmt} {n:,} x 50 float32 `batchmean` end to end: time over "
                "the faster of Polars and DuckDB (`bench_peers.py`)",
                f"{best['kldiv'] / peer:.2f}x (kldiv {best['kldiv']:.2f} s, Polars "
                f"{best['polars']:.2f} s, DuckDB {best['duckdb']:.2f} s)",
                "<= 1.0x",
                False,
            )
        )
    return out


def _bytecode(compiled: bool) -> None:
    """kldiv's own modules with bytecode caches (as ``pip install`` writes them) or
    without (a source checkout under ``PYTHONDONTWRITEBYTECODE``): every start then
    compiles them, which the floors' installed packages never pay."""
    import compileall
    import shutil

    package = Path(__file__).resolve().parent.parent / "kldiv_cli"
    for cache in package.rglob("__pycache__"):
        shutil.rmtree(cache)
    if compiled:
        compileall.compile_dir(str(package), quiet=1)
        os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    else:
        os.environ["PYTHONDONTWRITEBYTECODE"] = "1"


def startup_row(quick: bool) -> list[Row]:
    from bench_startup import FLOORS, measure

    def ratios(got: dict[str, dict[str, float]]) -> str:
        return ", ".join(
            f"{fmt} {r['kldiv'] / r['floor']:.2f}x (median "
            f"{r['kldiv_median'] / r['floor_median']:.2f}x)"
            for fmt, r in got.items()
        )

    saved = os.environ.get("PYTHONDONTWRITEBYTECODE")
    try:
        _bytecode(compiled=True)
        installed = measure(4 if quick else 20)
        _bytecode(compiled=False)
        source = measure(4 if quick else 20)
    finally:
        if saved is None:
            os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
        else:
            os.environ["PYTHONDONTWRITEBYTECODE"] = saved
    sizes = ", ".join(
        f"{fmt}: {r['modules']:.0f} modules, {r['source_bytes'] / 1000:.0f} KB of source"
        for fmt, r in installed.items()
    )
    floors = "; ".join(f'{fmt}: `python -c "{FLOORS[fmt]}"`' for fmt in installed)
    return [
        Row(
            "start-up: a tiny compute over importing what it needs, best (and median) of "
            f"interleaved runs ({floors}), pandas installed (`bench_startup.py`): kldiv "
            "installed (bytecode compiled, as `pip install` does)",
            ratios(installed) + f" ({sizes})",
            "<= 1.3x",
            False,
        ),
        Row(
            "... from a source checkout without bytecode caches (every start compiles "
            "kldiv's modules; the floors' packages keep theirs)",
            ratios(source),
            "<= 1.3x",
            False,
        ),
    ]


def section(paragraph: str, rows: list[Row], note: str) -> str:
    """The README's section, markers included."""
    lines = [
        BEGIN,
        "<!-- Written by `python benchmarks/report.py --write`: do not edit by hand. -->",
        "",
        paragraph,
        "",
        note,
        "",
        HEADER,
        "|---|---|---|---|",
        *(row.line() for row in rows),
        END,
    ]
    return "\n".join(lines)


def replace_section(text: str, new: str) -> str:
    """``text`` with its one section between the markers replaced by ``new``."""
    if text.count(BEGIN) != 1 or text.count(END) != 1 or text.index(BEGIN) > text.index(END):
        raise SystemExit(f"README.md needs exactly one {BEGIN} ... {END} section")
    head, rest = text.split(BEGIN, 1)
    return head + new + rest.split(END, 1)[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--write", action="store_true", help="replace the README's section")
    parser.add_argument("--quick", action="store_true", help="small data, few repeats")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--dir", type=Path, help="where the data files go (default: a temp dir)")
    args = parser.parse_args()
    sys.path.insert(0, str(HERE))  # the bench_* scripts beside this one
    repeats = 2 if args.quick else args.repeats
    folder = args.dir or Path(tempfile.mkdtemp(prefix="kldiv-report-"))
    folder.mkdir(parents=True, exist_ok=True)
    before, started = _load(), time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    paragraph = machine()
    rows = [
        *core_rows(args.quick, repeats),
        *transforms_row(folder, args.quick, repeats),
        *compare_row(folder, args.quick, min(repeats, 3)),
        *peer_rows(folder, args.quick, repeats),
        *startup_row(args.quick),
    ]
    note = (
        f"Run {started} ({'quick check, ' if args.quick else ''}best of {repeats}, peers "
        f"interleaved), load average {before} before and {_load()} after: ratios below 1 "
        "(above 1 for speed-ups) favour kldiv. A number that depends on the instruction "
        "set changes with the kernel path `kldiv --version --verbose` names."
    )
    new = section(paragraph, rows, note)
    print("\n" + new)
    if args.write:
        README.write_text(replace_section(README.read_text(), new))
        print(f"\nwritten to {README}")


if __name__ == "__main__":
    main()
