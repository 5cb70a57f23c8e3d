"""``kldiv topk``: a dense reference -> a top-K file (``-k K -o OUT.parquet``), or the
error of each K against a candidate (``--candidate CAND --sweep 1,4,16``)."""

from functools import partial
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ..choices import Kind, Tail
from ..io import formats
from .app import app
from .boundary import Messages, error_boundary
from .groups import Output, Side, Storage, inputs, output, storage, uses
from .options import ChunkRowsOpt, choice
from .output import emit_with_notes
from .runner import run_command

if TYPE_CHECKING:
    from ..io.base import ReadOptions
    from ..jobs.gates import Verdict
    from ..jobs.topk import TopKRequest

SIDES = inputs(
    Side(
        key="--key",
        columns="--columns",
        key_help=formats.key_help("INPUT and CAND"),
        columns_help="Columns of CSV/Parquet inputs (names, globs, indices).",
    )
)
OUT_HELP = f"The top-K file to write ({formats.kinds_text(('parquet',))})."


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
@uses(sides=SIDES, out=output(OUT_HELP), storage=storage())
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
        Tail, choice(Tail, "--tail", help="The sparse measure of --sweep.")
    ] = Tail.BUCKET,
    as_: Annotated[
        Kind | None, choice(Kind, "--as", help="What INPUT holds (default: logits).")
    ] = None,
    candidate_as: Annotated[
        Kind | None, choice(Kind, "--candidate-as", help="What CAND holds.")
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
    chunk_rows: ChunkRowsOpt = None,
    *,
    sides: "tuple[ReadOptions]",
    out: Output,
    storage: Storage,
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

    (side,) = sides
    request = TopKRequest(
        input=input,
        k=k,
        output=out.path,
        kind=as_,
        candidate_kind=candidate_as or as_,
        temperature=temperature,
        key=side.key,
        columns=side.columns,
        delimiter=side.delimiter,
        missing=side.missing,
        tokens=tokens,
        tokens_column=tokens_column,
        candidate=candidate,
        sweep=_ks(sweep),
        tail=tail,
        chunk_rows=chunk_rows,
    )
    run_command(request, _run, partial(_show, out), storage)


def _run(request: "TopKRequest", stdin: bytes | None, _progress: Any) -> Any:
    from ..jobs.topk import sweep, write

    return write(request, stdin) if request.output is not None else sweep(request, stdin)


def _show(out: Output, result: Any) -> "Verdict":
    """The file written (notes; JSON with -f json), or the sweep's table."""
    from ..jobs.gates import Verdict
    from ..jobs.topk import WriteResult
    from ..render.topk import sweep_report, write_report

    if not isinstance(result, WriteResult):
        emit_with_notes(sweep_report(result), out.format, None, False)
        return Verdict()
    report = write_report(result)
    if out.format == "json":
        emit_with_notes(report, out.format, None, False)
    else:
        for line in report.plain if isinstance(report.plain, list) else []:
            Messages.note(line)
    return Verdict()
