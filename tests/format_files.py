"""One small writer per registered format, for the registry's round-trip tests: each
writes a rows x classes float64 array as a file of its format (a table's columns are
named p0, p1, ...) and returns the array as it reads back.

A new format of kldiv_cli.io.formats needs its writer here (test_formats checks)."""

from __future__ import annotations

import json
import struct
from collections.abc import Callable
from pathlib import Path

import numpy as np


def _npy(path: Path, x: np.ndarray) -> np.ndarray:
    with open(path, "wb") as f:
        np.save(f, x)
    return x


def _npz(path: Path, x: np.ndarray) -> np.ndarray:
    with open(path, "wb") as f:
        np.savez(f, logp=x)
    return x


def _safetensors(path: Path, x: np.ndarray) -> np.ndarray:
    raw = np.ascontiguousarray(x, dtype="<f8").tobytes()
    head = {"logp": {"dtype": "F64", "shape": list(x.shape), "data_offsets": [0, len(raw)]}}
    text = json.dumps(head).encode()
    text += b" " * (-len(text) % 8)
    path.write_bytes(struct.pack("<Q", len(text)) + text + raw)
    return x


def _kld(path: Path, x: np.ndarray) -> np.ndarray:
    """llama.cpp's layout: rows of n_ctx - 1 - n_ctx // 2 positions per chunk, each
    quantised to uint16 with a scale and a minimum; returns the rows as they decode."""
    n_ctx = 2 * x.shape[0] + 2  # one chunk holding every row
    out = [b"_logits_", struct.pack("<iii", n_ctx, x.shape[1], 1)]
    out.append(np.zeros(n_ctx, dtype="<i4").tobytes())
    decoded = []
    for row in x:
        low, high = float(row.min()), float(row.max())
        scale = np.float32((high - low) / 65535 if high > low else 1.0)
        q = np.round((row - np.float32(low)) / scale).clip(0, 65535).astype("<u2")
        pad = b"\0\0" if len(row) % 2 else b""
        out.append(struct.pack("<ff", scale, np.float32(low)) + q.tobytes() + pad)
        decoded.append(np.float64(scale) * q.astype(np.float64) + np.float64(np.float32(low)))
    path.write_bytes(b"".join(out))
    return np.array(decoded)


def _table(x: np.ndarray) -> object:
    import pyarrow as pa

    return pa.table({f"p{j}": x[:, j] for j in range(x.shape[1])})


def _parquet(path: Path, x: np.ndarray) -> np.ndarray:
    import pyarrow.parquet as pq

    pq.write_table(_table(x), path)
    return x


def _arrow(path: Path, x: np.ndarray) -> np.ndarray:
    import pyarrow.feather as feather

    feather.write_feather(_table(x), str(path))
    return x


def _text(delimiter: str) -> Callable[[Path, np.ndarray], np.ndarray]:
    def write(path: Path, x: np.ndarray) -> np.ndarray:
        header = delimiter.join(f"p{j}" for j in range(x.shape[1]))
        np.savetxt(path, x, fmt="%.17g", delimiter=delimiter, header=header, comments="")
        return x

    return write


WRITERS: dict[str, Callable[[Path, np.ndarray], np.ndarray]] = {
    "npy": _npy,
    "npz": _npz,
    "safetensors": _safetensors,
    "kld": _kld,
    "parquet": _parquet,
    "arrow": _arrow,
    "tsv": _text("\t"),
    "csv": _text(","),
}
