"""The format registry: one :class:`Format` record per file format kldiv reads.

Everything that depends on a format is derived from :data:`REGISTRY`: which module opens
a file (:func:`opener`), how a file's name or its first bytes name its format
(:func:`by_path`, :func:`sniff`), which formats hold arrays or keyed arrays, how drift
reads one as columns (:func:`table_reader`), which formats an engine can read by ranges
(:attr:`Format.ranged`), the ``--*-format`` choices and the help and error lines listing
the formats (:func:`names_text`, :func:`extensions_text`), and the format table of
``docs/inputs.md`` (:func:`markdown_table`, written by ``scripts/format_table.py``).
Nothing outside :mod:`kldiv_cli.io` knows an extension.

Adding a format is one module of this package with an opener (see :data:`Opener`) and
one :class:`Format` entry below; ARCHITECTURE.md shows the whole diff for an example.

This module imports nothing but the standard library: the CLI builds its help from it
at start-up, and a format's module is imported only when a file of it is opened.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    from .base import ReadOptions, Source

#: The kinds of data a format holds. ``table``: named columns; ``array``: one array;
#: ``keyed``: several named arrays, one chosen by a key; ``kld``: llama.cpp's
#: log-probabilities with the tokens they score.
TABLE, ARRAY, KEYED, KLD = "table", "array", "keyed", "kld"
KINDS: tuple[str, ...] = (TABLE, ARRAY, KEYED, KLD)
#: The kinds holding arrays, not named columns.
ARRAY_KINDS: tuple[str, ...] = (ARRAY, KEYED, KLD)

#: ``(label, path or None, buffered bytes or None, format, options) -> Source``
Opener = Callable[[str, "str | None", "bytes | None", str, "ReadOptions"], "Source"]
#: The same arguments ``-> pyarrow.Table`` of named columns of any type (drift).
TableReader = Callable[[str, "str | None", "bytes | None", str, "ReadOptions"], Any]


class Format(NamedTuple):
    """One file format (a record, not a frozen dataclass: a dataclass's methods are
    compiled at every start, about 1 ms for this one).

    Parameters
    ----------
    name : str
        The format's name (``--input-format NAME``, ``"format"`` in JSON reports).
    extensions : tuple of str
        Lower-case file extensions naming it, the usual one first.
    kind : str
        One of :data:`KINDS`.
    module : str
        Its module in :mod:`kldiv_cli.io` (or a dotted module path of another package),
        imported when a file of it is opened.
    title : str
        What it is, for the docs' table.
    opener : str
        The module's function opening a file as a :class:`~.base.Source` (default
        ``open_<name>``).
    columns : str or None
        For a table: the module's function reading it whole as a pyarrow table of any
        column types (drift). Arrays need none: they become columns ``"0"``, ``"1"``...
    magic : tuple of bytes
        Prefixes its files start with (one is enough), for :func:`sniff`.
    looks_like : callable or None
        For a format without a fixed prefix: whether a file's first bytes are one.
    check_magic : bool
        A stream named as this format is refused at once when its first bytes do not
        start with :attr:`magic`.
    text : bool
        Text (a stream holding NUL bytes is refused as binary).
    delimiter : str or None
        A text table's default delimiter (``--delimiter`` overrides it).
    ranged : str or None
        How an engine reads a piece of it where it lies: ``"rows"`` (byte ranges of
        contiguous rows after a header), ``"row_groups"`` (Parquet row groups), None
        (read whole, on one machine).
    """

    name: str
    extensions: tuple[str, ...]
    kind: str
    module: str
    title: str
    opener: str = ""
    columns: str | None = None
    magic: tuple[bytes, ...] = ()
    looks_like: Callable[[bytes], bool] | None = None
    check_magic: bool = True
    text: bool = False
    delimiter: str | None = None
    ranged: str | None = None

    def matches(self, head: bytes) -> bool:
        """Whether ``head`` (a file's first bytes) is this format's."""
        if head.startswith(self.magic) if self.magic else False:
            return True
        return self.looks_like is not None and self.looks_like(head)


def _safetensors_head(head: bytes) -> bool:
    """an 8-byte little-endian length, then `{`"""
    return len(head) > 9 and head[8:9] == b"{" and 0 < int.from_bytes(head[:8], "little") < 1 << 32


def _tab_separated(head: bytes) -> bool:
    """a tab and no comma in its first line"""
    first = head.split(b"\n", 1)[0]
    return b"\t" in first and b"," not in first


def _any_text(head: bytes) -> bool:
    """anything else"""
    return True


#: Every format, in the order :func:`sniff` tries them (text last: it takes anything).
REGISTRY: list[Format] = [
    Format(
        "npy",
        (".npy",),
        ARRAY,
        "npy",
        "NumPy array; never unpickled (object arrays are refused)",
        magic=(b"\x93NUMPY",),
        ranged="rows",
    ),
    Format(
        "npz",
        (".npz",),
        KEYED,
        "npz",
        "NumPy archive: one member, chosen by the key option (default: the only one)",
        magic=(b"PK\x03\x04", b"PK\x05\x06"),
    ),
    Format(
        "safetensors",
        (".safetensors",),
        KEYED,
        "safetensors",
        "one tensor (F16, BF16, F32, F64), chosen by the key option (default: the only one)",
        looks_like=_safetensors_head,
    ),
    Format(
        "kld",
        (".kld",),
        KLD,
        "kld",
        "llama.cpp's `--kl-divergence-base` log-probabilities, with the tokens they score",
        magic=(b"_logits_",),
    ),
    Format(
        "parquet",
        (".parquet", ".pq"),
        TABLE,
        "parquet",
        "numeric columns but row keys, or one list column (see below); a folder or a glob of files is one dataset",
        columns="read_columns",
        magic=(b"PAR1",),
        ranged="row_groups",
    ),
    Format(
        "arrow",
        (".arrow", ".feather", ".ipc"),
        TABLE,
        "arrow",
        "Arrow IPC file (Feather v2) or stream, read as Parquet",
        columns="read_columns",
        magic=(b"ARROW1", b"\xff\xff\xff\xff"),
        check_magic=False,
    ),
    Format(
        "tsv",
        (".tsv", ".tab"),
        TABLE,
        "csv",
        "tab-separated text, read as CSV",
        opener="open_csv",
        columns="read_columns",
        looks_like=_tab_separated,
        text=True,
        delimiter="\t",
    ),
    Format(
        "csv",
        (".csv",),
        TABLE,
        "csv",
        "numeric columns; header detected; `--delimiter`",
        columns="read_columns",
        looks_like=_any_text,
        text=True,
        delimiter=",",
    ),
]


def register(fmt: Format) -> None:
    """Add a format to :data:`REGISTRY` (a plugin's, or a test's), before the text
    formats so that :func:`sniff` tries its magic bytes first.

    Raises
    ------
    ValueError
        When its name or one of its extensions is already a format's.
    """
    for f in REGISTRY:
        if f.name == fmt.name or set(f.extensions) & set(fmt.extensions):
            raise ValueError(f"format {fmt.name!r} clashes with {f.name!r}")
    if fmt.kind not in KINDS:
        raise ValueError(f"format {fmt.name!r}: unknown kind {fmt.kind!r}")
    text = [i for i, f in enumerate(REGISTRY) if f.text]
    REGISTRY.insert(text[0] if text and not fmt.text else len(REGISTRY), fmt)


def names() -> tuple[str, ...]:
    """Every format's name, in the registry's order."""
    return tuple(f.name for f in REGISTRY)


def get(name: str) -> Format:
    """The format named ``name`` (one of :func:`names`)."""
    return next(f for f in REGISTRY if f.name == name)


def by_path(path: str) -> Format | None:
    """The format a path's extension names, or None."""
    ext = os.path.splitext(path)[1].lower()
    return next((f for f in REGISTRY if ext in f.extensions), None)


def kind_of(path: str) -> str | None:
    """The kind (:data:`KINDS`) of the format a path's extension names, or None."""
    found = by_path(path)
    return found.kind if found is not None else None


def is_parquet(path: str) -> bool:
    """Whether ``path`` is named as a Parquet file (a dataset holds only these)."""
    found = by_path(path)
    return found is not None and found.ranged == "row_groups"


def sniff(head: bytes) -> str:
    """The format of a file or stream from its first bytes: the first format of
    :data:`REGISTRY` whose magic bytes (or shape) match; text when none does."""
    return next(f.name for f in REGISTRY if f.matches(head))


def binary_format(head: bytes) -> str | None:
    """The format whose magic bytes ``head`` starts with, or None."""
    return next((f.name for f in REGISTRY if f.magic and head.startswith(f.magic)), None)


#: The first bytes :func:`identify` looks at.
HEAD = 64


def identify(named: Format | None, head: bytes) -> Format | None:
    """The format of a file named as ``named`` (None: an unknown extension) whose first
    bytes are ``head``: the binary format they start with when they are binary (a NUL
    among them) and the name promises text, another binary format or nothing known;
    else ``named``. Text is never guessed from its bytes: a ``.xyz`` stays unknown."""
    head = head[:HEAD]
    sniffed = binary_format(head) if b"\x00" in head else None
    if sniffed is None or named is None:
        return get(sniffed) if sniffed else named
    promised = named.magic and named.check_magic and not head.startswith(named.magic)
    return get(sniffed) if named.text or promised else named


def opener(name: str) -> Opener:
    """The function opening a file of format ``name`` as a :class:`~.base.Source`."""
    fmt = get(name)
    found: Opener = _function(fmt, fmt.opener or f"open_{fmt.name}")
    return found


def table_reader(name: str) -> TableReader | None:
    """The function reading a table format whole as pyarrow columns; None for arrays."""
    fmt = get(name)
    return _function(fmt, fmt.columns) if fmt.columns is not None else None


def _function(fmt: Format, name: str) -> Any:
    # A module of this package by its own name; another package's by its dotted path.
    module = fmt.module if "." in fmt.module else f".{fmt.module}"
    return getattr(importlib.import_module(module, __package__), name)


def _either(words: Sequence[str]) -> str:
    return ", ".join(words[:-1]) + f" or {words[-1]}" if len(words) > 1 else "".join(words)


def names_text(kinds: Sequence[str] = KINDS) -> str:
    """``npy, npz, ... or csv``: the names of the formats of ``kinds``, for help."""
    return _either([f.name for f in REGISTRY if f.kind in kinds])


def extensions_text(kinds: Sequence[str] = KINDS, ranged: bool = False) -> str:
    """``.npy, .npz, ... or .csv``: the usual extension of each format of ``kinds`` (and
    that an engine reads by ranges, when ``ranged``), for messages."""
    return _either(
        [f.extensions[0] for f in REGISTRY if f.kind in kinds and (f.ranged or not ranged)]
    )


#: What a command writes (``-o``), by extension: the kinds :mod:`.writers` writes.
OUTPUT_EXTENSIONS: dict[str, str] = {
    ".npy": "npy",
    ".csv": "csv",
    ".json": "json",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".md": "markdown",
}
#: The extensions of an HTML page (``--html``).
PAGE_EXTENSIONS: tuple[str, ...] = (".html", ".htm")
#: The extension of a JUnit XML report (drift's ``--junit``).
JUNIT_EXTENSIONS: tuple[str, ...] = (".xml",)
#: The kinds written block by block as rows arrive (``-r none``, compare's ``-o``).
STREAMED_KINDS: tuple[str, ...] = ("npy", "csv", "parquet")
#: The extension each output kind is named by in messages (its first above).
OUTPUT_EXTENSION: dict[str, str] = {k: e for e, k in reversed(OUTPUT_EXTENSIONS.items())}


def output_extension_kind(path: str) -> str | None:
    """The output kind ``path``'s extension names (:data:`OUTPUT_EXTENSIONS`), or None."""
    return OUTPUT_EXTENSIONS.get(os.path.splitext(path)[1].lower())


def kinds_text(kinds: Sequence[str] | None = None) -> str:
    """``.npy, .csv or .parquet``: the extensions of output ``kinds`` (default: every
    kind), for messages and help."""
    every = list(dict.fromkeys(OUTPUT_EXTENSIONS.values()))
    return _either([OUTPUT_EXTENSION[k] for k in (every if kinds is None else kinds)])


# ---------------------------------------------------------------- help text
# The CLI's help lines about formats, built here so that a new format is listed by them.


def format_help(by_extension: bool = True) -> str:
    """The help of a ``--*-format`` option: every format's name."""
    return names_text() + (" (default: by extension)." if by_extension else ".")


def key_help(what: str) -> str:
    """The help of a ``--*-key`` option choosing an array of ``what`` (INPUT, ...)."""
    return f"Array or tensor name in {what} (a {extensions_text([KEYED])} file)."


def delimiter_help() -> str:
    """The help of ``--delimiter``: each text format's default."""
    named = {"\t": "tab"}
    defaults = ", ".join(
        f"{named.get(f.delimiter, repr(f.delimiter))} for {f.extensions[0]}"
        for f in reversed(REGISTRY)
        if f.delimiter
    )
    return f"CSV delimiter (default {defaults})."


def output_help() -> str:
    """The help of ``-o/--output`` writing any kind."""
    return (
        "Write the result to PATH, atomically; its extension picks the kind "
        f"({kinds_text()}; '-': stdout)."
    )


def markdown_table() -> str:
    """The format table of ``docs/inputs.md``, from :data:`REGISTRY`."""
    rows = [
        "| format | extensions | kind | read as | told from its first bytes by |",
        "|---|---|---|---|---|",
    ]
    for f in REGISTRY:
        prefixes = " or ".join(f"`{repr(m)[2:-1]}`" for m in f.magic)
        sniffed = prefixes or (f.looks_like.__doc__ or "" if f.looks_like else "")
        exts = ", ".join(f"`{e}`" for e in f.extensions)
        rows.append(f"| `{f.name}` | {exts} | {f.kind} | {f.title} | {sniffed} |")
    return "\n".join(rows) + "\n"
