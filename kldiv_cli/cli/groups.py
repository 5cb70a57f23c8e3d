"""Option groups, in the sqlite-utils style: options declared once, handed to a command
as one typed value.

A group is a function whose parameters are Typer options and whose return value is
what the command receives (:class:`Output`, the inputs' ``ReadOptions``, the parsed
gates, the engine, the storage settings). ``@uses(name=group, ...)`` puts a group's
options on a command and calls the group with their values when the command runs:

.. code-block:: python

    @app.command()
    @error_boundary
    @uses(out=output(), storage=storage())
    def inspect(file: ..., out: Output, storage: Storage) -> None: ...

The options show in the command's help after its own; :class:`.app.Command` adds them.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from ..choices import Missing, OutputFormat
from .options import (
    ByOpt,
    ChunkRowsOpt,
    DelimiterOpt,
    EngineOpt,
    ExcludeTokenIdsOpt,
    FailAboveOpt,
    FailBelowOpt,
    FormatOpt,
    LastOpt,
    OutputOpt,
    PositionsOpt,
    SchedulerFileOpt,
    SchedulerOpt,
    StorageOpt,
    ThreadsOpt,
    TimeoutOpt,
    TokenIdsOpt,
    WorkersOpt,
    choice,
    format_type,
)

if TYPE_CHECKING:
    from ..io.base import ReadOptions
    from ..jobs.compute_plan import EngineOptions
    from ..jobs.gates import Gate
    from ..jobs.slices import Slices

__all__ = [
    "GROUPS",
    "Cluster",
    "Output",
    "Side",
    "Storage",
    "Work",
    "cluster",
    "gates",
    "inputs",
    "output",
    "slices",
    "storage",
    "uses",
    "work",
]

F = TypeVar("F", bound=Callable[..., Any])
#: The attribute of a command (its callback) listing its groups, for :class:`.app.Command`.
GROUPS = "__kldiv_groups__"


def uses(**groups: Callable[..., Any]) -> Callable[[F], F]:
    """Give a command the options of ``groups`` (keyword: the parameter that receives
    the group's value)."""

    def decorate(command: F) -> F:
        signature = inspect.signature(command)
        names = {key: list(inspect.signature(g).parameters) for key, g in groups.items()}

        @functools.wraps(command)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            for key, group in groups.items():
                kwargs[key] = group(**{name: kwargs.pop(name) for name in names[key]})
            return command(*args, **kwargs)

        # Typer reads the command's options from its signature and annotations: the
        # groups' parameters are left out of both (their annotations may name types
        # imported only for the type checker).
        own = [p for name, p in signature.parameters.items() if name not in groups]
        wrapper.__signature__ = signature.replace(parameters=own)  # type: ignore[attr-defined]
        wrapper.__annotations__ = {
            k: v for k, v in command.__annotations__.items() if k not in groups
        }
        setattr(wrapper, GROUPS, (*getattr(command, GROUPS, ()), *groups.values()))
        return wrapper  # type: ignore[return-value]

    return decorate


def _group(build: F, parameters: Sequence[tuple[str, Any, Any]]) -> F:
    """``build`` with the signature of ``parameters`` (name, ``Annotated`` option,
    default), the options Typer makes of it. Its own annotations are left out: they
    may name types imported only for the type checker."""
    build.__annotations__ = {}
    build.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [
            inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=d, annotation=a)
            for name, a, d in parameters
        ]
    )
    return build


def _name(option: str) -> str:
    return option.lstrip("-").replace("-", "_")


@dataclass(frozen=True)
class Output:
    """``-f/--format`` and ``-o/--output``."""

    format: OutputFormat = OutputFormat.AUTO
    #: ``-o`` as given (``-`` included: stdout).
    path: str | None = None

    @property
    def file(self) -> str | None:
        """The file ``-o`` names; None for stdout (no ``-o``, or ``-o -``)."""
        return self.path if self.path != "-" else None


def output(help: str | None = None) -> Callable[..., Output]:
    """``-f/--format`` and ``-o/--output`` (``help``: the command's own words for -o)."""
    out_opt: Any = OutputOpt
    if help is not None:
        out_opt = Annotated[str | None, typer.Option("--output", "-o", metavar="PATH", help=help)]

    def build(format: OutputFormat, output: str | None) -> Output:
        return Output(format, output)

    return _group(build, [("format", FormatOpt, OutputFormat.AUTO), ("output", out_opt, None)])


@dataclass(frozen=True)
class Side:
    """One input's options: each is an option name (None: the command has none), and
    its help."""

    format: str | None = None
    key: str | None = None
    columns: str | None = None
    format_help: str = ""
    key_help: str = ""
    columns_help: str = ""
    #: Booleans read as 0 and 1 (a mask).
    booleans: bool = False

    def options(self) -> list[tuple[str, str | None, str]]:
        """(option, metavar, help) of each option this side has."""
        found = [
            (self.format, "FMT", self.format_help),
            (self.key, None, self.key_help),
            (self.columns, "COLS", self.columns_help),
        ]
        return [(o, m, h) for o, m, h in found if o is not None]


def inputs(
    *sides: Side,
    missing: Missing | None = Missing.ERROR,
    missing_help: str = "Missing cells in CSV/Parquet: an error naming the first one "
    "(default), or NaN.",
) -> Callable[..., tuple[ReadOptions, ...]]:
    """The options of each of ``sides`` (an option two sides share is declared once),
    ``--delimiter`` and ``--missing`` (None: no ``--missing``, for commands that count
    missing values instead); the value is each side's ``ReadOptions``."""
    parameters: dict[str, tuple[str, Any, Any]] = {}
    for side in sides:
        for option, metavar, text in side.options():
            # A format option completes the registry's names; the others show a metavar.
            kind = {"click_type": format_type()} if option == side.format else {"metavar": metavar}
            annotated = Annotated[str | None, typer.Option(option, help=text, **kind)]
            parameters.setdefault(_name(option), (_name(option), annotated, None))
    parameters["delimiter"] = ("delimiter", DelimiterOpt, None)
    if missing is not None:
        missing_opt = Annotated[Missing, choice(Missing, "--missing", help=missing_help)]
        parameters["missing"] = ("missing", missing_opt, missing)

    def build(**values: Any) -> tuple[ReadOptions, ...]:
        from ..io.base import ReadOptions

        def value(option: str | None) -> str | None:
            return values[_name(option)] if option is not None else None

        return tuple(
            ReadOptions(
                value(side.format),
                value(side.key),
                value(side.columns),
                values["delimiter"],
                values.get("missing", Missing.ERROR),
                booleans=side.booleans,
                key_option=side.key,
                format_option=side.format,
                columns_option=side.columns,
            )
            for side in sides
        )

    return _group(build, list(parameters.values()))


def gates() -> Callable[..., tuple[Gate, ...]]:
    """``--fail-above NAME=X`` and ``--fail-below NAME=X``, parsed
    (:func:`kldiv_cli.jobs.gates.parse_gates`)."""

    def build(fail_above: list[str] | None, fail_below: list[str] | None) -> tuple[Gate, ...]:
        from ..jobs.gates import parse_gates

        return parse_gates(fail_above or (), fail_below or ())

    return _group(build, [("fail_above", FailAboveOpt, None), ("fail_below", FailBelowOpt, None)])


def slices() -> Callable[..., Slices]:
    """``--positions``, ``--last``, ``--token-ids``, ``--exclude-token-ids``, ``--by``
    (compare, estimate): :class:`~kldiv_cli.jobs.slices.Slices`."""

    def build(
        positions: str | None,
        last: int | None,
        token_ids: str | None,
        exclude_token_ids: str | None,
        by: list[str] | None,
    ) -> Slices:
        from ..jobs.slices import Slices

        return Slices.of(positions, last, token_ids, exclude_token_ids, by)

    return _group(
        build,
        [
            ("positions", PositionsOpt, None),
            ("last", LastOpt, None),
            ("token_ids", TokenIdsOpt, None),
            ("exclude_token_ids", ExcludeTokenIdsOpt, None),
            ("by", ByOpt, None),
        ],
    )


@dataclass(frozen=True)
class Storage:
    """``--storage-option KEY=VALUE`` settings, as given."""

    pairs: tuple[str, ...] = ()


def storage() -> Callable[..., Storage]:
    """``--storage-option KEY=VALUE`` (repeatable)."""

    def build(storage_option: list[str] | None) -> Storage:
        return Storage(tuple(storage_option or ()))

    return _group(build, [("storage_option", StorageOpt, None)])


@dataclass(frozen=True)
class Work:
    """``--threads N`` and ``--chunk-rows N``."""

    threads: int | None = None
    chunk_rows: int | None = None


def work() -> Callable[..., Work]:
    """``--threads`` and ``--chunk-rows``."""

    def build(threads: int | None, chunk_rows: int | None) -> Work:
        return Work(threads, chunk_rows)

    return _group(build, [("threads", ThreadsOpt, None), ("chunk_rows", ChunkRowsOpt, None)])


@dataclass(frozen=True)
class Cluster:
    """``--engine`` and the Dask cluster it runs on."""

    #: A name of the engine registry (checked by the job).
    engine: str
    options: EngineOptions


def cluster() -> Callable[..., Cluster]:
    """``--engine``, ``--scheduler``, ``--scheduler-file``, ``--workers``, ``--timeout``."""

    def build(
        engine: str,
        scheduler: str | None,
        scheduler_file: str | None,
        workers: int | None,
        timeout: float,
    ) -> Cluster:
        from ..jobs.compute_plan import EngineOptions

        return Cluster(engine, EngineOptions(scheduler, scheduler_file, workers, timeout))

    return _group(
        build,
        [
            ("engine", EngineOpt, "local"),
            ("scheduler", SchedulerOpt, None),
            ("scheduler_file", SchedulerFileOpt, None),
            ("workers", WorkersOpt, None),
            ("timeout", TimeoutOpt, 10.0),
        ],
    )
