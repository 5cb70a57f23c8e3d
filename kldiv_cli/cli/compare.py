"""``kldiv compare``: model-vs-model statistics, KL(REFERENCE ‖ CANDIDATE) row by row."""

import os
from typing import Annotated

import typer

from .app import app
from .boundary import Messages, current, error_boundary
from .options import (
    ChunkRowsOpt,
    DebugOpt,
    DelimiterOpt,
    FailAboveOpt,
    FailBelowOpt,
    FormatOpt,
    MissingOpt,
    NoColorOpt,
    QuietOpt,
    ThreadsOpt,
    exit_if_failed,
    progress,
    read_options,
    read_stdin_if_needed,
)

_KINDS = "[logits|log-probs|probs]"


@app.command()
@error_boundary
def compare(
    reference: Annotated[
        str,
        typer.Argument(
            metavar="REFERENCE",
            help="The reference (base, teacher) model: p. Logits by default; .safetensors, "
            ".kld (llama.cpp) or any format compute reads; '-' for stdin.",
            show_default=False,
        ),
    ],
    candidate: Annotated[
        str,
        typer.Argument(
            metavar="CANDIDATE",
            help="The candidate (quantized, student) model: q, same rows and classes.",
            show_default=False,
        ),
    ],
    as_: Annotated[
        str | None,
        typer.Option("--as", metavar=_KINDS, help="What both files hold (default: logits)."),
    ] = None,
    reference_as: Annotated[
        str | None, typer.Option("--reference-as", metavar=_KINDS, help="What REFERENCE holds.")
    ] = None,
    candidate_as: Annotated[
        str | None, typer.Option("--candidate-as", metavar=_KINDS, help="What CANDIDATE holds.")
    ] = None,
    temperature: Annotated[
        float,
        typer.Option("--temperature", "-T", help="Compare softmax(logits / T) on both sides."),
    ] = 1.0,
    tokens: Annotated[
        str | None,
        typer.Option(
            "--tokens",
            metavar="FILE",
            help="The next-token id of each row (.npy, CSV, Parquet...): adds Δp and "
            "perplexity statistics. Taken from .kld inputs automatically.",
        ),
    ] = None,
    tokens_column: Annotated[
        str | None,
        typer.Option("--tokens-column", metavar="COL", help="The column of a --tokens table."),
    ] = None,
    ignore_index: Annotated[
        int | None,
        typer.Option(
            "--ignore-index",
            metavar="ID",
            help="Skip rows whose token is ID (e.g. -100, the masking of TRL and torchtune).",
        ),
    ] = None,
    key: Annotated[
        str | None,
        typer.Option(
            "--key", help="Tensor name in .safetensors / array name in .npz (both sides)."
        ),
    ] = None,
    reference_key: Annotated[
        str | None, typer.Option("--reference-key", help="As --key, for REFERENCE only.")
    ] = None,
    candidate_key: Annotated[
        str | None, typer.Option("--candidate-key", help="As --key, for CANDIDATE only.")
    ] = None,
    columns: Annotated[
        str | None,
        typer.Option(
            "--columns",
            metavar="COLS",
            help="Columns of CSV/Parquet inputs (names, globs, indices).",
        ),
    ] = None,
    delimiter: DelimiterOpt = None,
    missing: MissingOpt = "error",
    fail_above: FailAboveOpt = None,
    fail_below: FailBelowOpt = None,
    format: FormatOpt = "auto",
    output: Annotated[
        str | None,
        typer.Option(
            "--output",
            "-o",
            metavar="PATH",
            help="Also write the per-row measures to .npy, .csv or .parquet (atomically).",
        ),
    ] = None,
    chunk_rows: ChunkRowsOpt = None,
    threads: ThreadsOpt = None,
    quiet: QuietOpt = False,
    no_color: NoColorOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Compare two models' distributions row by row: KL both ways, JS, TV, top-1 agreement.

    compare puts the reference first: KL(REFERENCE ‖ CANDIDATE); unlike compute,
    whose order is torch's (INPUT, TARGET).

    Examples:

      kldiv compare base_logits.npy quant_logits.npy

      kldiv compare base.kld quant.kld -f json

      kldiv compare teacher.safetensors student.safetensors --key logits --tokens labels.npy
      --ignore-index -100

      kldiv compare base.npy quant.npy --fail-above kl.p99=0.1 --fail-below top1_agreement=0.97

      kldiv compare base.npy quant.npy -o rows.parquet -q

    Each row is one position; the last axis holds the classes. Statistics are named as
    llama.cpp's (mean ± standard error, percentiles 0.1 % … 99.9 %), computed in float64.
    Output: one line per statistic as llama.cpp prints them (auto, plain, table); -f json
    (the names --fail-above/--fail-below take), csv and markdown (statistic,value rows).
    """
    from ..errors import UsageError
    from ..io.base import ReadOptions
    from ..io.writers import (
        OUTPUT_EXTENSIONS,
        STREAMED_KINDS,
        check_outputs,
        output_kind,
        write_report,
    )
    from ..jobs.compare import CompareRequest
    from ..jobs.compare import compare as run
    from ..jobs.gates import parse_gates
    from ..render import print_report, render_text, resolve_format
    from ..render.compare import compare_report, rows_report

    resolve_format(format, False)
    gates = parse_gates(fail_above or (), fail_below or ())

    def side(path: str, own_key: str | None) -> ReadOptions:
        # --key and --columns apply to the sides they can: --key to files of several
        # arrays, --columns to tables.
        ext = os.path.splitext(path)[1].lower()
        shared_key = key if ext in (".safetensors", ".npz") else None
        cols = None if ext in (".npy", ".npz", ".safetensors", ".kld") else columns
        return read_options(
            None,
            own_key or shared_key,
            cols,
            delimiter,
            missing,
            key_option="--key",
            format_option=None,
        )

    request = CompareRequest(
        reference=reference,
        candidate=candidate,
        reference_as=reference_as or as_,
        candidate_as=candidate_as or as_,
        temperature=temperature,
        reference_options=side(reference, reference_key),
        candidate_options=side(candidate, candidate_key),
        tokens=tokens,
        tokens_options=read_options(
            None, None, tokens_column, delimiter, missing, key_option=None, format_option=None
        ),
        ignore_index=ignore_index,
        gates=gates,
        chunk_rows=chunk_rows,
        threads=threads,
    )
    request.validate()
    if output is not None:
        ext = os.path.splitext(output)[1].lower()
        if output == "-" or OUTPUT_EXTENSIONS.get(ext) not in STREAMED_KINDS:
            raise UsageError(
                f"-o {output}: the per-row measures go to a .npy, .csv or .parquet file "
                "(the statistics go to stdout)"
            )
        output_kind(output)
    check_outputs([output], [reference, candidate, *([tokens] if tokens else [])])
    stdin = read_stdin_if_needed(reference, candidate, *([tokens] if tokens else []))
    with progress(quiet) as on_progress:
        result = run(request, stdin, on_progress)
    for text in result.warnings:
        Messages.warn(text)
    if output:
        write_report(output, rows_report(result))
        Messages.note(f"wrote {output}")
    report = compare_report(result)
    env = current()
    resolved = resolve_format(format, env.stdout_isatty)
    if resolved in ("table", "plain"):
        env.stdout.write(render_text(report, "plain"))
    else:
        print_report(report, resolved, env.stdout, env.color)
    env.stdout.flush()
    exit_if_failed(result.failed_check)
