"""Output files, written atomically: a temporary file in the same folder, fsync,
then ``os.replace``. On any failure (Ctrl-C included) the temporary file is
removed and an existing file keeps its old content.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from typing import BinaryIO

from .errors import OutputError
from .render import Report, render_text

OUTPUT_EXTENSIONS = {
    ".npy": "npy",
    ".csv": "csv",
    ".json": "json",
    ".parquet": "parquet",
    ".pq": "parquet",
}


def output_kind(path: str) -> str:
    """Check an output path before any work is done; return how it will be written."""
    if path == "-":
        return "stdout"
    if os.path.isdir(path):
        raise OutputError(f"{path}: is a directory; give a file name")
    kind = OUTPUT_EXTENSIONS.get(os.path.splitext(path)[1].lower())
    if kind is None:
        raise OutputError(f"{path}: unknown output type; name it .npy, .csv, .json or .parquet")
    check_destination(path)
    return kind


def check_destination(path: str) -> None:
    """A file can be created at ``path``: not a directory, in a folder that exists and is
    writable. Checked before any work is done."""
    if os.path.isdir(path):
        raise OutputError(f"{path}: is a directory; give a file name")
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise OutputError(f"{path}: folder {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise OutputError(f"{path}: folder {parent} is not writable")


def atomic_write(path: str, write: Callable[[BinaryIO], None]) -> None:
    parent = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def write_report(path: str, report: Report) -> None:
    kind = output_kind(path)
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

    try:
        atomic_write(path, write)
    except OSError as exc:
        raise OutputError(f"{path}: cannot write ({exc.strerror or exc})") from None
