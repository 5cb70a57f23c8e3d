"""``kldiv compute``: torch's kl_div on two files."""

from functools import partial
from typing import TYPE_CHECKING, Annotated

import typer

from ..choices import Reduction, Tail, Transform
from ..io import formats
from .app import app
from .boundary import Messages, error_boundary
from .groups import (
    Cluster,
    Output,
    Side,
    Storage,
    Work,
    cluster,
    inputs,
    output,
    storage,
    uses,
    work,
)
from .options import StrictOpt, choice, temperature_option
from .output import emit
from .runner import run_command

if TYPE_CHECKING:
    from ..io.base import ReadOptions
    from ..jobs.compute import ComputeResult
    from ..jobs.gates import Verdict

SIDES = inputs(
    Side(
        "--input-format",
        "--input-key",
        "--input-columns",
        format_help=formats.format_help(),
        key_help=formats.key_help("INPUT"),
        columns_help="Comma-separated names, globs (s_*) or 0-based indices; default: all numeric columns.",
    ),
    Side(
        "--target-format",
        "--target-key",
        "--target-columns",
        format_help="As --input-format.",
        key_help=formats.key_help("TARGET"),
        columns_help="As --input-columns.",
    ),
)


@app.command()
@error_boundary
@uses(sides=SIDES, out=output(), cluster=cluster(), work=work(), storage=storage())
def compute(
    input: Annotated[
        str,
        typer.Argument(
            metavar="INPUT",
            help="The model's log-probabilities log q (or logits/probabilities with --input-transform); '-' for stdin.",
            show_default=False,
        ),
    ],
    target: Annotated[
        str,
        typer.Argument(
            metavar="TARGET",
            help="The observed distribution p (log p with --log-target); '-' for stdin.",
            show_default=False,
        ),
    ],
    reduction: Annotated[
        Reduction,
        choice(
            Reduction,
            "--reduction",
            "-r",
            help="As torch: mean (default, divides by every element; warns), batchmean "
            "(divides by the batch size: the KL per sample), sum, none (pointwise).",
        ),
    ] = Reduction.MEAN,
    log_target: Annotated[bool, typer.Option("--log-target", help="TARGET holds log p.")] = False,
    input_transform: Annotated[
        Transform,
        choice(
            Transform,
            "--input-transform",
            help="Convert INPUT first, e.g. log-softmax for logits, log for probabilities.",
        ),
    ] = Transform.NONE,
    target_transform: Annotated[
        Transform,
        choice(
            Transform,
            "--target-transform",
            help="Convert TARGET first, e.g. softmax for teacher logits.",
        ),
    ] = Transform.NONE,
    dim: Annotated[int, typer.Option("--dim", help="Axis of the (log-)softmax.")] = -1,
    temperature: Annotated[
        float, temperature_option("Divide logits by T before a (log-)softmax, on both sides.")
    ] = 1.0,
    t2_scale: Annotated[
        bool,
        typer.Option("--t2-scale", help="Multiply the loss by T^2 (the distillation convention)."),
    ] = False,
    per_row: Annotated[
        bool, typer.Option("--per-row", help="One KL value per row (sum over the last axis).")
    ] = False,
    top: Annotated[
        int | None,
        typer.Option("--top", metavar="K", help="Show the K rows with the largest KL."),
    ] = None,
    target_labels: Annotated[
        bool,
        typer.Option(
            "--target-labels",
            help="TARGET holds integer class indices; one-hot them to INPUT's width.",
        ),
    ] = False,
    fail_above: Annotated[
        float | None,
        typer.Option(
            "--fail-above",
            metavar="X",
            help="Exit 1 if the loss (the largest row with --per-row) is above X or NaN.",
        ),
    ] = None,
    tail: Annotated[
        Tail,
        choice(
            Tail,
            "--tail",
            help="A top-K TARGET (kldiv topk): KL on its K classes and one tail bucket (a "
            "lower bound of the dense KL), or on the K classes renormalised.",
        ),
    ] = Tail.BUCKET,
    indices_key: Annotated[
        str | None,
        typer.Option("--indices-key", metavar="NAME", help="A top-K TARGET's class indices array."),
    ] = None,
    logprobs_key: Annotated[
        str | None,
        typer.Option(
            "--logprobs-key", metavar="NAME", help="A top-K TARGET's log-probabilities array."
        ),
    ] = None,
    strict: StrictOpt = False,
    *,
    sides: "tuple[ReadOptions, ReadOptions]",
    out: Output,
    cluster: Cluster,
    work: Work,
    storage: Storage,
) -> None:
    """Compute KL(TARGET || INPUT), exactly as torch.nn.functional.kl_div(INPUT, TARGET).

    The argument order is torch's: INPUT (the model, log q) first, TARGET (the
    data, p) second, although the maths writes KL(p || q) with the target first.

    Examples:

      kldiv compute student.npy teacher.npy -r batchmean

      kldiv compute student_logits.npy teacher_logits.parquet --input-transform log-softmax
      --target-transform softmax -T 2 --t2-scale -r batchmean

      kldiv compute pred.csv labels.csv --target-labels --per-row --top 5

      kldiv compute a.npy b.npy -r batchmean --fail-above 0.05 -q

      kldiv compute student_logits.npy teacher_top64.parquet --input-transform log-softmax
      -r batchmean   (a top-K TARGET: kldiv topk; a lower bound of the dense KL)
    """
    from ..jobs.compute import ComputeRequest, check
    from ..jobs.compute import compute as run

    request = ComputeRequest(
        input,
        target,
        *sides,
        reduction=reduction,
        log_target=log_target,
        input_transform=input_transform,
        target_transform=target_transform,
        dim=dim,
        temperature=temperature,
        t2_scale=t2_scale,
        per_row=per_row,
        top=top,
        target_labels=target_labels,
        fail_above=fail_above,
        strict=strict,
        tail=tail,
        indices_key=indices_key,
        logprobs_key=logprobs_key,
        output=out.file,
        threads=work.threads,
        chunk_rows=work.chunk_rows,
        engine=cluster.engine,
        engine_options=cluster.options,
    )
    job = partial(run, note=Messages.note)
    run_command(
        request,
        lambda r, stdin, bar: job(r, stdin, progress=bar),
        partial(_show, out),
        storage,
        check=check,  # the request, and the limits of the engine it names
    )


def _show(out: Output, result: "ComputeResult") -> "Verdict":
    """Warnings and diagnostics on stderr; the result on stdout or in -o (unless the
    job wrote -o itself, streaming)."""
    from ..render.reports import compute_report

    for text in result.warnings + result.diagnostics:
        Messages.warn(text)
    if result.written:
        Messages.note(f"wrote {result.written}")
    else:
        emit(compute_report(result), out.format, out.path)
    return result.verdict
