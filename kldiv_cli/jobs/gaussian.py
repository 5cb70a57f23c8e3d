"""The ``gaussian`` job: the closed-form KL of a VAE's diagonal Gaussian posterior.

MU and LOGVAR come from two files, or from one table (``--mu-columns`` and
``--logvar-columns``) or one .npz (two keys); the prior is N(0, 1) or given as files.
Computes with :mod:`kldiv_cli.core.gaussian`. Never prints.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..core.gaussian import (
    FREE_BITS_REDUCTIONS,
    GAUSSIAN_REDUCTIONS,
    SCALE_PARAMS,
    active_units,
    gaussian_kl,
)
from ..errors import InputError, UsageError
from ..io.sources import ReadOptions, Source, open_source
from .positions import first_position

__all__ = ["GaussianRequest", "GaussianResult", "gaussian"]


@dataclass(frozen=True)
class GaussianRequest:
    mu: str
    #: None: the same file as ``mu`` (two column groups or two .npz keys).
    logvar: str | None = None
    mu_options: ReadOptions = ReadOptions()
    logvar_options: ReadOptions = ReadOptions()
    prior_mu: str | None = None
    prior_logvar: str | None = None
    prior_options: ReadOptions = ReadOptions()
    scale_param: str = "logvar"
    reduction: str = "batch-mean"
    free_bits: float | None = None
    output: str | None = None

    @property
    def logvar_path(self) -> str:
        return self.mu if self.logvar is None else self.logvar

    def validate(self) -> None:
        if self.scale_param not in SCALE_PARAMS:
            raise UsageError(
                f"unknown --scale-param {self.scale_param!r}; choose one of {', '.join(SCALE_PARAMS)}"
            )
        if self.reduction not in GAUSSIAN_REDUCTIONS:
            raise UsageError(
                f"unknown reduction {self.reduction!r}; "
                f"choose one of {', '.join(GAUSSIAN_REDUCTIONS)}"
            )
        if self.free_bits is not None:
            if math.isnan(self.free_bits):
                raise UsageError("--free-bits must be a number, got nan")
            if self.reduction not in FREE_BITS_REDUCTIONS:
                raise UsageError(
                    f"--free-bits clamps each dimension's batch-mean KL: use -r "
                    f"{', '.join(FREE_BITS_REDUCTIONS)}, not {self.reduction}"
                )
        if self.logvar is None and (
            self.logvar_options.columns is None and self.logvar_options.key is None
        ):
            raise UsageError(
                "give LOGVAR, or --mu-columns and --logvar-columns (one table), "
                "or --mu-key and --logvar-key (one .npz)"
            )
        if self.logvar is None and (
            (self.logvar_options.columns is None) != (self.mu_options.columns is None)
            or (self.logvar_options.key is None) != (self.mu_options.key is None)
        ):
            raise UsageError(
                "MU and LOGVAR from one file need both --mu-columns and --logvar-columns "
                "(or both --mu-key and --logvar-key)"
            )
        stdin = [p for p in (self.mu, self.logvar, self.prior_mu, self.prior_logvar) if p == "-"]
        if len(stdin) > 1:
            raise UsageError("only one input can be '-' (stdin)")
        if self.output is not None and self.output != "-":
            from ..io.writers import guard

            inputs = [self.mu, self.logvar_path, self.prior_mu or "", self.prior_logvar or ""]
            guard([self.output], inputs)


@dataclass
class GaussianResult:
    request: GaussianRequest
    #: A float for batch-mean and sum, an array for none, per-dim and per-row.
    kl: float | np.ndarray
    kl_free_bits: float | np.ndarray | None
    #: Latent dimensions with Var_batch(μ) > 0.01 (reported with per-dim).
    active_units: int
    batch: int
    latent_dims: int
    mu: dict[str, Any]
    logvar: dict[str, Any]
    prior: dict[str, Any]


def _read(path: str, options: ReadOptions, stdin: bytes | None) -> tuple[np.ndarray, Source]:
    """The whole array and its source (.safetensors too)."""
    source = open_source(path, options, stdin)
    return source.read(), source


def _check_finite(a: np.ndarray, label: str, what: str) -> None:
    nan = np.isnan(a)
    if nan.any():
        at = first_position(nan, ("row", "column", "axis 2"))
        raise InputError(label, f"{what}: NaN at {at or 'the value'}")


def gaussian(request: GaussianRequest, stdin: bytes | None = None) -> GaussianResult:
    """Run the job: read MU, LOGVAR (and the prior), check them, compute the KL."""
    request.validate()
    mu, smu = _read(request.mu, request.mu_options, stdin)
    lv, slv = _read(request.logvar_path, request.logvar_options, stdin)
    if mu.shape != lv.shape:
        raise InputError(
            f"{smu.label} and {slv.label}",
            f"shapes do not match: MU {tuple(mu.shape)}, LOGVAR {tuple(lv.shape)}",
        )
    _check_finite(mu, smu.label, "MU")
    _check_finite(lv, slv.label, request.scale_param.upper())
    if request.scale_param in ("std", "var") and (lv < 0).any():
        where = np.argwhere(lv < 0)[0]
        raise InputError(
            slv.label,
            f"--scale-param {request.scale_param}: negative {request.scale_param} "
            f"{float(lv[tuple(where)]):g} at {', '.join(str(int(i)) for i in where)} "
            "(is it a log-variance? try --scale-param logvar)",
        )
    prior: dict[str, Any] = {"mu": None, "logvar": None}
    priors: list[np.ndarray | None] = []
    for key, path in (("mu", request.prior_mu), ("logvar", request.prior_logvar)):
        if path is None:
            priors.append(None)
            continue
        value, source = _read(path, request.prior_options, stdin)
        _check_finite(value, source.label, f"prior {key}")
        try:
            fits = np.broadcast_shapes(value.shape, mu.shape) == mu.shape
        except ValueError:
            fits = False
        if not fits:
            raise InputError(
                source.label,
                f"prior {key} of shape {tuple(source.shape)} does not broadcast to MU's "
                f"{tuple(mu.shape)}",
            )
        priors.append(value)
        prior[key] = source.describe()
    reduced = gaussian_kl(
        mu,
        lv,
        prior_mu=priors[0],
        prior_logvar=priors[1],
        scale_param=request.scale_param,
        reduction=request.reduction,
        free_bits=request.free_bits,
    )
    kl, kl_free_bits = reduced if isinstance(reduced, tuple) else (reduced, None)
    batch = mu.shape[0] if mu.ndim >= 2 else 1
    return GaussianResult(
        request=request,
        kl=kl,
        kl_free_bits=kl_free_bits,
        active_units=active_units(mu),
        batch=batch,
        latent_dims=mu.size // batch if batch else 0,
        mu=smu.describe(),
        logvar=slv.describe(),
        prior=prior,
    )
