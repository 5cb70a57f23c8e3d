"""Every option that takes one of a fixed set of words, as a string :class:`~enum.Enum`.

A request holds these members, never free strings: ``ComputeRequest(reduction="sum")``
is parsed once, when the request is made (:func:`coerce`), and the job compares members
(a member is also the string it names, so the core's functions take it as they are).
The command line declares each option with its enum (``cli.options.choice``): the help
shows the words, the shell completes them (``kldiv compute -r <TAB>``), and a word
that is not one of them is the same one-line error as from a request,
``unknown reduction 'avg'; choose one of none, mean, batchmean, sum``.

This module imports nothing heavy (the CLI declares its options with it at start-up).
The core keeps its own tuples of names (``core.kl.REDUCTIONS``...); the tests check
that each enum lists the same words in the same order.
"""

from __future__ import annotations

from enum import Enum
from typing import Any, TypeVar

from .errors import UsageError

__all__ = [
    "Aggregate",
    "Base",
    "Binning",
    "Choice",
    "Correction",
    "DatetimeRule",
    "EmptySequences",
    "Estimator",
    "Kind",
    "LatentReduction",
    "Missing",
    "OutputFormat",
    "Reduction",
    "ScaleParam",
    "SchemaRule",
    "Tail",
    "Transform",
    "coerce",
    "unknown",
]

C = TypeVar("C", bound="Choice")


class Choice(str, Enum):
    """A word of a fixed set; :meth:`parse` is the one way from text to a member.

    A member is the string it names: it compares, hashes, formats and serialises as
    its word (``enum.StrEnum`` of Python 3.11, which 3.10 lacks).
    """

    def __str__(self) -> str:
        return str(self.value)

    def __format__(self, spec: str) -> str:
        return format(str(self.value), spec)

    @classmethod
    def parse(cls: type[C], value: object) -> C:
        """``value`` as a member of ``cls`` (a member is returned as it is).

        Raises
        ------
        UsageError
            ``unknown <what> 'value'; choose ...`` naming every word of ``cls``.
        """
        if isinstance(value, cls):
            return value
        try:
            return cls(value)
        except ValueError:
            raise UsageError(unknown(cls, value)) from None

    @classmethod
    def words(cls) -> tuple[str, ...]:
        """Every word, in the order the help lists them."""
        return tuple(member.value for member in cls)


def unknown(cls: type[Choice], value: object) -> str:
    """The message for a word that is not one of ``cls``'s: two choices read
    ``choose a or b``, more ``choose one of a, b, c``."""
    words = cls.words()
    listing = " or ".join(words) if len(words) == 2 else "one of " + ", ".join(words)
    return f"unknown {_WHAT[cls]} {value!r}; choose {listing}"


class Reduction(Choice):
    """compute's ``-r``: torch's reductions."""

    NONE = "none"
    MEAN = "mean"
    BATCHMEAN = "batchmean"
    SUM = "sum"


class Transform(Choice):
    """compute's ``--input-transform``/``--target-transform``."""

    NONE = "none"
    SOFTMAX = "softmax"
    LOG_SOFTMAX = "log-softmax"
    LOG = "log"
    EXP = "exp"


class OutputFormat(Choice):
    """``-f/--format``: auto is a table on a terminal, plain otherwise."""

    AUTO = "auto"
    PLAIN = "plain"
    JSON = "json"
    CSV = "csv"
    TABLE = "table"
    MARKDOWN = "markdown"


class Missing(Choice):
    """``--missing``: a missing cell is an error, or NaN."""

    ERROR = "error"
    NAN = "nan"


class Estimator(Choice):
    """estimate's ``-e``: Schulman's k1, k2, k3, |log r|, or all four."""

    K1 = "k1"
    K2 = "k2"
    K3 = "k3"
    ABS = "abs"
    ALL = "all"


class Aggregate(Choice):
    """estimate's ``-a``: verl's ``agg_loss`` modes."""

    TOKEN_MEAN = "token-mean"
    SEQ_MEAN_TOKEN_MEAN = "seq-mean-token-mean"
    SEQ_MEAN_TOKEN_SUM = "seq-mean-token-sum"
    SEQ_MEAN_TOKEN_SUM_NORM = "seq-mean-token-sum-norm"
    SEQ_MEAN_TOKEN_SUM_NORM_VERL07 = "seq-mean-token-sum-norm-verl0.7"
    TOKEN_SUM = "token-sum"
    SUM = "sum"


class EmptySequences(Choice):
    """estimate's ``--empty-sequences``: skip them (verl) or count them as 0 (TRL)."""

    SKIP = "skip"
    ZERO = "zero"


class ScaleParam(Choice):
    """gaussian's ``--scale-param``: what LOGVAR holds."""

    LOGVAR = "logvar"
    LOGSTD = "logstd"
    STD = "std"
    VAR = "var"


class LatentReduction(Choice):
    """gaussian's ``-r``: over the latent dimensions and the batch."""

    BATCH_MEAN = "batch-mean"
    SUM = "sum"
    NONE = "none"
    PER_DIM = "per-dim"
    PER_ROW = "per-row"


class Kind(Choice):
    """compare's ``--as``: what a side holds."""

    LOGITS = "logits"
    LOG_PROBS = "log-probs"
    PROBS = "probs"


class Tail(Choice):
    """compare's and topk's ``--tail``: the mass outside a top-K reference's K classes."""

    BUCKET = "bucket"
    RENORMALIZE = "renormalize"


class Binning(Choice):
    """drift's ``--binning``."""

    QUANTILE = "quantile"
    UNIFORM = "uniform"


class DatetimeRule(Choice):
    """drift's ``--datetime``: date/time columns skipped or binned as numbers."""

    SKIP = "skip"
    NUMERIC = "numeric"


class Correction(Choice):
    """drift's ``--correction`` of p-values."""

    NONE = "none"
    BONFERRONI = "bonferroni"
    BH = "bh"


class Base(Choice):
    """drift's ``--base``: of the logarithm."""

    E = "e"
    TWO = "2"
    TEN = "10"


class SchemaRule(Choice):
    """drift's ``--schema``: schema changes fail the check or are warnings."""

    FAIL = "fail"
    WARN = "warn"


#: How :func:`unknown` names each set in its message.
_WHAT: dict[type[Choice], str] = {
    Reduction: "reduction",
    Transform: "transform",
    OutputFormat: "output format",
    Missing: "missing-value policy",
    Estimator: "estimator",
    Aggregate: "aggregate",
    EmptySequences: "--empty-sequences",
    ScaleParam: "--scale-param",
    LatentReduction: "reduction",
    Kind: "kind",
    Binning: "binning",
    DatetimeRule: "--datetime",
    Correction: "--correction",
    Base: "--base",
    SchemaRule: "--schema",
    Tail: "--tail",
}


def coerce(request: Any, **fields: type[Choice]) -> None:
    """Parse the named fields of a frozen request dataclass into their enums, in place
    (from its ``__post_init__``): a request built from strings holds members."""
    for name, cls in fields.items():
        object.__setattr__(request, name, cls.parse(getattr(request, name)))
