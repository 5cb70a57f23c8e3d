"""``kldiv estimate``: the KL estimators RL frameworks log, from sampled tokens' log-probs."""

from typing import Annotated

import typer

from .app import app
from .boundary import Messages, error_boundary
from .options import (
    DebugOpt,
    DelimiterOpt,
    FailAboveOpt,
    FailBelowOpt,
    FormatOpt,
    FracAboveOpt,
    MissingOpt,
    NoColorOpt,
    OutputOpt,
    QuietOpt,
    StorageOpt,
    StrictOpt,
    configure_storage,
    emit_with_notes,
    exit_if_failed,
    read_options,
    read_stdin_if_needed,
)


@app.command()
@error_boundary
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
        str,
        typer.Option(
            "--estimator",
            "-e",
            metavar="[k1|k2|k3|abs|all]",
            help="With log r = REF_LOGP - LOGP: k1 = -log r, k2 = (log r)^2/2, "
            "k3 = r - 1 - log r, abs = |log r|; all (default) reports the four.",
        ),
    ] = "all",
    clamp: Annotated[
        str,
        typer.Option(
            "--clamp",
            metavar="[none|openrlhf|verl|LO,HI]",
            help="none (TRL, default); openrlhf: each estimate to [-10, 10]; verl: k3 with "
            "log r clamped to +-20 and the result to +-10; LO,HI: each estimate to [LO, HI].",
        ),
    ] = "none",
    aggregate: Annotated[
        str,
        typer.Option(
            "--aggregate",
            "-a",
            metavar="MODE",
            help="verl 0.9.1's agg_loss modes: token-mean (over all tokens, the default), "
            "seq-mean-token-mean, seq-mean-token-sum, seq-mean-token-sum-norm (the mean "
            "sequence sum / L), token-sum; seq-mean-token-sum-norm-verl0.7 (verl 0.4-0.7: "
            "the total / L); sum (= token-sum).",
        ),
    ] = "token-mean",
    empty_sequences: Annotated[
        str,
        typer.Option(
            "--empty-sequences",
            metavar="[skip|zero]",
            help="Sequences with no token in the seq-mean modes: skip (verl's agg_loss, "
            "the default) or zero (count as 0 KL: TRL PPO's objective/kl).",
        ),
    ] = "skip",
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
    logp_columns: Annotated[
        str | None,
        typer.Option(
            "--logp-columns",
            metavar="COLS",
            help="LOGP's columns: names, globs (lp_*) or 0-based indices (one with "
            "--sequence-column); default all numeric columns.",
        ),
    ] = None,
    ref_columns: Annotated[
        str | None,
        typer.Option("--ref-columns", metavar="COLS", help="As --logp-columns, for REF_LOGP."),
    ] = None,
    mask_columns: Annotated[
        str | None,
        typer.Option("--mask-columns", metavar="COLS", help="As --logp-columns, for --mask."),
    ] = None,
    logp_key: Annotated[
        str | None, typer.Option("--logp-key", help="Array name inside a LOGP .npz.")
    ] = None,
    ref_key: Annotated[
        str | None, typer.Option("--ref-key", help="Array name inside a REF_LOGP .npz.")
    ] = None,
    mask_key: Annotated[
        str | None, typer.Option("--mask-key", help="Array name inside a --mask .npz.")
    ] = None,
    logp_format: Annotated[
        str | None,
        typer.Option(
            "--logp-format",
            metavar="FMT",
            help="npy, npz, csv, tsv, parquet or arrow (default: by extension).",
        ),
    ] = None,
    ref_format: Annotated[
        str | None, typer.Option("--ref-format", metavar="FMT", help="As --logp-format.")
    ] = None,
    delimiter: DelimiterOpt = None,
    missing: MissingOpt = "error",
    storage_option: StorageOpt = None,
    format: FormatOpt = "auto",
    output: OutputOpt = None,
    fail_above: FailAboveOpt = None,
    fail_below: FailBelowOpt = None,
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
    strict: StrictOpt = False,
    quiet: QuietOpt = False,
    no_color: NoColorOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Estimate KL(pi || pi_ref) from the log-probabilities of sampled tokens, as RL
    frameworks log it (Schulman's k1, k2, k3), with diagnostics.

    Examples:

      kldiv estimate logp.npy ref_logp.npy --mask mask.npy

      kldiv estimate logp.npy ref_logp.npy --mask mask.npy -e k3 --clamp verl

      kldiv estimate rollout.csv rollout.csv --sequence-column seq --logp-columns 1 --ref-columns 2

      kldiv estimate trainer.npy vllm.npy --fail-above k3=0.05 --fail-below diagnostics.ess=0.9

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
    from ..jobs.gates import parse_thresholds
    from ..render import resolve_format
    from ..render.estimate import estimate_report

    resolve_format(format, False)
    request = EstimateRequest(
        logp=logp,
        ref_logp=ref_logp,
        logp_options=read_options(
            logp_format,
            logp_key,
            logp_columns,
            delimiter,
            missing,
            key_option="--logp-key",
            format_option="--logp-format",
            columns_option="--logp-columns",
        ),
        ref_options=read_options(
            ref_format,
            ref_key,
            ref_columns,
            delimiter,
            missing,
            key_option="--ref-key",
            format_option="--ref-format",
            columns_option="--ref-columns",
        ),
        mask=mask,
        mask_options=read_options(
            None,
            mask_key,
            mask_columns,
            delimiter,
            missing,
            key_option="--mask-key",
            columns_option="--mask-columns",
            format_option=None,
            booleans=True,
        ),
        pad_value=pad_value,
        sequence_column=sequence_column,
        estimator=estimator,
        clamp=clamp,
        aggregate=aggregate,
        norm_length=norm_length,
        empty_sequences=empty_sequences,
        strict=strict,
        fail_above=tuple(fail_above or ()),
        fail_below=tuple(fail_below or ()),
        output=output if output != "-" else None,
        frac_above=parse_thresholds(frac_above),
        top=top,
    )
    configure_storage(storage_option)
    request.validate()  # before stdin is read
    result = run(request, read_stdin_if_needed(logp, ref_logp))
    for text in result.warnings:
        Messages.warn(text)
    emit_with_notes(estimate_report(result), format, output, no_color)
    exit_if_failed(result.failed_check)
