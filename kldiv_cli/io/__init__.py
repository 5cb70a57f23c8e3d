"""Reading inputs and writing outputs: every byte that enters or leaves kldiv passes here.

:mod:`.sources` is the readers' public surface: :func:`~.sources.open_source` opens a
file, dataset, stream or stdin as a :class:`~.base.Source` of numbers (one module per
format: :mod:`.npy`, :mod:`.npz`, :mod:`.csv`, :mod:`.parquet`, :mod:`.arrow`), and
:func:`~.sources.open_columns` gives typed columns for drift. :mod:`.writers` writes
results atomically. Nothing here computes a divergence.
"""
