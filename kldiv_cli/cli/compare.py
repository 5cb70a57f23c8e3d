"""``kldiv compare``: model-vs-model statistics, KL(REFERENCE ‖ CANDIDATE) row by row."""

from typing import TYPE_CHECKING, Annotated

import typer

from ..choices import Missing, OutputFormat
from ..io import formats
from .app import app
from .boundary import Messages, current, error_boundary
from .options import (
    ByOpt,
    ChunkRowsOpt,
    DebugOpt,
    DelimiterOpt,
    ExcludeTokenIdsOpt,
    FailAboveOpt,
    FailBelowOpt,
    FormatOpt,
    FracAboveOpt,
    LastOpt,
    MissingOpt,
    NoColorOpt,
    PositionsOpt,
    QuietOpt,
    StorageOpt,
    StrictOpt,
    ThreadsOpt,
    TokenIdsOpt,
    slices_of,
)
from .output import (
    emit,
    emit_with_notes,
    exit_if_failed,
)
from .progress import progress
from .runner import (
    configure_storage,
    read_stdin_if_needed,
)

if TYPE_CHECKING:
    from ..jobs.compare import CompareAllResult
    from ..render import Report

_KINDS = "[logits|log-probs|probs]"


_KLD = formats.extensions_text([formats.KLD])
_KEYED = formats.extensions_text([formats.KEYED])


@app.command()
@error_boundary
def compare(
    reference: Annotated[
        str,
        typer.Argument(
            metavar="REFERENCE",
            help="The reference (base, teacher) model: p. Logits by default; any format "
            f"({formats.names_text()}: {_KLD} is llama.cpp's log-probabilities); '-' for stdin.",
            show_default=False,
        ),
    ],
    candidates: Annotated[
        list[str],
        typer.Argument(
            metavar="CANDIDATE...",
            help="The candidate (quantized, student) model: q, same rows and classes. Several: "
            "each is measured against REFERENCE in one pass (REFERENCE is read once).",
            show_default=False,
        ),
    ],
    label: Annotated[
        list[str] | None,
        typer.Option(
            "--label",
            metavar="NAME",
            help="A name for each CANDIDATE, in order (repeat; default: the file names).",
        ),
    ] = None,
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
            help="The next-token id of each row (a file of any format): adds Δp and "
            f"perplexity statistics. Taken from {_KLD} inputs automatically.",
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
        typer.Option("--key", help=formats.key_help("REFERENCE and each CANDIDATE")),
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
    missing: MissingOpt = Missing.ERROR,
    storage_option: StorageOpt = None,
    fail_above: FailAboveOpt = None,
    fail_below: FailBelowOpt = None,
    frac_above: FracAboveOpt = "0.01,0.1,1",
    format: FormatOpt = OutputFormat.AUTO,
    output: Annotated[
        str | None,
        typer.Option(
            "--output",
            "-o",
            metavar="PATH",
            help="Also write the per-row measures to "
            f"{formats.kinds_text(formats.STREAMED_KINDS)} (atomically), "
            "or to a stream as CSV (-, /dev/stdout: the statistics then go to stderr).",
        ),
    ] = None,
    top: Annotated[
        int | None,
        typer.Option(
            "--top",
            metavar="N",
            help="Also report the N rows of largest KL: row, sequence and position (3-D and "
            f"{_KLD} inputs), token and both log-probs (with tokens), every measure.",
        ),
    ] = None,
    tail: Annotated[
        str,
        typer.Option(
            "--tail",
            metavar="[bucket|renormalize]",
            help="A top-K REFERENCE (kldiv topk): measure on its K classes and one tail "
            "bucket (a lower bound of the dense measures), or on the K classes renormalised.",
        ),
    ] = "bucket",
    indices_key: Annotated[
        str | None,
        typer.Option(
            "--indices-key",
            metavar="NAME",
            help=f"A top-K REFERENCE in {_KEYED}: its array of class indices.",
        ),
    ] = None,
    logprobs_key: Annotated[
        str | None,
        typer.Option(
            "--logprobs-key",
            metavar="NAME",
            help=f"A top-K REFERENCE in {_KEYED}: its array of log-probabilities.",
        ),
    ] = None,
    html: Annotated[
        str | None,
        typer.Option(
            "--html",
            metavar="PATH",
            help="Also write a self-contained HTML report: statistics, per-row KL CDFs, KL by "
            "confidence and position.",
        ),
    ] = None,
    size: Annotated[
        list[str] | None,
        typer.Option(
            "--size",
            metavar="LABEL=BYTES",
            help="A candidate's size (repeat): --html plots mean KL against size.",
        ),
    ] = None,
    positions: PositionsOpt = None,
    last: LastOpt = None,
    token_ids: TokenIdsOpt = None,
    exclude_token_ids: ExcludeTokenIdsOpt = None,
    by: ByOpt = None,
    chunk_rows: ChunkRowsOpt = None,
    threads: ThreadsOpt = None,
    strict: StrictOpt = False,
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

      kldiv compare base.npy quant.npy --fail-above kl.trimmed_mean=0.01
      --fail-below topk_agreement.5=0.99

      kldiv compare base.kld quant.kld --fail-above perplexity.ratio=1.01

      kldiv compare base.npy quant.npy -o rows.parquet -q

      kldiv compare base.kld q4.kld q5.kld q8.kld --label Q4 --label Q5 --label Q8

      kldiv compare base_top64.parquet quant.kld   (a top-K reference: kldiv topk)

      kldiv compare base.kld quant.kld --last 64 --by confidence
      --fail-above 'slices[last 64].kl.p99=0.1'

    Each row is one position; the last axis holds the classes. Statistics are named as
    llama.cpp's (mean ± standard error, percentiles 0.1 % … 99.9 %), computed in float64;
    with tokens, its perplexity lines too: PPL(Q), PPL(base), Mean PPL(Q)/PPL(base) and
    PPL(Q)-PPL(base) ± their covariance-aware errors (as tools/perplexity/perplexity.cpp,
    llama.cpp commit 050fc7f3). A side read as logits that looks like probabilities or
    log-probabilities gets a warning naming --as (--strict: an error).
    Output: one line per statistic as llama.cpp prints them (auto, plain, table); -f json
    (the names --fail-above/--fail-below take), csv and markdown (statistic,value rows).
    Several candidates: one row per candidate (every statistic a column), gates apply to
    each, and the paired difference of mean KL of each pair ± its paired standard error.
    """
    from ..jobs.compare import CompareRequest, rows_on_stdout
    from ..jobs.compare import compare_all as run
    from ..render import render_text, resolve_format
    from ..render.compare import compare_all_report, rows_report

    resolve_format(format, False)
    request = CompareRequest(
        reference=reference,
        candidate=candidates[0],
        others=tuple(candidates[1:]),
        top=top,
        labels=tuple(label or ()),
        reference_as=reference_as or as_,
        candidate_as=candidate_as or as_,
        temperature=temperature,
        key=key,
        reference_key=reference_key,
        candidate_key=candidate_key,
        columns=columns,
        delimiter=delimiter,
        missing=missing,
        tokens=tokens,
        tokens_column=tokens_column,
        ignore_index=ignore_index,
        fail_above=tuple(fail_above or ()),
        fail_below=tuple(fail_below or ()),
        output=output,
        chunk_rows=chunk_rows,
        threads=threads,
        strict=strict,
        frac_above=frac_above,
        tail=tail,
        slices=slices_of(positions, last, token_ids, exclude_token_ids, by),
        html=html,
        sizes=tuple(size or ()),
        indices_key=indices_key,
        logprobs_key=logprobs_key,
    )
    configure_storage(storage_option)
    request.validate()  # before stdin is read
    with progress(quiet) as on_progress:
        result = run(request, read_stdin_if_needed(*request.inputs), on_progress)
    # Every candidate has the reference's warnings: each line once.
    for text in dict.fromkeys(w for r in result.results for w in r.warnings):
        Messages.warn(text)
    if output:
        _write_rows(output, rows_report(result.results[0]), format)
    if html:
        _write_page(html, result, request.size_of())
    report = compare_all_report(result)
    if rows_on_stdout(output):
        # stdout holds the per-row table: the statistics go beside the messages.
        text_format = resolve_format(format, False)
        current().stderr.write(
            render_text(report, "plain" if text_format == "table" else text_format)
        )
    elif len(result.results) == 1:
        # The statistics read as llama.cpp prints them: plain lines, on a terminal too.
        table = resolve_format(format, current().stdout_isatty) == "table"
        emit(report, "plain" if table else format, None, no_color)
    else:
        emit_with_notes(report, format, None, no_color)
    exit_if_failed(result.failed_check)


def _write_rows(output: str, report: "Report", fmt: str) -> None:
    """The per-row measures to ``-o``: a file atomically, a stream in place (stdout
    through the command's held stdout), in the kind :func:`~kldiv_cli.jobs.compare.rows_kind` says."""
    from ..io.writers import atomic_write
    from ..jobs.compare import rows_kind
    from ..render.files import report_writer

    kind = rows_kind(output, fmt)
    if kind == "stdout":
        emit(report, "csv", None)
        return
    atomic_write(output, report_writer(kind, report))
    Messages.note(f"wrote {output}")


def _write_page(path: str, result: "CompareAllResult", sizes: dict[str, float]) -> None:
    """``--html``: the report page, atomically."""
    from ..io.writers import atomic_write
    from ..render.compare_html import compare_page

    data = compare_page(result, sizes)
    atomic_write(path, lambda f: f.write(data))
    Messages.note(f"wrote {path}")
