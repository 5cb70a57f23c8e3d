"""``kldiv gaussian``: the closed-form KL of a VAE's diagonal Gaussian posterior."""

from functools import partial
from typing import TYPE_CHECKING, Annotated

import typer

from ..choices import LatentReduction, ScaleParam
from ..io import formats
from .app import app
from .boundary import Messages, error_boundary
from .groups import Output, Side, Storage, inputs, output, storage, uses
from .options import StrictOpt, choice
from .output import emit_with_notes
from .runner import run_command

if TYPE_CHECKING:
    from ..io.base import ReadOptions
    from ..jobs.gates import Verdict
    from ..jobs.gaussian import GaussianResult

_FORMAT_HELP = f"{formats.names_text()} for every input (default: by extension)."
SIDES = inputs(
    Side(
        "--input-format",
        "--mu-key",
        "--mu-columns",
        format_help=_FORMAT_HELP,
        key_help=formats.key_help("MU"),
        columns_help="MU's columns: names, globs (mu_*) or 0-based indices.",
    ),
    Side(
        "--input-format",
        "--logvar-key",
        "--logvar-columns",
        key_help=formats.key_help("LOGVAR (MU's if no LOGVAR)"),
        columns_help="LOGVAR's columns (of MU's table if no LOGVAR).",
    ),
    # The priors: files of their own, read with --input-format only.
    Side("--input-format"),
)


@app.command()
@error_boundary
@uses(sides=SIDES, out=output(), storage=storage())
def gaussian(
    mu: Annotated[
        str,
        typer.Argument(
            metavar="MU",
            help="The posterior means, [batch, latent dims]; '-' for stdin.",
            show_default=False,
        ),
    ],
    logvar: Annotated[
        str | None,
        typer.Argument(
            metavar="[LOGVAR]",
            help="The posterior scales as --scale-param says (default log-variance); "
            "omit it when MU's file holds both (--mu-columns/--logvar-columns, or keys).",
            show_default=False,
        ),
    ] = None,
    scale_param: Annotated[
        ScaleParam,
        choice(
            ScaleParam,
            "--scale-param",
            help="What LOGVAR holds: log sigma^2 (default), log sigma, sigma or sigma^2. "
            "Check it: logvar vs log-std confusion is the most common VAE bug (a factor of "
            "2 inside the exp).",
        ),
    ] = ScaleParam.LOGVAR,
    reduction: Annotated[
        LatentReduction,
        choice(
            LatentReduction,
            "--reduction",
            "-r",
            help="batch-mean (default, the usual VAE loss): sum over latent dims, mean over "
            "the batch; sum; none (per element); per-dim (batch mean of each dim, with the "
            "active units); per-row (sum over dims of each sample).",
        ),
    ] = LatentReduction.BATCH_MEAN,
    free_bits: Annotated[
        float | None,
        typer.Option(
            "--free-bits",
            metavar="LAMBDA",
            help="Also report the KL with each dimension's batch-mean KL clamped below at "
            "LAMBDA nats (kl_free_bits, beside the unclamped kl).",
        ),
    ] = None,
    prior_mu: Annotated[
        str | None,
        typer.Option(
            "--prior-mu",
            metavar="FILE",
            help="Prior means, broadcast to MU's shape (e.g. one row); default 0.",
        ),
    ] = None,
    prior_logvar: Annotated[
        str | None,
        typer.Option(
            "--prior-logvar",
            metavar="FILE",
            help="Prior log-variances (always log sigma^2), broadcast to MU's shape; default 0.",
        ),
    ] = None,
    strict: StrictOpt = False,
    *,
    sides: "tuple[ReadOptions, ReadOptions, ReadOptions]",
    out: Output,
    storage: Storage,
) -> None:
    """KL(N(mu, sigma^2) || prior) of diagonal Gaussians: the VAE latent KL, in closed form.

    Examples:

      kldiv gaussian mu.npy logvar.npy

      kldiv gaussian latents.parquet --mu-columns 'mu_*' --logvar-columns 'logvar_*' -r per-dim

      kldiv gaussian z.npz --mu-key mu --logvar-key logstd --scale-param logstd --free-bits 0.5

    Per dimension 0.5 * (sigma^2 + mu^2 - 1 - log sigma^2) against N(0, 1), or
    0.5 * (s1^2/s2^2 + (mu1 - mu2)^2/s2^2 - 1 - log(s1^2/s2^2)) against --prior-mu and
    --prior-logvar, as torch.distributions.kl_divergence(Normal, Normal).
    """
    from ..jobs.gaussian import GaussianRequest
    from ..jobs.gaussian import gaussian as run

    request = GaussianRequest(
        mu,
        logvar,
        *sides,
        prior_mu=prior_mu,
        prior_logvar=prior_logvar,
        scale_param=scale_param,
        reduction=reduction,
        free_bits=free_bits,
        output=out.file,
        strict=strict,
    )
    run_command(request, lambda r, stdin, _: run(r, stdin), partial(_show, out), storage)


def _show(out: Output, result: "GaussianResult") -> "Verdict":
    from ..render.gaussian import gaussian_report

    for text in result.warnings:
        Messages.warn(text)
    emit_with_notes(gaussian_report(result), out.format, out.path)
    return result.verdict
