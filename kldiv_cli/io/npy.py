"""NumPy ``.npy`` files: the header checked against what the file holds, then the data
read whole or in blocks of rows, never unpickled."""

from __future__ import annotations

import io
import math
import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from typing import IO, Any

import numpy as np

from ..errors import InputError
from .base import ReadOptions, Source

NPY_MAGIC = b"\x93NUMPY"


def numeric_dtype(label: str, dtype: np.dtype, booleans: bool = False) -> np.dtype:
    """The float dtype kldiv computes in for stored ``dtype``; errors for the rest.

    float16/32/64 keep their width (in native byte order); integers (and booleans, when
    ``booleans``: a mask) become float64; objects, records, complex, booleans and text
    are refused.
    """
    if dtype.hasobject:
        raise InputError(
            label, "holds Python objects (a pickled array); kldiv never unpickles data"
        )
    if dtype.names is not None:
        raise InputError(label, "holds a structured (record) array, not plain numbers")
    kind = dtype.kind
    if kind == "f":
        if dtype.itemsize not in (2, 4, 8):
            raise InputError(label, f"holds {dtype} numbers; use float16, float32 or float64")
        # NumPy's stubs type newbyteorder() of a dtype[Any] as Any: a dtype.
        native: np.dtype[Any] = dtype.newbyteorder("=")
        return native
    if kind in "iu" or (kind == "b" and booleans):
        return np.dtype(np.float64)
    if kind == "c":
        raise InputError(
            label, f"holds complex numbers ({dtype}); KL divergence needs real numbers"
        )
    if kind == "b":
        raise InputError(label, "holds booleans, not numbers")
    if kind in "US":
        raise InputError(label, f"holds text ({dtype}), not numbers")
    if kind == "V" and dtype.itemsize == 2:
        raise InputError(
            label,
            "holds 2-byte raw data (|V2: bfloat16?); NumPy has no bfloat16: "
            "save float32, or use .safetensors",
        )
    raise InputError(label, f"holds {dtype} data, not numbers")


def read_header(
    label: str, fp: IO[bytes], available: int
) -> tuple[tuple[int, ...], bool, np.dtype, int]:
    """Parse and check a .npy header without reading the data: ``(shape, fortran,
    dtype, data offset)``.

    A header can declare any shape: negative dimensions are refused, and the declared
    byte count (an exact integer product, so ``(2**64, 0)``-style overflow cannot wrap)
    is compared with the ``available`` bytes, so a "trillion elements" header fails at
    once, with no allocation.
    """
    fmt = np.lib.format
    start = fp.tell()
    head = fp.read(len(NPY_MAGIC))
    if len(head) < len(NPY_MAGIC):
        raise InputError(label, "is empty or truncated: no .npy header")
    if head != NPY_MAGIC:
        raise InputError(label, "is not a .npy file (no NumPy magic bytes)")
    fp.seek(start)
    try:
        version = fmt.read_magic(fp)
        reader = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
        shape, fortran, dtype = reader(fp)
    except Exception as exc:  # numpy parses the header with Python's tokenizer: anything goes
        if "EOF" in str(exc) and "multi-line" not in str(exc):
            raise InputError(label, "is truncated inside its .npy header") from None
        detail = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
        raise InputError(label, f"has a malformed .npy header ({detail})") from None
    offset = fp.tell()
    if dtype.hasobject:
        raise InputError(
            label, "holds Python objects (a pickled array); kldiv never unpickles data"
        )
    shape = tuple(int(n) for n in shape)
    if any(n < 0 for n in shape):
        raise InputError(label, f"has a malformed .npy header (negative dimension in {shape})")
    if any(n >= 1 << 63 for n in shape):
        raise InputError(label, f"has a malformed .npy header (dimension too large in {shape})")
    need = math.prod(shape) * dtype.itemsize
    have = available - offset
    if need > have:
        raise InputError(
            label,
            f"is truncated: its header declares shape {shape} ({need:,} bytes of data) "
            f"but only {max(have, 0):,} bytes follow",
        )
    return shape, fortran, dtype, offset


def row_layout(path: str, storage: Mapping[str, str] | None = None) -> tuple[int, str] | None:
    """What an engine's ranged reads of a row-major .npy file need: ``(data offset,
    stored dtype)``, from its header alone (a local file, or an object in a store);
    None for Fortran order, whose rows are not contiguous."""
    from . import fs

    with fs.open_input(path, storage) as f:
        end = f.seek(0, os.SEEK_END)
        f.seek(0)
        shape, fortran, dtype, offset = read_header(path, f, end)
    if fortran and len(shape) > 1:
        return None
    return offset, dtype.str


def from_bytes(
    buf: bytes | bytearray | memoryview, dtype: np.dtype, shape: tuple[int, ...], fortran: bool
) -> np.ndarray:
    """A read-only array over raw .npy data."""
    return np.frombuffer(buf, dtype=dtype).reshape(shape, order="F" if fortran else "C")


class NpyData(Source):
    """The data of a .npy array whose header was read: whole, or in blocks of rows.

    Row-major arrays stream block by block from :meth:`_open_data`; a Fortran-ordered
    array with more than one dimension is read whole (its rows are not contiguous).
    """

    def __init__(
        self,
        label: str,
        fmt: str,
        header: tuple[tuple[int, ...], bool, np.dtype, int],
        booleans: bool = False,
    ) -> None:
        shape, fortran, stored, offset = header
        super().__init__(label, fmt, shape, numeric_dtype(label, stored, booleans))
        self._stored, self._fortran, self._offset = stored, fortran, offset
        self.streamable = bool(shape) and not (fortran and len(shape) > 1)

    def _open_data(self) -> AbstractContextManager[IO[bytes]]:
        """A binary stream positioned at the first byte of the data."""
        raise NotImplementedError

    def _read_exactly(self, f: IO[bytes], nbytes: int) -> bytes:
        """``nbytes`` of data, or an error: a file that shrank, or a zip member whose
        declared size lied."""
        raw = f.read(nbytes)
        if len(raw) != nbytes:
            raise InputError(self.label, "is truncated: its data ends before its header says")
        return raw

    def read(self) -> np.ndarray:
        nbytes = math.prod(self.shape) * self._stored.itemsize
        with self._open_data() as f:
            raw = self._read_exactly(f, nbytes)
        array = from_bytes(raw, self._stored, self.shape, self._fortran)
        own: np.ndarray = array.astype(self.dtype, copy=False).copy()
        return own

    def iter_chunks(self, rows: int) -> Iterator[np.ndarray]:
        if not self.streamable:
            yield from super().iter_chunks(rows)
            return
        yield from self._stream(self.shape[0], self.shape[1:], rows)

    def iter_rows(self, rows: int) -> Iterator[np.ndarray]:
        if not self.streamable or len(self.shape) < 2:
            yield from super().iter_rows(rows)
            return
        yield from self._stream(math.prod(self.shape[:-1]), self.shape[-1:], rows)

    def _stream(self, count: int, item: tuple[int, ...], step: int) -> Iterator[np.ndarray]:
        """``count`` items of shape ``item`` (row-major), read ``step`` items at a time:
        views of the file mapped into memory where it is a regular file (:class:`_Mapped`),
        else read."""
        item_bytes = math.prod(item) * self._stored.itemsize
        with self._open_data() as f:
            mapped = _Mapped.of(f, count * item_bytes)
            for start in range(0, count, max(step, 1)):
                n = min(step, count - start)
                if mapped is not None:
                    raw: bytes | memoryview = mapped.take(n * item_bytes)
                else:
                    raw = self._read_exactly(f, n * item_bytes)
                block = from_bytes(raw, self._stored, (n, *item), False)
                if mapped is not None:
                    mapped.release_with(block, n * item_bytes)
                yield block.astype(self.dtype, copy=False)
                # Only the consumer may hold the block now: its pages can go at the next take.
                del block, raw


class _Mapped:
    """The data of a regular file mapped read-only, handed out in consecutive views.

    Reading a block into fresh memory page-faults every page of it, on every block: for
    2 x 80 MB of logits that cost more CPU than the KL itself. A view of the file's
    mapping costs a fault per 64 KB and no copy. Once the last array over a view is gone,
    the view's whole pages are released (``MADV_DONTNEED``) when the next view is taken,
    so the resident memory stays the blocks in use (however many threads and blocks read
    ahead hold), whatever the file's size; the page a view shares with the next one stays.
    The release is checked in the reading flow, never in a ``weakref`` callback: an
    interrupt (Ctrl-C) that lands in such a callback is printed and dropped by Python,
    and the command would go on.
    """

    def __init__(self, view: memoryview, mapping: Any, start: int) -> None:
        self._view, self._mapping = view, mapping
        self._pos = start
        self._held: list[tuple[Callable[[], object], int, int]] = []

    @classmethod
    def of(cls, f: IO[bytes], nbytes: int) -> _Mapped | None:
        """The next ``nbytes`` of ``f`` mapped, or None: not a regular file (a pipe, a zip
        member, bytes in memory), a file shorter than that (reading then says so), or no
        mapping to be had."""
        import mmap
        import stat

        try:
            fd = f.fileno()
            info = os.fstat(fd)
            start = f.tell()
        except (OSError, ValueError, io.UnsupportedOperation):
            return None
        if not stat.S_ISREG(info.st_mode) or nbytes <= 0 or info.st_size < start + nbytes:
            return None
        try:
            mapping = mmap.mmap(fd, start + nbytes, access=mmap.ACCESS_READ)
        except (OSError, ValueError):
            return None
        return cls(memoryview(mapping), mapping, start)

    def take(self, nbytes: int) -> memoryview:
        """The next ``nbytes`` (first releasing the views no array uses any more)."""
        self._release_unused()
        view = self._view[self._pos : self._pos + nbytes]
        self._pos += nbytes
        return view

    def release_with(self, block: np.ndarray, nbytes: int) -> None:
        """Release the whole pages of the last ``nbytes`` taken once the array over them
        is gone: ``block``'s base, the ``frombuffer`` array that every view of it (a
        reshape, a slice, a row) names as its base."""
        import weakref

        owner = block.base if isinstance(block.base, np.ndarray) else block
        self._held.append((weakref.ref(owner), self._pos - nbytes, self._pos))

    def _release_unused(self) -> None:
        """:meth:`_release` the views whose array is gone; keep watching the others."""
        held = []
        for alive, begin, end in self._held:
            if alive() is None:
                self._release(begin, end)
            else:
                held.append((alive, begin, end))
        self._held = held

    def _release(self, begin: int, end: int) -> None:
        """``MADV_DONTNEED`` on the pages wholly inside ``[begin, end)`` (where offered)."""
        import mmap

        page = mmap.PAGESIZE
        first, last = -(-begin // page) * page, end // page * page
        if last > first and hasattr(mmap, "MADV_DONTNEED"):
            try:
                self._mapping.madvise(mmap.MADV_DONTNEED, first, last - first)
            except (OSError, ValueError):  # the mapping closed first: nothing to release
                pass


class NpySource(NpyData):
    """A .npy file (or buffered bytes), read block by block even when small (cheap)."""

    stream_always = True

    def __init__(
        self, label: str, path: str | None, data: bytes | None, booleans: bool = False
    ) -> None:
        self._path, self._data = path, data
        with self._open() as fp:
            size = os.fstat(fp.fileno()).st_size if path is not None else len(data or b"")
            super().__init__(label, "npy", read_header(label, fp, size), booleans)

    def _open(self) -> IO[bytes]:
        if self._path is not None:
            return open(self._path, "rb")
        assert self._data is not None
        return io.BytesIO(self._data)

    @contextmanager
    def _open_data(self) -> Iterator[IO[bytes]]:
        with self._open() as f:
            f.seek(self._offset)
            yield f


def open_npy(
    label: str, path: str | None, data: bytes | None, fmt: str, options: ReadOptions
) -> NpySource:
    """A .npy file (or bytes) as a numeric source."""
    return NpySource(label, path, data, options.booleans)
