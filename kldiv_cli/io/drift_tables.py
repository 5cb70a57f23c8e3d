"""The tables drift reads: one file, a list of Parquet files, a folder or a glob of them,
as named columns of any type (:mod:`.typed`: Parquet column by column when large).

Errors name drift's own arguments (REFERENCE, CURRENT), never another command's options.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from ..errors import InputError
from ..redact import redact
from . import formats, fs
from .base import ReadOptions
from .formats import is_parquet, output_extension_kind
from .paths import dataset_files
from .typed import Table, WholeTable, open_columns, open_parquet

__all__ = ["Table", "WholeTable", "expand", "is_parquet", "is_profile", "open_table"]


def is_profile(paths: Sequence[str]) -> bool:
    """Whether REFERENCE is a saved profile: one JSON file (what ``profile -o`` writes)."""
    return len(paths) == 1 and paths[0] != "-" and output_extension_kind(paths[0]) == "json"


def expand(paths: Sequence[str]) -> tuple[str, list[str] | None]:
    """A label for messages, and the Parquet files of a dataset (None: one plain file).

    ``paths`` is one path (a file, a folder, a glob) or several files (as a shell
    expands an unquoted glob).
    """
    if len(paths) == 1:
        if paths[0] == "-":
            return "<stdin>", None
        return redact(paths[0]), dataset_files(paths[0])
    label = f"{redact(paths[0])} (and {len(paths) - 1} more)"
    files: list[str] = []
    for path in paths:
        found = dataset_files(path) if path != "-" else None
        if found is None:
            if path == "-" or not is_parquet(path):
                raise InputError(path, "a list of files must be Parquet files (.parquet)")
            if not fs.is_remote(path) and not os.path.isfile(path):
                raise InputError(path, "no such file")
            found = [path]
        files.extend(f for f in found if f not in files)
    return label, files


def open_table(
    paths: Sequence[str],
    delimiter: str | None,
    stdin: bytes | None,
    key: str | None = None,
    key_option: str | None = None,
) -> Table:
    """One side of a drift check, as named columns (see the module's docstring);
    ``key``: the array of a file of several (.npz, safetensors), ignored by other formats
    (one key serves both sides); ``key_option``: the option that sets it, for hints."""
    label, files = expand(paths)
    if files is not None:
        return open_parquet(label, files)
    path = paths[0]
    if path != "-":
        remote = fs.is_remote(path)
        if not remote and os.path.isdir(path):
            raise InputError(path, "is a directory and holds no .parquet files")
        if not remote and not os.path.lexists(path):
            raise InputError(path, "no such file")
        if is_parquet(path) and (remote or os.path.isfile(path)):
            return open_parquet(label, [path])
    keyed = path == "-" or formats.kind_of(path) == formats.KEYED
    options = ReadOptions(key=key if keyed else None, delimiter=delimiter, key_option=key_option)
    return open_columns(path, options, stdin)
