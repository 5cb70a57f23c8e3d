"""io.paths: small files read whole and bounded (profiles, thresholds), and the format
of a stream told from its first bytes."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from kldiv_cli.errors import InputError
from kldiv_cli.io.formats import sniff
from kldiv_cli.io.paths import read_limited


def test_read_limited_reads_a_file_up_to_the_limit(tmp_path: Path) -> None:
    path = tmp_path / "profile.json"
    path.write_bytes(b"x" * 10)
    assert read_limited(str(path), 10) == b"x" * 10
    with pytest.raises(InputError, match="is larger than 9 bytes"):
        read_limited(str(path), 9)


@pytest.mark.parametrize(
    "make,message",
    [
        (lambda p: p / "missing.json", "no such file"),
        (lambda p: p, "is a directory, not a file"),
    ],
)
def test_read_limited_errors_are_one_line(tmp_path: Path, make, message: str) -> None:
    with pytest.raises(InputError, match=message) as caught:
        read_limited(str(make(tmp_path)), 100)
    assert "\n" not in str(caught.value)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads every file")
def test_read_limited_unreadable(tmp_path: Path) -> None:
    path = tmp_path / "secret.json"
    path.write_bytes(b"{}")
    path.chmod(0)
    with pytest.raises(InputError, match="permission denied"):
        read_limited(str(path), 100)


def test_read_limited_bounds_a_stream(tmp_path: Path) -> None:
    """A FIFO has no size: it is read to one byte past the limit, never further."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)

    def feed(data: bytes) -> None:
        try:
            with open(fifo, "wb") as f:
                f.write(data)
        except BrokenPipeError:  # the reader stopped at the limit
            pass

    for data, limit in ((b"abc", 3), (b"y" * 100_000, 10)):
        thread = threading.Thread(target=feed, args=(data,))
        thread.start()
        try:
            if len(data) <= limit:
                assert read_limited(str(fifo), limit) == data
            else:
                with pytest.raises(InputError, match="is larger than 10 bytes"):
                    read_limited(str(fifo), limit)
        finally:
            thread.join(10)


@pytest.mark.parametrize(
    "head,fmt",
    [
        (b"\x93NUMPY\x01\x00", "npy"),
        (b"_logits_\x08\x00\x00\x00", "kld"),
        ((40).to_bytes(8, "little") + b'{"t": {"dtype": "F32"', "safetensors"),
        (b"PAR1", "parquet"),
        (b"a,b\n1,2\n", "csv"),
        (b"a\tb\n1\t2\n", "tsv"),
        (b"{not-8-bytes-of-length", "csv"),
    ],
)
def test_sniff(head: bytes, fmt: str) -> None:
    assert sniff(head) == fmt
