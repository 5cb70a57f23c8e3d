"""Regenerate the RL sample files (deterministic): python sample_data/rl/make_samples.py

A toy batch of 8 responses of up to 12 tokens, right-padded:

* ``logp.npy``, ``ref_logp.npy``: float32 [8, 12] log-probabilities of the sampled
  tokens under the policy and under the reference; padding holds 0.0, as many trainers
  leave it (the mask says which tokens count);
* ``mask.npy``: int8 [8, 12], 1 for a response token (verl's ``response_mask``);
* ``rollout.csv``: the same tokens as a long table, one row per token (``seq``,
  ``logp``, ``ref_logp``), the responses interleaved as a streaming logger writes them.
"""

from pathlib import Path

import numpy as np

HERE = Path(__file__).parent


def main() -> None:
    rng = np.random.default_rng(14)
    sequences, width = 8, 12
    lengths = rng.integers(4, width + 1, size=sequences)
    lengths[0] = width
    mask = (np.arange(width) < lengths[:, None]).astype(np.int8)
    logp = np.log(rng.uniform(0.05, 1.0, (sequences, width)))
    ref = logp + rng.normal(0.0, 0.15, (sequences, width)) - 0.02
    ref = np.minimum(ref, np.log(0.999))  # a log-probability is at most 0
    logp, ref = logp.astype(np.float32), ref.astype(np.float32)
    logp[mask == 0] = 0.0
    ref[mask == 0] = 0.0
    np.save(HERE / "logp.npy", logp)
    np.save(HERE / "ref_logp.npy", ref)
    np.save(HERE / "mask.npy", mask)
    rows = [(s, t) for t in range(width) for s in range(sequences) if mask[s, t]]
    with open(HERE / "rollout.csv", "w") as f:
        f.write("seq,logp,ref_logp\n")
        for s, t in rows:
            f.write(f"r{s},{float(logp[s, t])!r},{float(ref[s, t])!r}\n")


if __name__ == "__main__":
    main()
