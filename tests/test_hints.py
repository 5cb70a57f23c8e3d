"""Messages name the options of the command that printed them, and a few inputs that are
refused elsewhere are accepted where they make sense (a boolean mask)."""

from __future__ import annotations

import numpy as np

from .helpers import invoke


def _npz(tmp_path, name="many.npz"):
    path = tmp_path / name
    np.savez(path, a=np.full((2, 3), 1 / 3), b=np.full((2, 3), 1 / 3))
    return path


def test_npz_hint_names_the_commands_own_key_option(tmp_path) -> None:
    many = _npz(tmp_path)
    t = tmp_path / "t.npy"
    np.save(t, np.full((2, 3), 1 / 3))
    inspect = invoke("inspect", many)
    assert inspect.exit_code == 2
    assert "choose one with --key" in inspect.stderr and "--input-key" not in inspect.stderr
    compute = invoke("compute", many, t)
    assert "choose one with --input-key" in compute.stderr
    target = invoke("compute", t, many)
    assert "choose one with --target-key" in target.stderr


def test_unknown_extension_hint_names_the_commands_own_format_option(tmp_path) -> None:
    odd = tmp_path / "data.xyz"
    odd.write_bytes(b"1,2\n")
    inspect = invoke("inspect", odd)
    assert inspect.exit_code == 2 and "--file-format" in inspect.stderr
    assert "--input-format" not in inspect.stderr
    drift = invoke("drift", odd, odd)
    assert drift.exit_code == 2 and "-format" not in drift.stderr


def test_bfloat16_npy_is_one_line_that_says_what_to_do(tmp_path) -> None:
    raw = tmp_path / "bf16.npy"
    np.save(raw, np.zeros((2, 3), dtype="V2"))
    out = invoke("inspect", raw)
    assert out.exit_code == 2 and out.stderr.count("\n") == 1
    assert "bfloat16" in out.stderr and ".safetensors" in out.stderr


def test_a_boolean_mask_is_read_as_zeros_and_ones(tmp_path) -> None:
    rng = np.random.default_rng(0)
    logp = np.log(rng.uniform(0.1, 0.9, (3, 5)))
    ref = logp + rng.normal(0, 0.05, logp.shape)
    mask = np.ones((3, 5), dtype=bool)
    mask[1, 3:] = False
    for name, a in (("logp", logp), ("ref", ref), ("mask", mask), ("mask01", mask.astype(np.int8))):
        np.save(tmp_path / f"{name}.npy", a)
    args = ("estimate", tmp_path / "logp.npy", tmp_path / "ref.npy", "-f", "json", "--mask")
    boolean = invoke(*args, tmp_path / "mask.npy")
    integer = invoke(*args, tmp_path / "mask01.npy")
    assert boolean.exit_code == integer.exit_code == 0, boolean.stderr
    import json

    a, b = json.loads(boolean.stdout), json.loads(integer.stdout)
    assert {k: a[k] for k in ("k1", "k2", "k3", "abs", "tokens")} == {
        k: b[k] for k in ("k1", "k2", "k3", "abs", "tokens")
    }
    assert a["tokens"] == 13
    # Booleans are still not numbers for a distribution.
    refused = invoke("compute", tmp_path / "mask.npy", tmp_path / "mask.npy")
    assert refused.exit_code == 2 and "booleans" in refused.stderr


def test_one_column_target_against_a_wider_input_warns_naming_target_labels(tmp_path) -> None:
    x = np.log(np.full((64, 10), 0.1))
    labels = np.arange(64).reshape(-1, 1) % 10
    np.save(xp := tmp_path / "x.npy", x)
    np.save(lp := tmp_path / "y.npy", labels.astype(np.float64))
    out = invoke("compute", xp, lp, "-r", "batchmean")
    assert out.exit_code == 0
    assert "--target-labels" in out.stderr and "one column" in out.stderr
    fixed = invoke("compute", xp, lp, "-r", "batchmean", "--target-labels")
    assert fixed.exit_code == 0 and "one column" not in fixed.stderr


def test_the_mean_warning_is_not_printed_where_rows_are_the_answer(tmp_path) -> None:
    t = np.full((4, 3), 1 / 3)
    np.save(xp := tmp_path / "x.npy", np.log(t))
    np.save(tp := tmp_path / "t.npy", t)
    assert "'mean'" in invoke("compute", xp, tp).stderr
    for extra in (("--per-row",), ("--top", "2")):
        out = invoke("compute", xp, tp, *extra)
        assert out.exit_code == 0 and "'mean'" not in out.stderr, extra
