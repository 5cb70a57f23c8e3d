"""The output guard and write_all with an object store (moto's S3 on 127.0.0.1, the
fixture of tests/test_fs.py). Skipped when moto is not installed."""

from __future__ import annotations

from pathlib import Path

import pytest

from .helpers import needs

needs("moto", "boto3")

from kldiv_cli.errors import OutputError  # noqa: E402
from kldiv_cli.io import fs  # noqa: E402
from kldiv_cli.io.writers import check_outputs, write_all  # noqa: E402

from .test_fs import _objects, s3, url  # noqa: E402, F401  (s3: the fixture)


@pytest.fixture()
def store(s3):  # noqa: F811
    fs.configure(s3)
    try:
        yield s3
    finally:
        fs.configure({})


def test_remote_outputs_are_checked_like_files(store) -> None:
    check_outputs([url("o/a.json"), "-", None], [url("in/x.npy")])
    with pytest.raises(OutputError, match="is also an input"):
        check_outputs([url("in/x.npy")], [url("in/x.npy")])
    with pytest.raises(OutputError, match="is named as two outputs"):
        check_outputs([url("o/a.json"), url("o/a.json")], [])
    with pytest.raises(OutputError, match="no such bucket"):
        check_outputs(["s3://no-such-bucket-here/o.json"], [])


def test_write_all_mixes_files_and_objects(store, tmp_path: Path) -> None:
    local = tmp_path / "j.xml"
    local.write_bytes(b"old")

    def fails(f) -> None:
        raise OutputError("the page could not be made")

    with pytest.raises(OutputError):
        write_all([(str(local), lambda f: f.write(b"new")), (url("mix/r.json"), fails)])
    assert local.read_bytes() == b"old" and _objects(store, "mix/") == {}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["j.xml"]
    write_all(
        [(str(local), lambda f: f.write(b"new")), (url("mix/r.json"), lambda f: f.write(b"R"))]
    )
    assert local.read_bytes() == b"new" and _objects(store, "mix/") == {"mix/r.json": b"R"}
