"""The ``compute`` job: read -> convert -> compute. No printing here (see render/writers)."""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import numpy as np

from .core import REDUCTIONS, broadcast_shape, kl_div, pointwise, result_dtype
from .diagnostics import Diagnostics
from .errors import InputError, UsageError
from .readers import ReadOptions, Source, open_source
from .transforms import TRANSFORMS, apply_transform


@dataclass(frozen=True)
class ComputeRequest:
    input: str
    target: str
    input_options: ReadOptions = ReadOptions()
    target_options: ReadOptions = ReadOptions()
    reduction: str = "mean"
    log_target: bool = False
    input_transform: str = "none"
    target_transform: str = "none"
    dim: int = -1
    temperature: float = 1.0
    t2_scale: bool = False
    per_row: bool = False
    top: int | None = None
    target_labels: bool = False

    def validate(self) -> None:
        if self.reduction not in REDUCTIONS:
            raise UsageError(
                f"unknown reduction {self.reduction!r}; choose one of {', '.join(REDUCTIONS)}"
            )
        for name in (self.input_transform, self.target_transform):
            if name not in TRANSFORMS:
                raise UsageError(f"unknown transform {name!r}; choose one of {', '.join(TRANSFORMS)}")
        if not (math.isfinite(self.temperature) and self.temperature > 0):
            raise UsageError(f"--temperature must be a finite number > 0, got {self.temperature}")
        if self.top is not None and self.top < 1:
            raise UsageError(f"--top must be at least 1, got {self.top}")
        if self.input == "-" and self.target == "-":
            raise UsageError("only one of INPUT and TARGET can be '-' (stdin)")
        if self.target_labels and self.log_target:
            raise UsageError("--target-labels gives probabilities (one-hot); drop --log-target")


@dataclass
class ComputeResult:
    request: ComputeRequest
    loss: np.generic | np.ndarray
    input: dict
    target: dict
    dtype: str
    shape: tuple[int, ...]
    per_row: np.ndarray | None = None
    top: list[tuple[int, float]] = field(default_factory=list)
    diagnostics: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def gate_value(self) -> float:
        """What ``--fail-above`` compares: the loss, or the largest row with ``--per-row``."""
        values = self.per_row if self.per_row is not None else np.asarray(self.loss)
        values = np.asarray(values, dtype=np.float64)
        if values.size == 0:
            return float(np.nan) if values.ndim == 0 else 0.0
        if np.isnan(values).any():
            return math.nan
        return float(values.max())


def _one_hot(labels: np.ndarray, width: int, label: str) -> np.ndarray:
    flat = labels.reshape(-1) if labels.ndim <= 1 or labels.shape[-1] == 1 else None
    if flat is None:
        raise InputError(label, f"--target-labels needs one column of class indices, got shape {labels.shape}")
    bad = ~np.isfinite(flat) | (flat != np.round(flat))
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise InputError(label, f"row {row}: label {flat[row]:g} is not an integer class index")
    out_of_range = (flat < 0) | (flat >= width)
    if out_of_range.any():
        row = int(np.flatnonzero(out_of_range)[0])
        raise InputError(
            label,
            f"row {row}: label {int(flat[row])} is out of range for {width} classes (0..{width - 1})",
        )
    hot = np.zeros((flat.size, width), dtype=np.float64)
    hot[np.arange(flat.size), flat.astype(np.intp)] = 1.0
    return hot


def open_sources(request: ComputeRequest, stdin: bytes | None) -> tuple[Source, Source]:
    request.validate()
    return (
        open_source(request.input, request.input_options, stdin),
        open_source(request.target, request.target_options, stdin),
    )


def convert(request: ComputeRequest, x: np.ndarray, t: np.ndarray, labels_source: str):
    """Labels to one-hot, then the requested transforms (temperature on (log-)softmax only)."""
    if request.target_labels:
        t = _one_hot(t, x.shape[-1] if x.ndim else 1, labels_source)
    x = _transform(request.input_transform, x, request)
    t = _transform(request.target_transform, t, request)
    return x, t


def _transform(name: str, a: np.ndarray, request: ComputeRequest) -> np.ndarray:
    if name == "none":
        return a
    if a.ndim and not -a.ndim <= request.dim < a.ndim:
        raise UsageError(f"--dim {request.dim} is out of range for data of shape {a.shape}")
    return apply_transform(name, a, request.dim, request.temperature)


def compute(request: ComputeRequest, stdin: bytes | None = None) -> ComputeResult:
    source_x, source_t = open_sources(request, stdin)
    x, t = source_x.read(), source_t.read()
    x, t = convert(request, x, t, source_t.label)
    try:
        shape = broadcast_shape(x.shape, t.shape)
    except ValueError:
        raise InputError(
            f"{source_x.label} and {source_t.label}",
            f"shapes do not match: input {x.shape}, target {t.shape}",
        ) from None
    diagnostics = Diagnostics(
        request.log_target,
        input_transformed=request.input_transform != "none",
        target_transformed=request.target_transform != "none" or request.target_labels,
    )
    diagnostics.update(x, t)
    scale = request.temperature**2 if request.t2_scale else 1.0
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loss = kl_div(x, t, request.reduction, request.log_target)
    dtype = result_dtype(x, t)
    per_row = None
    if request.per_row or request.top:
        if not x.ndim and not t.ndim:
            per_row = np.asarray(pointwise(x, t, request.log_target, dtype)).reshape(1)
        else:
            terms = pointwise(x, t, request.log_target, dtype)
            per_row = terms.sum(axis=-1, dtype=np.float64).astype(dtype).reshape(-1)
    if scale != 1.0:
        loss = (np.asarray(loss) * dtype.type(scale)).astype(dtype)[()]
        per_row = None if per_row is None else (per_row * dtype.type(scale)).astype(dtype)
    top: list[tuple[int, float]] = []
    if request.top and per_row is not None:
        order = np.argsort(-np.nan_to_num(per_row.astype(np.float64), nan=np.inf), kind="stable")
        top = [(int(i), float(per_row[i])) for i in order[: request.top]]
    return ComputeResult(
        request=request,
        loss=loss,
        input=source_x.describe(),
        target=source_t.describe(),
        dtype=str(dtype),
        shape=tuple(shape),
        per_row=per_row,
        top=top,
        diagnostics=diagnostics.messages(),
        warnings=[str(w.message) for w in caught],
    )
