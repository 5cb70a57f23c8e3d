"""compare's inputs: the layout of each side, blocks of the same rows of the reference
and every candidate, what each side holds, the next tokens, where rows sit in their
sequences, and the wrong-space warnings of the first block."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np

from ..errors import InputError, UsageError
from ..io import formats
from ..io.kld import KldSource
from ..io.roles import choose_hint, one_class
from ..io.sources import ReadOptions, Source, open_source
from ..io.topk import TopKSource
from .blocks import rebatch
from .diagnostics import looks_like

__all__ = [
    "check_tokens",
    "kind_of",
    "layout",
    "read_tokens",
    "sequences",
    "side_options",
    "space_warnings",
    "zip_blocks",
]


def side_options(
    path: str, key: str | None, columns: str | None, delimiter: str | None, missing: str
) -> ReadOptions:
    """How one side is read: ``--key`` applies to files of several arrays, ``--columns``
    to tables (each option to the sides it can)."""
    kind = formats.kind_of(path)
    return ReadOptions(
        None,
        key if kind == formats.KEYED else None,
        None if kind in formats.ARRAY_KINDS else columns,
        delimiter,
        missing,
        key_option="--key",
        columns_option="--columns",
    )


def layout(src: Source, options: ReadOptions) -> tuple[int, int]:
    """(rows, classes) of a source: every axis but the last counts rows (-1: unknown).
    One class is an error: any comparison of one-class distributions is 0."""
    shape = tuple(src.shape)
    if len(shape) == 0:
        raise InputError(src.label, "holds a single number; compare needs rows × classes")
    width = shape[-1]
    if width == -1:
        raise InputError(src.label, "rows have different lengths; compare needs rows × classes")
    if width == 0:
        raise InputError(src.label, "has no classes (the last axis is empty)")
    if width == 1:
        raise UsageError(
            f"{src.label}: 1 class ({one_class(src, -1)}); a distribution needs >= 2 classes: "
            f"{choose_hint(src, options, 'the last axis holds the classes')}"
        )
    rows = -1 if -1 in shape[:-1] else math.prod(shape[:-1])
    return rows, width


def row_blocks(src: Source, rows: int, width: int) -> Iterator[np.ndarray]:
    """2-D blocks (rows × classes) of exactly ``rows`` rows (the last may be shorter)."""
    return rebatch(src.iter_rows(rows), rows)


def zip_blocks(
    ref: Source | TopKSource, cands: list[Source], rows: int, width: int
) -> Iterator[tuple[Any, list[np.ndarray]]]:
    """The reference's blocks (2-D arrays, or :class:`~kldiv_cli.io.topk.TopKBlock` of a
    top-K file), each with the same rows of every candidate (the reference is read once)."""
    streams = [row_blocks(c, rows, width) for c in cands]
    ref_blocks = ref.blocks(rows) if isinstance(ref, TopKSource) else row_blocks(ref, rows, width)
    for rb in ref_blocks:
        cbs = []
        for cand, cs in zip(cands, streams):
            cb = next(cs, None)
            if cb is None or len(cb) != len(rb):
                raise InputError(f"{ref.label} and {cand.label}", "hold different numbers of rows")
            cbs.append(cb)
        yield rb, cbs
    for cand, cs in zip(cands, streams):
        if next(cs, None) is not None:
            raise InputError(f"{ref.label} and {cand.label}", "hold different numbers of rows")


def kind_of(request_kind: str | None, src: Source) -> str:
    if formats.get(src.fmt).kind == formats.KLD:
        return "log-probs"
    return request_kind or "logits"


def read_tokens(
    tokens: tuple[str | None, ReadOptions],
    ref: Source | TopKSource,
    cands: list[Source],
    stdin: bytes | None,
) -> tuple[np.ndarray | None, str]:
    """The next token of every row (int64) and where it came from, or (None, ""):
    ``tokens`` (``--tokens FILE`` and how to read it), else the tokens of ``.kld`` inputs."""
    if tokens[0] is not None:
        src = open_source(tokens[0], tokens[1], stdin)
        values = np.asarray(src.read())
        # One column, or the reference's leading shape (a (B, T) batch beside (B, T, V)
        # logits): its row-major order is the order of the reference's rows.
        lead = tuple(ref.shape[:-1])
        one_column = values.ndim <= 1 or (values.ndim == 2 and values.shape[1] == 1)
        if not (one_column or values.shape == lead):
            raise InputError(
                src.label,
                "tokens must be one column (one id per row) or the reference's leading shape "
                f"{lead}, got shape {values.shape}",
            )
        values = values.reshape(-1)
        whole = np.isfinite(values) & (values == np.round(values))
        if not whole.all():
            i = int(np.argmin(whole))
            raise InputError(src.label, f"token at row {i} is {values[i]!r}, not a whole number")
        return values.astype(np.int64), src.label
    kld = [s for s in (ref, *cands) if isinstance(s, KldSource)]
    for other in kld[1:]:
        if not np.array_equal(kld[0].tokens, other.tokens):
            raise InputError(
                f"{kld[0].label} and {other.label}",
                "were computed on different tokens (different texts)",
            )
    return (kld[0].tokens, kld[0].label) if kld else (None, "")


def check_tokens(
    tokens: np.ndarray, label: str, rows: int, width: int, ignore: int | None
) -> np.ndarray:
    """Rows to keep; errors for a wrong length or an id outside the vocabulary."""
    if len(tokens) != rows:
        raise InputError(
            label, f"holds {len(tokens)} tokens for {rows} rows; give one next-token id per row"
        )
    keep = tokens != ignore if ignore is not None else np.ones(len(tokens), dtype=bool)
    bad = keep & ((tokens < 0) | (tokens >= width))
    if bad.any():
        i = int(np.argmax(bad))
        hint = (
            f"; skip such rows with --ignore-index {tokens[i]}"
            if tokens[i] < 0 and ignore is None
            else ""
        )
        raise InputError(
            label, f"token {tokens[i]} at row {i} is outside the vocabulary [0, {width}){hint}"
        )
    return keep


def sequences(src: Source) -> tuple[int, int] | None:
    """(rows per sequence, position of its first row) when the rows are positions of
    sequences: a 3-D input (sequences × positions × classes), or a ``.kld`` file (chunks
    of ``n_ctx`` tokens, positions ``n_ctx/2 … n_ctx−2`` scored); None otherwise."""
    if isinstance(src, KldSource):
        first = src.n_ctx // 2
        return src.n_ctx - 1 - first, first
    shape = tuple(src.shape)
    if len(shape) == 3 and shape[1] > 0:
        return shape[1], 0
    return None


#: A side read as logits that looks like another kind: the evidence, what reading it as
#: logits does to the numbers, and the option (``{option}``) that says what it is.
_SPACE_WARNING = {
    "probs": "looks like probabilities (every value in [0, 1], rows summing to 1) but is read "
    "as logits: a softmax of probabilities flattens them and the divergences come out far "
    "too small; give {option}",
    "log-probs": "looks like log-probabilities (every value <= 0, each row's logsumexp 0) but "
    "is read as logits: the numbers are the same (a softmax gives log-probabilities back); "
    "say so with {option}",
}


def space_warnings(
    first: tuple[np.ndarray, list[np.ndarray]] | None,
    kinds: tuple[str, list[str]],
    ref_label: str,
    cand_labels: list[str],
) -> list[list[str]]:
    """The warnings of the reference, then of each candidate: a side read as logits whose
    first rows look like probabilities or log-probabilities
    (:func:`kldiv_cli.jobs.diagnostics.looks_like`), with the option that says so."""
    if first is None:
        return [[] for _ in range(1 + len(cand_labels))]
    sides = [(first[0], kinds[0], ref_label, "reference")]
    sides += [(b, k, label, "candidate") for b, k, label in zip(first[1], kinds[1], cand_labels)]
    out: list[list[str]] = []
    for block, kind, label, side in sides:
        looks = looks_like(block) if kind == "logits" else None
        if looks is None:
            out.append([])
            continue
        option = f"--as {looks} (or --{side}-as {looks})"
        out.append([f"{label} {_SPACE_WARNING[looks].format(option=option)}"])
    return out
