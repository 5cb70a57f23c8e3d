"""How often kldiv drift's default gate passes random 50/50 splits of one table, and that
real shifts still fail.

For each table of ``tests/drift_data.py`` (cars-like, ~400 rows; orders, 3,000 rows), it
runs :func:`kldiv_cli.jobs.drift.run_drift` with the default settings on ``--splits``
random halves (seeds 0, 1, ...) and counts the splits that pass (exit 0), naming the
columns that failed most often. Then the real shifts, which must fail: cars split by
model year (1970-1975 against 1976-1982) and orders with amounts 50 % higher.

    PYTHONPATH=. python benchmarks/bench_drift_splits.py              # 200 splits each
    PYTHONPATH=. python benchmarks/bench_drift_splits.py --splits 40
"""

from __future__ import annotations

import argparse
import collections
import sys
import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from kldiv_cli.jobs.drift import DriftReport, DriftRequest, run_drift  # noqa: E402
from tests.drift_data import cars, orders, split  # noqa: E402


def check(reference: pa.Table, current: pa.Table, folder: Path) -> DriftReport:
    """The default ``kldiv drift`` of two tables (through Parquet files)."""
    pq.write_table(reference, ref := folder / "reference.parquet")
    pq.write_table(current, cur := folder / "current.parquet")
    return run_drift(DriftRequest(reference=(str(ref),), current=(str(cur),)))


def failing(report: DriftReport) -> list[str]:
    return [c.name for c in report.columns if c.state.value == "drift"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--splits", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for name, table in (("cars", cars(0)), ("orders", orders(0))):
            culprits: collections.Counter[str] = collections.Counter()
            passed = 0
            for seed in range(args.splits):
                report = check(*split(table, seed), folder)
                passed += not report.drift
                culprits.update(failing(report))
            print(
                f"{name}: {passed}/{args.splits} random splits pass "
                f"({100 * passed / args.splits:.1f} %); failing columns: "
                f"{dict(culprits.most_common(6)) or '-'}"
            )
        table = cars(0)
        old = table.filter(pc.less(table["Year"], 1976))
        new = table.filter(pc.greater_equal(table["Year"], 1976))
        report = check(old, new, folder)
        print(f"cars by year: drift={report.drift}, drifted: {failing(report)}")
        ref, cur = split(orders(0), 0)
        shifted = cur.set_column(
            cur.schema.get_field_index("amount"), "amount", pc.multiply(cur["amount"], 1.5)
        )
        report = check(ref, shifted, folder)
        print(f"orders, amounts +50 %: drift={report.drift}, drifted: {failing(report)}")


if __name__ == "__main__":
    main()
