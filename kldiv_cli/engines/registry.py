"""The engines, one record each: where ``--engine NAME`` runs ``compute`` and ``drift``.

An engine is a module of this package and one entry in :data:`ENGINES`: its name, a
line saying what it is, how it runs a compute job (open the sources, :func:`plan
<kldiv_cli.jobs.compute_plan.plan>` the path, sum it, then the shared :func:`finish
<kldiv_cli.jobs.compute_plan.finish>`), the reference profiler it gives ``drift`` and
``profile``, its limits on a compute request, and its availability check (a one-line
error naming what to install). The compute job (:func:`kldiv_cli.jobs.compute.compute`)
and the drift commands dispatch through :func:`engine`; nothing else names an engine.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import UsageError
from ..jobs.compute_plan import ComputeRequest, ComputeResult, EngineOptions, Progress
from . import local

if TYPE_CHECKING:
    from ..jobs.drift import Profiler

#: ``note(line)``: a line for stderr (a local Dask cluster started, a reference read here).
Note = Callable[[str], None]


def _nothing_to_install() -> None:
    """The local engine needs nothing beyond kldiv."""


def _no_limits(request: ComputeRequest) -> None:
    """The local engine computes every request."""


@dataclass(frozen=True)
class Engine:
    """One engine (see the module's docstring)."""

    name: str
    #: What it is, one line.
    summary: str
    #: ``compute(request, stdin, progress, note)``: the compute job's result.
    compute: Callable[[ComputeRequest, bytes | None, Progress | None, Note | None], ComputeResult]
    #: ``profiler(reference, options, note)``: a context giving the profiler of a drift
    #: reference (:data:`kldiv_cli.jobs.drift.Profiler`), or None to profile in the job.
    profiler: Callable[
        [Sequence[str], EngineOptions, Note | None], AbstractContextManager[Profiler | None]
    ]
    #: Its limits on a compute request (raises a one-line ``UsageError``).
    check: Callable[[ComputeRequest], None] = _no_limits
    #: Whether it can run here: raises a one-line ``UsageError`` naming what to install.
    require: Callable[[], None] = _nothing_to_install


def _dask(name: str) -> Callable[..., Any]:
    """The Dask engine's function ``name``, imported at its first call: a local run does
    not compile the Dask engine's modules (start-up)."""

    def call(*args: Any, **kwargs: Any) -> Any:
        from . import dask

        return getattr(dask, name)(*args, **kwargs)

    return call


def _dask_profiler(
    reference: Sequence[str], options: EngineOptions, note: Note | None
) -> AbstractContextManager[Profiler | None]:
    # Imported here: drift's job module is not needed to compute.
    from .drift import profiler

    return profiler(
        reference,
        options.scheduler,
        options.scheduler_file,
        options.workers,
        timeout=options.timeout,
        note=note,
    )


#: Every engine, by name; ``local`` first (the default).
ENGINES: dict[str, Engine] = {
    "local": Engine(
        "local",
        "this process: a reader thread ahead, the sums on every core",
        local.compute,
        local.profiler,
    ),
    "dask": Engine(
        "dask",
        "tasks on a Dask cluster, combined exactly on the client",
        _dask("compute"),
        _dask_profiler,
        check=_dask("check_request"),
        require=_dask("require_distributed"),
    ),
}


def engine(name: str) -> Engine:
    """The engine called ``name``.

    Raises
    ------
    UsageError
        No engine has that name.
    """
    found = ENGINES.get(name)
    if found is None:
        raise UsageError(f"unknown engine {name!r}; choose {' or '.join(ENGINES)}")
    return found
