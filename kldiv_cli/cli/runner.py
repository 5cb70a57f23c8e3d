"""The tail every command shares: storage settings, validation, stdin, the job under a
progress bar, the report, the exit code (:func:`run_command`)."""

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol, TypeVar

from .boundary import current
from .output import conclude
from .progress import progress

if TYPE_CHECKING:
    from ..jobs.gates import Verdict
    from .groups import Storage

#: ``progress(done, total)`` of a job (None: no bar).
Progress = Callable[[int, int], None] | None


class Request(Protocol):
    """What :func:`run_command` needs of a request."""

    @property
    def inputs(self) -> tuple[str | None, ...]:
        """The paths the job reads (``-``: stdin; None: an input not given)."""

    def validate(self) -> None:
        """Raise a ``UsageError`` for anything wrong with the request."""


R = TypeVar("R", bound=Request)
T = TypeVar("T")


def run_command(
    request: R,
    job: "Callable[[R, bytes | None, Progress], T]",
    show: "Callable[[T], Verdict]",
    storage: "Storage",
    check: "Callable[[R], object] | None" = None,
) -> None:
    """Run ``job`` on ``request`` as every command does: ``--storage-option`` settings
    applied, the request validated (before stdin is read, so a mistake never waits for
    piped data; ``check`` instead of ``request.validate()`` when the command checks more,
    such as compute's engine), stdin read when an input is ``-``, the job run under a progress bar,
    its result shown (``show`` prints the warnings and the report and returns the
    verdict) and the verdict made the exit code (:func:`.output.conclude`)."""
    configure_storage(storage.pairs)
    if check is None:
        request.validate()
    else:
        check(request)
    with progress() as on_progress:
        result = job(request, read_stdin_if_needed(*request.inputs), on_progress)
    conclude(show(result))


def configure_storage(pairs: "tuple[str, ...] | list[str] | None") -> None:
    """Apply ``--storage-option KEY=VALUE`` settings to every remote path of this run.

    Always called, with no settings too (they are cleared): a run in the same process
    (the tests, a library user) never inherits the previous run's settings. Nothing
    is set before :mod:`~kldiv_cli.io.fs` is loaded, so a run without settings does not
    load it (start-up).
    """
    if not pairs and "kldiv_cli.io.fs" not in sys.modules:
        return
    from ..io import fs

    fs.configure(fs.parse_options(pairs or ()))


def read_stdin_if_needed(*paths: str | None) -> bytes | None:
    """All of stdin when one of ``paths`` is ``-``, else None (None paths are unset options)."""
    if "-" not in paths:
        return None
    from ..io.sources import read_stdin

    return read_stdin(current().stdin)
