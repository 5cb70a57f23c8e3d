"""Write the format table of docs/inputs.md from the format registry (kldiv_cli.io.formats).

    python scripts/format_table.py          # rewrite the table in place
    python scripts/format_table.py --check  # exit 1 when the doc differs from the registry

The table sits between the two marker lines; everything else in the page is left as it is.
"""

from __future__ import annotations

import sys
from pathlib import Path

from kldiv_cli.io.formats import markdown_table

DOC = Path(__file__).resolve().parent.parent / "docs" / "inputs.md"
BEGIN = "<!-- format table: written by scripts/format_table.py from kldiv_cli/io/formats.py -->"
END = "<!-- end of format table -->"


def with_table(page: str) -> str:
    """``page`` with the text between the markers replaced by the registry's table."""
    head, rest = page.split(BEGIN + "\n", 1)
    _, tail = rest.split(END, 1)
    return f"{head}{BEGIN}\n{markdown_table()}{END}{tail}"


def main(argv: list[str]) -> int:
    page = DOC.read_text(encoding="utf-8")
    wanted = with_table(page)
    if "--check" in argv:
        if page != wanted:
            print(f"{DOC}: the format table differs from the registry; run {__file__}")
            return 1
        return 0
    DOC.write_text(wanted, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
