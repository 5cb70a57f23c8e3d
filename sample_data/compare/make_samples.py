"""Regenerate the compare samples (deterministic): python sample_data/compare/make_samples.py

A base model's logits and a "quantized" copy (base + small noise, a few positions
badly off), 6 chunks of a 32-token context over a 48-token vocabulary, written as:

* ``base_logits.npy`` / ``quant_logits.npy``: float32, one row per scored position;
* ``tokens.npy``: the next token of each row (int64);
* ``base.kld`` / ``quant.kld``: llama.cpp ``--kl-divergence-base`` files of the same
  positions (the tokens inside), quantised as ``llama-perplexity`` does;
* ``base.safetensors`` / ``quant.safetensors``: the logits as one BF16 tensor, ``logits``.
"""

import json
import math
import struct
from pathlib import Path

import numpy as np

HERE = Path(__file__).parent
N_CTX, N_CHUNK, N_VOCAB = 32, 6, 48


def kld_row(logits: np.ndarray) -> bytes:
    """llama.cpp's log_softmax(n_vocab, logits, log_prob, tok), in float32."""
    x = logits.astype(np.float32)
    max_logit = np.float32(x.max())
    min_logit = np.float32(max(np.float32(x.min()), np.float32(max_logit - 16)))
    sum_exp = math.fsum(np.exp(x - max_logit).astype(np.float64).tolist())
    log_sum_exp = np.float32(math.log(sum_exp))
    min_log_prob = np.float32(min_logit - max_logit - log_sum_exp)
    scale = np.float32((max_logit - min_logit) / np.float32(65535))
    q = np.zeros(len(x), dtype="<u2")
    if scale:
        q = np.where(x > min_logit, np.rint(np.float32(1 / scale) * (x - min_logit)), 0)
    pad = b"\0\0" if len(x) % 2 else b""
    return struct.pack("<ff", scale, min_log_prob) + q.astype("<u2").tobytes() + pad


def write_kld(path: Path, logits: np.ndarray, text: np.ndarray) -> None:
    """``logits``: (N_CHUNK, N_CTX, N_VOCAB); positions N_CTX/2 … N_CTX-2 are stored."""
    parts = [
        b"_logits_",
        struct.pack("<iii", N_CTX, N_VOCAB, N_CHUNK),
        text.astype("<i4").tobytes(),
    ]
    for c in range(N_CHUNK):
        parts += [kld_row(logits[c, j]) for j in range(N_CTX // 2, N_CTX - 1)]
    path.write_bytes(b"".join(parts))


def write_bf16_safetensors(path: Path, logits: np.ndarray) -> None:
    bits = (logits.astype("<f4").view("<u4") >> 16).astype("<u2")
    header = {
        "logits": {"dtype": "BF16", "shape": list(logits.shape), "data_offsets": [0, bits.nbytes]}
    }
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    path.write_bytes(struct.pack("<Q", len(text)) + text + bits.tobytes())


def main() -> None:
    rng = np.random.default_rng(10)
    text = rng.integers(0, N_VOCAB, size=(N_CHUNK, N_CTX))
    base = rng.normal(0, 2.0, (N_CHUNK, N_CTX, N_VOCAB)).astype(np.float32)
    # The model mostly knows the next token.
    nxt = np.concatenate([text[:, 1:], text[:, :1]], axis=1)
    np.put_along_axis(base, nxt[..., None], np.take_along_axis(base, nxt[..., None], 2) + 5, 2)
    quant = (base + rng.normal(0, 0.15, base.shape)).astype(np.float32)
    quant[2, 20] = rng.normal(0, 2.0, N_VOCAB)  # one position the quantized model gets wrong
    first = N_CTX // 2
    rows = slice(first, N_CTX - 1)
    np.save(HERE / "base_logits.npy", base[:, rows].reshape(-1, N_VOCAB))
    np.save(HERE / "quant_logits.npy", quant[:, rows].reshape(-1, N_VOCAB))
    np.save(HERE / "tokens.npy", text[:, first + 1 :].reshape(-1).astype(np.int64))
    write_kld(HERE / "base.kld", base, text)
    write_kld(HERE / "quant.kld", quant, text)
    write_bf16_safetensors(HERE / "base.safetensors", base[:, rows].reshape(-1, N_VOCAB))
    write_bf16_safetensors(HERE / "quant.safetensors", quant[:, rows].reshape(-1, N_VOCAB))


if __name__ == "__main__":
    main()
