"""What ``kldiv drift`` and ``kldiv profile`` are asked: the column rules, the requests
(checked by ``validate()`` before anything is read) and the parsers of their options."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass

from ..errors import UsageError
from ..io.drift_tables import is_profile
from ..text import clean
from .checks import Checked
from .drift_groups import Grouping
from .drift_measures import METRICS, P_METRICS
from .drift_profile import Role

MAX_BINS = 10_000
#: The most segments ``--max-segments`` may ask for (each is a check of every column).
MAX_SEGMENTS_LIMIT = 1_000
CORRECTIONS = ("none", "bonferroni", "bh")
DEFAULT_ALPHA = 0.05
SCHEMA_POLICIES = ("fail", "warn")
MAX_CALIBRATE = 10_000
#: ``--threshold learned`` without K: the mean + 3 standard deviations (NannyML's).
DEFAULT_K = 3.0
BASES = {"e": math.e, "2": 2.0, "10": 10.0}


def names_of(values: Sequence[str]) -> tuple[str, ...]:
    """Options given several times and/or comma-separated, as one tuple of names/globs."""
    return tuple(t.strip() for v in values for t in v.split(",") if t.strip())


@dataclass(frozen=True)
class ColumnRules:
    """Which columns, and how each is binned: shared by ``drift`` and ``profile``."""

    columns: str | None = None
    exclude: tuple[str, ...] = ()
    categorical: tuple[str, ...] = ()
    numeric: tuple[str, ...] = ()
    skip: tuple[str, ...] = ()
    datetime: str = "skip"
    bins: int = 10
    binning: str = "quantile"
    max_categories: int = 50

    def validate(self) -> None:
        if not 2 <= self.bins <= MAX_BINS:
            raise UsageError(f"--bins must be between 2 and {MAX_BINS}, got {self.bins}")
        if self.binning not in ("quantile", "uniform"):
            raise UsageError(f"unknown binning {self.binning!r}; choose quantile or uniform")
        if self.datetime not in ("skip", "numeric"):
            raise UsageError(f"--datetime takes skip or numeric, got {self.datetime!r}")
        if not 1 <= self.max_categories <= MAX_BINS:
            raise UsageError(
                f"--max-categories must be between 1 and {MAX_BINS}, got {self.max_categories}"
            )
        both = set(names_of(self.categorical)) & set(names_of(self.numeric))
        if both:
            raise UsageError(
                f"{clean(sorted(both)[0])!r} is given to both --categorical and --numeric"
            )

    def select(self, label: str, names: list[str], known: Sequence[str] = ()) -> list[str]:
        """The columns to check, in table order: ``columns`` minus ``exclude``. A pattern
        that matches none of ``names`` nor ``known`` (the columns of either side) is an
        error."""
        import fnmatch

        from ..io.sources import select_columns

        chosen = [names[i] for i in select_columns(label, names, self.columns, [True] * len(names))]
        for option, patterns in (
            ("--exclude", self.exclude),
            ("--skip", self.skip),
            ("--categorical", self.categorical),
            ("--numeric", self.numeric),
        ):
            for pattern in names_of(patterns):
                if not any(fnmatch.fnmatchcase(n, pattern) for n in [*names, *known]):
                    raise UsageError(f"{option}: no column matches {clean(pattern)!r}")
        excluded = names_of(self.exclude)
        kept = [n for n in chosen if not any(fnmatch.fnmatchcase(n, p) for p in excluded)]
        if not kept:
            raise UsageError(f"{clean(label)}: no column left to check after --exclude")
        return kept

    def override(self, name: str) -> Role | None:
        """The role a user gave a column, if any."""
        import fnmatch

        for role, patterns in (
            (Role.SKIPPED, self.skip),
            (Role.CATEGORICAL, self.categorical),
            (Role.NUMERIC, self.numeric),
        ):
            if any(fnmatch.fnmatchcase(name, p) for p in names_of(patterns)):
                return role
        return None


def _check_extension(path: str | None, option: str, allowed: tuple[str, ...]) -> None:
    from ..io.writers import is_stream

    if not path or path == "-" or is_stream(path):  # /dev/stderr: any name will do
        return
    if os.path.splitext(path)[1].lower() not in allowed:
        raise UsageError(f"{option} writes {' or '.join(allowed)} files, got {clean(path)!r}")


@dataclass(frozen=True)
class DriftRequest(Checked):
    """Everything ``kldiv drift`` was asked, checked by :meth:`validate`."""

    reference: tuple[str, ...]
    current: tuple[str, ...]
    rules: ColumnRules = ColumnRules()
    metric: str = "kl"
    base: str = "e"
    epsilon: float = 1e-4
    threshold: float = 0.1
    thresholds: str | None = None
    fail_on: str = "any"
    max_missing_change: float = 0.05
    max_new_category_share: float | None = None
    #: Schema changes (columns removed, added, of another type): fail or warn.
    schema: str = "fail"
    #: The level of the p-value tests (``--metric ks|chi2``; default DEFAULT_ALPHA) and
    #: how the p-values are corrected for the number of columns tested.
    alpha: float | None = None
    correction: str = "none"
    #: ``--threshold learned[:K]``: gate each column at its calibrated mean + K sigma.
    learned: float | None = None
    #: ``--warn-threshold X|learned[:K]``: the warn tier (X, or K for a learned one).
    warn_threshold: float | None = None
    warn_learned: float | None = None
    #: ``--window COL:PERIOD`` / ``--segment COL``: a verdict per group of current rows.
    grouping: Grouping | None = None
    delimiter: str | None = None
    #: The array of a file of several (.npz, safetensors): ``key`` for both sides, or
    #: each side's own (``--reference-key``, ``--current-key``).
    key: str | None = None
    reference_key: str | None = None
    current_key: str | None = None
    top: int = 3
    output: str | None = None
    junit: str | None = None
    html: str | None = None
    command: str = ""

    @property
    def level(self) -> float:
        """The p-value tests' level: ``--alpha``, else :data:`DEFAULT_ALPHA`."""
        return DEFAULT_ALPHA if self.alpha is None else self.alpha

    @property
    def inputs(self) -> tuple[str | None, ...]:
        """The paths the job reads (``-``: stdin)."""
        return (*self.reference, *self.current)

    def check(self) -> None:
        """Options first, then the output guard: nothing is read before this passes."""
        self.rules.validate()
        self._validate_metric()
        self._validate_learned()
        self._validate_numbers()
        parse_fail_on(self.fail_on)
        if self.schema not in SCHEMA_POLICIES:
            raise UsageError(f"--schema takes fail or warn, got {clean(self.schema)!r}")
        self._validate_sides()
        from ..io.formats import JUNIT_EXTENSIONS, PAGE_EXTENSIONS
        from ..io.writers import guard

        _check_extension(self.junit, "--junit", JUNIT_EXTENSIONS)
        _check_extension(self.html, "--html", PAGE_EXTENSIONS)
        guard(
            [self.output, self.junit, self.html],
            [*self.reference, *self.current, self.thresholds],
            ("json", "csv"),
        )

    def _validate_metric(self) -> None:
        if self.metric not in METRICS:
            raise UsageError(f"unknown metric {self.metric!r}; choose one of {', '.join(METRICS)}")
        if self.metric in P_METRICS:
            if not 0 < self.level < 1:
                raise UsageError(f"--alpha must be in (0, 1), got {self.alpha}")
            if self.thresholds:
                raise UsageError(
                    f"--metric {self.metric} is a p-value test gated by --alpha; "
                    "--thresholds sets thresholds of distances"
                )
        elif self.alpha is not None or self.correction != "none":
            raise UsageError(
                "--alpha and --correction apply to the p-value tests: give --metric ks or chi2"
            )
        if self.correction not in CORRECTIONS:
            raise UsageError(
                f"--correction takes none, bonferroni or bh, got {clean(self.correction)!r}"
            )

    def _validate_learned(self) -> None:
        """``--threshold learned`` and ``--warn-threshold``: a distance, from a profile."""
        if self.learned is not None:
            if not (math.isfinite(self.learned) and self.learned >= 0):
                raise UsageError(f"--threshold learned:K takes a K >= 0, got {self.learned}")
            if self.metric in P_METRICS:
                raise UsageError(
                    f"--metric {self.metric} is gated by --alpha, not learned thresholds"
                )
            if not is_profile(self.reference):
                raise UsageError(
                    "--threshold learned needs a profile made with 'kldiv profile --calibrate N'"
                )
        if self.warn_threshold is None and self.warn_learned is None:
            return
        if self.metric in P_METRICS:
            raise UsageError(f"--warn-threshold does not apply to --metric {self.metric}")
        if self.warn_learned is not None and not is_profile(self.reference):
            raise UsageError(
                "--warn-threshold learned needs a profile made with 'kldiv profile --calibrate N'"
            )
        if self.warn_threshold is not None and not self.warn_threshold >= 0:
            raise UsageError(f"--warn-threshold must be >= 0, got {self.warn_threshold}")

    def _validate_numbers(self) -> None:
        if self.base not in BASES:
            raise UsageError(f"--base takes e, 2 or 10, got {self.base!r}")
        if not (math.isfinite(self.epsilon) and 0 <= self.epsilon < 1):
            raise UsageError(f"--epsilon must be in [0, 1), got {self.epsilon}")
        if not self.threshold >= 0:
            raise UsageError(f"--threshold must be a number >= 0, got {self.threshold}")
        if not 0 <= self.max_missing_change <= 1:
            raise UsageError(
                f"--max-missing-change must be a share in [0, 1], got {self.max_missing_change}"
            )
        share = self.max_new_category_share
        if share is not None and not 0 <= share <= 1:
            raise UsageError(f"--max-new-category-share must be a share in [0, 1], got {share}")

    def _validate_sides(self) -> None:
        if not self.reference or not self.current:
            raise UsageError("give a REFERENCE and a CURRENT table")
        g = self.grouping
        if g is not None and g.reference_segment and is_profile(self.reference):
            raise UsageError(
                "--reference-segment splits the reference's rows: give the reference table, "
                "not a profile"
            )
        if g is not None and not 1 <= g.max_segments <= MAX_SEGMENTS_LIMIT:
            raise UsageError(
                f"--max-segments must be between 1 and {MAX_SEGMENTS_LIMIT}, got {g.max_segments}"
            )
        if "-" in self.reference and "-" in self.current:
            raise UsageError("only one of REFERENCE and CURRENT can be '-' (stdin)")
        if (len(self.reference) > 1 and "-" in self.reference) or (
            len(self.current) > 1 and "-" in self.current
        ):
            raise UsageError("'-' (stdin) cannot be part of a list of files")


@dataclass(frozen=True)
class ProfileRequest(Checked):
    """Everything ``kldiv profile`` was asked."""

    reference: tuple[str, ...]
    rules: ColumnRules = ColumnRules()
    delimiter: str | None = None
    #: The array of a file of several (.npz, safetensors).
    key: str | None = None
    output: str | None = None
    #: ``--calibrate N``: random halves of the reference per column, and their seed.
    calibrate: int = 0
    calibrate_seed: int = 0
    #: ``--calibrate-by COL:PERIOD``: consecutive time chunks (the last ``calibrate``)
    #: against the whole reference instead of random halves.
    calibrate_by: Grouping | None = None

    @property
    def inputs(self) -> tuple[str | None, ...]:
        """The paths the job reads (``-``: stdin)."""
        return self.reference

    def check(self) -> None:
        self.rules.validate()
        if not 0 <= self.calibrate <= MAX_CALIBRATE:
            raise UsageError(f"--calibrate takes 0 to {MAX_CALIBRATE} splits, got {self.calibrate}")
        if self.calibrate == 1:
            raise UsageError("--calibrate needs at least 2 splits for a standard deviation")
        if self.calibrate_by is not None and not self.calibrate:
            raise UsageError("--calibrate-by needs --calibrate N (the chunks used, at most N)")
        from ..io.writers import guard

        guard([self.output], list(self.reference), ("json",))


def parse_threshold(text: str, option: str = "--threshold") -> tuple[float, float | None]:
    """``--threshold`` (or ``--warn-threshold``): a number (the fixed threshold), or
    ``learned`` / ``learned:K`` (K standard deviations, default 3; the fixed default 0.1
    stays the fallback)."""
    kind, colon, k = text.strip().partition(":")
    if kind == "learned":
        try:
            return 0.1, float(k) if colon else DEFAULT_K
        except ValueError:
            raise UsageError(f"{option} learned:K takes a number K, got {clean(text)!r}") from None
    try:
        return float(text), None
    except ValueError:
        raise UsageError(f"{option} takes a number or learned[:K], got {clean(text)!r}") from None


def parse_fail_on(rule: str) -> tuple[str, float]:
    """'any' | 'share:F' (0 < F <= 1) | 'count:N' (N >= 1)."""
    if rule == "any":
        return "any", 1
    kind, _, value = rule.partition(":")
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if kind == "share" and 0 < number <= 1:
        return kind, number
    if kind == "count" and number >= 1 and number.is_integer():
        return kind, number
    raise UsageError(
        f"--fail-on takes any, share:F (0 < F <= 1) or count:N (N >= 1), got {clean(rule)!r}"
    )
