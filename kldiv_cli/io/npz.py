"""NumPy ``.npz`` archives: one member chosen by key, its sizes checked before it is
inflated."""

from __future__ import annotations

import io
import math
import zipfile
import zlib

from ..errors import InputError
from . import paths
from .base import ArraySource, ReadOptions
from .npy import from_bytes, numeric_dtype, read_header

#: Deflate cannot compress better than about 1032:1; a member declaring more is lying
#: about its size (a zip bomb) or damaged.
MAX_RATIO = 1032


def check_member(label: str, info: zipfile.ZipInfo) -> None:
    """Refuse a member before inflating it: a declared size beyond the memory available
    (with the copy the conversion makes, twice the size), or a compression ratio no
    deflate stream can have."""
    if info.compress_type != zipfile.ZIP_STORED and info.file_size > MAX_RATIO * max(
        info.compress_size, 1
    ):
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


def open_npz(
    label: str, path: str | None, data: bytes | None, fmt: str, options: ReadOptions
) -> ArraySource:
    """The array ``options.key`` of a .npz file (the only one when no key is given)."""
    try:
        zf = zipfile.ZipFile(path if path is not None else io.BytesIO(data or b""))
    except zipfile.BadZipFile:
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
                    f"holds {len(members)} arrays ({', '.join(sorted(members))}); "
                    "choose one with --input-key/--target-key",
                )
            key = next(iter(members))
        elif key not in members:
            raise InputError(label, f"has no array {key!r}; it holds: {', '.join(sorted(members))}")
        inner = f"{label}[{key}]"
        info = zf.getinfo(members[key])
        check_member(inner, info)
        try:
            with zf.open(info) as fp:
                shape, fortran, dtype, _ = read_header(inner, fp, info.file_size)
                out_dtype = numeric_dtype(inner, dtype)
                raw = fp.read(math.prod(shape) * dtype.itemsize)
        except (zipfile.BadZipFile, zlib.error, EOFError, RuntimeError, NotImplementedError) as exc:
            raise InputError(label, f"is a damaged .npz file ({exc})") from None
    array = from_bytes(raw, dtype, shape, fortran).astype(out_dtype)
    return ArraySource(inner, "npz", array)
