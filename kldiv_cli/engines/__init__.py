"""Where the compute job's sums (and drift's reference profiles) run.

:mod:`.registry` holds one :class:`~.registry.Engine` record per engine, which the
compute job and the drift commands dispatch through: :mod:`.local` runs a plan in this
process, :mod:`.dask` runs the tasks :mod:`.tasks` lays out (pure functions, no
scheduler) on a Dask cluster, with :mod:`.quantiles` and :mod:`.drift` for drift's
profiles. A new engine is one module here and one entry in the registry.

This package's ``__init__`` imports nothing, so importing a task's module on a worker
loads no registry; ``distributed`` is an optional extra (``pip install "kldiv[dask]"``),
imported only when ``--engine dask`` runs.
"""
