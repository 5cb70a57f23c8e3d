"""The Python API (kldiv_cli.compare, drift, profile, estimate, gaussian): its documented
examples run, and give the command line's numbers; ``import kldiv_cli`` stays cheap."""

from __future__ import annotations

import doctest
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from kldiv_cli.errors import UsageError

from .helpers import ROOT, invoke


def _examples() -> dict[str, dict]:
    """Each ```python block of docs/api.md run, by its section: the names it made."""
    text = (ROOT / "docs" / "api.md").read_text()
    out = {}
    for section in re.split(r"\n## ", text)[1:]:
        title = section.splitlines()[0]
        for block in re.findall(r"```python\n(.*?)```", section, flags=re.S):
            names: dict = {}
            exec(compile(block, f"docs/api.md ({title})", "exec"), names)
            out[title] = names
    return out


@pytest.fixture(scope="module")
def examples() -> dict[str, dict]:
    """The examples read sample_data/ from the root of the tree, as the page says."""
    before = os.getcwd()
    os.chdir(ROOT)
    try:
        return _examples()
    finally:
        os.chdir(before)


def _json(*args: object, command: str) -> dict:
    """The command's -f json document (exit 0, or 1: a failed check)."""
    out = invoke(command, *args, "-f", "json")
    assert out.exit_code in (0, 1), out.stderr
    return json.loads(out.stdout)


def test_the_docstrings_examples_run(monkeypatch) -> None:
    import kldiv_cli.api

    monkeypatch.chdir(ROOT)
    failed, attempted = doctest.testmod(kldiv_cli.api, verbose=False)
    assert attempted >= 20 and failed == 0


def test_compute_and_inspect_give_the_commands_numbers(examples) -> None:
    names = examples["compute and inspect"]
    student, teacher = (
        ROOT / "sample_data/student_logits.npy",
        ROOT / "sample_data/teacher_logits.npy",
    )
    cli = _json(
        student,
        teacher,
        "--input-transform",
        "log-softmax",
        "--target-transform",
        "softmax",
        "-T",
        "2",
        "--t2-scale",
        "-r",
        "batchmean",
        command="compute",
    )
    assert float(names["result"].loss) == cli["loss"]
    info = _json(teacher, command="inspect")
    assert names["info"]["looks_like"] == info["looks_like"]
    assert names["info"]["suggestions"] == info["suggestions"]


def test_compare_gives_the_commands_numbers(examples) -> None:
    result = examples["compare"]["result"]
    cli = _json(
        ROOT / "sample_data/compare/base_logits.npy",
        ROOT / "sample_data/compare/quant_logits.npy",
        "--fail-above",
        "kl.p99=0.1",
        command="compare",
    )
    stats = result.results[0].statistics
    assert stats["kl"]["mean"] == cli["kl"]["mean"] and stats["kl"]["p99"] == cli["kl"]["p99"]
    assert result.failed_check.startswith("kl.p99 = ") and cli["verdict"] == "fail"


def test_drift_and_profile_give_the_commands_results(examples, tmp_path) -> None:
    names = examples["drift and profile"]
    ref, cur = (
        ROOT / "sample_data/drift/users_reference.parquet",
        ROOT / "sample_data/drift/users_current",
    )
    cli = _json(ref, cur, "--exclude", "user_id", command="drift")
    assert names["report"].drift == cli["drift"]
    assert names["drifted"] == [c["name"] for c in cli["columns"] if c["state"] == "drift"]
    out = tmp_path / "ref.profile.json"
    assert invoke("profile", ref, "--bins", "20", "-o", out, "-q").exit_code == 0
    api, cli_profile = json.loads(names["built"].dumps()), json.loads(out.read_text())
    # The page's path is relative to the root; the command here was given an absolute one.
    assert cli_profile.pop("source") == str(ROOT / api.pop("source"))
    assert api == cli_profile


def test_estimate_gives_the_commands_numbers(examples) -> None:
    result = examples["estimate"]["result"]
    rl = ROOT / "sample_data/rl"
    cli = _json(
        rl / "logp.npy",
        rl / "ref_logp.npy",
        "--mask",
        rl / "mask.npy",
        "--clamp",
        "verl",
        command="estimate",
    )
    assert result.estimates == {k: cli[k] for k in ("k1", "k2", "k3", "abs")}
    assert result.diagnostics["ess"] == cli["diagnostics"]["ess"]


def test_gaussian_gives_the_commands_numbers(examples) -> None:
    names = examples["gaussian"]
    vae = ROOT / "sample_data/vae"
    assert names["result"].kl == _json(vae / "mu.npy", vae / "logvar.npy", command="gaussian")["kl"]
    per_dim = _json(vae / "mu.npy", vae / "logvar.npy", "-r", "per-dim", command="gaussian")
    np.testing.assert_array_equal(names["per_dim"].kl, per_dim["kl"])
    assert names["per_dim"].active_units == per_dim["active_units"]


def test_bad_options_raise_the_commands_errors() -> None:
    import kldiv_cli

    vae = ROOT / "sample_data/vae"
    with pytest.raises(UsageError, match="unknown reduction 'avg'; choose one of batch-mean"):
        kldiv_cli.gaussian(vae / "mu.npy", vae / "logvar.npy", reduction="avg")
    with pytest.raises(UsageError, match="--clamp: "):
        kldiv_cli.estimate("a.npy", "b.npy", clamp="3,1")
    with pytest.raises(TypeError, match="at least one candidate"):
        kldiv_cli.compare("a.npy")


def test_import_is_lazy() -> None:
    code = (
        "import sys, kldiv_cli\n"
        "assert 'numpy' not in sys.modules and 'kldiv_cli.api' not in sys.modules\n"
        "assert callable(kldiv_cli.drift) and 'kldiv_cli.api' in sys.modules\n"
        "assert 'numpy' not in sys.modules, 'the API module loads its jobs when called'\n"
        "assert set(kldiv_cli.__all__) >= {'compute', 'compare', 'drift', 'profile', 'estimate', 'gaussian', 'inspect'}\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
