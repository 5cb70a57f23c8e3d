"""Exit codes and the exceptions the CLI's error boundary maps to them."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    #: The check failed: ``--fail-above`` exceeded, drift found.
    CHECK_FAILED = 1
    #: Anything else that went wrong: usage, unreadable or malformed input, internal error.
    ERROR = 2
    INTERRUPTED = 130


class KldivError(Exception):
    """An error the user can fix; printed as one line, ``kldiv: error: <message>``."""

    exit_code = ExitCode.ERROR


class UsageError(KldivError):
    """Bad command-line arguments or option values."""


class InputError(KldivError):
    """A file that cannot be read, or whose content is not what kldiv needs."""

    def __init__(self, source: str, message: str) -> None:
        super().__init__(f"{source}: {message}")
        self.source = source


class OutputError(KldivError):
    """An output file that cannot be written."""
