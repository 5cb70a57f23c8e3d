"""Slices: the same statistics on parts of the rows (``compare``) or tokens (``estimate``).

Each option adds its own slices (they are not intersected with each other):

* ``--positions A:B``: positions A ≤ position < B (either end may be left out);
* ``--last K``: the last K rows (tokens) counted in each sequence, by position;
* ``--token-ids IDS`` / ``--exclude-token-ids IDS``: rows whose token is (is not) one of
  IDS, a comma list or ``@FILE`` (ids separated by commas, spaces or new lines);
* ``--by confidence``: five buckets of the reference's confidence c, [0, 0.2), [0.2, 0.4),
  [0.4, 0.6), [0.6, 0.8), [0.8, 1] (compare: its top-1 probability; estimate: the
  reference's probability of the sampled token, exp(REF_LOGP));
* ``--by position:N``: N equal bands of position, from the first position counted to the
  last (band i holds ``lo + ⌊i·span/N⌋ ≤ position < lo + ⌊(i+1)·span/N⌋``).

A slice is named (``positions 0:128``, ``last 64``, ``token-ids 2,13``, ``confidence
0.8-1``, ``position 2/4``), and gates name its numbers ``slices[NAME].STAT``
(``slices[last 64].kl.p99``), as :func:`kldiv_cli.jobs.gates.flatten` names a list of
named objects. Only masks of per-row values are made here: memory is per row.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import UsageError
from ..text import clean

__all__ = ["CONFIDENCE_EDGES", "Slices", "gate_names", "parse_ids"]

#: The edges of the five confidence buckets (the last one closed at 1).
CONFIDENCE_EDGES: tuple[float, ...] = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
#: At most this many position bands.
MAX_BANDS = 1000


def parse_ids(text: str, option: str) -> np.ndarray:
    """A comma list of whole numbers, or ``@FILE`` holding them (separated by commas,
    spaces or new lines), as sorted unique int64."""
    source = text
    if text.startswith("@"):
        path = text[1:]
        try:
            with open(path, encoding="utf-8") as f:
                source = f.read()
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not text"
            raise UsageError(f"{option} @{clean(path)}: {reason}") from None
    items = [t for t in source.replace(",", " ").split() if t]
    try:
        ids = [int(t) for t in items]
    except ValueError:
        bad = next(t for t in items if not t.lstrip("-").isdigit())
        raise UsageError(f"{option}: {clean(bad)!r} is not a token id (a whole number)") from None
    if not ids:
        raise UsageError(f"{option} takes token ids: a comma list (2,13) or @FILE")
    return np.unique(np.asarray(ids, dtype=np.int64))


def _parse_positions(text: str) -> tuple[int | None, int | None]:
    start, sep, stop = text.partition(":")
    try:
        lo = int(start) if start.strip() else None
        hi = int(stop) if stop.strip() else None
    except ValueError:
        lo = hi = -1
    if not sep or lo == -1 or (lo is not None and lo < 0) or (hi is not None and hi < 0):
        raise UsageError(
            f"--positions takes A:B (whole numbers >= 0, A or B may be left out), got {text!r}"
        )
    if lo is not None and hi is not None and hi <= lo:
        raise UsageError(f"--positions {text}: B must be above A (positions A <= p < B)")
    return lo, hi


def _parse_by(text: str) -> int | None:
    """``confidence`` -> None, ``position:N`` -> N."""
    if text == "confidence":
        return None
    kind, _, count = text.partition(":")
    if kind == "position" and count.isdigit() and 1 <= int(count) <= MAX_BANDS:
        return int(count)
    raise UsageError(f"--by takes confidence or position:N (N from 1 to {MAX_BANDS}), got {text!r}")


@dataclass(frozen=True)
class Slices:
    """The slice options of one run (see the module's docstring)."""

    positions: str | None = None
    last: int | None = None
    token_ids: str | None = None
    exclude_token_ids: str | None = None
    by: tuple[str, ...] = ()

    @classmethod
    def of(
        cls,
        positions: str | None = None,
        last: int | str | None = None,
        token_ids: str | int | Sequence[int] | None = None,
        exclude_token_ids: str | int | Sequence[int] | None = None,
        by: str | Sequence[str] | None = None,
    ) -> Slices:
        """The options as given: text as on the command line, ``last`` a whole number,
        token ids a comma list, ``@FILE`` or a sequence of ids, ``by`` one or several."""
        if last is not None:
            try:
                last = int(last)
            except (TypeError, ValueError):
                raise UsageError(f"--last takes a whole number, got {clean(repr(last))}") from None
        if positions is not None and not isinstance(positions, str):
            raise UsageError(f"--positions takes A:B as text, got {clean(repr(positions))}")
        return cls(
            positions,
            last,
            _ids_text(token_ids, "--token-ids"),
            _ids_text(exclude_token_ids, "--exclude-token-ids"),
            _by_tuple(by),
        )

    def __bool__(self) -> bool:
        return any((self.positions, self.last, self.token_ids, self.exclude_token_ids, self.by))

    def validate(self) -> None:
        """Usage errors, before anything is read (an ``@FILE`` of ids is read here)."""
        if self.positions is not None:
            _parse_positions(self.positions)
        if self.last is not None and self.last < 1:
            raise UsageError(f"--last must be at least 1, got {self.last}")
        for option, ids in (
            ("--token-ids", self.token_ids),
            ("--exclude-token-ids", self.exclude_token_ids),
        ):
            if ids is not None:
                parse_ids(ids, option)
        for by in self.by:
            _parse_by(by)

    @property
    def needs_positions(self) -> bool:
        return (
            self.positions is not None
            or self.last is not None
            or any(b != "confidence" for b in self.by)
        )

    @property
    def needs_tokens(self) -> bool:
        return self.token_ids is not None or self.exclude_token_ids is not None

    @property
    def needs_confidence(self) -> bool:
        return "confidence" in self.by

    def names(self) -> list[str]:
        """Every slice's name, in the order they are reported."""
        out: list[str] = []
        if self.positions is not None:
            out.append(f"positions {self.positions}")
        if self.last is not None:
            out.append(f"last {self.last}")
        if self.token_ids is not None:
            out.append(f"token-ids {_ids_label(self.token_ids)}")
        if self.exclude_token_ids is not None:
            out.append(f"exclude-token-ids {_ids_label(self.exclude_token_ids)}")
        for by in self.by:
            bands = _parse_by(by)
            if bands is None:
                edges = CONFIDENCE_EDGES
                out += [f"confidence {edges[i]:g}-{edges[i + 1]:g}" for i in range(len(edges) - 1)]
            else:
                out += [f"position {i + 1}/{bands}" for i in range(bands)]
        return out

    def check_available(
        self, have_positions: bool, have_tokens: bool, have_confidence: bool, where: str
    ) -> None:
        """The columns each slice needs are known for this run's inputs."""
        if self.needs_positions and not have_positions:
            raise UsageError(f"--positions, --last and --by position need positions: {where}")
        if self.needs_tokens and not have_tokens:
            raise UsageError("--token-ids and --exclude-token-ids need the tokens (--tokens FILE)")
        if self.needs_confidence and not have_confidence:
            raise UsageError("--by confidence needs the reference's probabilities")

    def masks(
        self,
        sequence: np.ndarray | None,
        position: np.ndarray | None,
        token: np.ndarray | None,
        confidence: np.ndarray | None,
    ) -> list[tuple[str, np.ndarray, dict[str, int]]]:
        """``(name, mask, extra)`` of each slice over the counted rows, in :meth:`names`'
        order; ``extra`` holds a position band's ``from``/``to`` (``to`` excluded)."""
        names = iter(self.names())
        out: list[tuple[str, np.ndarray, dict[str, int]]] = []
        if self.positions is not None:
            assert position is not None
            lo, hi = _parse_positions(self.positions)
            mask = np.ones(len(position), dtype=bool)
            if lo is not None:
                mask &= position >= lo
            if hi is not None:
                mask &= position < hi
            out.append((next(names), mask, {}))
        if self.last is not None:
            assert position is not None
            out.append((next(names), _last(sequence, position, self.last), {}))
        for ids, keep in ((self.token_ids, True), (self.exclude_token_ids, False)):
            if ids is not None:
                assert token is not None
                inside = np.isin(token, parse_ids(ids, ""))
                out.append((next(names), inside if keep else ~inside, {}))
        for by in self.by:
            bands = _parse_by(by)
            if bands is None:
                assert confidence is not None
                out += [(next(names), m, {}) for m in _confidence(confidence)]
            else:
                assert position is not None
                out += [(next(names), m, extra) for m, extra in _bands(position, bands)]
        return out


def _ids_text(ids: str | int | Sequence[int] | None, option: str) -> str | None:
    """Token ids as ``option``'s text: a comma list of a sequence of ids."""
    if ids is None or isinstance(ids, str):
        return ids
    if isinstance(ids, int | np.integer):
        return str(ids)
    try:
        return ",".join(str(i) for i in ids)
    except TypeError:
        raise UsageError(
            f"{option} takes token ids: a comma list (2,13), @FILE or a list of ids, "
            f"got {clean(repr(ids))}"
        ) from None


def _by_tuple(by: str | Sequence[str] | None) -> tuple[str, ...]:
    """``--by``: one text, or several."""
    found = (by,) if isinstance(by, str) else by or ()
    if not isinstance(found, Sequence) or not all(isinstance(b, str) for b in found):
        raise UsageError(
            f"--by takes confidence or position:N (N from 1 to {MAX_BANDS}), got {clean(repr(by))}"
        )
    return tuple(found)


def _ids_label(text: str) -> str:
    """How a slice of ids is named: the list as given, or ``@`` and the file's name."""
    return f"@{os.path.basename(text[1:])}" if text.startswith("@") else text.replace(" ", "")


def _last(sequence: np.ndarray | None, position: np.ndarray, k: int) -> np.ndarray:
    """The rows among the last ``k`` of their sequence, by position."""
    seq = np.zeros(len(position), dtype=np.int64) if sequence is None else sequence
    order = np.lexsort((position, seq))
    sorted_seq = seq[order]
    # Rows after this one in its sequence: the end of its run minus its place in the order.
    ends = np.searchsorted(sorted_seq, sorted_seq, side="right")
    after = ends - 1 - np.arange(len(order))
    mask = np.empty(len(order), dtype=bool)
    mask[order] = after < k
    return mask


def _confidence(c: np.ndarray) -> list[np.ndarray]:
    edges = CONFIDENCE_EDGES
    out = []
    for i in range(len(edges) - 1):
        upper = c <= edges[i + 1] if i == len(edges) - 2 else c < edges[i + 1]
        out.append((c >= edges[i]) & upper)
    return out


def _bands(position: np.ndarray, n: int) -> list[tuple[np.ndarray, dict[str, int]]]:
    if len(position) == 0:
        return [(np.zeros(0, dtype=bool), {"from": 0, "to": 0}) for _ in range(n)]
    lo, hi = int(position.min()), int(position.max())
    span = hi - lo + 1
    edges = [lo + (i * span) // n for i in range(n + 1)]
    return [
        ((position >= edges[i]) & (position < edges[i + 1]), {"from": edges[i], "to": edges[i + 1]})
        for i in range(n)
    ]


def gate_names(slice_names: Sequence[str], names: Sequence[str]) -> list[str]:
    """The gate names of every slice: ``slices[NAME].STAT`` for each statistic name."""
    return [f"slices[{s}].{n}" for s in slice_names for n in names]
