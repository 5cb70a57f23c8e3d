"""safetensors files: one tensor, read block of rows by block, never unpickled.

Layout (https://github.com/huggingface/safetensors): an 8-byte little-endian unsigned
header length ``N``, ``N`` bytes of JSON (``{"name": {"dtype", "shape",
"data_offsets": [begin, end]}, "__metadata__": {...}}``, offsets relative to the end
of the header), then the data, row-major, little-endian. The header is parsed here,
bounded (at most :data:`MAX_HEADER` bytes, as the reference implementation), and every
offset is checked against the file size before anything is read.

F16, F32 and F64 are read as they are; BF16 is widened exactly to float32 (its 16
bits are the top half of a float32: ``uint16 << 16``); I32 and I64 become float64 (ids,
as in a ``.npy`` file).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from typing import IO, Any

import numpy as np

from ..errors import InputError
from ..text import listing
from .base import ReadOptions, Source
from .paths import open_binary, read_exact

__all__ = ["MAX_HEADER", "SafetensorsSource", "open_safetensors"]

#: The reference implementation refuses larger headers too.
MAX_HEADER = 100_000_000
#: Stored dtype -> (dtype on disk, dtype read as).
DTYPES: dict[str, tuple[np.dtype, np.dtype]] = {
    "F16": (np.dtype("<f2"), np.dtype(np.float16)),
    "BF16": (np.dtype("<u2"), np.dtype(np.float32)),
    "F32": (np.dtype("<f4"), np.dtype(np.float32)),
    "F64": (np.dtype("<f8"), np.dtype(np.float64)),
    # Integers (top-K files' indices, token ids) become float64, as in a .npy file.
    "I32": (np.dtype("<i4"), np.dtype(np.float64)),
    "I64": (np.dtype("<i8"), np.dtype(np.float64)),
}
#: safetensors dtypes that exist but kldiv does not read.
OTHER_DTYPES = {"BOOL", "U8", "I8", "F8_E4M3", "F8_E5M2", "I16", "U16", "U32", "U64"}


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise ValueError(f"the name {k!r} appears twice")
        out[k] = v
    return out


def _header(label: str, f: IO[bytes], size: int) -> tuple[dict[str, Any], int]:
    """The tensors' entries (metadata dropped) and where the data starts."""
    if size < 8:
        raise InputError(label, f"truncated safetensors header: {size} bytes, fewer than 8")
    n = int.from_bytes(read_exact(f, 0, 8, label), "little")
    if n > MAX_HEADER:
        raise InputError(
            label, f"safetensors header of {n} bytes is over the {MAX_HEADER}-byte limit"
        )
    if n > size - 8:
        raise InputError(
            label, f"truncated safetensors header: it declares {n} bytes, {size - 8} follow"
        )
    try:
        header = json.loads(
            read_exact(f, 8, n, label).decode("utf-8"), object_pairs_hook=_no_duplicates
        )
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise InputError(label, f"safetensors header is not valid JSON ({exc})") from None
    if not isinstance(header, dict):
        raise InputError(label, "safetensors header is not a JSON object")
    header.pop("__metadata__", None)
    return header, 8 + n


def _is_count(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def _choose(label: str, names: list[str], key: str | None, key_option: str | None) -> str:
    """The tensor to read: ``key``, or the only one."""
    shown = listing(names)
    if key is None:
        if not names:
            raise InputError(label, "holds no tensors")
        if len(names) > 1:
            hint = f"; choose one with {key_option}" if key_option else ""
            raise InputError(label, f"holds {len(names)} tensors ({shown}){hint}")
        return names[0]
    if key not in names:
        raise InputError(label, f"has no tensor named {key!r}; it holds: {shown}")
    return key


class SafetensorsSource(Source):
    """One tensor of a safetensors file (or of its buffered bytes), read in blocks along
    its first axis.

    Parameters
    ----------
    label : str
        The file as messages name it; a file of several tensors labels the chosen one
        ``label[key]``.
    path, data : str or None, bytes or None
        Where the bytes are: a local path (read lazily, block by block) or the whole
        file buffered (stdin, a FIFO, an object in a store).
    key : str, optional
        The tensor's name; None when the file holds exactly one.
    key_option : str, optional
        The command's option for a key, named in the error for a file of several.
    """

    streamable = True
    #: Reading a block is a seek and a read: cheap even when small.
    stream_always = True

    def __init__(
        self,
        label: str,
        path: str | None,
        data: bytes | None,
        key: str | None,
        key_option: str | None = None,
    ) -> None:
        self._path, self._data = path, data
        f, size = open_binary(path, data)
        with f:
            header, start = _header(label, f, size)
        names = sorted(header)
        self.key = _choose(label, names, key, key_option)
        name = f"{label}[{self.key}]" if len(names) > 1 else label
        entry = header[self.key]
        if not isinstance(entry, dict):
            raise InputError(name, "tensor entry is not a JSON object")
        stored = entry.get("dtype")
        if stored not in DTYPES:
            what = f"dtype {stored}" if stored in OTHER_DTYPES else "an unknown dtype"
            raise InputError(name, f"{what}: kldiv reads F16, BF16, F32, F64, I32 or I64 tensors")
        shape, offsets = entry.get("shape"), entry.get("data_offsets")
        if not (isinstance(shape, list) and all(_is_count(n) for n in shape)):
            raise InputError(name, "shape is not a list of non-negative integers")
        if any(n >= 1 << 62 for n in shape):
            # NumPy's dimensions are int64 ("Maximum allowed dimension exceeded").
            raise InputError(name, f"shape {tuple(shape)} has a dimension beyond 2**62")
        if not (
            isinstance(offsets, list) and len(offsets) == 2 and all(_is_count(n) for n in offsets)
        ):
            raise InputError(name, "data_offsets is not two non-negative integers")
        disk, dtype = DTYPES[stored]
        begin, end = offsets
        needed = math.prod(shape) * disk.itemsize
        if not begin <= end <= size - start:
            raise InputError(
                name,
                f"data_offsets [{begin}, {end}] run past the end of the file "
                f"({size - start} bytes of data)",
            )
        if end - begin != needed:
            raise InputError(
                name,
                f"data_offsets hold {end - begin} bytes; shape {tuple(shape)} of {stored} "
                f"needs {needed}",
            )
        super().__init__(name, "safetensors", tuple(shape), dtype)
        self.stored = stored
        self._disk = disk
        self._offset = start + begin
        self.streamable = bool(shape)

    def _decode(self, raw: bytes, shape: tuple[int, ...]) -> np.ndarray:
        """An array of ``shape`` from its stored bytes, in :attr:`dtype`."""
        array = np.frombuffer(raw, dtype=self._disk).reshape(shape)
        if self.stored == "BF16":
            widened: np.ndarray = (array.astype(np.uint32) << 16).view(np.float32)
            return widened
        return array.astype(self.dtype)

    def iter_chunks(self, rows: int) -> Iterator[np.ndarray]:
        """Blocks of at most ``rows`` slices of the first axis, read from the file."""
        if not self.shape:
            yield self.read()
            return
        yield from self._stream(self.shape[0], self.shape[1:], rows)

    def iter_rows(self, rows: int) -> Iterator[np.ndarray]:
        """Blocks of at most ``rows`` rows of the last axis (leading axes flattened),
        read from the file: a ``(1, 2040, 32000)`` tensor streams like a 2-D one."""
        if len(self.shape) < 2:
            yield from super().iter_rows(rows)
            return
        yield from self._stream(math.prod(self.shape[:-1]), self.shape[-1:], rows)

    def _stream(self, count: int, item: tuple[int, ...], step: int) -> Iterator[np.ndarray]:
        """``count`` items of shape ``item`` (row-major), read ``step`` items at a time."""
        item_bytes = math.prod(item) * self._disk.itemsize
        f, _ = open_binary(self._path, self._data)
        with f:
            for first in range(0, count, max(step, 1)):
                n = min(step, count - first)
                raw = read_exact(f, self._offset + first * item_bytes, n * item_bytes, self.label)
                yield self._decode(raw, (n, *item))

    def read(self) -> np.ndarray:
        f, _ = open_binary(self._path, self._data)
        with f:
            nbytes = math.prod(self.shape) * self._disk.itemsize
            raw = read_exact(f, self._offset, nbytes, self.label)
        return self._decode(raw, self.shape)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "stored_dtype": self.stored}


def open_safetensors(
    label: str, path: str | None, data: bytes | None, fmt: str, options: ReadOptions
) -> SafetensorsSource:
    """The tensor ``options.key`` of a safetensors file (the only one when no key is
    given), from a path or buffered bytes."""
    return SafetensorsSource(label, path, data, options.key, options.key_option)
