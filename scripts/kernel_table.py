"""Search the reciprocals of the fused kernel's logarithm table (kldiv_cli/core/kernel.py).

    python scripts/kernel_table.py    # prints RECIPROCALS, to paste into kernel.py

Entry ``i`` of the table stands for the mantissas that round to ``1 + i/16``. Its reciprocal
``inv_i`` is a multiple of 2^-29 (so ``m * inv_i`` is exact for the 24-bit mantissas of
float32) with ``|m * inv_i - 1| <= 1/32`` over the entry's mantissas, chosen among the
millions that qualify so that ``-log(inv_i)`` is within 2^-63 of a multiple of 2^-42 (Gal's
accurate tables): the kernel then needs one table value per entry, not a high and a low part.
Candidates are screened with NumPy's long double ``log``, the best verified at 60 digits.
"""

from __future__ import annotations

from decimal import Context

import numpy as np

BITS = 29
SCALE = 1 << 42


def distance(k: int) -> float:
    """``|-log(k / 2^BITS) - its nearest multiple of 2^-42|``, in units of 2^-42."""
    ctx = Context(prec=60)
    value = ctx.multiply(ctx.ln(ctx.divide(1 << BITS, k)), SCALE)
    return abs(float(ctx.subtract(value, value.to_integral_value())))


def best(i: int) -> int:
    low, high = 1 + (2 * i - 1) / 32, 1 + (2 * i + 1) / 32
    k = np.arange(
        int(np.ceil((1 - 1 / 32) / low * 2**BITS)),
        int(np.floor((1 + 1 / 32) / high * 2**BITS)) + 1,
    )
    scaled = -np.log(k.astype(np.longdouble) / 2**BITS) * SCALE
    screened = k[np.argsort(np.abs(scaled - np.round(scaled)))[:20]]
    return min((int(c) for c in screened), key=distance)


def main() -> None:
    numerators = [1 << BITS] + [best(i) for i in range(1, 16)]
    print("RECIPROCALS = (")
    for k in numerators:
        gap = distance(k)
        print(f"    {k},  # |lo| = " + (f"2^{np.log2(gap) - 42:.1f}" if gap else "0"))
    print(")")


if __name__ == "__main__":
    main()
