"""Gates and verdicts: how every command's result becomes its exit code.

A gate is ``--fail-above NAME=X`` / ``--fail-below NAME=X`` on a number of a result.
A job names its numbers by :func:`flatten`-ing its JSON document (``kl.p99``,
``diagnostics.ess``), checks the gates' names before any work (:func:`check_names`),
and :func:`evaluate`\\s them on its result; :func:`failure_text` is the ``check
failed`` line. ``compute --fail-above X`` is one gate on one number, the loss
(:func:`gate_failure`).

Every result states its :class:`Verdict` (a gate failed, drift was found, a column
could not be compared); the command line ends as the verdict says (exit 1 for a failed
check, 2 for an error, 0 otherwise).
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import UsageError
from ..text import clean

__all__ = [
    "Gate",
    "Verdict",
    "check_names",
    "check_thresholds",
    "evaluate",
    "failure_text",
    "flatten",
    "gate_failure",
    "parse_gate",
    "parse_gates",
    "parse_thresholds",
]


@dataclass(frozen=True)
class Verdict:
    """What a run's result means for its exit code."""

    #: The ``check failed`` line (a gate failed, drift found): exit 1.
    failed: str | None = None
    #: An error the run finished with anyway (a column that could not be compared):
    #: always shown; exit 2 unless the check failed too.
    error: str | None = None


@dataclass(frozen=True)
class Gate:
    """``--fail-above NAME=X`` (``op="above"``) or ``--fail-below NAME=X``."""

    name: str
    op: str
    threshold: float

    @property
    def option(self) -> str:
        """The option that set the gate: ``--fail-above`` or ``--fail-below``."""
        return f"--fail-{self.op}"

    def passed(self, value: float) -> bool:
        """``value <= threshold`` (above) or ``value >= threshold`` (below); NaN never passes."""
        return value <= self.threshold if self.op == "above" else value >= self.threshold


def parse_gate(spec: str, op: str) -> Gate:
    """``NAME=VALUE`` -> :class:`Gate`.

    Raises
    ------
    UsageError
        A missing ``=`` or name, a threshold that is not a number, or NaN.
    """
    option = f"--fail-{op}"
    name, sep, text = spec.partition("=")
    name = name.strip()
    if not sep or not name:
        raise UsageError(f"{option} takes NAME=VALUE (e.g. kl.p99=0.1), got {spec!r}")
    try:
        threshold = float(text)
    except ValueError:
        raise UsageError(f"{option} {name}: {text.strip()!r} is not a number") from None
    if math.isnan(threshold):
        raise UsageError(f"{option} {name}: the threshold is NaN; give a number")
    if math.isinf(threshold) and "inf" not in text.lower():
        raise UsageError(f"{option} {name}: {text.strip()} is too large for a float64")
    return Gate(name, op, threshold)


def parse_gates(fail_above: Iterable[str], fail_below: Iterable[str]) -> tuple[Gate, ...]:
    """Every ``--fail-above`` gate, then every ``--fail-below`` gate, in the order given."""
    return tuple(parse_gate(s, "above") for s in fail_above) + tuple(
        parse_gate(s, "below") for s in fail_below
    )


def flatten(document: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """The numbers of a nested document by dotted name (``diagnostics.ratio.max``).

    A group holding a ``value`` is also named by the group itself (``top1_agreement``
    for ``top1_agreement.value``). A list of objects that each have a ``name`` is named
    by them: ``slices[last 64].kl.p99``. Booleans and non-numbers are left out; integers
    stay integers.
    """
    out: dict[str, float] = {}
    for key, value in document.items():
        name = f"{prefix}{key}"
        if isinstance(value, list) and all(isinstance(v, Mapping) and "name" in v for v in value):
            for item in value:
                out.update(flatten(item, f"{name}[{item['name']}]."))
        elif isinstance(value, Mapping):
            out.update(flatten(value, name + "."))
            inner = value.get("value")
            if isinstance(inner, (int, float)) and not isinstance(inner, bool):
                out[name] = inner
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            out[name] = value
    return out


def check_names(gates: Iterable[Gate], known: Collection[str], hint: str) -> None:
    """Every gate names one of ``known``.

    Raises
    ------
    UsageError
        ``--fail-above: unknown statistic 'NAME'; <hint>`` for the first that does not.
    """
    for gate in gates:
        if gate.name not in known:
            raise UsageError(f"{gate.option}: unknown statistic {clean(gate.name)!r}; {hint}")


def evaluate(
    gates: Iterable[Gate], numbers: Mapping[str, float], hint: str
) -> list[dict[str, Any]]:
    """Each gate as the JSON reports it: ``name``, ``fail_above`` or ``fail_below`` (the
    threshold), ``value`` and ``passed`` (a NaN value never passes).

    Raises
    ------
    UsageError
        A gate names a number ``numbers`` does not have (see :func:`check_names`).
    """
    gates = tuple(gates)
    check_names(gates, numbers.keys(), hint)
    return [
        {
            "name": gate.name,
            f"fail_{gate.op}": gate.threshold,
            "value": numbers[gate.name],
            "passed": gate.passed(numbers[gate.name]),
        }
        for gate in gates
    ]


def failure_text(checks: Iterable[Mapping[str, Any]]) -> str | None:
    """The ``check failed`` line for the failed ones of :func:`evaluate`'s ``checks``
    (``kl.p99 = 0.12 is above --fail-above 0.1``), or None when every gate passed."""
    parts = []
    for check in checks:
        if check["passed"]:
            continue
        op = "above" if "fail_above" in check else "below"
        value, threshold = check["value"], check[f"fail_{op}"]
        verdict = "is NaN" if value != value else f"= {value:.6g} is {op}"
        parts.append(f"{clean(check['name'])} {verdict} --fail-{op} {threshold:g}")
    return "; ".join(parts) or None


def gate_failure(gate: Gate, value: float | None, what: str) -> str | None:
    """Why ``compute``'s one gate on ``value`` (``what``: the loss, the largest row)
    fails, or None when it passes; a value that is None or NaN never passes."""
    if value is not None and gate.passed(value):
        return None
    limit = f"{gate.option} {gate.threshold:g}"
    if value is None or value != value:
        return f"{what} is NaN ({limit})"
    return f"{what} {value:.6g} is {gate.op} {limit}"


def parse_thresholds(text: str, option: str = "--frac-above") -> tuple[float, ...]:
    """A comma list of finite numbers (``0.01,0.1,1``), in the order given, repeats dropped.

    Raises
    ------
    UsageError
        An empty list, or an item that is not a finite number.
    """
    out: list[float] = []
    for item in text.split(","):
        try:
            value = float(item)
        except ValueError:
            raise UsageError(f"{option}: {clean(item.strip())!r} is not a number") from None
        if value not in out:
            out.append(value)
    check_thresholds(tuple(out), option)
    return tuple(out)


def check_thresholds(thresholds: tuple[float, ...], option: str = "--frac-above") -> None:
    """At least one threshold, each a finite number."""
    if not thresholds:
        raise UsageError(f"{option} takes a comma list of numbers, e.g. 0.01,0.1,1")
    for t in thresholds:
        if not math.isfinite(t):
            raise UsageError(f"{option}: {t} is not a finite number")
