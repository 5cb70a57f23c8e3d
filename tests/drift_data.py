"""Realistic tables for drift's noise-floor checks, generated here (no downloads).

* :func:`cars`: ~400 cars shaped like the public "cars" table (model years 1970-1982):
  a free-text ``Name`` (three quarters of the names distinct), ``Miles_per_Gallon``
  with missing values, ``Cylinders`` with rare values (3: 4 rows, 5: 3 rows),
  ``Displacement``, ``Horsepower`` with missing values, ``Weight_in_lbs`` (integers,
  nearly all distinct: a measurement, not a key), ``Acceleration``, ``Year`` and
  ``Origin``. Newer cars are lighter, weaker and go further on a gallon, as in the
  real table, so a split by year is a real shift.
* :func:`orders`: a few thousand orders: a unique ``order_id``, a ``created_at``
  timestamp, a ``customer_id`` (repeating integers), amounts, quantities, a ``country``
  with rare values, a ``channel``, a ``coupon`` mostly missing, and a free-text
  ``comments`` column (mostly missing; sentences, nearly all distinct).

``split(table, seed)`` is a random 50/50 split of rows. Used by ``tests/test_drift_noise.py``
and ``benchmarks/bench_drift_splits.py``.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

_BRANDS = {
    "USA": ["chevrolet", "ford", "plymouth", "dodge", "amc", "buick", "pontiac", "mercury"],
    "Europe": ["volkswagen", "peugeot", "fiat", "audi", "volvo", "saab", "bmw", "renault"],
    "Japan": ["toyota", "datsun", "honda", "mazda", "subaru"],
}
_MODELS = [
    "chevelle",
    "skylark",
    "satellite",
    "rebel",
    "torino",
    "galaxie",
    "impala",
    "fury",
    "ambassador",
    "corona",
    "maverick",
    "duster",
    "hornet",
    "pinto",
    "beetle",
    "civic",
    "corolla",
    "escort",
    "fairmont",
    "monarch",
    "nova",
    "vega",
    "gremlin",
    "colt",
    "rabbit",
    "dasher",
    "accord",
    "celica",
    "cutlass",
    "regal",
    "lesabre",
    "catalina",
]
_TRIMS = ["", "", "", " custom", " sw", " deluxe", " brougham", " (diesel)", " 2+2", " gl"]


def cars(seed: int = 0, rows: int = 406) -> pa.Table:
    """The cars-like table (see the module's docstring)."""
    rng = np.random.default_rng(seed)
    year = rng.integers(1970, 1983, rows)
    origin = rng.choice(["USA", "Europe", "Japan"], rows, p=[0.62, 0.18, 0.20])
    new = (year - 1970) / 12.0
    # American V8s give way to fours after the oil crises (8 cylinders: 75 % of American
    # cars in 1970, 15 % in 1982): the shift by year.
    u = rng.random(rows)
    eight = 0.75 - 0.6 * new
    usa = np.where(u < eight, 8, np.where(u < eight + 0.25, 6, 4))
    cylinders = np.where(origin == "USA", usa, rng.choice([4, 6], rows, p=[0.9, 0.1]))
    rare = rng.permutation(rows)[:7]
    cylinders[rare[:4]] = 3
    cylinders[rare[4:]] = 5
    displacement = np.round(cylinders * rng.normal(40, 6, rows) + rng.normal(0, 8, rows), 0)
    horsepower = np.round(20 + 0.42 * displacement * rng.normal(1 - 0.15 * new, 0.08), 0)
    weight = np.round(1400 + 8 * displacement + rng.normal(0, 180, rows) - 400 * new).astype(
        np.int64
    )
    mpg = np.round(np.clip(48 - 0.0075 * weight + 9 * new + rng.normal(0, 2.5, rows), 9, 47), 1)
    acceleration = np.round(
        np.clip(rng.normal(15.5, 2.7, rows) - 0.01 * (horsepower - 100), 8, 25), 1
    )
    mpg_missing = rng.permutation(rows)[:8]
    hp_missing = rng.permutation(rows)[:6]
    names = [f"{rng.choice(_BRANDS[o])} {rng.choice(_MODELS)}{rng.choice(_TRIMS)}" for o in origin]
    mpg_col = pa.array(mpg, mask=np.isin(np.arange(rows), mpg_missing))
    hp_col = pa.array(horsepower, mask=np.isin(np.arange(rows), hp_missing))
    return pa.table(
        {
            "Name": names,
            "Miles_per_Gallon": mpg_col,
            "Cylinders": cylinders.astype(np.int64),
            "Displacement": displacement,
            "Horsepower": hp_col,
            "Weight_in_lbs": weight,
            "Acceleration": acceleration,
            "Year": year.astype(np.int64),
            "Origin": origin,
        }
    )


_WORDS = (
    "the delivery was late again box arrived damaged great service will order again "
    "wrong size please call me before delivering gift wrap thanks courier left it at "
    "the door item missing from the package refund requested colour not as pictured"
).split()


def orders(seed: int = 0, rows: int = 3000) -> pa.Table:
    """The orders table (see the module's docstring)."""
    rng = np.random.default_rng(seed)
    start = np.datetime64("2026-03-01T00:00:00", "s")
    created = start + np.sort(rng.integers(0, 60 * 86400, rows)).astype("timedelta64[s]")
    countries = ["DE", "FR", "US", "GB", "NL", "ES", "IT", "PL", "SE", "AT"]
    shares = np.array([30, 18, 15, 12, 8, 6, 5, 3, 2, 1], float)
    country = rng.choice(countries, rows, p=shares / shares.sum()).astype(object)
    country[rng.permutation(rows)[:6]] = "LU"  # rare categories: 6, 2 and 1 rows
    country[rng.permutation(rows)[:2]] = "IS"
    country[rng.permutation(rows)[:1]] = "MT"
    has_comment = rng.random(rows) < 0.04
    comments = [
        " ".join(rng.choice(_WORDS, rng.integers(4, 16))) if c else None for c in has_comment
    ]
    coupon = np.where(
        rng.random(rows) < 0.15, rng.choice(["SPRING10", "WELCOME", "VIP"], rows), None
    )
    return pa.table(
        {
            "order_id": pa.array(np.arange(100_000, 100_000 + rows), pa.int64()),
            "created_at": pa.array(created),
            "customer_id": rng.integers(1, rows // 3, rows),
            "amount": np.round(rng.lognormal(3.6, 0.7, rows), 2),
            "quantity": rng.geometric(0.55, rows),
            "country": pa.array(country.tolist(), pa.string()),
            "channel": rng.choice(["web", "app", "phone"], rows, p=[0.6, 0.35, 0.05]),
            "coupon": pa.array(coupon.tolist(), pa.string()),
            "comments": pa.array(comments, pa.string()),
        }
    )


def split(table: pa.Table, seed: int) -> tuple[pa.Table, pa.Table]:
    """A random 50/50 split of the rows (the two halves keep the table's order)."""
    rng = np.random.default_rng(seed)
    first = np.sort(rng.permutation(table.num_rows)[: table.num_rows // 2])
    mask = np.zeros(table.num_rows, bool)
    mask[first] = True
    return table.filter(pa.array(mask)), table.filter(pa.array(~mask))
