"""One sanitiser for every piece of text that comes from data or paths.

Column names, npz member names, category values and file names are chosen by
whoever wrote the file. Before any of them reaches a terminal, a message, a Rich
table, XML or HTML, it passes through :func:`clean`, which makes control
characters visible instead of letting them act (an ESC sequence can clear the
screen or set the window title; a newline would split a one-line error in two).
:func:`markup` additionally escapes Rich markup, so ``[link=...]`` or ``[/]`` in a
column name is shown as typed instead of becoming a hyperlink or a crash.
"""

from __future__ import annotations

import re

__all__ = ["clean", "markup"]

# C0 controls, DEL, C1 controls, and the Unicode controls that reorder or hide text
# (bidi overrides and isolates, zero-width joiners are left alone: they are letters' glue).
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\u2028\u2029\ufeff]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t", "\x1b": "\\x1b"}


def _escape(match: re.Match[str]) -> str:
    ch = match.group()
    named = _NAMED.get(ch)
    if named is not None:
        return named
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def clean(text: object) -> str:
    """``text`` as a string with every control character written as a visible escape.

    >>> clean("a\\x1b[2Jb\\nc")
    'a\\\\x1b[2Jb\\\\nc'
    """
    s = text if isinstance(text, str) else str(text)
    return _UNSAFE.sub(_escape, s) if _UNSAFE.search(s) else s


def markup(text: object) -> str:
    """:func:`clean`, then Rich markup escaped: safe inside a Rich table or a styled line."""
    s = clean(text)
    if "[" not in s and "\\" not in s:
        return s
    from rich.markup import escape

    return escape(s)
