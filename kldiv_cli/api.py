"""The commands as Python functions, for notebooks and scripts.

Each function takes what its command takes (paths, then the command's options as
keywords, named as the request's fields) and returns the typed result the command
renders: the numbers, never printed text. Nothing is printed and nothing is written
unless an ``output`` is given. A bad option is a :class:`~kldiv_cli.errors.UsageError`,
a bad file an :class:`~kldiv_cli.errors.InputError`, with the command line's message.

``kldiv_cli.compare`` and the others load lazily: ``import kldiv_cli`` stays cheap.
"""

from __future__ import annotations

import os
from dataclasses import fields
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .jobs.compare import CompareAllResult
    from .jobs.compute import ComputeResult
    from .jobs.drift import DriftReport
    from .jobs.estimate import EstimateResult
    from .jobs.gaussian import GaussianResult
    from .jobs.profile import Profile

__all__ = ["compare", "compute", "drift", "estimate", "gaussian", "inspect", "profile"]

#: A path: text or any ``os.PathLike`` (``pathlib.Path``).
Path = str | os.PathLike[str]


def compute(input: Path, target: Path, **options: Any) -> ComputeResult:
    """``kldiv compute``: ``torch.nn.functional.kl_div(INPUT, TARGET)`` on two files,
    read and summed block by block (:func:`kldiv_cli.kl_div` is the same on arrays).

    Parameters
    ----------
    input, target
        The model's log-probabilities (or logits with ``input_transform``) and the
        observed distribution, in torch's order.
    **options
        :class:`~kldiv_cli.jobs.compute_plan.ComputeRequest`'s fields: ``reduction``
        (``none``, ``mean``, ``batchmean``, ``sum``), ``log_target``,
        ``input_transform``/``target_transform`` (``softmax``, ``log-softmax``...),
        ``temperature``, ``per_row``, ``top``, ``target_labels``, ``engine``...

    Returns
    -------
    ComputeResult
        ``loss`` (a NumPy scalar, or an array for ``none``), ``per_row``, ``top``,
        ``diagnostics``, ``warnings``, ``plan``.

    Examples
    --------
    >>> import kldiv_cli
    >>> result = kldiv_cli.compute(
    ...     "sample_data/student_logits.npy", "sample_data/teacher_logits.npy",
    ...     input_transform="log-softmax", target_transform="softmax", reduction="batchmean",
    ... )
    >>> float(result.loss) > 0
    True
    """
    from .jobs.compute import ComputeRequest
    from .jobs.compute import compute as run

    return run(ComputeRequest(os.fspath(input), os.fspath(target), **options))


def inspect(file: Path, **options: Any) -> dict[str, Any]:
    """``kldiv inspect``: what a data file holds (shape, dtype, NaN/inf counts, range,
    row sums, what it looks like) and the flags to use with it.

    Parameters
    ----------
    file
        A data file.
    **options
        ``options`` (a :class:`~kldiv_cli.io.base.ReadOptions`: format, key, columns).

    Returns
    -------
    dict
        The ``-f json`` document: ``shape``, ``dtype``, ``looks_like``, ``suggestions``,
        and for a table ``column_roles``.

    Examples
    --------
    >>> import kldiv_cli
    >>> info = kldiv_cli.inspect("sample_data/teacher_logits.npy")
    >>> info["looks_like"].startswith("logits")
    True
    """
    from .jobs.inspect import InspectRequest
    from .jobs.inspect import inspect as run

    return run(InspectRequest(os.fspath(file), **options))


def compare(reference: Path, *candidates: Path, **options: Any) -> CompareAllResult:
    """``kldiv compare``: KL(REFERENCE || CANDIDATE) row by row, with KL both ways, JS,
    TV, top-1 agreement and (with tokens) perplexity, for each candidate.

    Parameters
    ----------
    reference, *candidates
        The reference model's file and one or more candidates' (logits by default;
        .npy, .safetensors, llama.cpp .kld, tables...).
    **options
        :class:`~kldiv_cli.jobs.compare.CompareRequest`'s fields: ``reference_as``,
        ``candidate_as`` (``logits``, ``log-probs``, ``probs``), ``temperature``,
        ``key``, ``tokens``, ``ignore_index``, ``fail_above`` (``("kl.p99=0.1",)``),
        ``top``, ``labels``...

    Returns
    -------
    CompareAllResult
        ``results[i].statistics`` is candidate i's JSON document of ``-f json``
        (``statistics["kl"]["mean"]``...), ``results[i].per_row`` its per-row measures,
        ``failed_check`` the gates' verdict (None: passed).

    Examples
    --------
    >>> import kldiv_cli
    >>> result = kldiv_cli.compare(
    ...     "sample_data/compare/base_logits.npy", "sample_data/compare/quant_logits.npy"
    ... )
    >>> stats = result.results[0].statistics
    >>> 0 < stats["kl"]["mean"] < stats["kl"]["max"]
    True
    """
    from .jobs.compare import CompareRequest, compare_all

    if not candidates:
        raise TypeError("compare() needs a reference and at least one candidate")
    first, *others = (os.fspath(c) for c in candidates)
    request = CompareRequest(
        reference=os.fspath(reference), candidate=first, others=tuple(others), **options
    )
    return compare_all(request)


def drift(reference: Path, *current: Path, **options: Any) -> DriftReport:
    """``kldiv drift``: data drift column by column, KL(reference || current) of binned
    values, missing shares and new categories.

    Parameters
    ----------
    reference
        A table, a Parquet folder or glob, or a profile (.json, :func:`profile`).
    *current
        The current data: one or more tables of the same kinds.
    **options
        :class:`~kldiv_cli.jobs.drift.DriftRequest`'s fields (``metric``,
        ``threshold``, ``fail_on``, ``max_missing_change``...) and
        :class:`~kldiv_cli.jobs.drift.ColumnRules`' (``columns``, ``exclude``,
        ``categorical``, ``bins``...).

    Returns
    -------
    DriftReport
        One ``ColumnResult`` per column (``columns``), ``drift`` (the dataset verdict),
        ``n_drifted``, ``schema_changes``.

    Examples
    --------
    >>> import kldiv_cli
    >>> report = kldiv_cli.drift(
    ...     "sample_data/drift/users_reference.parquet", "sample_data/drift/users_current/"
    ... )
    >>> report.drift, report.n_drifted > 0
    (True, True)
    """
    from ._version import __version__
    from .jobs.drift import ColumnRules, DriftRequest, run_drift

    rules, rest = _split(ColumnRules, options)
    request = DriftRequest(
        reference=(os.fspath(reference),),
        current=tuple(os.fspath(c) for c in current),
        rules=rules,
        **rest,
    )
    return run_drift(request, None, __version__)


def profile(*reference: Path, **options: Any) -> Profile:
    """``kldiv profile``: a reference's roles, bins and counts, so that :func:`drift`
    need not read it again (``profile(...).dumps()`` is the .json file).

    Parameters
    ----------
    *reference
        A table, Parquet folder, glob or files.
    **options
        :class:`~kldiv_cli.jobs.drift.ColumnRules`' fields (``columns``, ``bins``...)
        and ``calibrate``/``calibrate_seed`` (learned thresholds).

    Returns
    -------
    Profile
        ``columns`` (each column's role, bins and counts), ``rows``; ``dumps()`` is
        its JSON text.

    Examples
    --------
    >>> import kldiv_cli
    >>> built = kldiv_cli.profile("sample_data/drift/users_reference.parquet")
    >>> built.rows > 0 and len(built.columns) > 0
    True
    """
    from .jobs.drift import ColumnRules
    from .jobs.profile import ProfileRequest, run_profile

    rules, rest = _split(ColumnRules, options)
    request = ProfileRequest(reference=tuple(os.fspath(r) for r in reference), rules=rules, **rest)
    return run_profile(request)


def estimate(logp: Path, ref_logp: Path, **options: Any) -> EstimateResult:
    """``kldiv estimate``: KL(pi || pi_ref) from the log-probabilities of sampled tokens,
    as RL frameworks log it (Schulman's k1, k2, k3), with diagnostics.

    Parameters
    ----------
    logp, ref_logp
        log pi and log pi_ref of each sampled token, ``[sequences, tokens]``.
    **options
        :class:`~kldiv_cli.jobs.estimate.EstimateRequest`'s fields: ``mask`` (a 0/1
        file), ``estimator`` (``k1``, ``k2``, ``k3``, ``abs``, ``all``), ``clamp``
        (``none``, ``openrlhf``, ``verl``, ``"LO,HI"``), ``aggregate``, ``pad_value``...

    Returns
    -------
    EstimateResult
        ``estimates`` (each estimator's aggregate), ``diagnostics`` (ratio, chi-square,
        ESS...), ``tokens``, ``sequences``, ``warnings``.

    Examples
    --------
    >>> import kldiv_cli
    >>> result = kldiv_cli.estimate(
    ...     "sample_data/rl/logp.npy", "sample_data/rl/ref_logp.npy",
    ...     mask="sample_data/rl/mask.npy", estimator="k3", clamp="verl",
    ... )
    >>> list(result.estimates), result.estimates["k3"] >= 0
    (['k3'], True)
    """
    from .jobs.estimate import EstimateRequest
    from .jobs.estimate import estimate as run

    mask = options.pop("mask", None)
    request = EstimateRequest(
        os.fspath(logp),
        os.fspath(ref_logp),
        mask=None if mask is None else os.fspath(mask),
        **options,
    )
    return run(request)


def gaussian(mu: Path, logvar: Path | None = None, **options: Any) -> GaussianResult:
    """``kldiv gaussian``: KL(N(mu, sigma^2) || prior) of diagonal Gaussians, the VAE
    latent KL, in closed form.

    Parameters
    ----------
    mu
        The posterior means, ``[batch, latent dims]``.
    logvar
        The posterior scales as ``scale_param`` says (default log-variance); None when
        ``mu``'s file holds both (``mu_options``/``logvar_options`` name the columns or
        keys).
    **options
        :class:`~kldiv_cli.jobs.gaussian.GaussianRequest`'s fields: ``scale_param``
        (``logvar``, ``logstd``, ``std``, ``var``), ``reduction`` (``batch-mean``, ``sum``,
        ``none``, ``per-dim``, ``per-row``), ``free_bits``, ``prior_mu``, ``prior_logvar``.

    Returns
    -------
    GaussianResult
        ``kl`` (a float, or an array for ``none``/``per-dim``/``per-row``),
        ``kl_free_bits``, ``active_units``, ``batch``, ``latent_dims``.

    Examples
    --------
    >>> import kldiv_cli
    >>> result = kldiv_cli.gaussian(
    ...     "sample_data/vae/mu.npy", "sample_data/vae/logvar.npy", reduction="per-dim"
    ... )
    >>> result.kl.shape == (result.latent_dims,)
    True
    """
    from .jobs.gaussian import GaussianRequest
    from .jobs.gaussian import gaussian as run

    request = GaussianRequest(
        os.fspath(mu), None if logvar is None else os.fspath(logvar), **options
    )
    return run(request)


def _split(cls: type, options: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """``cls`` (a dataclass) built from the keywords that are its fields, and the rest."""
    names = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in options.items() if k in names}), {
        k: v for k, v in options.items() if k not in names
    }
