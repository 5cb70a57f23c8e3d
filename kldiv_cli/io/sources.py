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
"""

from __future__ import annotations

from .base import ReadOptions, Source
from .columns import column_array, select_columns
from .numeric import open_source
from .paths import dataset_files, read_stdin
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
