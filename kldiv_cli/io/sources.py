"""The readers' public surface, under the names the rest of kldiv uses.

Two APIs, kept apart:

- numbers (``compute``, ``inspect``): :func:`open_source` gives a :class:`Source`
  (see :mod:`.base`), implemented once per format in :mod:`.npy`, :mod:`.npz`,
  :mod:`.csv`, :mod:`.parquet` and :mod:`.arrow`, dispatched in :mod:`.numeric`;
- typed columns (``drift``): :func:`open_columns` and :func:`read_table` give pyarrow
  tables of any column types (:mod:`.typed`).

Where the bytes come from (files, stdin, FIFOs, datasets) is :mod:`.paths`; the
column selector and the Arrow to NumPy checks are :mod:`.columns`.
"""

from __future__ import annotations

from .base import EXTENSIONS, FORMATS, MISSING_POLICIES, STDIN, STREAM_ABOVE, ReadOptions, Source
from .columns import column_array, select_columns
from .numeric import open_source
from .paths import dataset_files, read_stdin, sniff
from .typed import ParquetColumns, open_columns, read_table

__all__ = [
    "EXTENSIONS",
    "FORMATS",
    "MISSING_POLICIES",
    "STDIN",
    "STREAM_ABOVE",
    "ParquetColumns",
    "ReadOptions",
    "Source",
    "column_array",
    "dataset_files",
    "open_columns",
    "open_source",
    "read_stdin",
    "read_table",
    "select_columns",
    "sniff",
]
