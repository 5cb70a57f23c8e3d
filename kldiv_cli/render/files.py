"""Reports into output files: how a :class:`~kldiv_cli.render.Report` becomes the bytes
of a .npy, .parquet, .json or .csv file, written atomically by :mod:`kldiv_cli.io.writers`
(which takes bytes or a writer and knows nothing of reports).

A .npy file gets the report's ``array``; a Parquet file its ``table``, one column per
entry; every other kind the text of the format of that name (:func:`render_text`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import BinaryIO

from ..io.writers import atomic_write, output_kind
from . import Report, render_text

__all__ = ["report_writer", "write_report"]


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


def write_report(path: str, report: Report) -> None:
    """Write ``report`` atomically to ``path``, in the kind its extension names."""
    atomic_write(path, report_writer(output_kind(path), report))
