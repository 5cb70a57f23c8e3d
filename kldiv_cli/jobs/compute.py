"""The ``compute`` job: read -> convert -> compute, on the engine the request names.

:func:`check` checks a request and finds its engine
(:func:`kldiv_cli.engines.registry.engine`); :func:`compute` runs the job there. What
every engine shares (the request, the result, the :class:`Plan` and the steps around
the sums) is :mod:`.compute_plan`, below both this job and the engines; it is exported
here too, the types a caller of the job needs. No printing here (see render/writers).
"""

from __future__ import annotations

from collections.abc import Callable

from ..engines.registry import Engine, engine
from ..io import formats
from .compute_plan import (
    ComputeRequest,
    ComputeResult,
    EngineOptions,
    Plan,
    Progress,
    convert,
    open_sources,
    plan,
)

__all__ = [
    "ComputeRequest",
    "ComputeResult",
    "EngineOptions",
    "Plan",
    "check",
    "compute",
    "convert",
    "open_sources",
    "plan",
]


def check(request: ComputeRequest) -> Engine:
    """The engine that runs ``request``, once the request is checked: its options
    (:meth:`ComputeRequest.validate`), the engine's name, its limits (``--engine dask``
    computes a scalar loss from files) and whether it can run here. Nothing is read.

    Raises
    ------
    UsageError
        The first thing wrong, in one line.
    """
    request.validate()
    chosen = engine(request.engine)
    chosen.check(request)
    chosen.require()
    return chosen


def compute(
    request: ComputeRequest,
    stdin: bytes | None = None,
    *,
    progress: Progress | None = None,
    note: Callable[[str], None] | None = None,
) -> ComputeResult:
    """Run a compute job: :func:`check` the request, then its engine opens both sources,
    :func:`plan` s the path and sums it (:mod:`kldiv_cli.engines.local` in this process,
    :mod:`kldiv_cli.engines.dask` on a cluster: the same bits).

    ``progress``, if given, is called with the number of input elements done so far and
    the total (-1 while unknown); ``note`` receives an engine's lines for stderr (a local
    Dask cluster started). A TARGET that is a top-K file
    (:func:`kldiv_cli.io.topk.is_topk`) is measured on its cells instead
    (:mod:`.compute_topk`, this process). With ``request.output`` naming a .npy/.csv/.parquet file and
    ``reduction="none"``, a local job that streams writes each block of the pointwise
    loss straight into that (atomic) file; the result then says so in ``written`` and
    its ``loss`` is None. Every other result is returned whole, for the caller to render.
    """
    if _maybe_topk(request.target):
        from ..io.topk import is_topk

        if is_topk(request.target, request.indices_key, stdin, request.logprobs_key):
            # A top-K TARGET (distillation against stored teacher log-probs): its own job.
            from .compute_topk import compute_sparse

            return compute_sparse(request, stdin, progress)
    return check(request).compute(request, stdin, progress, note)


def _maybe_topk(path: str) -> bool:
    """Whether ``path`` may be a top-K file: named as Parquet or an archive of arrays, or
    stdin (held in memory). The top-K reader is not even imported for the others, and a
    pipe without a name (``<(…)``) is not read twice to find out."""
    return path == "-" or formats.is_parquet(path) or formats.kind_of(path) == formats.KEYED
