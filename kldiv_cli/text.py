"""One sanitiser for every piece of text that comes from data or paths.

Column names, npz member names, category values and file names are chosen by
whoever wrote the file. Before any of them reaches a terminal, a message, a Rich
table, XML or HTML, it passes through :func:`clean`, which makes control
characters visible instead of letting them act (an ESC sequence can clear the
screen or set the window title; a newline would split a one-line error in two).
:func:`markup` additionally escapes Rich markup, so ``[link=...]`` or ``[/]`` in a
column name is shown as typed instead of becoming a hyperlink or a crash.
:func:`format_number` writes the numbers beside them, for the render layer and for
the jobs that name values in labels (drift's bin edges).

Each output format then has its own encoder for such text, used by every command:
:func:`csv_text` (a spreadsheet never runs a cell as a formula), :func:`markdown_text`
(no HTML, image, link or code from data in a rendered page) and :func:`unicode_safe`
(JSON, XML and HTML hold valid Unicode: the undecodable bytes of a file name are shown
as ``\\xff``, never as a lone surrogate that strict parsers reject).
"""

from __future__ import annotations

import math
import re
from typing import Any

__all__ = [
    "clean",
    "clean_lines",
    "csv_text",
    "format_number",
    "listing",
    "markdown_text",
    "markup",
    "shorten",
    "unicode_safe",
]

#: The longest run of text without a space that a message shows whole (a path, a URL,
#: a name): longer ones keep their start and end around ``...``.
WORD_LIMIT = 160
#: The longest message line: a longer one keeps its start and end around ``...``.
LINE_LIMIT = 1000
_ELLIPSIS = "..."

# What never reaches a terminal raw: C0 controls, DEL, C1 controls (U+009B is a
# one-character CSI), the Unicode controls that reorder text (bidi embeddings,
# overrides, isolates and marks: a "Trojan Source" name reads differently from what
# it is), invisible characters that make two names look the same (zero-width space,
# word joiner, invisible operators, tags, BOM), line and paragraph separators, and
# lone surrogates (how Python carries the undecodable bytes of a file name). The
# zero-width (non-)joiners U+200C/U+200D stay: scripts and emoji need them. With the
# non-characters U+FFFE/U+FFFF also escaped, the result is valid in XML 1.0.
_C0_BUT_NEWLINE = "\x00-\x09\x0b-\x1f"
_OTHERS = (
    "\x7f-\x9f\u061c\u180e\u200b\u200e\u200f\u2028-\u202e\u2060-\u206f"
    "\ufeff\ufff9-\ufffb\ufffe\uffff\ud800-\udfff\U000e0000-\U000e007f"
)
_UNSAFE = re.compile(f"[\n{_C0_BUT_NEWLINE}{_OTHERS}]")
# The same but newlines stay: for whole texts of several lines.
_UNSAFE_IN_LINES = re.compile(f"[{_C0_BUT_NEWLINE}{_OTHERS}]")
_PRINTABLE_ASCII = bytes(range(0x20, 0x7F)) + b"\n"
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t", "\x1b": "\\x1b"}


def _escape(match: re.Match[str]) -> str:
    ch = match.group()
    named = _NAMED.get(ch)
    if named is not None:
        return named
    code = ord(ch)
    if 0xDC80 <= code <= 0xDCFF:
        # A byte that was not UTF-8 (os.fsdecode's surrogateescape): show the byte.
        return f"\\x{code - 0xDC00:02x}"
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def clean(text: object) -> str:
    """``text`` as a string with every unsafe character written as a visible escape.

    Parameters
    ----------
    text : object
        A name from data or a path (anything else is passed through ``str``).

    Returns
    -------
    str
        The same text when nothing in it is unsafe (the common case, no copy);
        otherwise controls as ``\\n``, ``\\t``, ``\\x1b``, ``\\x9b``, ``\\u202e``,
        undecodable file-name bytes as ``\\xff``. The result is one line and holds no
        character that a terminal acts on. It is not reversible (a name holding a
        backslash and ``n`` looks like an escaped newline): it is for showing, never for
        naming a column or file.

    Examples
    --------
    >>> clean("a\\x1b[2Jb\\nc")
    'a\\\\x1b[2Jb\\\\nc'
    """
    s = text if isinstance(text, str) else str(text)
    return _UNSAFE.sub(_escape, s) if _UNSAFE.search(s) else s


def clean_lines(text: str) -> str:
    """:func:`clean` for a text of several lines: the newlines stay, everything else
    unsafe (tabs and carriage returns included) is escaped. One pass over the whole
    text, so a million output lines cost one scan; ASCII text (numbers) is checked by
    deleting its printable bytes, which is faster than the regular expression."""
    if text.isascii() and not text.encode("ascii").translate(None, _PRINTABLE_ASCII):
        return text
    return _UNSAFE_IN_LINES.sub(_escape, text) if _UNSAFE_IN_LINES.search(text) else text


def _elide(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters by dropping its middle (the start names the
    folder or the message, the end the file or the cause)."""
    if len(text) <= limit:
        return text
    keep = limit - len(_ELLIPSIS)
    head = keep * 3 // 5
    return text[:head] + _ELLIPSIS + text[len(text) - (keep - head) :]


def shorten(text: str, word: int = WORD_LIMIT, line: int = LINE_LIMIT) -> str:
    """A message bounded in length, whatever names and paths it holds.

    Parameters
    ----------
    text : str
        One message line (already :func:`clean`, so escapes count as shown).
    word : int
        The most characters kept of one run without spaces (a path of 300 folders,
        a 50,000-character column name): its middle is replaced by ``...``.
    line : int
        The most characters of the whole line (a list of 20,000 member names),
        again by eliding the middle.

    Returns
    -------
    str
        ``text`` itself when it is within both limits; else at most ``line``
        characters, every run without spaces at most ``word``.

    Examples
    --------
    >>> shorten("a/" * 200 + "x.bin: no such file", word=20)
    'a/a/a/a/a/.../x.bin: no such file'
    """
    if len(text) > word:
        text = re.sub(r"\S{%d,}" % (word + 1), lambda m: _elide(m.group(), word), text)
    return _elide(text, line)


_SURROGATE = re.compile("[\ud800-\udfff]")


def unicode_safe(text: str) -> str:
    """``text`` with every lone surrogate written as a visible escape (``\\xff`` for a
    byte of a file name that was not UTF-8, ``\\udXXX`` otherwise), so that it encodes
    as UTF-8 and is valid in JSON and XML; everything else is left as it is."""
    return _SURROGATE.sub(_escape, text) if _SURROGATE.search(text) else text


# A cell that starts with one of these is a formula to Excel, LibreOffice and Google
# Sheets (OWASP's list; the full-width forms too, which some of them fold).
_FORMULA_START = tuple("=+-@\t\r\uff1d\uff0b\uff0d\uff20")
_NUMBER = re.compile(
    r"[+-]?(?:(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|inf|infinity|nan)",
    re.IGNORECASE,
)


def csv_text(text: object) -> str:
    """:func:`clean`, then a text that a spreadsheet would run as a formula prefixed with
    ``'`` (OWASP's advice for CSV injection): ``=HYPERLINK(...)``, ``+cmd|...``,
    ``@SUM(...)``, ``-2+3``. A number stays a number: ``-0.5``, ``+1e3``, ``-inf`` are
    left as they are. The csv module quotes the result as usual."""
    s = clean(text)
    if s.startswith(_FORMULA_START) and not _NUMBER.fullmatch(s):
        return "'" + s
    return s


_MARKDOWN = {
    "\\": "\\\\",
    "`": "\\`",
    "*": "\\*",
    "[": "\\[",
    "]": "\\]",
    "!": "\\!",
    "|": "\\|",
    "&": "&amp;",
    "<": "&lt;",
    ">": "&gt;",
}
_MARKDOWN_SPECIAL = re.compile("[\\\\`*\\[\\]!|&<>]")
_AUTOLINK = re.compile(r"(?i)(?<=[a-z])(?=://)|(?<=www)(?=\.)")


def markdown_text(text: object) -> str:
    """:func:`clean`, then every character that Markdown (GitHub's, as CI job summaries
    render it) acts on escaped: HTML (``<img src=...>`` is ``&lt;img ...``, so no
    tracking pixel), image and link syntax (``![x](...)``, ``[x](...)``), code spans,
    ``*`` emphasis and table pipes; ``https://`` and ``www.`` get a backslash before the
    ``:``/``.`` so that no bare URL is made a link. Rendered, the text reads as typed."""
    s = clean(text)
    if _MARKDOWN_SPECIAL.search(s):
        s = _MARKDOWN_SPECIAL.sub(lambda m: _MARKDOWN[m.group()], s)
    if "://" in s or "www." in s.lower():
        s = _AUTOLINK.sub("\\\\", s)
    return s


# A "[" with the backslashes before it, and the tag it may open (Rich's tag pattern).
_BRACKET = re.compile(r"(\\*)(\[(?:[a-z#/@][^[]*?\])?)")


def _escape_bracket(match: re.Match[str]) -> str:
    slashes, bracket = match.groups()
    if bracket == "[":  # no tag: Rich drops the one backslash before any "[" of text
        return slashes + "\\["
    return slashes * 2 + "\\" + bracket  # a tag: its backslashes halve, an odd one escapes


def listing(names: list[str], shown: int = 10) -> str:
    """The first ``shown`` of ``names``, comma-separated, and how many there are in all
    when that is more (an .npz of 20,000 members is named in one short line)."""
    head = ", ".join(names[:shown])
    return head if len(names) <= shown else f"{head}, ... ({len(names):,} in all)"


def markup(text: object) -> str:
    """:func:`clean`, then Rich markup escaped: safe inside a Rich table or a styled line
    (``[link=...]`` stays text, ``[/]`` cannot close a style that is not open, and
    backslashes show as typed: Rich's own ``escape`` loses the one in ``\\[``)."""
    s = clean(text)
    if "[" not in s and "\\" not in s:
        return s
    s = _BRACKET.sub(_escape_bracket, s)
    # Backslashes at the end would escape the tag that follows the text.
    return s + "\\" * (len(s) - len(s.rstrip("\\")))


def format_number(value: Any, digits: int | None = None) -> str:
    """A number as text: the shortest that reads back to the same value in its own dtype.

    Parameters
    ----------
    value
        A Python or NumPy number (anything else is passed through ``str``).
    digits : int, optional
        Significant digits (``{:.{digits}g}``) for a finite float instead of the
        shortest round trip.

    Returns
    -------
    str
        Integers in full, booleans as ``true``/``false``, None as an empty string,
        non-finite floats as ``nan``, ``inf``, ``-inf`` (also with ``digits``).
    """
    if digits is not None and isinstance(value, float) and math.isfinite(value):
        return f"{value:.{digits}g}"
    if isinstance(value, bool) or value is None:
        return str(value).lower() if isinstance(value, bool) else ""
    if isinstance(value, int):
        return str(value)
    import numpy as np

    if isinstance(value, np.generic):
        if value.dtype.kind in "iu":
            return str(int(value))
        if value.dtype.kind == "b":
            return str(bool(value)).lower()
        return str(value)
    if isinstance(value, float):
        return repr(value)
    return str(value)
