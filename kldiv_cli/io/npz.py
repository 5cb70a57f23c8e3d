"""NumPy ``.npz`` archives: one member chosen by key, its sizes checked before it is
inflated."""

from __future__ import annotations

import io
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO

from ..errors import InputError
from ..text import listing
from . import paths
from .base import ReadOptions
from .npy import NpyData, read_header

#: What reading a damaged member raises (RuntimeError: encrypted; ValueError: bad offsets).
_DAMAGED = (
    zipfile.BadZipFile,
    zlib.error,
    EOFError,
    RuntimeError,
    NotImplementedError,
    ValueError,
    OSError,
)
#: Deflate cannot compress better than about 1032:1; a member declaring more is lying
#: about its size (a zip bomb) or damaged.
MAX_RATIO = 1032


def check_member(label: str, info: zipfile.ZipInfo) -> None:
    """Refuse a member before inflating it: a declared size beyond the memory available
    (with the copy the conversion makes, twice the size), or a compression ratio no
    deflate stream can have (a zeros array reaches about 1026:1; bzip2 and LZMA
    members, which can go further, are held to the memory check only)."""
    deflated = info.compress_type == zipfile.ZIP_DEFLATED
    if deflated and info.file_size > MAX_RATIO * max(info.compress_size, 1):
        raise InputError(
            label,
            f"declares {info.file_size:,} bytes inflated from {info.compress_size:,} "
            f"(more than the {MAX_RATIO}:1 deflate can reach): a damaged file or a zip bomb",
        )
    available = paths.memory_available()
    if 2 * info.file_size > available:
        raise InputError(
            label,
            f"inflates to {info.file_size:,} bytes, more than half the {available:,} bytes "
            "of memory available",
        )


class NpzSource(NpyData):
    """One member of a .npz archive: read whole when small, streamed from the
    inflating member when large (bounded memory whatever it inflates to)."""

    def __init__(
        self,
        archive: str,
        key: str,
        path: str | None,
        data: bytes | None,
        info: zipfile.ZipInfo,
        booleans: bool = False,
    ) -> None:
        label = f"{archive}[{key}]"
        self._archive = archive
        self._path, self._data, self._info = path, data, info
        with self._member() as fp:
            super().__init__(label, "npz", read_header(label, fp, info.file_size), booleans)

    @contextmanager
    def _member(self) -> Iterator[IO[bytes]]:
        """The member's stream; zip and zlib errors become one line naming the archive."""
        archive = self._path if self._path is not None else io.BytesIO(self._data or b"")
        try:
            with zipfile.ZipFile(archive) as zf, zf.open(self._info) as fp:
                yield fp
        except _DAMAGED as exc:
            if isinstance(exc, RuntimeError) and "encrypted" in str(exc):
                raise InputError(self._archive, "is encrypted (password-protected)") from None
            raise InputError(self._archive, f"is a damaged .npz file ({exc})") from None

    @contextmanager
    def _open_data(self) -> Iterator[IO[bytes]]:
        with self._member() as fp:
            fp.read(self._offset)
            yield fp


def open_npz(
    label: str, path: str | None, data: bytes | None, fmt: str, options: ReadOptions
) -> NpzSource:
    """The array ``options.key`` of a .npz file (the only one when no key is given)."""
    try:
        zf = zipfile.ZipFile(path if path is not None else io.BytesIO(data or b""))
    except (zipfile.BadZipFile, ValueError, OSError):  # ValueError: offsets before the start
        raise InputError(label, "is not a valid .npz file (not a zip archive)") from None
    except NotImplementedError as exc:  # a zip feature Python cannot read (version 6.4...)
        raise InputError(label, f"is a .npz file Python cannot read ({exc})") from None
    with zf:
        members = {n[:-4]: n for n in zf.namelist() if n.endswith(".npy")}
        if not members:
            raise InputError(label, "holds no arrays")
        key = options.key
        if key is None:
            if len(members) > 1:
                raise InputError(
                    label,
                    f"holds {len(members)} arrays ({listing(sorted(members))})"
                    + (f"; choose one with {options.key_option}" if options.key_option else ""),
                )
            key = next(iter(members))
        elif key not in members:
            raise InputError(label, f"has no array {key!r}; it holds: {listing(sorted(members))}")
        info = zf.getinfo(members[key])
    check_member(f"{label}[{key}]", info)
    return NpzSource(label, key, path, data, info, options.booleans)
