"""``kldiv gaussian`` results as a :class:`~kldiv_cli.render.Report`."""

from __future__ import annotations

from functools import partial
from typing import Any

import numpy as np

from .._version import __version__
from ..choices import LatentReduction
from ..jobs.gaussian import GaussianResult
from . import Report, as_rows, format_number

_TITLES = {
    "batch-mean": "KL(q(z|x) || prior), summed over latent dims, mean over the batch",
    "sum": "KL(q(z|x) || prior), summed over everything",
    "none": "KL(q(z|x) || prior) per element",
    "per-dim": "KL(q(z|x) || prior) per latent dimension (batch mean)",
    "per-row": "KL(q(z|x) || prior) per sample (sum over latent dims)",
}


def gaussian_document(result: GaussianResult) -> dict[str, Any]:
    """The JSON document: ``kl`` (a number or a list), the settings, the inputs."""
    req = result.request
    doc: dict[str, Any] = {"kl": result.kl}
    if result.kl_free_bits is not None:
        doc["kl_free_bits"] = result.kl_free_bits
    if req.reduction is LatentReduction.PER_DIM:
        doc["active_units"] = result.active_units
    doc.update(
        reduction=req.reduction,
        scale_param=req.scale_param,
        free_bits=req.free_bits,
        batch=result.batch,
        latent_dims=result.latent_dims,
        mu=result.mu,
        logvar=result.logvar,
        prior=result.prior if any(result.prior.values()) else "standard normal",
        kldiv_version=__version__,
    )
    return doc


def _lines(columns: list[np.ndarray]) -> list[str]:
    return [",".join(format_number(v) for v in row) for row in zip(*columns)]


def gaussian_report(result: GaussianResult) -> Report:
    req = result.request
    kl, fb = result.kl, result.kl_free_bits
    notes = []
    if req.reduction is LatentReduction.PER_DIM:
        notes.append(
            f"active units (Var_batch(mu) > 0.01): {result.active_units} of {result.latent_dims}"
        )
    if isinstance(kl, np.ndarray) and req.reduction is LatentReduction.NONE:
        flat = as_rows(kl)
        table: dict[str, Any] = {f"c{j}": flat[:, j] for j in range(flat.shape[1])}
        plain: Any = partial(_lines, [flat[:, j] for j in range(flat.shape[1])])
    elif isinstance(kl, np.ndarray):
        index = "dim" if req.reduction is LatentReduction.PER_DIM else "row"
        table = {index: np.arange(kl.size), "kl": kl}
        columns = [kl] if fb is None else [kl, np.asarray(fb)]
        if fb is not None:
            table["kl_free_bits"] = fb
        plain = partial(_lines, columns)
    else:
        table = {"kl": [kl]}
        plain = [format_number(kl)]
        if fb is not None:
            table["kl_free_bits"] = [fb]
            plain = [f"kl,{format_number(kl)}", f"kl_free_bits,{format_number(fb)}"]
        table.update(reduction=[req.reduction], scale_param=[req.scale_param])
    return Report(
        title=_TITLES[req.reduction],
        document=gaussian_document(result),
        table=table,
        plain=plain,
        array=np.asarray(kl),
        notes=notes,
    )
