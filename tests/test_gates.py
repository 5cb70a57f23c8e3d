"""jobs.gates: the one gate module compare and estimate share."""

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kldiv_cli.errors import UsageError
from kldiv_cli.jobs.gates import Gate, evaluate, failure_text, flatten, parse_gate, parse_gates


def test_parse_gate_and_order() -> None:
    assert parse_gate(" kl.p99 =0.1", "above") == Gate("kl.p99", "above", 0.1)
    gates = parse_gates(["a=1"], ["b=2", "c=-3"])
    assert [(g.name, g.op) for g in gates] == [("a", "above"), ("b", "below"), ("c", "below")]


@pytest.mark.parametrize(
    ("spec", "text"),
    [
        ("kl", "takes NAME=VALUE"),
        ("=1", "takes NAME=VALUE"),
        ("a=x", "'x' is not a number"),
        ("a=nan", "the threshold is NaN"),
    ],
)
def test_parse_gate_errors(spec: str, text: str) -> None:
    with pytest.raises(UsageError, match=text):
        parse_gate(spec, "below")


def test_flatten_names_groups_and_values() -> None:
    doc = {
        "rows": 3,
        "kl": {"p99": 0.5},
        "top1": {"value": 0.9, "stderr": 0.1},
        "deep": {"a": {"b": 1.5}},
        "flag": True,
        "text": "x",
    }
    assert flatten(doc) == {
        "rows": 3,
        "kl.p99": 0.5,
        "top1.value": 0.9,
        "top1.stderr": 0.1,
        "top1": 0.9,
        "deep.a.b": 1.5,
    }


@given(st.floats(allow_nan=True), st.floats(allow_nan=False), st.sampled_from(["above", "below"]))
def test_evaluate_matches_the_comparison(value: float, threshold: float, op: str) -> None:
    [check] = evaluate([Gate("x", op, threshold)], {"x": value}, "hint")
    expected = (value <= threshold) if op == "above" else (value >= threshold)
    assert check == {"name": "x", f"fail_{op}": threshold, "value": value, "passed": expected}
    assert (failure_text([check]) is None) == expected
    if math.isnan(value):
        assert failure_text([check]) == f"x is NaN --fail-{op} {threshold:g}"


def test_evaluate_unknown_name_and_failure_text() -> None:
    with pytest.raises(UsageError, match=r"^--fail-below: unknown statistic 'y'; use x$"):
        evaluate([Gate("y", "below", 1.0)], {"x": 1.0}, "use x")
    checks = evaluate(parse_gates(["a=1"], ["b=2"]), {"a": 1.5, "b": 1.0}, "")
    assert failure_text(checks) == "a = 1.5 is above --fail-above 1; b = 1 is below --fail-below 2"
