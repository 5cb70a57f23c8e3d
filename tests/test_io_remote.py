"""safetensors, .kld and small files read from an object store (an in-process moto S3
server on 127.0.0.1), through io.paths like every format. Skipped without moto."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from .helpers import needs, s3_client, s3_server

needs("moto", "boto3")

from kldiv_cli.errors import InputError  # noqa: E402
from kldiv_cli.io import fs  # noqa: E402
from kldiv_cli.io.paths import read_limited  # noqa: E402

from .helpers import invoke  # noqa: E402
from .test_safetensors_kld import kld_pair, write_safetensors  # noqa: E402

BUCKET = "kldiv-tensors"


@pytest.fixture(scope="module")
def s3(tmp_path_factory) -> Iterator[tuple[list[str], Path]]:
    """The store's --storage-option flags, and a folder whose files are also objects."""
    with s3_server() as endpoint:
        d = tmp_path_factory.mktemp("tensors")
        x = np.log(np.random.default_rng(1).dirichlet(np.ones(6), size=8)).astype("<f4")
        write_safetensors(d / "x.safetensors", {"lp": ("F32", [8, 6], x.tobytes())})
        kld_pair(d)
        (d / "small.json").write_bytes(b'{"a": 1}')
        client = s3_client(endpoint)
        client.create_bucket(Bucket=BUCKET)
        for path in d.iterdir():
            client.upload_file(str(path), BUCKET, path.name)
        try:
            yield [f"--storage-option=endpoint={endpoint}", "--storage-option=region=us-east-1"], d
        finally:
            fs.configure({})


def _loss(*args: object) -> float:
    out = invoke("compute", *args, "-r", "sum", "-f", "json")
    assert out.exit_code == 0, out.stderr
    return json.loads(out.stdout)["loss"]


def test_compute_reads_safetensors_and_kld_objects(s3) -> None:
    options, d = s3
    try:
        st = f"s3://{BUCKET}/x.safetensors"
        assert _loss(st, d / "x.safetensors", "--log-target", *options) == 0.0
        local = _loss(d / "quant.kld", d / "base.kld", "--log-target")
        remote = _loss(
            f"s3://{BUCKET}/quant.kld", f"s3://{BUCKET}/base.kld", "--log-target", *options
        )
        assert remote == local
        missing = invoke("inspect", f"s3://{BUCKET}/none.kld", *options)
        assert missing.exit_code == 2 and missing.stderr.count("\n") == 1, missing.stderr
    finally:
        fs.configure({})


def test_read_limited_reads_an_object(s3) -> None:
    options, _ = s3
    fs.configure(fs.parse_options(o.split("=", 1)[1] for o in options))
    try:
        assert read_limited(f"s3://{BUCKET}/small.json", 8) == b'{"a": 1}'
        with pytest.raises(InputError, match="is larger than 7 bytes"):
            read_limited(f"s3://{BUCKET}/small.json", 7)
        with pytest.raises(InputError) as caught:
            read_limited(f"s3://{BUCKET}/missing.json", 8)
        assert "\n" not in str(caught.value)
    finally:
        fs.configure({})
