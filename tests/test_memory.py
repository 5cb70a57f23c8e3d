"""Memory bounded by the per-row results: arrays of rank 3+ stream along their leading
axes with the bits of the 2-D file, and peak RSS stays far below the file's size."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from kldiv_cli.io.sources import ReadOptions, open_source

from .helpers import invoke, peak_rss
from .test_safetensors_kld import write_safetensors


def _batch1(tmp_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """A batch-1 dump, (1, positions, vocabulary), of close logits, as .npy and
    safetensors, and the same rows as a 2-D .npy."""
    rng = np.random.default_rng(20)
    x = rng.normal(0, 3, (1, 301, 40)).astype(np.float32)
    t = (x + rng.normal(0, 0.3, x.shape)).astype(np.float32)
    for name, a in (("x", x), ("t", t)):
        np.save(tmp_path / f"{name}3.npy", a)
        np.save(tmp_path / f"{name}2.npy", a.reshape(-1, a.shape[-1]))
        write_safetensors(
            tmp_path / f"{name}3.safetensors", {"l": ("F32", list(a.shape), a.tobytes())}
        )
    return x, t


SOFT = ["--input-transform", "log-softmax", "--target-transform", "softmax"]


@pytest.mark.parametrize(
    ("ext", "flags"),
    [
        ("npy", ["-r", "batchmean", *SOFT]),
        ("safetensors", ["-r", "sum", "--per-row", *SOFT]),
        ("npy", ["-r", "mean", "--top", "3"]),
    ],
)
def test_rank3_compute_streams_with_the_bits_of_2d(tmp_path: Path, ext: str, flags) -> None:
    x, _ = _batch1(tmp_path)
    three = json.loads(
        invoke(
            "compute",
            tmp_path / f"x3.{ext}",
            tmp_path / f"t3.{ext}",
            *flags,
            "--chunk-rows",
            "16",
            "-f",
            "json",
        ).stdout
    )
    # torch's batchmean divides by the first axis: 1 for a batch-1 dump, the sum of the rows
    flat = ["sum" if f == "batchmean" else f for f in flags]
    two = json.loads(
        invoke("compute", tmp_path / "x2.npy", tmp_path / "t2.npy", *flat, "-f", "json").stdout
    )
    assert three["shape"] == list(x.shape)
    assert three["loss"] == two["loss"]
    assert three.get("per_row") == two.get("per_row") and three.get("top") == two.get("top")
    if "--per-row" in flags:
        assert len(three["per_row"]) == x.shape[1]


def test_rank3_pointwise_loss_keeps_its_shape(tmp_path: Path) -> None:
    x, t = _batch1(tmp_path)
    out = tmp_path / "loss.npy"
    r = invoke(
        "compute", tmp_path / "x3.safetensors", tmp_path / "t3.npy", "-r", "none", *SOFT, "-o", out
    )
    assert r.exit_code == 0, r.stderr
    streamed = np.load(out)
    whole = invoke(
        "compute", tmp_path / "x3.npy", tmp_path / "t3.npy", "-r", "none", *SOFT, "-f", "json"
    )
    assert streamed.shape == x.shape
    assert streamed.tolist() == json.loads(whole.stdout)["loss"]


def test_rank3_compare_matches_2d(tmp_path: Path) -> None:
    _batch1(tmp_path)
    three = invoke(
        "compare",
        tmp_path / "x3.safetensors",
        tmp_path / "t3.npy",
        "--chunk-rows",
        "7",
        "-f",
        "json",
    )
    two = invoke("compare", tmp_path / "x2.npy", tmp_path / "t2.npy", "-f", "json")
    assert three.exit_code == 0, three.stderr
    a, b = json.loads(three.stdout), json.loads(two.stdout)
    assert a["rows"] == 301
    assert {k: a[k] for k in ("rows", "kl", "js", "tv")} == {
        k: b[k] for k in ("rows", "kl", "js", "tv")
    }


# ---------------------------------------------------------------- inspect, streamed


def _whole_inspect(a: np.ndarray) -> dict:
    """The numbers inspect gave when it read the whole array (its former code)."""
    info: dict = {"shape": list(a.shape), "dtype": str(a.dtype)}
    with np.errstate(all="ignore"):
        info["elements"] = int(a.size)
        info["nan"] = int(np.count_nonzero(np.isnan(a)))
        info["posinf"] = int(np.count_nonzero(np.isposinf(a)))
        info["neginf"] = int(np.count_nonzero(np.isneginf(a)))
        finite = a[np.isfinite(a)]
        info["min"] = float(finite.min()) if finite.size else None
        info["max"] = float(finite.max()) if finite.size else None
        info["negative"] = int(np.count_nonzero(a < 0))
        info["zeros"] = int(np.count_nonzero(a == 0))
        if a.ndim >= 1 and a.size:
            rows = a.reshape(-1, a.shape[-1]) if a.ndim > 1 else a.reshape(1, -1)
            sums = rows.sum(axis=-1, dtype=np.float64)
            known = not np.isnan(sums).all()
            info["rows"] = int(rows.shape[0])
            info["row_sum_min"] = float(np.nanmin(sums)) if known else None
            info["row_sum_mean"] = float(np.nanmean(sums)) if known else None
            info["row_sum_max"] = float(np.nanmax(sums)) if known else None
    return info


def _inspect_fixtures(tmp_path: Path) -> list[tuple[Path, np.ndarray]]:
    """Files of every shape inspect streams, with the array each holds."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(21)
    logits = rng.normal(0, 4, (700, 33)).astype(np.float32)
    logits[3, 4], logits[9, 1], logits[9, 2] = np.nan, np.inf, -np.inf
    e = np.exp(np.nan_to_num(logits[:, :20], posinf=9, neginf=-9).astype(np.float64))
    probs = e / e.sum(axis=1, keepdims=True)
    out: list[tuple[Path, np.ndarray]] = []

    def npy(name: str, a: np.ndarray) -> None:
        np.save(tmp_path / name, a)
        out.append((tmp_path / name, a))

    npy("logits.npy", logits)
    npy("probs.npy", probs)
    npy("logprobs3.npy", np.log(probs).reshape(35, 20, 20).astype(np.float16))
    npy("labels.npy", rng.integers(0, 9, 1500).astype(np.int64))
    flat = rng.normal(0, 1e3, 5003)
    npy("long64.npy", flat)
    npy("long32.npy", flat.astype(np.float32))
    row = np.log(np.full(3001, 1 / 3001))
    npy("logprob_row.npy", row)
    npy("scalar.npy", np.array(2.5))
    np.savez_compressed(tmp_path / "z.npz", logits=logits)
    out.append((tmp_path / "z.npz", logits))
    write_safetensors(tmp_path / "t.safetensors", {"l": ("F32", [7, 100, 33], logits.tobytes())})
    out.append((tmp_path / "t.safetensors", logits.reshape(7, 100, 33)))
    table = pa.table({f"c{j}": probs[:, j] for j in range(20)})
    pq.write_table(table, tmp_path / "p.parquet", row_group_size=128)
    out.append((tmp_path / "p.parquet", probs))
    lists = pa.FixedSizeListArray.from_arrays(pa.array(logits.reshape(-1)), 33)
    pq.write_table(pa.table({"logits": lists}), tmp_path / "l.parquet", row_group_size=100)
    out.append((tmp_path / "l.parquet", logits))
    header = ",".join(f"c{j}" for j in range(20))
    lines = "\n".join(",".join(repr(float(v)) for v in r) for r in probs)
    (tmp_path / "p.csv").write_text(header + "\n" + lines + "\n")
    out.append((tmp_path / "p.csv", probs))
    return out


def _json(v: object) -> object:
    """A number as kldiv's JSON writes it (infinities and NaN as strings)."""
    if isinstance(v, float) and not np.isfinite(v):
        return "NaN" if np.isnan(v) else ("Infinity" if v > 0 else "-Infinity")
    return v


def test_inspect_streams_with_the_numbers_of_the_whole_array(tmp_path: Path, monkeypatch) -> None:
    """Blocks far smaller than the files, and a pairwise tree of many leaves: every
    number is still the whole array's, bit for bit, and so is the verdict."""
    from kldiv_cli.core import running
    from kldiv_cli.io import csv
    from kldiv_cli.jobs import inspect as job

    monkeypatch.setattr(job, "BLOCK_ELEMENTS", 1000)
    monkeypatch.setattr(running, "LEAF", 256)
    monkeypatch.setattr(csv, "STREAM_ABOVE", 1000)  # inspect parses the CSV by blocks
    for path, a in _inspect_fixtures(tmp_path):
        got = json.loads(invoke("inspect", path, "-f", "json").stdout)
        a = open_source(str(path), ReadOptions()).read()  # the whole-read path
        whole = _whole_inspect(a)
        assert {k: got.get(k) for k in whole} == {k: _json(v) for k, v in whole.items()}, path
        monkeypatch.setattr(job, "BLOCK_ELEMENTS", 1 << 30)
        assert got["looks_like"] == job.classify(a)[0]
        monkeypatch.setattr(job, "BLOCK_ELEMENTS", 1000)
    assert json.loads(invoke("inspect", tmp_path / "logprob_row.npy", "-f", "json").stdout)[
        "looks_like"
    ].startswith("log-probabilities")


def test_inspect_reports_progress_by_blocks(tmp_path: Path, monkeypatch) -> None:
    from kldiv_cli.jobs import inspect as job

    monkeypatch.setattr(job, "BLOCK_ELEMENTS", 1000)
    np.save(tmp_path / "a.npy", np.zeros((50, 100), np.float32))
    seen: list[tuple[int, int]] = []
    job.inspect(
        job.InspectRequest(str(tmp_path / "a.npy")), progress=lambda d, t: seen.append((d, t))
    )
    assert len(seen) == 5 and seen[-1] == (5000, 5000)


# ---------------------------------------------------------------- gaussian, streamed


@pytest.mark.parametrize("reduction", ["batch-mean", "sum", "per-dim", "per-row", "none"])
def test_gaussian_streams_with_the_bits_of_the_whole_batch(
    tmp_path: Path, monkeypatch, reduction: str
) -> None:
    """Blocks of 7 samples: every reduction, the free bits, a prior per sample and one
    per dimension, and the active units are the whole batch's, bit for bit."""
    from kldiv_cli.core.gaussian import active_units, gaussian_kl
    from kldiv_cli.jobs import gaussian as job

    monkeypatch.setattr(job, "BLOCK_ELEMENTS", 7 * 12)
    rng = np.random.default_rng(22)
    mu = (rng.normal(0, 1, (300, 12)) * rng.uniform(0, 0.3, 12)).astype(np.float32)
    lv = rng.normal(-1, 0.5, (300, 12)).astype(np.float32)
    pm, plv = rng.normal(0, 0.1, (300, 12)), rng.normal(0, 0.1, (1, 12))
    for name, a in (("mu", mu), ("lv", lv), ("pm", pm), ("plv", plv)):
        np.save(tmp_path / f"{name}.npy", a)
    fb = 0.05 if reduction in ("batch-mean", "sum", "per-dim") else None
    got = job.gaussian(
        job.GaussianRequest(
            str(tmp_path / "mu.npy"),
            str(tmp_path / "lv.npy"),
            prior_mu=str(tmp_path / "pm.npy"),
            prior_logvar=str(tmp_path / "plv.npy"),
            reduction=reduction,
            free_bits=fb,
        )
    )
    want = gaussian_kl(mu, lv, prior_mu=pm, prior_logvar=plv, reduction=reduction, free_bits=fb)
    kl, kl_fb = want if isinstance(want, tuple) else (want, None)
    assert np.asarray(got.kl).tobytes() == np.asarray(kl).tobytes()
    assert np.asarray(got.kl_free_bits).tobytes() == np.asarray(kl_fb).tobytes()
    assert got.active_units == active_units(mu) and 0 < got.active_units < 12
    assert (got.batch, got.latent_dims) == (300, 12)


def test_gaussian_streamed_errors_name_the_whole_files_rows(tmp_path: Path, monkeypatch) -> None:
    from kldiv_cli.jobs import gaussian as job

    monkeypatch.setattr(job, "BLOCK_ELEMENTS", 40)
    mu, sd = np.zeros((50, 4)), np.ones((50, 4))
    mu[33, 2], sd[41, 1] = np.nan, -0.5
    np.save(tmp_path / "mu.npy", mu)
    np.save(tmp_path / "sd.npy", sd)
    np.save(tmp_path / "short.npy", sd[:45])
    r = invoke("gaussian", tmp_path / "mu.npy", tmp_path / "sd.npy", "--scale-param", "std")
    assert (
        r.exit_code == 2 and r.stderr.count("\n") == 1 and "MU: NaN at row 33, column 2" in r.stderr
    )
    mu[33, 2] = 0
    np.save(tmp_path / "mu.npy", mu)
    r = invoke("gaussian", tmp_path / "mu.npy", tmp_path / "sd.npy", "--scale-param", "std")
    assert r.exit_code == 2 and "negative std -0.5 at 41, 1" in r.stderr
    r = invoke("gaussian", tmp_path / "mu.npy", tmp_path / "short.npy")
    assert r.exit_code == 2 and "shapes do not match" in r.stderr


# ---------------------------------------------------------------- peak RSS, measured

#: Peak RSS allowed (MB): the interpreter with NumPy and kldiv (about 35 MB), blocks
#: of a few MB and the per-row results; pyarrow alone adds about 50 MB.
BOUND = 90
BOUND_ARROW = 180


def _zeros_npy(path: Path, shape: tuple[int, ...]) -> Path:
    """A .npy of float32 zeros written as a header over a hole (instant, no disk)."""
    np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=shape).flush()
    return path


def _zeros_safetensors(path: Path, shape: tuple[int, ...]) -> Path:
    size = int(np.prod(shape)) * 4
    header = json.dumps({"l": {"dtype": "F32", "shape": list(shape), "data_offsets": [0, size]}})
    text = header.encode() + b" " * (-len(header) % 8)
    with open(path, "wb") as f:
        f.write(len(text).to_bytes(8, "little") + text)
        f.truncate(8 + len(text) + size)
    return path


def _zeros_list_parquet(path: Path, rows: int, width: int) -> Path:
    """A fixed-size-list column of zeros: a few kB on disk, ``rows x width`` floats
    decoded (in row groups of 512 rows)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    field = pa.field("logits", pa.list_(pa.float32(), width))
    group = pa.table(
        {"logits": pa.FixedSizeListArray.from_arrays(pa.array(np.zeros(512 * width, "f4")), width)}
    )
    with pq.ParquetWriter(path, pa.schema([field]), compression="zstd", use_dictionary=False) as w:
        for _ in range(rows // 512):
            w.write_table(group)
    return path


SOFTMAX = ("--input-transform", "log-softmax", "--target-transform", "softmax")


@pytest.mark.parametrize(
    "case",
    ["inspect-npy", "compute-3d", "compare-3d", "compare-npy", "compute-list-parquet", "gaussian"],
)
def test_peak_memory_is_bounded_far_below_the_file(tmp_path: Path, case: str) -> None:
    """Peak RSS of a real process, on files larger than the bound: reading any of them
    whole takes their size and more (in one block, --chunk-rows 100000: 206, 395 and
    496 MB for compute-3d, compare-3d and compute-list-parquet); streaming takes blocks
    (60, 71, 146 MB). Sizes are about twice what breaks the bound: larger ones only add
    seconds."""
    bound = BOUND
    if case == "inspect-npy":  # 96 MB
        args: tuple = ("inspect", _zeros_npy(tmp_path / "a.npy", (768, 32768)))
        mb = 96
    elif case == "compute-3d":  # a batch-1 dump, 2 x 24 MB; read whole: twice that in float64
        x = _zeros_npy(tmp_path / "x.npy", (1, 192, 32768))
        t = _zeros_npy(tmp_path / "t.npy", (1, 192, 32768))
        args, mb = ("compute", x, t, *SOFTMAX, "-r", "batchmean"), 48
    elif case == "compare-3d":  # 2 x 12 MB: compare's float64 work arrays took 5x that whole
        x = _zeros_safetensors(tmp_path / "x.safetensors", (1, 96, 32768))
        t = _zeros_safetensors(tmp_path / "t.safetensors", (1, 96, 32768))
        args, mb = ("compare", x, t), 24
    elif case == "compare-npy":  # 2 x 96 MB mapped: each block's pages released once used
        x = _zeros_npy(tmp_path / "x.npy", (768, 32768))
        t = _zeros_npy(tmp_path / "t.npy", (768, 32768))
        args, mb = ("compare", x, t, "--threads", "2"), 192
    elif case == "compute-list-parquet":  # 2 x 64 MB decoded
        p = _zeros_list_parquet(tmp_path / "l.parquet", 2048, 8192)
        args, mb, bound = ("compute", p, p, "-r", "sum"), 128, BOUND_ARROW
    else:  # 2 x 12 MB, whose float64 temporaries took 270 MB when read whole
        mu = _zeros_npy(tmp_path / "mu.npy", (24576, 128))
        lv = _zeros_npy(tmp_path / "lv.npy", (24576, 128))
        args, mb = ("gaussian", mu, lv), 24
    code, err, peak = peak_rss(*args)
    assert code == 0, err
    assert peak < bound, f"{case}: {peak:.0f} MB peak for {mb} MB of data"
