"""The numeric core: torch's KL-divergence loss, its exact sums and the softmax family.

No I/O and no printing here. Layers, lowest first: :mod:`.pointwise` (one term,
torch's dtypes and broadcasting: the pointwise loss is torch's), :mod:`.engine` (every
aggregate exact: float64 terms from exactly widened operands, fixed-chunk float64 partial
sums, their exact combine, and ``engine.row_sums`` per row), :mod:`.kl` (reductions,
gradients, ``KLDivLoss``), :mod:`.transforms` (softmax, log-softmax; ``dtype=np.float64``
for aggregates).

Beside them, each with its maths in its docstrings: :mod:`.half` (float16 widened
exactly through its bits), :mod:`.stats` (mean ± standard error and percentiles, as
``compare`` reports them), :mod:`.compare` (per-row KL both ways, JS, TV, top-1 between
two models), :mod:`.estimators` (the k1/k2/k3 KL estimators of RL trainers) and
:mod:`.gaussian` (the closed-form KL of diagonal Gaussians) and :mod:`.twosample` (drift's
two-sample tests and distances, with SciPy's numbers and without SciPy).
"""

from typing import TYPE_CHECKING

from .kl import REDUCTIONS, KLDivLoss, finish_reduction, kl_div, kl_div_grad, resolve_reduction
from .pointwise import DTypeError, broadcast_shape, pointwise, result_dtype

if TYPE_CHECKING:
    from .transforms import TRANSFORMS, apply_transform, log_softmax, softmax

__all__ = [
    "REDUCTIONS",
    "TRANSFORMS",
    "DTypeError",
    "KLDivLoss",
    "apply_transform",
    "broadcast_shape",
    "finish_reduction",
    "kl_div",
    "kl_div_grad",
    "log_softmax",
    "pointwise",
    "resolve_reduction",
    "result_dtype",
    "softmax",
]


def __getattr__(name: str) -> object:
    """The transforms' names, their module loaded when first asked for: a job without a
    transform never compiles it (no bytecode cache is the worst case of a small job)."""
    if name not in ("TRANSFORMS", "apply_transform", "log_softmax", "softmax"):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from . import transforms

    value = getattr(transforms, name)
    globals()[name] = value
    return value
