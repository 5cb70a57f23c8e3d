"""Build hook: compile the optional accelerator's sources (kldiv_cli/core/klkernel.c, the fused
chunk sums, softmaxkl.c, the KL of logits row by row, and cmpkernel.c, compare's rows) into one
library, klkernel.so.

With a C compiler (``$CC``, else Python's configured compiler, else ``cc``) the library is
built next to its source, so editable installs and in-tree test runs find it too, and put in
the wheel, which is then tagged for this platform. Without one (or if compiling fails) the
build warns and goes on: the wheel is pure Python and kldiv sums with its NumPy kernel, which
gives the same bits. ``python hatch_build.py`` builds the library in place (for a checkout).
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path
from typing import Any

#: Every kernel source, compiled into the one library.
SOURCES = (
    Path("kldiv_cli", "core", "klkernel.c"),
    Path("kldiv_cli", "core", "softmaxkl.c"),
    Path("kldiv_cli", "core", "cmpkernel.c"),
)
LIBRARY = Path("kldiv_cli", "core", "klkernel.so")
#: -ffp-contract=off: no fused multiply-add, so every variant rounds as the NumPy kernel does.
FLAGS = ["-O3", "-ffp-contract=off", "-fno-strict-aliasing", "-fPIC", "-shared"]


def compiler() -> list[str]:
    command = os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc"
    return shlex.split(command)[:1] or ["cc"]


def build(root: Path) -> tuple[Path | None, str]:
    """Compile the library beside its source (or, if that folder is read-only, in a
    temporary one); return its path, or None and why not."""
    folder = root / LIBRARY.parent
    if not os.access(folder, os.W_OK):
        folder = Path(tempfile.mkdtemp(prefix="kldiv-kernel-"))
    target = folder / LIBRARY.name
    partial = folder / f".{LIBRARY.name}.{os.getpid()}.tmp"
    command = [*compiler(), *FLAGS, "-o", str(partial), *(str(root / s) for s in SOURCES)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    except (OSError, subprocess.SubprocessError) as exc:
        return None, f"{command[0]}: {exc}"
    if done.returncode != 0:
        partial.unlink(missing_ok=True)
        lines = done.stderr.strip().splitlines() or [f"exit status {done.returncode}"]
        return None, f"{command[0]}: {lines[-1]}"
    os.replace(partial, target)
    return target, ""


try:
    from hatchling.builders.hooks.plugin.interface import BuildHookInterface
except ImportError:  # run as a script, outside a build
    BuildHookInterface = object  # type: ignore[assignment,misc]


class KernelHook(BuildHookInterface):  # type: ignore[misc,valid-type]
    """Builds the accelerator into wheels (and editable installs); a warning without it."""

    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if self.target_name != "wheel":
            return
        library, reason = build(Path(self.root))
        if library is None:
            self.app.display_warning(
                f"kldiv: no compiled kernel ({reason}); the NumPy kernel will be used "
                "(same results, slower)"
            )
            return
        build_data["pure_python"] = False
        build_data["infer_tag"] = True
        if version != "editable":
            build_data["force_include"][str(library)] = str(LIBRARY)


if __name__ == "__main__":
    built, why = build(Path(__file__).resolve().parent)
    print(built or f"not built: {why}", file=sys.stdout if built else sys.stderr)
    sys.exit(0 if built else 1)
