"""The observed database state as inert values: what catalog.py reads and what the planner is handed."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import AbstractSet, Any, Optional

from .model import Bounds, KeyType, TableRef, iso


@dataclass(frozen=True, slots=True)
class Partition:
    """An attached partition, known by its bounds (read from pg_get_expr(relpartbound)); the name is cosmetic."""

    oid: int
    ref: TableRef
    bounds: Bounds
    rows_estimate: Optional[int] = None  # pg_class.reltuples; None when never analyzed
    detach_pending: bool = False  # an interrupted DETACH … CONCURRENTLY: apply finishes it

    @classmethod
    def read(cls, oid: int, schema: str, name: str, bounds: Bounds, rows_estimate: Optional[int],
             detach_pending: bool) -> "Partition":
        """The same value, made without the frozen __init__ and its object.__setattr__ per field: a read makes one
        per partition, tens of thousands on a large database, and that was a tenth of a plan's time."""
        ref = _new(TableRef)
        _SET_SCHEMA(ref, schema)
        _SET_NAME(ref, name)
        p = _new(cls)
        _SET_OID(p, oid)
        _SET_REF(p, ref)
        _SET_BOUNDS(p, bounds)
        _SET_ROWS(p, rows_estimate)
        _SET_PENDING(p, detach_pending)
        return p


# The slots' own setters, which a frozen dataclass's __setattr__ does not stand in front of.
_new = object.__new__
_SET_SCHEMA, _SET_NAME = (TableRef.__dict__[f].__set__ for f in ("schema", "name"))
_SET_OID, _SET_REF, _SET_BOUNDS, _SET_ROWS, _SET_PENDING = (
    Partition.__dict__[f].__set__ for f in ("oid", "ref", "bounds", "rows_estimate", "detach_pending"))


@dataclass(frozen=True)
class LogEntry:
    """A live partition_log row of a partition detached by retention, or with a pending intent, in log space."""

    partition: TableRef
    start: datetime
    end: datetime
    detached_at: Optional[datetime] = None
    relid: Optional[int] = None  # OID of the relation now carrying that name, if any
    is_partition: bool = False  # that relation is attached to some parent
    rows_estimate: Optional[int] = None
    pending: Optional[str] = None  # 'detach' | 'drop': an intent an interrupted apply left


Span3 = tuple[int, int, int]  # an SQL interval as (months, days, seconds): compared exactly, never normalized


@dataclass(frozen=True)
class ConfigRow:
    """A partition_config row: what the migration's manage_partitions() follows between deploys."""

    interval_months: Optional[int]  # None: daily or weekly, which only partman manages
    premake: Optional[Span3]
    retention: Optional[Span3]
    retention_grace: Span3
    timezone: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "interval_months": self.interval_months,
            "premake": _span_text(self.premake),
            "retention": _span_text(self.retention),
            "retention_grace": _span_text(self.retention_grace),
            "timezone": self.timezone,
        }


    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ConfigRow":
        return cls(d["interval_months"], _span_parse(d["premake"]), _span_parse(d["retention"]),
                   _span_parse(d["retention_grace"]), d["timezone"])


def _span_parse(text: Optional[str]) -> Optional[Span3]:
    """The inverse of _span_text."""
    if text is None:
        return None
    values = dict(zip(("month", "day", "second"), (0, 0, 0)))
    words = text.split()
    for n, unit in zip(words[::2], words[1::2]):
        values[unit.rstrip("s")] = int(n)
    return (values["month"], values["day"], values["second"])


def _span_text(span: Optional[Span3]) -> Optional[str]:
    """An interval literal PostgreSQL reads back as the same (months, days, seconds)."""
    if span is None:
        return None
    parts = [f"{n} {unit}{'s' if n != 1 else ''}" for n, unit in zip(span, ("month", "day", "second")) if n]
    return " ".join(parts) or "0 days"


@dataclass(frozen=True)
class Access:
    """What the connected role may do about a table, so a plan that cannot work is known at plan time."""

    schema_exists: bool = True
    may_create: bool = True  # CREATE on the table's schema: new partitions (and a missing parent) go there
    owned: bool = True  # the role owns the parent or belongs to its owner's role: ATTACH and DETACH need it
    owner: Optional[str] = None
    missing_types: tuple[str, ...] = ()  # column types of a parent to create that the server does not know


@dataclass(frozen=True)
class Statistics:
    """The parent's own statistics, which autovacuum never collects for a partitioned table."""

    collected: bool = True  # pg_class.reltuples >= 0: ANALYZE ran at least once (transactional, unlike pg_stat)
    at: Optional[datetime] = None  # the last ANALYZE the cumulative statistics recorded


@dataclass(frozen=True)
class TableState:
    """One parent as the catalog shows it; oid None means the table does not exist."""

    ref: TableRef
    oid: Optional[int] = None
    strategy: Optional[str] = None  # 'range' | 'list' | 'hash' | None (a plain table)
    key_columns: tuple[str, ...] = ()
    key_type_name: Optional[str] = None  # format_type() of the single key column
    partitions: tuple[Partition, ...] = ()
    default: Optional[Partition] = None
    unparsed: tuple[tuple[str, str], ...] = ()  # (partition name, bound expression) partman cannot read
    # Ranges of the live partition_log rows (dropped_at IS NULL), in log space: the partitions partman owns.
    managed: frozenset[tuple[datetime, datetime]] = frozenset()
    detached: tuple[LogEntry, ...] = ()  # the live rows that retention detached, in full
    config: Optional[ConfigRow] = None
    log_high_water: Optional[int] = None  # max(partition_log.id) for this parent: moves with every recorded action
    digest: Optional[str] = None  # the server's digest of this structure (catalog._DIGEST); not part of to_dict
    access: Access = Access()  # not part of to_dict either: privileges are not structure
    # Foreign keys of other tables into this one (references.py); rows are checked again under the lock.
    references: tuple = ()
    statistics: Statistics = Statistics()  # not part of to_dict: ANALYZE is no change of structure
    # The parent's shape, and that of each partition (by OID) that differs from it (conformance.py); not part of
    # to_dict either: a conform's statements hold whatever moved since.
    shape: Any = None
    drifted: dict = field(default_factory=dict, compare=False)
    # An id table's sequence and largest key (widths.IdMark); not part of to_dict: a sequence moves with every insert.
    id_mark: Any = None

    @property
    def key_type(self) -> Optional[KeyType]:
        return KeyType.from_catalog(self.key_type_name) if self.key_type_name else None

    def to_dict(self, *, estimates: bool = True) -> dict[str, Any]:
        """estimates=False leaves out reltuples, which autovacuum moves without anything having changed."""
        return {
            "table": str(self.ref),
            "oid": self.oid,
            "strategy": self.strategy,
            "key_columns": list(self.key_columns),
            "key_type": self.key_type_name,
            "partitions": [_partition_dict(p, estimates) for p in self.partitions],
            "default": _partition_dict(self.default, estimates) if self.default else None,
            "unparsed": [list(u) for u in self.unparsed],
            "managed": sorted([iso(a), iso(b)] for a, b in self.managed),
            "detached": [
                {
                    "partition": str(e.partition),
                    "start": iso(e.start),
                    "end": iso(e.end),
                    "detached_at": iso(e.detached_at),
                    "relid": e.relid,
                    "is_partition": e.is_partition,
                    "pending": e.pending,
                }
                for e in self.detached
            ],
            "config": self.config.to_dict() if self.config else None,
            "log_high_water": self.log_high_water,
        }

    def fingerprint(self) -> str:
        """Identity of the structure a plan was computed from: OIDs, bounds and log rows, not row counts.

        Row presence is left out on purpose: rows that appear in a partition planned for drop are the
        future-data check's business (exit 3), not a stale plan."""
        return structure_fingerprint(self.to_dict(estimates=False))


def structure_fingerprint(observed: dict[str, Any]) -> str:
    """The fingerprint of an observed table dict, whatever row presence it also carries."""
    data = {k: v for k, v in observed.items() if k != "presence"}
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def _partition_dict(p: Partition, estimates: bool = True) -> dict[str, Any]:
    data = {"oid": p.oid, "name": str(p.ref), "from": iso(p.bounds.start), "to": iso(p.bounds.end)}
    if p.detach_pending:
        data["detach_pending"] = True
    if estimates:
        data["rows_estimate"] = p.rows_estimate
    return data


@dataclass(frozen=True)
class Snapshot:
    """Everything the planner needs from one database, read in a fixed number of queries."""

    tables: dict[TableRef, TableState]
    taken_names: AbstractSet[TableRef] = frozenset()  # names a new partition may not take: relations and types named
    # like the managed tables' partitions in their schemas, and every partition of theirs
    has_rows: dict[int, bool] = field(default_factory=dict)  # OID -> EXISTS, for the partitions that need it
    # Partitions whose row presence is unknown: another session held them locked for the whole ladder.
    busy: frozenset[int] = frozenset()
    # What hangs on each plain table a spec asks to convert (survey.py), read in the same view.
    surveys: dict[TableRef, Any] = field(default_factory=dict)
    # Foreign keys into a converted table still NOT VALID (an interrupted conversion): (referencing table, name).
    unproven: dict[TableRef, tuple[tuple[TableRef, str], ...]] = field(default_factory=dict)
    # An id table's mark questions another session's lock left out of the read (catalog._with_marks); settled after it.
    pending_marks: dict = field(default_factory=dict, compare=False)
