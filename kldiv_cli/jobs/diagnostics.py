"""Plain-language diagnostics about the data behind a loss; they never change the number.

They are gathered chunk by chunk, so streamed files get the same messages as
files read whole. :meth:`Diagnostics.update` does only cheap passes (a max, a
min, row sums); :meth:`Diagnostics.explain` counts the causes of NaN and inf,
and is called only for chunks whose loss is not finite.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

#: Target rows whose sum is further than this from 1 are reported.
ROW_SUM_TOLERANCE = 1e-3


@dataclass
class Diagnostics:
    log_target: bool
    input_transformed: bool = False
    target_transformed: bool = False
    counts: dict[str, int] = field(default_factory=dict)
    rows: int = 0
    row_sum_min: float = np.inf
    row_sum_max: float = -np.inf

    def _add(self, key: str, n: int | np.integer) -> None:
        if n:
            self.counts[key] = self.counts.get(key, 0) + int(n)

    def update(self, x: np.ndarray, t: np.ndarray) -> None:
        """Cheap checks on one block: two reductions and the target's row sums.
        (The causes of a NaN or inf loss are counted by :meth:`explain`.)"""
        self.update_values(x, t)
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
        if "input_positive" in c:
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
            out.append(
                f"{c['rows_off']:,} of {self.rows:,} {what} do not sum to 1{span}: the loss is "
                "not a KL divergence between distributions (--target-transform softmax "
                "normalises logits)"
            )
        return out


def _count(n: int, noun: str) -> str:
    """'1 target value is' / '3 target values are' / '2 elements'."""
    if noun == "element":
        return f"{n:,} element" + ("" if n == 1 else "s")
    return f"{n:,} {noun} is" if n == 1 else f"{n:,} {noun}s are"
