"""Reading inputs and writing outputs: every byte that enters or leaves kldiv passes here.

:mod:`.sources` is the readers' public surface: :func:`~.sources.open_source` opens a
file, dataset, stream or stdin as a :class:`~.base.Source` of numbers, and
:func:`~.sources.open_columns` gives typed columns for drift. :mod:`.writers` writes
results atomically (bytes or a writer callable: turning a report into bytes is
:mod:`kldiv_cli.render.files`). Nothing here computes a divergence.

The rooms:

- :mod:`.formats`: the format registry;
- :mod:`.base`: ``ReadOptions``, the :class:`~.base.Source` base and the ``TableReader``
  protocol;
- :mod:`.paths`: files, stdin, FIFOs and devices (buffered, bounded), objects in a
  store (through :mod:`.fs`), dataset globs, small files read whole
  (:func:`~.paths.read_limited`);
- :mod:`.columns`: the column selector and the Arrow to NumPy checks (through buffers);
- :mod:`.roles`: the one rule for which columns are row keys (never a class, never a
  measurement), :func:`~.roles.key_reason`;
- :mod:`.tables`: ``TableSource``, the numeric source over any ``TableReader``;
- one module per format: :mod:`.npy`, :mod:`.npz`, :mod:`.csv`, :mod:`.parquet`,
  :mod:`.arrow`, :mod:`.safetensors` (one tensor, chosen by key), :mod:`.kld`
  (llama.cpp's log-probabilities, and the tokens they score);
- :mod:`.numeric` (numbers, for compute) and :mod:`.typed` (columns of any type, for
  drift; :mod:`.drift_tables`, drift's REFERENCE and CURRENT arguments): the two APIs,
  each dispatching through :mod:`.formats`.

Every format is one record of :mod:`.formats` (name, extensions, kind, magic bytes, its
module and opener, how drift reads it, how an engine reads it by ranges); everything
that depends on a format is looked up there. A new format is one module with
``open_<fmt>(label, path, data, fmt, options) -> Source`` (a table format implements
``base.TableReader``, returns a ``TableSource`` and has a ``read_columns``) and one
``Format`` entry in ``formats.REGISTRY``.
"""
