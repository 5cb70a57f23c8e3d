"""Reading inputs and writing outputs: every byte that enters or leaves kldiv passes here.

:mod:`.sources` opens a file (or stdin) as a :class:`~.sources.Source` of numbers;
:mod:`.writers` writes results atomically. Nothing here computes a divergence.
"""
