"""Drift: how far the database has strayed from the specs, per table, from a plan and the snapshot it came from.

Pure, like the planner: handed the clock and the observed state; `partman drift` does the reading."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from typing import Any, Optional

from .conformance import UNFIXED
from .references import REFERENCED
from .intervals import Span
from .model import Bounds, KeyType, KeyValue, iso
from . import statistics
from .plan import BUSY, ActionKind, Plan, Reason, TablePlan
from .snapshot import Snapshot, TableState
from .spec import TableSpec
from .encoded import shown
from .planner import layout
from .timeline import KeySpace, window
from .widths import DEFAULT_PREMAKE, IdSpace, Reach


# drift --format json's shape; raised when a field changes meaning or goes away (adding one does not).
FORMAT_VERSION = 1


class Kind(str, Enum):
    RUNWAY = "runway"
    MISSING = "missing"
    GAP = "gap"
    UNMANAGED = "unmanaged"
    EXPIRED = "expired"
    GRACE_ELAPSED = "grace_elapsed"
    DEFAULT_ROWS = "default_rows"
    PARENT = "parent"
    PENDING = "pending_changes"
    BUSY = "busy"  # something drift needed to read was locked by another session for the whole ladder
    STATISTICS = "statistics"  # the parent's statistics are older than the spec's analyze age, or were never collected
    CONFORMANCE = "conformance"  # a partition differs from its parent (owner, privileges, storage parameters, ...)


@dataclass(frozen=True)
class Finding:
    kind: Kind
    detail: str
    partition: Optional[str] = None

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind.value, "partition": self.partition, "detail": self.detail}


@dataclass(frozen=True)
class TableDrift:
    table: str
    env: str
    runway_seconds: Optional[float]  # None when the table or its key cannot be read, and for an id table
    min_runway_seconds: Optional[float]
    missing: int = 0
    unmanaged: int = 0
    default_rows: int = 0
    findings: tuple[Finding, ...] = field(default_factory=tuple)
    # An id table's runway (widths.py): ids from its mark to the end of the partitions covering it without a gap.
    runway_ids: Optional[int] = None
    min_runway_ids: Optional[int] = None

    @property
    def in_sync(self) -> bool:
        return not self.findings

    def to_dict(self) -> dict[str, Any]:
        return {
            "table": self.table,
            "env": self.env,
            "in_sync": self.in_sync,
            # JSON has no infinity: a table whose last partition runs to MAXVALUE has a runway without end
            "runway_seconds": _finite(self.runway_seconds),
            **({"runway_unbounded": True} if _unbounded(self.runway_seconds, self.runway_ids) else {}),
            "min_runway_seconds": self.min_runway_seconds,
            "missing_partitions": self.missing,
            "unmanaged_partitions": self.unmanaged,
            "default_rows": self.default_rows,
            "findings": [f.to_dict() for f in self.findings],
            **({"runway_ids": _finite(self.runway_ids), "min_runway_ids": self.min_runway_ids}
               if self.min_runway_ids is not None else {}),
        }


def _finite(value):
    return None if value == float("inf") else value


def _unbounded(*values) -> bool:
    return any(v == float("inf") for v in values)


@dataclass(frozen=True)
class Report:
    env: str
    now: datetime
    tables: tuple[TableDrift, ...]

    @property
    def in_sync(self) -> bool:
        return all(t.in_sync for t in self.tables)

    def to_dict(self) -> dict[str, Any]:
        return {"format_version": FORMAT_VERSION, "env": self.env, "now": iso(self.now), "in_sync": self.in_sync,
                "tables": [t.to_dict() for t in self.tables]}


def report(
    specs: list[TableSpec],
    snapshot: Snapshot,
    plan: Plan,
    *,
    now: datetime,
    default_rows: dict[int, int],
    min_runway: Optional[Span] = None,
    locked_defaults: frozenset[int] = frozenset(),
) -> Report:
    by_table = {t.table: t for t in plan.tables}
    tables = tuple(
        _table(spec, snapshot.tables.get(spec.table, TableState(spec.table)), by_table[spec.table], now, default_rows,
               min_runway, locked_defaults)
        for spec in sorted(specs, key=lambda s: s.table)
    )
    return Report(plan.env, now, tables)


def _table(
    spec: TableSpec, state: TableState, tp: TablePlan, now: datetime, default_rows: dict[int, int], min_runway: Optional[Span],
    locked_defaults: frozenset[int] = frozenset(),
) -> TableDrift:
    laid = layout(spec, state) if tp.key_type and not tp.errors else None
    grid = laid[0] if laid else None
    space = grid.space if grid else None
    ids = spec.width is not None
    floor = _min_ids(spec) if ids else _min_runway(spec, now, min_runway)
    findings: list[Finding] = []
    if state.oid is None:
        findings.append(Finding(Kind.PARENT, f"{spec.table} does not exist"))
    for error in tp.errors:
        findings.append(Finding(Kind.PARENT, error))
    runway = _runway(state, space, now) if space and state.oid is not None else None
    if runway is not None and runway < floor:
        shown_runway, shown_floor = (f"{runway:,} ids", f"{floor:,} ids") if ids else (days(runway), days(floor))
        findings.append(Finding(Kind.RUNWAY, f"partitions cover {shown_runway} ahead, less than the minimum {shown_floor}"))
    creates = [a for a in tp.actions if a.kind is ActionKind.CREATE]
    if state.oid is not None and creates:
        for a in creates:
            findings.append(Finding(Kind.MISSING, "missing inside the premake horizon: "
                                    + shown(a.bounds, tp.key_type, tp.key_encoding), str(a.partition)))
        if grid:
            for gap in _gaps(state, spec, grid, now):
                findings.append(Finding(Kind.GAP, f"no partition covers {shown(gap, tp.key_type, tp.key_encoding)}"))
    for n in tp.unmanaged:
        findings.append(Finding(Kind.UNMANAGED, n.why, str(n.partition)))
    adopting = [a for a in tp.actions if a.kind is ActionKind.ADOPT]
    for a in adopting:
        findings.append(Finding(Kind.UNMANAGED, "not in partition_log yet: apply adopts it (adopt: existing)", str(a.partition)))
    for a in tp.actions:
        if a.kind is ActionKind.DETACH:
            findings.append(Finding(Kind.EXPIRED, "expired: retention should have detached it", str(a.partition)))
        elif a.reason is Reason.RETENTION_GRACE_ELAPSED and not a.attached and not any(
                d.kind is ActionKind.DETACH and d.partition == a.partition for d in tp.actions):  # not one just expired
            findings.append(Finding(Kind.GRACE_ELAPSED, "detached and past its grace: should have been dropped", str(a.partition)))
    for n in tp.kept:
        if n.code == REFERENCED:
            findings.append(Finding(Kind.EXPIRED, f"expired, kept: {n.why} ({n.code})", str(n.partition)))
    for n in tp.kept + tp.warnings:
        if n.code == BUSY:
            findings.append(Finding(Kind.BUSY, f"locked by another session: {n.why}", str(n.partition)))
    if state.default is not None and state.default.oid in locked_defaults:
        findings.append(Finding(Kind.BUSY, "locked by another session: its rows were not counted", str(state.default.ref)))
    rows = default_rows.get(state.default.oid, 0) if state.default else 0
    if rows:
        findings.append(Finding(Kind.DEFAULT_ROWS, f"{rows:,} rows in the default partition", str(state.default.ref)))
    for a in tp.actions:
        if a.kind is ActionKind.CONFORM:
            for c in a.changes:
                findings.append(Finding(Kind.CONFORMANCE, f"{c.attribute}: {c.text()}; apply conforms it", str(a.partition)))
    for n in tp.warnings:
        if n.code == UNFIXED:
            findings.append(Finding(Kind.CONFORMANCE, f"{n.why} ({n.code})", str(n.partition)))
    stale = statistics.stale(spec, state, now) if state.strategy == "range" else None
    if stale:
        findings.append(Finding(Kind.STATISTICS, f"{stale} (analyze: {spec.analyze}); apply analyzes it"))
    if tp.changes:
        findings.append(Finding(Kind.PENDING, "the plan is not empty: run partman plan to see it"))
    return TableDrift(
        table=str(spec.table),
        env=spec.env,
        runway_seconds=None if ids else runway,
        min_runway_seconds=None if ids else floor,
        runway_ids=runway if ids else None,
        min_runway_ids=floor if ids else None,
        missing=len(creates),
        unmanaged=len(tp.unmanaged) + len(adopting),
        default_rows=rows,
        findings=tuple(findings),
    )


def _min_runway(spec: TableSpec, now: datetime, given: Optional[Span]) -> float:
    """Default: half the premake (half the way to the end of next year when premake is the default)."""
    local = now.astimezone(KeySpace(KeyType.TIMESTAMPTZ, spec.timezone).zone).replace(tzinfo=None)
    if given is not None:
        return (given.add(local) - local).total_seconds()
    horizon = spec.premake.add(local) if spec.premake else datetime(local.year + 2, 1, 1)
    return (horizon - local).total_seconds() / 2


def _min_ids(spec: TableSpec) -> int:
    """An id table's minimum runway: half its premake, in ids (--min-runway, a duration, is for time tables)."""
    return (spec.premake or Reach.parse(DEFAULT_PREMAKE)).ids(spec.width) // 2


def _instant(value: KeyValue, space: KeySpace) -> datetime:
    value = space.instant(value)
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=space.zone)
    return datetime.combine(value, datetime.min.time(), tzinfo=space.zone)


def _runway(state: TableState, space: KeySpace, now: datetime) -> float:
    """Seconds from now to the end of the partitions that cover now without a gap; 0 when nothing covers now.
    For an id table, ids from its mark to that end."""
    key = space.key_of(now)
    covering = next((p for p in state.partitions if p.bounds.contains(key)), None)
    if covering is None:
        return 0 if isinstance(space, IdSpace) else 0.0
    end = covering.bounds.end
    for p in state.partitions:  # sorted by start: follow the chain of adjacent partitions
        if end is not None and p.bounds.start == end:
            end = p.bounds.end
    if end is None:
        return float("inf")
    if isinstance(space, IdSpace):
        return max(0, int(end) - int(key))
    return max(0.0, (_instant(end, space) - now).total_seconds())


def _gaps(state: TableState, spec: TableSpec, grid, now: datetime) -> list[Bounds]:
    """Holes between existing partitions inside the premake window (the tail beyond the last is 'missing')."""
    w = window(grid, now, spec.premake, spec.history_from)
    inside = [p.bounds for p in state.partitions if p.bounds.overlaps(w)]
    return [
        Bounds(a.end, b.start)
        for a, b in zip(inside, inside[1:])
        if a.end is not None and b.start is not None and a.end < b.start
    ]


def days(seconds: float) -> str:
    if seconds == float("inf"):
        return "forever"
    return f"{seconds / 86400:.1f} days"
