"""Where in an input something is, for messages: ``row 3, token 7``.

Shared by the jobs that point at the first bad value of an array (``estimate``,
``gaussian``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["first_position"]


def first_position(flags: np.ndarray, axes: Sequence[str], first: int = 0) -> str:
    """The 0-based position of the first true element of ``flags`` (C order), named by axis.

    Parameters
    ----------
    flags : numpy.ndarray
        A boolean array with at least one true element.
    axes : sequence of str
        The name of each axis, outermost first, e.g. ``("row", "token")``.
    first : int
        The index of ``flags``' first row in the whole input (a block of rows).

    Returns
    -------
    str
        ``"row 3, token 7"``: one ``name index`` per axis, as many as there are both
        axes and names (a 0-d array gives ``""``).
    """
    where = [int(i) for i in np.argwhere(flags)[0]]
    if where:
        where[0] += first
    return ", ".join(f"{axis} {int(i)}" for axis, i in zip(axes, where))
