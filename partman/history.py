"""`partman history`: reading partition_audit_log back (filters, one bounded read-only query) and rendering it."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from typing import Any, Optional, Sequence

import psycopg
from psycopg import Connection, sql

from .errors import CatalogError, UsageError
from .failures import first_line, read_failure
from .intervals import add_months
from .model import TableRef, iso

# What the audit log's CHECK (action IN …) allows, in the migration's order (tests hold the two in step).
ACTIONS = ("create_table", "create", "detach", "drop", "config", "reattach", "adopt", "convert")
AUDIT = "partition_audit_log"


@dataclass(frozen=True)
class Entry:
    """One row of partition_audit_log. Columns a state schema made by an older partman lacks read as None."""

    id: int
    at: datetime  # created_at
    action: str
    table: TableRef  # table_name, parsed from either face's spelling
    partition: TableRef  # partition_schema (the table's when unrecorded) and partition_name
    start: Optional[datetime]  # start_date: a partition's bounds as partition_log stores them (timestamptz)
    end: Optional[datetime]
    reason: Optional[str]
    environment: Optional[str]
    user: Optional[str]  # db_user
    plan_id: Optional[str]
    rows: Optional[int]  # rows_estimate
    source: Optional[str]  # 'partman' or 'sql' (the migration's functions)
    version: Optional[str]  # partman_version

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "at": iso(self.at), "action": self.action, "table": str(self.table),
            "partition": str(self.partition), "start": iso(self.start), "end": iso(self.end), "rows": self.rows,
            "user": self.user, "environment": self.environment, "plan_id": self.plan_id, "reason": self.reason,
            "source": self.source, "partman_version": self.version,
        }


@dataclass(frozen=True)
class Filters:
    """What a read was narrowed to; text() echoes it when nothing matched."""

    tables: tuple[TableRef, ...] = ()
    since: Optional[datetime] = None
    actions: tuple[str, ...] = ()
    limit: Optional[int] = None

    def describe(self) -> str:
        parts = []
        if self.tables:
            parts.append("table " + ", ".join(map(str, self.tables)))
        if self.since is not None:
            parts.append(f"since {_when(self.since)}")
        if self.actions:
            parts.append("action " + ", ".join(self.actions))
        return "; ".join(parts)


# --since: a count and a unit, or an ISO 8601 date or timestamp. 'm' is minutes (as in 90m); months and years
# are spelled out and move by the calendar, the others are exact durations.
_UNITS = {
    "minutes": ("m", "min", "mins", "minute", "minutes"),
    "hours": ("h", "hr", "hrs", "hour", "hours"),
    "days": ("d", "day", "days"),
    "weeks": ("w", "week", "weeks"),
    "months": ("month", "months"),
    "years": ("year", "years"),
}
_UNIT = {spelling: unit for unit, spellings in _UNITS.items() for spelling in spellings}
_RELATIVE = re.compile(r"^(\d{1,6})\s*([a-z]+)$", re.IGNORECASE)
_SINCE_EXAMPLE = "e.g. --since 30d, --since '2 weeks', --since '1 month' or --since 2027-01-01"


def parse_since(text: str, now: datetime) -> datetime:
    """The instant a --since value means, given the database's clock `now` (timezone-aware).

    Relative: a whole number and a unit, with or without a space, any case: minutes (`90m`, `90 min`,
    `90 minutes`), hours (`12h`, `12 hours`), days (`30d`, `30 days`), weeks (`2w`, `2 weeks`): exact
    durations before now; months and years (`1 month`, `6 months`, `1 year`, spelled out only, since `m` is
    minutes) go back by the calendar, the day clamped to the month's end (31 March − 1 month = 28/29 February).
    Absolute: an ISO 8601 date (`2027-01-01`, midnight UTC) or timestamp with an offset (`2027-01-01T06:00Z`,
    `2027-01-01 06:00+02:00`); a timestamp without an offset is refused, as --now refuses it.
    Anything else → UsageError, one line naming --since with examples."""
    value = text.strip()
    relative = _RELATIVE.match(value)
    try:
        if relative and relative.group(2).lower() in _UNIT:
            return _before(now, int(relative.group(1)), _UNIT[relative.group(2).lower()])
        return _absolute(value)
    except (ValueError, OverflowError):
        pass
    raise UsageError(f"--since {_quoted(text)} is not a duration or an ISO 8601 date ({_SINCE_EXAMPLE})")


def _before(now: datetime, amount: int, unit: str) -> datetime:
    if unit in ("months", "years"):
        months = amount * (12 if unit == "years" else 1)
        return datetime.combine(add_months(now.date(), -months), now.timetz())
    return now - timedelta(**{unit: amount})


def _absolute(value: str) -> datetime:
    try:
        day = date.fromisoformat(value)
    except ValueError:
        moment = datetime.fromisoformat(value)
        if moment.tzinfo is None:
            raise UsageError(f"--since {_quoted(value)} needs an offset (e.g. {value}Z), or give a bare date") from None
        return moment
    return datetime.combine(day, time(), timezone.utc)


def _quoted(text: str) -> str:
    return repr(text if len(text) <= 60 else text[:60] + "…")


def check_actions(actions: Sequence[str]) -> tuple[str, ...]:
    unknown = [a for a in actions if a not in ACTIONS]
    if unknown:
        raise UsageError(f"--action {_quoted(unknown[0])} is not an audited action (valid: {', '.join(ACTIONS)})")
    return tuple(dict.fromkeys(actions))


# Everything but the columns the filters and the order use goes through to_jsonb(row), so a state schema made
# by an older partman (without source, rows_estimate, …) reads with those as NULL, in the same one query.
_SELECT = """
SELECT a.id, a.created_at, a.action, a.table_name, j.r ->> 'partition_schema', j.r ->> 'partition_name',
       (j.r ->> 'start_date')::timestamptz, (j.r ->> 'end_date')::timestamptz, j.r ->> 'reason', j.r ->> 'environment',
       j.r ->> 'db_user', j.r ->> 'plan_id', (j.r ->> 'rows_estimate')::bigint, j.r ->> 'source', j.r ->> 'partman_version'
  FROM {audit} AS a CROSS JOIN LATERAL to_jsonb(a) AS j(r)
 WHERE {where}
 ORDER BY a.created_at DESC, a.id DESC
"""
# The Python face writes str(TableRef) ('public.Bookings'), the SQL face format('%I.%I') ('public."Bookings"'):
# a table is matched in either spelling.
_TABLES = sql.SQL(
    "(a.table_name = ANY({plain}::text[]) OR a.table_name IN"
    " (SELECT format('%I.%I', t.s, t.n) FROM unnest({schemas}::text[], {names}::text[]) AS t(s, n)))")

_SESSION = """
SELECT set_config('TimeZone', 'UTC', true), set_config('statement_timeout', %s, true),
       set_config('lock_timeout', %s, true), quote_ident(current_user), quote_ident(%s)
"""


def query(schema: str, filters: Filters) -> sql.Composed:
    """The one statement a read runs; values are literals composed by psycopg, names identifiers."""
    where: list[sql.Composable] = [sql.SQL("true")]
    if filters.tables:
        where.append(_TABLES.format(
            plain=sql.Literal([str(t) for t in filters.tables]),
            schemas=sql.Literal([t.schema for t in filters.tables]), names=sql.Literal([t.name for t in filters.tables])))
    if filters.since is not None:
        where.append(sql.SQL("a.created_at >= {}").format(sql.Literal(filters.since)))
    if filters.actions:
        where.append(sql.SQL("a.action = ANY({})").format(sql.Literal(list(filters.actions))))
    composed = sql.SQL(_SELECT).format(audit=sql.Identifier(schema, AUDIT), where=sql.SQL(" AND ").join(where))
    if filters.limit is not None:
        composed += sql.SQL(" LIMIT {}").format(sql.Literal(filters.limit))
    return composed


def read(conn: Connection, schema: str, *, tables: Sequence[TableRef] = (), since: Optional[datetime] = None,
         actions: Sequence[str] = (), limit: Optional[int] = None, timeout_ms: int = 5000,
         lock_timeout_ms: int = 100) -> list[Entry]:
    """The audit log of a state schema, newest first (created_at, then id), narrowed by the filters.

    One SELECT on partition_audit_log alone (SELECT on it and USAGE on the schema suffice, a standby will do),
    in a READ ONLY transaction bounded by statement_timeout (timeout_ms) and lock_timeout (lock_timeout_ms: the
    only lock it takes conflicts with ACCESS EXCLUSIVE, e.g. an apply widening the table's action check).
    `conn` must be idle (an autocommit connection, as the CLI's). Raises UsageError for an unknown action or a
    limit below 1, CatalogError for a missing table or privilege, LockBusy when the lock was not granted."""
    from .catalog import consistent_view

    filters = Filters(tuple(tables), since, check_actions(actions), limit)
    if limit is not None and limit < 1:
        raise UsageError(f"--limit {limit} must be at least 1")
    names = ("CURRENT_USER", schema)  # until the server has said who and how the schema is quoted
    try:
        with consistent_view(conn) as cur:
            *_, role, quoted = cur.execute(_SESSION, (f"{timeout_ms}ms", f"{lock_timeout_ms}ms", schema)).fetchone()
            names = (role, quoted)
            rows = cur.execute(query(schema, filters)).fetchall()
    except psycopg.Error as exc:
        raise _failure(exc, *names, timeout_ms, lock_timeout_ms) from None
    return [_entry(row) for row in rows]


def _failure(exc: psycopg.Error, role: str, schema: str, timeout_ms: int, lock_ms: int) -> Exception:
    """The one-line error for each way the read fails; anything unforeseen goes up as it is."""
    table = f"{schema}.{AUDIT}"
    if isinstance(exc, psycopg.errors.UndefinedTable):  # a missing schema says so too: relation does not exist
        return CatalogError(f"no {AUDIT} in schema {schema}: nothing was applied with this state schema yet"
                            " (or pass --state-schema)")
    if isinstance(exc, psycopg.errors.InsufficientPrivilege):
        if "schema" in (exc.diag.message_primary or ""):
            return CatalogError(f"permission denied for schema {schema}: reading the audit log needs"
                                f" GRANT USAGE ON SCHEMA {schema} TO {role}")
        return CatalogError(f"permission denied for table {table}: reading the audit log needs"
                            f" GRANT SELECT ON {table} TO {role}")
    waited = read_failure(exc, table, timeout_ms, lock_ms, "; narrow it with --since, --table or --limit")
    if waited is not None:
        return waited
    if isinstance(exc, psycopg.errors.UndefinedColumn):
        return CatalogError(f"{table} is not partman's audit log: {first_line(exc)}")
    return exc



def _entry(row: tuple) -> Entry:
    (id_, at, action, table_name, part_schema, part_name, start, end, reason, env, user, plan_id, rows, source,
     version) = row
    table = stored_table(table_name)
    return Entry(id_, at, action, table, TableRef(part_schema or table.schema, part_name or ""), start, end, reason,
                 env, user, plan_id, rows, source, version)


_QUOTED_PAIR = re.compile(r'^("(?:[^"]|"")*"|[^".]+)\.("(?:[^"]|"")*"|[^".]+)$')


def stored_table(text: str) -> TableRef:
    """A table_name as either face stored it: format('%I.%I') when a part is quoted, str(TableRef) otherwise."""
    match = _QUOTED_PAIR.match(text) if '"' in text else None
    if match is None:
        return TableRef.parse(text)
    return TableRef(*(p[1:-1].replace('""', '"') if p.startswith('"') else p for p in match.groups()))


def as_json(entries: list[Entry]) -> str:
    return json.dumps({"format_version": 1, "entries": [e.to_dict() for e in entries]}, indent=2) + "\n"


_HEADER = ("WHEN", "ACTION", "PARTITION", "RANGE", "ROWS", "WHO", "ENV", "PLAN", "WHY")
_ROWS = _HEADER.index("ROWS")


def text(entries: list[Entry], filters: Optional[Filters] = None) -> str:
    """One aligned line per action, newest first (as read), under a header; a count, or a line saying nothing
    matched (with the filters), at the end. About 120 characters with the usual names (WHY, the reason, comes
    last, so a long one only runs past the end). Control characters in stored values are escaped: one line each."""
    filters = filters or Filters()
    if not entries:
        narrowed = filters.describe()
        return f"No actions recorded{f' ({narrowed})' if narrowed else ''}.\n"
    rows = [_HEADER] + [_cells(e) for e in entries]
    # ROWS is known only for what left or came back with rows: without any, the column would be blank width.
    shown = [i for i in range(len(_HEADER)) if i != _ROWS or any(e.rows is not None for e in entries)]
    widths = {i: max(len(r[i]) for r in rows) for i in shown}
    lines = ["  ".join(r[i].rjust(widths[i]) if i == _ROWS else r[i].ljust(widths[i]) for i in shown).rstrip()
             for r in rows]
    count = f"{len(entries)} action{'s' if len(entries) != 1 else ''}"
    if filters.limit is not None and len(entries) >= filters.limit:
        count += f" (the newest {filters.limit}; raise --limit to see older ones)"
    return "\n".join(lines + ["", count + "."]) + "\n"


def _cells(e: Entry) -> tuple[str, ...]:
    plan = e.plan_id[:8] if e.plan_id else ("(sql)" if e.source == "sql" else "-")
    rows = "" if e.rows is None else f"{e.rows:,}"
    return tuple(_clean(c) for c in (_when(e.at), e.action, str(e.partition), _range(e.start, e.end), rows,
                                     e.user or "-", e.environment or "-", plan, e.reason or "-"))


def _when(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _range(start: Optional[datetime], end: Optional[datetime]) -> str:
    """A partition's range as the plan shows it, but short: dates when both bounds fall on midnight UTC."""
    if start is None and end is None:
        return "-"
    bounds = [b.astimezone(timezone.utc) for b in (start, end) if b is not None]
    midnight = all(b.time() == time() for b in bounds)

    def one(b: Optional[datetime], unbounded: str) -> str:
        if b is None:
            return unbounded
        b = b.astimezone(timezone.utc)
        if midnight:
            return b.date().isoformat()
        return _when(b).replace(":00Z", "Z") if b.second == 0 and b.microsecond == 0 else _when(b)

    return f"[{one(start, 'MINVALUE')}, {one(end, 'MAXVALUE')})"


def _clean(value: str) -> str:
    """A stored value on one line: control characters (a newline in a reason, say) are shown escaped."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in value)
