"""The command line's shared machinery: choices as enums (shown, completed, parsed once),
the app-wide flags, option groups, and a request validated once per run."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from kldiv_cli import choices
from kldiv_cli.errors import UsageError
from kldiv_cli.io import formats

from .helpers import invoke


def _complete(line: str) -> list[str]:
    """What bash completion offers for the last word of ``line`` (Click's protocol)."""
    from kldiv_cli.cli import app

    words = line.split(" ")
    env = {
        "_KLDIV_COMPLETE": "complete_bash",
        "COMP_WORDS": line,
        "COMP_CWORD": str(len(words) - 1),
    }
    result = CliRunner().invoke(app, [], prog_name="kldiv", env=env)
    assert result.exit_code == 0, result.output
    return result.stdout.split()


@pytest.mark.parametrize(
    ("line", "offered"),
    [
        ("kldiv compute a.npy b.npy -r ", ["none", "mean", "batchmean", "sum"]),
        ("kldiv compute a.npy b.npy --engine ", ["local", "dask"]),
        ("kldiv compute a.npy b.npy --input-transform log", ["log-softmax", "log"]),
        ("kldiv estimate a.npy b.npy --clamp ", ["none", "openrlhf", "verl"]),
        ("kldiv estimate a.npy b.npy -a seq-mean-token-sum", None),
        ("kldiv gaussian mu.npy --scale-param log", ["logvar", "logstd"]),
        ("kldiv inspect a.csv --missing ", ["error", "nan"]),
        ("kldiv inspect a.csv -f j", ["json"]),
        # The format registry's names, in its order.
        ("kldiv compute a.x b.y --input-format p", ["parquet"]),
        (
            "kldiv inspect a.x --file-format ",
            list(formats.names()),
        ),
    ],
)
def test_choices_complete(line: str, offered: list[str] | None) -> None:
    got = _complete(line)
    if offered is None:  # every word with that prefix
        assert got == [w for w in choices.Aggregate.words() if w.startswith("seq-mean-token-sum")]
    else:
        assert got == offered


def test_choices_list_the_cores_words() -> None:
    """Each enum lists the words its job and the core accept, in the same order."""
    from kldiv_cli.core.compare import KINDS
    from kldiv_cli.core.estimators import AGGREGATES, EMPTY_SEQUENCES, ESTIMATORS
    from kldiv_cli.core.gaussian import GAUSSIAN_REDUCTIONS, SCALE_PARAMS
    from kldiv_cli.core.kl import REDUCTIONS
    from kldiv_cli.core.topk import TAILS
    from kldiv_cli.core.transforms import TRANSFORMS
    from kldiv_cli.render import OUTPUT_FORMATS

    assert choices.Reduction.words() == REDUCTIONS
    assert choices.Transform.words() == TRANSFORMS
    assert choices.Estimator.words() == (*ESTIMATORS, "all")
    assert choices.Aggregate.words() == AGGREGATES
    assert choices.EmptySequences.words() == EMPTY_SEQUENCES
    assert choices.ScaleParam.words() == SCALE_PARAMS
    assert choices.LatentReduction.words() == GAUSSIAN_REDUCTIONS
    assert choices.OutputFormat.words() == OUTPUT_FORMATS
    assert choices.Kind.words() == KINDS
    assert choices.Tail.words() == TAILS


def test_an_unknown_word_is_one_line_in_both_runners(run_cli, pair) -> None:
    xp, tp, _, _ = pair
    line = "kldiv: error: unknown reduction 'avg'; choose one of none, mean, batchmean, sum\n"
    for outcome in (
        invoke("compute", xp, tp, "-r", "avg"),
        run_cli("compute", xp, tp, "-r", "avg"),
    ):
        assert (outcome.exit_code, outcome.stderr, outcome.stdout) == (2, line, "")
    bad_clamp = invoke("estimate", xp, tp, "--clamp", "3,1")
    assert bad_clamp.exit_code == 2 and bad_clamp.stderr.startswith("kldiv: error: --clamp: ")


def test_a_request_from_text_holds_members() -> None:
    from kldiv_cli.jobs.compute import ComputeRequest
    from kldiv_cli.jobs.estimate import EstimateRequest

    request = ComputeRequest("a.npy", "b.npy", reduction="batchmean", input_transform="log")
    assert request.reduction is choices.Reduction.BATCHMEAN
    assert request.input_transform is choices.Transform.LOG
    assert EstimateRequest("a.npy", "b.npy", clamp="-1,2").clamp.result == (-1.0, 2.0)
    with pytest.raises(UsageError, match="unknown transform 'logits'; choose one of none, "):
        ComputeRequest("a.npy", "b.npy", target_transform="logits")
    with pytest.raises(UsageError, match="--temperature must be a finite number > 0"):
        ComputeRequest("a.npy", "b.npy", temperature=0.0)


@pytest.mark.parametrize("where", ["before", "after"])
def test_flags_before_or_after_the_command(pair, where: str) -> None:
    """-r mean warns (torch's warning); -q silences it wherever it is given."""
    xp, tp, _, _ = pair
    loud = invoke("compute", xp, tp)
    assert "warning" in loud.stderr
    args = ["-q", "compute", xp, tp] if where == "before" else ["compute", xp, tp, "-q"]
    quiet = invoke(*args)
    assert (quiet.exit_code, quiet.stderr, quiet.stdout) == (0, "", loud.stdout)


def test_debug_before_the_command_shows_the_traceback(tmp_path) -> None:
    missing = tmp_path / "nope.npy"
    out = invoke("--debug", "inspect", missing)
    assert out.exit_code == 2 and "Traceback" in out.stderr
    assert out.stderr.splitlines()[-1].startswith("kldiv: error: ")


def test_a_run_validates_once(pair, tmp_path, monkeypatch) -> None:
    """The command line validates before reading stdin; the job asks again, for
    library callers: the checks (which look at the file system) run once."""
    import kldiv_cli.io.writers as writers

    calls = []
    real = writers.guard
    monkeypatch.setattr(writers, "guard", lambda *a, **k: calls.append(a) or real(*a, **k))
    xp, tp, _, _ = pair
    for command, args in (("compute", (xp, tp)), ("estimate", (xp, tp)), ("inspect", (xp,))):
        calls.clear()
        out = invoke(command, *args, "-o", tmp_path / f"{command}.json", "-q")
        assert out.exit_code in (0, 2) and len(calls) == 1, (command, out.stderr)


def _choice_options():
    """Every option of every command that takes words: its type lists them (a
    ParsedType's ``words``, a Click Choice) or its placeholder shows them (``[a|b]``)."""
    import re

    from typer._click import Context
    from typer.main import get_command

    from kldiv_cli.cli import app

    group = get_command(app)
    root = Context(group)
    for name in group.list_commands(root):
        command = group.get_command(root, name)
        ctx = Context(command, parent=root)
        for param in command.params:
            if param.param_type_name != "option":
                continue
            metavar = param.make_metavar(ctx)
            words = getattr(param.type, "words", None) or getattr(param.type, "choices", None)
            if callable(words):
                words = words()
            # The literal words a placeholder shows (``position:`` of ``position:N``).
            shown = [
                m.group(0)
                for alt in metavar.strip("[]").split("|")
                if (m := re.match(r"[a-z0-9_:.-]+", alt))
            ]
            if "|" in metavar or words:
                yield f"{name} {param.opts[0]}", param, ctx, list(words or ()), shown


def test_every_choice_option_completes() -> None:
    """Completion of an empty word offers every word of the option (from its type), and
    every literal word its help placeholder shows, for every command."""
    found = list(_choice_options())
    assert {"compare --tail", "compare --by", "topk --tail", "estimate --by"} <= {
        n for n, *_ in found
    }
    for name, param, ctx, words, shown in found:
        offered = [item.value for item in param.shell_complete(ctx, "")]
        assert offered, f"{name} completes nothing"
        assert not words or offered == [str(w) for w in words], name
        for word in shown:
            assert any(o.startswith(word) for o in offered), f"{name}: {word!r} not offered"


@pytest.mark.parametrize(
    ("line", "offered"),
    [
        ("kldiv compare a b --tail ", ["bucket", "renormalize"]),
        ("kldiv compare a b --by c", ["confidence"]),
        ("kldiv topk a --tail r", ["renormalize"]),
    ],
)
def test_reviewers_lines_complete(line: str, offered: list[str]) -> None:
    assert _complete(line) == offered
