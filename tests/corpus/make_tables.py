"""Tables shaped as exporters and notebooks write them, for the column rule (io/roles.py).

Each :class:`Table` writes an input and a target file into a folder and keeps the
class values it wrote (rows × classes logits), so a test computes the right answer
with NumPy on its own. ``error`` is set where the right answer is one clear error.
The tests (tests/test_column_roles.py) run them through the real command; to look at
the files yourself:

    python tests/corpus/make_tables.py /tmp/kldiv-tables
"""

from __future__ import annotations

import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.feather as feather
import pyarrow.parquet as pq

ROWS = 40
CLASSES = 10


@dataclass(frozen=True)
class Written:
    """The files one :class:`Table` wrote, and the logits that are its classes."""

    input: Path
    target: Path
    x: np.ndarray
    t: np.ndarray


@dataclass(frozen=True)
class Table:
    name: str
    build: Callable[[Path, np.random.Generator], Written]
    #: The columns left out as keys or metadata, which the note must name (empty: no note).
    left_out: tuple[str, ...] = ()
    #: A regular expression the one-line error must match (None: a right number).
    error: str | None = None
    #: Summed pointwise as they are (``-r sum``), not as logits (log-softmax/softmax).
    plain: bool = False


def _logits(rng: np.random.Generator, rows: int = ROWS, k: int = CLASSES) -> np.ndarray:
    return rng.normal(0.0, 1.0, size=(rows, k))


def _csv(path: Path, columns: dict[str, list[object] | np.ndarray]) -> None:
    names = list(columns)
    rows = zip(*(columns[n] for n in names))
    path.write_text(",".join(names) + "\n" + "".join(",".join(map(str, r)) + "\n" for r in rows))


def _classes(a: np.ndarray) -> dict[str, np.ndarray]:
    return {f"c{j}": a[:, j] for j in range(a.shape[1])}


def _sides(folder: Path, rng: np.random.Generator, ext: str, write) -> Written:
    """Two files, written by ``write(path, logits, side)``."""
    x, t = _logits(rng), _logits(rng)
    xp, tp = folder / f"input.{ext}", folder / f"target.{ext}"
    write(xp, x, 0)
    write(tp, t, 1)
    return Written(xp, tp, x, t)


def id_then_classes(folder: Path, rng: np.random.Generator) -> Written:
    """The issue's table: an integer ``id``, then c0..c9."""

    def write(p: Path, a: np.ndarray, _: int) -> None:
        _csv(p, {"id": np.arange(len(a)), **_classes(a)})

    return _sides(folder, rng, "csv", write)


def pandas_index(folder: Path, rng: np.random.Generator) -> Written:
    """``DataFrame.to_csv`` after a read: the old index as ``Unnamed: 0``."""

    def write(p: Path, a: np.ndarray, _: int) -> None:
        _csv(p, {"Unnamed: 0": np.arange(len(a)), **_classes(a)})

    return _sides(folder, rng, "csv", write)


def pandas_default_index(folder: Path, rng: np.random.Generator) -> Written:
    """``DataFrame.to_csv()`` with its default index: an unnamed first column."""

    def write(p: Path, a: np.ndarray, _: int) -> None:
        _csv(p, {"": np.arange(len(a)), **_classes(a)})

    return _sides(folder, rng, "csv", write)


def wide_vocabulary(folder: Path, rng: np.random.Generator) -> Written:
    """A row id then a vocabulary of 4,000 logits per row: a CSV parsed by NumPy."""

    def write(p: Path, a: np.ndarray, _: int) -> None:
        header = "row_id," + ",".join(f"v{j}" for j in range(a.shape[1]))
        lines = [f"{i}," + ",".join(map(str, r)) for i, r in enumerate(a)]
        p.write_text(header + "\n" + "\n".join(lines) + "\n")

    x, t = _logits(rng, rows=3, k=4000), _logits(rng, rows=3, k=4000)
    xp, tp = folder / "input.csv", folder / "target.csv"
    write(xp, x, 0)
    write(tp, t, 1)
    return Written(xp, tp, x, t)


def monotone_step(folder: Path, rng: np.random.Generator) -> Written:
    """A column not named like a key, but strictly increasing (a step counter), last."""

    def write(p: Path, a: np.ndarray, side: int) -> None:
        _csv(p, {**_classes(a), "step": 1000 * side + 10 * np.arange(len(a)) + 7})

    return _sides(folder, rng, "csv", write)


def uuid_and_camel_ids(folder: Path, rng: np.random.Generator) -> Written:
    """A uuid string column and a camelCase ``sampleId`` (shuffled), then the classes."""

    def write(p: Path, a: np.ndarray, _: int) -> None:
        ids = [str(uuid.UUID(int=int(v))) for v in rng.integers(0, 2**62, len(a))]
        _csv(p, {"uuid": ids, "sampleId": rng.permutation(len(a)) + 500, **_classes(a)})

    return _sides(folder, rng, "csv", write)


def measurement(folder: Path, rng: np.random.Generator) -> Written:
    """An integer measurement with many distinct values (weights in pounds, 36 distinct
    in 40 rows, unsorted) beside positive floats, summed pointwise (``plain``): not a
    row key, but integers beside floats, so left out; the floats are the data."""

    def write(p: Path, a: np.ndarray, _: int) -> None:
        a[:, 0] = rng.choice(np.arange(1600, 5200), len(a))
        a[:4, 0] = a[4:8, 0]  # repeats: a measurement, not a key
        a[:, 1:] = rng.uniform(0.1, 1.0, size=(len(a), a.shape[1] - 1))
        _csv(p, {"Weight_in_lbs": a[:, 0].astype(int), "a": a[:, 1], "b": a[:, 2], "c": a[:, 3]})

    x, t = _logits(rng, k=4), _logits(rng, k=4)
    xp, tp = folder / "input.csv", folder / "target.csv"
    write(xp, x, 0)
    write(tp, t, 1)
    return Written(xp, tp, x[:, 1:], t[:, 1:])


def shuffled_doc_ids(folder: Path, rng: np.random.Generator) -> Written:
    """A document id not named like a key, unique and shuffled (1000 and up), then the
    classes: in a softmax its values would take all the mass (a loss of 0.0)."""

    def write(p: Path, a: np.ndarray, _: int) -> None:
        _csv(p, {"doc": rng.permutation(len(a)) + 1000, **_classes(a)})

    return _sides(folder, rng, "csv", write)


def disjoint_doc_ids(folder: Path, rng: np.random.Generator) -> Written:
    """The same with each side's ids shuffled in a range of its own (a train/test split)."""

    def write(p: Path, a: np.ndarray, side: int) -> None:
        _csv(p, {"doc": rng.permutation(len(a)) + 1000 + side * len(a), **_classes(a)})

    return _sides(folder, rng, "csv", write)


def float_written_ids(folder: Path, rng: np.random.Generator) -> Written:
    """An ``id`` written as ``12.0`` (pandas writes an integer column holding a missing
    value as floats), unique and shuffled: a key all the same."""

    def write(p: Path, a: np.ndarray, _: int) -> None:
        _csv(p, {"id": [f"{v}.0" for v in rng.permutation(len(a))], **_classes(a)})

    return _sides(folder, rng, "csv", write)


def gold_labels(folder: Path, rng: np.random.Generator) -> Written:
    """An ``id``, then the integer gold ``label`` of each row, then the logits."""

    def write(p: Path, a: np.ndarray, _: int) -> None:
        labels = rng.integers(0, a.shape[1], len(a))
        _csv(p, {"id": np.arange(len(a)), "label": labels, **_classes(a)})

    return _sides(folder, rng, "csv", write)


def token_rows(folder: Path, rng: np.random.Generator) -> Written:
    """One row per token: ``seq_id`` (repeating), ``position``, then the logits."""

    def write(p: Path, a: np.ndarray, _: int) -> None:
        _csv(
            p, {"seq_id": np.arange(len(a)) // 8, "position": np.arange(len(a)) % 8, **_classes(a)}
        )

    return _sides(folder, rng, "csv", write)


def _list_table(a: np.ndarray, rng: np.random.Generator, fixed: bool) -> pa.Table:
    flat = pa.array(a.reshape(-1).astype(np.float32))
    offsets = pa.array(np.arange(0, a.size + 1, a.shape[1], dtype=np.int32))
    logits = (
        pa.FixedSizeListArray.from_arrays(flat, a.shape[1])
        if fixed
        else pa.ListArray.from_arrays(offsets, flat)
    )
    return pa.table(
        {
            "id": pa.array(np.arange(len(a))),
            "text": pa.array([f"prompt {i}: {'word ' * int(i % 5)}" for i in range(len(a))]),
            "timestamp": pa.array(
                np.datetime64("2024-05-01T00:00:00") + np.arange(len(a)).astype("timedelta64[s]")
            ),
            "logits": logits,
            "temperature": pa.array(np.full(len(a), 0.7)),
        }
    )


def list_beside_metadata(folder: Path, rng: np.random.Generator) -> Written:
    """A teacher-logits export: id, text, timestamp, a fixed-size-list ``logits`` column
    and a float ``temperature``, as Parquet."""

    def write(p: Path, a: np.ndarray, _: int) -> None:
        pq.write_table(_list_table(a, rng, fixed=True), p)

    w = _sides(folder, rng, "parquet", write)
    return Written(w.input, w.target, w.x.astype(np.float32), w.t.astype(np.float32))


def variable_list_feather(folder: Path, rng: np.random.Generator) -> Written:
    """The same with a plain ``list<float>`` column (pandas and most writers), as Arrow."""

    def write(p: Path, a: np.ndarray, _: int) -> None:
        feather.write_feather(_list_table(a, rng, fixed=False), p)

    w = _sides(folder, rng, "arrow", write)
    return Written(w.input, w.target, w.x.astype(np.float32), w.t.astype(np.float32))


def token_ids_beside_logits(folder: Path, rng: np.random.Generator) -> Written:
    """A datasets-style export: ragged ``input_ids`` and ``attention_mask`` (lists of
    integers) beside one list of float ``logits``: the floats are the distribution."""

    def write(p: Path, a: np.ndarray, _: int) -> None:
        ids = [list(rng.integers(0, 32000, 3 + i % 4)) for i in range(len(a))]
        table = pa.table(
            {
                "input_ids": pa.array(ids, pa.list_(pa.int64())),
                "attention_mask": pa.array([[1] * len(r) for r in ids], pa.list_(pa.int8())),
                "logits": pa.array(list(a.astype(np.float32)), pa.list_(pa.float32())),
            }
        )
        pq.write_table(table, p)

    w = _sides(folder, rng, "parquet", write)
    return Written(w.input, w.target, w.x.astype(np.float32), w.t.astype(np.float32))


def two_lists(folder: Path, rng: np.random.Generator) -> Written:
    """Two list columns (logits and hidden states): which one is meant is the user's to say."""

    def write(p: Path, a: np.ndarray, _: int) -> None:
        table = _list_table(a, rng, fixed=True)
        hidden = pa.FixedSizeListArray.from_arrays(pa.array(rng.normal(size=len(a) * 4)), 4)
        pq.write_table(table.append_column("hidden", hidden), p)

    return _sides(folder, rng, "parquet", write)


def ragged_lists(folder: Path, rng: np.random.Generator) -> Written:
    """A list column whose rows differ in length: no distribution of fixed classes."""

    def write(p: Path, a: np.ndarray, _: int) -> None:
        rows = [list(r[: CLASSES - (i % 2)]) for i, r in enumerate(a)]
        pq.write_table(pa.table({"id": np.arange(len(a)), "logits": rows}), p)

    return _sides(folder, rng, "parquet", write)


def id_and_one_column(folder: Path, rng: np.random.Generator) -> Written:
    """An id and one value column: a softmax over one class (always 1)."""

    def write(p: Path, a: np.ndarray, _: int) -> None:
        _csv(p, {"id": np.arange(len(a)), "score": a[:, 0]})

    return _sides(folder, rng, "csv", write)


TABLES: list[Table] = [
    Table("id_then_classes", id_then_classes, ("id",)),
    Table("pandas_index", pandas_index, ("Unnamed: 0",)),
    Table("pandas_default_index", pandas_default_index, ("",)),
    Table("wide_vocabulary", wide_vocabulary, ("row_id",)),
    Table("monotone_step", monotone_step, ("step",)),
    Table("uuid_and_camel_ids", uuid_and_camel_ids, ("sampleId",)),
    Table("measurement", measurement, ("Weight_in_lbs",), plain=True),
    Table("shuffled_doc_ids", shuffled_doc_ids, ("doc",)),
    Table("disjoint_doc_ids", disjoint_doc_ids, ("doc",)),
    Table("float_written_ids", float_written_ids, ("id",)),
    Table("gold_labels", gold_labels, ("id", "label")),
    Table("token_rows", token_rows, ("seq_id", "position")),
    Table("list_beside_metadata", list_beside_metadata, ("id", "text", "timestamp", "temperature")),
    Table(
        "variable_list_feather", variable_list_feather, ("id", "text", "timestamp", "temperature")
    ),
    Table("token_ids_beside_logits", token_ids_beside_logits, ("input_ids", "attention_mask")),
    Table(
        "two_lists", two_lists, error=r"has 2 list columns \('logits', 'hidden'\).*--input-columns"
    ),
    Table("ragged_lists", ragged_lists, error=r"column 'logits': row 1 has 9 values.*ragged"),
    Table(
        "id_and_one_column",
        id_and_one_column,
        error=r"input: log-softmax over 1 class \(column 'score' of .*--input-columns",
    ),
]


def main(root: str) -> None:
    for i, table in enumerate(TABLES):
        folder = Path(root) / table.name
        folder.mkdir(parents=True, exist_ok=True)
        table.build(folder, np.random.default_rng(i))
        print(folder)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "kldiv-tables")
