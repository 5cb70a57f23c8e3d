"""Which columns of a table are row keys, and which are the distribution: the one rule
every command follows.

A row key names a row; it is never a class of a distribution, never a measurement.
A column is a key when its values are integers (or strings) with no missing value,
all distinct, and one of:

* its name is a key's name (:func:`is_key_name`: ``id``, ``idx``, ``index``, ``row``,
  ``key``, ``uuid``, ``guid``, ``row_number``, ``Unnamed: 0`` (pandas' index written to
  CSV), ``__index_level_0__`` (pandas' index in Parquet), an empty name, or a name
  ending in ``_id``, ``-key``, ``userId``... case-insensitive);
* its values are strictly increasing or strictly decreasing (at least
  :data:`MIN_ROWS` of them: two or three sorted counts are a coincidence);
* its values share none with the other side's same column (at least :data:`MIN_ROWS`
  on each side), where integers must also fill at least half of the range they span
  together (ids are dense; a unique measurement split in two halves is disjoint too,
  but sparse) and strings must look like tokens (one length, no spaces: uuids, hashes),
  not free text.

Floats with a fraction, booleans, dates and decimals are never keys, and neither is a
column with a repeated value: a measurement with many distinct values (182 weights in
189 rows) is a measurement. Under a key's name, floats that are all whole numbers count
as integers (pandas writes an integer column that held a missing value as ``12.0``). The rule looks at the
first :data:`SAMPLE` values it is given: a streamed table passes its first block.

:func:`choose_columns` adds the table-level rule: in a table where some column left is
floats, the integer columns are not classes either (ids, gold labels, token positions,
counts beside logits), whatever their values; a table of integers only (histogram
counts) is its data.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import UsageError
from .base import ColumnRole, ReadOptions, Source
from .columns import array_values, is_list, select_columns

#: Whole names of key columns (compared lower-case).
KEY_NAMES: frozenset[str] = frozenset(
    {
        "",
        "id",
        "ids",
        "idx",
        "index",
        "row",
        "rowid",
        "row_id",
        "rownum",
        "row_num",
        "row_nr",
        "row_number",
        "row_index",
        "row_idx",
        "key",
        "pk",
        "uuid",
        "guid",
        "uid",
        "level_0",
    }
)
#: Last words (after ``_``, ``-``, ``.``, ``:`` or a space) that make a name a key's.
KEY_SUFFIXES: frozenset[str] = frozenset({"id", "idx", "index", "key", "uuid", "guid", "uid"})
#: Names pandas gives an index it writes out.
_PANDAS_INDEX = re.compile(r"(unnamed: ?\d+|__index_level_\d+__)", re.IGNORECASE)
#: camelCase keys: ``userId``, ``sampleID``, ``rowIndex``, ``itemKey``, ``requestUuid``.
_CAMEL = re.compile(r"[a-z0-9](Id|ID|Idx|Index|Key|Uuid|UUID|Guid|GUID)$")
_WORDS = re.compile(r"[\s_\-.:]+")

#: Fewest values for the rules that do not rest on the name.
MIN_ROWS = 8
#: Values looked at (the first ones).
SAMPLE = 1 << 16
#: Share of the range two integer sides span that they must fill to be ids.
MIN_DENSITY = 0.5


def is_key_name(name: str) -> bool:
    """Whether ``name`` is a key's name (see the module's rule).

    >>> [is_key_name(n) for n in ("id", "user_id", "userId", "Unnamed: 0", "paid", "c0")]
    [True, True, True, True, False, False]
    """
    stripped = name.strip()
    lower = stripped.lower()
    words = [w for w in _WORDS.split(lower) if w]
    if "_".join(words) in KEY_NAMES or _PANDAS_INDEX.fullmatch(stripped):
        return True
    if len(words) > 1 and words[-1] in KEY_SUFFIXES:
        return True
    return bool(_CAMEL.search(stripped))


def key_values(values: Any, whole_floats: bool = False) -> np.ndarray | None:
    """The first :data:`SAMPLE` values as a 1-D NumPy array of integers or strings, or
    None when they cannot be a key (another type, or a missing value).

    ``values`` is a NumPy array or a pyarrow ``Array``/``ChunkedArray``. With
    ``whole_floats``, floats that are all whole numbers are integers.
    """
    if isinstance(values, np.ndarray):
        return _numpy_key_values(values[:SAMPLE], whole_floats)
    return _arrow_key_values(values.slice(0, SAMPLE), whole_floats)


def _whole(v: np.ndarray) -> np.ndarray | None:
    """Floats that are all whole numbers (int64 holds them exactly) as int64, else None.
    The first value is tested alone first: logits are rarely whole, so most columns
    cost nothing."""
    if v.size == 0 or not float(v[0]).is_integer():
        return None
    with np.errstate(invalid="ignore"):
        whole = bool(np.all((np.abs(v) < 2.0**53) & (v == np.round(v))))
    return v.astype(np.int64) if whole else None


def _numpy_key_values(v: np.ndarray, whole_floats: bool) -> np.ndarray | None:
    if v.ndim != 1:
        return None
    if v.dtype.kind in "iu" or v.dtype.kind in "US":
        return v
    if v.dtype.kind == "f" and whole_floats:
        return _whole(v)
    if v.dtype.kind == "O" and all(isinstance(x, str) for x in v):
        return v
    return None


def _arrow_key_values(a: Any, whole_floats: bool) -> np.ndarray | None:
    import pyarrow as pa

    if isinstance(a, pa.ChunkedArray):
        a = a.combine_chunks() if a.num_chunks != 1 else a.chunk(0)
    if pa.types.is_dictionary(a.type):
        a = a.dictionary_decode()
    if a.null_count:
        return None
    t = a.type
    if pa.types.is_integer(t):
        return array_values(a)
    if pa.types.is_floating(t) and whole_floats:
        return _whole(array_values(a))
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return np.array(a.to_pylist(), dtype=object)
    return None


def _unique_sorted(v: np.ndarray) -> np.ndarray | None:
    """The values sorted, or None when one repeats."""
    s = np.sort(v)
    if s.size > 1 and bool(np.any(s[1:] == s[:-1])):
        return None
    return s


def _monotone(v: np.ndarray) -> str | None:
    if v.size < MIN_ROWS:
        return None
    if bool(np.all(v[1:] > v[:-1])):
        return "increasing"
    if bool(np.all(v[1:] < v[:-1])):
        return "decreasing"
    return None


def _disjoint(mine: np.ndarray, theirs: np.ndarray) -> bool:
    """Unique sorted values of the two sides, of one kind, share none and look like ids."""
    if min(mine.size, theirs.size) < MIN_ROWS:
        return False
    if (mine.dtype.kind in "iu") != (theirs.dtype.kind in "iu"):
        return False
    if mine.dtype.kind in "iu":
        both = np.concatenate([mine, theirs])
        if np.intersect1d(mine, theirs).size:
            return False
        span = float(both.max()) - float(both.min()) + 1.0
        return both.size >= MIN_DENSITY * span
    if np.intersect1d(mine.astype(str), theirs.astype(str)).size:
        return False
    lengths = {len(str(x)) for x in np.concatenate([mine, theirs])}
    return len(lengths) == 1 and not any(any(c.isspace() for c in str(x)) for x in mine)


def key_reason(name: str, values: Any, other: Any | None = None) -> str | None:
    """Why the column ``name`` is a row key, or None when it is not one.

    Parameters
    ----------
    name : str
        The column's name.
    values : numpy.ndarray or pyarrow.Array or pyarrow.ChunkedArray
        Its values (or the first block of a streamed table); only the first
        :data:`SAMPLE` are looked at.
    other : same as ``values``, optional
        The same column on the other side (the target, the current table), for the
        disjointness test.

    Returns
    -------
    str or None
        A short reason ("named like a key and unique", "unique and increasing",
        "unique and disjoint from the other side's values"), or None.

    Notes
    -----
    The rule is the module's: integers (or floats that are all whole numbers) or
    strings, no missing value, all distinct, and a key's name, or monotone, or disjoint
    from the other side. Floats are keys only under a key's name, and only when all
    are whole numbers.
    """
    # Whole-number floats count as integers only under a key's name: a float column
    # that happens to be whole and sorted is more likely a measurement.
    named = is_key_name(name)
    v = key_values(values, whole_floats=named)
    if v is None or v.size == 0:
        return None
    # The cheap tests first: a wide table of counts pays one pass per column, no sort.
    order = _monotone(v)
    if order is not None:
        return "named like a key and unique" if named else f"unique and {order}"
    if not named and other is None:
        return None
    s = _unique_sorted(v)
    if s is None:
        return None
    if named:
        return "named like a key and unique"
    assert other is not None
    w = key_values(other, whole_floats=named)
    t = None if w is None else _unique_sorted(w)
    if t is not None and _disjoint(s, t):
        return "unique and disjoint from the other side's values"
    return None


@dataclass(frozen=True)
class Selection:
    """What :func:`choose_columns` made of a table."""

    #: Indices of the columns that are the distribution, in file order.
    chosen: list[int]
    #: Every column with its role.
    roles: list[ColumnRole]
    #: One sentence per kind of column left out (keys, metadata), for stderr.
    notes: list[str]
    #: The one chosen column is a list column (one distribution per row).
    list_column: bool


def numeric_list(t: Any, floats: bool = False) -> bool:
    """Whether an Arrow type is a list (any kind) of integers or floats (of floats only
    with ``floats``)."""
    import pyarrow as pa

    if not is_list(t):
        return False
    v = t.value_type
    return bool(pa.types.is_floating(v) or (not floats and pa.types.is_integer(v)))


def _keyable(name: str, t: Any) -> bool:
    """Whether the key test looks at a column: integers and text always; floats only
    when named like a key (an id written as ``12.0``), so a table of float logits is
    never sampled for it."""
    import pyarrow as pa

    if pa.types.is_floating(t):
        return is_key_name(name)
    return bool(pa.types.is_integer(t) or pa.types.is_string(t) or pa.types.is_large_string(t))


#: Why an integer column beside floats is left out (:func:`choose_columns`).
INTEGERS_BESIDE_FLOATS = "integers beside float columns: ids, labels, positions or counts"


def _quoted(names: Sequence[str]) -> str:
    return ", ".join(repr(n) for n in names)


def choose_columns(
    label: str,
    names: Sequence[str],
    types: Sequence[Any],
    usable: Sequence[bool],
    options: ReadOptions,
    sample: Callable[[list[str]], Mapping[str, Any]],
) -> Selection:
    """The columns of a table that are the distribution, with every column's role.

    With ``options.columns``, exactly those (:func:`.columns.select_columns`). Otherwise:
    a table with one list column of numbers uses it (each row one distribution; the
    other columns are metadata), as does one of floats beside lists of integers (token
    ids, masks); two or more list columns otherwise are a usage error; else every
    ``usable`` column but the row keys (:func:`key_reason` on the first values, given
    by ``sample(names)`` for the integer and text columns among them, and the float
    columns named like a key) and, when a float column is left, but the integer
    columns. Keys are kept when nothing else is left: a table of one integer column is
    its own data. One note names every column left out (text ones too) and why.
    """
    import pyarrow as pa

    flag = options.columns_option or "--columns"
    names = list(names)
    if options.columns is not None:
        chosen = select_columns(label, names, options.columns, list(usable))
        one_list = len(chosen) == 1 and is_list(types[chosen[0]])
        picked = "distribution" if one_list else "class"
        roles = [
            ColumnRole(n, picked, f"chosen by {flag}")
            if i in chosen
            else ColumnRole(n, "unused", f"not chosen by {flag}")
            for i, n in enumerate(names)
        ]
        return Selection(chosen, roles, [], one_list)
    lists = [i for i, t in enumerate(types) if numeric_list(t)]
    why = "the table's one list column"
    floats = [i for i in lists if numeric_list(types[i], floats=True)]
    if len(lists) > 1 and len(floats) == 1:
        # Lists of integers beside one list of floats are token ids and masks
        # (input_ids, attention_mask), not the distribution.
        lists, why = floats, "the table's one list column of floats"
    if len(lists) > 1:
        raise UsageError(
            f"{label}: has {len(lists)} list columns ({_quoted([names[i] for i in lists])}), "
            f"each a whole distribution per row; choose one with {flag}"
        )
    if lists:
        j = lists[0]
        meta = [n for i, n in enumerate(names) if i != j]
        roles = [
            ColumnRole(n, "distribution", why)
            if i == j
            else ColumnRole(n, "metadata", f"beside the list column {names[j]!r}")
            for i, n in enumerate(names)
        ]
        notes = (
            [
                f"{label}: each row of the list column {names[j]!r} is one distribution; "
                f"left out as metadata: {_quoted(meta)} (choose columns with {flag})"
            ]
            if meta
            else []
        )
        return Selection([j], roles, notes, True)
    candidates = [n for n, ok, t in zip(names, usable, types) if ok and _keyable(n, t)]
    values = sample(candidates) if candidates else {}
    keys = {n: r for n in candidates if (r := key_reason(n, values[n])) is not None}
    chosen = [i for i, ok in enumerate(usable) if ok and names[i] not in keys]
    # Beside floats (logits, probabilities), integers are never classes: a document id
    # in shuffled order, a gold label, a token position, whose values would otherwise
    # dwarf the logits in a softmax (a loss of 0.0) or add a class. (An all-empty
    # column, of Arrow's null type, is neither.)
    if any(not (pa.types.is_integer(types[i]) or pa.types.is_null(types[i])) for i in chosen):
        ints = {names[i] for i in chosen if pa.types.is_integer(types[i])}
        chosen = [i for i in chosen if names[i] not in ints]
    else:
        ints = set()
    if not chosen:
        keys, ints = {}, set()
        chosen = [i for i, ok in enumerate(usable) if ok]
    in_chosen = set(chosen)  # a set: a CSV of 100,000 columns took 49 s with the list
    roles = [
        ColumnRole(n, "key", keys[n])
        if n in keys
        else ColumnRole(n, "metadata", INTEGERS_BESIDE_FLOATS)
        if n in ints
        else ColumnRole(n, "class")
        if i in in_chosen
        else ColumnRole(n, "unused", f"not numbers ({t})")
        for i, (n, t) in enumerate(zip(names, types))
    ]
    text = {r.name: r.reason for r in roles if r.role == "unused"}
    notes = left_out_notes(
        label, keys, {**{n: INTEGERS_BESIDE_FLOATS for n in names if n in ints}, **text}, flag
    )
    # Named like a key but with repeats (a sequence id of a table of integers): used,
    # as the rule says, but never silently.
    keyable = set(candidates)  # a set: 200,000 columns took minutes with the list
    grouping = [names[i] for i in chosen if names[i] in keyable and is_key_name(names[i])]
    if grouping and len(chosen) > 1:
        what = "column" if len(grouping) == 1 else "columns"
        verb = ("is", "repeats", "it") if len(grouping) == 1 else ("are", "repeat", "they")
        notes.append(
            f"{label}: {what} {_quoted(grouping)} {verb[0]} named like a key but {verb[1]} "
            f"values, so {verb[2]} {verb[0]} read as a class; if not, choose columns with {flag}"
        )
    return Selection(chosen, roles, notes, False)


def left_out_notes(
    label: str, keys: Mapping[str, str], others: Mapping[str, str], flag: str
) -> list[str]:
    """The one note naming every column left out, with why, and the flag to choose:
    ``keys`` (row keys) and ``others`` (integers beside floats, text), name → reason."""
    if not keys and not others:
        return []
    column = "column" if len(keys) + len(others) == 1 else "columns"
    if not others:
        listed = ", ".join(f"{n!r} ({r})" for n, r in keys.items())
        what = "a row key, not a class" if len(keys) == 1 else "row keys, not classes"
    else:
        # Columns left out for one reason are listed together, the reason said once.
        grouped: dict[str, list[str]] = {}
        for n, r in others.items():
            grouped.setdefault(r, []).append(n)
        listed = ", ".join(
            [f"{n!r} (a row key: {r})" for n, r in keys.items()]
            + [f"{_quoted(ns)} ({r})" for r, ns in grouped.items()]
        )
        what = "not a class" if column == "column" else "not classes"
    return [f"{label}: left out {column} {listed}: {what} (choose columns with {flag})"]


def float_keys(names: Sequence[str], array: np.ndarray) -> dict[int, str]:
    """Row keys among the columns of a 2-D float ``array`` parsed from text (a wide CSV):
    whole-number columns, named like a key or monotone, as :func:`key_reason` sees
    them as integers. Vectorized: one pass over the first :data:`SAMPLE` rows."""
    head = array[:SAMPLE]
    if head.ndim != 2 or not head.size:
        return {}
    with np.errstate(all="ignore"):
        # Whole numbers that int64 holds exactly.
        whole = np.all((np.abs(head) < 2.0**53) & (head == np.round(head)), axis=0)
        # Fewer rows than MIN_ROWS are never "monotone" (key_reason's rule): testing
        # them would call it for nearly every column of a wide file of two rows.
        if len(head) >= MIN_ROWS:
            steps = np.diff(head, axis=0)
            ordered = np.all(steps > 0, axis=0) | np.all(steps < 0, axis=0)
        else:
            ordered = np.zeros(head.shape[1], dtype=bool)
    named = np.array([is_key_name(n) for n in names], dtype=bool)
    keys: dict[int, str] = {}
    for j in map(int, np.flatnonzero(whole & (named | ordered))):
        reason = key_reason(names[j], head[:, j].astype(np.int64))
        if reason is not None:
            keys[j] = reason
    return keys


def one_class(src: Source, axis: int) -> str:
    """The one class of ``src``'s axis, for a message: its column, or the shape."""
    if src.columns is not None and axis in (-1, len(src.shape) - 1):
        return f"column {src.columns[0]!r} of {src.label}"
    return f"{src.label} has shape {tuple(src.shape)}"


def choose_hint(
    src: Source, options: ReadOptions, array_hint: str = "choose the class axis with --dim"
) -> str:
    """The option that chooses a wider class axis for ``src`` (for an array:
    ``array_hint``)."""
    if src.columns is not None:
        return f"choose its columns with {options.columns_option or '--columns'}"
    return array_hint
