"""Regenerate the VAE sample files (deterministic): python sample_data/vae/make_samples.py

A toy encoder output for a batch of 16 inputs and 6 latent dimensions, of which the
last two have collapsed to the prior (μ ≈ 0, log σ² ≈ 0: inactive units):

* ``mu.npy``, ``logvar.npy``: float32 [16, 6] posterior means and log-variances;
* ``latents.parquet``: the same as one table, columns ``mu_0..mu_5`` and
  ``logvar_0..logvar_5``.
"""

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

HERE = Path(__file__).parent


def main() -> None:
    rng = np.random.default_rng(15)
    batch, dims = 16, 6
    mu = rng.normal(0.0, 1.0, (batch, dims))
    logvar = rng.normal(-1.5, 0.4, (batch, dims))
    mu[:, 4:] = rng.normal(0.0, 0.02, (batch, 2))
    logvar[:, 4:] = rng.normal(0.0, 0.01, (batch, 2))
    mu, logvar = mu.astype(np.float32), logvar.astype(np.float32)
    np.save(HERE / "mu.npy", mu)
    np.save(HERE / "logvar.npy", logvar)
    columns = {f"mu_{j}": mu[:, j] for j in range(dims)}
    columns.update({f"logvar_{j}": logvar[:, j] for j in range(dims)})
    pq.write_table(pa.table(columns), HERE / "latents.parquet")


if __name__ == "__main__":
    main()
