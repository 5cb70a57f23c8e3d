"""The range of every numeric option, checked in one place before a command runs.

Click parses ``--dim -9223372036854775809`` into a Python int of any size and
``--epsilon 1e400`` into ``inf``; neither is a value any command can use, and an
option that a command happens not to use (``--dim`` without a softmax) would pass
unseen. :func:`check_numbers` is called by the error boundary with the parsed
options of every command: every integer must fit in int64, every float must be
finite, and the options in :data:`LIMITS` must lie in their range. The requests'
own checks (``--top`` at least 1, ``--bins`` from 2 to 10,000, a ``--dim`` that the
data has) come after.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from ..errors import UsageError

__all__ = ["LIMITS", "NON_FINITE_ALLOWED", "check_numbers"]

INT64_MIN = -(1 << 63)
INT64_MAX = (1 << 63) - 1

#: Parameter name -> (lowest, highest) value allowed (inclusive).
LIMITS: dict[str, tuple[float, float]] = {
    # NumPy arrays have at most 64 axes.
    "dim": (-64, 63),
    "threads": (1, 4096),
    "workers": (1, 4096),
    "chunk_rows": (1, 1 << 40),
    "timeout": (1e-3, 3600),
}
#: Options whose value is compared with data, where ``inf`` can be meant
#: (``--pad-value -inf``: log-probs padded with -inf).
NON_FINITE_ALLOWED = frozenset({"pad_value"})


def _option(name: str) -> str:
    return "--" + name.replace("_", "-")


def check_numbers(values: Mapping[str, Any]) -> None:
    """Every numeric option in ``values`` (a command's parsed keyword arguments) in range.

    Raises
    ------
    UsageError
        Naming the option and the range: an integer beyond int64, a float that is not
        finite (NaN, ``inf``, or a number too large for a float, ``1e400``), or a value
        outside the option's :data:`LIMITS`.
    """
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if isinstance(value, float) and not math.isfinite(value):
            if name in NON_FINITE_ALLOWED and not math.isnan(value):
                continue
            raise UsageError(f"{_option(name)} must be a finite number, got {value}")
        if isinstance(value, int) and not INT64_MIN <= value <= INT64_MAX:
            raise UsageError(f"{_option(name)} must be a 64-bit integer, got {_short(value)}")
        low, high = LIMITS.get(name, (-math.inf, math.inf))
        if value < low:
            raise UsageError(f"{_option(name)} must be at least {_bound(low)}, got {_short(value)}")
        if value > high:
            raise UsageError(f"{_option(name)} must be at most {_bound(high)}, got {_short(value)}")


def _bound(x: float) -> str:
    return f"{int(x):,}" if float(x).is_integer() else f"{x:g}"


def _short(value: int | float) -> str:
    text = str(value)
    return text if len(text) <= 24 else f"{text[:10]}...{text[-6:]} ({len(text)} digits)"
