"""The README's promises: the Quickstart contract, CI running it, and every example working."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys

import pytest

from .conftest import ROOT
from .helpers import invoke

README = (ROOT / "README.md").read_text()


def bash_blocks(text: str) -> list[str]:
    return re.findall(r"```bash\n(.*?)```", text, flags=re.S)


def quickstart_commands() -> list[str]:
    after = README.split("## Quickstart", 1)[1]
    return [line for line in bash_blocks(after)[0].splitlines() if line.strip()]


def test_quickstart_has_exactly_two_commands() -> None:
    assert README.lstrip().startswith("# kldiv\n\n## Quickstart")
    first, second = quickstart_commands()
    assert first.startswith("pip install . && kldiv compute sample_data/")
    assert second.startswith('pip install ".[test]"') and "pytest" in second


def test_ci_runs_the_second_command_verbatim() -> None:
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert quickstart_commands()[1] in ci


EXAMPLES = [
    line
    for block in bash_blocks(README.split("## Quickstart", 1)[1])[1:]
    for line in block.splitlines()
    if re.search(r"(^|\| )kldiv ", line)
]


def _in_process(line: str) -> list[str] | None:
    """The arguments of a line that is one plain ``kldiv`` command (no pipe, redirection,
    variable, unquoted wildcard or /dev/std* path), which run in this process through the
    boundary; None for the lines only a shell shows (they run in bash, a real process)."""
    unquoted = re.sub(r"'[^']*'|\"[^\"]*\"", "", line)
    if not line.startswith("kldiv ") or re.search(r"[|<>$;&`*?\[\\]", unquoted):
        return None
    if "/dev/std" in line:
        return None
    return shlex.split(line)[1:]


def test_lines_of_the_shell_run_in_the_shell() -> None:
    assert _in_process("kldiv gaussian a.parquet --mu-columns 'mu_*' -f json") == [
        "gaussian",
        "a.parquet",
        "--mu-columns",
        "mu_*",
        "-f",
        "json",
    ]
    for line in (
        "kldiv inspect a/*.csv",
        "kldiv compute a.npy b.npy -f json | jq .loss",
        "cat b.npy | kldiv compute a.npy -",
        "kldiv inspect a.csv -o /dev/stdout",
        "kldiv inspect $FILE",
    ):
        assert _in_process(line) is None, line
    assert any(_in_process(line) is None for line in EXAMPLES)


@pytest.mark.parametrize("line", EXAMPLES)
def test_readme_example_runs(line: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # A drift check's job is to say "drift" (exit 1); everything else succeeds.
    allowed = (0, 1) if " drift " in line else (0,)
    args = _in_process(line)
    if args is not None:
        monkeypatch.chdir(ROOT)
        out = invoke(*args)
        assert out.exit_code in allowed, out.stderr
        assert out.stdout.strip() or " -o " in line
        assert "Traceback" not in out.stderr
        return
    if "| jq" in line and shutil.which("jq") is None:
        pytest.skip("jq is not installed")
    command = re.sub(r"(^|\| )kldiv ", rf"\1'{sys.executable}' -m kldiv_cli ", line)
    proc = subprocess.run(
        ["bash", "-o", "pipefail", "-c", command],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode in allowed, proc.stderr
    assert proc.stdout.strip() or " -o " in command
    assert "Traceback" not in proc.stderr


def test_performance_table_is_the_report_scripts_section() -> None:
    """The Performance table lies between one pair of markers, in the Performance section,
    in the shape benchmarks/report.py writes (its numbers are the script's, not checked)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "kldiv_benchmarks_report", ROOT / "benchmarks" / "report.py"
    )
    assert spec is not None and spec.loader is not None
    report = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("kldiv_benchmarks_report", report)  # its dataclass looks itself up
    spec.loader.exec_module(report)
    performance = README.split("## Performance", 1)[1].split("\n## ", 1)[0]
    assert README.count(report.BEGIN) == README.count(report.END) == 1
    assert report.BEGIN in performance and report.END in performance
    section = performance.split(report.BEGIN, 1)[1].split(report.END, 1)[0]
    assert section.strip(), "run python benchmarks/report.py --write"
    lines = section.strip().splitlines()
    assert "report.py --write" in lines[0]
    assert any(line.startswith("Machine: ") and " cores " in line for line in lines)
    table = [line for line in lines if line.startswith("|")]
    assert table[0] == report.HEADER and table[1] == "|---|---|---|---|" and len(table) > 2
    assert all(line.count(" | ") == 3 and line.endswith(" |") for line in table[2:])
    assert all(line.rsplit(" | ", 1)[1] in ("yes |", "no |") for line in table[2:])
    # The script puts a new run back in the same place.
    assert report.replace_section(README, report.section("p", [], "n")).count(report.BEGIN) == 1
