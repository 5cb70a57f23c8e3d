"""``kldiv topk``: a dense reference -> a top-K file (``-k K -o OUT.parquet``), or the
error of each K against a candidate (``--candidate CAND --sweep 1,4,16``)."""

from typing import Annotated

import typer

from ..choices import Missing, OutputFormat
from ..io import formats
from .app import app
from .boundary import Messages, error_boundary
from .options import (
    ChunkRowsOpt,
    DebugOpt,
    DelimiterOpt,
    FormatOpt,
    MissingOpt,
    NoColorOpt,
    QuietOpt,
    StorageOpt,
)
from .output import emit_with_notes
from .runner import configure_storage, read_stdin_if_needed

_KINDS = "[logits|log-probs|probs]"


def _ks(text: str | None) -> tuple[int, ...]:
    from ..errors import UsageError

    if not text:
        return ()
    try:
        return tuple(int(item) for item in text.split(","))
    except ValueError:
        raise UsageError(f"--sweep takes a comma list of whole numbers, got {text!r}") from None


@app.command()
@error_boundary
def topk(
    input: Annotated[
        str,
        typer.Argument(
            metavar="INPUT",
            help=f"The dense reference: any input compare reads ({formats.names_text()}).",
            show_default=False,
        ),
    ],
    k: Annotated[
        int | None, typer.Option("-k", "--k", metavar="K", help="Classes kept per position.")
    ] = None,
    output: Annotated[
        str | None,
        typer.Option(
            "--output",
            "-o",
            metavar="OUT",
            help=f"The top-K file to write ({formats.kinds_text(('parquet',))}).",
        ),
    ] = None,
    candidate: Annotated[
        str | None,
        typer.Option(
            "--candidate", metavar="CAND", help="A candidate to size K against (with --sweep)."
        ),
    ] = None,
    sweep: Annotated[
        str | None,
        typer.Option(
            "--sweep",
            metavar="K,K,...",
            help="Print per K: sparse and dense mean KL, relative error, coverage, bytes "
            "per position.",
        ),
    ] = None,
    tail: Annotated[
        str,
        typer.Option(
            "--tail", metavar="[bucket|renormalize]", help="The sparse measure of --sweep."
        ),
    ] = "bucket",
    as_: Annotated[
        str | None,
        typer.Option("--as", metavar=_KINDS, help="What INPUT holds (default: logits)."),
    ] = None,
    candidate_as: Annotated[
        str | None, typer.Option("--candidate-as", metavar=_KINDS, help="What CAND holds.")
    ] = None,
    temperature: Annotated[
        float, typer.Option("--temperature", "-T", help="Keep softmax(logits / T).")
    ] = 1.0,
    tokens: Annotated[
        str | None,
        typer.Option(
            "--tokens", metavar="FILE", help="The next-token id of each row: a token column."
        ),
    ] = None,
    tokens_column: Annotated[
        str | None,
        typer.Option("--tokens-column", metavar="COL", help="The column of a --tokens table."),
    ] = None,
    key: Annotated[str | None, typer.Option("--key", help=formats.key_help("INPUT"))] = None,
    columns: Annotated[
        str | None,
        typer.Option("--columns", metavar="COLS", help="Columns of CSV/Parquet inputs."),
    ] = None,
    delimiter: DelimiterOpt = None,
    missing: MissingOpt = Missing.ERROR,
    storage_option: StorageOpt = None,
    format: FormatOpt = OutputFormat.AUTO,
    chunk_rows: ChunkRowsOpt = None,
    quiet: QuietOpt = False,
    no_color: NoColorOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Keep a reference's top-K log-probabilities (and the log of the rest) per position.

    Examples:

      kldiv topk base.kld -k 64 -o base_top64.parquet

      kldiv compare base_top64.parquet quant.kld

      kldiv topk base.kld --candidate quant.kld --sweep 1,4,16,64,256

    Columns: indices (list<int32>, most probable first), logprobs (list<float32>, log p
    under the full distribution), tail_logprob (float64, log of the remaining mass), and
    token (with tokens). compare measures a candidate against such a file on the K
    classes and one tail bucket: a lower bound of the dense measures (data-processing
    inequality). --sweep prints, per K, what that costs in accuracy and in bytes.
    """
    from ..jobs.topk import TopKRequest
    from ..jobs.topk import sweep as run_sweep
    from ..jobs.topk import write as run_write
    from ..render import resolve_format
    from ..render.topk import sweep_report, write_report

    resolve_format(format, False)
    request = TopKRequest(
        input=input,
        k=k,
        output=output,
        kind=as_,
        candidate_kind=candidate_as or as_,
        temperature=temperature,
        key=key,
        columns=columns,
        delimiter=delimiter,
        missing=missing,
        tokens=tokens,
        tokens_column=tokens_column,
        candidate=candidate,
        sweep=_ks(sweep),
        tail=tail,
        chunk_rows=chunk_rows,
    )
    configure_storage(storage_option)
    request.validate()  # before stdin is read
    stdin = read_stdin_if_needed(input, candidate, tokens)
    if request.output is not None:
        written = run_write(request, stdin)
        report = write_report(written)
        if format == "json":
            emit_with_notes(report, format, None, no_color)
        else:
            Messages.note(f"wrote {written.output}")
            for line in report.plain if isinstance(report.plain, list) else []:
                Messages.note(line)
        return
    emit_with_notes(sweep_report(run_sweep(request, stdin)), format, None, no_color)
