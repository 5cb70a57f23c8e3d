"""drift and profile on files of several arrays (.npz, safetensors): ``--key`` chooses
one for both sides, ``--reference-key``/``--current-key`` one side's; without one the
file is refused naming its arrays and the option."""

from __future__ import annotations

import json

import numpy as np
import pytest

from .helpers import invoke
from .test_gaussian import write_safetensors


@pytest.fixture(scope="module")
def archives(tmp_path_factory):
    """Reference and current: features x (shifted in the current data), y and z, as
    .npz and safetensors, and x alone as .npy (what --key x must read)."""
    folder = tmp_path_factory.mktemp("keys")
    rng = np.random.default_rng(11)
    ref = {k: rng.normal(size=(400, 2)).astype(np.float32) for k in "xyz"}
    cur = {k: rng.normal(size=(300, 2)).astype(np.float32) for k in "xyz"}
    cur["x"][:, 0] += 1.5
    files = {}
    for side, arrays in (("ref", ref), ("cur", cur)):
        np.savez(npz := folder / f"{side}.npz", **arrays)
        write_safetensors(st := folder / f"{side}.safetensors", arrays)
        for key, array in arrays.items():
            np.save(npy := folder / f"{side}_{key}.npy", array)
            files[f"{side}_{key}"] = npy
        files[side], files[f"{side}_st"] = npz, st
    return files


def drift_json(*args: object) -> tuple[int, list[dict], str]:
    out = invoke("drift", *args, "--format", "json")
    columns = json.loads(out.stdout)["columns"] if out.stdout else []
    return out.exit_code, columns, out.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "cur.npz: holds 3 arrays (x, y, z); choose one with --key (or --current-key)"),
        (
            ("--current-key", "x"),
            "ref.npz: holds 3 arrays (x, y, z); choose one with --key (or --reference-key)",
        ),
        (("--key", "w"), "cur.npz: has no array 'w'; it holds: x, y, z"),
    ],
)
def test_a_file_of_several_arrays_needs_a_key(archives, args, message) -> None:
    out = invoke("drift", archives["ref"], archives["cur"], *args)
    assert out.exit_code == 2 and out.stdout == ""
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("kldiv: error: ") and lines[0].endswith(message)


def test_safetensors_and_profile_name_the_option_too(archives) -> None:
    out = invoke("drift", archives["ref_st"], archives["cur_st"])
    assert out.exit_code == 2 and out.stdout == ""
    assert out.stderr.strip().endswith(
        "cur.safetensors: holds 3 tensors (x, y, z); choose one with --key (or --current-key)"
    )
    out = invoke("profile", archives["ref"])
    assert out.exit_code == 2 and out.stdout == ""
    assert out.stderr.strip().endswith("ref.npz: holds 3 arrays (x, y, z); choose one with --key")
    assert invoke("profile", archives["ref"], "--key", "y").exit_code == 0


def test_the_chosen_array_is_read_as_its_own_file_would_be(archives) -> None:
    code, alone, _ = drift_json(archives["ref_x"], archives["cur_x"])
    assert code == 1 and [c["state"] for c in alone] == ["drift", "ok"]
    for ref, cur, args in (
        ("ref", "cur", ("--key", "x")),
        ("ref_st", "cur_st", ("--key", "x")),
        ("ref", "cur_st", ("--key", "y", "--current-key", "x", "--reference-key", "x")),
    ):
        code, columns, err = drift_json(archives[ref], archives[cur], *args)
        assert code == 1, err
        keep = ("name", "state", "value", "n_reference", "n_current")
        assert [{k: c[k] for k in keep} for c in columns] == [
            {k: c[k] for k in keep} for c in alone
        ]
    # One key per side: x of the reference against y of the current drifts the same way
    # as the two .npy files would.
    _, mixed, _ = drift_json(
        archives["ref"], archives["cur"], "--reference-key", "x", "--current-key", "y"
    )
    _, files, _ = drift_json(archives["ref_x"], archives["cur_y"])
    assert [c["value"] for c in mixed] == [c["value"] for c in files]
