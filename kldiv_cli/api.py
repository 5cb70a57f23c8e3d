"""The commands as Python functions, for notebooks and scripts.

Each function takes what its command takes (paths, then the command's options as
keywords, named as the command line's: ``window="ts:1d"``, ``last=64``; text is parsed by
the command line's own parsers, typed values are taken as they are) and returns the typed result the command
renders: the numbers, never printed text. Nothing is printed and nothing is written
unless an ``output`` is given. A bad option is a :class:`~kldiv_cli.errors.UsageError`,
a bad file an :class:`~kldiv_cli.errors.InputError`, with the command line's message; a
keyword the command does not have is a ``UsageError`` too.

``kldiv_cli.compare`` and the others load lazily: ``import kldiv_cli`` stays cheap.
"""

from __future__ import annotations

import os
from dataclasses import fields
from typing import TYPE_CHECKING, Any

from .errors import UsageError

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

    return run(_request(ComputeRequest, "compute", options, os.fspath(input), os.fspath(target)))


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

    return run(_request(InspectRequest, "inspect", options, os.fspath(file)))


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
        ``top``, ``labels``, ``tail``; the slices ``positions`` (``"A:B"``), ``last``,
        ``token_ids``/``exclude_token_ids`` (``"2,13"`` or a list), ``by``.

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
        raise UsageError("compare() needs a REFERENCE and at least one CANDIDATE")
    first, *others = (os.fspath(c) for c in candidates)
    options = {**options, "others": (*options.pop("others", ()), *others)}
    _slices(options)
    return compare_all(_request(CompareRequest, "compare", options, os.fspath(reference), first))


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
        ``categorical``, ``bins``...); ``window="COL:PERIOD"`` or ``segment="COL"``
        (with ``reference_segment``, ``max_segments``); ``threshold`` may be
        ``"learned[:K]"``.

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
    _grouping(rest)
    _thresholds(rest)
    rest["rules"] = rules
    request = _request(
        DriftRequest,
        "drift",
        rest,
        (os.fspath(reference),),
        tuple(os.fspath(c) for c in current),
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
        and ``calibrate``/``calibrate_seed`` (learned thresholds), ``calibrate_by``
        (``"COL:PERIOD"``: the last ``calibrate`` periods instead of random halves).

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
    from .jobs.drift_groups import chunks_of
    from .jobs.profile import ProfileRequest, run_profile

    rules, rest = _split(ColumnRules, options)
    rest["rules"] = rules
    rest["calibrate_by"] = chunks_of(rest.get("calibrate_by"), "--calibrate-by")
    request = _request(ProfileRequest, "profile", rest, tuple(os.fspath(r) for r in reference))
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
        (``none``, ``openrlhf``, ``verl``, ``"LO,HI"``), ``aggregate``, ``pad_value``...;
        the slices ``positions``, ``last``, ``token_ids``, ``by`` as :func:`compare`'s.

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
    options["mask"] = None if mask is None else os.fspath(mask)
    _slices(options)
    return run(_request(EstimateRequest, "estimate", options, os.fspath(logp), os.fspath(ref_logp)))


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

    request = _request(
        GaussianRequest,
        "gaussian",
        options,
        os.fspath(mu),
        None if logvar is None else os.fspath(logvar),
    )
    return run(request)


#: The keywords of the slice options (compare, estimate), as the command line's.
SLICE_OPTIONS = ("positions", "last", "token_ids", "exclude_token_ids", "by")
#: The keywords of drift's windows and segments.
GROUP_OPTIONS = ("window", "segment", "reference_segment", "max_segments")
#: ColumnRules' fields that take several names (one text is one option's value).
_NAME_LISTS = ("exclude", "categorical", "numeric", "skip")


def _request(cls: type, command: str, options: dict[str, Any], *given: Any) -> Any:
    """``cls(*given, **options)``: a keyword that is none of its other fields is the
    command line's usage error, not a TypeError."""
    names = [f.name for f in fields(cls)][len(given) :]
    for name in options:
        if name not in names:
            raise UsageError(f"{command}(): no such option {name!r}")
    return cls(*given, **options)


def _split(cls: type, options: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """``cls`` (a dataclass) built from the keywords that are its fields, and the rest;
    one name given as text to a list of names is that one name (``exclude="id"``)."""
    names = {f.name for f in fields(cls)}
    mine = {k: (v,) if k in _NAME_LISTS and isinstance(v, str) else v for k, v in options.items()}
    return cls(**{k: v for k, v in mine.items() if k in names}), {
        k: v for k, v in options.items() if k not in names
    }


def _slices(options: dict[str, Any]) -> None:
    """``positions=``, ``last=``, ``token_ids=``... as the request's ``slices``, by the
    command line's parser (:meth:`~kldiv_cli.jobs.slices.Slices.of`)."""
    from .jobs.slices import Slices

    given = {k: options.pop(k) for k in SLICE_OPTIONS if k in options}
    if "slices" in options and not isinstance(options["slices"], Slices):
        raise UsageError(
            "slices takes a Slices; or give positions=, last=, token_ids=, "
            "exclude_token_ids=, by= as on the command line"
        )
    if given:
        if "slices" in options:
            raise UsageError("give slices= or positions=, last=, token_ids=, by=..., not both")
        options["slices"] = Slices.of(**given)


def _grouping(options: dict[str, Any]) -> None:
    """``window=``, ``segment=``, ``reference_segment=``, ``max_segments=`` as drift's
    ``grouping``, by the command line's parser (:func:`~kldiv_cli.jobs.drift_groups.grouping_of`)."""
    from .jobs.drift_groups import Grouping, grouping_of

    given = {k: options.pop(k) for k in GROUP_OPTIONS if k in options}
    if options.get("grouping") is not None and not isinstance(options["grouping"], Grouping):
        raise UsageError(
            "grouping takes a Grouping; or give window='COL:PERIOD' or segment='COL' "
            "as on the command line"
        )
    if given:
        if options.get("grouping") is not None:
            raise UsageError("give grouping= or window=/segment=, not both")
        options["grouping"] = grouping_of(**given)


def _thresholds(options: dict[str, Any]) -> None:
    """``threshold="learned:2"`` and ``warn_threshold=...`` given as text: parsed as the
    command line's ``--threshold``/``--warn-threshold``."""
    from .jobs.drift_request import parse_threshold

    if isinstance(options.get("threshold"), str):
        options["threshold"], options["learned"] = parse_threshold(options["threshold"])
    if isinstance(options.get("warn_threshold"), str):
        fixed, learned = parse_threshold(options["warn_threshold"], "--warn-threshold")
        options["warn_threshold"] = None if learned is not None else fixed
        options["warn_learned"] = learned
