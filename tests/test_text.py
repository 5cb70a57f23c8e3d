"""The one sanitiser: names from data or paths can never control a terminal or Rich."""

from __future__ import annotations

import io
import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kldiv_cli.text import (
    clean,
    clean_lines,
    csv_text,
    format_number,
    markdown_text,
    markup,
    unicode_safe,
)

# Everything a terminal, a bidi renderer or a line-based reader may act on.
UNSAFE = {chr(c) for c in [*range(0x20), *range(0x7F, 0xA0)]} | {
    "\u061c",
    "\u200b",
    "\u200e",
    "\u200f",
    "\u2028",
    "\u2029",
    *map(chr, range(0x202A, 0x202F)),
    *map(chr, range(0x2066, 0x206A)),
    "\ufeff",
}


def is_safe(text: str) -> bool:
    return not any(
        ch in UNSAFE or 0xD800 <= ord(ch) <= 0xDFFF or 0xE0000 <= ord(ch) <= 0xE007F for ch in text
    )


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("a\x1b[2Jb", "a\\x1b[2Jb"),  # CSI: clear the screen
        ("\x1b]0;pwned\x07", "\\x1b]0;pwned\\x07"),  # OSC: set the window title
        (
            "\x1b]8;;https://x\x1b\\link\x1b]8;;\x1b\\",
            "\\x1b]8;;https://x\\x1b\\link\\x1b]8;;\\x1b\\",
        ),
        ("\x9b31m", "\\x9b31m"),  # C1 CSI, one character
        ("\x85next", "\\x85next"),  # C1 next line
        ("a\nb", "a\\nb"),
        ("a\r\nb", "a\\r\\nb"),
        ("tab\there", "tab\\there"),
        ("nul\x00", "nul\\x00"),
        ("del\x7f", "del\\x7f"),
        ("admin\u202egnp.exe", "admin\\u202egnp.exe"),  # right-to-left override
        ("\u2066isolate\u2069", "\\u2066isolate\\u2069"),
        ("mark\u200f", "mark\\u200f"),
        ("zero\u200bwidth", "zero\\u200bwidth"),
        ("line\u2028sep", "line\\u2028sep"),
        ("\ufeffbom", "\\ufeffbom"),
        ("tag\U000e0041", "tag\\U000e0041"),
        ("caf\udce9.csv", "caf\\xe9.csv"),  # a Latin-1 file name, surrogate-escaped
        ("lone\ud800", "lone\\ud800"),
    ],
)
def test_clean_makes_controls_visible(raw: str, shown: str) -> None:
    assert clean(raw) == shown
    assert is_safe(clean(raw))
    assert clean(raw).encode("utf-8")  # every result can be written to a UTF-8 stream


@pytest.mark.parametrize(
    "text", ["plain", "café", "日本語", "emoji 👩‍👩‍👧", "क्षि", "a,b;c", "[x]", "back\\slash"]
)
def test_clean_keeps_ordinary_text(text: str) -> None:
    assert clean(text) is text or clean(text) == text


def test_clean_accepts_any_object() -> None:
    class Name:
        def __str__(self) -> str:
            return "x\x1b[2J"

    assert clean(3) == "3"
    assert clean(Name()) == "x\\x1b[2J"


@given(st.text())
def test_clean_output_is_always_safe(text: str) -> None:
    out = clean(text)
    assert is_safe(out)
    assert "\n" not in out
    if is_safe(text):
        assert out == text


@given(st.text())
def test_clean_output_is_valid_xml_text(text: str) -> None:
    import xml.etree.ElementTree as ET
    from xml.sax.saxutils import escape, quoteattr

    shown = clean(text)
    root = ET.fromstring(f"<a name={quoteattr(shown)}>{escape(shown)}</a>")
    assert root.text in (shown, None) and root.get("name") == shown


@given(st.text())
def test_clean_lines_keeps_only_newlines(text: str) -> None:
    out = clean_lines(text)
    assert out.split("\n") == [clean(part) for part in text.split("\n")]


@given(st.text())
def test_markup_reads_back_as_the_clean_text(text: str) -> None:
    """Whatever brackets or backslashes a name holds, inside a styled line Rich shows it
    exactly as clean() writes it, and the line's own tags still work."""
    from rich.text import Text

    shown = Text.from_markup(f"[bold]{markup(text)}[/bold] and [dim]more[/dim]", emoji=False)
    assert shown.plain == clean(text) + " and more"
    assert [s.style for s in shown.spans] == ["bold", "dim"] or not clean(text)


@pytest.mark.parametrize(
    "name",
    ["[/]", "[link=https://evil.example]click[/link]", "[bold red]x", "a\\", "\\[b]", "[/", "]["],
)
def test_markup_in_a_rich_table(name: str) -> None:
    """``[/]`` does not crash, ``[link=...]`` is no hyperlink, on a colour terminal too."""
    from rich.console import Console
    from rich.table import Table

    buf = io.StringIO()
    console = Console(file=buf, force_terminal=True, width=200, emoji=False)
    table = Table(title=markup(name))
    table.add_column(markup(name))
    table.add_row(markup(name))
    console.print(table)
    out = buf.getvalue()
    assert "\x1b]8;" not in out  # OSC 8, a terminal hyperlink
    assert out.count(name) == 3


def test_very_long_names_are_kept_whole() -> None:
    name = ("x" * 999 + "\x1b") * 1000
    out = clean(name)
    assert len(out) == 999 * 1000 + 4 * 1000
    assert out.count("\\x1b") == 1000
    assert markup("[a]" * 100_000) == "\\[a]" * 100_000


def test_every_unsafe_category_is_escaped() -> None:
    """All C0/C1 controls and every bidi format character (category Cf, bidi class LRE,
    RLE, LRO, RLO, PDF, LRI, RLI, FSI, PDI, LRM, RLM, ALM)."""
    bidi = {"LRE", "RLE", "LRO", "RLO", "PDF", "LRI", "RLI", "FSI", "PDI"}
    for code in range(0x3000):
        ch = chr(code)
        if (
            unicodedata.category(ch) == "Cc"
            or unicodedata.bidirectional(ch) in bidi
            or ch in "\u200e\u200f\u061c"
        ):
            assert clean(ch) != ch, hex(code)


@given(st.floats(allow_nan=True, allow_infinity=True), st.floats(width=32, allow_nan=False))
def test_format_number_round_trips_and_rounds_to_digits(x: float, y: float) -> None:
    import numpy as np

    assert format_number(x, 6) == f"{x:.6g}"
    if x == x:
        assert float(format_number(x)) == x
    assert np.float32(format_number(np.float32(y))) == np.float32(y)


def test_format_number_of_other_values() -> None:
    import numpy as np

    assert [format_number(v) for v in (True, None, 7, np.int64(-3), np.bool_(False))] == [
        "true",
        "",
        "7",
        "-3",
        "false",
    ]


# --- the encoders of each output format ---------------------------------------------

FORMULA_START = tuple("=+-@\t\r\uff1d\uff0b\uff0d\uff20")


@pytest.mark.parametrize(
    ("raw", "cell"),
    [
        ('=HYPERLINK("http://e.example","x")', '\'=HYPERLINK("http://e.example","x")'),
        ("+cmd|' /C calc'!A0", "'+cmd|' /C calc'!A0"),
        ("@SUM(1)", "'@SUM(1)"),
        ("-2+3", "'-2+3"),
        ("\uff1d1+1", "'\uff1d1+1"),
        ("\t=1", "\\t=1"),  # the tab is made visible first: no longer the first character
        ("-", "'-"),
        # Numbers stay numbers, whatever their sign or spelling.
        ("-0.5", "-0.5"),
        ("+1e3", "+1e3"),
        ("-inf", "-inf"),
        ("-Infinity", "-Infinity"),
        ("plain", "plain"),
    ],
)
def test_csv_text_neutralises_formulas(raw: str, cell: str) -> None:
    assert csv_text(raw) == cell


@settings(max_examples=50)
@given(st.text(max_size=20))
def test_csv_text_never_starts_a_formula(text: str) -> None:
    cell = csv_text(text)
    try:
        float(cell)
        number = "_" not in cell and cell.strip() == cell
    except ValueError:
        number = False
    assert not cell.startswith(FORMULA_START) or number, cell
    assert is_safe(cell)


@settings(max_examples=50)
@given(st.floats() | st.integers())
def test_csv_text_keeps_numbers(x: float) -> None:
    assert csv_text(format_number(x)) == format_number(x)


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ('<img src="http://e.example/p.png">', '&lt;img src="http\\://e.example/p.png"&gt;'),
        ("![x](http://e.example/p.png)", "\\!\\[x\\](http\\://e.example/p.png)"),
        ("[x](javascript:alert(1))", "\\[x\\](javascript:alert(1))"),
        ("`code` | *b*", "\\`code\\` \\| \\*b\\*"),
        ("\\[x](y)", "\\\\\\[x\\](y)"),  # a backslash cannot undo the escape after it
        ("go to www.e.example", "go to www\\.e.example"),
        ("user_id", "user_id"),
    ],
)
def test_markdown_text_escapes_html_links_and_code(raw: str, shown: str) -> None:
    assert markdown_text(raw) == shown


def test_unicode_safe() -> None:
    assert unicode_safe("d\udcff/x\udcfe.csv") == "d\\xff/x\\xfe.csv"
    assert unicode_safe("caf\u00e9 \U0001f600") == "caf\u00e9 \U0001f600"
    assert "\ud800" not in unicode_safe("a\ud800b")
