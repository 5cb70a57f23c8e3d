"""``kldiv compute``: torch's kl_div on two files."""

from typing import Annotated

import typer

from .app import app
from .boundary import Messages, error_boundary
from .options import (
    ChunkRowsOpt,
    DebugOpt,
    DelimiterOpt,
    EngineOpt,
    FormatOpt,
    MissingOpt,
    NoColorOpt,
    OutputOpt,
    QuietOpt,
    SchedulerFileOpt,
    SchedulerOpt,
    StorageOpt,
    StrictOpt,
    ThreadsOpt,
    TimeoutOpt,
    WorkersOpt,
    configure_storage,
    emit,
    exit_if_failed,
    progress,
    read_options,
    read_stdin_if_needed,
)


@app.command()
@error_boundary
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
        str,
        typer.Option(
            "--reduction",
            "-r",
            metavar="[mean|batchmean|sum|none]",
            help="As torch: mean (default, divides by every element; warns), batchmean "
            "(divides by the batch size: the KL per sample), sum, none (pointwise).",
        ),
    ] = "mean",
    log_target: Annotated[bool, typer.Option("--log-target", help="TARGET holds log p.")] = False,
    input_transform: Annotated[
        str,
        typer.Option(
            "--input-transform",
            metavar="[none|softmax|log-softmax|log|exp]",
            help="Convert INPUT first, e.g. log-softmax for logits, log for probabilities.",
        ),
    ] = "none",
    target_transform: Annotated[
        str,
        typer.Option(
            "--target-transform",
            metavar="[none|softmax|log-softmax|log|exp]",
            help="Convert TARGET first, e.g. softmax for teacher logits.",
        ),
    ] = "none",
    dim: Annotated[int, typer.Option("--dim", help="Axis of the (log-)softmax.")] = -1,
    temperature: Annotated[
        float,
        typer.Option(
            "--temperature", "-T", help="Divide logits by T before a (log-)softmax, on both sides."
        ),
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
    input_format: Annotated[
        str | None,
        typer.Option(
            "--input-format",
            metavar="FMT",
            help="npy, npz, csv, tsv, parquet, arrow, safetensors or kld (default: by extension).",
        ),
    ] = None,
    target_format: Annotated[
        str | None, typer.Option("--target-format", metavar="FMT", help="As --input-format.")
    ] = None,
    input_key: Annotated[
        str | None,
        typer.Option("--input-key", help="Array (.npz) or tensor (.safetensors) name in INPUT."),
    ] = None,
    target_key: Annotated[
        str | None,
        typer.Option("--target-key", help="Array (.npz) or tensor (.safetensors) name in TARGET."),
    ] = None,
    input_columns: Annotated[
        str | None,
        typer.Option(
            "--input-columns",
            metavar="COLS",
            help="Comma-separated names, globs (s_*) or 0-based indices; default: all numeric columns.",
        ),
    ] = None,
    target_columns: Annotated[
        str | None, typer.Option("--target-columns", metavar="COLS", help="As --input-columns.")
    ] = None,
    delimiter: DelimiterOpt = None,
    missing: MissingOpt = "error",
    format: FormatOpt = "auto",
    output: OutputOpt = None,
    fail_above: Annotated[
        float | None,
        typer.Option(
            "--fail-above",
            metavar="X",
            help="Exit 1 if the loss (the largest row with --per-row) is above X or NaN.",
        ),
    ] = None,
    strict: StrictOpt = False,
    threads: ThreadsOpt = None,
    chunk_rows: ChunkRowsOpt = None,
    engine: EngineOpt = "local",
    scheduler: SchedulerOpt = None,
    scheduler_file: SchedulerFileOpt = None,
    workers: WorkersOpt = None,
    timeout: TimeoutOpt = 10.0,
    storage_option: StorageOpt = None,
    quiet: QuietOpt = False,
    no_color: NoColorOpt = False,
    debug: DebugOpt = False,
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
    """
    from ..jobs.compute import ComputeRequest, EngineOptions, check
    from ..jobs.compute import compute as run
    from ..render import resolve_format
    from ..render.reports import compute_report

    resolve_format(format, False)
    request = ComputeRequest(
        input=input,
        target=target,
        input_options=read_options(
            input_format,
            input_key,
            input_columns,
            delimiter,
            missing,
            key_option="--input-key",
            format_option="--input-format",
            columns_option="--input-columns",
        ),
        target_options=read_options(
            target_format,
            target_key,
            target_columns,
            delimiter,
            missing,
            key_option="--target-key",
            format_option="--target-format",
            columns_option="--target-columns",
        ),
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
        output=output if output != "-" else None,
        threads=threads,
        chunk_rows=chunk_rows,
        engine=engine,
        engine_options=EngineOptions(scheduler, scheduler_file, workers, timeout),
    )
    configure_storage(storage_option)
    check(request)  # before stdin is read
    with progress(quiet) as on_progress:
        result = run(
            request,
            read_stdin_if_needed(input, target),
            progress=on_progress,
            note=Messages.note,
        )
    for text in result.warnings + result.diagnostics:
        Messages.warn(text)
    if result.written:
        Messages.note(f"wrote {result.written}")
    else:
        emit(compute_report(result), format, output, no_color)
    exit_if_failed(result.failed_check)
