"""``kldiv compare``: model-vs-model statistics, KL(REFERENCE ‖ CANDIDATE) row by row."""

from functools import partial
from typing import TYPE_CHECKING, Annotated

import typer

from ..choices import Kind, Tail
from ..io import formats
from .app import app
from .boundary import Messages, current, error_boundary
from .groups import (
    Output,
    Side,
    Storage,
    Work,
    gates,
    inputs,
    output,
    slices,
    storage,
    uses,
    work,
)
from .options import FracAboveOpt, StrictOpt, choice, temperature_option
from .output import emit, emit_with_notes
from .runner import run_command

if TYPE_CHECKING:
    from ..io.base import ReadOptions
    from ..jobs.compare import CompareAllResult, CompareRequest
    from ..jobs.gates import Gate, Verdict
    from ..jobs.slices import Slices
    from ..render import Report

_KLD = formats.extensions_text([formats.KLD])
_KEYED = formats.extensions_text([formats.KEYED])

SIDES = inputs(
    Side(
        key="--key",
        columns="--columns",
        key_help=formats.key_help("REFERENCE and each CANDIDATE"),
        columns_help="Columns of CSV/Parquet inputs (names, globs, indices).",
    ),
    Side(key="--reference-key", key_help="As --key, for REFERENCE only."),
    Side(key="--candidate-key", key_help="As --key, for CANDIDATE only."),
)
ROWS_HELP = (
    f"Also write the per-row measures to {formats.kinds_text(formats.STREAMED_KINDS)} "
    "(atomically), or to a stream as CSV (-, /dev/stdout: the statistics then go to stderr)."
)


def _option(name: str, metavar: str, text: str) -> object:
    return typer.Option(name, metavar=metavar, help=text)


@app.command()
@error_boundary
@uses(
    sides=SIDES,
    gates=gates(),
    out=output(ROWS_HELP),
    storage=storage(),
    work=work(),
    parts=slices(),
)
def compare(
    reference: Annotated[
        str,
        typer.Argument(
            metavar="REFERENCE",
            help="The reference (base, teacher) model: p. Logits by default; any format "
            f"({formats.names_text()}: {_KLD} is llama.cpp's log-probabilities), or a top-K "
            "file (kldiv topk); '-' for stdin.",
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
        _option(
            "--label",
            "NAME",
            "A name for each CANDIDATE, in order (repeat; default: the file names).",
        ),
    ] = None,
    as_: Annotated[
        Kind | None, choice(Kind, "--as", help="What both files hold (default: logits).")
    ] = None,
    reference_as: Annotated[
        Kind | None, choice(Kind, "--reference-as", help="What REFERENCE holds.")
    ] = None,
    candidate_as: Annotated[
        Kind | None, choice(Kind, "--candidate-as", help="What CANDIDATE holds.")
    ] = None,
    temperature: Annotated[
        float, temperature_option("Compare softmax(logits / T) on both sides.")
    ] = 1.0,
    tokens: Annotated[
        str | None,
        _option(
            "--tokens",
            "FILE",
            "The next-token id of each row (a file of any format): adds Δp and perplexity "
            f"statistics. Taken from {_KLD} inputs automatically.",
        ),
    ] = None,
    tokens_column: Annotated[
        str | None, _option("--tokens-column", "COL", "The column of a --tokens table.")
    ] = None,
    ignore_index: Annotated[
        int | None,
        _option(
            "--ignore-index",
            "ID",
            "Skip rows whose token is ID (e.g. -100, the masking of TRL and torchtune).",
        ),
    ] = None,
    frac_above: FracAboveOpt = "0.01,0.1,1",
    top: Annotated[
        int | None,
        _option(
            "--top",
            "N",
            "Also report the N rows of largest KL: row, sequence and position (3-D and "
            f"{_KLD} inputs), token and both log-probs (with tokens), every measure.",
        ),
    ] = None,
    tail: Annotated[
        Tail,
        choice(
            Tail,
            "--tail",
            help="A top-K REFERENCE (kldiv topk): measure on its K classes and one tail bucket "
            "(a lower bound of the dense measures), or on the K classes renormalised.",
        ),
    ] = Tail.BUCKET,
    indices_key: Annotated[
        str | None,
        _option(
            "--indices-key", "NAME", f"A top-K REFERENCE in a {_KEYED} file: its class indices."
        ),
    ] = None,
    logprobs_key: Annotated[
        str | None,
        _option(
            "--logprobs-key",
            "NAME",
            f"A top-K REFERENCE in a {_KEYED} file: its log-probabilities.",
        ),
    ] = None,
    html: Annotated[
        str | None,
        _option(
            "--html",
            "PATH",
            "Also write a self-contained HTML report: statistics, per-row KL CDFs, KL by "
            "confidence and position.",
        ),
    ] = None,
    size: Annotated[
        list[str] | None,
        _option(
            "--size",
            "LABEL=BYTES",
            "A candidate's size (repeat): --html plots mean KL against size.",
        ),
    ] = None,
    strict: StrictOpt = False,
    *,
    sides: "tuple[ReadOptions, ReadOptions, ReadOptions]",
    gates: "tuple[Gate, ...]",
    out: Output,
    storage: Storage,
    work: Work,
    parts: "Slices",
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
    from ..jobs.compare import CompareRequest
    from ..jobs.compare import compare_all as run

    shared, own_reference, own_candidate = sides
    request = CompareRequest(
        reference=reference,
        candidate=candidates[0],
        others=tuple(candidates[1:]),
        top=top,
        labels=tuple(label or ()),
        reference_as=reference_as or as_,
        candidate_as=candidate_as or as_,
        temperature=temperature,
        key=shared.key,
        reference_key=own_reference.key,
        candidate_key=own_candidate.key,
        columns=shared.columns,
        delimiter=shared.delimiter,
        missing=shared.missing,
        tokens=tokens,
        tokens_column=tokens_column,
        ignore_index=ignore_index,
        gates=gates,
        output=out.path,
        chunk_rows=work.chunk_rows,
        threads=work.threads,
        strict=strict,
        frac_above=frac_above,
        tail=tail,
        slices=parts,
        html=html,
        sizes=tuple(size or ()),
        indices_key=indices_key,
        logprobs_key=logprobs_key,
    )
    run_command(request, run, partial(_show, out, request), storage)


def _show(out: Output, request: "CompareRequest", result: "CompareAllResult") -> "Verdict":
    """Warnings, the -o rows, the page, then the statistics: on stdout, or on stderr when
    -o puts the rows on stdout; one candidate as llama.cpp prints them."""
    from ..jobs.compare import rows_on_stdout
    from ..render import render_text, resolve_format
    from ..render.compare import compare_all_report, rows_report

    # Every candidate has the reference's warnings: each line once.
    for text in dict.fromkeys(w for r in result.results for w in r.warnings):
        Messages.warn(text)
    if out.path:
        _write_rows(out.path, rows_report(result.results[0]), out.format)
    if request.html:
        _write_page(request.html, result, request.size_of())
    report = compare_all_report(result)
    if rows_on_stdout(out.path):
        text_format = resolve_format(out.format, False)
        current().stderr.write(
            render_text(report, "plain" if text_format == "table" else text_format)
        )
    elif len(result.results) == 1:
        # The statistics read as llama.cpp prints them: plain lines, on a terminal too.
        table = resolve_format(out.format, current().stdout_isatty) == "table"
        emit(report, "plain" if table else out.format, None)
    else:
        emit_with_notes(report, out.format, None, False)
    return result.verdict


def _write_rows(output: str, report: "Report", fmt: str) -> None:
    """The per-row measures to ``-o``: a file atomically, a stream in place (stdout
    through the command's held stdout), in the kind
    :func:`~kldiv_cli.jobs.compare.rows_kind` says."""
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
