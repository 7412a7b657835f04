"""The Plan value: actions, kept and unmanaged partitions per table, with a stable JSON form."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import date, datetime
from enum import Enum
from functools import cached_property
from typing import TYPE_CHECKING, Any, Callable, Optional
from uuid import UUID

from .conformance import Change
from .model import Bounds, KeyType, KeyValue, TableRef, iso
from .snapshot import ConfigRow, structure_fingerprint

if TYPE_CHECKING:
    from .conversion import Conversion

FORMAT_VERSION = 1
BUSY = "PM208"  # a note's code when what it is about was locked by another session (see planner)


class ActionKind(str, Enum):
    CREATE = "create"
    DETACH = "detach"
    DROP = "drop"
    REATTACH = "reattach"  # a partition retention detached, attached again with its rows (retention lengthened)
    ADOPT = "adopt"  # a partition partman did not make, recorded in partition_log as its own; no DDL
    CONVERT = "convert"  # a plain table becomes the first partition of a new parent (TablePlan.conversion)
    CONFORM = "conform"  # an existing partition made to match its parent again (Action.changes; conformance.py)


class Reason(str, Enum):
    PREMAKE = "premake"
    RETENTION = "retention"
    RETENTION_GRACE_ELAPSED = "retention_grace_elapsed"
    INTERVAL_CHANGE = "interval_change"
    RETENTION_LENGTHENED = "retention_lengthened"
    ADOPT_EXISTING = "adopt_existing"
    CONVERT_ATTACH = "convert_attach"
    CONFORMANCE = "conformance"


# The order in which apply runs a table's actions: free ranges before filling them.
APPLY_ORDER = {ActionKind.CONVERT: -1, ActionKind.ADOPT: 0, ActionKind.DETACH: 1, ActionKind.DROP: 2, ActionKind.REATTACH: 3, ActionKind.CREATE: 4,
               ActionKind.CONFORM: 5}
# Actions that take a partition away: withheld in a protected environment, reviewed in markdown.
DESTRUCTIVE = (ActionKind.DETACH, ActionKind.DROP)
# What a protected environment runs only from a reviewed plan file: what takes partitions away, and a conversion
# (it renames the table and re-creates what hangs on it).
REVIEWED = DESTRUCTIVE + (ActionKind.CONVERT,)
# Actions a plan shows with a row figure: what leaves with its rows, and what comes back with them.
ROW_FIGURED = (ActionKind.DETACH, ActionKind.DROP, ActionKind.REATTACH)


@dataclass(frozen=True)
class RowCount:
    """A partition's rows counted exactly at plan time, where statistics give no estimate (never analyzed).
    The count stops at a cap, so a large partition costs no more to count than a small one."""

    rows: Optional[int] = None  # None: not counted (why_not says why)
    capped: bool = False  # at least rows: the count stopped at the cap
    why_not: Optional[str] = None  # e.g. locked by another session for the whole ladder

    @classmethod
    def of(cls, seen: int, cap: int) -> "RowCount":
        """From a count of at most cap + 1 rows: one more than the cap says there are more."""
        return cls(min(seen, cap), capped=seen > cap)

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"rows": self.rows, "capped": self.capped}
        if self.why_not:
            data["why_not"] = self.why_not
        return data

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "RowCount":
        return cls(d.get("rows"), bool(d.get("capped")), d.get("why_not"))


@dataclass(frozen=True)
class Cascade:
    """Rows of another table that reference a partition retention detaches, deleted with it (on_reference: cascade):
    how many the plan counted, at most a cap (capped: at least rows)."""

    table: TableRef
    constraint: str
    rows: int
    capped: bool = False

    def text(self) -> str:
        counted = f"≥ {self.rows:,}" if self.capped else f"{self.rows:,}"
        return f"deletes {counted} row{'s' if self.rows != 1 or self.capped else ''} of {self.table} ({self.constraint})"

    def to_dict(self) -> dict[str, Any]:
        return {"table": str(self.table), "constraint": self.constraint, "rows": self.rows, "capped": self.capped}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Cascade":
        return cls(TableRef.parse(d["table"]), d["constraint"], d["rows"], bool(d.get("capped")))


@dataclass(frozen=True)
class Action:
    kind: ActionKind
    partition: TableRef
    bounds: Bounds
    reason: Reason
    rows_estimate: Optional[int] = None
    oid: Optional[int] = None  # the relation a detach or drop is about, checked again under lock
    attached: bool = True  # a drop of an attached partition detaches it first
    default_rows: int = 0  # a create: rows in the default partition that fall in its range (they must move)
    # Where rows_estimate is None: the exact count observe took. Not part of the action's identity (a count
    # moves with every insert): equality, signatures and staleness checks ignore it.
    rows_counted: Optional[RowCount] = field(default=None, compare=False)
    changes: tuple[Change, ...] = ()  # a conform: what makes the partition match its parent, in order
    # A retention detach with on_reference: cascade: the rows of other tables it deletes, as counted at plan time.
    cascade: tuple["Cascade", ...] = ()

    @property
    def changed(self) -> str:
        """A conform's changes in one line."""
        return "; ".join(c.text() for c in self.changes)

    @property
    def rows(self) -> Optional[int]:
        """The best row figure known: the estimate, else the exact count (a lower bound when capped)."""
        if self.rows_estimate is not None:
            return self.rows_estimate
        return self.rows_counted.rows if self.rows_counted else None

    def to_dict(self, *, saved: bool = False) -> dict[str, Any]:
        """The reviewable form; saved=True adds what apply checks against the catalog (a plan file)."""
        data = {
            "action": self.kind.value,
            "partition": str(self.partition),
            "from": iso(self.bounds.start),
            "to": iso(self.bounds.end),
            "reason": self.reason.value,
            "rows_estimate": self.rows_estimate,
        }
        if self.default_rows:
            data["default_rows"] = self.default_rows
        if self.rows_counted is not None:
            data["rows_counted"] = self.rows_counted.to_dict()
        if self.changes:
            data["changes"] = [c.to_dict() for c in self.changes]
        if self.cascade:
            data["cascade"] = [c.to_dict() for c in self.cascade]
        if saved:
            data.update(oid=self.oid, attached=self.attached)
        return data

    @classmethod
    def from_dict(cls, d: dict[str, Any], key_type: Optional[KeyType]) -> "Action":
        return cls(
            ActionKind(d["action"]),
            TableRef.parse(d["partition"]),
            Bounds(parse_key(d["from"], key_type), parse_key(d["to"], key_type)),
            Reason(d["reason"]),
            d.get("rows_estimate"),
            d.get("oid"),
            d.get("attached", True),
            d.get("default_rows", 0),
            RowCount.from_dict(d["rows_counted"]) if d.get("rows_counted") else None,
            tuple(Change.from_dict(c) for c in d.get("changes", ())),
            tuple(Cascade.from_dict(c) for c in d.get("cascade", ())),
        )


@dataclass(frozen=True)
class Note:
    """A partition the plan leaves alone, with a code, the reason, and a hint."""

    code: str
    partition: TableRef
    bounds: Bounds
    why: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "partition": str(self.partition),
            "from": iso(self.bounds.start),
            "to": iso(self.bounds.end),
            "code": self.code,
            "why": self.why,
            "hint": self.hint,
        }

    @property
    def hint(self) -> Optional[str]:
        """What to do about it (diagnostics.py)."""
        from .diagnostics import hint

        return hint(self.code)

    @classmethod
    def from_dict(cls, d: dict[str, Any], key_type: Optional[KeyType]) -> "Note":
        bounds = Bounds(parse_key(d["from"], key_type), parse_key(d["to"], key_type))
        return cls(d["code"], TableRef.parse(d["partition"]), bounds, d["why"])


@dataclass(frozen=True)
class Observation:
    """The observed state a table's plan was computed from, in the comparable form a saved plan keeps. Built only when
    asked for (a plan file, an apply): for 30,000 partitions it costs more than the planning itself."""

    compute: Callable[[], dict] = dict

    @cached_property
    def observed(self) -> dict:
        return self.compute()

    @cached_property
    def fingerprint(self) -> str:
        return structure_fingerprint(self.observed)


@dataclass(frozen=True)
class TablePlan:
    table: TableRef
    source: str
    key_type: Optional[KeyType]
    spec_fingerprint: str
    create_parent: bool = False
    actions: tuple[Action, ...] = ()
    kept: tuple[Note, ...] = ()
    unmanaged: tuple[Note, ...] = ()
    warnings: tuple[Note, ...] = ()
    errors: tuple[str, ...] = ()
    config: Optional[ConfigRow] = None  # the partition_config row to write, when it differs from the spec
    observed_digest: Optional[str] = None  # the server's digest of the structure planned from (catalog._DIGEST)
    conversion: Optional["Conversion"] = None  # the steps of a CONVERT action (conversion.py)
    # Why apply refuses this table (a privilege the connected role lacks); the plan is shown all the same.
    refused: Optional[str] = None
    analyze: Optional[str] = None  # why apply analyzes the parent (statistics.py); None: it does not
    key_encoding: Optional[str] = None  # the time an integer or uuid key holds (encoded.py): plans show it beside each bound
    id_mark: Optional[str] = None  # an id table's mark and where it was read (widths.py), shown above its actions
    # What the plan was computed from, in full (structure, log high-water mark, row presence of drop
    # candidates): a saved plan applies only to exactly this.
    observation: Observation = field(default_factory=Observation, compare=False, repr=False)

    @property
    def observed(self) -> dict:
        return self.observation.observed

    @property
    def observed_fingerprint(self) -> str:
        return self.observation.fingerprint

    @property
    def changes(self) -> bool:
        return self.create_parent or bool(self.actions) or self.config is not None or self.analyze is not None

    def without_destructive(self) -> "TablePlan":
        """This plan with its detaches and drops withheld, and with the creates that needed them."""
        if self.converting:
            return replace(self, actions=(), config=None, conversion=None)  # nothing of a table not yet converted
        withheld = [a for a in self.actions if a.kind in DESTRUCTIVE]
        kept = tuple(
            a for a in self.actions
            if a.kind not in DESTRUCTIVE and not any(a.bounds.overlaps(w.bounds) for w in withheld if w.attached)
        )
        return replace(self, actions=kept)

    @property
    def converting(self) -> bool:
        """A first-time conversion (not the finishing of one whose swap committed): reviewed like a drop."""
        return self.conversion is not None and self.conversion.cutover is not None

    def reviewed(self) -> int:
        """The actions a protected environment runs only from a reviewed plan file."""
        return sum(1 for a in self.actions if a.kind in DESTRUCTIVE or (a.kind is ActionKind.CONVERT and self.converting))

    @property
    def busy(self) -> bool:
        """Some of what this plan rests on was locked by another session: the plan is conservative there."""
        return any(n.code == BUSY for n in self.kept + self.warnings)

    def count(self, kind: ActionKind) -> int:
        return sum(1 for a in self.actions if a.kind is kind)

    def to_dict(self, *, saved: bool = False) -> dict[str, Any]:
        return {
            "table": str(self.table),
            "source": self.source,
            "key_type": self.key_type.value if self.key_type else None,
            "create_parent": self.create_parent,
            "actions": [a.to_dict(saved=saved) for a in self.actions],
            "kept": [n.to_dict() for n in self.kept],
            "unmanaged": [n.to_dict() for n in self.unmanaged],
            "warnings": [n.to_dict() for n in self.warnings],
            "errors": list(self.errors),
            "config": self.config.to_dict() if self.config else None,
            **({"conversion": self.conversion.to_dict()} if self.conversion else {}),
            **({"refused": self.refused} if self.refused else {}),
            **({"analyze": self.analyze} if self.analyze else {}),
            **({"key_encoding": self.key_encoding} if self.key_encoding else {}),
            **({"id_mark": self.id_mark} if self.id_mark else {}),
            "observed_fingerprint": self.observed_fingerprint,
            "spec_fingerprint": self.spec_fingerprint,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any], observed: Optional[dict] = None) -> "TablePlan":
        kt = KeyType(d["key_type"]) if d["key_type"] else None
        return cls(
            table=TableRef.parse(d["table"]),
            source=d["source"],
            key_type=kt,
            spec_fingerprint=d["spec_fingerprint"],
            create_parent=d["create_parent"],
            actions=tuple(Action.from_dict(a, kt) for a in d["actions"]),
            kept=tuple(Note.from_dict(n, kt) for n in d["kept"]),
            unmanaged=tuple(Note.from_dict(n, kt) for n in d["unmanaged"]),
            warnings=tuple(Note.from_dict(n, kt) for n in d["warnings"]),
            errors=tuple(d["errors"]),
            config=ConfigRow.from_dict(d["config"]) if d.get("config") else None,
            conversion=_conversion(d.get("conversion"), kt),
            refused=d.get("refused"),
            analyze=d.get("analyze"),
            key_encoding=d.get("key_encoding"),
            id_mark=d.get("id_mark"),
            observation=Observation(lambda: observed or {}),
        )


@dataclass(frozen=True)
class Plan:
    env: str
    now: datetime
    tables: tuple[TablePlan, ...] = field(default_factory=tuple)
    pinned: bool = False  # now was given with --now, not read from the database's clock
    database_now: Optional[datetime] = None  # the database's clock when now was pinned

    @property
    def busy(self) -> bool:
        return any(t.busy for t in self.tables)

    @property
    def changes(self) -> bool:
        return any(t.changes for t in self.tables)

    @property
    def errors(self) -> bool:
        return any(t.errors for t in self.tables)

    def without_destructive(self) -> "Plan":
        return replace(self, tables=tuple(t.without_destructive() for t in self.tables))

    @property
    def destructive(self) -> int:
        return sum(t.reviewed() for t in self.tables)

    def summary(self) -> dict[str, int]:
        return {kind.value: sum(t.count(kind) for t in self.tables) for kind in ActionKind}

    def to_dict(self, *, saved: bool = False) -> dict[str, Any]:
        return {
            "format_version": FORMAT_VERSION,
            "env": self.env,
            "now": iso(self.now),
            "clock": {"pinned": self.pinned, "database_now": iso(self.database_now)},
            "tables": [t.to_dict(saved=saved) for t in self.tables],
            "summary": self.summary(),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any], observed: Optional[dict[str, dict]] = None) -> "Plan":
        observed = observed or {}
        clock = d.get("clock") or {}
        return cls(
            env=d["env"],
            now=datetime.fromisoformat(d["now"]),
            tables=tuple(TablePlan.from_dict(t, observed.get(t["table"])) for t in d["tables"]),
            pinned=bool(clock.get("pinned")),
            database_now=datetime.fromisoformat(clock["database_now"]) if clock.get("database_now") else None,
        )


def _conversion(d: Optional[dict], key_type: Optional[KeyType]) -> Optional["Conversion"]:
    if not d:
        return None
    from .conversion import Conversion

    return Conversion.from_dict(d, key_type)


def parse_key(text: Optional[str], key_type: Optional[KeyType]) -> Optional[KeyValue]:
    """The inverse of model.iso for one key type."""
    if text is None:
        return None
    if key_type is KeyType.DATE:
        return date.fromisoformat(text)
    if key_type is KeyType.UUID:
        return UUID(text)
    if key_type is not None and not key_type.is_time:
        return int(text)
    return datetime.fromisoformat(text)
