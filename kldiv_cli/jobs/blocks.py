"""Blocks of rows for the jobs that stream: exact-size blocks, and reading ahead in a thread.

Shared by every job that reads two sources block by block (``compute``, ``compare``).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TypeVar

import numpy as np

T = TypeVar("T")


def rebatch(blocks: Iterable[np.ndarray], rows: int) -> Iterator[np.ndarray]:
    """Blocks of exactly ``rows`` rows (the last may be shorter), whatever the reader yields.

    Only small tails are copied, and a reader's block (a whole Parquet row group,
    say) is released before the next one is read.
    """
    carry = None
    for block in blocks:
        start = 0
        if carry is not None:
            need = rows - len(carry)
            if len(block) < need:
                carry = np.concatenate([carry, block])
                continue
            piece = np.concatenate([carry, block[:need]])
            carry, start = None, need
            yield piece
            del piece
        while len(block) - start >= rows:
            yield block[start : start + rows]
            start += rows
        if start < len(block):
            carry = block[start:].copy()
        del block
    if carry is not None and len(carry):
        yield carry


def prefetch(items: Iterable[T], depth: int = 2) -> Iterator[T]:
    """Produce ``items`` in a background thread, ``depth`` ahead: reading the next block
    (file I/O and Parquet decoding release the GIL) overlaps computing this one."""
    import queue
    import threading

    # An item travels as a 1-tuple (whatever it is); the end as None, a failure as its
    # exception.
    q: queue.Queue[tuple[T] | BaseException | None] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        q.put((item,), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                del item
                if stop.is_set():
                    return
            q.put(None)
        except BaseException as exc:  # handed to the consumer, raised there
            q.put(exc)

    thread = threading.Thread(target=produce, name="kldiv-reader", daemon=True)
    thread.start()
    try:
        while True:
            got = q.get()
            if got is None:
                return
            if isinstance(got, BaseException):
                raise got
            yield got[0]
            del got
    finally:
        stop.set()
