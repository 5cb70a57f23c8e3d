"""A command's last steps: its report on stdout or in a file, and its verdict as the
exit code."""

from typing import TYPE_CHECKING

import typer

from ..errors import ExitCode
from .boundary import Messages, current

if TYPE_CHECKING:
    from ..jobs.gates import Verdict
    from ..render import Report


def emit(report: "Report", fmt: str, output: str | None, no_color: bool = False) -> None:
    """Render ``report`` to stdout in ``fmt``, or write it to the file ``output``."""
    from ..render import print_report, resolve_format

    if output and output != "-":
        from ..render.files import write_report

        write_report(output, report, fmt)
        Messages.note(f"wrote {output}")
        return
    env = current()
    env.no_color = env.no_color or no_color
    # Into the command's held stdout: the boundary writes it when the command ends.
    print_report(report, resolve_format(fmt, env.stdout_isatty), env.stdout, env.color)


def emit_with_notes(report: "Report", fmt: str, output: str | None, no_color: bool = False) -> None:
    """:func:`emit`, and the report's notes (diagnostics) on stderr wherever
    the output does not carry them: only a terminal table prints them and JSON holds
    their numbers."""
    from ..render import resolve_format

    emit(report, fmt, output, no_color)
    to_file = bool(output and output != "-")
    if to_file or resolve_format(fmt, current().stdout_isatty) not in ("table", "json"):
        for note in report.notes:
            Messages.note(note)


def conclude(verdict: "Verdict") -> None:
    """End as ``verdict`` says (:class:`~kldiv_cli.jobs.gates.Verdict`): its error line
    (never silenced, even with -q), then its ``check failed`` line and exit 1; exit 2
    for an error alone; nothing when the run passed."""
    if verdict.error:
        current().error(verdict.error)
    if verdict.failed:
        Messages.check_failed(verdict.failed)
        raise typer.Exit(ExitCode.CHECK_FAILED)
    if verdict.error:
        raise typer.Exit(ExitCode.ERROR)


def exit_if_failed(text: str | None) -> None:
    """A failed check (``text``, the ``check failed`` line): say why on stderr, exit 1."""
    from ..jobs.gates import Verdict

    conclude(Verdict(failed=text))
