"""CSV text below the readers: the first lines (layout, header, block size), lines read
with a bounded length, and the one-line messages for text that is not UTF-8 or not CSV.

The readers in :mod:`.csv` (whole files, parts, streams, wide files) share these.
"""

from __future__ import annotations

import codecs
import io
from collections.abc import Iterator
from typing import Any, BinaryIO, NamedTuple

from ..errors import InputError, UsageError
from .base import ReadOptions
from .columns import check_unique, is_number
from .formats import get

#: The longest cell: the limit of Python's csv module, and far more than any number.
MAX_CELL = 128 << 10
#: pyarrow's own block size, which the whole-file reader keeps for ordinary lines.
ARROW_BLOCK = 1 << 20
#: The largest block: lines longer than half of it (a header of 64 MiB) are refused by
#: the reader's own error, as any line longer than its block.
MAX_BLOCK = 1 << 27
#: The longest line read line by line (a wide file's header of names, a line searched
#: when locating a parse error): the longest any block holds (:func:`block_size`), so
#: a header of 450,000 names (4.4 MB) is read, and memory stays bounded (one line of at
#: most 64 Mi characters) for a gigabyte without a newline.
MAX_LINE = MAX_BLOCK // 2


def memory_pool() -> Any:
    """The Arrow memory pool of the CSV readers: the C library's allocator.

    pyarrow's default (mimalloc) asks the kernel for transparent huge pages; a parse
    writes hundreds of megabytes of fresh memory, and on a virtual machine each huge
    page is zeroed on first touch at a fraction of memory speed. Measured on a 2-core
    VM, 200,000 x 50 floats in two CSV files: 1.08 s with mimalloc, 0.70 s with this
    pool (0.76 s with jemalloc), for the same CPU time in the parse.
    """
    import pyarrow as pa

    return pa.system_memory_pool()


def block_size(path: str | None, data: bytes | None, least: int = ARROW_BLOCK) -> int:
    """A pyarrow block size that holds the first two lines twice over (at least
    ``least``, at most :data:`MAX_BLOCK`).

    pyarrow infers the columns from its first block and needs every row within one
    block: a header of 100,000 names (5 MB) in 1 MiB blocks is "Empty CSV file or
    block". Only the first two lines are measured (a bounded read).
    """
    if path is not None:
        with open(path, "rb") as f:
            head = b""
            while head.count(b"\n") < 2 and len(head) < MAX_BLOCK:
                more = f.read(ARROW_BLOCK)
                if not more:
                    break
                head += more
    else:
        head = (data or b"")[:MAX_BLOCK]
    first = head.find(b"\n")
    second = head.find(b"\n", first + 1) if first >= 0 else -1
    longest = max(first, second - first - 1, 0) if first >= 0 else len(head)
    needed = 1 << (2 * longest).bit_length()
    return max(least, min(needed, MAX_BLOCK))


def not_utf8(data: bytes, offset: int) -> str:
    """The message for text whose byte at ``offset`` is not UTF-8: text in another
    encoding (no NUL byte, which is binary data) that a user can convert."""
    return (
        f"is not UTF-8 text (byte 0x{data[offset]:02x} at offset {offset:,}); convert it, "
        "e.g. iconv -f latin1 -t utf-8 FILE > FILE.utf8"
    )


def head_of(path: str | None, data: bytes | None) -> bytes:
    if path is not None:
        with open(path, "rb") as f:
            return f.read(1 << 16)
    return (data or b"")[: 1 << 16]


class Layout(NamedTuple):
    """What the first 64 KiB of a CSV say."""

    delimiter: str
    #: The first line is a header (not all numbers or empty cells).
    header: bool
    #: Fields on the first line (counted in the first 64 KiB: a lower bound).
    width: int


def csv_layout(
    label: str, path: str | None, data: bytes | None, fmt: str, options: ReadOptions
) -> Layout:
    """The delimiter, header and width from the first 64 KiB; errors for empty or
    binary files."""
    return layout_of(label, head_of(path, data), fmt, options)


def layout_of(label: str, head: bytes, fmt: str, options: ReadOptions) -> Layout:
    """:func:`csv_layout` of the first 64 KiB ``head``."""
    if not head.strip():
        raise InputError(label, "is empty")
    if b"\x00" in head:
        raise InputError(label, "is not a text file (it holds binary data)")
    try:
        text = head.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        # The decoder counts after the BOM; the message counts the file's bytes.
        offset = exc.start + (len(codecs.BOM_UTF8) if head.startswith(codecs.BOM_UTF8) else 0)
        if offset < len(head) - 4:  # not a character cut by the 64 KiB
            raise InputError(label, not_utf8(head, offset)) from None
        text = head[:offset].decode("utf-8-sig")
    delimiter = options.delimiter or get(fmt).delimiter or ","
    if delimiter in ("\\t", "tab"):
        delimiter = "\t"
    if len(delimiter) != 1:
        raise UsageError(f"the delimiter must be one character, got {delimiter!r}")
    if delimiter in '\r\n"':
        raise UsageError(f"the delimiter cannot be {delimiter!r} (a line end or the quote)")
    import csv

    # The first line only: splitting all 64 KiB into lines cost more than the rest.
    first_line = text.partition("\n")[0].splitlines()[:1]
    first = next(csv.reader(first_line, delimiter=delimiter), [])
    return Layout(delimiter, not all(is_number(c) or not c.strip() for c in first), len(first))


def check_header(label: str, names: list[str]) -> None:
    """Unique column names, none longer than :data:`MAX_CELL`."""
    for name in names:
        if len(name) > MAX_CELL:
            raise InputError(
                label,
                f"line 1 has a column name of {len(name):,} characters (the limit is {MAX_CELL:,})",
            )
    check_unique(label, names)


def first_row(label: str, path: str | None, data: bytes | None, delimiter: str) -> list[str]:
    """The fields of the first line (read up to :data:`MAX_LINE`)."""
    import csv

    raw: BinaryIO = open(path, "rb") if path is not None else io.BytesIO(data or b"")
    with raw, io.TextIOWrapper(raw, encoding="utf-8-sig", errors="replace", newline="") as text:
        return next(csv.reader(lines(text, label), delimiter=delimiter), [])


def lines(fp: io.TextIOBase, label: str) -> Iterator[str]:
    """The lines of a text stream, none longer than :data:`MAX_LINE` (else an error)."""
    lineno = 0
    while True:
        line = fp.readline(MAX_LINE)
        if not line:
            return
        lineno += 1
        if len(line) >= MAX_LINE and not line.endswith(("\n", "\r")):
            raise InputError(label, f"line {lineno} is longer than {MAX_LINE:,} characters")
        yield line


def csv_error(
    label: str, path: str | None, data: bytes | None, delimiter: str, exc: Exception
) -> InputError:
    """Find the line behind a pyarrow CSV parse error (it does not say which), reading
    line by line with bounded memory."""
    import csv

    raw: BinaryIO = open(path, "rb") if path is not None else io.BytesIO(data or b"")
    with raw, io.TextIOWrapper(raw, encoding="utf-8-sig", errors="replace", newline="") as text:
        reader = csv.reader(lines(text, label), delimiter=delimiter)
        width = None
        lineno = 0
        try:
            for lineno, row in enumerate(reader, 1):
                if not row:
                    continue
                if width is None:
                    width = len(row)
                elif len(row) != width:
                    return InputError(
                        label, f"line {lineno} has {len(row)} fields, expected {width}"
                    )
        except csv.Error:  # the only one reachable: a field over the module's limit
            return InputError(
                label, f"line {lineno + 1} has a cell longer than {MAX_CELL:,} characters"
            )
    message = str(exc).strip().splitlines()[0]
    if "straddling" in message:
        message = "a line is longer than the CSV reader's block"
    return InputError(label, f"is not valid CSV ({message})")
