"""safetensors files: one tensor, read block of rows by block, never unpickled.

Layout (https://github.com/huggingface/safetensors): an 8-byte little-endian unsigned
header length ``N``, ``N`` bytes of JSON (``{"name": {"dtype", "shape",
"data_offsets": [begin, end]}, "__metadata__": {...}}``, offsets relative to the end
of the header), then the data, row-major, little-endian. The header is parsed here,
bounded (at most :data:`MAX_HEADER` bytes, as the reference implementation), and every
offset is checked against the file size before anything is read.

F16, F32 and F64 are read as they are; BF16 is widened exactly to float32 (its 16
bits are the top half of a float32: ``uint16 << 16``).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator
from typing import IO, Any

import numpy as np

from ..errors import InputError, UsageError

__all__ = ["MAX_HEADER", "SafetensorsSource", "open_binary", "open_safetensors", "read_exact"]

#: The reference implementation refuses larger headers too.
MAX_HEADER = 100_000_000
#: Stored dtype -> (dtype on disk, dtype read as).
DTYPES: dict[str, tuple[np.dtype, np.dtype]] = {
    "F16": (np.dtype("<f2"), np.dtype(np.float16)),
    "BF16": (np.dtype("<u2"), np.dtype(np.float32)),
    "F32": (np.dtype("<f4"), np.dtype(np.float32)),
    "F64": (np.dtype("<f8"), np.dtype(np.float64)),
}
#: safetensors dtypes that exist but compare does not read.
OTHER_DTYPES = {"BOOL", "U8", "I8", "F8_E4M3", "F8_E5M2", "I16", "U16", "I32", "U32", "I64", "U64"}


def open_binary(path: str) -> tuple[IO[bytes], int]:
    """``path`` opened for reading, and its size; errors as :class:`InputError`."""
    try:
        f = open(path, "rb")  # noqa: SIM115 (the caller owns it)
    except FileNotFoundError:
        raise InputError(path, "no such file") from None
    except PermissionError:
        raise InputError(path, "permission denied") from None
    except IsADirectoryError:
        raise InputError(path, "is a directory") from None
    except OSError as exc:
        raise InputError(path, exc.strerror or str(exc)) from None
    try:
        size = os.fstat(f.fileno()).st_size
    except OSError as exc:
        f.close()
        raise InputError(path, exc.strerror or str(exc)) from None
    return f, size


def read_exact(f: IO[bytes], offset: int, nbytes: int, label: str) -> bytes:
    """``nbytes`` bytes at ``offset``; a short read (a file cut while read) is an error."""
    f.seek(offset)
    data = f.read(nbytes)
    if len(data) != nbytes:
        raise InputError(label, f"is truncated: {nbytes} bytes expected at offset {offset}")
    return data


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise ValueError(f"the name {k!r} appears twice")
        out[k] = v
    return out


def _header(path: str, f: IO[bytes], size: int) -> tuple[dict[str, Any], int]:
    if size < 8:
        raise InputError(path, f"truncated safetensors header: {size} bytes, fewer than 8")
    n = int.from_bytes(read_exact(f, 0, 8, path), "little")
    if n > MAX_HEADER:
        raise InputError(
            path, f"safetensors header of {n} bytes is over the {MAX_HEADER}-byte limit"
        )
    if n > size - 8:
        raise InputError(
            path, f"truncated safetensors header: it declares {n} bytes, {size - 8} follow"
        )
    try:
        header = json.loads(
            read_exact(f, 8, n, path).decode("utf-8"), object_pairs_hook=_no_duplicates
        )
    except (UnicodeDecodeError, ValueError) as exc:
        raise InputError(path, f"safetensors header is not valid JSON ({exc})") from None
    if not isinstance(header, dict):
        raise InputError(path, "safetensors header is not a JSON object")
    header.pop("__metadata__", None)
    return header, 8 + n


def _is_count(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


class SafetensorsSource:
    """One tensor of a safetensors file: rows are every axis but the last."""

    fmt = "safetensors"
    streamable = True

    def __init__(self, path: str, key: str | None) -> None:
        f, size = open_binary(path)
        try:
            header, start = _header(path, f, size)
        finally:
            f.close()
        names = sorted(header)
        if key is None:
            if len(names) != 1:
                listed = ", ".join(names[:10]) + (", ..." if len(names) > 10 else "")
                what = (
                    "no tensors"
                    if not names
                    else f"{len(names)} tensors ({listed}); choose one with --key"
                )
                raise InputError(path, f"holds {what}")
            key = names[0]
        if key not in header:
            raise InputError(
                path, f"has no tensor named {key!r}; it holds: {', '.join(names[:10])}"
            )
        self.path, self.key = path, key
        self.label = f"{path}[{key}]" if len(names) > 1 else path
        entry = header[key]
        if not isinstance(entry, dict):
            raise InputError(self.label, "tensor entry is not a JSON object")
        dtype_name = entry.get("dtype")
        if dtype_name not in DTYPES:
            known = dtype_name in OTHER_DTYPES
            raise InputError(
                self.label,
                f"{'dtype ' + str(dtype_name) if known else 'an unknown dtype'}: "
                "compare reads F16, BF16, F32 or F64 tensors",
            )
        shape, offsets = entry.get("shape"), entry.get("data_offsets")
        if not (isinstance(shape, list) and all(_is_count(n) for n in shape)):
            raise InputError(self.label, "shape is not a list of non-negative integers")
        if not (
            isinstance(offsets, list) and len(offsets) == 2 and all(_is_count(n) for n in offsets)
        ):
            raise InputError(self.label, "data_offsets is not two non-negative integers")
        disk, dtype = DTYPES[dtype_name]
        begin, end = offsets
        needed = math.prod(shape) * disk.itemsize
        if not begin <= end <= size - start:
            raise InputError(
                self.label,
                f"data_offsets [{begin}, {end}] run past the end of the file "
                f"({size - start} bytes of data)",
            )
        if end - begin != needed:
            raise InputError(
                self.label,
                f"data_offsets hold {end - begin} bytes; shape {tuple(shape)} of {dtype_name} needs {needed}",
            )
        self.dtype_name = dtype_name
        self.shape: tuple[int, ...] = tuple(shape) if shape else (1,)
        self.dtype = dtype
        self._disk = disk
        self._offset = start + begin
        self.width = self.shape[-1]
        self.rows = math.prod(self.shape[:-1])

    def _decode(self, data: bytes, rows: int) -> np.ndarray:
        raw = np.frombuffer(data, dtype=self._disk).reshape(rows, self.width)
        if self.dtype_name == "BF16":
            return (raw.astype(np.uint32) << 16).view(np.float32)
        return raw.astype(self.dtype)

    def iter_chunks(self, rows: int) -> Iterator[np.ndarray]:
        """Blocks of at most ``rows`` rows (rows × classes), read from the file."""
        row_bytes = self.width * self._disk.itemsize
        f, _ = open_binary(self.path)
        with f:
            for first in range(0, self.rows, max(rows, 1)):
                n = min(rows, self.rows - first)
                yield self._decode(
                    read_exact(f, self._offset + first * row_bytes, n * row_bytes, self.label), n
                )

    def read(self) -> np.ndarray:
        blocks = list(self.iter_chunks(max(self.rows, 1)))
        return np.concatenate(blocks) if blocks else np.empty((0, self.width), self.dtype)

    def should_stream(self) -> bool:
        return True

    def describe(self) -> dict[str, Any]:
        return {
            "path": self.label,
            "format": self.fmt,
            "shape": list(self.shape),
            "dtype": self.dtype_name,
        }


def open_safetensors(path: str, key: str | None) -> SafetensorsSource:
    """Open one tensor of the safetensors file ``path`` (``key`` may be None when the
    file holds exactly one)."""
    if path == "-":
        raise UsageError("safetensors files are read from a path, not stdin")
    return SafetensorsSource(path, key)
