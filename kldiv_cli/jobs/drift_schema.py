"""Schema changes between the reference and the current data: columns on one side only,
values of another class than the reference's, and whether a profile fits the options."""

from __future__ import annotations

from typing import Any

from ..errors import UsageError
from ..text import clean
from .drift_groups import Group
from .drift_profile import ColumnProfile, Profile, Role
from .drift_report import ColumnResult, Missing, Reason
from .drift_request import ColumnRules, DriftRequest, names_of
from .drift_values import KIND_WORDS


def compatible(ref: ColumnProfile, kind: str) -> bool:
    """Whether current values of ``kind`` can be compared with the reference's bins."""
    if ref.role is Role.TEXT:
        return kind == "text"
    if ref.role is Role.NUMERIC:
        return kind in (("datetime", "text") if ref.from_datetime else ("integer", "float"))
    first = ref.categories[0]
    if isinstance(first, bool):
        return kind == "bool"
    if isinstance(first, (int, float)):
        return kind in ("integer", "float")
    return kind in ("text", "datetime")


_CLASSES = {"integer": "number", "float": "number"}


def type_change(ref: ColumnProfile, kind: str) -> str:
    """What changed when the current values are of another class than the reference's
    (numbers, text, booleans, dates/times); empty when they are not, when either side
    is all missing, or when the reference's class is unknown (a version 2 profile)."""
    if kind == "null" or (ref.role is Role.SKIPPED and not ref.kind):
        return ""
    if ref.role.compared:
        if compatible(ref, kind):
            return ""
        was = ref.kind or ("text" if ref.role is Role.TEXT else "")
    else:
        was = ref.kind
        if not was or was == "null" or _CLASSES.get(was, was) == _CLASSES.get(kind, kind):
            return ""
        if ref.role is Role.DATETIME and {was, kind} <= {"text", "datetime"}:
            return ""
    before = KIND_WORDS.get(was, was) if was else ref.role.value
    return f"{before} in the reference, {KIND_WORDS.get(kind, kind)} in the current data"


def schema_change(result: ColumnResult, reason: Reason, text: str, policy: str) -> ColumnResult:
    """A schema change: a reason (it fails the check) or, with ``--schema warn``, a
    warning (listed, not failing)."""
    if policy == "warn":
        return with_changes(result, warnings=(*result.warnings, reason), schema_change=text)
    return with_changes(result, reasons=(*result.reasons, reason), schema_change=text)


def unreadable(name: str, request: DriftRequest, threshold: float, error: str) -> ColumnResult:
    """A column whose values Arrow cannot turn into anything kldiv compares."""
    return ColumnResult(
        name=name,
        role=Role.SKIPPED,
        metric=request.metric,
        threshold=threshold,
        missing=Missing(0, 0, 0, 0),
        error=error,
    )


def skip_if_new(result: ColumnResult, group: Group) -> ColumnResult:
    """A column of a segment with no reference rows (``--reference-segment``, a segment new
    in the current data) skipped, saying so; of any other group, as checked."""
    if not group.new:
        return result
    # Nothing to compare with: neither its values nor its missing share (the reference's
    # share of an empty segment is undefined, not 0). The report lists the segment as new.
    why = f"no reference rows for segment {group.label}"
    return with_changes(
        result, reasons=(), warnings=(), error="", missing_weak=False, skip_reason=why
    )


def with_changes(result: ColumnResult, **changes: Any) -> ColumnResult:
    from dataclasses import replace

    return replace(result, **changes)


def shared_columns(reference: list[str], current: list[str], label: str) -> list[str]:
    present = set(current)
    shared = [n for n in reference if n in present]
    if not shared:
        raise UsageError(f"{clean(label)}: the reference and current data have no column in common")
    return shared


def unmatched_columns(
    reference: list[str], current: list[str], rules: ColumnRules
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Columns on one side only (a schema change), among those ``--columns`` names (by
    name or glob; indices count on the shared columns only), less what ``--exclude``
    names."""
    import fnmatch

    wanted = [t.strip() for t in (rules.columns or "").split(",") if t.strip()]
    wanted = [t for t in wanted if not t.lstrip("-").isdigit()]
    excluded = names_of(rules.exclude)

    def kept(names: list[str], other: set[str]) -> tuple[str, ...]:
        return tuple(
            n
            for n in names
            if n not in other
            and (rules.columns is None or any(fnmatch.fnmatchcase(n, p) for p in wanted))
            and not any(fnmatch.fnmatchcase(n, p) for p in excluded)
        )

    return kept(reference, set(current)), kept(current, set(reference))


def lone_role(profile: Profile | None, name: str) -> Role:
    """The role of a column on one side only: the profile's, else not known (skipped)."""
    if profile is not None and name in {c.name for c in profile.columns}:
        return profile.column(name).role
    return Role.SKIPPED


def check_profile_fits(profile: Profile, request: DriftRequest, label: str) -> None:
    rules, default = request.rules, ColumnRules()
    for option, asked, built, unset in (
        ("--bins", rules.bins, profile.bins, default.bins),
        ("--binning", rules.binning, profile.binning, default.binning),
        ("--max-categories", rules.max_categories, profile.max_categories, default.max_categories),
        ("--datetime", rules.datetime, profile.datetime, default.datetime),
    ):
        if asked != unset and asked != built:
            raise UsageError(
                f"{clean(label)}: the profile was built with {option} {built}; drop {option} "
                "or build a new profile"
            )
    if rules.categorical or rules.numeric:
        raise UsageError(
            f"{clean(label)}: roles are fixed when the profile is built; give --categorical "
            "and --numeric to 'kldiv profile'"
        )
