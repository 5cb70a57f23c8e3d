"""Odd but valid files give the right number."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from kldiv_cli import kl_div

X = np.log(np.array([[0.2, 0.3, 0.5], [0.6, 0.3, 0.1], [1 / 3, 1 / 3, 1 / 3]]))
T = np.array([[0.25, 0.25, 0.5], [0.5, 0.25, 0.25], [0.1, 0.2, 0.7]])


def expected(x=X, t=T, reduction="sum"):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(kl_div(x, t, reduction))


def run_sum(run_cli, *args):
    r = run_cli("compute", *args, "-r", "sum")
    assert r.exit_code == 0, r.stderr
    return float(r.stdout)


def test_fortran_order_npy(run_cli, tmp_path) -> None:
    np.save(x := tmp_path / "x.npy", np.asfortranarray(X))
    np.save(t := tmp_path / "t.npy", np.asfortranarray(T))
    assert run_sum(run_cli, x, t) == expected()


def test_big_endian_npy(run_cli, tmp_path) -> None:
    np.save(x := tmp_path / "x.npy", X.astype(">f8"))
    np.save(t := tmp_path / "t.npy", T.astype(">f4"))
    assert math.isclose(run_sum(run_cli, x, t), expected(X, T.astype(np.float32)), rel_tol=1e-12)


def test_crlf_and_bom(run_cli, tmp_path) -> None:
    np.save(x := tmp_path / "x.npy", X)
    text = "a,b,c\r\n" + "".join(",".join(str(float(v)) for v in row) + "\r\n" for row in T)
    (t := tmp_path / "t.csv").write_bytes(b"\xef\xbb\xbf" + text.encode())
    assert run_sum(run_cli, x, t) == expected()


def test_quoted_and_scientific_numbers(run_cli, tmp_path) -> None:
    np.save(x := tmp_path / "x.npy", X)
    rows = ['"2.5e-1","25E-2","5.0e-1"', '"0.5",2.5e-1,0.25', "1e-1,2e-1,7e-1"]
    (t := tmp_path / "t.csv").write_text("\n".join(rows) + "\n")
    assert math.isclose(run_sum(run_cli, x, t), expected(), rel_tol=1e-12)


def test_float16(run_cli, tmp_path) -> None:
    np.save(x := tmp_path / "x.npy", X.astype(np.float16))
    np.save(t := tmp_path / "t.npy", T.astype(np.float16))
    r = run_cli("compute", x, t, "-r", "sum", "-f", "json")
    assert r.exit_code == 0
    assert '"dtype": "float16"' in r.stdout
    assert float(r.stdout.split('"loss": ')[1].split(",")[0]) == float(
        expected(X.astype(np.float16), T.astype(np.float16))
    )


@pytest.mark.parametrize("rows", [slice(0, 1), slice(None)])
def test_single_row_and_single_column(run_cli, tmp_path, rows) -> None:
    x, t = X[rows, :1], T[rows, :1]
    np.savetxt(xp := tmp_path / "x.csv", x, delimiter=",")
    np.savetxt(tp := tmp_path / "t.csv", t, delimiter=",")
    # One column summed is a KL only when named: chosen by default, it is refused.
    named = ("--input-columns", "0", "--target-columns", "0")
    assert math.isclose(run_sum(run_cli, xp, tp, *named), expected(x, t), rel_tol=1e-12)
    r = run_cli("compute", xp, tp, "-r", "sum")
    assert r.exit_code == 2
    assert "1 class (column '0' of" in r.stderr and "--input-columns" in r.stderr


def test_tsv_and_custom_delimiter(run_cli, tmp_path) -> None:
    np.save(x := tmp_path / "x.npy", X)
    np.savetxt(t := tmp_path / "t.tsv", T, delimiter="\t")
    assert math.isclose(run_sum(run_cli, x, t), expected(), rel_tol=1e-12)
    np.savetxt(t2 := tmp_path / "t.csv", T, delimiter=";")
    assert math.isclose(run_sum(run_cli, x, t2, "--delimiter", ";"), expected(), rel_tol=1e-12)


def test_text_id_column_is_skipped(run_cli, tmp_path) -> None:
    np.save(x := tmp_path / "x.npy", X)
    lines = ["id,a,b,c"] + [
        f"s{i}," + ",".join(str(float(v)) for v in row) for i, row in enumerate(T)
    ]
    (t := tmp_path / "t.csv").write_text("\n".join(lines) + "\n")
    assert math.isclose(run_sum(run_cli, x, t), expected(), rel_tol=1e-12)


def test_missing_values_as_nan_on_request(run_cli, tmp_path) -> None:
    np.save(x := tmp_path / "x.npy", X)
    (t := tmp_path / "t.csv").write_text("a,b,c\n0.25,,0.5\n0.5,0.25,0.25\n0.1,0.2,0.7\n")
    r = run_cli("compute", x, t, "-r", "none", "--missing", "nan", "-o", tmp_path / "out.npy")
    assert r.exit_code == 0
    out = np.load(tmp_path / "out.npy")
    assert np.isnan(out[0, 1]) and np.isfinite(out[1:]).all()


def test_npz_key_and_integer_arrays(run_cli, tmp_path) -> None:
    np.savez(z := tmp_path / "both.npz", x=X, t=T, counts=np.array([[1, 1, 2]] * 3))
    r = run_cli("compute", z, z, "--input-key", "x", "--target-key", "t", "-r", "sum")
    assert float(r.stdout) == expected()
    r = run_cli("compute", z, z, "--input-key", "x", "--target-key", "counts", "-r", "sum")
    assert r.exit_code == 0 and "do not sum to 1" in r.stderr


def test_path_with_shell_characters_is_used_as_given(run_cli, tmp_path) -> None:
    odd = tmp_path / "$(touch pwned) `x` ; *.npy"
    np.save(odd, X)
    np.save(t := tmp_path / "t.npy", T)
    assert run_sum(run_cli, odd, t) == expected()
    assert not (tmp_path / "pwned").exists()
