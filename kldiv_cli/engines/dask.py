"""``--engine dask``: the tasks of :mod:`.tasks` on a Dask cluster, combined exactly here.

Tasks are plain functions submitted with ``client.map`` (never ``dask.array`` or
``dask.dataframe`` reductions, whose sums move with the block size); each returns the
float64 partial sums of the engine's own chunks, and the client combines them with
``engine.combine`` (exact, order-free). The loss therefore has the local engine's bits
for any worker count, partitioning, execution order or retry.

Without ``--scheduler`` (or ``DASK_SCHEDULER_ADDRESS``, or ``--scheduler-file``) a
:class:`distributed.LocalCluster` of worker processes is started on 127.0.0.1 without
a dashboard, announced through ``note`` and closed at the end. A worker that dies is
replaced and its tasks rerun by the scheduler (``distributed.scheduler.allowed-failures``
times); after that the job fails with one line. Workers must run this kldiv version.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .._version import __version__
from ..errors import InputError, KldivError, UsageError
from ..jobs.compute_plan import (
    ComputeRequest,
    ComputeResult,
    Plan,
    Progress,
    begin,
    build_result,
    finish,
    fused_logits,
    open_sources,
    plan,
    result_dtype_for,
    t2_factor,
)
from ..jobs.diagnostics import strict_notes
from . import tasks as T

if TYPE_CHECKING:
    from ..io.sources import Source

#: How to install the extra: from the package index, or from a checkout of the source.
INSTALL_HINT = 'pip install "kldiv[dask]" (from a source checkout: pip install ".[dask]")'
#: Seconds to wait for a scheduler before saying it cannot be reached (``--timeout``).
CONNECT_TIMEOUT = 10.0
#: The longest ``--timeout``: an hour.
MAX_TIMEOUT = 3600.0
#: Elements per grid task: 64 MiB per side in float32, a few times that in a worker's
#: memory while it converts and sums; 1e8 elements make 6 tasks.
TASK_ELEMENTS = 1 << 24


#: The local cluster's scheduler: no dashboard, and its HTTP routes (health, metrics),
#: which listen anyway, on a free port of 127.0.0.1 rather than on 8787.
LOCAL_SCHEDULER: dict[str, Any] = {"dashboard_address": "127.0.0.1:0", "dashboard": False}


class ClusterError(KldivError):
    """The cluster cannot be reached, or it failed the job (exit 2, one line)."""


@dataclass(frozen=True)
class Cluster:
    """Where to run: a scheduler address or file, else a local cluster of ``workers``."""

    scheduler: str | None = None
    scheduler_file: str | None = None
    workers: int | None = None
    #: ``--storage-option`` settings the workers use for object-store paths.
    storage: Mapping[str, str] = field(default_factory=dict)
    #: ``--timeout``: seconds to wait for the scheduler to answer, and for a worker.
    timeout: float = CONNECT_TIMEOUT

    def validate(self) -> None:
        if self.workers is not None and self.workers < 1:
            raise UsageError(f"--workers must be at least 1, got {self.workers}")
        if self.scheduler is not None and not self.scheduler.strip():
            raise UsageError(
                "--scheduler is empty; give tcp://HOST:PORT, or leave it out for a local cluster"
            )
        if self.scheduler_file is not None and not self.scheduler_file.strip():
            raise UsageError("--scheduler-file is empty; give the path of a scheduler file")
        if not (math.isfinite(self.timeout) and 0 < self.timeout <= MAX_TIMEOUT):
            raise UsageError(f"--timeout must be a number of seconds > 0 and <= {MAX_TIMEOUT:g}")
        if self.scheduler and self.scheduler_file:
            raise UsageError("give --scheduler or --scheduler-file, not both")
        if self.workers is not None and (self.address or self.scheduler_file):
            raise UsageError("--workers sizes a local cluster; drop it with --scheduler")

    @property
    def address(self) -> str | None:
        return self.scheduler or os.environ.get("DASK_SCHEDULER_ADDRESS") or None


def require_distributed() -> None:
    """One line naming the extra when ``distributed`` is not installed."""
    try:
        import distributed  # noqa: F401
    except ImportError:
        raise UsageError(
            f"--engine dask needs Dask's distributed package: {INSTALL_HINT}"
        ) from None


def _worker_version() -> str:
    return __version__


def scheduler_address(path: str) -> str:
    """The address in a Dask scheduler file (JSON with an ``address``), read here rather
    than by ``distributed``, which waits for a missing file and asserts on a bad one.

    Raises
    ------
    UsageError
        The file does not exist.
    InputError
        It is not JSON, or holds no address.
    """
    import json

    from ..io.paths import read_limited

    label = f"--scheduler-file {path}"
    if not os.path.exists(path):
        raise UsageError(f"{label}: no such file")
    try:
        doc = json.loads(read_limited(path, 1 << 20))
    except (ValueError, UnicodeDecodeError):
        raise InputError(label, "is not a Dask scheduler file (not JSON)") from None
    address = doc.get("address") if isinstance(doc, dict) else None
    if not isinstance(address, str) or not address.strip():
        raise InputError(label, "is not a Dask scheduler file (it names no 'address')")
    return address


def _probe(address: str, timeout: float) -> None:
    """Connect to ``address`` and complete distributed's handshake within ``timeout``
    seconds, or raise ``TimeoutError``/``OSError``. ``distributed.Client`` waits for
    the handshake without a limit: a server that accepts the connection and never
    answers would hang it for ever."""
    import asyncio

    from distributed.comm.core import connect as comm_connect
    from distributed.security import Security

    args = Security().get_connection_args("client")  # type: ignore[no-untyped-call, unused-ignore]

    async def once() -> None:
        # A refused connection is retried by distributed until ``timeout`` (then an
        # OSError); the handshake is given a little more (then a TimeoutError).
        grace = min(timeout, 1.0)
        opening = comm_connect(address, timeout, **args)  # type: ignore[no-untyped-call, unused-ignore]
        comm = await asyncio.wait_for(opening, timeout + grace)
        await comm.close()

    # In a thread of its own: the caller may be inside an event loop (a notebook).
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, once()).result()


@contextmanager
def _scratch() -> Iterator[str]:
    """A temporary folder for Dask's scratch space (worker spill files, lock files),
    removed at the end whatever happens: Dask's default leaves ``dask-scratch-space``
    in the temporary folder."""
    import shutil
    import tempfile

    import dask

    folder = tempfile.mkdtemp(prefix="kldiv-dask-")
    try:
        with dask.config.set({"temporary-directory": folder}):
            yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@contextmanager
def _quiet_logs() -> Iterator[None]:
    """distributed's and fsspec's loggers silenced while the client runs: a failure is
    one line of ours, never their log records on stderr."""
    loggers = [logging.getLogger(name) for name in ("distributed", "fsspec", "tornado")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


@contextmanager
def connect(cluster: Cluster, note: Callable[[str], None] | None = None) -> Iterator[Any]:
    """A ``distributed.Client`` for ``cluster``, closed (with its local cluster) at the end.
    Dask's scratch files go to a temporary folder removed at the end.

    Raises
    ------
    ClusterError
        When the scheduler cannot be reached or does not answer within
        ``cluster.timeout`` seconds, or a worker runs another kldiv version.
    """
    cluster.validate()
    require_distributed()
    with _scratch() as scratch, _quiet_logs():
        with _client(cluster, scratch, note) as client:
            yield client


@contextmanager
def _client(cluster: Cluster, scratch: str, note: Callable[[str], None] | None) -> Iterator[Any]:
    import distributed

    # distributed's Client, LocalCluster and Client.close() are unannotated: the calls
    # below carry type: ignore[no-untyped-call] for that reason alone (and unused-ignore,
    # since only a configuration that disallows untyped calls here reports them).
    local = None
    timeout = cluster.timeout
    address = scheduler_address(cluster.scheduler_file) if cluster.scheduler_file else None
    address = address or cluster.address
    if cluster.scheduler_file:
        where = f"the scheduler of --scheduler-file {_shown(cluster.scheduler_file)}"
    else:
        where = _shown(address or "")
    try:
        if address:
            _probe(address, timeout)
            client = distributed.Client(address, timeout=timeout)  # type: ignore[no-untyped-call, unused-ignore]
        else:
            from ..core.engine import default_threads

            n = cluster.workers or default_threads()
            where = "the local cluster"
            local = distributed.LocalCluster(  # type: ignore[no-untyped-call, unused-ignore]
                n_workers=n,
                threads_per_worker=1,
                processes=True,
                host="127.0.0.1",
                dashboard_address=None,
                scheduler_kwargs=LOCAL_SCHEDULER,
                silence_logs=logging.ERROR,
                local_directory=scratch,
            )
            client = distributed.Client(local)  # type: ignore[no-untyped-call, unused-ignore]
            if note is not None:
                note(
                    f"started a local Dask cluster: {n} worker process{'es' if n > 1 else ''} "
                    "on 127.0.0.1, no dashboard (give --scheduler ADDRESS to use a running one)"
                )
    except (ValueError, TypeError):  # a malformed address: no port, an unknown scheme
        raise UsageError(
            f"--scheduler {_shown(str(address))}: not a Dask scheduler address; "
            "give tcp://HOST:PORT"
        ) from None
    except OSError as exc:
        if local is not None:
            local.close()
        # TimeoutError (an OSError): the server took the connection and never answered;
        # any other OSError: nothing took it (distributed retries until the timeout).
        mute = isinstance(exc, TimeoutError)
        why = "it accepted the connection but did not answer" if mute else "no connection"
        raise ClusterError(
            f"could not connect to the Dask scheduler at {where} within {timeout:g} s "
            f"({why}; is it running? --timeout SECONDS waits longer)"
        ) from None
    except RuntimeError as exc:  # worker processes that could not start
        raise ClusterError(f"could not start a local Dask cluster ({exc})") from None
    try:
        try:
            client.wait_for_workers(1, timeout=timeout)
        except TimeoutError:
            raise ClusterError(
                f"the Dask scheduler at {where} has no workers (none joined in "
                f"{timeout:g} s); start some with `dask worker ADDRESS`"
            ) from None
        check_versions(client)
        yield client
    finally:
        client.close()  # type: ignore[no-untyped-call, unused-ignore]
        if local is not None:
            local.close()


def _shown(text: str) -> str:
    """An address or path as a message shows it: credentials redacted, controls escaped."""
    from ..redact import redact
    from ..text import clean

    return clean(redact(text))


def check_versions(client: Any) -> None:
    """Every worker must run this kldiv: tasks are its functions, and the bits are its."""
    try:
        versions = client.run(_worker_version)
    except Exception:  # the worker cannot even import kldiv to answer
        raise ClusterError(
            f"the Dask workers cannot import kldiv; install kldiv {__version__} on every worker"
        ) from None
    other = sorted({v for v in versions.values() if v != __version__})
    if other:
        n = sum(v != __version__ for v in versions.values())
        raise ClusterError(
            f"{n} Dask worker(s) run kldiv {', '.join(other)}, this client {__version__}; "
            "install the same version on every worker"
        )


def run_tasks(
    client: Any,
    job: T.Job,
    work: list[T.Task],
    function: Callable[[T.Job, T.Task], T.Partial | T.Failure] = T.run_task,
) -> list[T.Partial]:
    """Run ``work`` on the cluster and return the tasks' partials (in task order).
    ``function`` runs one task (tests wrap :func:`.tasks.run_task` in one that dies).

    Raises
    ------
    KldivError
        The first error a task met in the data (as the local engine raises it), or a
        :class:`ClusterError` when workers kept dying on a task.
    """
    shared = client.scatter(job, broadcast=True, hash=False)
    results = _gather(client, client.map(function, [shared] * len(work), work, pure=False))
    parts: list[T.Partial] = []
    for r in results:
        if isinstance(r, T.Failure):
            raise r.error()
        parts.append(r)
    return parts


def runner(client: Any) -> Callable[[Callable[[Any], Any], list[Any]], list[Any]]:
    """A ``map``-like runner on the cluster (for :func:`.quantiles.exact_quantiles`)."""

    def run(function: Callable[[Any], Any], items: list[Any]) -> list[Any]:
        return _gather(client, client.map(function, items, pure=False))

    return run


def _gather(client: Any, futures: list[Any]) -> list[Any]:
    """The futures' results, in order; workers that kept dying and cancelled jobs become
    one :class:`ClusterError` line, and nothing is left running."""
    from asyncio import CancelledError

    import distributed
    from distributed.client import FutureCancelledError

    try:
        return list(client.gather(futures))
    except distributed.KilledWorker:
        raise ClusterError(
            "a Dask worker died while running a task, and again on every retry "
            "(out of memory? see the workers' logs); nothing was written"
        ) from None
    except (FutureCancelledError, CancelledError):
        raise ClusterError(
            "the Dask scheduler cancelled the job's tasks (restarted, or lost every "
            "worker); nothing was written"
        ) from None
    finally:
        client.cancel(futures)


def check_request(request: ComputeRequest) -> None:
    """What the Dask engine computes: a scalar loss (sum, mean, batchmean)."""
    if request.per_element:
        raise UsageError("--engine dask computes a scalar loss; -r none runs with --engine local")
    if request.per_row or request.top:
        raise UsageError("--engine dask computes a scalar loss; --per-row and --top run locally")
    if request.input == "-" or request.target == "-":
        raise UsageError("--engine dask reads files or object-store URLs, not stdin")


def make_job(
    request: ComputeRequest,
    sx: Source,
    st: Source,
    chosen: Plan,
    storage: Mapping[str, str] | None = None,
) -> T.Job:
    """The :class:`~.tasks.Job` of a request on its opened sources, laid out as the
    local plan ``chosen`` sums it. ``storage``: the object-store settings the workers
    use (by default the run's, :func:`kldiv_cli.io.fs.configure`)."""
    from ..io import fs

    storage = fs.current_options() if storage is None else dict(storage)
    x = T.describe(sx, request.input, request.input_options, storage)
    t = T.describe(st, request.target, request.target_options, storage)
    layout = T.layout(chosen.value)
    if layout == T.WHOLE and T.spreadable(request, x, t):
        layout = T.GRID
    dtype = str(result_dtype_for(request, sx, st))
    return T.Job(request, x, t, layout, dtype, fused=fused_logits(request, sx, st))


def default_split(job: T.Job, elements_per_task: int = TASK_ELEMENTS) -> list[T.Task]:
    """Grid tasks of about ``elements_per_task`` elements; one row group per task."""
    per_task = max(1, elements_per_task // job.chunk) if job.layout == T.GRID else 1
    return T.split(job, per_task)


def reduce_job(
    request: ComputeRequest,
    sx: Source,
    st: Source,
    job: T.Job,
    run: Callable[[T.Job], list[T.Partial]],
) -> ComputeResult:
    """The compute result from the partials ``run(job)`` returns (in any order).

    The partials are combined exactly, the reduction finished as the local engine
    does; a loss that is not finite gets the local engine's second pass (the causes
    of the NaN or inf) as ``run(job with explain=True)``.
    """
    from dataclasses import replace

    import numpy as np

    from ..core import finish_reduction
    from ..core.engine import combine

    diagnostics, base, per_batch, caught = begin(request)
    parts = run(job)
    total = combine([p for part in parts for p in part.partials])
    count = sum(part.count for part in parts)
    dtype = np.dtype(job.dtype)
    shape = T.loss_shape(job) if job.layout in (T.GRID, T.WHOLE) else tuple(job.x.shape)
    batch = job.x.shape[0] if per_batch and len(job.x.shape) else None
    loss = finish_reduction(total, count, base, batch, dtype, t2_factor(request))
    if not np.isfinite(loss):
        parts = run(replace(job, explain=True))
    T.merge_diagnostics([part.diagnostics for part in parts], diagnostics)
    return build_result(request, sx, st, loss, None, dtype, shape, diagnostics, caught)


def execute(
    client: Any,
    request: ComputeRequest,
    sx: Source,
    st: Source,
    chosen: Plan,
    storage: Mapping[str, str] | None = None,
    elements_per_task: int = TASK_ELEMENTS,
) -> ComputeResult:
    """The compute job's scalar result for ``chosen`` (the local plan), run as tasks on
    ``client``'s cluster: the same partial sums as the local executor of that plan."""
    job = make_job(request, sx, st, chosen, storage)
    work = default_split(job, elements_per_task)
    return reduce_job(request, sx, st, job, lambda j: run_tasks(client, j, work))


def compute(
    request: ComputeRequest,
    stdin: bytes | None = None,
    progress: Progress | None = None,
    note: Callable[[str], None] | None = None,
) -> ComputeResult:
    """The compute job on the cluster of ``request.engine_options`` (the engine's entry in
    :data:`kldiv_cli.engines.registry.ENGINES`); tasks read files, so ``stdin`` and
    ``progress`` are not used."""
    options = request.engine_options
    return run_compute_dask(
        request,
        options.scheduler,
        options.scheduler_file,
        options.workers,
        timeout=options.timeout,
        note=note,
    )


def run_compute_dask(
    request: ComputeRequest,
    scheduler: str | None = None,
    scheduler_file: str | None = None,
    workers: int | None = None,
    *,
    storage: Mapping[str, str] | None = None,
    timeout: float = CONNECT_TIMEOUT,
    note: Callable[[str], None] | None = None,
) -> ComputeResult:
    """The ``compute`` job with ``--engine dask``: the same result (and bits) as the local
    engine's for scalar reductions.

    ``note`` receives the one line announcing a local cluster (for stderr).
    """
    from ..io import fs

    check_request(request)
    storage = fs.current_options() if storage is None else dict(storage)
    cluster = Cluster(scheduler, scheduler_file, workers, storage, timeout)
    cluster.validate()
    require_distributed()
    sx, st = open_sources(request, None)
    strict_notes(request.strict, (sx, st))
    chosen = plan(request, sx, st)
    with connect(cluster, note) as client:
        result = execute(client, request, sx, st, chosen, cluster.storage)
    return finish(request, sx, st, chosen, result)
