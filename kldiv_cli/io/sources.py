"""The readers' public surface, under the names the rest of kldiv uses.

Two APIs, kept apart:

- numbers (``compute``, ``inspect``, ``compare``): :func:`open_source` gives a
  :class:`Source` (see :mod:`.base`), implemented once per format in :mod:`.npy`,
  :mod:`.npz`, :mod:`.csv`, :mod:`.parquet`, :mod:`.arrow`, :mod:`.safetensors` and
  :mod:`.kld`, dispatched in :mod:`.numeric`;
- typed columns (``drift``): :func:`open_columns` gives pyarrow tables of any column
  types (:mod:`.typed`).

Where the bytes come from (files, stdin, FIFOs, datasets) is :mod:`.paths`; the
column selector and the Arrow to NumPy checks are :mod:`.columns`. Anything else is
imported from its own module.

The table-only names (:func:`open_columns`, :func:`column_array`,
:func:`select_columns`) load their modules when first used: a job on arrays never
compiles them (no bytecode cache is the worst case of a small job's start-up).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .base import ReadOptions, Source
from .numeric import open_source
from .paths import dataset_files, read_stdin

if TYPE_CHECKING:
    from .columns import column_array, select_columns
    from .typed import open_columns

__all__ = [
    "ReadOptions",
    "Source",
    "column_array",
    "dataset_files",
    "open_columns",
    "open_source",
    "read_stdin",
    "select_columns",
]


def __getattr__(name: str) -> object:
    """The table-only names, imported when first asked for."""
    if name == "open_columns":
        from . import typed

        value: object = typed.open_columns
    elif name in ("column_array", "select_columns"):
        from . import columns

        value = getattr(columns, name)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value
