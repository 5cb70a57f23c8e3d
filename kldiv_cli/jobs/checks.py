"""What every request shares: validation run once (:class:`Checked`), and the checks
of option values that several commands take."""

from __future__ import annotations

import math

from ..errors import UsageError

__all__ = ["Checked", "temperature"]


class Checked:
    """A request that is validated once: :meth:`validate` runs the request's
    :meth:`check` the first time only. The command line validates before it reads
    stdin, then the job (which library callers call directly) asks again: the checks,
    some of which look at the file system, run once per request."""

    def check(self) -> None:
        """Raise a ``UsageError`` for anything wrong with the request."""
        raise NotImplementedError

    def validate(self) -> None:
        """:meth:`check`, unless it already passed for this request."""
        if not self.__dict__.get("_checked"):
            self.check()
            # Requests are frozen dataclasses: the mark is not a field (it is not
            # compared, hashed or copied by dataclasses.replace).
            object.__setattr__(self, "_checked", True)


def temperature(value: float) -> float:
    """``--temperature``: a finite number > 0.

    Raises
    ------
    UsageError
        Naming the option and the value.
    """
    if not (math.isfinite(value) and value > 0):
        raise UsageError(f"--temperature must be a finite number > 0, got {value}")
    return value
