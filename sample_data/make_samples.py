"""Regenerate the sample files (deterministic): python sample_data/make_samples.py"""

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

HERE = Path(__file__).parent


def main() -> None:
    rng = np.random.default_rng(7)
    n, classes = 64, 10
    labels = rng.integers(0, classes, size=n)
    teacher = rng.normal(0, 1.0, (n, classes)).astype(np.float32)
    teacher[np.arange(n), labels] += 4.0
    student = (0.7 * teacher + rng.normal(0, 0.8, (n, classes))).astype(np.float32)
    np.save(HERE / "teacher_logits.npy", teacher)
    np.save(HERE / "student_logits.npy", student)
    names = [f"c{j}" for j in range(classes)]
    pq.write_table(
        pa.table({k: teacher[:, j] for j, k in enumerate(names)}), HERE / "teacher_logits.parquet"
    )
    pq.write_table(
        pa.table({k: student[:, j] for j, k in enumerate(names)}), HERE / "student_logits.parquet"
    )

    # Probability rows as CSV: observed class frequencies and a model's predictions.
    observed = rng.dirichlet(np.ones(4) * 2, size=8)
    predicted = 0.6 * observed + 0.4 * rng.dirichlet(np.ones(4) * 2, size=8)
    header = "cat,dog,bird,fish"
    np.savetxt(
        HERE / "observed.csv", observed, delimiter=",", header=header, comments="", fmt="%.6f"
    )
    np.savetxt(
        HERE / "predicted.csv", predicted, delimiter=",", header=header, comments="", fmt="%.6f"
    )
    (HERE / "labels.csv").write_text("label\n" + "".join(f"{v}\n" for v in labels))


if __name__ == "__main__":
    main()
