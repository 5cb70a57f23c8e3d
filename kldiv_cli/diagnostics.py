"""Plain-language diagnostics about the data behind a loss; they never change the number.

Counts are accumulated chunk by chunk (:meth:`Diagnostics.update`), so streamed
files get the same messages as files read whole.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# Target rows whose sum is further than this from 1 are reported.
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

    def _add(self, key: str, n) -> None:
        n = int(n)
        if n:
            self.counts[key] = self.counts.get(key, 0) + n

    def update(self, x: np.ndarray, t: np.ndarray) -> None:
        """Count what is unusual in one block of (broadcast-compatible) input and target."""
        with np.errstate(all="ignore"):
            if not self.input_transformed:
                self._add("input_positive", np.count_nonzero(x > 0))
            self._add("input_nan", np.count_nonzero(np.isnan(x)))
            self._add("target_nan", np.count_nonzero(np.isnan(t)))
            if self.log_target:
                self._add("target_posinf", np.count_nonzero(np.isposinf(t)))
                p = np.exp(t)
            else:
                self._add("target_negative", np.count_nonzero(t < 0))
                self._add("target_posinf", np.count_nonzero(np.isposinf(t)))
                p = t
            if p.ndim and p.shape[-1] and not self.target_transformed:
                sums = p.sum(axis=-1, dtype=np.float64).reshape(-1)
                finite = sums[np.isfinite(sums)]
                self.rows += sums.size
                self._add("rows_off", np.count_nonzero(np.abs(sums - 1) > ROW_SUM_TOLERANCE))
                if finite.size:
                    self.row_sum_min = min(self.row_sum_min, float(finite.min()))
                    self.row_sum_max = max(self.row_sum_max, float(finite.max()))
            zero = (t == -np.inf) if self.log_target else (t == 0)
            self._add("zero_target_inf_input", np.count_nonzero(zero & np.isinf(x)))
            self._add("input_neginf_target_pos", np.count_nonzero(~zero & (x == -np.inf) & (t > (-np.inf if self.log_target else 0))))

    def messages(self) -> list[str]:
        """One sentence per finding, most consequential first."""
        c = self.counts
        out: list[str] = []
        zero = "-inf (log 0)" if self.log_target else "0"
        if "zero_target_inf_input" in c:
            out.append(
                f"{_n(c['zero_target_inf_input'], 'element')} with target {zero} and an infinite "
                "input give nan (0 * inf); PyTorch gives nan there too"
            )
        if "target_negative" in c:
            out.append(
                f"{_n(c['target_negative'], 'target value')} negative; PyTorch gives nan for "
                "those (xlogy of a negative number)"
            )
        if "target_nan" in c:
            out.append(f"{_n(c['target_nan'], 'target value')} NaN; the loss is nan there")
        if "input_nan" in c:
            out.append(f"{_n(c['input_nan'], 'input value')} NaN; the loss is nan there")
        if "target_posinf" in c:
            out.append(f"{_n(c['target_posinf'], 'target value')} +inf; the loss is inf or nan there")
        if "input_neginf_target_pos" in c:
            out.append(
                f"{_n(c['input_neginf_target_pos'], 'element')} with input -inf (q = 0) where the "
                "target is positive make the divergence infinite"
            )
        if "input_positive" in c:
            out.append(
                f"{_n(c['input_positive'], 'input value')} positive: the input looks like "
                "probabilities or logits, not log-probabilities; did you mean "
                "--input-transform log (probabilities) or --input-transform log-softmax (logits)?"
            )
        if "rows_off" in c:
            span = (
                f" (sums range from {self.row_sum_min:.6g} to {self.row_sum_max:.6g})"
                if self.row_sum_min <= self.row_sum_max
                else ""
            )
            hint = " with --log-target" if self.log_target else ""
            out.append(
                f"{c['rows_off']} of {self.rows} target rows{hint} do not sum to 1{span}; "
                "the result is not a KL divergence between distributions "
                "(--target-transform softmax normalises logits)"
            )
        return out


def _n(count: int, noun: str) -> str:
    verb = "are" if count != 1 and noun.endswith("value") else "is" if noun.endswith("value") else ""
    plural = noun if count == 1 else noun + "s"
    return f"{count:,} {plural}" + (f" {verb}" if verb else "")
