"""What ``kldiv compare`` was asked (:class:`CompareRequest`), checked before anything is
read, and where ``-o`` puts the per-row measures."""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass

from ..core.compare import KINDS
from ..core.stats import FRAC_ABOVE
from ..core.topk import TAILS
from ..errors import UsageError
from ..io import formats
from ..io.formats import STREAMED_KINDS, kinds_text, output_extension_kind
from ..io.sources import ReadOptions
from ..io.writers import check_page, guard, is_stream, output_kind, stream_fd
from .checks import temperature
from .compare_inputs import side_options
from .compare_stats import statistic_names
from .gates import Gate, check_names, check_thresholds, parse_gates
from .slices import Slices, gate_names

__all__ = ["GATE_HINT", "KLD_TEXT", "CompareRequest", "rows_kind", "rows_on_stdout"]

#: The hint of an unknown gate name.
GATE_HINT = "use a name from the JSON, e.g. kl.p99, js.mean, top1_agreement"


@dataclass(frozen=True)
class CompareRequest:
    """What ``kldiv compare`` was asked; :meth:`validate` checks it before anything is read."""

    reference: str
    candidate: str
    #: What each side holds (see :data:`kldiv_cli.core.compare.KINDS`); None: logits,
    #: or log-probs for a .kld file.
    reference_as: str | None = None
    candidate_as: str | None = None
    temperature: float = 1.0
    #: The tensor (.safetensors) or array (.npz) of both sides; a side's own key wins.
    key: str | None = None
    reference_key: str | None = None
    candidate_key: str | None = None
    #: The columns of table inputs (CSV, Parquet...), both sides.
    columns: str | None = None
    delimiter: str | None = None
    missing: str = "error"
    #: The next-token id of each row (a file any reader opens); .kld inputs carry theirs.
    tokens: str | None = None
    tokens_column: str | None = None
    #: Rows whose token is this value are left out of every statistic.
    ignore_index: int | None = None
    #: ``--fail-above/--fail-below NAME=X`` (:func:`~kldiv_cli.jobs.gates.parse_gates`);
    #: the library may give the specs as text instead (``fail_above=("kl.p99=0.1",)``).
    gates: tuple[Gate, ...] = ()
    fail_above: tuple[str, ...] = ()
    fail_below: tuple[str, ...] = ()
    #: A .npy, .csv or .parquet file for the per-row measures.
    output: str | None = None
    chunk_rows: int | None = None
    #: Threads measuring blocks at once (default: every core).
    threads: int | None = None
    #: ``--strict``: a warning (a side that looks like probabilities...) is an error.
    strict: bool = False
    #: ``--frac-above``: each measure block reports the share of rows above each.
    frac_above: tuple[float, ...] = FRAC_ABOVE
    #: ``--top N``: report the N rows of largest KL (None: none).
    top: int | None = None
    #: More candidates, measured against the same reference in the same pass.
    others: tuple[str, ...] = ()
    #: ``--label``: a name for each candidate, in order (default: the file names).
    labels: tuple[str, ...] = ()
    #: ``--positions``, ``--last``, ``--token-ids``, ``--by``...: the statistics of parts
    #: of the rows too (see :mod:`.slices`).
    slices: Slices = Slices()
    #: ``--html PATH``: a self-contained page of the statistics and figures; ``--size
    #: LABEL=BYTES`` (each candidate's size) adds mean KL against size.
    html: str | None = None
    sizes: tuple[str, ...] = ()
    #: A top-K reference: how the mass outside its K classes is treated (see
    #: :data:`kldiv_cli.core.topk.TAILS`), and the arrays of a .npz/safetensors one.
    tail: str = "bucket"
    indices_key: str | None = None
    logprobs_key: str | None = None

    def __post_init__(self) -> None:
        if self.fail_above or self.fail_below:
            parsed = parse_gates(self.fail_above, self.fail_below)
            object.__setattr__(self, "gates", (*self.gates, *parsed))
            object.__setattr__(self, "fail_above", ())
            object.__setattr__(self, "fail_below", ())

    @property
    def candidates(self) -> tuple[str, ...]:
        """Every candidate path, the first one first."""
        return (self.candidate, *self.others)

    @property
    def candidate_labels(self) -> list[str]:
        """Each candidate's label: ``--label`` if given, else its file name."""
        return list(self.labels) or [
            "<stdin>" if c == "-" else os.path.basename(c) for c in self.candidates
        ]

    @property
    def reference_options(self) -> ReadOptions:
        return self._side(self.reference, self.reference_key)

    def options_of(self, candidate: str) -> ReadOptions:
        """How a candidate file is read."""
        return self._side(candidate, self.candidate_key)

    @property
    def tokens_options(self) -> ReadOptions:
        return ReadOptions(None, None, self.tokens_column, self.delimiter, self.missing)

    @property
    def inputs(self) -> tuple[str, ...]:
        """Every input path (the output must be none of them)."""
        return (self.reference, *self.candidates, *([self.tokens] if self.tokens else []))

    def _side(self, path: str, own_key: str | None) -> ReadOptions:
        # --key and --columns apply to the sides they can: --key to files of several
        # arrays, --columns to tables.
        options = side_options(path, self.key, self.columns, self.delimiter, self.missing)
        # A side's own key applies whatever the file is (a wrong one is an error there).
        return dataclasses.replace(options, key=own_key) if own_key else options

    def validate(self) -> None:
        """Usage errors, in the order a user meets them; the output is checked against the
        inputs (:func:`kldiv_cli.io.writers.guard`) last."""
        for option, kind in (
            ("--reference-as", self.reference_as),
            ("--candidate-as", self.candidate_as),
        ):
            if kind is not None and kind not in KINDS:
                raise UsageError(
                    f"{option}: unknown kind {kind!r}; choose one of {', '.join(KINDS)}"
                )
        temperature(self.temperature)
        for option, value in (
            ("--chunk-rows", self.chunk_rows),
            ("--threads", self.threads),
            ("--top", self.top),
        ):
            if value is not None and value < 1:
                raise UsageError(f"{option} must be at least 1, got {value}")
        if self.labels and len(self.labels) != len(self.candidates):
            raise UsageError(
                f"--label: {len(self.labels)} labels for {len(self.candidates)} candidates; "
                "give one per candidate, in order"
            )
        if len(set(self.candidate_labels)) != len(self.candidates):
            raise UsageError(
                "two candidates have the same label; name them with --label (one per candidate)"
            )
        if self.others and self.output is not None:
            raise UsageError("-o writes the per-row measures of one candidate; give one candidate")
        if self.tokens is None and self.tokens_column is not None:
            raise UsageError("--tokens-column selects a column of --tokens FILE; give the file")
        # Every name a run with tokens has; whether this run has them is known once open.
        check_thresholds(self.frac_above)
        self.slices.validate()
        names = statistic_names(True, self.frac_above, True)
        check_names(self.gates, names + gate_names(self.slices.names(), names), GATE_HINT)
        self._check_kld_sides()
        if self.output is not None:
            _check_streamed(self.output)
        if self.tail not in TAILS:
            raise UsageError(f"--tail: unknown {self.tail!r}; choose one of {', '.join(TAILS)}")
        self.size_of()
        if self.html is not None:
            check_page(self.html)
        guard([self.output, self.html], self.inputs)

    def size_of(self) -> dict[str, float]:
        """``--size LABEL=BYTES`` by label (checked: known labels, sizes > 0)."""
        if self.sizes and self.html is None:
            raise UsageError("--size labels the mean-KL-against-size plot of --html; give --html")
        out: dict[str, float] = {}
        for spec in self.sizes:
            label, _, text = spec.rpartition("=")
            try:
                size = float(text)
            except ValueError:
                size = math.nan
            if not label or not (math.isfinite(size) and size > 0):
                raise UsageError(f"--size takes LABEL=BYTES (a number > 0), got {spec!r}")
            if label not in self.candidate_labels:
                known = ", ".join(self.candidate_labels)
                raise UsageError(f"--size {label}: no candidate has that label ({known})")
            out[label] = size
        return out

    def _check_kld_sides(self) -> None:
        """A .kld side holds log-probs in one array: ``--as`` and ``--key`` do not apply."""
        for path, kind, option in (
            (self.reference, self.reference_as, "--reference-as"),
            *((c, self.candidate_as, "--candidate-as") for c in self.candidates),
        ):
            if formats.kind_of(path) == formats.KLD and kind not in (None, "log-probs"):
                raise UsageError(
                    f"{path}: a {KLD_TEXT} file holds log-probs; {option} {kind} does not apply"
                )
        for path, key in (
            (self.reference, self.reference_key),
            *((c, self.candidate_key) for c in self.candidates),
        ):
            if formats.kind_of(path) == formats.KLD and key is not None:
                raise UsageError(f"{path}: a {KLD_TEXT} file holds one array; --key does not apply")


KLD_TEXT = formats.extensions_text([formats.KLD])


def _check_streamed(output: str) -> None:
    """``-o`` takes the per-row measures: a file of a streamed kind, or a stream (``-``,
    ``/dev/stdout``, ``/dev/null``, a FIFO), written as :func:`rows_kind` says."""
    if output == "-" or is_stream(output):
        return
    if output_extension_kind(output) not in STREAMED_KINDS:
        raise UsageError(
            f"-o {output}: the per-row measures go to a {kinds_text(STREAMED_KINDS)} file, "
            "or as CSV to a stream such as - or /dev/stdout"
        )


def rows_kind(output: str, fmt: str | None) -> str:
    """How ``-o`` writes the per-row measures: the kind its extension names, and a stream
    (``-`` is ``"stdout"``) CSV unless ``fmt`` (the run's ``--format``) or the stream's
    own extension (a FIFO ``rows.parquet``) names another streamed kind."""
    return output_kind(output, ("csv", "npy", "parquet"), "-o", fmt)


def rows_on_stdout(output: str | None) -> bool:
    """Whether ``-o`` puts the per-row measures on stdout (``-``, ``/dev/stdout``,
    ``/dev/fd/1``): the statistics then go to stderr, so stdout holds one table."""
    return output is not None and stream_fd(output) == 1
