"""Tampered profiles and threshold files: every one is a verdict (exit 0/1) or one clean
error line (exit 2), never a crash, a traceback or "unexpected"."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .helpers import invoke

FUZZ = settings(max_examples=35, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> tuple[Path, Path, dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("fuzz")
    rng = np.random.default_rng(0)
    table = {
        "x": rng.normal(size=300),
        "n": rng.integers(0, 4, 300),
        "c": rng.choice(["a", "b", "c"], 300),
        "b": rng.random(300) < 0.5,
        "id": [f"u{i}" for i in range(300)],
    }
    pq.write_table(pa.table(table), ref := tmp / "ref.parquet")
    table["x"] = table["x"] + 0.3
    pq.write_table(pa.table(table), cur := tmp / "cur.parquet")
    out = invoke("profile", ref)
    assert out.exit_code == 0, out.stderr
    return ref, cur, json.loads(out.stdout)


def assert_clean(out) -> None:
    assert out.exit_code in (0, 1, 2), out
    assert "error: unexpected" not in out.stderr and "Traceback" not in out.stderr, out.stderr
    if out.exit_code == 2:
        lines = out.stderr.splitlines()
        errors = [line for line in lines if line.startswith("kldiv: error: ")]
        assert len(errors) == 1, out.stderr


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(10**20), 10**20)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=12,
)


def _paths(doc: Any, prefix: tuple = ()) -> list[tuple]:
    found = [prefix]
    if isinstance(doc, dict):
        for k, v in doc.items():
            found += _paths(v, (*prefix, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            found += _paths(v, (*prefix, i))
    return found


def _set(doc: Any, path: tuple, value: Any, delete: bool) -> Any:
    if not path:
        return value
    parent = doc
    for key in path[:-1]:
        parent = parent[key]
    if delete:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return doc


@FUZZ
@given(data=st.data())
def test_mutated_profiles(data, files, tmp_path_factory) -> None:
    ref, cur, doc = files
    doc = copy.deepcopy(doc)
    for _ in range(data.draw(st.integers(1, 3))):
        paths = _paths(doc)
        path = data.draw(st.sampled_from(paths))
        doc = _set(
            doc, path, data.draw(json_values), delete=bool(path) and data.draw(st.booleans())
        )
    path = tmp_path_factory.mktemp("p") / "p.json"
    path.write_text(json.dumps(doc, allow_nan=True))
    assert_clean(invoke("drift", path, cur, "-f", "json"))


@FUZZ
@given(
    cut=st.integers(0, 4000),
    flips=st.lists(st.tuples(st.integers(0, 4000), st.integers(0, 255)), max_size=4),
)
def test_damaged_profile_bytes(cut, flips, files, tmp_path_factory) -> None:
    ref, cur, doc = files
    raw = bytearray(json.dumps(doc, indent=1).encode())
    for at, byte in flips:
        if raw:
            raw[at % len(raw)] = byte
    path = tmp_path_factory.mktemp("b") / "p.json"
    path.write_bytes(bytes(raw[: max(cut, 1)] if cut < len(raw) else raw))
    assert_clean(invoke("drift", path, cur))


def test_deep_nesting_and_known_tampering(files, tmp_path) -> None:
    ref, cur, doc = files
    cases = {
        "deep.json": '{"kldiv_profile": 2, "columns": ' + "[" * 100_000 + "]" * 100_000 + "}",
        "list.json": json.dumps({**doc, "columns": list(doc["columns"].values())}),
        "kind.json": json.dumps(
            {**doc, "columns": {"x": {**doc["columns"]["x"], "role": "magic"}}}
        ),
        "short.json": json.dumps(
            {**doc, "columns": {"x": {**doc["columns"]["x"], "counts": [1, 2]}}}
        ),
        "unsorted.json": json.dumps(
            {
                **doc,
                "columns": {
                    "x": {**doc["columns"]["x"], "edges": doc["columns"]["x"]["edges"][::-1]}
                },
            }
        ),
        "negative.json": json.dumps(
            {
                **doc,
                "columns": {
                    "x": {**doc["columns"]["x"], "counts": [-1] + doc["columns"]["x"]["counts"][1:]}
                },
            }
        ),
        "nan.json": json.dumps(
            {
                **doc,
                "columns": {
                    "x": {
                        **doc["columns"]["x"],
                        "edges": [float("nan")] + doc["columns"]["x"]["edges"][1:],
                    }
                },
            },
            allow_nan=True,
        ),
        "old.json": json.dumps({**doc, "kldiv_profile": 1}),
    }
    for name, text in cases.items():
        (path := tmp_path / name).write_text(text)
        out = invoke("drift", path, cur)
        assert out.exit_code == 2, (name, out.stderr)
        assert_clean(out)
        assert "not a valid kldiv profile" in out.stderr or "kldiv profile" in out.stderr, name


toml_keys = st.sampled_from(["default", "thresholds", "x", "c", "zz", '"a b"', "x.y"])
toml_values = st.sampled_from(
    [
        "5", "0.1", "-1", "nan", "inf", "-inf", "true", '"0.1"', "[1, 2]", "{a = 1}",
        "1979-05-27", "1e400", "0x10", "[" * 200 + "]" * 200, "", "{", "'x'",
    ]
)  # fmt: skip


@FUZZ
@given(
    lines=st.lists(
        st.one_of(
            st.tuples(toml_keys, toml_values).map(lambda kv: f"{kv[0]} = {kv[1]}"),
            st.sampled_from(["[thresholds]", "[other]", "[[thresholds]]", "[thresholds.x]", "= 1"]),
        ),
        max_size=6,
    )
)
def test_threshold_files(lines, files, tmp_path_factory) -> None:
    ref, cur, _ = files
    path = tmp_path_factory.mktemp("t") / "t.toml"
    path.write_text("\n".join(lines) + "\n")
    assert_clean(invoke("drift", ref, cur, "--thresholds", path))


def test_known_bad_threshold_files(files, tmp_path) -> None:
    ref, cur, _ = files
    for text, message in (
        ("thresholds = 5\n", "thresholds must be a table"),
        ("default = -1\n", "default must be a number >= 0"),
        ("[thresholds]\nx = nan\n", "threshold for 'x'"),
        ("[thresholds]\nx = 'high'\n", "threshold for 'x'"),
        ("color = 1\n", "unknown key 'color'"),
        ("x = [" * 5000 + "]" * 5000 + "\n", "TOML"),
    ):
        (path := tmp_path / "t.toml").write_text(text)
        out = invoke("drift", ref, cur, "--thresholds", path)
        assert out.exit_code == 2 and message in out.stderr, (text[:30], out.stderr)
        assert_clean(out)
