"""kldiv: PyTorch's KL-divergence loss for data files, without PyTorch.

The public API: the maths on arrays (``kl_div``, ``kl_div_grad``, ``KLDivLoss``,
``softmax``, ``log_softmax``, ``kl_estimate``, ``gaussian_kl``) and every command on
files (``compute``, ``compare``, ``drift``, ``profile``, ``estimate``, ``gaussian``,
``inspect``: see :mod:`kldiv_cli.api` and docs/api.md), each returning the typed result
the command renders. It is imported lazily so that ``import kldiv_cli`` (and the CLI's start-up)
does not pay for NumPy until a function is used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._version import __version__

if TYPE_CHECKING:
    from .api import compare, compute, drift, estimate, gaussian, inspect, profile
    from .core import KLDivLoss, kl_div, kl_div_grad, log_softmax, softmax
    from .core.estimators import kl_estimate
    from .core.gaussian import gaussian_kl

__all__ = [
    "KLDivLoss",
    "__version__",
    "compare",
    "compute",
    "drift",
    "estimate",
    "gaussian",
    "gaussian_kl",
    "kl_div",
    "kl_div_grad",
    "inspect",
    "kl_estimate",
    "log_softmax",
    "profile",
    "softmax",
]

_LAZY = {
    "KLDivLoss": "core",
    "kl_div": "core",
    "kl_div_grad": "core",
    "log_softmax": "core",
    "softmax": "core",
    "kl_estimate": "core.estimators",
    "gaussian_kl": "core.gaussian",
    "compare": "api",
    "compute": "api",
    "drift": "api",
    "estimate": "api",
    "gaussian": "api",
    "inspect": "api",
    "profile": "api",
}


def main(argv: list[str] | None = None) -> None:
    """The ``kldiv`` command. ``--version`` answers before Typer is even imported:
    pipelines ask for it often. Ctrl-C while the CLI is still loading is exit 130 and
    one line, like Ctrl-C at any later moment."""
    import sys

    try:
        if (sys.argv[1:] if argv is None else argv) in (["--version"], ["-V"]):
            _print_version()
        from .cli import main as cli_main
    except KeyboardInterrupt:
        if sys.stderr is not None:  # None: descriptor 2 closed (2>&-)
            sys.stderr.write("kldiv: error: interrupted\n")
        sys.exit(130)
    cli_main(argv)


def _print_version() -> None:
    """The version on stdout: exit 0, or 2 and one line when stdout cannot take it
    (closed with ``>&-``, a full disk); a closed pipe is exit 0, quietly."""
    import os
    import sys

    try:
        if sys.stdout is None:  # descriptor 1 closed when Python started
            raise OSError(9, "is closed; leave stdout open")
        sys.stdout.write(f"{__version__}\n")
        sys.stdout.flush()
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
        sys.exit(0)
    except OSError as exc:
        if sys.stderr is not None:
            reason = (exc.strerror or "cannot write").lower()
            sys.stderr.write(f"kldiv: error: stdout: {reason}\n")
        if sys.stdout is not None:
            os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
        sys.exit(2)
    sys.exit(0)


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'kldiv_cli' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
