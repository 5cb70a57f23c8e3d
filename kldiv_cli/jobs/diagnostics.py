"""Plain-language diagnostics about the data behind a number; they never change it.

They are gathered chunk by chunk, so streamed files get the same messages as
files read whole. :meth:`Diagnostics.update` does only cheap passes (a max, a
min, row sums); :meth:`Diagnostics.explain` counts the causes of NaN and inf,
and is called only for chunks whose loss is not finite.

The wrong-space checks are shared by the commands: :func:`looks_like` tells
probabilities and log-probabilities from the first rows of a block (``compute``'s
target, ``compare``'s sides), :func:`trailing_runs` finds right padding in
``estimate``'s matrices, and :data:`LOGPROB_SLACK` is how far above 0 a
log-probability may be rounded.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from ..errors import UsageError
from ..io import formats
from ..io.base import Source

#: Target rows whose sum is further than this from 1 are reported.
ROW_SUM_TOLERANCE = 1e-3
#: :func:`looks_like`: how close to 1 a row's sum (of exp, for log-probabilities) must be.
#: Looser than :data:`ROW_SUM_TOLERANCE`: float16 softmax rows and llama.cpp's .kld rows
#: (classes below max − 16 stored at the floor) are off by up to a few 1e-3.
SPACE_TOLERANCE = 1e-2
#: :func:`looks_like` looks at this many rows of a block (its first ones), and at most this
#: many values (a 2 MB float64 copy, however wide the rows).
SPACE_ROWS = 256
SPACE_VALUES = 1 << 18
#: A log-probability above this is refused: float32 log-softmax rounds near 0 by ~1e-7,
#: while a probability or a logit passed as a log-probability is far above it.
LOGPROB_SLACK = 1e-3


def refuse_if_strict(strict: bool, warnings: Sequence[str]) -> None:
    """With ``--strict``, the first of ``warnings`` is the run's error (exit 2): every
    command's one rule for its warnings."""
    if strict and warnings:
        raise UsageError(f"--strict: {warnings[0]}")


def strict_notes(strict: bool, sources: Iterable[Source]) -> None:
    """With ``--strict``, a source's note (columns the column rule left out, a key's
    name whose values repeat) is an error, as every other warning is: a strict run
    reads exactly the columns it was told to, or says why not, before any work."""
    for source in sources:
        refuse_if_strict(strict, source.notes)


def looks_like(block: np.ndarray) -> str | None:
    """What the first rows of ``block`` (rows on the last axis) look like.

    Returns
    -------
    str or None
        ``"probs"`` when every value is in [0, 1] and every row sums to 1 (within
        :data:`SPACE_TOLERANCE`); ``"log-probs"`` when every value is ≤ 0 and every row's
        logsumexp is 0 (−inf is a probability of 0); None otherwise, for rows of fewer
        than two classes, and for rows holding a NaN or +inf. Only the first
        :data:`SPACE_ROWS` rows (at least one, at most :data:`SPACE_VALUES` values) are read:
        cheap on any block, streamed or whole.
    """
    if block.ndim == 0 or block.shape[-1] < 2 or not block.size:
        return None
    width = block.shape[-1]
    count = max(1, min(SPACE_ROWS, SPACE_VALUES // width))
    # Rows of the first matrix of a stack, by slicing: a reshape of a strided or broadcast
    # block would copy all of it.
    head = block.reshape(1, width) if block.ndim == 1 else block
    while head.ndim > 2:
        head = head[0]
    rows = np.asarray(head[:count], dtype=np.float64)
    with np.errstate(all="ignore"):
        if np.isnan(rows).any() or np.isposinf(rows).any():
            return None
        if rows.min() >= 0 and rows.max() <= 1:
            sums = rows.sum(axis=-1)
            return "probs" if np.all(np.abs(sums - 1) <= SPACE_TOLERANCE) else None
        if rows.max() <= 0:
            sums = np.exp(rows).sum(axis=-1)  # values ≤ 0: no overflow
            return "log-probs" if np.all(np.abs(sums - 1) <= SPACE_TOLERANCE) else None
    return None


def trailing_runs(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """For each row of two ``[rows, tokens]`` arrays, how many of its last positions hold
    the row's last value in both (1 for a row that ends in two different values, 0 for
    an empty row or a NaN last value). Right padding written as a constant shows as a
    run of 2 or more."""
    if a.shape[-1] == 0:
        return np.zeros(a.shape[0], dtype=np.intp)
    same = (a == a[:, -1:]) & (b == b[:, -1:])
    backwards = same[:, ::-1]
    runs: np.ndarray = np.where(backwards.all(axis=1), a.shape[1], np.argmin(backwards, axis=1))
    return runs


@dataclass
class Diagnostics:
    log_target: bool
    input_transformed: bool = False
    target_transformed: bool = False
    counts: dict[str, int] = field(default_factory=dict)
    rows: int = 0
    row_sum_min: float = np.inf
    row_sum_max: float = -np.inf
    spaces_checked: bool = False

    def _add(self, key: str, n: int | np.integer) -> None:
        if n:
            self.counts[key] = self.counts.get(key, 0) + int(n)

    def update(self, x: np.ndarray, t: np.ndarray) -> None:
        """Cheap checks on one block: two reductions and the target's row sums.
        (The causes of a NaN or inf loss are counted by :meth:`explain`.)"""
        self.update_values(x, t)
        if not self.spaces_checked:
            self._check_spaces(x, t)
        if self.target_transformed or not t.ndim or not t.shape[-1]:
            return
        # Row sums in log space cost an exp pass: check the first block only.
        if self.log_target and self.rows:
            return
        with np.errstate(all="ignore"):
            p = np.exp(t) if self.log_target else t
            # A matrix-vector product: the fastest row sum, and precise enough for 1e-3.
            ones = np.ones(p.shape[-1], p.dtype)
            self.update_rows(np.dot(p.reshape(-1, p.shape[-1]), ones).astype(np.float64))

    def _check_spaces(self, x: np.ndarray, t: np.ndarray) -> None:
        """The first block's rows (:func:`looks_like`): probabilities given as the input,
        log-probabilities given as a target without ``log_target``. Counted as findings of
        the block that starts a stream (any task's first), so merged diagnostics keep them."""
        self.spaces_checked = True
        if not self.input_transformed and looks_like(x) == "probs":
            self._add("input_probs", 1)
        if not (self.target_transformed or self.log_target) and looks_like(t) == "log-probs":
            self._add("target_log_probs", 1)

    def update_values(self, x: np.ndarray, t: np.ndarray) -> None:
        """The checks that look at values one by one (any block shape). A negative
        target is counted by :meth:`explain`: it always makes the loss NaN."""
        with np.errstate(all="ignore"):
            if not self.input_transformed and x.size and x.max() > 0:
                self._add("input_positive", np.count_nonzero(x > 0))

    def update_rows(self, sums: np.ndarray) -> None:
        """Row sums of the target (of exp(target) with log_target), however gathered."""
        if self.target_transformed:
            return
        self.rows += sums.size
        self._add("rows_off", np.count_nonzero(~(np.abs(sums - 1) <= ROW_SUM_TOLERANCE)))
        finite = sums[np.isfinite(sums)]
        if finite.size:
            self.row_sum_min = min(self.row_sum_min, float(finite.min()))
            self.row_sum_max = max(self.row_sum_max, float(finite.max()))

    def explain(self, x: np.ndarray, t: np.ndarray) -> None:
        """Count the causes of NaN and inf in a block (run when the loss is not finite)."""
        x, t = np.broadcast_arrays(x, t)
        zero = (t == -np.inf) if self.log_target else (t == 0)
        positive = ~zero & ~np.isnan(t) & ((t > -np.inf) if self.log_target else (t > 0))
        self._add("zero_target_inf_input", np.count_nonzero(zero & np.isinf(x)))
        self._add("input_nan", np.count_nonzero(np.isnan(x)))
        self._add("target_nan", np.count_nonzero(np.isnan(t)))
        self._add("target_posinf", np.count_nonzero(np.isposinf(t)))
        if not self.log_target:
            self._add("target_negative", np.count_nonzero(t < 0))
        self._add("input_neginf", np.count_nonzero(positive & (x == -np.inf)))
        self._add("input_posinf", np.count_nonzero(positive & (x == np.inf)))

    def messages(self) -> list[str]:
        """One sentence per finding, most consequential first."""
        c = self.counts
        out: list[str] = []
        if "target_log_probs" in c:
            out.append(
                "the target looks like log-probabilities (every value <= 0, each row's "
                f"logsumexp 0; a llama.cpp {formats.extensions_text([formats.KLD])} file "
                "holds them): add --log-target"
            )
        zero = "-inf (log 0)" if self.log_target else "0"
        if "zero_target_inf_input" in c:
            out.append(
                f"{_count(c['zero_target_inf_input'], 'element')} with target {zero} and an "
                "infinite input give nan (0 * inf); PyTorch gives nan there too"
            )
        if "target_negative" in c:
            out.append(
                f"{_count(c['target_negative'], 'target value')} negative; PyTorch gives nan "
                "there (xlogy of a negative number)"
            )
        if "target_nan" in c:
            out.append(f"{_count(c['target_nan'], 'target value')} NaN; the loss is nan there")
        if "input_nan" in c:
            out.append(f"{_count(c['input_nan'], 'input value')} NaN; the loss is nan there")
        if "target_posinf" in c:
            out.append(
                f"{_count(c['target_posinf'], 'target value')} +inf; the loss is inf or nan there"
            )
        if "input_neginf" in c:
            out.append(
                f"{_count(c['input_neginf'], 'element')} with input -inf (q = 0) where the target "
                "is positive make the loss +inf"
            )
        if "input_posinf" in c:
            out.append(
                f"{_count(c['input_posinf'], 'element')} with input +inf where the target is "
                "positive make the loss -inf"
            )
        if "input_positive" in c and "input_probs" in c:
            out.append(
                f"{_count(c['input_positive'], 'input value')} positive: the input looks like "
                "probabilities (every value in [0, 1], rows summing to 1), not "
                "log-probabilities; did you mean --input-transform log?"
            )
        elif "input_positive" in c:
            out.append(
                f"{_count(c['input_positive'], 'input value')} positive: the input looks like "
                "probabilities or logits, not log-probabilities; did you mean "
                "--input-transform log (probabilities) or --input-transform log-softmax (logits)?"
            )
        if "rows_off" in c:
            span = (
                f" (sums from {self.row_sum_min:.6g} to {self.row_sum_max:.6g})"
                if self.row_sum_min <= self.row_sum_max
                else ""
            )
            what = "exp(target) rows" if self.log_target else "target rows"
            hint = (
                "--log-target reads log-probabilities"
                if "target_log_probs" in c
                else "--target-transform softmax normalises logits"
            )
            out.append(
                f"{c['rows_off']:,} of {self.rows:,} {what} do not sum to 1{span}: the loss is "
                f"not a KL divergence between distributions ({hint})"
            )
        return out


def _count(n: int, noun: str) -> str:
    """'1 target value is' / '3 target values are' / '2 elements'."""
    if noun == "element":
        return f"{n:,} element" + ("" if n == 1 else "s")
    return f"{n:,} {noun} is" if n == 1 else f"{n:,} {noun}s are"
