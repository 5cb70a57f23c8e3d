"""The ``kldiv`` command line: a thin layer over the library.

Only Typer is imported at start-up; NumPy, pyarrow and Rich load inside the
commands that need them, so ``kldiv --help`` and ``--version`` stay fast.
Every command runs inside :func:`.boundary.error_boundary`, the one place that maps
exceptions to exit codes (:class:`~kldiv_cli.errors.ExitCode`).

One module per command (``compute``, ``inspect``, ``drift``...); each registers
itself on :data:`.app.app` when imported, which :class:`.app.Commands` does when the
command is first asked for (:data:`.app.COMMANDS` names them).
"""

from .app import app, main

__all__ = ["app", "main"]
