"""io.safetensors and io.kld: files written by small independent encoders (struct + json)."""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kldiv_cli.errors import InputError
from kldiv_cli.io.base import ReadOptions
from kldiv_cli.io.numeric import open_source

from .helpers import invoke


def open_safetensors(path: str, key: str | None):
    """One tensor, as every command opens it (compare's --key named in hints)."""
    return open_source(path, ReadOptions(key=key, key_option="--key"))


def open_kld(path: str):
    return open_source(path, ReadOptions())


# ---------------------------------------------------------------- safetensors encoder


def write_safetensors(
    path: Path, tensors: dict[str, tuple[str, list[int], bytes]], metadata=None
) -> Path:
    """The format as the reference implementation writes it: u64 LE header length, JSON
    header padded with spaces to 8 bytes, then the tensors' bytes back to back."""
    header: dict = {"__metadata__": metadata} if metadata else {}
    data = b""
    for name, (dtype, shape, raw) in tensors.items():
        header[name] = {
            "dtype": dtype,
            "shape": shape,
            "data_offsets": [len(data), len(data) + len(raw)],
        }
        data += raw
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    path.write_bytes(struct.pack("<Q", len(text)) + text + data)
    return path


def bf16_bytes(x: np.ndarray) -> tuple[bytes, np.ndarray]:
    """bfloat16 by truncation, and the float32 values those bits stand for."""
    bits = (np.asarray(x, dtype="<f4").view("<u4") >> 16).astype("<u2")
    return bits.tobytes(), (bits.astype("<u4") << 16).view("<f4")


@pytest.fixture()
def logits() -> np.ndarray:
    return np.random.default_rng(5).normal(size=(6, 7)).astype(np.float32)


@pytest.mark.parametrize("dtype,np_dtype", [("F16", "<f2"), ("F32", "<f4"), ("F64", "<f8")])
def test_safetensors_plain_dtypes(
    tmp_path: Path, logits: np.ndarray, dtype: str, np_dtype: str
) -> None:
    a = logits.astype(np_dtype)
    path = write_safetensors(
        tmp_path / "x.safetensors", {"logits": (dtype, [6, 7], a.tobytes())}, {"k": "v"}
    )
    src = open_safetensors(str(path), None)
    assert src.shape == (6, 7) and src.dtype == np.dtype(np_dtype).newbyteorder("=")
    assert np.array_equal(src.read(), a)
    assert np.array_equal(np.concatenate(list(src.iter_chunks(4))), a)


def test_safetensors_bf16_widens_exactly(tmp_path: Path, logits: np.ndarray) -> None:
    raw, expected = bf16_bytes(logits * 1000)
    path = write_safetensors(tmp_path / "x.safetensors", {"logits": ("BF16", [6, 7], raw)})
    src = open_safetensors(str(path), None)
    out = src.read()
    assert out.dtype == np.float32
    assert np.array_equal(out.view("<u4"), expected.reshape(6, 7).view("<u4"))


def test_safetensors_blocks_follow_the_first_axis(tmp_path: Path) -> None:
    a = np.arange(5 * 3 * 4, dtype="<f4").reshape(5, 3, 4)
    path = write_safetensors(tmp_path / "x.safetensors", {"t": ("F32", [5, 3, 4], a.tobytes())})
    src = open_safetensors(str(path), None)
    assert src.shape == (5, 3, 4) and np.array_equal(src.read(), a)
    blocks = list(src.iter_chunks(2))
    assert [b.shape for b in blocks] == [(2, 3, 4), (2, 3, 4), (1, 3, 4)]
    assert np.array_equal(np.concatenate(blocks), a)


def test_safetensors_key_choice(tmp_path: Path, logits: np.ndarray) -> None:
    a = logits.astype("<f4")
    path = write_safetensors(
        tmp_path / "two.safetensors",
        {"a": ("F32", [6, 7], a.tobytes()), "b": ("F32", [6, 7], (a + 1).tobytes())},
    )
    with pytest.raises(InputError, match="2 tensors \\(a, b\\); choose one with --key"):
        open_safetensors(str(path), None)
    assert np.array_equal(open_safetensors(str(path), "b").read(), a + 1)
    with pytest.raises(InputError, match="no tensor named 'c'"):
        open_safetensors(str(path), "c")


def _header_file(
    tmp_path: Path, header: bytes, data: bytes = b"", length: int | None = None
) -> Path:
    path = tmp_path / "bad.safetensors"
    n = len(header) if length is None else length
    path.write_bytes(struct.pack("<Q", n) + header + data)
    return path


@pytest.mark.parametrize(
    "make,message",
    [
        (
            lambda p: (p / "bad.safetensors").write_bytes(b"\x10\x00\x00"),
            "truncated safetensors header",
        ),
        (lambda p: _header_file(p, b'{"a": {}}', length=1000), "truncated safetensors header"),
        (lambda p: _header_file(p, b"", length=10**12), "over the"),
        (lambda p: _header_file(p, b"{not json"), "not valid JSON"),
        (lambda p: _header_file(p, b"[1, 2]"), "not a JSON object"),
        (lambda p: _header_file(p, b"\xff\xfe"), "not valid JSON"),
        (
            lambda p: _header_file(
                p,
                b'{"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},'
                b' "a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}',
                b"\0" * 4,
            ),
            "appears twice",
        ),
        (
            lambda p: _header_file(
                p, b'{"a": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]}}', b"\0" * 8
            ),
            "run past the end",
        ),
        (
            lambda p: _header_file(
                p, b'{"a": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 8]}}', b"\0" * 8
            ),
            "needs 16",
        ),
        (
            lambda p: _header_file(
                p, b'{"a": {"dtype": "U64", "shape": [1], "data_offsets": [0, 8]}}', b"\0" * 8
            ),
            "dtype U64",
        ),
        (
            lambda p: _header_file(
                p, b'{"a": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 0]}}'
            ),
            "shape is not",
        ),
        (
            lambda p: _header_file(
                p, b'{"a": {"dtype": "F32", "shape": [1], "data_offsets": [4]}}'
            ),
            "data_offsets is not",
        ),
        (lambda p: _header_file(p, b"{}"), "holds no tensors"),
    ],
)
def test_safetensors_bad_files(tmp_path: Path, make, message: str) -> None:
    make(tmp_path)
    with pytest.raises(InputError, match=message):
        open_safetensors(str(tmp_path / "bad.safetensors"), None)


def test_safetensors_file_cut_after_open(tmp_path: Path, logits: np.ndarray) -> None:
    path = write_safetensors(tmp_path / "x.safetensors", {"t": ("F32", [6, 7], logits.tobytes())})
    src = open_safetensors(str(path), None)
    path.write_bytes(path.read_bytes()[:-8])
    with pytest.raises(InputError, match="truncated"):
        src.read()


# ---------------------------------------------------------------- .kld encoder


def encode_row(logits: np.ndarray) -> tuple[bytes, np.ndarray]:
    """llama.cpp's log_softmax(n_vocab, logits, log_prob, tok) in float32, and the float64
    log-probabilities its output stands for (scale·q + min_log_prob)."""
    x = logits.astype(np.float32)
    max_logit = np.float32(x.max())
    min_logit = np.float32(max(np.float32(x.min()), np.float32(max_logit - np.float32(16))))
    sum_exp = math.fsum(np.exp((x - max_logit).astype(np.float32)).astype(np.float64).tolist())
    log_sum_exp = np.float32(math.log(sum_exp))
    min_log_prob = np.float32(np.float32(min_logit - max_logit) - log_sum_exp)
    scale = np.float32((max_logit - min_logit) / np.float32(65535))
    if scale:
        q = np.where(x > min_logit, np.rint(np.float32(1 / scale) * (x - min_logit)), 0).astype(
            "<u2"
        )
    else:
        q = np.zeros(len(x), dtype="<u2")
    pad = b"\0\0" if len(x) % 2 else b""
    decoded = np.float64(scale) * q.astype(np.float64) + np.float64(min_log_prob)
    return struct.pack("<ff", scale, min_log_prob) + q.tobytes() + pad, decoded


def write_kld(path: Path, logits: np.ndarray, tokens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``logits``: (n_chunk, n_ctx, n_vocab), ``tokens``: (n_chunk, n_ctx). Returns the
    decoded rows and their next tokens, as llama.cpp scores them."""
    n_chunk, n_ctx, n_vocab = logits.shape
    first = n_ctx // 2
    out = [
        b"_logits_",
        struct.pack("<iii", n_ctx, n_vocab, n_chunk),
        tokens.astype("<i4").tobytes(),
    ]
    rows, nexts = [], []
    for c in range(n_chunk):
        for j in range(first, n_ctx - 1):
            raw, decoded = encode_row(logits[c, j])
            out.append(raw)
            rows.append(decoded)
            nexts.append(tokens[c, j + 1])
    path.write_bytes(b"".join(out))
    return np.array(rows), np.array(nexts)


def kld_pair(
    tmp_path: Path, n_vocab: int = 11, n_ctx: int = 9, n_chunk: int = 3, noise: float = 0.3
):
    rng = np.random.default_rng(11)
    base = rng.normal(size=(n_chunk, n_ctx, n_vocab)).astype(np.float32) * 3
    quant = (base + rng.normal(size=base.shape) * noise).astype(np.float32)
    tokens = rng.integers(0, n_vocab, size=(n_chunk, n_ctx))
    lp, t = write_kld(tmp_path / "base.kld", base, tokens)
    lq, _ = write_kld(tmp_path / "quant.kld", quant, tokens)
    return tmp_path / "base.kld", tmp_path / "quant.kld", lp, lq, t


@pytest.mark.parametrize("n_vocab,n_ctx", [(11, 9), (12, 8), (5, 4), (40, 3)])
def test_kld_decodes_rows_and_tokens(tmp_path: Path, n_vocab: int, n_ctx: int) -> None:
    base, _, lp, _, t = kld_pair(tmp_path, n_vocab=n_vocab, n_ctx=n_ctx)
    src = open_kld(str(base))
    assert src.shape == (3 * (n_ctx - 1 - n_ctx // 2), n_vocab)
    assert np.array_equal(src.read(), lp)
    assert np.array_equal(np.concatenate(list(src.iter_chunks(2))), lp)
    assert np.array_equal(src.tokens, t)


def test_kld_wide_range_row_clamps_at_16(tmp_path: Path) -> None:
    logits = np.array([[[0.0, -40.0, -3.0, 5.0]] * 4], dtype=np.float32)
    tokens = np.zeros((1, 4), dtype=np.int64)
    lp, _ = write_kld(tmp_path / "w.kld", logits, tokens)
    out = open_kld(str(tmp_path / "w.kld")).read()
    assert np.array_equal(out, lp)
    # The class below max - 16 reads back as min_log_prob, the upper bound llama.cpp keeps.
    assert out[0, 1] == out.min()


@pytest.mark.parametrize(
    "mutate,message",
    [
        (lambda b: b + b"\0", "bytes but its header"),
        (lambda b: b[:-2], "bytes but its header"),
        (lambda b: b"_logitz_" + b[8:], "not a llama.cpp .kld file"),
        (lambda b: b[:10], "not a llama.cpp .kld file"),
        (lambda b: b[:8] + struct.pack("<i", 1) + b[12:], "invalid header"),
        (lambda b: b[:12] + struct.pack("<i", 0) + b[16:], "invalid header"),
        (lambda b: b[:16] + struct.pack("<i", -1) + b[20:], "invalid header"),
    ],
)
def test_kld_bad_files(tmp_path: Path, mutate, message: str) -> None:
    base, *_ = kld_pair(tmp_path)
    base.write_bytes(mutate(base.read_bytes()))
    with pytest.raises(InputError, match=message):
        open_kld(str(base))


# ---------------------------------------------------------------- through the command


def _log_softmax(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    z = x - x.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def test_compare_two_kld_files(tmp_path: Path) -> None:
    base, quant, lp, lq, t = kld_pair(tmp_path)
    out = invoke("compare", base, quant, "-f", "json")
    assert out.exit_code == 0, out.stderr
    doc = json.loads(out.stdout)
    p, q = np.exp(lp), np.exp(lq)
    kl = (p * (lp - lq)).sum(axis=1)
    assert doc["rows"] == len(lp)
    assert doc["kl"]["mean"] == pytest.approx(kl.mean(), rel=1e-12)
    assert doc["kl"]["max"] == pytest.approx(kl.max(), rel=1e-12)
    rows = np.arange(len(t))
    dp = q[rows, t] - p[rows, t]
    assert doc["delta_p"]["mean"] == pytest.approx(dp.mean(), rel=1e-9)
    nll_p, nll_q = -lp[rows, t], -lq[rows, t]
    assert doc["perplexity"]["reference"] == pytest.approx(math.exp(nll_p.mean()), rel=1e-12)
    assert doc["perplexity"]["candidate"] == pytest.approx(math.exp(nll_q.mean()), rel=1e-12)
    agree = (lp.argmax(axis=1) == lq.argmax(axis=1)).mean()
    assert doc["top1_agreement"]["value"] == pytest.approx(agree)


def test_compare_kld_against_logits(tmp_path: Path) -> None:
    """A .kld reference against the candidate's own logits (as llama.cpp's second pass)."""
    base, _, lp, _, t = kld_pair(tmp_path)
    rng = np.random.default_rng(1)
    cand = rng.normal(size=lp.shape).astype(np.float32)
    np.save(tmp_path / "cand.npy", cand)
    out = invoke("compare", base, tmp_path / "cand.npy", "-f", "json")
    assert out.exit_code == 0, out.stderr
    doc = json.loads(out.stdout)
    lq = _log_softmax(cand)
    kl = (np.exp(lp) * (lp - lq)).sum(axis=1)
    assert doc["kl"]["median"] == pytest.approx(np.median(kl), rel=1e-12)
    assert "perplexity" in doc  # tokens come with the .kld file


def test_compare_kld_errors(tmp_path: Path) -> None:
    base, quant, *_ = kld_pair(tmp_path)
    other = tmp_path / "other"
    other.mkdir()
    _, quant2, *_ = kld_pair(other)
    data = bytearray(quant2.read_bytes())
    data[40:44] = struct.pack(
        "<i", 7 ^ int.from_bytes(data[40:44], "little")
    )  # tokens[5]: a next token
    quant2.write_bytes(bytes(data))
    out_file = tmp_path / "rows.npy"
    out_file.write_bytes(b"keep")
    for args, message in [
        ((base, quant2), "different tokens"),
        ((base, tmp_path / "cut.kld"), "bytes but its header"),
        ((base, quant, "--reference-as", "logits"), "holds log-probs"),
    ]:
        (tmp_path / "cut.kld").write_bytes(quant.read_bytes()[:-1])
        out = invoke("compare", *args, "-o", out_file)
        assert out.exit_code == 2, (args, out.stderr)
        assert (
            out.stderr.count("\n") == 1
            and out.stderr.startswith("kldiv: error:")
            and message in out.stderr
        )
        assert out.stdout == ""
        assert out_file.read_bytes() == b"keep"


def test_compare_safetensors_matches_npy(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    a = rng.normal(size=(5, 9)).astype(np.float32)
    b = (a + rng.normal(size=a.shape) * 0.1).astype(np.float32)
    np.save(tmp_path / "a.npy", a)
    np.save(tmp_path / "b.npy", b)
    write_safetensors(tmp_path / "a.safetensors", {"logits": ("F32", [5, 9], a.tobytes())})
    write_safetensors(
        tmp_path / "b.safetensors",
        {"logits": ("F32", [5, 9], b.tobytes()), "extra": ("F32", [1], b"\0" * 4)},
    )
    npy = invoke("compare", tmp_path / "a.npy", tmp_path / "b.npy", "-f", "json")
    st = invoke(
        "compare",
        tmp_path / "a.safetensors",
        tmp_path / "b.safetensors",
        "--key",
        "logits",
        "-f",
        "json",
    )
    assert st.exit_code == 0, st.stderr
    mixed = invoke(
        "compare", tmp_path / "a.npy", tmp_path / "b.safetensors", "--key", "logits", "-f", "json"
    )
    assert mixed.exit_code == 0, mixed.stderr

    def statistics(out):  # the input descriptions (format, path) differ
        run = ("reference", "candidate")
        return {k: v for k, v in json.loads(out.stdout).items() if k not in run}

    assert statistics(st) == statistics(mixed) == statistics(npy)


def test_compare_safetensors_errors(tmp_path: Path) -> None:
    a = np.zeros((2, 3), dtype="<f4")
    good = write_safetensors(tmp_path / "a.safetensors", {"x": ("F32", [2, 3], a.tobytes())})
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(struct.pack("<Q", 4096) + b"{}")
    two = write_safetensors(
        tmp_path / "two.safetensors",
        {"x": ("F32", [2, 3], a.tobytes()), "y": ("F32", [2, 3], a.tobytes())},
    )
    for args, message in [
        ((good, bad), "truncated safetensors header"),
        ((good, two), "choose one with --key"),
        ((good, good, "--candidate-key", "nope"), "no tensor named"),
    ]:
        (tmp_path / "rows.csv").write_text("keep")
        out = invoke("compare", *args, "-o", tmp_path / "rows.csv")
        assert out.exit_code == 2, out.stderr
        assert out.stderr.startswith("kldiv: error:")
        assert out.stderr.count("\n") == 1 and message in out.stderr
        assert out.stdout == "" and (tmp_path / "rows.csv").read_text() == "keep"


# ---------------------------------------------------------------- compute and inspect


def _loss(*args: object, stdin: bytes = b"") -> float:
    out = invoke("compute", *args, "-f", "json", stdin=stdin)
    assert out.exit_code == 0, out.stderr
    return json.loads(out.stdout)["loss"]


def _one_error_line(out, *words: str) -> None:
    assert out.exit_code == 2 and out.stdout == ""
    assert out.stderr.startswith("kldiv: error: ") and out.stderr.count("\n") == 1, out.stderr
    for word in words:
        assert word in out.stderr, out.stderr


@pytest.fixture()
def pair(tmp_path: Path) -> tuple[Path, Path, Path, Path]:
    """Two tensors in one safetensors file (BF16 log-probs, F32 probabilities), and .npy
    files of the values compare's reader gives for each."""
    rng = np.random.default_rng(3)
    p = rng.dirichlet(np.ones(9), size=(4, 5)).astype("<f4")
    raw, widened = bf16_bytes(np.log(rng.dirichlet(np.ones(9), size=(4, 5))))
    path = write_safetensors(
        tmp_path / "two.safetensors",
        {"lp": ("BF16", [4, 5, 9], raw), "p": ("F32", [4, 5, 9], p.tobytes())},
    )
    np.save(tmp_path / "lp.npy", open_safetensors(str(path), "lp").read())
    np.save(tmp_path / "p.npy", open_safetensors(str(path), "p").read())
    assert np.array_equal(np.load(tmp_path / "lp.npy"), widened.reshape(4, 5, 9))
    return path, tmp_path / "lp.npy", tmp_path / "p.npy", tmp_path


@pytest.mark.parametrize("reduction", ["sum", "batchmean", "none"])
def test_compute_reads_safetensors_like_npy(pair, reduction: str) -> None:
    st, lp, p, _ = pair
    keys = ("--input-key", "lp", "--target-key", "p")
    ours = invoke("compute", st, st, *keys, "-r", reduction, "-f", "json")
    npy = invoke("compute", lp, p, "-r", reduction, "-f", "json")
    assert ours.exit_code == 0, ours.stderr
    a, b = json.loads(ours.stdout), json.loads(npy.stdout)
    assert a["loss"] == b["loss"] and a["shape"] == [4, 5, 9]
    assert a["input"]["format"] == "safetensors" and a["input"]["stored_dtype"] == "BF16"
    assert a["input"]["path"].endswith("two.safetensors[lp]")


def test_compute_safetensors_keys_and_options(pair) -> None:
    st, lp, p, tmp = pair
    _one_error_line(invoke("compute", st, p), "holds 2 tensors (lp, p)", "--input-key")
    _one_error_line(invoke("compute", lp, st, "--target-key", "q"), "no tensor named 'q'")
    _one_error_line(invoke("compute", lp, p, "--input-key", "lp"), "a key selects")
    _one_error_line(
        invoke("compute", st, p, "--input-key", "lp", "--input-columns", "0"), "columns select"
    )
    (tmp / "cut.safetensors").write_bytes(st.read_bytes()[:-10])
    cut = invoke("compute", tmp / "cut.safetensors", p, "--input-key", "p")
    _one_error_line(cut, "cut.safetensors[p]", "run past the end")
    (tmp / "one.safetensors").write_bytes(b"\x05\0\0\0\0\0\0\0{nope")
    _one_error_line(invoke("compute", tmp / "one.safetensors", p), "not valid JSON")


def test_inspect_reads_safetensors(pair) -> None:
    st, _, _, _ = pair
    out = invoke("inspect", st, "--key", "p", "-f", "json")
    assert out.exit_code == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["format"] == "safetensors" and doc["shape"] == [4, 5, 9]
    assert doc["looks_like"].startswith("probabilities")
    _one_error_line(invoke("inspect", st), "holds 2 tensors", "--key")


def test_compute_and_inspect_read_kld(tmp_path: Path) -> None:
    base, quant, lp, lq, _ = kld_pair(tmp_path)
    np.save(tmp_path / "lp.npy", open_kld(str(base)).read())
    np.save(tmp_path / "lq.npy", open_kld(str(quant)).read())
    args = ("--log-target", "-r", "batchmean")
    loss = _loss(quant, base, *args)
    assert loss == _loss(tmp_path / "lq.npy", tmp_path / "lp.npy", *args)
    kl = (np.exp(lp) * (lp - lq)).sum(axis=1)
    assert loss == pytest.approx(kl.mean(), rel=1e-12)
    out = invoke("inspect", base, "-f", "json")
    doc = json.loads(out.stdout)
    assert out.exit_code == 0 and doc["format"] == "kld" and doc["shape"] == list(lp.shape)
    assert doc["looks_like"].startswith("log-probabilities")
    _one_error_line(invoke("compute", quant, base, "--input-key", "a"), "a key selects")
    base.write_bytes(base.read_bytes()[:-2])
    _one_error_line(invoke("compute", quant, base), "bytes but its header")


def test_stdin_is_sniffed_and_read(pair, tmp_path: Path) -> None:
    st, lp, p, _ = pair
    expected = _loss(st, p, "--input-key", "lp", "-r", "sum")
    assert _loss("-", p, "--input-key", "lp", "-r", "sum", stdin=st.read_bytes()) == expected
    base, quant, *_ = kld_pair(tmp_path)
    expected = _loss(quant, base, "--log-target", "-r", "sum")
    assert _loss("-", base, "--log-target", "-r", "sum", stdin=quant.read_bytes()) == expected


def test_a_fifo_is_read_like_a_file(tmp_path: Path) -> None:
    import os
    import threading

    base, quant, *_ = kld_pair(tmp_path)
    fifo = tmp_path / "quant.kld.fifo"
    os.mkfifo(fifo)
    data = quant.read_bytes()

    def feed() -> None:
        with open(fifo, "wb") as f:
            f.write(data)

    thread = threading.Thread(target=feed)
    thread.start()
    try:
        # A FIFO's name says nothing: the format comes from --input-format.
        got = _loss(fifo, base, "--input-format", "kld", "--log-target", "-r", "sum")
    finally:
        thread.join(10)
    assert got == _loss(quant, base, "--log-target", "-r", "sum")


@settings(max_examples=30, deadline=None)
@given(
    dtype=st.sampled_from(["F16", "BF16", "F32", "F64"]),
    shape=st.lists(st.integers(0, 4), min_size=0, max_size=3),
    rows=st.integers(1, 5),
    padding=st.integers(0, 16),
)
def test_safetensors_blocks_are_the_whole_tensor(
    tmp_path_factory, dtype: str, shape: list[int], rows: int, padding: int
) -> None:
    """Any shape (scalars and empty axes too), any block size: the blocks joined are
    the whole read, which is the stored tensor (BF16 widened bit for bit); the tensor
    may sit anywhere after another one."""
    rng = np.random.default_rng(len(shape) * 31 + rows)
    values = rng.normal(size=shape) * 100
    if dtype == "BF16":
        raw, expected = bf16_bytes(values)
        expected = expected.reshape(shape)
    else:
        disk = {"F16": "<f2", "F32": "<f4", "F64": "<f8"}[dtype]
        expected = values.astype(disk)
        raw = expected.tobytes()
    path = write_safetensors(
        tmp_path_factory.mktemp("st") / "t.safetensors",
        {"pad": ("U8", [padding], b"\1" * padding), "t": (dtype, shape, raw)},
    )
    src = open_source(str(path), ReadOptions(key="t"))
    whole = src.read()
    assert whole.shape == tuple(shape) and whole.dtype == src.dtype
    assert np.array_equal(whole.view(f"u{whole.itemsize}"), expected.view(f"u{whole.itemsize}"))
    if shape:
        blocks = list(src.iter_chunks(rows))
        assert len(blocks) == -(-shape[0] // rows)  # none for an empty first axis, as .npy
        if blocks:
            assert np.array_equal(np.concatenate(blocks), whole, equal_nan=True)
    assert src.should_stream() == bool(shape)
