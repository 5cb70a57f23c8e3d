"""``kldiv gaussian``: the closed-form KL of a VAE's diagonal Gaussian posterior."""

from typing import Annotated

import typer

from .app import app
from .boundary import Messages, error_boundary
from .options import (
    DebugOpt,
    DelimiterOpt,
    FormatOpt,
    MissingOpt,
    NoColorOpt,
    OutputOpt,
    QuietOpt,
    StorageOpt,
    StrictOpt,
    configure_storage,
    emit_with_notes,
    read_options,
    read_stdin_if_needed,
)


@app.command()
@error_boundary
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
        str,
        typer.Option(
            "--scale-param",
            metavar="[logvar|logstd|std|var]",
            help="What LOGVAR holds: log sigma^2 (default), log sigma, sigma or sigma^2. "
            "Check it: logvar vs log-std confusion is the most common VAE bug (a factor of "
            "2 inside the exp).",
        ),
    ] = "logvar",
    reduction: Annotated[
        str,
        typer.Option(
            "--reduction",
            "-r",
            metavar="[batch-mean|sum|none|per-dim|per-row]",
            help="batch-mean (default, the usual VAE loss): sum over latent dims, mean over "
            "the batch; sum; none (per element); per-dim (batch mean of each dim, with the "
            "active units); per-row (sum over dims of each sample).",
        ),
    ] = "batch-mean",
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
    mu_columns: Annotated[
        str | None,
        typer.Option(
            "--mu-columns",
            metavar="COLS",
            help="MU's columns: names, globs (mu_*) or 0-based indices.",
        ),
    ] = None,
    logvar_columns: Annotated[
        str | None,
        typer.Option(
            "--logvar-columns",
            metavar="COLS",
            help="LOGVAR's columns (of MU's table if no LOGVAR).",
        ),
    ] = None,
    mu_key: Annotated[str | None, typer.Option("--mu-key", help="Array name in a .npz.")] = None,
    logvar_key: Annotated[
        str | None, typer.Option("--logvar-key", help="Array name in a .npz (MU's if no LOGVAR).")
    ] = None,
    input_format: Annotated[
        str | None,
        typer.Option(
            "--input-format",
            metavar="FMT",
            help="npy, npz, csv, tsv, parquet or arrow for every input (default: by extension).",
        ),
    ] = None,
    delimiter: DelimiterOpt = None,
    missing: MissingOpt = "error",
    storage_option: StorageOpt = None,
    format: FormatOpt = "auto",
    output: OutputOpt = None,
    strict: StrictOpt = False,
    quiet: QuietOpt = False,
    no_color: NoColorOpt = False,
    debug: DebugOpt = False,
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
    from ..render import resolve_format
    from ..render.gaussian import gaussian_report

    resolve_format(format, False)
    request = GaussianRequest(
        mu=mu,
        logvar=logvar,
        mu_options=read_options(
            input_format,
            mu_key,
            mu_columns,
            delimiter,
            missing,
            key_option="--mu-key",
            columns_option="--mu-columns",
            format_option="--input-format",
        ),
        logvar_options=read_options(
            input_format,
            logvar_key,
            logvar_columns,
            delimiter,
            missing,
            key_option="--logvar-key",
            columns_option="--logvar-columns",
            format_option="--input-format",
        ),
        prior_mu=prior_mu,
        prior_logvar=prior_logvar,
        prior_options=read_options(
            input_format, None, None, delimiter, missing, key_option=None, format_option=None
        ),
        scale_param=scale_param,
        reduction=reduction,
        free_bits=free_bits,
        output=output if output != "-" else None,
        strict=strict,
    )
    configure_storage(storage_option)
    request.validate()  # before stdin is read
    stdin = read_stdin_if_needed(*(p for p in (mu, logvar, prior_mu, prior_logvar) if p))
    result = run(request, stdin)
    for text in result.warnings:
        Messages.warn(text)
    emit_with_notes(gaussian_report(result), format, output, no_color)
