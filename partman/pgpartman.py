"""`partman import pg-partman`: reading pg_partman's part_config (4.x or 5.x, told apart by its columns), deciding
which partition sets partman can express, and the spec text written for each; the others are named with why not."""

from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Optional, Sequence, Union
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import psycopg
from psycopg import Connection, sql

from .errors import CatalogError, PartmanError
from .failures import first_line, read_failure
from .intervals import Interval, Span
from .model import KeyType, TableRef
from .timeline import Grid, KeySpace
from .widths import IdSpace, Reach, WidthGrid

# --- What pg_partman's settings mean in partman's terms (pure; tests/test_import_pg_partman.py pins them) ---

# partition_interval as PostgreSQL prints it under IntervalStyle 'postgres', as (months, days, seconds).
INTERVALS = {(0, 1, 0): Interval.DAILY, (0, 7, 0): Interval.WEEKLY, (1, 0, 0): Interval.MONTHLY,
             (3, 0, 0): Interval.QUARTERLY, (12, 0, 0): Interval.YEARLY}
# The datetime_string pg_partman 4.x writes itself (sql/functions/create_parent.sql at v4.7.2): the keywords
# 'daily' … 'yearly' give the first string; a weekly or quarterly set made with an interval ('1 week', '3 months')
# instead of the keyword gets 'YYYY_MM_DD' or 'YYYY_MM'.
DATETIME_4 = {
    Interval.DAILY: ("YYYY_MM_DD",),
    Interval.WEEKLY: ('IYYY"w"IW', "YYYY_MM_DD"),
    Interval.MONTHLY: ("YYYY_MM",),
    Interval.QUARTERLY: ('YYYY"q"Q', "YYYY_MM"),
    Interval.YEARLY: ("YYYY",),
}
# 5.x writes 'YYYYMMDD' for every interval of a day or more (calculate_time_partition_info.sql, v5.0.0 and v5.1.0);
# a set upgraded from 4.x keeps its 4.x string (updates/pg_partman--4.7.4--5.0.0.sql leaves it as it was).
DATETIME_5 = "YYYYMMDD"
KEY_NAMES = {KeyType.TIMESTAMPTZ: "timestamptz", KeyType.TIMESTAMP: "timestamp", KeyType.DATE: "date"}
_GRID_RULE = {
    Interval.DAILY: "days start at midnight",
    Interval.WEEKLY: "ISO weeks start on Monday at midnight",
    Interval.MONTHLY: "months start on the 1st at midnight",
    Interval.QUARTERLY: "quarters start on 1 January, April, July and October at midnight",
    Interval.YEARLY: "years start on 1 January at midnight",
}
_PARTS = re.compile(r"^(?:(\d+) years? ?)?(?:(\d+) mons? ?)?(?:(\d+) days? ?)?(?:(\d+):(\d\d):(\d\d(?:\.\d+)?))?$")


def interval_parts(text: str) -> Optional[tuple[int, int, float]]:
    """(months, days, seconds) of an interval printed under IntervalStyle 'postgres' ('1 year 2 mons', '7 days',
    '01:00:00'); None for a negative or unreadable one."""
    m = _PARTS.match(text.strip())
    if not m or not text.strip():
        return None
    years, months, days, hours, minutes, seconds = m.groups()
    clock = int(hours or 0) * 3600 + int(minutes or 0) * 60 + float(seconds or 0)
    return int(years or 0) * 12 + int(months or 0), int(days or 0), clock


def interval_of(text: str) -> Optional[Interval]:
    """partman's interval for pg_partman's partition_interval (canonical text), or None when it has none."""
    return INTERVALS.get(interval_parts(text) or (-1, -1, -1))


def premake_span(premake: int, interval: Interval) -> Span:
    """pg_partman's premake (partitions ahead of the current one) as partman's premake (a duration from now).

    pg_partman keeps the current partition and `premake` more; partman keeps partitions through the first
    boundary after now + premake (timeline.window), which is the end of that same last partition: so premake ×
    interval, not (premake + 1) × interval. (At an instant exactly on a boundary partman asks one partition
    less than pg_partman's maintenance made; it never asks for more.) ValueError beyond partman's limits."""
    if interval is Interval.WEEKLY:
        return Span.parse(f"{premake} weeks")
    if interval is Interval.DAILY:
        return Span.parse(f"{premake} days")
    if interval is Interval.YEARLY:
        return Span.parse(f"{premake} years")
    return Span.parse(f"{premake * (3 if interval is Interval.QUARTERLY else 1)} months")


def retention_span(text: str) -> Span:
    """pg_partman's retention (canonical interval text) as a partman span: whole months (years when they divide)
    or whole days. ValueError naming why not otherwise."""
    parts = interval_parts(text)
    if parts is None or parts == (0, 0, 0):
        raise ValueError("not a positive interval, which partman's retention needs")
    months, days, seconds = parts
    if seconds or (months and days):
        raise ValueError("not whole months or whole days, which partman's retention needs")
    if months:
        return Span.parse(f"{months // 12} years" if months % 12 == 0 else f"{months} months")
    return Span.parse(f"{days} days")


# create_parent(p_date_trunc_interval := …) writes this for any interval of a day or more, whatever the keyword.
DATETIME_TRUNC = "YYYY_MM_DD"


def default_datetime_strings(interval: Interval, generation: int) -> tuple[str, ...]:
    """The datetime_string values pg_partman writes itself for this interval (generation 4 or 5)."""
    written = DATETIME_4[interval] if generation == 4 else (DATETIME_5, *DATETIME_4[interval])
    return written + (() if DATETIME_TRUNC in written else (DATETIME_TRUNC,))


# pg_partman's epoch (part_config.epoch) as partman's key_encoding; 'nanoseconds' has none (a bigint ends in 2262).
_EPOCHS = {"seconds": "epoch_s", "milliseconds": "epoch_ms", "microseconds": "epoch_us"}

# --- Reading part_config ---

# Every part_config of 4.0 to 5.x has these; the rest of what is read is NULL where a version lacks it.
REQUIRED = ("parent_table", "control", "partition_type", "partition_interval", "premake", "epoch", "retention",
            "retention_keep_table", "datetime_string", "constraint_cols", "sub_partition_set_full")
OPTIONAL = ("retention_schema", "undo_in_progress", "template_table", "inherit_privileges", "infinite_time_partitions")

_START = """
SELECT current_setting('TimeZone'), now()::date,
       set_config('statement_timeout', %(timeout)s, true), set_config('lock_timeout', %(lock_timeout)s, true)
"""
# Bounds print in UTC with ISO dates (catalog.parse_bound reads them so); intervals print as '1 mon', '7 days'.
_STYLE = ("SELECT set_config('TimeZone', 'UTC', true), set_config('DateStyle', 'ISO, YMD', true),"
          " set_config('IntervalStyle', 'postgres', true)")
_TABLES = """
SELECT quote_ident(%(schema)s), config.oid IS NOT NULL, sub.oid IS NOT NULL,
       coalesce(has_table_privilege(config.oid, 'SELECT'), true),
       (SELECT array_agg(a.attname::text) FROM pg_attribute a
         WHERE a.attrelid = config.oid AND a.attnum > 0 AND NOT a.attisdropped),
       (SELECT e.extversion FROM pg_extension e WHERE e.extname = 'pg_partman' AND e.extnamespace = n.oid)
  FROM (SELECT 1) AS one
  LEFT JOIN pg_namespace n ON n.nspname = %(schema)s
  LEFT JOIN pg_class config ON config.relnamespace = n.oid AND config.relname = 'part_config' AND config.relkind IN ('r', 'p')
  LEFT JOIN pg_class sub ON sub.relnamespace = n.oid AND sub.relname = 'part_config_sub' AND sub.relkind IN ('r', 'p')
"""
# pg_partman names a parent 'schema.table' with raw names (split_part on the first dot, as it does).
_SETS = """
SELECT {columns}, {in_sub}, c.oid, c.relkind, c.relispartition, format_type(a.atttypid, a.atttypmod),
       un.nspname, uc.relname
  FROM {config} AS p
  LEFT JOIN pg_namespace n ON n.nspname = split_part(p.parent_table, '.', 1)
  LEFT JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = substr(p.parent_table, strpos(p.parent_table, '.') + 1)
  LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = p.control AND a.attnum > 0 AND NOT a.attisdropped
  LEFT JOIN pg_inherits up ON up.inhrelid = c.oid AND c.relispartition
  LEFT JOIN pg_class uc ON uc.oid = up.inhparent
  LEFT JOIN pg_namespace un ON un.oid = uc.relnamespace
 ORDER BY p.parent_table
"""
_CHILDREN = """
SELECT i.inhparent, n.nspname, c.relname, pg_get_expr(c.relpartbound, 0)
  FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE i.inhparent = ANY(%(parents)s::oid[]) AND c.relispartition
 ORDER BY 1, 3
"""


@dataclass(frozen=True)
class PartSet:
    """One part_config row as read, with what the catalog says about its parent table."""

    parent: TableRef
    control: str
    control_type: Optional[str]  # format_type() of the control column; None when the table or column is missing
    partition_type: str
    interval_raw: str  # partition_interval as stored
    interval: Optional[str]  # canonical ('1 mon'); None when it is not an interval (an id set's '10')
    premake: int
    epoch: str
    retention: Optional[str]  # as configured
    retention_canonical: Optional[str]  # as an interval, canonical; None when it is not one
    retention_keep_table: bool
    retention_schema: Optional[str]
    datetime_string: Optional[str]
    constraint_cols: tuple[str, ...]
    sub_partitioned: bool  # a parent in part_config_sub, or sub_partition_set_full
    partition_of: Optional[TableRef]  # the table is itself a partition (of a sub-partitioned set)
    exists: bool
    relkind: Optional[str]
    undo_in_progress: bool
    partitions: tuple[tuple[TableRef, str], ...]  # (name, pg_get_expr(relpartbound)) of each attached partition
    template_table: Optional[str] = None  # pg_partman's template (indexes, storage parameters for new children)
    inherit_privileges: bool = False  # pg_partman copies the parent's grants to each child
    infinite: bool = True  # infinite_time_partitions: premake counts from now (else from the newest row)
    template_extras: bool = False  # the template holds indexes or storage parameters
    newest_ahead: Optional[str] = None  # the newest control value, when it lies after now

    @property
    def key_type(self) -> Optional[KeyType]:
        """The control column's time type; None for any other (an id set's is id_key)."""
        key_type = KeyType.from_catalog(self.control_type) if self.control_type else None
        return key_type if key_type is not None and key_type.is_time else None

    @property
    def encoding(self) -> Optional[str]:
        """An epoch set's key_encoding (encoded.py), when its control column can hold it; None otherwise."""
        from .encoded import ENCODINGS

        key_type = KeyType.from_catalog(self.control_type) if self.control_type else None
        encoding = _EPOCHS.get(self.epoch)
        return encoding if encoding and key_type in ENCODINGS[encoding][1] else None

    @property
    def time_key(self) -> Optional[KeyType]:
        """The key type a time set's grid is laid out in: a time type, or an epoch set's integer type."""
        return self.key_type or (KeyType.from_catalog(self.control_type) if self.encoding else None)

    @property
    def id_key(self) -> Optional[KeyType]:
        """The control column's integer type in an id set (epoch none): partman's id tables (widths.py)."""
        key_type = KeyType.from_catalog(self.control_type) if self.control_type else None
        ids = (KeyType.SMALLINT, KeyType.INTEGER, KeyType.BIGINT)
        return key_type if key_type in ids and self.epoch == "none" else None


@dataclass(frozen=True)
class Source:
    """Everything an import reads, in one consistent view."""

    schema: str  # where part_config lives
    quoted_schema: str  # as SQL spells it
    version: Optional[str]  # pg_extension's extversion, when the extension is installed there
    generation: int  # 4 or 5, from part_config's columns
    timezone: str  # the session's TimeZone, in which pg_partman computed boundaries
    today: date  # the database's date, for the header
    sets: tuple[PartSet, ...]


def read(conn: Connection, schema: str, *, timeout_ms: int = 10_000, lock_timeout_ms: int = 100) -> Source:
    """part_config and its parents, in one READ ONLY, REPEATABLE READ transaction bounded by statement_timeout and
    lock_timeout. CatalogError when there is no part_config in schema or it cannot be read; LockBusy when a
    table stays locked (an ALTER of part_config, say)."""
    from .catalog import consistent_view

    try:
        with consistent_view(conn) as cur:
            timezone, today, *_ = cur.execute(_START, {"timeout": f"{timeout_ms}ms",
                                                       "lock_timeout": f"{lock_timeout_ms}ms"}).fetchone()
            cur.execute(_STYLE)
            quoted, has_config, has_sub, readable, columns, version = cur.execute(_TABLES, {"schema": schema}).fetchone()
            if not has_config:
                raise CatalogError(f"no table {schema}.part_config: pg_partman is not installed in schema {schema}"
                                   " (pass --schema, the schema of CREATE EXTENSION pg_partman)")
            if not readable:
                raise CatalogError(f"permission denied for table {schema}.part_config: the import needs"
                                   f" GRANT SELECT ON {quoted}.part_config")
            generation = _generation(schema, set(columns or ()))
            sets = _sets(cur, schema, set(columns), has_sub)
    except psycopg.Error as exc:
        raise _failure(exc, schema, timeout_ms, lock_timeout_ms) from None
    return Source(schema, quoted, version, generation, timezone, today, tuple(sets))


def _generation(schema: str, columns: set[str]) -> int:
    missing = [c for c in REQUIRED if c not in columns]
    if missing:
        raise CatalogError(f"{schema}.part_config has no column {', '.join(missing)}: not pg_partman's 4.x or 5.x"
                           " part_config")
    # 5.0 added default_table (and dropped 4.x's trigger-era columns such as optimize_trigger).
    return 5 if "default_table" in columns else 4


# Where _SETS puts the parent's OID and the control column's type, after part_config's columns and in_sub.
_OID = len(REQUIRED) + len(OPTIONAL) + 1
_CONTROL_TYPE = _OID + 3


def _sets(cur, schema: str, columns: set[str], has_sub: bool) -> list[PartSet]:
    picked = [sql.SQL("p.{}").format(sql.Identifier(c)) if c in columns else sql.SQL("NULL")
              for c in REQUIRED + OPTIONAL]
    in_sub = sql.SQL("p.sub_partition_set_full")
    if has_sub:
        in_sub = sql.SQL("(p.sub_partition_set_full OR EXISTS (SELECT 1 FROM {} AS s WHERE s.sub_parent = p.parent_table))"
                         ).format(sql.Identifier(schema, "part_config_sub"))
    query = sql.SQL(_SETS).format(columns=sql.SQL(", ").join(picked), in_sub=in_sub,
                                  config=sql.Identifier(schema, "part_config"))
    rows = cur.execute(query).fetchall()
    oids = [row[_OID] for row in rows]
    children: dict[int, list] = {}
    for parent, nspname, relname, bound in cur.execute(_CHILDREN, {"parents": [o for o in oids if o]}).fetchall():
        children.setdefault(parent, []).append((TableRef(nspname, relname), bound))
    # Intervals only of time sets: an id set's partition_interval is a number ('10', which would read as seconds).
    texts = {t for row in rows if _is_time(row[_CONTROL_TYPE]) or row[5] != "none" for t in (row[3], row[6]) if t}
    canonical = {t: _canonical(cur, t) for t in sorted(texts)}
    return _extras(cur, [_part_set(row, children, canonical) for row in rows])


def _is_time(type_name: Optional[str]) -> bool:
    key_type = KeyType.from_catalog(type_name or "")
    return key_type is not None and key_type.is_time


_TRUNC = {Interval.DAILY: "day", Interval.WEEKLY: "week", Interval.MONTHLY: "month", Interval.QUARTERLY: "quarter",
          Interval.YEARLY: "year"}
_TEMPLATES = """
SELECT t.name, (SELECT count(*) FROM pg_index x WHERE x.indrelid = c.oid) > 0 OR c.reloptions IS NOT NULL
  FROM unnest(%s::text[]) AS t(name)
  JOIN pg_namespace n ON n.nspname = split_part(t.name, '.', 1)
  JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = substr(t.name, strpos(t.name, '.') + 1)
"""


def _extras(cur, sets: list[PartSet]) -> list[PartSet]:
    """What pg_partman would give new partitions that partman will not: a template's indexes and storage
    parameters; and, without infinite_time_partitions, partitions ahead of the newest row rather than of now."""
    from dataclasses import replace

    names = sorted({s.template_table for s in sets if s.template_table})
    extras = dict(cur.execute(_TEMPLATES, (names,)).fetchall()) if names else {}
    out = []
    for s in sets:
        ahead, interval = None, interval_of(s.interval or "")
        if not s.infinite and s.exists and s.key_type is not None and interval is not None:
            # Ahead by a partition or more: within the current one, pg_partman's premake and partman's agree.
            newest, later = cur.execute(sql.SQL(
                "SELECT max({c})::text, date_trunc({u}, max({c})::timestamptz) > date_trunc({u}, now()) FROM {t}").format(
                c=sql.Identifier(s.control), u=sql.Literal(_TRUNC[interval]),
                t=sql.Identifier(s.parent.schema, s.parent.name))).fetchone()
            ahead = newest if later else None
        out.append(replace(s, template_extras=bool(extras.get(s.template_table)), newest_ahead=ahead))
    return out


def differences(found: PartSet) -> tuple[str, ...]:
    """One line each for what an imported set will do differently under partman."""
    notes = []
    if found.template_extras:
        notes.append(f"its template table {found.template_table} gives pg_partman's partitions indexes or storage"
                     " parameters; partman makes new partitions LIKE the parent: put them on the parent")
    if found.inherit_privileges:
        notes.append("pg_partman grants the parent's privileges on each partition (inherit_privileges); partman's"
                     " new partitions get none of their own (access through the parent is checked on the parent)")
    if found.id_key is not None:
        notes.append("pg_partman counts premake and retention from the largest id in the table; partman from the"
                     " sequence behind the key when there is one (at or past the largest id), else from the largest id")
    if found.newest_ahead:
        notes.append(f"pg_partman (infinite_time_partitions off) premakes from the newest row ({found.newest_ahead}),"
                     " which lies ahead of now; partman premakes from now: raise premake to cover how far ahead rows run")
    return tuple(notes)


def _canonical(cur, text: str) -> Optional[str]:
    """An interval's text as PostgreSQL prints it under IntervalStyle 'postgres', or None when it is not one.
    Each in a savepoint: one malformed retention (a hand-edited row) is that set's problem, not the import's."""
    try:
        with cur.connection.transaction():
            return cur.execute("SELECT %s::interval::text", (text,)).fetchone()[0]
    except psycopg.DataError:  # SQLSTATE class 22: invalid input syntax, a field out of range
        return None


def _part_set(row: tuple, children: dict[int, list], canonical: dict[str, Optional[str]]) -> PartSet:
    (parent_table, control, partition_type, interval, premake, epoch, retention, keep, datetime_string, constraint_cols,
     set_full, retention_schema, undo, template, inherit_privileges, infinite, in_sub, oid, relkind, is_partition,
     control_type, up_schema, up_name) = row
    return PartSet(
        parent=TableRef.parse(parent_table), control=control, control_type=control_type,
        partition_type=partition_type, interval_raw=interval, interval=canonical.get(interval), premake=premake,
        epoch=epoch,
        retention=retention, retention_canonical=canonical.get(retention) if retention else None,
        retention_keep_table=bool(keep), retention_schema=retention_schema, datetime_string=datetime_string,
        constraint_cols=tuple(constraint_cols or ()), sub_partitioned=bool(in_sub or set_full),
        partition_of=TableRef(up_schema, up_name) if is_partition and up_name else None, exists=oid is not None,
        relkind=relkind, undo_in_progress=bool(undo), partitions=tuple(children.get(oid, ())),
        template_table=template, inherit_privileges=bool(inherit_privileges), infinite=infinite is not False,
    )


def _failure(exc: psycopg.Error, schema: str, timeout_ms: int, lock_ms: int) -> Exception:
    table = f"{schema}.part_config"
    if isinstance(exc, psycopg.errors.InsufficientPrivilege):
        if "schema" in (exc.diag.message_primary or ""):
            return CatalogError(f"permission denied for schema {schema}: the import needs GRANT USAGE ON SCHEMA {schema}"
                                " (and SELECT on part_config)")
        return CatalogError(f"permission denied reading {table} or its tables: {first_line(exc)}")
    return read_failure(exc, table, timeout_ms, lock_ms) or exc


# --- Deciding, and the spec text ---


@dataclass(frozen=True)
class Imported:
    table: TableRef
    filename: str
    text: str
    notes: tuple[str, ...] = ()  # where partman will behave differently from pg_partman for this set


@dataclass(frozen=True)
class Skipped:
    table: TableRef
    reason: str


Outcome = Union[Imported, Skipped]


@dataclass(frozen=True)
class _Settings:
    """A set partman can express, in partman's terms."""

    key_type: KeyType
    interval: Interval
    premake: Span
    retention: Optional[Span]
    encoding: Optional[str] = None  # an epoch set's key_encoding


@dataclass(frozen=True)
class _IdSettings:
    """An id set partman can express: a width, premake in partitions, retention in ids."""

    key_type: KeyType
    width: int
    premake: Reach
    retention: Optional[Reach]


def convert(source: Source, out: str) -> list[Outcome]:
    """One outcome per set, in part_config's order: a spec to write, or why partman cannot express it."""
    outcomes: list[Outcome] = []
    for found in source.sets:
        settings = _settings(found, source)
        if isinstance(settings, str):
            outcomes.append(Skipped(found.parent, settings))
        else:
            outcomes.append(Imported(found.parent, filename(found.parent), spec_text(found, settings, source, out),
                                     differences(found)))
    return outcomes


def _settings(found: PartSet, source: Source) -> Union[_Settings, str]:
    """The set in partman's terms, or the one reason (the first found) it is not imported."""
    why = _structure_problem(found)
    if why:
        return why
    if found.id_key is not None:
        return _id_settings(found)
    assert found.time_key is not None
    interval = interval_of(found.interval or "")
    if interval is None:
        return (f"interval {found.interval or found.interval_raw!r} is not one of partman's (daily, weekly,"
                " monthly, quarterly, yearly)")
    allowed = default_datetime_strings(interval, source.generation)
    if found.datetime_string not in allowed:
        return (f"custom datetime_string {found.datetime_string!r} (pg_partman {source.generation}.x writes"
                f" {' or '.join(map(repr, allowed))} for a {interval.value} set); partman names partitions its own way")
    spans = _spans(found, interval)
    if isinstance(spans, str):
        return spans
    return _grid_problem(found, interval, source) or _Settings(found.time_key, interval, *spans, found.encoding)


def _spans(found: PartSet, interval: Interval) -> Union[tuple[Span, Optional[Span]], str]:
    """premake and retention as partman spans, or why not."""
    try:
        premake = premake_span(found.premake, interval)
    except ValueError as exc:
        return f"premake {found.premake} ({interval.value}): {exc}"
    if not found.retention:
        return premake, None
    if found.retention_canonical is None:
        return f"retention {found.retention!r} is not an interval"
    if found.retention_schema:
        return (f"retention_schema {found.retention_schema} (retired partitions move to another schema);"
                " partman keeps them where they are")
    try:
        return premake, retention_span(found.retention_canonical)
    except ValueError as exc:
        return f"retention {found.retention!r}: {exc}"


def _id_settings(found: PartSet) -> Union["_IdSettings", str]:
    """An id set in partman's terms: its partition_interval is the width (pg_partman aligns id partitions at
    multiples of it, so the origin is 0), premake counts partitions as partman's does, retention counts ids."""
    from .catalog import parse_bound

    raw = (found.interval_raw or "").strip()
    if not raw.isdigit() or int(raw) == 0 or len(raw) > 18:
        return f"partition_interval {found.interval_raw!r} is not a positive whole number of ids"
    width, key = int(raw), found.id_key
    retention = None
    if found.retention:
        if not found.retention.strip().isdigit() or len(found.retention.strip()) > 18:
            return f"retention {found.retention!r} is not a whole number of ids"
        if found.retention_schema:
            return (f"retention_schema {found.retention_schema} (retired partitions move to another schema);"
                    " partman keeps them where they are")
        retention = Reach(int(found.retention), "ids")
    grid = WidthGrid(width, 0, IdSpace(key))
    for name, bound in found.partitions:
        bounds = None if bound == "DEFAULT" else parse_bound(bound, key)
        if bound != "DEFAULT" and (bounds is None or not grid.is_slot(bounds)):
            return (f"partition {name} ({_shown_bound(bound)}) is not on partman's grid of {width} ids from 0;"
                    " its bounds cannot be kept")
    return _IdSettings(key, width, Reach(found.premake, "partitions"), retention)


def _structure_problem(found: PartSet) -> Optional[str]:
    """What about the set's shape partman cannot take over, before its settings are looked at."""
    if not found.exists:
        return "the table does not exist (a part_config row left behind)"
    if found.partition_type not in ("native", "range"):
        kind = "trigger-based inheritance" if found.partition_type == "partman" else f"{found.partition_type} partitioning"
        return f"partition_type {found.partition_type} ({kind}); partman manages declarative range partitions only"
    if found.control_type is None:
        return f"control column {found.control} is not a column of the table"
    if found.epoch != "none" and found.encoding is None:
        return (f"an epoch set (control {found.control} {found.control_type}, epoch {found.epoch}): partman's epoch keys"
                " are seconds in an integer or bigint, milliseconds or microseconds in a bigint (key_encoding)")
    if found.time_key is None and found.id_key is None and _integer(found.control_type):
        return (f"control {found.control} is {found.control_type}; partman's id keys are smallint, integer or bigint")
    if found.time_key is None and found.id_key is None:
        return (f"control {found.control} is {found.control_type}; partman manages timestamptz, timestamp and date"
                " keys (without a precision modifier)")
    if found.partition_of is not None:
        return f"a sub-partition of {found.partition_of} (sub-partitioning); partman does not sub-partition"
    if found.sub_partitioned:
        return "sub-partitioned (a parent in part_config_sub); partman does not sub-partition"
    if found.relkind != "p":
        return f"not a partitioned table (relkind {found.relkind}); partman manages declarative range partitions only"
    if found.constraint_cols:
        return (f"constraint_cols ({', '.join(found.constraint_cols)}): pg_partman's constraints on old partitions"
                " have no partman equivalent")
    if found.undo_in_progress:
        return "pg_partman's undo_partition is in progress"
    return None


def _integer(type_name: str) -> bool:
    return type_name in ("smallint", "integer", "bigint", "numeric")


def _zone(found: PartSet, source: Source) -> Optional[str]:
    """The time zone of a timestamptz (or epoch) set's boundaries: the session's, in which pg_partman computed them."""
    return source.timezone if found.key_type is KeyType.TIMESTAMPTZ or found.encoding else None


def _grid_problem(found: PartSet, interval: Interval, source: Source) -> Optional[str]:
    """Whether every partition pg_partman made is a slot of partman's grid, so that no bound moves: a 5.x weekly
    set starts on the weekday it was made, a 5.x quarterly one in the month it was made."""
    from .catalog import parse_bound

    tz = _zone(found, source) or "UTC"
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return f"the database's TimeZone {tz!r} is not an IANA time zone partman knows"
    assert found.time_key is not None
    grid = Grid(interval, KeySpace(found.time_key, tz, found.encoding))
    for name, bound in found.partitions:
        if bound == "DEFAULT":
            continue
        bounds = parse_bound(bound, found.time_key)
        if bounds is None or not grid.is_slot(bounds):
            return (f"partition {name} ({_shown_bound(bound)}) is not on partman's {interval.value} grid in {tz}"
                    f" ({_GRID_RULE[interval]}); its bounds cannot be kept")
    return None


def _shown_bound(bound: str) -> str:
    return bound.removeprefix("FOR VALUES ").replace("'", "")


def filename(table: TableRef) -> str:
    """`<schema>.<table>.yaml`, with '%' and '/' escaped so that any name is one file in the directory."""
    def part(text: str) -> str:
        return text.replace("%", "%25").replace("/", "%2F")

    return f"{part(table.schema)}.{part(table.name)}.yaml"


def spec_text(found: PartSet, s: Union[_Settings, _IdSettings], source: Source, out: str) -> str:
    """The spec of one set: header comment, the keys, and a comment above each key that says where it came from."""
    if isinstance(s, _IdSettings):
        return _id_spec_text(found, s, source, out)
    lines = _header(found, source, out)
    kind = f"{s.key_type.value} holding {found.epoch} since 1970" if s.encoding else KEY_NAMES[s.key_type]
    lines += [f"table: {_scalar(str(found.parent))}",
              f"# partition key: {_comment(found.control)} {kind}",
              f"partition_key: {_scalar(found.control)}",
              *([f"# pg_partman epoch {found.epoch}", f"key_encoding: {s.encoding}"] if s.encoding else []),
              f"interval: {s.interval.value}",
              f"# pg_partman premake {found.premake} (partitions ahead of the current one) = {s.premake}",
              "# (partman keeps partitions through the first boundary after now + premake: the same partitions)",
              f"premake: {s.premake}"]
    if s.retention is not None:
        lines += _retention(found, s.retention)
    zone = _zone(found, source)
    if zone:
        lines += [f"# pg_partman computed this {'epoch' if s.encoding else 'timestamptz'} set's boundaries in the session's"
                  " time zone, the database's:",
                  f"timezone: {_scalar(zone)}"]
    else:
        lines += [f"# no timezone: the bounds of a {KEY_NAMES[s.key_type]} key do not depend on one"
                  f" (the database's TimeZone is {_comment(source.timezone)})"]
    lines += ["# the partitions pg_partman made become partman's at the first apply: recorded in partition_log, no DDL",
              "adopt: existing"]
    return "\n".join(lines) + "\n"


def _id_spec_text(found: PartSet, s: _IdSettings, source: Source, out: str) -> str:
    lines = _header(found, source, out)
    lines += [f"table: {_scalar(str(found.parent))}",
              f"# partition key: {_comment(found.control)} {s.key_type.value}, an id (partitions of a fixed width)",
              f"partition_key: {_scalar(found.control)}",
              f"# pg_partman partition_interval {_comment(repr(found.interval_raw))}: partitions of {s.width} ids,"
              " at multiples of it",
              f"width: {s.width}",
              f"# pg_partman premake {found.premake} (partitions ahead of the one holding the largest id); partman counts"
              " from the sequence behind the key when there is one, else from the largest id",
              f"premake: {s.premake}"]
    if s.retention is not None:
        lines += _retention(found, s.retention)
    lines += ["# the partitions pg_partman made become partman's at the first apply: recorded in partition_log, no DDL",
              "adopt: existing"]
    return "\n".join(lines) + "\n"


def _retention(found: PartSet, retention) -> list[str]:
    said = f"# pg_partman retention {_comment(repr(found.retention))}"
    if found.retention_keep_table:
        return [f"{said}, retention_keep_table true: detached and kept as a table, never dropped",
                f"retention: {retention}", "retention_keep_table: true"]
    return [f"{said}, retention_keep_table false: dropped as soon as it expires, so no grace period",
            f"retention: {retention}", "retention_grace: 0 days"]


def _header(found: PartSet, source: Source, out: str) -> list[str]:
    version = (f"pg_partman {source.version}" if source.version
               else f"pg_partman {source.generation}.x by its columns; no extension in that schema")
    where = f"{source.quoted_schema}.part_config"
    literal = "'" + str(found.parent).replace("'", "''") + "'"
    return [
        f"# Imported from {_comment(where)} ({version}) on {source.today.isoformat()} by `partman import pg-partman`.",
        "# Next, so that two tools never manage one table: first stop pg_partman's maintenance of it,",
        f"#   UPDATE {_comment(where)} SET automatic_maintenance = 'off' WHERE parent_table = {_comment(literal)};",
        f"# then `partman plan {_comment(out)}`: a `~ adopt` line for each partition pg_partman made (and creates only",
        f"# where pg_partman had fallen behind); `partman apply {_comment(out)}` records them as partman's (no DDL).",
        "# Once partman manages the table, its part_config row can go:",
        f"#   DELETE FROM {_comment(where)} WHERE parent_table = {_comment(literal)};",
    ]


_PLAIN = re.compile(r"[A-Za-z_][A-Za-z0-9_./+-]*")
_YAML_WORDS = {"y", "n", "yes", "no", "true", "false", "on", "off", "null"}


def _scalar(text: str) -> str:
    """A YAML scalar that reads back as exactly this string: plain when safe, else double-quoted (JSON's escapes
    are YAML's)."""
    if _PLAIN.fullmatch(text) and text.lower() not in _YAML_WORDS:
        return text
    return json.dumps(text, ensure_ascii=False)


def _comment(text: str) -> str:
    """Text inside a comment stays on its line: control characters are shown escaped."""
    return "".join(c if unicodedata.category(c) != "Cc" else repr(c)[1:-1] for c in text)


# --- Writing ---


def refuse_overwrite(outcomes: Sequence[Outcome], out: Path) -> None:
    """Before anything is written: a file that exists is refused, naming it (the caller passes --force past this)."""
    for outcome in outcomes:
        if isinstance(outcome, Imported) and (out / outcome.filename).exists():
            raise PartmanError(f"{out / outcome.filename} exists; nothing written (pass --force to overwrite it)")


def write(outcomes: Sequence[Outcome], out: Path) -> list[Path]:
    """Write every imported spec into out (made if missing), each atomically; the paths written, in order."""
    from .files import write_atomically

    if not any(isinstance(o, Imported) for o in outcomes):
        return []
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise PartmanError(f"cannot make {out}: {exc.strerror or exc}") from None
    written = []
    for outcome in outcomes:
        if isinstance(outcome, Imported):
            write_atomically(out / outcome.filename, outcome.text, mode=0o644)
            written.append(out / outcome.filename)
    return written
