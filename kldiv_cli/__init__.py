"""kldiv: PyTorch's KL-divergence loss for data files, without PyTorch.

The public API is imported lazily so that ``import kldiv_cli`` (and the CLI's
start-up) does not pay for NumPy until a function is used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._version import __version__

if TYPE_CHECKING:
    from .core import KLDivLoss, kl_div, kl_div_grad, log_softmax, softmax

__all__ = ["KLDivLoss", "__version__", "kl_div", "kl_div_grad", "log_softmax", "softmax"]

_LAZY = {
    "KLDivLoss": "core",
    "kl_div": "core",
    "kl_div_grad": "core",
    "log_softmax": "core",
    "softmax": "core",
}


def main(argv: list[str] | None = None) -> None:
    """The ``kldiv`` command. ``--version`` answers before Typer is even imported:
    pipelines ask for it often."""
    import sys

    if (sys.argv[1:] if argv is None else argv) in (["--version"], ["-V"]):
        sys.stdout.write(f"{__version__}\n")
        sys.exit(0)
    from .cli import main as cli_main

    cli_main(argv)


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'kldiv_cli' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
