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
    with pytest.raises(UsageError, match="at least one CANDIDATE"):
        kldiv_cli.compare("a.npy")


def _plain(document: dict) -> dict:
    """A document as its -f json text reads back (NaN as text, tuples as lists)."""
    from kldiv_cli.render import to_json

    return json.loads(to_json(document))


def test_windows_and_segments_give_the_commands_results(examples) -> None:
    names = examples["windows and segments"]
    ref, cur = (
        ROOT / "sample_data/drift/users_reference.parquet",
        ROOT / "sample_data/drift/users_current",
    )
    cli = _json(ref, cur, "--window", "signup_ts:7d", "--exclude", "user_id", command="drift")
    api = _plain(names["weekly"].to_json())
    assert len(cli["windows"]) == 4 and api["windows"] == cli["windows"]
    assert api["columns"] == cli["columns"] and api["grouping"] == cli["grouping"]
    cli = _json(
        ref,
        cur,
        *("--segment", "plan", "--reference-segment", "--exclude", "user_id,signup_ts"),
        command="drift",
    )
    api = _plain(names["by_plan"].to_json())
    assert [s["label"] for s in cli["segments"]] == ["free", "plus", "pro"]
    assert api["segments"] == cli["segments"] and api["columns"] == cli["columns"]


def test_calibrate_by_gives_the_commands_profile(examples, tmp_path) -> None:
    learned = examples["learned thresholds"]["learned"]
    ref = ROOT / "sample_data/drift/users_reference.parquet"
    out = tmp_path / "ref.profile.json"
    args = ("--calibrate", "4", "--calibrate-by", "signup_ts:7d", "-o", out, "-q")
    assert invoke("profile", ref, *args).exit_code == 0
    api, cli = json.loads(learned.dumps()), json.loads(out.read_text())
    api.pop("source"), cli.pop("source")
    assert cli["columns"]["age"]["calibration"]["by"] == "signup_ts:7d"
    assert api == cli


def test_slices_give_the_commands_numbers(examples) -> None:
    names = examples["slices"]
    compare = ROOT / "sample_data/compare"
    cli = _json(
        compare / "base.kld",
        compare / "quant.kld",
        *("--last", "8", "--token-ids", "3,11", "--by", "confidence"),
        command="compare",
    )
    api = _plain(names["result"].results[0].statistics)
    assert len(cli["slices"]) == 7 and api["slices"] == cli["slices"]
    rl = ROOT / "sample_data/rl"
    cli = _json(
        rl / "logp.npy",
        rl / "ref_logp.npy",
        *("--mask", rl / "mask.npy", "--positions", "0:4", "--by", "position:2"),
        command="estimate",
    )
    assert [s["name"] for s in cli["slices"]] == ["positions 0:4", "position 1/2", "position 2/2"]
    assert _plain({"s": names["rl"].slices})["s"] == cli["slices"]


@pytest.fixture(scope="module")
def events(tmp_path_factory) -> tuple:
    """A reference week and a current week of events (a key, a timestamp, a country with
    rare values and gaps, an amount that grows on the current Friday), and a batch of
    3-D logits with tokens padded by -100."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    root = tmp_path_factory.mktemp("api")
    rng = np.random.default_rng(7)

    def week(start: str, shift: bool) -> pa.Table:
        n = 1400
        day = (np.sort(rng.integers(0, 7 * 86_400, n)) // 86_400).astype(np.int64)
        ts = np.datetime64(start, "s") + (day * 86_400 + rng.integers(0, 86_400, n)).astype("m8[s]")
        amount = rng.lognormal(3, 0.5, n)
        if shift:
            amount[day == 4] *= 3  # the current Friday
        country = rng.choice(
            ["us", "de", "fr", "br", "nz", None], n, p=[0.4, 0.25, 0.15, 0.1, 0.05, 0.05]
        )
        return pa.table(
            {
                "event_id": [f"e{i:05d}" for i in range(n)],
                "ts": ts,
                "country": country,
                "amount": amount,
            }
        )

    ref, cur = root / "ref.parquet", root / "cur.parquet"
    pq.write_table(week("2026-03-02", False), ref)
    pq.write_table(week("2026-03-09", True), cur)
    logits = rng.normal(size=(3, 10, 12)).astype(np.float32)
    base, cand, tokens = root / "base.npy", root / "cand.npy", root / "tokens.npy"
    np.save(base, logits)
    np.save(cand, logits + rng.normal(0, 0.3, logits.shape).astype(np.float32))
    ids = rng.integers(0, 12, (3, 10))
    ids[2, 7:] = -100
    np.save(tokens, ids)
    return ref, cur, base, cand, tokens


def test_the_keywords_give_the_commands_numbers_on_generated_files(events) -> None:
    import kldiv_cli

    ref, cur, base, cand, tokens = events
    cli = _json(ref, cur, "--window", "ts:1d", "--exclude", "event_id", command="drift")
    api = _plain(kldiv_cli.drift(ref, cur, window="ts:1d", exclude="event_id").to_json())
    assert [w["drift"] for w in cli["windows"]] == [False] * 4 + [True] + [False] * 2
    assert api["windows"] == cli["windows"] and api["columns"] == cli["columns"]
    cli = _json(
        ref,
        cur,
        *("--segment", "country", "--reference-segment", "--max-segments", "3"),
        *("--exclude", "event_id,ts"),
        command="drift",
    )
    report = kldiv_cli.drift(
        ref,
        cur,
        segment="country",
        reference_segment=True,
        max_segments=3,
        exclude=("event_id", "ts"),
    )
    api = _plain(report.to_json())
    assert [s["label"] for s in cli["segments"]] == ["us", "de", "fr", "(other)"]
    assert api["segments"] == cli["segments"] and api["columns"] == cli["columns"]
    options = (
        "--positions",
        "2:8",
        "--last",
        "3",
        "--exclude-token-ids",
        "1,2,3",
        "--by",
        "position:2",
    )
    cli = _json(
        base, cand, "--tokens", tokens, "--ignore-index", "-100", *options, command="compare"
    )
    result = kldiv_cli.compare(
        base,
        cand,
        tokens=os.fspath(tokens),
        ignore_index=-100,
        positions="2:8",
        last=3,
        exclude_token_ids=[1, 2, 3],
        by=["position:2"],
    )
    api = _plain(result.results[0].statistics)
    assert len(cli["slices"]) == 5 and api["slices"] == cli["slices"]


@pytest.mark.parametrize(
    ("command", "options", "message"),
    [
        ("drift", {"windw": "ts:1d"}, "drift(): no such option 'windw'"),
        ("drift", {"window": "ts:1x"}, "--window takes COL:PERIOD with PERIOD a count"),
        ("drift", {"window": "ts"}, "--window takes COL:PERIOD (such as created_at:1d), got 'ts'"),
        ("drift", {"grouping": "ts:1d"}, "grouping takes a Grouping; or give window="),
        (
            "drift",
            {"window": "ts:1d", "segment": "country"},
            "give --window or --segment, not both",
        ),
        ("drift", {"reference_segment": True}, "--reference-segment needs --segment COL"),
        ("drift", {"segment": "country", "max_segments": 0}, "--max-segments must be between 1"),
        (
            "drift",
            {"threshold": "learnt"},
            "--threshold takes a number or learned[:K], got 'learnt'",
        ),
        ("profile", {"calibrate": 5, "calibrate_by": "ts"}, "--calibrate-by takes COL:PERIOD"),
        ("profile", {"calibrate_by": "ts:1d"}, "--calibrate-by needs --calibrate N"),
        ("profile", {"calibrate": 5, "calibrate_by": 3}, "--calibrate-by takes COL:PERIOD"),
        ("profile", {"segment": "country"}, "profile(): no such option 'segment'"),
        ("compare", {"slices": "last 4"}, "slices takes a Slices; or give positions="),
        ("compare", {"last": "four"}, "--last takes a whole number, got 'four'"),
        ("compare", {"last": 0}, "--last must be at least 1, got 0"),
        ("compare", {"positions": "8:2"}, "--positions 8:2: B must be above A"),
        ("compare", {"positions": 8}, "--positions takes A:B as text, got 8"),
        ("compare", {"by": "entropy"}, "--by takes confidence or position:N"),
        ("compare", {"token_ids": "1,x"}, "--token-ids: 'x' is not a token id"),
        ("compare", {"exclude_token_ids": 1.5}, "--exclude-token-ids takes token ids"),
        ("compare", {"tail": "drop"}, "--tail: unknown 'drop'; choose one of bucket, renormalize"),
        ("compare", {"window": "ts:1d"}, "compare(): no such option 'window'"),
        ("estimate", {"by": ["confidence", 2]}, "--by takes confidence or position:N"),
        ("estimate", {"segment": "x"}, "estimate(): no such option 'segment'"),
        ("gaussian", {"last": 3}, "gaussian(): no such option 'last'"),
    ],
)
def test_bad_keywords_and_values_raise_the_commands_usage_errors(
    events, command, options, message
) -> None:
    import kldiv_cli

    ref, cur, base, cand, _ = events
    paths = {
        "drift": (ref, cur),
        "profile": (ref,),
        "compare": (base, cand),
        "estimate": (base, cand),
        "gaussian": (base,),
    }[command]
    with pytest.raises(UsageError) as raised:
        getattr(kldiv_cli, command)(*paths, **options)
    assert str(raised.value).startswith(message) and "\n" not in str(raised.value)


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
