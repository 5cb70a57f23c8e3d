"""compare's measuring: each block of the reference against the same rows of every
candidate, on a pool of threads, read ahead in another. A dense reference goes through
:func:`kldiv_cli.core.compare.pair`, a top-K reference through
:func:`kldiv_cli.core.topk.cells`; each row's measures depend on that row alone, so the
bits do not depend on the threads or the blocks."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from ..core.compare import (
    Scratch,
    distribution,
    pair,
    rank_measures,
    reference_top,
    row_measures,
    token_measures,
)
from ..core.compare_fused import logit_measures, reference_tops, row_range
from ..core.engine import default_threads
from ..core.topk import cells
from ..errors import InputError
from ..io.topk import TopKBlock
from .blocks import prefetch

if TYPE_CHECKING:
    from concurrent.futures import Future

__all__ = ["Measured", "measured"]

#: The measures of one block: one dict of per-row arrays per candidate.
Measured = list[dict[str, np.ndarray]]

_LOCAL = threading.local()


def _scratch() -> Scratch:
    """This thread's work arrays (see :class:`kldiv_cli.core.compare.Scratch`)."""
    scratch = getattr(_LOCAL, "scratch", None)
    if scratch is None:
        scratch = _LOCAL.scratch = Scratch()
    return scratch


def _widened(x: np.ndarray, name: str, scratch: Scratch) -> np.ndarray:
    """float16 widened once, exactly: NumPy's float16 loops (max, casts) are slow."""
    if x.dtype.itemsize >= 4:
        return x
    out = scratch.get(name, x.shape)
    np.copyto(out, x)
    return out


def _measure_block(
    rb: np.ndarray,
    cbs: list[np.ndarray],
    kinds: tuple[str, list[str]],
    temperature: float,
    t: np.ndarray | None,
    width: int,
) -> Measured:
    """The measures of one reference block against the same rows of each candidate."""
    scratch = _scratch()
    rb = _widened(rb, "reference", scratch)
    logits = kinds[0] == "logits"
    rx = row_range(rb) if logits else None
    top = reference_tops(rb, ~rx[2]) if rx is not None else reference_top(rb)
    tokens = None
    if t is not None and len(t) == len(rb):
        tokens = np.where((t >= 0) & (t < width), t, 0)
    out = []
    for cb, kind in zip(cbs, kinds[1]):
        cb = _widened(cb, "candidate", scratch)
        if logits and kind == "logits":
            out.append(logit_measures(rb, cb, temperature, scratch, top, tokens, rx))
            continue
        pr = pair(rb, cb, kinds[0], kind, temperature, scratch)
        measures = row_measures(rb, cb, pr, scratch)
        measures.update(rank_measures(rb, cb, pr.p, top))
        if tokens is not None:
            measures.update(token_measures(pr, tokens))
        out.append(measures)
    return out


def _measure_sparse(
    tb: TopKBlock,
    cbs: list[np.ndarray],
    kinds: tuple[str, list[str]],
    temperature: float,
    tail: str,
    label: str,
) -> Measured:
    """The measures of one block of a top-K reference against the same rows of each
    candidate: the divergences on the reference's cells (:func:`kldiv_cli.core.topk.cells`),
    the candidate's rank of the reference's top-1 class, the reference's top-1
    probability and margin, and ``coverage`` (the reference's top-K mass)."""
    width = cbs[0].shape[1] if cbs else 0
    if tb.indices.size and int(tb.indices.max()) >= width:
        raise InputError(
            label,
            f"has a class index {int(tb.indices.max())} outside the candidate's {width} classes",
        )
    k = tb.indices.shape[1]
    p_top = np.exp(tb.logprobs)
    shared: dict[str, np.ndarray] = {
        "reference_top1_prob": p_top[:, 0],
        "reference_top1_margin": p_top[:, 0] - p_top[:, 1] if k > 1 else np.full(len(tb), np.nan),
        "coverage": p_top.sum(axis=1),
    }
    for name in ("token", "sequence", "position"):
        value = getattr(tb, name)
        if value is not None:
            shared[f"file_{name}"] = value
    top = (tb.indices[:, 0], tb.indices[:, : min(k, 5)])
    scratch = _scratch()
    out = []
    for cb, kind in zip(cbs, kinds[1]):
        cb = _widened(cb, "candidate", scratch)
        lq, _ = distribution(cb, kind, temperature, scratch)
        pr = cells(tb.indices, tb.logprobs, tb.tail, lq, tail)
        measures = row_measures(pr.lp, pr.q, pr)
        measures.update(rank_measures(tb.indices, cb, None, top))
        measures["agree"] = measures["top1_rank"] == 1
        measures.update(shared)
        out.append(measures)
    return out


def measured(
    blocks: Iterator[tuple[Any, list[np.ndarray]]],
    tokens: np.ndarray | None,
    kinds: tuple[str, list[str]],
    width: int,
    temperature: float,
    threads: int | None = None,
    tail: str | None = None,
    label: str = "",
) -> Iterator[Measured]:
    """The measures of each block pair, in order; blocks are measured on ``threads``
    threads at once (NumPy releases the GIL), read ahead in another. With ``tail`` (a
    top-K reference: blocks of :class:`~kldiv_cli.io.topk.TopKBlock`), the measures of
    :func:`_measure_sparse`."""
    threads = threads or default_threads()
    start = 0

    def submit(rb: Any, cbs: list[np.ndarray]) -> Future[Measured]:
        nonlocal start
        if tail is not None:
            return pool.submit(_measure_sparse, rb, cbs, kinds, temperature, tail, label)
        t = tokens[start : start + len(rb)] if tokens is not None else None
        start += len(rb)
        return pool.submit(_measure_block, rb, cbs, kinds, temperature, t, width)

    from collections import deque
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(threads, thread_name_prefix="kldiv-compare") as pool:
        pending: deque[Future[Measured]] = deque()
        try:
            for rb, cbs in prefetch(blocks):
                pending.append(submit(rb, cbs))
                del rb, cbs
                if len(pending) >= threads:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for future in pending:
                future.cancel()
