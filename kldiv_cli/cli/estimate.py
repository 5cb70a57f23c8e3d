"""``kldiv estimate``: the KL estimators RL frameworks log, from sampled tokens' log-probs."""

from functools import partial
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ..choices import Aggregate, EmptySequences, Estimator
from ..io import formats
from .app import app
from .boundary import Messages, error_boundary
from .groups import Output, Side, Storage, gates, inputs, output, slices, storage, uses
from .options import FracAboveOpt, ParsedType, StrictOpt, choice
from .output import emit_with_notes
from .runner import run_command

if TYPE_CHECKING:
    from ..io.base import ReadOptions
    from ..jobs.estimate import EstimateResult
    from ..jobs.gates import Gate, Verdict
    from ..jobs.slices import Slices

SIDES = inputs(
    Side(
        "--logp-format",
        "--logp-key",
        "--logp-columns",
        format_help=formats.format_help(),
        key_help=formats.key_help("LOGP"),
        columns_help="LOGP's columns: names, globs (lp_*) or 0-based indices (one with "
        "--sequence-column); default all numeric columns.",
    ),
    Side(
        "--ref-format",
        "--ref-key",
        "--ref-columns",
        format_help="As --logp-format.",
        key_help=formats.key_help("REF_LOGP"),
        columns_help="As --logp-columns, for REF_LOGP.",
    ),
    Side(
        key="--mask-key",
        columns="--mask-columns",
        key_help=formats.key_help("--mask FILE"),
        columns_help="As --logp-columns, for --mask.",
        booleans=True,
    ),
)


def _clamp(text: str) -> Any:
    from ..jobs.estimate import clamp_option

    return clamp_option(text)


@app.command()
@error_boundary
@uses(sides=SIDES, gates=gates(), out=output(), storage=storage(), parts=slices())
def estimate(
    logp: Annotated[
        str,
        typer.Argument(
            metavar="LOGP",
            help="log pi of each sampled token under the policy that sampled it, "
            "[sequences, tokens]; '-' for stdin.",
            show_default=False,
        ),
    ],
    ref_logp: Annotated[
        str,
        typer.Argument(
            metavar="REF_LOGP",
            help="log pi_ref of the same tokens under the reference (or the other engine).",
            show_default=False,
        ),
    ],
    estimator: Annotated[
        Estimator,
        choice(
            Estimator,
            "--estimator",
            "-e",
            help="With log r = REF_LOGP - LOGP: k1 = -log r, k2 = (log r)^2/2, "
            "k3 = r - 1 - log r, abs = |log r|; all (default) reports the four.",
        ),
    ] = Estimator.ALL,
    clamp: Annotated[
        Any,
        typer.Option(
            "--clamp",
            click_type=ParsedType(
                "clamp", _clamp, "[none|openrlhf|verl|LO,HI]", ("none", "openrlhf", "verl")
            ),
            help="none (TRL, default); openrlhf: each estimate to [-10, 10]; verl: k3 with "
            "log r clamped to +-20 and the result to +-10; LO,HI: each estimate to [LO, HI].",
        ),
    ] = "none",
    aggregate: Annotated[
        Aggregate,
        choice(
            Aggregate,
            "--aggregate",
            "-a",
            metavar="MODE",
            help="verl 0.9.1's agg_loss modes: token-mean (over all tokens, the default), "
            "seq-mean-token-mean, seq-mean-token-sum, seq-mean-token-sum-norm (the mean "
            "sequence sum / L), token-sum; seq-mean-token-sum-norm-verl0.7 (verl 0.4-0.7: "
            "the total / L); sum (= token-sum).",
        ),
    ] = Aggregate.TOKEN_MEAN,
    empty_sequences: Annotated[
        EmptySequences,
        choice(
            EmptySequences,
            "--empty-sequences",
            help="Sequences with no token in the seq-mean modes: skip (verl's agg_loss, "
            "the default) or zero (count as 0 KL: TRL PPO's objective/kl).",
        ),
    ] = EmptySequences.SKIP,
    norm_length: Annotated[
        float | None,
        typer.Option(
            "--norm-length",
            metavar="L",
            help="Divisor L of seq-mean-token-sum-norm (verl's loss_scale_factor); "
            "default: the padded length (tokens per row).",
        ),
    ] = None,
    mask: Annotated[
        str | None,
        typer.Option(
            "--mask",
            metavar="FILE",
            help="0/1 of LOGP's shape (verl's response_mask): 1 = the token counts.",
        ),
    ] = None,
    pad_value: Annotated[
        float | None,
        typer.Option(
            "--pad-value",
            metavar="X",
            help="Without --mask: tokens equal to X on both sides are padding (NaN always is).",
        ),
    ] = None,
    sequence_column: Annotated[
        str | None,
        typer.Option(
            "--sequence-column",
            metavar="NAME",
            help="Long tables: one row per token, NAME the sequence id, tokens in row order.",
        ),
    ] = None,
    frac_above: FracAboveOpt = "0.01,0.1,1",
    top: Annotated[
        int | None,
        typer.Option(
            "--top",
            metavar="N",
            help="Also report the N tokens of largest |log ratio|: sequence, position, both "
            "log-probs and each estimator (JSON offenders; notes on stderr).",
        ),
    ] = None,
    tokens: Annotated[
        str | None,
        typer.Option(
            "--tokens",
            metavar="FILE",
            help="The sampled token ids, LOGP's shape: for --token-ids/--exclude-token-ids.",
        ),
    ] = None,
    html: Annotated[
        str | None,
        typer.Option(
            "--html",
            metavar="PATH",
            help="Also write a self-contained HTML report: estimates, per-token CDFs, KL by "
            "position and by the reference's probability.",
        ),
    ] = None,
    strict: StrictOpt = False,
    *,
    sides: "tuple[ReadOptions, ReadOptions, ReadOptions]",
    gates: "tuple[Gate, ...]",
    out: Output,
    storage: Storage,
    parts: "Slices",
) -> None:
    """Estimate KL(pi || pi_ref) from the log-probabilities of sampled tokens, as RL
    frameworks log it (Schulman's k1, k2, k3), with diagnostics.

    Examples:

      kldiv estimate logp.npy ref_logp.npy --mask mask.npy

      kldiv estimate logp.npy ref_logp.npy --mask mask.npy -e k3 --clamp verl

      kldiv estimate rollout.csv rollout.csv --sequence-column seq --logp-columns 1 --ref-columns 2

      kldiv estimate trainer.npy vllm.npy --fail-above k3=0.05 --fail-below diagnostics.ess=0.9

      kldiv estimate logp.npy ref.npy --mask mask.npy --tokens ids.npy --exclude-token-ids 2
      --last 32 --fail-above 'slices[last 32].k3=0.05' --html report.html

    Which settings reproduce which logged number (checked against verl 0.9.1, TRL 1.16.0's
    GRPO and TRL's experimental PPO trainer, OpenRLHF 0.11.2): TRL GRPO "kl": -e k3 (token-mean, clamp
    none). TRL PPO "objective/kl": -e k1 or -e k3, -a seq-mean-token-sum --empty-sequences
    zero. OpenRLHF "kl": --clamp openrlhf -a seq-mean-token-mean. verl "actor/kl_loss":
    --clamp verl and -a your loss_agg_mode (kl_loss_type low_var_kl is k3); verl 0.4-0.7's
    seq-mean-token-sum-norm is -a seq-mean-token-sum-norm-verl0.7.

    Log-probabilities above 0 are an error; rows that end in runs of identical values on
    both sides without --mask are warned about (suspected padding).
    """
    from ..jobs.estimate import EstimateRequest
    from ..jobs.estimate import estimate as run

    request = EstimateRequest(
        logp,
        ref_logp,
        *sides,
        mask=mask,
        pad_value=pad_value,
        sequence_column=sequence_column,
        estimator=estimator,
        clamp=clamp,
        aggregate=aggregate,
        norm_length=norm_length,
        empty_sequences=empty_sequences,
        strict=strict,
        gates=gates,
        output=out.file,
        frac_above=frac_above,
        top=top,
        slices=parts,
        tokens=tokens,
        html=html,
    )
    run_command(request, lambda r, stdin, _: run(r, stdin), partial(_show, out), storage)


def _show(out: Output, result: "EstimateResult") -> "Verdict":
    from ..render.estimate import estimate_report

    for text in result.warnings:
        Messages.warn(text)
    if result.request.html:
        from ..io.writers import atomic_write
        from ..render.estimate_html import estimate_page

        data = estimate_page(result)
        atomic_write(result.request.html, lambda f: f.write(data))
        Messages.note(f"wrote {result.request.html}")
    emit_with_notes(estimate_report(result), out.format, out.path)
    return result.verdict
