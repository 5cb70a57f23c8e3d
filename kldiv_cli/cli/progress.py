"""The progress bar of long jobs, for people at a terminal."""

import time
from collections.abc import Callable
from typing import Any

from .boundary import current


class progress:
    """A Rich progress bar on stderr, for people: only on a terminal, never with --quiet,
    and only once a job has run for :attr:`SHOW_AFTER` seconds without finishing (so
    wide files of few rows get one too; quick jobs never flash one)."""

    SHOW_AFTER = 1.0

    def __init__(self, quiet: bool = False) -> None:
        env = current()
        self.enabled = not (quiet or env.quiet) and env.stderr_isatty
        self.bar: Any = None
        self.task: Any = None
        self.started = time.monotonic()

    def __enter__(self) -> "Callable[[int, int], None] | None":
        return self.update if self.enabled else None

    def update(self, done: int, total: int) -> None:
        """``done`` of ``total`` units of work (elements; ``total`` -1 while unknown)."""
        if self.bar is None:
            if done >= total >= 0 or time.monotonic() - self.started < self.SHOW_AFTER:
                return
            from rich.console import Console
            from rich.progress import Progress

            self.bar = Progress(console=Console(file=current().stderr), transient=True)
            self.bar.start()
            self.task = self.bar.add_task("kldiv", total=total if total >= 0 else None)
        self.bar.update(self.task, completed=done)

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.stop()
