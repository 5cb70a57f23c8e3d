"""llama.cpp ``.kld`` files: the base model's log-probabilities written by
``llama-perplexity --kl-divergence-base FILE`` (``tools/perplexity/perplexity.cpp``).

Layout, all little-endian:

* the magic ``_logits_`` (8 bytes), then int32 ``n_ctx``, ``n_vocab``, ``n_chunk``;
* int32 ``tokens[n_chunk·n_ctx]``: the evaluated text, chunk after chunk;
* for each chunk, for each scored position ``j = n_ctx/2 … n_ctx−2`` (``n_ctx − 1 −
  n_ctx/2`` positions, integer division): ``nv = 2·⌈n_vocab/2⌉ + 4`` uint16 values,
  the first four holding float32 ``scale`` and ``min_log_prob``, then ``n_vocab``
  quantised values ``q`` (and one of padding when ``n_vocab`` is odd), with
  ``log p ≈ scale·q + min_log_prob``.

Position ``j`` of chunk ``c`` predicts ``tokens[c·n_ctx + j + 1]``: those are the rows'
next tokens (:attr:`KldSource.tokens`). llama.cpp stores ``q = 0`` for every class at or
below ``max(min logit, max logit − 16)``, so such a class reads back as
``min_log_prob`` (an upper bound of its log-probability). Rows decode to float64
log-probabilities: ``scale·q`` is exact in float64, the sum rounded once.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import Any

import numpy as np

from ..errors import InputError
from .base import ReadOptions, Source
from .paths import open_binary, read_exact

__all__ = ["MAGIC", "KldSource", "open_kld"]

MAGIC = b"_logits_"
_HEADER = struct.Struct("<iii")
_START = len(MAGIC) + _HEADER.size


class KldSource(Source):
    """The log-probabilities of a ``.kld`` file (or of its buffered bytes), one row per
    scored position (positions × vocabulary, float64), read in blocks of rows.

    :attr:`tokens` holds each row's next token (int64), read with the header.
    """

    streamable = True
    #: Reading a block is a seek, a read and one multiply-add: cheap even when small.
    stream_always = True

    def __init__(self, label: str, path: str | None, data: bytes | None) -> None:
        self._path, self._bytes = path, data
        f, size = open_binary(path, data)
        with f:
            head = f.read(_START)
            if len(head) < _START or head[: len(MAGIC)] != MAGIC:
                raise InputError(label, "is not a llama.cpp .kld file (no '_logits_' header)")
            n_ctx, n_vocab, n_chunk = _HEADER.unpack(head[len(MAGIC) :])
            if n_ctx < 2 or n_vocab < 1 or n_chunk < 0:
                raise InputError(
                    label,
                    f"has an invalid header (n_ctx={n_ctx}, n_vocab={n_vocab}, n_chunk={n_chunk})",
                )
            first = n_ctx // 2
            per_chunk = n_ctx - 1 - first
            self.row_units = 2 * ((n_vocab + 1) // 2) + 4
            self._data = _START + 4 * n_ctx * n_chunk
            expected = self._data + 2 * self.row_units * per_chunk * n_chunk
            if size != expected:
                raise InputError(
                    label,
                    f"has {size} bytes but its header (n_ctx={n_ctx}, n_vocab={n_vocab}, "
                    f"n_chunk={n_chunk}) needs {expected}",
                )
            text = np.frombuffer(read_exact(f, _START, 4 * n_ctx * n_chunk, label), dtype="<i4")
        super().__init__(label, "kld", (per_chunk * n_chunk, n_vocab), np.dtype(np.float64))
        self.n_ctx, self.n_vocab, self.n_chunk = n_ctx, n_vocab, n_chunk
        #: The next token of each row (int64).
        self.tokens = text.reshape(n_chunk, n_ctx)[:, first + 1 :].astype(np.int64).reshape(-1)

    def _decode(self, data: bytes, rows: int) -> np.ndarray:
        units = np.frombuffer(data, dtype="<u2").reshape(rows, self.row_units)
        params = np.ascontiguousarray(units[:, :4]).view("<f4").astype(np.float64)
        out = units[:, 4 : 4 + self.n_vocab].astype(np.float64)
        out *= params[:, :1]
        out += params[:, 1:2]
        return out

    def iter_chunks(self, rows: int) -> Iterator[np.ndarray]:
        """Blocks of at most ``rows`` decoded rows (float64 log-probabilities)."""
        total, row_bytes = self.shape[0], 2 * self.row_units
        f, _ = open_binary(self._path, self._bytes)
        with f:
            for first in range(0, total, max(rows, 1)):
                n = min(rows, total - first)
                data = read_exact(f, self._data + first * row_bytes, n * row_bytes, self.label)
                yield self._decode(data, n)

    def read(self) -> np.ndarray:
        blocks = list(self.iter_chunks(max(self.shape[0], 1)))
        return np.concatenate(blocks) if blocks else np.empty(self.shape)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "n_ctx": self.n_ctx, "n_chunk": self.n_chunk}


def open_kld(
    label: str, path: str | None, data: bytes | None, fmt: str, options: ReadOptions
) -> KldSource:
    """A ``.kld`` file (or its buffered bytes) as a numeric source."""
    return KldSource(label, path, data)
