"""compare's slices (--positions, --last, --token-ids, --exclude-token-ids, --by): every
slice's statistics recomputed in NumPy from the per-row output, their names, gates on a
slice, and bad options."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

import numpy as np
import pytest

from .helpers import invoke

B, T, V = 4, 12, 40


@pytest.fixture(scope="module")
def batch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A padded batch: (B, T, V) logits of a base and a candidate, next-token ids with
    -100 on each sequence's padded tail, and a file of ids to slice on."""
    folder = tmp_path_factory.mktemp("slices")
    rng = np.random.default_rng(7)
    sharp = np.linspace(0.2, 4.0, B * T).reshape(B, T, 1)  # confidence varies across rows
    base = (rng.standard_normal((B, T, V)) * sharp).astype(np.float32)
    cand = (base + rng.standard_normal((B, T, V)) * 0.4).astype(np.float32)
    tokens = rng.integers(0, V, size=(B, T))
    for b, used in enumerate((12, 9, 7, 11)):
        tokens[b, used:] = -100
    np.save(folder / "base.npy", base)
    np.save(folder / "cand.npy", cand)
    np.save(folder / "tokens.npy", tokens)
    (folder / "eos.txt").write_text("3\n5 7,\n11\n")
    return folder


def per_row(folder: Path, *extra: object) -> dict[str, np.ndarray]:
    out = invoke(
        "compare",
        folder / "base.npy",
        folder / "cand.npy",
        "--tokens",
        folder / "tokens.npy",
        "--ignore-index",
        -100,
        "-o",
        "-",
        "-q",
        *extra,
    )
    assert out.exit_code == 0, out.stderr
    rows = list(csv.DictReader(io.StringIO(out.stdout)))
    flag = {"true": 1.0, "false": 0.0}
    return {
        k: np.array([flag[r[k]] if r[k] in flag else float(r[k]) for r in rows]) for k in rows[0]
    }


def check_block(got: dict, rows: dict[str, np.ndarray], mask: np.ndarray) -> None:
    kl = rows["kl"][mask]
    assert got["rows"] == int(mask.sum())
    if not mask.any():
        assert math.isnan(got["kl"]["mean"])
        return
    assert got["kl"]["mean"] == pytest.approx(math.fsum(kl) / len(kl), rel=1e-12)
    assert got["kl"]["p99"] == pytest.approx(float(np.quantile(kl, 0.99)), rel=1e-12)
    assert got["js"]["max"] == pytest.approx(rows["js"][mask].max(), rel=1e-12)
    assert got["top1_agreement"]["value"] == pytest.approx(rows["top1_agree"][mask].mean())
    assert got["topk_agreement"]["5"]["value"] == pytest.approx(
        (rows["top1_rank"][mask] <= 5).mean()
    )
    assert got["kl"]["frac_above"]["0.1"] == pytest.approx((kl > 0.1).mean())
    dp = rows["delta_p"][mask]
    assert got["delta_p"]["mean"] == pytest.approx(math.fsum(dp) / len(dp), rel=1e-9, abs=1e-15)


def test_every_slice_recomputed(batch: Path) -> None:
    options = [
        "--positions",
        "2:7",
        "--last",
        3,
        "--token-ids",
        "@" + str(batch / "eos.txt"),
        "--exclude-token-ids",
        "3,5,7,11",
        "--by",
        "confidence",
        "--by",
        "position:3",
    ]
    rows = per_row(batch)
    out = invoke(
        "compare",
        batch / "base.npy",
        batch / "cand.npy",
        "--tokens",
        batch / "tokens.npy",
        "--ignore-index",
        -100,
        "-f",
        "json",
        *options,
    )
    assert out.exit_code == 0, out.stderr
    doc = json.loads(out.stdout)
    seq, pos, tok = rows["sequence"], rows["position"], rows["token"]
    last = np.zeros(len(seq), dtype=bool)
    for s in np.unique(seq):
        idx = np.flatnonzero(seq == s)
        last[idx[np.argsort(pos[idx])][-3:]] = True
    eos = np.isin(tok, [3, 5, 7, 11])
    conf = rows["reference_top1_prob"]
    edges = [0, 0.2, 0.4, 0.6, 0.8, 1.0]
    expected = {
        "positions 2:7": (pos >= 2) & (pos < 7),
        "last 3": last,
        "token-ids @eos.txt": eos,
        "exclude-token-ids 3,5,7,11": ~eos,
    }
    for i in range(5):
        upper = conf <= 1.0 if i == 4 else conf < edges[i + 1]
        expected[f"confidence {edges[i]:g}-{edges[i + 1]:g}"] = (conf >= edges[i]) & upper
    lo, span = int(pos.min()), int(pos.max() - pos.min() + 1)
    for i in range(3):
        a, b = lo + i * span // 3, lo + (i + 1) * span // 3
        expected[f"position {i + 1}/3"] = (pos >= a) & (pos < b)
    assert [s["name"] for s in doc["slices"]] == list(expected)
    assert (
        sum(s["rows"] for s in doc["slices"] if s["name"].startswith("confidence")) == doc["rows"]
    )
    for piece in doc["slices"]:
        check_block(piece, rows, expected[piece["name"]])
    assert doc["slices"][-1]["to"] == int(pos.max()) + 1
    # The same numbers as CSV rows named as the gates name them.
    table = invoke(
        "compare",
        batch / "base.npy",
        batch / "cand.npy",
        "--tokens",
        batch / "tokens.npy",
        "--ignore-index",
        -100,
        "-f",
        "csv",
        *options,
    )
    values = dict(csv.reader(io.StringIO(table.stdout)))
    assert float(values["slices[last 3].kl.mean"]) == pytest.approx(
        doc["slices"][1]["kl"]["mean"], rel=1e-12
    )
    plain = invoke(
        "compare",
        batch / "base.npy",
        batch / "cand.npy",
        "--tokens",
        batch / "tokens.npy",
        "--ignore-index",
        -100,
        "--last",
        3,
        "-f",
        "plain",
    )
    assert "###### Slice last 3:" in plain.stdout and plain.stdout.count("Mean    KLD:") == 2


def test_gate_on_a_slice(batch: Path) -> None:
    args = ["compare", batch / "base.npy", batch / "cand.npy", "--last", 2, "-f", "json"]
    doc = json.loads(invoke(*args).stdout)
    value = doc["slices"][0]["kl"]["p99"]
    out = invoke(*args, "--fail-above", f"slices[last 2].kl.p99={value / 2}")
    assert out.exit_code == 1
    assert f"kldiv: check failed: slices[last 2].kl.p99 = {value:.6g} is above" in out.stderr
    assert json.loads(out.stdout)["verdict"] == "fail"
    assert invoke(*args, "--fail-above", f"slices[last 2].kl.p99={value * 2}").exit_code == 0


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--positions", "7:2"], "B must be above A"),
        (["--positions", "x"], "--positions takes A:B"),
        (["--last", 0], "--last must be at least 1"),
        (["--by", "position:0"], "--by takes confidence or position:N"),
        (["--token-ids", "2,x"], "'x' is not a token id"),
        (["--token-ids", "5"], "need the tokens (--tokens FILE)"),
        (["--fail-above", "slices[last 9].kl.p99=1"], "unknown statistic 'slices[last 9].kl.p99'"),
    ],
)
def test_bad_slice_options(batch: Path, extra: list, message: str) -> None:
    out = invoke("compare", batch / "base.npy", batch / "cand.npy", *extra)
    assert out.exit_code == 2
    assert out.stderr.count("\n") == 1 and message in out.stderr, out.stderr


def test_positions_need_sequences(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    np.save(tmp_path / "a.npy", rng.standard_normal((20, 8)))
    np.save(tmp_path / "b.npy", rng.standard_normal((20, 8)))
    out = invoke("compare", tmp_path / "a.npy", tmp_path / "b.npy", "--last", 4)
    assert out.exit_code == 2 and "need positions: a 3-D input" in out.stderr
    # --by confidence needs no positions.
    assert (
        invoke("compare", tmp_path / "a.npy", tmp_path / "b.npy", "--by", "confidence").exit_code
        == 0
    )


def test_html_report(batch: Path, tmp_path: Path) -> None:
    """--html: one self-contained page (no script, no URL, the CSP), names from data
    escaped, a figure per view, the size plot with --size."""
    hostile = tmp_path / "<img src=x onerror=alert(1)>.npy"
    hostile.write_bytes((batch / "cand.npy").read_bytes())
    page = tmp_path / "report.html"
    out = invoke(
        "compare",
        batch / "base.npy",
        batch / "cand.npy",
        hostile,
        "--label",
        "Q8",
        "--label",
        "<b>Q4</b>",
        "--tokens",
        batch / "tokens.npy",
        "--ignore-index",
        -100,
        "--html",
        page,
        "--size",
        "Q8=8e9",
        "--size",
        "<b>Q4</b>=4e9",
        "--last",
        3,
        "--top",
        2,
    )
    assert out.exit_code == 0, out.stderr
    text = page.read_text()
    assert "Content-Security-Policy" in text and "default-src 'none'" in text
    for bad in ("<script", "://", "<img", "<b>Q4"):
        assert bad not in text, bad
    assert "&lt;b&gt;Q4&lt;/b&gt;" in text and "&lt;img src=x" in text
    assert text.count("<svg") == 4  # CDF, confidence, position, size
    assert "Mean KL against size" in text and "last 3" in text and "Paired differences" in text
    doc = json.loads(
        invoke(
            "compare",
            batch / "base.npy",
            batch / "cand.npy",
            "--tokens",
            batch / "tokens.npy",
            "--ignore-index",
            -100,
            "-f",
            "json",
        ).stdout
    )
    assert f"<td class=num>{doc['kl']['mean']:.6g}</td>" in text


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--html", "r.txt"], "--html writes .html or .htm files"),
        (["--size", "Q=1"], "--size labels the mean-KL-against-size plot of --html"),
        (["--html", "r.html", "--size", "nope=1"], "no candidate has that label"),
        (["--html", "r.html", "--size", "cand.npy=-1"], "--size takes LABEL=BYTES"),
    ],
)
def test_bad_html_options(batch: Path, extra: list, message: str) -> None:
    out = invoke("compare", batch / "base.npy", batch / "cand.npy", *extra)
    assert out.exit_code == 2 and message in out.stderr, out.stderr
    assert not Path("r.html").exists()
