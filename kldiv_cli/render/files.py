"""Reports into output files: how a :class:`~kldiv_cli.render.Report` becomes the bytes
of a .npy, .parquet, .json or .csv file, written atomically by :mod:`kldiv_cli.io.writers`
(which takes bytes or a writer and knows nothing of reports).

A .npy file gets the report's ``array``; a Parquet file its ``table``, one column per
entry; every other kind the text of the format of that name (:func:`render_text`).
Pages are made bytes here too: :func:`html_document` (self-contained, whatever the data
holds) and :func:`xml_document` (valid XML 1.0 whatever the data holds).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, BinaryIO

from ..io.writers import atomic_write, output_kind
from ..text import clean_lines, unicode_safe
from . import Report, render_text

if TYPE_CHECKING:
    from xml.etree.ElementTree import Element

__all__ = ["html_document", "report_writer", "write_report", "xml_document"]

#: Nothing from outside the page may load: no script, font, image, frame or style sheet
#: by URL (inline styles and data: images only). A tracking pixel that slipped past
#: escaping would not be fetched.
CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"


def report_writer(kind: str, report: Report) -> Callable[[BinaryIO], None]:
    """How ``report`` goes into an open file of ``kind`` (see
    :func:`kldiv_cli.io.writers.output_kind`). The text or Arrow table is built now, so
    a report that cannot be encoded fails before any file is touched."""
    if kind == "npy":
        import numpy as np

        array = np.asarray(report.array)

        def write(f: BinaryIO) -> None:
            np.save(f, array, allow_pickle=False)

    elif kind == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.table({name: pa.array(values) for name, values in report.table.items()})

        def write(f: BinaryIO) -> None:
            pq.write_table(table, f)

    else:
        text = render_text(report, kind).encode()

        def write(f: BinaryIO) -> None:
            f.write(text)

    return write


def write_report(path: str, report: Report, fmt: str | None = None) -> None:
    """Write ``report`` atomically to ``path``, in the kind its extension names (a
    stream such as ``/dev/stdout``: in ``fmt``, see :func:`~kldiv_cli.io.writers.output_kind`)."""
    atomic_write(path, report_writer(output_kind(path, fmt=fmt), report))


def html_document(page: str) -> bytes:
    """A whole HTML page as the bytes of a self-contained file.

    The page's own markup is trusted (it holds no URL); text from data in it is already
    escaped. On top of that: a Content-Security-Policy (:data:`CSP`) as the first thing
    in ``<head>``; every ``://`` written ``&#58;//`` (the same text, rendered, but no URL
    that a browser, mail client or scanner follows or fetches, wherever it came from);
    lone surrogates (undecodable bytes of file names) as ``\\xff``, so the file is UTF-8.
    """
    import re

    meta = f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
    page = page.replace("://", "&#58;//")
    head = re.search(r"<head\b[^>]*>", page, re.IGNORECASE)
    if head is None:  # no <head>: the policy opens the page (a browser adds the head)
        page = meta + page
    else:
        page = page[: head.end()] + meta + page[head.end() :]
    return unicode_safe(page).encode()


def xml_document(root: Element) -> bytes:
    """An element tree as the bytes of an XML 1.0 file (UTF-8, with its declaration,
    indented). Every text and attribute value is passed through
    :func:`~kldiv_cli.text.clean_lines` first: characters XML 1.0 cannot hold (C0
    controls, lone surrogates, U+FFFE/U+FFFF) are written as visible escapes instead of
    making the file invalid or failing to encode."""
    from xml.etree import ElementTree as ET

    for element in root.iter():
        if element.text:
            element.text = clean_lines(element.text)
        if element.tail:
            element.tail = clean_lines(element.tail)
        for key, value in element.attrib.items():
            element.attrib[key] = clean_lines(value)
    ET.indent(root)
    # typeshed types tostring() with an encoding other than "unicode" as Any: bytes.
    body: bytes = ET.tostring(root, encoding="utf-8")
    return b'<?xml version="1.0" encoding="UTF-8"?>\n' + body + b"\n"
