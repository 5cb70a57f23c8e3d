"""Output files, written atomically: a temporary file in the same folder, fsync,
then ``os.replace``. On any failure (Ctrl-C included) the temporary file is
removed and an existing file keeps its old content.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Sequence
from typing import BinaryIO, TypeVar

from ..errors import OutputError
from ..render import Report, as_rows, render_text, to_csv

T = TypeVar("T")

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


def check_outputs(outputs: Sequence[str | None], inputs: Sequence[str]) -> None:
    """Refuse, before any work, a run whose outputs could destroy its inputs or each other.

    ``outputs`` are every file the run will write (None and ``-`` are skipped);
    ``inputs`` every path it reads. An output that is the same file as an input
    (compared by device and inode, so symlinks and hard links count) or named twice is
    a usage error; each output must also pass :func:`check_destination`.
    """
    seen: list[tuple[int, int] | str] = []
    ids = {}
    for path in inputs:
        if path and path != "-":
            try:
                st = os.stat(path)
            except OSError:
                continue
            ids[(st.st_dev, st.st_ino)] = path
    for path in outputs:
        if not path or path == "-":
            continue
        check_destination(path)
        try:
            st = os.stat(path)
            key: tuple[int, int] | str = (st.st_dev, st.st_ino)
        except OSError:
            key = os.path.abspath(path)
        if key in ids:
            raise OutputError(f"{path}: is also an input of this command; write somewhere else")
        if key in seen:
            raise OutputError(f"{path}: is named as two outputs; give each output its own file")
        seen.append(key)


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


def atomic_write(path: str, write: Callable[[BinaryIO], T]) -> T:
    parent = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=parent)
    try:
        with os.fdopen(fd, "wb") as f:
            result = write(f)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
        return result
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


#: Output files that :class:`BlockWriter` fills block by block.
STREAMED_KINDS = ("npy", "csv", "parquet")


class BlockWriter:
    """An array written to an open file block of rows by block (``reduction="none"``
    streamed), in the layout :func:`write_report` gives the whole array: the same .npy
    and .csv bytes, the same Parquet columns (one row group per block)."""

    def __init__(self, kind: str, f: BinaryIO) -> None:
        self.kind, self.f = kind, f
        self.started = False
        self._parquet = None

    def write(self, block, shape: tuple[int, ...]) -> None:
        import numpy as np

        flat = as_rows(block)
        columns = [f"c{j}" for j in range(flat.shape[1])]
        if self.kind == "npy":
            if not self.started:
                header = np.lib.format.header_data_from_array_1_0(block)
                # Blocks go in row after row, whatever their own memory order.
                header.update(shape=tuple(shape), fortran_order=False)
                np.lib.format.write_array_header_1_0(self.f, header)
            self.f.write(np.ascontiguousarray(block).tobytes())
        elif self.kind == "csv":
            self.f.write(to_csv(columns, flat, header=not self.started).encode())
        else:
            import pyarrow as pa
            import pyarrow.parquet as pq

            table = pa.table({name: flat[:, j] for j, name in enumerate(columns)})
            if self._parquet is None:
                self._parquet = pq.ParquetWriter(self.f, table.schema)
            self._parquet.write_table(table)
        self.started = True

    def close(self) -> None:
        if self._parquet is not None:
            self._parquet.close()


def report_writer(kind: str, report: Report) -> Callable[[BinaryIO], None]:
    """How ``report`` goes into an open file of ``kind`` (see :func:`output_kind`)."""
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


def write_output(path: str, write: Callable[[BinaryIO], T]) -> T:
    """:func:`atomic_write`, with a failure to write reported as an :class:`OutputError`."""
    try:
        return atomic_write(path, write)
    except OSError as exc:
        raise OutputError(f"{path}: cannot write ({exc.strerror or exc})") from None


def write_report(path: str, report: Report) -> None:
    write_output(path, report_writer(output_kind(path), report))
