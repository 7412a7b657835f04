"""Reads one Snapshot from the catalog in a fixed number of set-based queries, whatever the number of partitions."""

from __future__ import annotations

import hashlib
import re
from contextlib import contextmanager
from dataclasses import dataclass, replace
from functools import lru_cache
from operator import attrgetter
from datetime import date, datetime, timedelta, timezone
from typing import Any, Callable, Iterable, Iterator, Optional
from uuid import UUID

import psycopg
from psycopg import Connection, Cursor, IsolationLevel, sql
from psycopg.pq import TransactionStatus
from psycopg.types.numeric import Int8BinaryLoader

from . import conformance, references
from .companion import Companion, Unexported
from .encoded import Uuid7, encoding_problem
from .errors import CatalogError, LockBusy
from .lock import Ladder, attempts
from .model import Bounds, KeyType, KeyValue, TableRef, iso
from .naming import Names
from .snapshot import Access, ConfigRow, LogEntry, Partition, Snapshot, Statistics, TableState
from .spec import TableSpec
from .timeline import space_for
from .widths import IdMark, IdSpace

# Generated names share the parent's first bytes (naming.fit keeps at least this many), so the names a plan
# could collide with are found without listing every relation in the schema.
NAME_PREFIX_BYTES = 16
# Probes per statement: one statement for the usual few, a small plan for the server however many, and a
# lock timeout costs one chunk's retry (bench/plan_probes.py).
PROBES_PER_STATEMENT = 100
# From this many partitions on, a snapshot asks the questions that do not rest on the partitions on a companion
# connection (companion.py) while it reads them: below it, a second connection costs more than it saves
# (bench/plan_scale.py).
COMPANION_FROM = 1000

# A relation named in the snapshot that disappears before it is probed means the catalog moved: read it again.
MAX_REREADS = 5
# Rows counted exactly, for a plan's row figure where statistics have none: enough to tell a stray handful
# from a partition in use, and about a millisecond of reading however large the partition is.
ROW_COUNT_CAP = 10_000

_STRATEGY = {"r": "range", "l": "list", "h": "hash"}

# Every read's session: bounds printed in UTC and ISO; the ladder's lock_timeout, so a read that waits behind an
# ACCESS EXCLUSIVE lock (a migration, a VACUUM FULL) gives up after one step instead of hanging, and is retried
# later; no parallel workers and no JIT. A catalog read is short: starting workers costs more than they save (a
# companion already uses a second backend), and JIT compiling the shapes query cost PostgreSQL 15 2 s of 2.2 s.
_SETTINGS = """
SELECT set_config('TimeZone', 'UTC', true),
       set_config('DateStyle', 'ISO, YMD', true),
       set_config('lock_timeout', {lock_timeout}, true),
       set_config('max_parallel_workers_per_gather', '0', true),
       set_config('jit', 'off', true)"""
_SESSION = _SETTINGS.format(lock_timeout="%(lock_timeout)s") + """,
       log.oid IS NOT NULL, config.oid IS NOT NULL,
       coalesce(has_table_privilege(log.oid, 'SELECT'), true), coalesce(has_table_privilege(config.oid, 'SELECT'), true)
  FROM (SELECT 1) AS one
  LEFT JOIN pg_namespace n ON n.nspname = %(state_schema)s
  LEFT JOIN pg_class log ON log.relnamespace = n.oid AND log.relname = 'partition_log' AND log.relkind IN ('r', 'p')
  LEFT JOIN pg_class config ON config.relnamespace = n.oid AND config.relname = 'partition_config' AND config.relkind IN ('r', 'p')
"""

_PARENTS = """
SELECT r.schema, r.name, c.oid, c.relkind, pt.partstrat,
       (SELECT array_agg(coalesce((SELECT a.attname FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attnum = k.attnum),
                                  '(expression)') ORDER BY k.i)
          FROM unnest(pt.partattrs::int2[]) WITH ORDINALITY AS k(attnum, i)) AS key_columns,
       (SELECT format_type(a.atttypid, a.atttypmod)
          FROM pg_attribute a
         WHERE a.attrelid = c.oid AND a.attnum = (pt.partattrs::int2[])[0]) AS key_type,
       n.oid IS NOT NULL, coalesce(has_schema_privilege(n.oid, 'CREATE'), false),
       c.oid IS NULL OR pg_has_role(c.relowner, 'USAGE'), pg_get_userbyid(c.relowner),
       c.reltuples >= 0, greatest(pg_stat_get_last_analyze_time(c.oid), pg_stat_get_last_autoanalyze_time(c.oid)),
       seq.nspname, seq.relname, seq.oid, seq.seqincrement, seq.readable,
       EXISTS (SELECT 1 FROM pg_index x JOIN pg_class xc ON xc.oid = x.indexrelid JOIN pg_am am ON am.oid = xc.relam
                WHERE x.indrelid = c.oid AND x.indkey[0] = (pt.partattrs::int2[])[0] AND x.indpred IS NULL
                  AND am.amname = 'btree'),
       (SELECT array_agg(quote_ident(un.nspname) || '.' || quote_ident(uc.relname) || '.' || quote_ident(ua.attname) ORDER BY 1)
          FROM pg_depend ud
          JOIN pg_attrdef uad ON uad.oid = ud.objid
          JOIN pg_class uc ON uc.oid = uad.adrelid
          JOIN pg_namespace un ON un.oid = uc.relnamespace
          JOIN pg_attribute ua ON ua.attrelid = uad.adrelid AND ua.attnum = uad.adnum
         WHERE ud.classid = 'pg_attrdef'::regclass AND ud.refclassid = 'pg_class'::regclass AND ud.refobjid = seq.oid
           AND uc.oid <> c.oid AND NOT uc.relispartition),
       (SELECT count(*) FROM pg_inherits i WHERE i.inhparent = c.oid)
  FROM unnest(%(schemas)s::text[], %(names)s::text[]) AS r(schema, name)
  LEFT JOIN pg_namespace n ON n.nspname = r.schema
  LEFT JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = r.name AND c.relkind IN ('r', 'p')
  LEFT JOIN pg_partitioned_table pt ON pt.partrelid = c.oid
  LEFT JOIN LATERAL ({sequence}) AS seq ON true
"""

# The sequence that gives an integer key its values: its identity's, or the one its default is exactly nextval() of
# (serial, or a sequence of its own). A default that computes more than that (nextval(s) * 10) says nothing partman
# can follow; a sequence merely OWNED BY the column gives no value once the default calls another. Its value is read
# later, as a question (_SEQUENCE_NEXT), where a lock on the sequence costs only that table's answer.
_SEQUENCE_ARM = """
SELECT s.oid, sn.nspname, s.relname, has_sequence_privilege(s.oid, 'SELECT') AS readable, ps.seqincrement
  FROM pg_depend d
  JOIN pg_class s ON s.oid = {seq} AND s.relkind = 'S'
  JOIN pg_namespace sn ON sn.oid = s.relnamespace
  JOIN pg_sequence ps ON ps.seqrelid = s.oid
"""
_SEQUENCE = (
    _SEQUENCE_ARM.format(seq="d.objid")
    + """ WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass AND d.refobjid = c.oid
   AND d.refobjsubid = (pt.partattrs::int2[])[0] AND d.deptype = 'i'
UNION ALL
"""
    + _SEQUENCE_ARM.format(seq="d.refobjid")
    + """  JOIN pg_attrdef ad ON ad.oid = d.objid
 WHERE d.classid = 'pg_attrdef'::regclass AND d.refclassid = 'pg_class'::regclass
   AND ad.adrelid = c.oid AND ad.adnum = (pt.partattrs::int2[])[0]
   AND pg_get_expr(ad.adbin, ad.adrelid) = 'nextval(' || quote_literal(s.oid::regclass::text) || '::regclass)'
 LIMIT 1
"""
)
# The next value the sequence gives: last_value once it was called, else last_value itself (a fresh sequence, one
# RESTARTed, or setval(s, n, false)); numeric, so that the last bigint plus its increment does not overflow.
_SEQUENCE_NEXT = "(SELECT CASE WHEN s.is_called THEN s.last_value::numeric + {} ELSE s.last_value END FROM {} AS s)"
# An id table's largest key is asked of these many of its highest partitions at most (and its default): a max()
# over every partition would lock them all in one transaction, and 6,000 exhaust the server's lock table.
LARGEST_FROM = 16
# The marks' questions are one per id table, each light to plan: a statement asks this many tables' at once.
MARKS_PER_STATEMENT = 1000
_PARENTS = _PARENTS.replace("{sequence}", _SEQUENCE)

# pg_get_expr(relpartbound, 0): a bound holds constants only, and relid 0 spares the server opening every
# partition to build a deparse context: 0.22 s instead of 0.88 s for 30,000 partitions on a fresh connection.
_PARTITIONS = """
SELECT i.inhparent, c.oid, n.nspname, c.relname, pg_get_expr(c.relpartbound, 0), c.reltuples, i.inhdetachpending
  FROM pg_inherits i
  JOIN pg_class c ON c.oid = i.inhrelid
  JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE i.inhparent = ANY(%(parents)s::oid[])
"""

# The ranges of the live partition_log rows, as two arrays per table: 300 rows to parse instead of 30,000; and in
# the same scan each table's high-water mark, its largest id, dropped rows included. Only the detached rows and
# those an interrupted run left need more, and their table (_LOG_DETACHED, the fenced LATERAL asking for it on just
# those).
_LOG = """
SELECT l.parent_schema, l.parent_name,
       array_agg(nullif(l.range_start, '-infinity')) FILTER (WHERE l.dropped_at IS NULL),
       array_agg(nullif(l.range_end, 'infinity')) FILTER (WHERE l.dropped_at IS NULL), max(l.id)
  FROM {log} l
 WHERE (l.parent_schema, l.parent_name) IN (SELECT * FROM unnest(%(schemas)s::text[], %(names)s::text[]))
 GROUP BY 1, 2
"""
_LOG_DETACHED = """
SELECT l.parent_schema, l.parent_name, nullif(l.range_start, '-infinity'), nullif(l.range_end, 'infinity'), l.detached_at,
       l.partition_schema, l.partition_name, c.oid, c.relispartition, c.reltuples, l.pending_action
  FROM {log} l
  LEFT JOIN LATERAL (SELECT c.oid, c.relispartition, c.reltuples
                       FROM pg_namespace n JOIN pg_class c ON c.relnamespace = n.oid
                      WHERE n.nspname = l.partition_schema AND c.relname = l.partition_name AND c.relkind IN ('r', 'p')
                     OFFSET 0) AS c ON true
 WHERE l.dropped_at IS NULL AND (l.detached_at IS NOT NULL OR l.pending_action IS NOT NULL)
   AND (l.parent_schema, l.parent_name) IN (SELECT * FROM unnest(%(schemas)s::text[], %(names)s::text[]))
 ORDER BY l.range_start, l.id
"""

_SPAN = (
    "CASE WHEN {c} IS NOT NULL THEN ARRAY[(extract(year FROM {c}) * 12 + extract(month FROM {c}))::int,"
    " extract(day FROM {c})::int,"
    " (extract(hour FROM {c}) * 3600 + extract(minute FROM {c}) * 60 + extract(second FROM {c}))::int] END"
)
_CONFIG = (
    "SELECT parent_schema, parent_name, interval_months, "
    + ", ".join(_SPAN.format(c=c) for c in ("premake", "retention", "retention_grace"))
    + """, timezone
  FROM {config}
 WHERE (parent_schema, parent_name) IN (SELECT * FROM unnest(%(schemas)s::text[], %(names)s::text[]))"""
)

# One digest per table of everything a plan's structure depends on: the parent, its partitions (OID and
# bound), the live partition_log rows (and what each detached one's name points at), the log high-water mark
# and the partition_config row. Under the lock, apply asks this one question instead of reading it all again.
_DIGEST = """
SELECT r.schema, r.name, md5(concat_ws('|', p.oid, p.relkind, pt.partstrat, pt.partattrs::text,
         (SELECT string_agg(c.oid || ' ' || pg_get_expr(c.relpartbound, 0) || ' ' || i.inhdetachpending, ',' ORDER BY c.oid)
            FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = p.oid)
         {log_part}{config_part})), {high_water}
  FROM unnest(%(schemas)s::text[], %(names)s::text[]) AS r(schema, name)
  LEFT JOIN pg_namespace n ON n.nspname = r.schema
  LEFT JOIN pg_class p ON p.relnamespace = n.oid AND p.relname = r.name AND p.relkind IN ('r', 'p')
  LEFT JOIN pg_partitioned_table pt ON pt.partrelid = p.oid
"""
_DIGEST_LOG = """,
         (SELECT string_agg(concat_ws(' ', l.id, l.range_start, l.range_end, l.detached_at, l.pending_action,
                   CASE WHEN l.detached_at IS NOT NULL
                        THEN (SELECT c.oid FROM pg_class c JOIN pg_namespace cn ON cn.oid = c.relnamespace
                               WHERE cn.nspname = l.partition_schema AND c.relname = l.partition_name
                                 AND c.relkind IN ('r', 'p')) END), ','
                   ORDER BY l.id)
            FROM {log} l WHERE l.parent_schema = r.schema AND l.parent_name = r.name AND l.dropped_at IS NULL)"""
_DIGEST_CONFIG = """,
         (SELECT cf::text FROM {config} cf WHERE cf.parent_schema = r.schema AND cf.parent_name = r.name)"""
_HIGH_WATER = "(SELECT max(l.id) FROM {log} l WHERE l.parent_schema = r.schema AND l.parent_name = r.name)"


def _digest_query(state_schema: str, log_exists: bool, config_exists: bool) -> sql.Composed:
    log = sql.Identifier(state_schema, "partition_log")
    config = sql.Identifier(state_schema, "partition_config")
    return sql.SQL(_DIGEST).format(
        log_part=sql.SQL(_DIGEST_LOG).format(log=log) if log_exists else sql.SQL(""),
        config_part=sql.SQL(_DIGEST_CONFIG).format(config=config) if config_exists else sql.SQL(""),
        high_water=sql.SQL(_HIGH_WATER).format(log=log) if log_exists else sql.SQL("NULL::bigint"),
    )


_UNDER_LOCK = """
SELECT d.digest,
       EXISTS (SELECT 1 FROM {log} l WHERE l.parent_schema = %(s)s AND l.parent_name = %(n)s
                  AND l.dropped_at IS NULL AND l.pending_action IS NOT NULL),
       dn.nspname, dc.relname, pg_relation_size(dc.oid)
  FROM ({digest}) AS d(schema, name, digest, high_water)
  LEFT JOIN pg_namespace pn ON pn.nspname = %(s)s
  LEFT JOIN pg_class pc ON pc.relnamespace = pn.oid AND pc.relname = %(n)s AND pc.relkind = 'p'
  LEFT JOIN pg_partitioned_table pt ON pt.partrelid = pc.oid
  LEFT JOIN pg_class dc ON dc.oid = pt.partdefid
  LEFT JOIN pg_namespace dn ON dn.oid = dc.relnamespace
"""


# With creates to make, the same statement asks what making them needs: how (conformance.MAKING) and how many to a
# transaction (batches.SIZE); one round trip and one plan instead of four.
_UNDER_LOCK_CREATING = "SELECT u.*, m.*, b.* FROM ({under}) AS u, ({making}) AS m, ({size}) AS b"


@dataclass(frozen=True)
class LockView:
    """What apply asks, in one question, once it holds a table's lock."""

    digest: Optional[str]  # the structure digest, as snapshot(digests=True) computes it
    pending: bool  # an interrupted run left an intent in partition_log
    default: Optional[tuple[TableRef, int]]  # the default partition and its size in bytes
    making: Optional[tuple] = None  # asked for creates: conformance.MAKING's row (see conformance.making_from)
    batch: Optional[int] = None  # asked for creates: how many partitions one transaction creates (batches.size)


def under_lock(conn: Connection, table: TableRef, state_schema: str = "public", spec: Optional[TableSpec] = None
               ) -> LockView:
    """The caller's transaction has the state tables and has set TimeZone UTC (see _SESSION). With spec (a table
    with creates), what making its partitions needs is asked in the same statement."""
    from . import batches

    query = sql.SQL(_UNDER_LOCK).format(
        log=sql.Identifier(state_schema, "partition_log"), digest=_digest_query(state_schema, True, True)
    )
    params = {"schemas": [table.schema], "names": [table.name], "s": table.schema, "n": table.name}
    if spec is not None:
        query = sql.SQL(_UNDER_LOCK_CREATING).format(under=query, making=sql.SQL(conformance.MAKING),
                                                     size=sql.SQL(batches.SIZE))
        params.update(conformance.making_params(spec))
    digest_, pending, dschema, dname, dsize, *rest = _ask(conn, query, params)
    default = (TableRef(dschema, dname), dsize) if dname else None
    if spec is None:
        return LockView(digest_, pending, default)
    *making, slots, indexes = rest
    return LockView(digest_, pending, default, tuple(making), batches.size_of(slots, indexes))

# Apply asks under_lock's question of every table a connection handles. On a connection where psycopg prepares nothing
# (prepare_threshold None: apply's own; its DEALLOCATE ALL after any ALTER would drop the statement), the question is
# a prepared statement, so that with plan_cache_mode force_generic_plan (apply sets it for that transaction) it is
# planned once per connection, not once per table: planning is 2 ms of its 3 on PostgreSQL 15. Elsewhere it is asked
# as it is. The values go as literals (EXECUTE's arguments take no client parameters), composed with psycopg.sql.
_PLACEHOLDER = re.compile(r"%\((\w+)\)s")


def _ask(conn: Connection, query: sql.Composable, params: dict[str, Any]) -> tuple:
    if conn.prepare_threshold is not None:
        return conn.execute(query, params).fetchone()
    order: list[str] = []

    def number(m: re.Match) -> str:
        if m.group(1) not in order:
            order.append(m.group(1))
        return f"${order.index(m.group(1)) + 1}"

    body = _PLACEHOLDER.sub(number, query.as_string(conn)).replace("%%", "%")
    name = "partman_" + hashlib.md5(body.encode()).hexdigest()[:20]
    if not conn.execute("SELECT EXISTS (SELECT 1 FROM pg_prepared_statements WHERE name = %s)", (name,)).fetchone()[0]:
        conn.execute(sql.SQL("PREPARE {} AS {}").format(sql.Identifier(name), sql.SQL(body)))
    return conn.execute(sql.SQL("EXECUTE {}({})").format(
        sql.Identifier(name), sql.SQL(", ").join(sql.Literal(params[n]) for n in order))).fetchone()


# Every relation (tables, views, sequences, indexes, composite types) and every type of the schema whose name
# starts like a generated name: CREATE TABLE needs its name free among both. Generated names always begin with
# the parent's first NAME_PREFIX_BYTES bytes (naming.fit keeps more), so this finds every possible collision.
# Names that start with each prefix. As a range of the name indexes (names compare bytewise, in C collation), a
# scan of just those names, not a test of every relation of the schema per table. Without a known end (a
# database not in UTF8), every name is tested. Left out, because the snapshot has them already or they repeat a
# relation's name: the asked parents' own partitions (from _PARTITIONS) and the row type of every relation (a
# relation and its row type share name and schema). 300 tables of 100 partitions: 0.005 s, not 0.13 s.
_TAKEN = """
SELECT n.nspname, c.relname
  FROM unnest(%(schemas)s::text[], %(prefixes)s::text[], %(ends)s::text[]) AS p(schema, prefix, past)
  JOIN pg_namespace n ON n.nspname = p.schema
  JOIN LATERAL (SELECT c.oid, c.relname FROM pg_class c
                 WHERE c.relnamespace = n.oid {relname} AND starts_with(c.relname::text, p.prefix) OFFSET 0) AS c ON true
 WHERE c.oid NOT IN (SELECT i.inhrelid FROM pg_inherits i WHERE i.inhparent = ANY(%(parents)s::oid[]))
UNION ALL
SELECT n.nspname, t.typname
  FROM unnest(%(schemas)s::text[], %(prefixes)s::text[], %(ends)s::text[]) AS p(schema, prefix, past)
  JOIN pg_namespace n ON n.nspname = p.schema
  JOIN LATERAL (SELECT t.typname FROM pg_type t
                 WHERE t.typnamespace = n.oid {typname} AND starts_with(t.typname::text, p.prefix) AND t.typrelid = 0
                OFFSET 0) AS t ON true
"""
# The fenced LATERAL (OFFSET 0) keeps each prefix its own range scan of the name index: joined whole, the planner
# may scan every relation of the schema once and test it against every prefix (300 tables of 100 partitions whose
# names nest, t1 and t10: 0.017 s against 0.03 s).
_TAKEN_RANGE = _TAKEN.format(relname="AND c.relname >= p.prefix::name AND c.relname < p.past::name",
                             typname="AND t.typname >= p.prefix::name AND t.typname < p.past::name")
_TAKEN_ALL = _TAKEN.format(relname="", typname="")


def outermost(pairs: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """(schema, prefix) pairs without those another pair's prefix covers: every name one of them finds, the
    shorter finds too, and asked twice it would be sent twice."""
    out: list[tuple[str, str]] = []
    for schema, prefix in sorted(set(pairs)):
        if not (out and out[-1][0] == schema and prefix.startswith(out[-1][1])):
            out.append((schema, prefix))
    return out


def past_prefix(prefix: str, encoding: Optional[str]) -> Optional[str]:
    """The least string greater than every string that starts with prefix, in code point order, which is UTF-8's byte
    order (and so the server's, for a UTF8 database); None where there is none to give."""
    chars = list(prefix)
    if encoding != "UTF8":
        return None
    while chars:
        last = ord(chars.pop()) + 1
        if 0xD800 <= last <= 0xDFFF:  # surrogates have no UTF-8 form: the next code point that has one
            last = 0xE000
        if last <= 0x10FFFF:
            return "".join(chars) + chr(last)
    return None


# Relations another session holds (or waits for) in ACCESS EXCLUSIVE mode, the one mode a read conflicts with;
# a lock on one of a table's indexes (REINDEX) stops a read of the table too.
_LOCKED = """
SELECT DISTINCT coalesce(i.indrelid, l.relation)
  FROM pg_locks l LEFT JOIN pg_index i ON i.indexrelid = l.relation
 WHERE l.locktype = 'relation' AND l.mode = 'AccessExclusiveLock' AND l.pid <> pg_backend_pid()
   AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
   AND coalesce(i.indrelid, l.relation) = ANY(%(oids)s::oid[])
"""


def name_prefix(name: str) -> str:
    """The longest prefix of name within NAME_PREFIX_BYTES bytes, cut at a character boundary."""
    out, size = [], 0
    for ch in name:
        size += len(ch.encode())
        if size > NAME_PREFIX_BYTES:
            break
        out.append(ch)
    return "".join(out)


class Moved(Exception):
    """A relation the snapshot named was gone by the time it was read: the catalog moved under the read."""


@contextmanager
def consistent_view(conn: Connection) -> Iterator[Cursor]:
    """One REPEATABLE READ, READ ONLY transaction: every query of a read sees the same moment, so a plan and
    the digest it carries describe one state (the caller's first statement sets its lock_timeout)."""
    saved = conn.isolation_level, conn.read_only
    conn.isolation_level, conn.read_only = IsolationLevel.REPEATABLE_READ, True
    try:
        with conn.transaction(), conn.cursor() as cur:
            yield cur
    finally:
        # psycopg reads these when it opens a transaction: later transactions get the connection's own again.
        if conn.info.transaction_status == TransactionStatus.IDLE and not conn.closed:
            conn.isolation_level, conn.read_only = saved


# Which partitions' row presence a plan rests on; the planner decides (planner.presence_needed), the catalog asks.
Probe = Callable[[TableSpec, TableState, datetime], Iterable[Partition]]


def snapshot(
    conn: Connection, specs: Iterable[TableSpec], *, now: datetime, to_probe: Probe, state_schema: str = "public",
    digests: bool = False, ladder: Optional[Ladder] = None, another: Optional[Callable[[], Connection]] = None,
    names_later: bool = False,
) -> Snapshot:
    """Read everything the planner needs about these tables in one consistent view: a fixed number of
    queries, plus the row-presence probes of the partitions to_probe names (the planner's policy:
    planner.presence_needed), plus the structure digests that apply checks under its lock (digests=True;
    plan and drift skip them).

    Nothing waits without a bound. A state table locked by another session is retried along the ladder and
    ends in LockBusy: nothing can be planned without it. A partition locked by another session leaves its
    row presence unknown: it is retried along the ladder too, and what is still locked when the budget is
    spent is named in Snapshot.busy, for the planner to plan around.

    another: opens a second connection, for a companion (companion.py) on a large read.

    names_later: the names a new partition may not take are left unread (naming.Names(unread=True)): a plan that
    has a create raises NamesUnread, and its caller reads them (with_names_in_use) and plans again. For plan and
    drift, whose plan mostly has none."""
    ladder = ladder or Ladder()
    specs = list(specs)
    rereads = 0
    for wait_ms in attempts(ladder, f"reading {state_schema}.partition_log and partition_config", conn):
        try:
            try:
                snap, locked = _read(conn, specs, now, to_probe, state_schema, digests, wait_ms, another, names_later)
            except Unexported:
                another = None  # read again at once, everything asked on conn
                snap, locked = _read(conn, specs, now, to_probe, state_schema, digests, wait_ms, None, names_later)
        except psycopg.errors.LockNotAvailable:
            continue  # a state table is locked: nothing can be planned without it; try again after a pause
        except Moved:
            rereads += 1
            if rereads > MAX_REREADS:
                raise CatalogError("the catalog kept changing while partman read it; run again") from None
            continue
        break
    if snap.pending_marks:
        snap = replace(_settled_marks(conn, snap, snap.pending_marks, ladder), pending_marks={})
    if not locked:
        return snap
    needed = {p.oid: p.ref for s in specs for p in to_probe(s, snap.tables[s.table], now)}
    answers, busy = settle(conn, presence_questions({oid: needed[oid] for oid in locked}), ladder)
    return replace(snap, has_rows={**snap.has_rows, **{k: bool(v) for k, v in answers.items()}}, busy=frozenset(busy))


def _read(conn: Connection, specs: list[TableSpec], now: datetime, to_probe: Probe, state_schema: str, digests: bool,
          wait_ms: int, another: Optional[Callable[[], Connection]] = None, names_later: bool = False
          ) -> tuple[Snapshot, set[int]]:
    refs = sorted({s.table for s in specs})
    schemas = [r.schema for r in refs]
    names = [r.name for r in refs]
    by_table = {"schemas": schemas, "names": names}
    with consistent_view(conn) as cur:
        cur.execute(_SESSION, {"state_schema": state_schema, "lock_timeout": f"{wait_ms}ms"})
        *_, log_exists, config_exists, log_readable, config_readable = cur.fetchone()
        for table, readable in (("partition_log", log_readable), ("partition_config", config_readable)):
            if not readable:
                raise CatalogError(
                    f"permission denied for table {state_schema}.{table}: partman needs SELECT on it to plan"
                    " (README: Privileges)"
                )
        cur.execute(_PARENTS, by_table)
        parents = {TableRef(row[0], row[1]): row for row in cur.fetchall()}
        oids = [row[2] for row in parents.values() if row[2] is not None]
        # The questions that rest on the parents alone may go to a companion (few rows, much server work), partman's
        # state tables first: the companion reads and parses them while this session waits for the partitions.
        # Whichever session takes that job, the state tables are read by it alone in this view (companion.py).
        def state(on: Cursor) -> tuple:
            return _state(on, state_schema, by_table, log_exists, config_exists, digests)

        names = [] if names_later else [lambda on: _names(on, _names_question(conn, refs, oids))]
        jobs = [state, *_independent(specs, parents), *names]
        if another is not None and sum(row[-1] or 0 for row in parents.values()) >= COMPANION_FROM:
            beside = Companion.start(cur, another, sql.SQL(_SETTINGS).format(lock_timeout=sql.Literal(f"{wait_ms}ms")), jobs)
        else:
            beside = Companion(jobs)
        with beside:
            with conn.cursor(binary=True) as binary:  # oids, reltuples and flags as they are: a fifth less to load
                rows = binary.execute(_PARTITIONS, {"parents": oids}).fetchall()
            children: dict[int, list] = {}
            for row in rows:
                children.setdefault(row[0], []).append(row)
            tables = _readable_as_times(specs, {ref: _table_state(ref, parents[ref], children) for ref in refs})
            read_state, found, shapes, *others = beside.results(cur)
        tables = _with_answers(tables, read_state, shapes, found)
        taken = _taken(others[0] if others else (), tables, children, unread=names_later)
        tables = _with_missing_types(cur, specs, tables)
        tables, marks_locked = _with_marks(cur, specs, tables)  # first: which partitions to probe rests on the marks
        needed = {p.oid: p.ref for s in specs for p in to_probe(s, tables[s.table], now)}
        answers, locked = ask(cur, presence_questions(needed))
        unproven = _unproven(cur, specs, tables)
        surveys = _surveys(cur, specs, tables)  # last: it sets search_path '' for the rest of the view
    return Snapshot(tables=tables, taken_names=taken, has_rows={k: bool(v) for k, v in answers.items()},
                    surveys=surveys, unproven=unproven, pending_marks=marks_locked), locked


def _independent(specs: list[TableSpec], parents: dict[TableRef, tuple]) -> list[Callable[[Cursor], Any]]:
    """The catalog's questions that rest on the parents alone, not on each other's answers: foreign keys into the
    range-partitioned parents, the parents' shapes with their partitions that differ (conformance.py); the names that
    may collide follow them when read in the view. A companion asks them from the front while the caller reads the
    partitions; the caller, done with those, takes from the back: so the last is one the companion is seldom still
    asking by then, and not the costliest."""
    ranged = {ref: row[2] for ref, row in parents.items() if row[2] is not None and row[3] == "p" and row[4] == "r"}
    by_table = {s.table: s for s in specs}
    wanted = [(oid, conformance.wanted(by_table[ref])) for ref, oid in ranged.items()]
    return [lambda cur: references.read(cur, list(ranged.values())), lambda cur: conformance.read(cur, wanted)]


def _names_question(conn: Connection, refs: list[TableRef], oids: list[int]) -> tuple[str, dict]:
    """_TAKEN for these tables' name prefixes, leaving out the partitions of these parents."""
    pairs = outermost((r.schema, name_prefix(r.name)) for r in refs)
    ends = [past_prefix(b, conn.info.parameter_status("server_encoding")) for _, b in pairs]
    params = {"schemas": [a for a, _ in pairs], "prefixes": [b for _, b in pairs], "ends": ends, "parents": oids}
    return (_TAKEN_RANGE if None not in ends else _TAKEN_ALL), params


def _names(cur: Cursor, question: tuple[str, dict]) -> list[TableRef]:
    cur.execute(*question)
    return [TableRef(s_, n_) for s_, n_ in cur.fetchall()]


def with_names_in_use(conn: Connection, snap: Snapshot, ladder: Ladder) -> Snapshot:
    """The snapshot with the names _TAKEN finds, which a read with names_later left unread, read now in a consistent
    view of their own: the parents' partitions that view shows are left out, and the snapshot's own stay taken
    (_taken). A later read sees every name the snapshot's would have, and those made since."""
    refs = sorted(snap.tables)
    oids = [t.oid for t in snap.tables.values() if t.oid is not None]
    for wait_ms in attempts(ladder, "reading the names in use", conn):
        try:
            with consistent_view(conn) as cur:
                cur.execute(sql.SQL(_SETTINGS).format(lock_timeout=sql.Literal(f"{wait_ms}ms")))
                found = _names(cur, _names_question(conn, refs, oids))
        except psycopg.errors.LockNotAvailable:  # a catalog locked (VACUUM FULL pg_class): try again after a pause
            continue
        break
    return replace(snap, taken_names=snap.taken_names.read(found))


def _state(cur: Cursor, state_schema: str, by_table: dict, log_exists: bool, config_exists: bool, digests: bool
           ) -> tuple[dict, dict, dict, dict]:
    """partman's state tables, under the read's lock_timeout: the live partition_log rows (managed ranges, detached
    entries), each table's log high-water mark (and with digests, its structure digest), the partition_config rows."""
    managed, detached, high_waters = _log_rows(cur, state_schema, by_table) if log_exists else ({}, {}, {})
    if digests:
        cur.execute(_digest_query(state_schema, log_exists, config_exists), by_table)
        summary = {TableRef(s_, n_): (d, hw) for s_, n_, d, hw in cur.fetchall()}
    else:
        summary = {TableRef(s_, n_): (None, high_waters.get((s_, n_))) for s_, n_ in zip(by_table["schemas"], by_table["names"])}
    configs = _config_rows(cur, state_schema, by_table) if config_exists else {}
    return managed, detached, summary, configs


def _with_answers(tables: dict[TableRef, TableState], read_state: tuple, shapes: conformance.Shapes, found: dict
                  ) -> dict[TableRef, TableState]:
    """partman's state (_state), the parents' shapes and the foreign keys into them (_independent's questions), in
    one replace per table: a replace builds the whole value again."""
    managed, detached, summary, configs = read_state
    return {ref: replace(t, managed=managed.get((ref.schema, ref.name), frozenset()),
                         detached=tuple(detached.get((ref.schema, ref.name), ())), config=configs.get(ref),
                         log_high_water=summary[ref][1], digest=summary[ref][0], references=found.get(t.oid, ()),
                         shape=shapes.parents.get(t.oid), drifted=shapes.partitions.get(t.oid, {}))
            for ref, t in tables.items()}


def _readable_as_times(specs: list[TableSpec], tables: dict[TableRef, TableState]) -> dict[TableRef, TableState]:
    """A partition of a key that holds a time whose bound stands for no instant partman can work with (before year
    2 or past 9998: made by hand, or by another tool) is not understood, like any bound partman cannot read (PM205):
    left alone, and that table gets no creates, while every other table is planned. So is an id bound beyond what
    partition_log holds (widths.LOG_LAST)."""
    out = dict(tables)
    for s in specs:
        t = tables[s.table]
        kt = t.key_type
        if kt is None or kt.is_time or encoding_problem(s.key_encoding, kt, s.width is not None):
            continue
        space = space_for(kt, s.timezone, s.key_encoding)
        bad = [p for p in t.partitions if not all(v is None or _calendar(space, v) for v in (p.bounds.start, p.bounds.end))]
        if bad:
            unread = tuple((p.ref.name, f"FOR VALUES FROM ({iso(p.bounds.start)}) TO ({iso(p.bounds.end)})") for p in bad)
            out[s.table] = replace(t, partitions=tuple(p for p in t.partitions if p not in bad), unparsed=t.unparsed + unread)
    return out


def _calendar(space, value) -> bool:
    if isinstance(space, IdSpace):
        return space.fits(value)  # an id bound partition_log can hold (widths.py)
    try:
        return _FIRST <= space.instant(value) <= _LAST
    except (OverflowError, ValueError):
        return False


_FIRST, _LAST = datetime(2, 1, 1, tzinfo=timezone.utc), datetime(9998, 12, 31, tzinfo=timezone.utc)


def _taken(others: Iterable[TableRef], tables: dict[TableRef, TableState], children: dict[int, list],
           unread: bool = False) -> Names:
    """The names _TAKEN found and those of the parents' partitions, which it leaves out: the refs the partitions
    hold already, and new ones only for the partitions whose bounds partman could not read."""
    def names() -> Iterator[TableRef]:
        known = {p.oid: p.ref for t in tables.values() for p in (*t.partitions, *filter(None, [t.default]))}
        yield from others
        yield from known.values()
        yield from (TableRef(row[2], row[3]) for rows in children.values() for row in rows if row[1] not in known)

    return Names(names(), unread=unread)  # made when a create first asks for a name


_UNPROVEN = """
SELECT co.confrelid, n.nspname, r.relname, co.conname
  FROM pg_constraint co JOIN pg_class r ON r.oid = co.conrelid JOIN pg_namespace n ON n.oid = r.relnamespace
 WHERE co.confrelid = ANY(%s::oid[]) AND co.contype = 'f' AND NOT co.convalidated AND co.conparentid = 0
 ORDER BY 1, 2, 3, 4
"""


def _with_marks(cur: Cursor, specs: list[TableSpec], tables: dict[TableRef, TableState]) -> tuple[dict, dict]:
    """Each id table's mark (widths.IdMark): the next value of its sequence, then its largest key, where an index
    leads with the key (a descent per partition; without one it would read every row): among the partitions at or past
    the sequence's value (only there can a row lie past it), or without a sequence the LARGEST_FROM highest, and the
    default. A relation another session keeps locked leaves its answer out, and is returned to be asked again along
    the ladder (snapshot); one the role may not read stays out (IdMark.largest_known false)."""
    ids = {s.table: tables[s.table] for s in specs
           if s.width is not None and tables[s.table].id_mark is not None
           and tables[s.table].key_type in (KeyType.SMALLINT, KeyType.INTEGER, KeyType.BIGINT)}
    if not ids:
        return tables, {}
    asked = {ref: t for ref, t in ids.items() if t.id_mark.sequence is not None and t.id_mark.sequence_readable}
    seq = {ref: (t.id_mark.sequence_oid, sql.SQL(_SEQUENCE_NEXT).format(
        sql.Literal(t.id_mark.increment), sql.Identifier(t.id_mark.sequence.schema, t.id_mark.sequence.name)))
        for ref, t in asked.items()}
    nexts, locked = ask(cur, seq, per_statement=MARKS_PER_STATEMENT) if seq else ({}, set())
    tables = {**tables, **{ref: replace(t, id_mark=replace(t.id_mark, sequence_value=_int(nexts.get(ref)),
                                                           sequence_locked=ref in locked))
                           for ref, t in asked.items()}}
    questions = largest_questions({ref: tables[ref] for ref in ids})
    answers, held = ask(cur, questions, skip_unreadable=True, per_statement=MARKS_PER_STATEMENT)
    return with_largest(tables, questions, answers, held), {**{k: seq[k] for k in locked}, **{k: questions[k] for k in held}}


def _settled_marks(conn: Connection, snap: Snapshot, pending: dict, ladder: Ladder) -> Snapshot:
    """The marks' questions another session's lock left out, asked again along the ladder (each attempt a short
    transaction of its own); what stays locked leaves that table's mark unknown, which the plan says."""
    answers, still = settle(conn, pending, ladder, skip_unreadable=True, per_statement=MARKS_PER_STATEMENT)
    tables = dict(snap.tables)
    for key, value in answers.items():
        if isinstance(key, TableRef):  # a sequence's next value
            tables[key] = replace(tables[key], id_mark=replace(tables[key].id_mark, sequence_value=_int(value),
                                                               sequence_locked=False))
    largest = {k: v for k, v in pending.items() if isinstance(k, tuple)}
    return replace(snap, tables=with_largest(tables, largest, answers, [k for k in still if isinstance(k, tuple)]))


def largest_questions(tables: dict[TableRef, TableState]) -> dict[tuple, Question]:
    """One question per id table, keyed (table, "largest"): the largest key among the partitions that may hold it,
    each read through its index, in one scalar subquery. With a sequence, the LARGEST_FROM nearest at or past its next
    value (only there can a row lie past it) and the default; without one, the LARGEST_FROM highest and the default. Never a max() over
    the parent: it would lock every partition in the read's transaction."""
    questions: dict[tuple, Question] = {}
    for ref, t in tables.items():
        mark = t.id_mark
        if not mark.indexed:
            continue
        after = mark.sequence_value
        parts = [p for p in t.partitions if after is None or p.bounds.end is None or p.bounds.end > after]
        # past a sequence, the nearest (a collision there comes first); without one, the highest
        parts = (parts[:LARGEST_FROM] if after is not None else parts[-LARGEST_FROM:]) + ([t.default] if t.default else [])
        arms = [sql.SQL("SELECT max({})::numeric AS m FROM ONLY {}").format(
            sql.Identifier(t.key_columns[0]), sql.Identifier(p.ref.schema, p.ref.name)) for p in parts]
        body = sql.SQL(" UNION ALL ").join(arms) if arms else sql.SQL("SELECT NULL::numeric AS m")
        questions[(ref, "largest")] = (t.oid, sql.SQL("(SELECT max(m) FROM ({}) AS highest)").format(body))
    return questions


def with_largest(tables: dict[TableRef, TableState], questions: dict, answers: dict, unknown: Iterable) -> dict:
    """The tables with the largest keys answered. A table without a sequence whose LARGEST_FROM highest partitions are
    all empty while more lie below them cannot tell its largest key: it stays unknown."""
    missing = {ref for ref, _ in unknown}
    out = dict(tables)
    for ref, _ in questions:
        if ref in missing:
            continue
        t, value = out[ref], _int(answers.get((ref, "largest")))
        cut = t.id_mark.sequence_value is None and value is None and len(t.partitions) > LARGEST_FROM
        out[ref] = replace(t, id_mark=replace(t.id_mark, largest=value, largest_known=not cut))
    return out


def _int(value) -> Optional[int]:
    return None if value is None else int(value)


def _unproven(cur: Cursor, specs: list[TableSpec], tables: dict[TableRef, TableState]) -> dict[TableRef, tuple]:
    """For the partitioned tables a spec converts: foreign keys into them a swap left NOT VALID (one statement)."""
    by_oid = {tables[s.table].oid: s.table for s in specs if s.convert and tables[s.table].strategy == "range"}
    if not by_oid:
        return {}
    cur.execute(_UNPROVEN, (list(by_oid),))
    found: dict[TableRef, list] = {}
    for oid, schema, name, conname in cur.fetchall():
        found.setdefault(by_oid[oid], []).append((TableRef(schema, name), conname))
    return {k: tuple(v) for k, v in found.items()}


def _surveys(cur: Cursor, specs: list[TableSpec], tables: dict[TableRef, TableState]) -> dict[TableRef, Any]:
    """What hangs on each plain table a spec names: a fixed number of statements per such table, none at all for
    the tables that are partitioned already. The rows are read only where the spec converts (the cutover rests
    on them); for the others the survey says whether an interrupted conversion left its CHECK."""
    wanted = [s for s in specs if tables[s.table].oid is not None and tables[s.table].strategy is None]
    if not wanted:
        return {}
    from . import survey

    return {s.table: survey.read(cur, s.table, tables[s.table].oid, s.partition_key, rows=s.convert) for s in wanted}


def _with_missing_types(cur: Cursor, specs: list[TableSpec], tables: dict[TableRef, TableState]) -> dict[TableRef, TableState]:
    """For a parent partman will create, the column types the server does not know, asked of the server's own
    type-name parser (to_regtype executes nothing): one question, only when some parent is missing."""
    types = sorted({c.type for s in specs if tables[s.table].oid is None for c in s.columns})
    if not types:
        return tables
    try:
        with cur.connection.transaction():
            cur.execute("SELECT t, to_regtype(t) IS NOT NULL FROM unnest(%s::text[]) AS t", (types,))
            known = dict(cur.fetchall())
    except psycopg.errors.SyntaxError:
        return tables  # validate checked the syntax; a form the server reads otherwise is left to CREATE TABLE
    out = dict(tables)
    for s in specs:
        state = tables[s.table]
        missing = tuple(c.type for c in s.columns if state.oid is None and not known.get(c.type, True))
        if missing:
            out[s.table] = replace(state, access=replace(state.access, missing_types=missing))
    return out


def _log_rows(cur: Cursor, state_schema: str, by_table: dict) -> tuple[dict, dict, dict]:
    """The managed ranges, the detached entries and the high-water marks, by (schema, name)."""
    managed: dict[tuple[str, str], frozenset] = {}
    detached: dict[tuple[str, str], list[LogEntry]] = {}
    high_waters: dict[tuple[str, str], int] = {}
    log = sql.Identifier(state_schema, "partition_log")
    with cur.connection.cursor(binary=True) as binary:
        binary.adapters.register_loader("timestamptz", Int8BinaryLoader)
        rows = binary.execute(sql.SQL(_LOG).format(log=log), by_table).fetchall()
    instant = _instants(rows, f"{state_schema}.partition_log").__getitem__
    for schema, name, starts, ends, high in rows:
        managed[(schema, name)] = frozenset(zip(map(instant, starts), map(instant, ends))) if starts else frozenset()
        high_waters[(schema, name)] = high
    for row in cur.execute(sql.SQL(_LOG_DETACHED).format(log=log), by_table).fetchall():
        detached.setdefault((row[0], row[1]), []).append(_log_entry(row))
    return managed, detached, high_waters


# A timestamptz in binary is the microseconds since 2000-01-01 UTC, as an int8 is. The log's ranges are read so, and
# each distinct instant made a datetime once: 60,000 fresh datetimes cost more to load and far more to hash (a set
# of ranges hashes each) than the few hundred instants they repeat; shared, each is hashed once.
_POSTGRES_EPOCH = datetime(2000, 1, 1, tzinfo=timezone.utc)


def _instants(rows: list, log: str) -> dict:
    """Each microsecond count of the rows' ranges as its UTC datetime (None stays None)."""
    distinct: set = set()
    for _, _, starts, ends, _ in rows:
        distinct.update(starts or ())
        distinct.update(ends or ())
    distinct.discard(None)
    try:
        instants = {us: _POSTGRES_EPOCH + timedelta(microseconds=us) for us in distinct}
    except OverflowError:
        raise CatalogError(f"{log} holds a range bound past the year 9999, which partman cannot read;"
                           " correct that row (range_start, range_end)") from None
    instants[None] = None
    return instants


def _config_rows(cur: Cursor, state_schema: str, by_table: dict) -> dict[TableRef, ConfigRow]:
    cur.execute(sql.SQL(_CONFIG).format(config=sql.Identifier(state_schema, "partition_config")), by_table)
    return {
        TableRef(row[0], row[1]): ConfigRow(row[2], _span3(row[3]), _span3(row[4]), _span3(row[5]), row[6])
        for row in cur.fetchall()
    }


Question = tuple[int, sql.Composable]  # (OID of the relation it reads, a scalar subquery that answers it)


def exists_probe(ref: TableRef) -> sql.Composable:
    """Whether a table holds a row: EXISTS, never count(*), never reltuples."""
    return sql.SQL("EXISTS (SELECT 1 FROM {})").format(sql.Identifier(ref.schema, ref.name))


def presence_questions(relations: dict[int, TableRef]) -> dict[int, Question]:
    return {oid: (oid, exists_probe(ref)) for oid, ref in relations.items()}


def capped_count(ref: TableRef, limit: int) -> sql.Composable:
    """Rows of a table, counted up to limit: a plain SELECT (ACCESS SHARE, which queues no writer) that reads
    at most limit rows. Not ONLY: a partition that is itself partitioned holds its rows in its own partitions."""
    return sql.SQL("(SELECT count(*) FROM (SELECT 1 FROM {} LIMIT {}) AS capped)").format(
        sql.Identifier(ref.schema, ref.name), sql.Literal(limit))


def row_count_questions(relations: dict[int, TableRef], cap: int = ROW_COUNT_CAP) -> dict[int, Question]:
    """Each relation's rows up to cap + 1: an answer above the cap says there are more (plan.RowCount.of)."""
    return {oid: (oid, capped_count(ref, cap + 1)) for oid, ref in relations.items()}


def ask(cur: Cursor, questions: dict[Any, Question], *, skip_unreadable: bool = False,
        per_statement: int = PROBES_PER_STATEMENT) -> tuple[dict[Any, Any], set[Any]]:
    """Every question in a bounded number of statements, in the caller's transaction. Returns the answers
    and the keys whose relation another session holds locked (ACCESS EXCLUSIVE, held or awaited): those are
    left out after one lock_timeout step, and the rest are answered without them.

    skip_unreadable: a relation the connected role may not SELECT is left out too (in neither the answers
    nor the locked keys) instead of failing the read; for questions a plan can do without."""
    answers: dict[Any, Any] = {}
    locked: set[Any] = set()
    items = list(questions.items())
    for i in range(0, len(items), per_statement):
        pending = dict(items[i:i + per_statement])
        unexplained = 0
        while pending:
            try:
                with cur.connection.transaction():  # a savepoint: a lock timeout costs this statement only
                    answers.update(_ask_all(cur, pending))
                break
            except psycopg.errors.InsufficientPrivilege:
                denied = _unreadable(cur, pending) if skip_unreadable else set()
                if not denied:
                    raise
                pending = {k: v for k, v in pending.items() if k not in denied}
            except psycopg.errors.LockNotAvailable:
                oids = sorted({oid for oid, _ in pending.values()})
                held = {row[0] for row in cur.execute(_LOCKED, {"oids": oids}).fetchall()}
                keys = {k for k, (oid, _) in pending.items() if oid in held}
                if not keys:
                    # Released in the meantime (the next try gets through), or a lock pg_locks does not tie to
                    # these tables: after a few such tries, count the whole statement as locked.
                    unexplained += 1
                    keys = set(pending) if unexplained >= 3 else set()
                locked |= keys
                pending = {k: v for k, v in pending.items() if k not in keys}
            except psycopg.errors.UndefinedTable:
                raise Moved() from None
    return answers, locked


def _unreadable(cur: Cursor, pending: dict[Any, Question]) -> set[Any]:
    """The keys whose relation the connected role may not read. Any column's SELECT suffices for the
    probes' SELECT 1; a relation gone meanwhile (NULL) counts as readable: its probe then says it moved."""
    oids = sorted({oid for oid, _ in pending.values()})
    rows = cur.execute("SELECT o FROM unnest(%s::oid[]) AS o WHERE NOT coalesce(has_any_column_privilege(o, 'SELECT'), true)",
                       (oids,)).fetchall()
    denied = {row[0] for row in rows}
    return {k for k, (oid, _) in pending.items() if oid in denied}


def _ask_all(cur: Cursor, questions: dict[Any, Question]) -> dict[Any, Any]:
    keys = list(questions)
    # OFFSET 0 keeps each arm a subquery of its own: flattened into one level, N subqueries cost the planner N
    # squared (PostgreSQL 15: 4,500 probes in one plain UNION ALL planned for 80 s; fenced, 0.25 s).
    statements = [
        sql.SQL("(SELECT {}::int, {} OFFSET 0)").format(sql.Literal(i), questions[k][1]) for i, k in enumerate(keys)
    ]
    cur.execute(sql.SQL(" UNION ALL ").join(statements))
    return {keys[i]: value for i, value in cur.fetchall()}


def settle(conn: Connection, questions: dict[Any, Question], ladder: Ladder, *, skip_unreadable: bool = False,
           per_statement: int = PROBES_PER_STATEMENT) -> tuple[dict[Any, Any], set[Any]]:
    """Ask, each attempt in a short transaction of its own (partman never holds a read open while it waits
    for a lock), pausing between attempts, until everything is answered or the budget is spent. Returns the
    answers and the keys whose relation stayed locked (and skip_unreadable: see ask)."""
    answers: dict[Any, Any] = {}
    pending = dict(questions)
    try:
        for step in attempts(ladder, "locked partitions"):
            with conn.transaction(), conn.cursor() as cur:
                cur.execute("SELECT set_config('lock_timeout', %s, true), set_config('jit', 'off', true)", (f"{step}ms",))
                got, held = ask(cur, pending, skip_unreadable=skip_unreadable, per_statement=per_statement)
            answers.update(got)
            pending = {k: v for k, v in pending.items() if k in held}
            if not pending:
                break
    except LockBusy:
        pass
    return answers, set(pending)


def row_presence(cur: Cursor, tables: dict[int, TableRef]) -> dict[int, bool]:
    """EXISTS per table (keyed by OID) in the caller's transaction, under its lock_timeout; a table locked by
    another session raises LockNotAvailable, for the caller's ladder to retry."""
    answers, locked = ask(cur, presence_questions(tables))
    if locked:
        raise psycopg.errors.LockNotAvailable(f"{tables[min(locked)]} is locked by another session")
    return {k: bool(v) for k, v in answers.items()}


def _table_state(ref: TableRef, parent: tuple, children: dict[int, list]) -> TableState:
    (_, _, oid, relkind, strat, key_columns, key_type_name, schema_exists, may_create, owned, owner, analyzed, analyzed_at,
     seq_schema, seq_name, sequence_oid, increment, sequence_readable, indexed, sharing, _) = parent
    access = Access(schema_exists=schema_exists, may_create=may_create, owned=owned, owner=owner)
    if oid is None:
        return TableState(ref, access=access)
    sequence = TableRef(seq_schema, seq_name) if seq_name else None
    mark = IdMark(sequence, None, sequence_oid, sequence is None or bool(sequence_readable), indexed=indexed,
                  sharing=tuple(sharing or ()), increment=increment or 1)
    key_columns = tuple(key_columns or ())
    key_type = KeyType.from_catalog(key_type_name) if key_type_name and len(key_columns) == 1 else None
    partitions, unbounded, unparsed, default = [], [], [], None
    read = Partition.read
    for _, child_oid, schema, name, expr, reltuples, detach_pending in children.get(oid, []):
        estimate = None if reltuples is None or reltuples <= 0 else int(reltuples)  # _estimate, inline: per partition
        if expr == "DEFAULT":
            default = Partition(child_oid, TableRef(schema, name), Bounds(None, None), estimate)
            continue
        bounds = parse_bound(expr, key_type) if key_type else None
        if bounds is None:
            unparsed.append((name, expr))
        else:
            (partitions if bounds.start is not None else unbounded).append(
                read(child_oid, schema, name, bounds, estimate, bool(detach_pending)))
    partitions.sort(key=_START)
    return TableState(
        ref,
        oid=oid,
        strategy=_STRATEGY.get(strat) if relkind == "p" else None,
        key_columns=key_columns,
        key_type_name=key_type_name,
        partitions=tuple(unbounded + partitions),
        default=default,
        unparsed=tuple(unparsed),
        access=access,
        statistics=Statistics(bool(analyzed), analyzed_at),
        id_mark=mark,
    )


_START = attrgetter("bounds.start")  # MINVALUE's partition, whose start is None, sorts first (kept apart)


def _estimate(reltuples) -> Optional[int]:
    """The planner's row estimate, or None where it says nothing: never analyzed (-1), or 0, which is all an ANALYZE
    of a freshly made partition can say (the parent's ANALYZE samples its partitions on PostgreSQL 17 and
    earlier) and which rows arriving since leave as it is; an exact count is taken instead."""
    return None if reltuples is None or reltuples <= 0 else int(reltuples)


def _span3(value):
    return tuple(value) if value is not None else None


def _log_entry(row: tuple) -> LogEntry:
    _, _, start, end, detached, pschema, pname, relid, is_partition, reltuples, pending = row
    return LogEntry(
        partition=TableRef(pschema, pname),
        start=start,
        end=end,
        detached_at=detached,
        relid=relid,
        is_partition=bool(is_partition),
        rows_estimate=_estimate(reltuples),
        pending=pending,
    )


_RANGE = re.compile(r"^FOR VALUES FROM \((.+)\) TO \((.+)\)$")
_LITERAL = re.compile(r"^'((?:[^']|'')*)'(?:::[a-z ]+)?$")
_BARE_INTEGER = re.compile(r"^-?[0-9]+$")  # pg_get_expr prints a positive integer bound without quotes


@lru_cache(maxsize=1 << 16)
def parse_bound(expr: str, key_type: KeyType) -> Optional[Bounds]:
    """Bounds of a range partition from pg_get_expr(relpartbound), printed with TimeZone UTC and DateStyle ISO."""
    m = _RANGE.match(expr)
    if not m:
        return None
    try:
        start = parse_value(m.group(1), key_type)
        end = parse_value(m.group(2), key_type)
    except ValueError:
        return None
    return Bounds(start, end)


def parse_value(text: str, key_type: KeyType) -> Optional[KeyValue]:
    """One bound or constraint literal as printed with TimeZone UTC and DateStyle ISO; None for MINVALUE, MAXVALUE."""
    text = text.strip()
    if text in ("MINVALUE", "MAXVALUE"):
        return None
    if not key_type.is_time:
        return _encoded_value(text, key_type)
    m = _LITERAL.match(text)
    if not m:
        raise ValueError(text)
    raw = m.group(1).replace("''", "'")
    if raw in ("infinity", "-infinity"):
        # Unbounded in practice; where such a partition lies is what matters, and it reaches the end.
        return None
    if key_type is KeyType.DATE:
        return date.fromisoformat(raw)
    value = datetime.fromisoformat(raw)
    if (key_type is KeyType.TIMESTAMPTZ) != (value.tzinfo is not None):
        raise ValueError(text)
    return value


def _encoded_value(text: str, key_type: KeyType) -> KeyValue:
    """An integer or uuid bound; a UUID that is not the smallest UUIDv7 of its millisecond is no time partman reads."""
    m = _LITERAL.match(text)
    raw = m.group(1) if m else text
    if key_type is KeyType.UUID:
        if not m:
            raise ValueError(text)
        value = UUID(raw)
        if not Uuid7().fits(value):
            raise ValueError(text)
        return value
    if not _BARE_INTEGER.match(raw):
        raise ValueError(text)
    return int(raw)


def default_row_counts(conn: Connection, states: Iterable[TableState], ladder: Ladder, cap: int = 1_000_000
                       ) -> tuple[dict[int, int], set[int]]:
    """Rows in each default partition, counted up to cap, in one statement (drift reports them); and the
    defaults another session kept locked for the whole ladder."""
    questions = {s.default.oid: (s.default.oid, capped_count(s.default.ref, cap)) for s in states if s.default is not None}
    return settle(conn, questions, ladder) if questions else ({}, set())
