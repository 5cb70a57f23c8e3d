"""Engines that run the compute job's work elsewhere: :mod:`.tasks` lays the work out
in tasks (pure functions, no scheduler), :mod:`.dask` runs them on a Dask cluster.

Nothing here is imported at start-up: ``distributed`` is an optional extra
(``pip install "kldiv[dask]"``), imported only when ``--engine dask`` runs.
"""
