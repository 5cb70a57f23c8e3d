"""The ``gaussian`` job: the closed-form KL of a VAE's diagonal Gaussian posterior.

MU and LOGVAR come from two files, or from one table (``--mu-columns`` and
``--logvar-columns``) or one .npz (two keys); the prior is N(0, 1) or given as files.
Computes with :mod:`kldiv_cli.core.gaussian`. Never prints.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import zip_longest
from typing import Any

import numpy as np

from ..choices import LatentReduction, ScaleParam, coerce
from ..core.engine import as_float64
from ..core.gaussian import (
    FREE_BITS_REDUCTIONS,
    ActiveUnits,
    GaussianReduction,
    pointwise_kl,
    sample_rows,
    to_logvar,
)
from ..errors import InputError, UsageError
from ..io import formats
from ..io.sources import ReadOptions, Source, open_source
from .blocks import rebatch
from .checks import Checked
from .diagnostics import refuse_if_strict
from .gates import Verdict
from .positions import first_position

__all__ = ["GaussianRequest", "GaussianResult", "gaussian"]


@dataclass(frozen=True)
class GaussianRequest(Checked):
    mu: str
    #: None: the same file as ``mu`` (two column groups or two .npz keys).
    logvar: str | None = None
    mu_options: ReadOptions = ReadOptions()
    logvar_options: ReadOptions = ReadOptions()
    prior_options: ReadOptions = ReadOptions()
    prior_mu: str | None = None
    prior_logvar: str | None = None
    scale_param: ScaleParam = ScaleParam.LOGVAR
    reduction: LatentReduction = LatentReduction.BATCH_MEAN
    free_bits: float | None = None
    output: str | None = None
    #: ``--strict``: a note about the inputs (columns left out) is an error.
    strict: bool = False

    def __post_init__(self) -> None:
        # Parsed once, when the request is made (a library caller may pass text).
        coerce(self, scale_param=ScaleParam, reduction=LatentReduction)

    @property
    def logvar_path(self) -> str:
        return self.mu if self.logvar is None else self.logvar

    @property
    def inputs(self) -> tuple[str | None, ...]:
        """The paths the job reads."""
        return (self.mu, self.logvar, self.prior_mu, self.prior_logvar)

    def check(self) -> None:
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
                f"or --mu-key and --logvar-key (one {formats.extensions_text([formats.KEYED])})"
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
    #: The inputs' notes: columns the column rule left out (for stderr).
    warnings: list[str] = field(default_factory=list)

    @property
    def verdict(self) -> Verdict:
        """gaussian has no gate: a result is a pass."""
        return Verdict()


#: Latent values per block read (each side): a few MB of float64 temporaries.
BLOCK_ELEMENTS = 1 << 18


def _check_finite(a: np.ndarray, label: str, what: str, first: int = 0) -> None:
    nan = np.isnan(a)
    if nan.any():
        at = first_position(nan, ("row", "column", "axis 2"), first)
        raise InputError(label, f"{what}: NaN at {at or 'the value'}")


def _blocks(source: Source, rows: int) -> Iterator[np.ndarray]:
    """Blocks of exactly ``rows`` samples (the first axis) of a source; a 0-d or 1-D
    array is one sample, read whole."""
    if len(source.shape) < 2:
        return iter([source.read()])
    return rebatch(source.iter_chunks(rows), rows)


class _Side:
    """An opened input: its source and whether it streams beside MU (a prior as large
    as MU) or is read whole (a prior that broadcasts)."""

    def __init__(self, source: Source, whole: np.ndarray | None) -> None:
        self.source, self.whole = source, whole


def gaussian(request: GaussianRequest, stdin: bytes | None = None) -> GaussianResult:
    """Run the job: read MU, LOGVAR (and the prior), check them, compute the KL.

    MU and LOGVAR (and a prior of MU's shape) are read block of samples by block, so
    memory is a block and the per-sample results (``per-row``; ``none`` keeps every
    value); a prior that broadcasts (one value per dimension) is read whole. The
    active units take a second pass over MU.
    """
    request.validate()
    smu = open_source(request.mu, request.mu_options, stdin)
    slv = open_source(request.logvar_path, request.logvar_options, stdin)
    rows_known = -1 not in (*smu.shape[:1], *slv.shape[:1])
    if smu.shape[1:] != slv.shape[1:] or (rows_known and smu.shape != slv.shape):
        raise InputError(
            f"{smu.label} and {slv.label}",
            f"shapes do not match: MU {tuple(smu.shape)}, LOGVAR {tuple(slv.shape)}",
        )
    shape = tuple(smu.shape)
    prior: dict[str, Any] = {"mu": None, "logvar": None}
    notes = [*smu.notes, *slv.notes]
    priors: list[_Side | None] = []
    for key, path in (("mu", request.prior_mu), ("logvar", request.prior_logvar)):
        if path is None:
            priors.append(None)
            continue
        source = open_source(path, request.prior_options, stdin)
        pshape = tuple(source.shape)
        try:
            fits = np.broadcast_shapes(pshape, shape) == shape
        except ValueError:
            fits = False
        if not fits:
            raise InputError(
                source.label,
                f"prior {key} of shape {pshape} does not broadcast to MU's {shape}",
            )
        streamed = len(shape) >= 2 and len(pshape) == len(shape) and pshape[0] == shape[0] > 1
        value = None if streamed else source.read()
        if value is not None:
            _check_finite(value, source.label, f"prior {key}")
        notes.extend(source.notes)
        priors.append(_Side(source, value))
        prior[key] = source.describe()
    refuse_if_strict(request.strict, notes)
    batch = shape[0] if len(shape) >= 2 else 1
    dims = math.prod(shape[1:]) if len(shape) >= 2 else math.prod(shape)
    rows = max(1, BLOCK_ELEMENTS // max(dims, 1))
    units = ActiveUnits(batch, dims)
    read = [0]  # samples read so far
    blocks = _kl_blocks(request, smu, slv, priors, rows, units, read)
    if request.reduction == "none":
        pieces = list(blocks)
        if not pieces:
            reduced: Any = np.empty((0, *shape[1:]))
        else:
            reduced = np.concatenate(pieces) if len(shape) >= 2 else pieces[0]
    else:
        reducer = GaussianReduction(request.reduction, request.free_bits, dims)
        reduced = reducer.reduce(sample_rows(kl) for kl in blocks)
    if batch == -1:  # a streamed CSV: the samples are counted now
        batch = read[0]
        units = _recount(smu, rows, batch, dims)
    elif batch >= 2:
        for mu in _blocks(smu, rows):
            units.second(as_float64(mu, "mu").reshape(len(mu), -1))
    kl_value, kl_free_bits = reduced if isinstance(reduced, tuple) else (reduced, None)
    return GaussianResult(
        request=request,
        kl=kl_value,
        kl_free_bits=kl_free_bits,
        active_units=units.count(),
        batch=batch,
        latent_dims=dims if batch else 0,
        mu=smu.describe(),
        logvar=slv.describe(),
        prior=prior,
        warnings=notes,
    )


def _kl_blocks(
    request: GaussianRequest,
    smu: Source,
    slv: Source,
    priors: list[_Side | None],
    rows: int,
    units: ActiveUnits,
    read: list[int],
) -> Iterator[np.ndarray]:
    """The KL of each dimension, block of samples by block, each block checked first
    (NaN, a negative std or var, named at its row in the file); the active units'
    first pass and the count of samples (``read[0]``) on the way."""
    for mu, lv, pm, plv in _zipped(smu, slv, priors, rows):
        first = read[0]
        _check_finite(mu, smu.label, "MU", first)
        _check_finite(lv, slv.label, request.scale_param.upper(), first)
        for side, value, key in ((priors[0], pm, "mu"), (priors[1], plv, "logvar")):
            if side is not None and side.whole is None and value is not None:
                _check_finite(value, side.source.label, f"prior {key}", first)
        if request.scale_param in ("std", "var") and (lv < 0).any():
            where = np.argwhere(lv < 0)[0]
            at = [int(i) for i in where]
            at[0] += first if lv.ndim >= 2 else 0
            raise InputError(
                slv.label,
                f"--scale-param {request.scale_param}: negative {request.scale_param} "
                f"{float(lv[tuple(where)]):g} at {', '.join(str(i) for i in at)} "
                "(is it a log-variance? try --scale-param logvar)",
            )
        m = as_float64(mu, "mu")
        kl = pointwise_kl(
            m,
            to_logvar(lv, request.scale_param),
            None if pm is None else as_float64(pm, "prior_mu"),
            None if plv is None else as_float64(plv, "prior_logvar"),
        )
        units.first(sample_rows(m))
        read[0] += len(mu) if mu.ndim else 1
        del mu, lv, pm, plv, m
        yield kl
        del kl


def _zipped(
    smu: Source, slv: Source, priors: list[_Side | None], rows: int
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]]:
    """Matching blocks of MU, LOGVAR and the prior (a streamed prior's rows, or the
    whole broadcast prior), exactly ``rows`` samples each."""
    streams = [_blocks(smu, rows), _blocks(slv, rows)]
    streams += [_blocks(p.source, rows) for p in priors if p is not None and p.whole is None]
    for block in zip_longest(*streams):
        if any(b is None or (b.ndim and len(b) != len(block[0])) for b in block):
            raise InputError(
                f"{smu.label} and {slv.label}", "MU, LOGVAR and the prior hold different rows"
            )
        it = iter(block[2:])
        pm, plv = (
            None if p is None else p.whole if p.whole is not None else next(it) for p in priors
        )
        yield block[0], block[1], pm, plv


def _recount(smu: Source, rows: int, batch: int, dims: int) -> ActiveUnits:
    """Both passes of the active units once the samples are counted."""
    units = ActiveUnits(batch, dims)
    for mu in _blocks(smu, rows):
        units.first(as_float64(mu, "mu").reshape(len(mu), -1))
    if batch >= 2:
        for mu in _blocks(smu, rows):
            units.second(as_float64(mu, "mu").reshape(len(mu), -1))
    return units
