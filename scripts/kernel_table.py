"""Search the reciprocals of the fused kernel's logarithm table (kldiv_cli/core/kernel.py).

    python scripts/kernel_table.py    # prints RECIPROCALS, to paste into kernel.py

The kernel writes a target as ``2^e m`` with ``m`` in [0.75, 1.5) and entry ``i`` of the
table stands for the mantissas that round to ``1 + (i - 5)/21`` (``i = round(21 m - 16)``;
entry 5 is 1 itself). Its reciprocal ``inv_i`` has 29 significant bits (a multiple of 2^-28
above 1, of 2^-29 below: ``m * inv_i`` is exact for the 24-bit mantissas of float32) with
``|m * inv_i - 1| <= 1/32`` over the entry's mantissas, chosen among the millions that
qualify so that ``-log(inv_i)`` is within 2^-63 of a multiple of 2^-42 (Gal's accurate
tables): the kernel then needs one table value per entry, not a high and a low part.
Candidates are screened with NumPy's long double ``log``, the best verified at 60 digits.
"""

from __future__ import annotations

from decimal import Context

import numpy as np

SCALE = 1 << 42


def mantissas(i: int) -> tuple[float, float]:
    """The mantissas entry ``i`` stands for: ``[low, high)``."""
    centre = 1 + (i - 5) / 21
    return max(0.75, centre - 1 / 42), min(1.5, centre + 1 / 42)


def unit(i: int) -> int:
    """``log2`` of the reciprocal's spacing: 29 significant bits."""
    return 28 if i < 5 else 29


def distance(k: int, i: int) -> float:
    """``|-log(k / 2^unit) - its nearest multiple of 2^-42|``, in units of 2^-42."""
    ctx = Context(prec=60)
    value = ctx.multiply(ctx.ln(ctx.divide(1 << unit(i), k)), SCALE)
    return abs(float(ctx.subtract(value, value.to_integral_value())))


def best(i: int) -> int:
    low, high = mantissas(i)
    k = np.arange(
        int(np.ceil((1 - 1 / 32) / low * 2 ** unit(i))),
        int(np.floor((1 + 1 / 32) / high * 2 ** unit(i))) + 1,
    )
    scaled = -np.log(k.astype(np.longdouble) / 2 ** unit(i)) * SCALE
    screened = k[np.argsort(np.abs(scaled - np.round(scaled)))[:20]]
    return min((int(c) for c in screened), key=lambda c: distance(c, i))


def main() -> None:
    numerators = [1 << 29 if i == 5 else best(i) for i in range(16)]
    print("RECIPROCALS = (")
    for i, k in enumerate(numerators):
        gap = distance(k, i)
        print(f"    {k},  # /2^{unit(i)}, |lo| = " + (f"2^{np.log2(gap) - 42:.1f}" if gap else "0"))
    print(")")


if __name__ == "__main__":
    main()
