"""A toy format, as a new format's module would be: ``.f64`` files holding the magic
``F64ROWS``, a NUL, two little-endian uint32 (rows, columns), then float64 rows.

Registered in tests/test_formats.py with one ``Format`` entry; ARCHITECTURE.md shows
the same module and entry as the diff that adds a format to kldiv.
"""

from __future__ import annotations

import struct

import numpy as np

from kldiv_cli.errors import InputError
from kldiv_cli.io.base import ReadOptions, Source
from kldiv_cli.io.paths import open_binary

MAGIC = b"F64ROWS\x00"
_SHAPE = struct.Struct("<II")


class F64Source(Source):
    """A ``.f64`` file: its shape from the header, its rows read whole."""

    def __init__(self, label: str, path: str | None, data: bytes | None) -> None:
        f, size = open_binary(path, data)
        with f:
            head = f.read(len(MAGIC) + _SHAPE.size)
            if not head.startswith(MAGIC) or len(head) < len(MAGIC) + _SHAPE.size:
                raise InputError(label, "is not a .f64 file (no F64ROWS header)")
            rows, cols = _SHAPE.unpack_from(head, len(MAGIC))
            if size - len(head) != rows * cols * 8:
                raise InputError(label, f"is truncated: its header declares {rows} x {cols}")
            self._data = np.frombuffer(f.read(), dtype="<f8").reshape(rows, cols)
        super().__init__(label, "f64", (rows, cols), np.dtype(np.float64))

    def read(self) -> np.ndarray:
        return self._data


def open_f64(
    label: str, path: str | None, data: bytes | None, fmt: str, options: ReadOptions
) -> F64Source:
    """A ``.f64`` file (or its bytes) as a numeric source."""
    return F64Source(label, path, data)


def write_f64(path, x: np.ndarray) -> np.ndarray:
    """The writer the round-trip tests use."""
    x = np.ascontiguousarray(x, dtype="<f8")
    path.write_bytes(MAGIC + _SHAPE.pack(*x.shape) + x.tobytes())
    return x
