"""The ``topk`` job: a dense reference -> a top-K file, and how large K must be.

:func:`write` reads any input ``compare`` reads, block of rows by block, and writes
each row's K most probable classes, their log-probabilities and the log of the rest
(:mod:`kldiv_cli.core.topk`) to Parquet (:func:`kldiv_cli.io.topk.write_topk`, one row
group per block). :func:`sweep` measures a candidate against the dense reference and
against its top-K file for several K in one pass, so the storage is sized before it
is written. Never prints.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..core.compare import KINDS, distribution, pair, row_measures
from ..core.engine import combine
from ..core.topk import TAILS, cells, log_rest, top_classes
from ..errors import InputError, UsageError
from ..io.sources import ReadOptions, Source, open_source
from ..io.topk import TopKBlock, topk_bytes, write_topk
from ..io.writers import guard
from .compare_inputs import kind_of, layout, read_tokens, row_blocks, sequences, side_options

__all__ = ["SweepResult", "TopKRequest", "WriteResult", "sweep", "write"]

#: Elements of the input per block (as compare's blocks).
BLOCK_ELEMENTS = 1 << 17


@dataclass(frozen=True)
class TopKRequest:
    """What ``kldiv topk`` was asked: ``-k K -o OUT`` (write) or ``--candidate CAND
    --sweep K,K…`` (size K)."""

    input: str
    k: int | None = None
    output: str | None = None
    #: What INPUT (and the candidate) hold (see :data:`kldiv_cli.core.compare.KINDS`).
    kind: str | None = None
    candidate_kind: str | None = None
    temperature: float = 1.0
    key: str | None = None
    columns: str | None = None
    delimiter: str | None = None
    missing: str = "error"
    tokens: str | None = None
    tokens_column: str | None = None
    candidate: str | None = None
    sweep: tuple[int, ...] = ()
    tail: str = "bucket"
    chunk_rows: int | None = None

    def options(self, path: str) -> ReadOptions:
        """How INPUT or the candidate is read (``--key`` for arrays, ``--columns`` for tables)."""
        return side_options(path, self.key, self.columns, self.delimiter, self.missing)

    @property
    def inputs(self) -> tuple[str | None, ...]:
        """The paths the job reads."""
        return (self.input, self.candidate, self.tokens)

    @property
    def tokens_options(self) -> ReadOptions:
        return ReadOptions(None, None, self.tokens_column, self.delimiter, self.missing)

    def validate(self) -> None:
        """Usage errors before anything is read."""
        for option, kind in (("--as", self.kind), ("--candidate-as", self.candidate_kind)):
            if kind is not None and kind not in KINDS:
                raise UsageError(
                    f"{option}: unknown kind {kind!r}; choose one of {', '.join(KINDS)}"
                )
        if not (math.isfinite(self.temperature) and self.temperature > 0):
            raise UsageError(f"--temperature must be a finite number > 0, got {self.temperature}")
        if self.tail not in TAILS:
            raise UsageError(f"--tail: unknown {self.tail!r}; choose one of {', '.join(TAILS)}")
        writing = self.k is not None or self.output is not None
        sizing = self.candidate is not None or bool(self.sweep)
        if writing == sizing:
            raise UsageError(
                "give -k K -o OUT.parquet (write a top-K file) or --candidate CAND --sweep 1,4,16 (size K)"
            )
        if writing and (self.k is None or self.output is None):
            raise UsageError("writing a top-K file needs both -k K and -o OUT.parquet")
        if sizing and (self.candidate is None or not self.sweep):
            raise UsageError("sizing K needs both --candidate CAND and --sweep K,K,...")
        for k in (self.k, *self.sweep):
            if k is not None and k < 1:
                raise UsageError(f"K must be at least 1, got {k}")
        if self.chunk_rows is not None and self.chunk_rows < 1:
            raise UsageError(f"--chunk-rows must be at least 1, got {self.chunk_rows}")
        if self.output is not None:
            from ..io.writers import output_kind

            output_kind(self.output, ("parquet",), "-o")
        inputs = [self.input, *(p for p in (self.candidate, self.tokens) if p)]
        guard([self.output], inputs)


@dataclass
class WriteResult:
    """A top-K file written."""

    output: str
    rows: int
    k: int
    bytes: int
    #: The reference's top-K mass: mean and min over the rows.
    coverage: dict[str, float]
    input: dict[str, Any] = field(default_factory=dict)
    tokens: str | None = None


@dataclass
class SweepResult:
    """Per K: the sparse and dense mean KL, their relative error, the coverage and the
    bytes per position of the top-K file."""

    rows: int
    tail: str
    sweep: list[dict[str, Any]]
    reference: dict[str, Any] = field(default_factory=dict)
    candidate: dict[str, Any] = field(default_factory=dict)


def _open(request: TopKRequest, path: str, stdin: bytes | None) -> tuple[Source, int, int]:
    src = open_source(path, request.options(path), stdin)
    rows, width = layout(src, request.options(path))
    return src, rows, width


def _sparse(lp: np.ndarray, indices: np.ndarray) -> TopKBlock:
    """The top-K rows of ``lp`` (float64 log p) at ``indices``, log-probabilities rounded
    to float32 as the file stores them."""
    rows = np.arange(len(lp))[:, None]
    stored = lp[rows, indices].astype(np.float32).astype(np.float64)
    return TopKBlock(indices, stored, log_rest(lp, indices))


def _log_probs(
    block: np.ndarray, kind: str, temperature: float, label: str, start: int
) -> np.ndarray:
    """``log p`` of each row (float64); a row with NaN (or no class with p > 0) is an error."""
    lp, _ = distribution(block, kind, temperature)
    bad = np.isnan(lp).any(axis=1) | (lp == np.inf).any(axis=1)
    if bad.any():
        raise InputError(
            label, f"row {start + int(np.argmax(bad))} is not a distribution (NaN or +inf)"
        )
    return lp


def write(request: TopKRequest, stdin: bytes | None = None) -> WriteResult:
    """Write INPUT's top-K file (bounded memory: one block of rows at a time)."""
    request.validate()
    assert request.k is not None and request.output is not None
    src, rows, width = _open(request, request.input, stdin)
    kind = kind_of(request.kind, src)
    tokens, tokens_label = read_tokens((request.tokens, request.tokens_options), src, [], stdin)
    if tokens is not None and rows not in (-1, len(tokens)):
        raise InputError(tokens_label, f"holds {len(tokens)} tokens for {rows} rows")
    placed = sequences(src)
    k = min(request.k, width)
    coverage: list[np.ndarray] = []

    def blocks() -> Iterator[TopKBlock]:
        start = 0
        block_rows = request.chunk_rows or max(1, BLOCK_ELEMENTS // width)
        for block in row_blocks(src, block_rows, width):
            lp = _log_probs(block, kind, request.temperature, src.label, start)
            out = _sparse(lp, top_classes(lp, k))
            stop = start + len(block)
            if tokens is not None:
                out.token = tokens[start:stop]
            if placed is not None:
                out.sequence, position = np.divmod(np.arange(start, stop), placed[0])
                out.position = position + placed[1]
            coverage.append(np.exp(out.logprobs).sum(axis=1))
            start = stop
            yield out

    from .. import __version__

    recorded = {
        "temperature": repr(request.temperature),
        "k": str(k),
        "source_dtype": str(src.dtype),
        "version": __version__,
    }
    written = write_topk(request.output, blocks(), recorded)
    import os

    size = os.path.getsize(request.output) if os.path.exists(request.output) else 0
    cover = np.concatenate(coverage) if coverage else np.empty(0)
    return WriteResult(
        output=request.output,
        rows=written,
        k=k,
        bytes=size,
        coverage=_coverage(cover),
        input={**src.describe(), "as": kind},
        tokens=tokens_label or None,
    )


def _coverage(cover: np.ndarray) -> dict[str, float]:
    if cover.size == 0:
        return {"mean": math.nan, "min": math.nan}
    return {"mean": combine(cover) / cover.size, "min": float(cover.min())}


def sweep(request: TopKRequest, stdin: bytes | None = None) -> SweepResult:
    """One pass over INPUT and the candidate: per K of ``--sweep``, the mean KL on the
    top-K cells (as ``compare`` computes it from the top-K file), the dense mean KL, the
    relative error ``(dense − sparse)/dense``, the coverage, and the bytes per position
    of the top-K file (measured: the first block written to an in-memory Parquet file)."""
    request.validate()
    assert request.candidate is not None
    ref, rows, width = _open(request, request.input, stdin)
    cand, cand_rows, cand_width = _open(request, request.candidate, stdin)
    if cand_width != width or -1 not in (rows, cand_rows) and rows != cand_rows:
        raise InputError(
            f"{ref.label} and {cand.label}",
            f"differ in shape: {rows} x {width} and {cand_rows} x {cand_width}",
        )
    kinds = (kind_of(request.kind, ref), kind_of(request.candidate_kind, cand))
    ks = sorted({min(k, width) for k in request.sweep})
    dense: list[np.ndarray] = []
    sparse: dict[int, list[np.ndarray]] = {k: [] for k in ks}
    cover: dict[int, list[np.ndarray]] = {k: [] for k in ks}
    sizes: dict[int, float] = {}
    block_rows = request.chunk_rows or max(1, BLOCK_ELEMENTS // width)
    start = 0
    for rb, cb in zip(row_blocks(ref, block_rows, width), row_blocks(cand, block_rows, width)):
        if len(rb) != len(cb):
            raise InputError(f"{ref.label} and {cand.label}", "hold different numbers of rows")
        pr = pair(rb, cb, kinds[0], kinds[1], request.temperature)
        dense.append(row_measures(rb, cb, pr)["kl"])
        lp = _log_probs(rb, kinds[0], request.temperature, ref.label, start)
        lq, _ = distribution(cb, kinds[1], request.temperature)
        top = top_classes(lp, ks[-1])
        for k in ks:
            block = _sparse(lp, top[:, :k])
            sparse[k].append(
                row_measures(
                    lp, lq, cells(block.indices, block.logprobs, block.tail, lq, request.tail)
                )["kl"]
            )
            cover[k].append(np.exp(block.logprobs).sum(axis=1))
            if k not in sizes:
                sizes[k] = topk_bytes([block]) / max(len(rb), 1)
        start += len(rb)
    if start == 0:
        raise InputError(ref.label, "has no rows")
    dense_mean = combine(np.concatenate(dense)) / start
    table = []
    for k in ks:
        mean = combine(np.concatenate(sparse[k])) / start
        table.append(
            {
                "k": k,
                "sparse_kl_mean": mean,
                "dense_kl_mean": dense_mean,
                "relative_error": (dense_mean - mean) / dense_mean if dense_mean != 0 else math.nan,
                "coverage_mean": _coverage(np.concatenate(cover[k]))["mean"],
                "coverage_min": _coverage(np.concatenate(cover[k]))["min"],
                "bytes_per_position": sizes[k],
            }
        )
    return SweepResult(
        rows=start,
        tail=request.tail,
        sweep=table,
        reference={**ref.describe(), "as": kinds[0]},
        candidate={**cand.describe(), "as": kinds[1]},
    )
