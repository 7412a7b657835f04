"""partition_log, partition_audit_log and partition_config: their DDL (the migration's) and partman's writes to them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Optional

from psycopg import Connection, sql

from . import __version__
from .errors import CatalogError
from .failures import first_line
from .model import KeyValue, TableRef
from .plan import Action, ActionKind
from .snapshot import ConfigRow
from .timeline import KeySpace


def state_ddl(schema: str) -> sql.Composed:
    """The state section of the migration: one definition for both faces."""
    from .migration import state_ddl as from_migration

    return from_migration(schema)


# Each piece the state section makes, and (for the audit log) that its action check knows the newest actions ('adopt', 'convert').
_STATE_PRESENT = """
SELECT n.oid IS NOT NULL,
       bool_and(c.oid IS NOT NULL),
       coalesce(bool_or(pg_get_constraintdef(k.oid) LIKE '%%convert%%'), false)
  FROM unnest(ARRAY['partition_log', 'partition_log_live_range', 'partition_log_parent_id',
                    'partition_audit_log', 'partition_config']) AS w(name)
  LEFT JOIN pg_namespace n ON n.nspname = %(schema)s
  LEFT JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = w.name
  LEFT JOIN pg_constraint k ON k.conrelid = c.oid AND w.name = 'partition_audit_log' AND k.contype = 'c'
                           AND pg_get_constraintdef(k.oid) LIKE '%%action%%'
 GROUP BY n.oid
"""

# The audit log of a database whose state tables predate re-attaching is widened once, by the first apply.
_WIDEN_ACTIONS = """
ALTER TABLE {audit} DROP CONSTRAINT IF EXISTS partition_audit_log_action_check;
ALTER TABLE {audit} ADD CONSTRAINT partition_audit_log_action_check
      CHECK (action IN ('create_table', 'create', 'detach', 'drop', 'config', 'reattach', 'adopt', 'convert'))
"""

# What apply writes, per state table: a role missing one is named before anything changes.
_WRITES = [("partition_log", p) for p in ("SELECT", "INSERT", "UPDATE")] + [("partition_audit_log", "INSERT")] + [
    ("partition_config", p) for p in ("SELECT", "INSERT", "UPDATE")]


def state_missing(conn: Connection, schema: str) -> bool:
    """True when any state table or index is missing (or the audit log's action check is older): only then
    does apply run the state DDL, which needs CREATE on the schema; a role with DML alone can apply."""
    row = conn.execute(_STATE_PRESENT, {"schema": schema}).fetchone()
    if row is None or not row[0]:
        return True
    return not (row[1] and row[2])


def ensure_state(conn: Connection, schema: str) -> None:
    """Create the state tables if missing; the caller holds the state lock so concurrent runs do not race."""
    import psycopg

    try:
        conn.execute(state_ddl(schema))
        if state_missing(conn, schema):
            conn.execute(sql.SQL(_WIDEN_ACTIONS).format(audit=sql.Identifier(schema, "partition_audit_log")))
    except psycopg.errors.InvalidSchemaName:
        raise CatalogError(f"the state schema {schema} does not exist: CREATE SCHEMA it, or pass --state-schema") from None
    except psycopg.errors.InsufficientPrivilege as exc:
        raise CatalogError(
            f"the connected role cannot create partman's state tables in schema {schema} ({first_line(exc)}):"
            f" GRANT CREATE ON SCHEMA {schema} TO it, or create them once as their owner (README: Privileges)"
        ) from None


def check_writable(conn: Connection, schema: str) -> None:
    """Refuse, before anything changes, on a read-only server or a role that cannot write the state tables."""
    in_recovery, read_only = conn.execute("SELECT pg_is_in_recovery(), current_setting('transaction_read_only')").fetchone()
    if in_recovery or read_only == "on":
        why = "a standby in recovery" if in_recovery else "default_transaction_read_only is on"
        raise CatalogError(f"the database is read-only ({why}); apply needs a writable primary")
    # One privilege per call: has_table_privilege with a list is true when any one of them is held.
    rows = conn.execute(
        "SELECT w.name, w.priv, has_table_privilege(c.oid, w.priv)"
        "  FROM unnest(%s::text[], %s::text[]) WITH ORDINALITY AS w(name, priv, i)"
        "  JOIN pg_namespace n ON n.nspname = %s JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = w.name"
        " ORDER BY w.i",
        ([t for t, _ in _WRITES], [p for _, p in _WRITES], schema),
    ).fetchall()
    for name, priv, granted in rows:
        if not granted:
            raise CatalogError(f"permission denied for table {schema}.{name}: partman's apply needs {priv} on it"
                               " (README: Privileges)")



@dataclass(frozen=True)
class Context:
    """What every audit row of one apply shares."""

    schema: str
    env: str
    plan_id: str
    now: datetime  # the plan's clock: partition_log times follow it so grace periods are reproducible


# partition_log keeps MINVALUE and MAXVALUE as -infinity and infinity (its columns are NOT NULL); a None bound
# of KeySpace.to_log reaches SQL as NULL and is mapped here, the readers map it back (catalog._LOG).
_START, _END = "coalesce(r.s, '-infinity'::timestamptz)", "coalesce(r.e, 'infinity'::timestamptz)"
_SAME_RANGE = f"l.range_start = {_START} AND l.range_end = {_END}"
# What a live partition_log row says made the partition: partman's creates, or a partition it adopted.
_MAKERS = {ActionKind.CREATE: "partman", ActionKind.ADOPT: "adopted", ActionKind.CONVERT: "converted"}


def record_all(conn: Connection, ctx: Context, parent: TableRef, actions: list[Action], space: KeySpace) -> None:
    """Write a table's actions to partition_log and partition_audit_log in the caller's transaction: a few
    set-based statements however many actions, in apply order (adoptions, detaches, drops, then creates); one
    statement when every action makes a partition (creates, adoptions, conversions: record_made)."""
    if not actions:
        return
    if all(a.kind in _MAKERS for a in actions):
        record_made(conn, ctx, parent, actions, space)
        return
    log = sql.Identifier(ctx.schema, "partition_log")
    bounds = [(space.to_log(a.bounds.start), space.to_log(a.bounds.end)) for a in actions]
    owner = (parent.schema, parent.name)
    # Detached and dropped partitions get their time; a re-attached one is live again (detached_at cleared).
    for kind, column, value in ((ActionKind.DETACH, "detached_at", ctx.now), (ActionKind.DROP, "dropped_at", ctx.now),
                                (ActionKind.REATTACH, "detached_at", None)):
        ranges = [b for a, b in zip(actions, bounds) if a.kind is kind]
        if ranges:
            conn.execute(
                sql.SQL(
                    "UPDATE {} l SET {} = %s::timestamptz, pending_action = NULL, pending_since = NULL"
                    " FROM unnest(%s::timestamptz[], %s::timestamptz[]) AS r(s, e)"
                    " WHERE l.parent_schema = %s AND l.parent_name = %s AND " + _SAME_RANGE + " AND l.dropped_at IS NULL"
                ).format(log, sql.Identifier(column)),
                (value, [s for s, _ in ranges], [e for _, e in ranges], *owner),
            )
    made = [(a, b) for a, b in zip(actions, bounds) if a.kind in _MAKERS]
    if made:
        _record_made(conn, ctx, log, owner, made)
    conn.execute(
        sql.SQL(
            "INSERT INTO {} (action, partition_name, partition_schema, start_date, end_date, table_name, reason,"
            " environment, plan_id, partman_version, rows_estimate)"
            " SELECT r.act, r.nam, r.sch, r.s, r.e, %s, r.why, %s, %s, %s, r.n"
            " FROM unnest(%s::text[], %s::text[], %s::text[], %s::timestamptz[], %s::timestamptz[], %s::text[], %s::bigint[])"
            " WITH ORDINALITY AS r(act, nam, sch, s, e, why, n, i) ORDER BY r.i"
        ).format(sql.Identifier(ctx.schema, "partition_audit_log")),
        (
            str(parent), ctx.env, ctx.plan_id, __version__,
            [a.kind.value for a in actions], [a.partition.name for a in actions], [a.partition.schema for a in actions],
            [s for s, _ in bounds], [e for _, e in bounds], [a.reason.value for a in actions],
            [a.rows for a in actions]  # the estimate, else the count observe took,
        ),
    )


def _record_made(conn: Connection, ctx: Context, log: sql.Identifier, owner: tuple[str, str], made: list) -> None:
    """Live log rows for created and adopted partitions. A live row for a range whose partition is gone (dropped
    by hand) is closed first, not left to clash."""
    starts = [s for _, (s, _) in made]
    ends = [e for _, (_, e) in made]
    conn.execute(
        sql.SQL(
            "UPDATE {} l SET dropped_at = %s FROM unnest(%s::timestamptz[], %s::timestamptz[]) AS r(s, e)"
            " WHERE l.parent_schema = %s AND l.parent_name = %s AND l.range_start = " + _START + " AND l.dropped_at IS NULL"
        ).format(log),
        (ctx.now, starts, ends, *owner),
    )
    conn.execute(
        sql.SQL(
            "INSERT INTO {} (parent_schema, parent_name, partition_schema, partition_name, range_start, range_end,"
            " created_at, created_by) SELECT %s, %s, r.sch, r.nam, " + _START + ", " + _END + ", %s, r.who"
            " FROM unnest(%s::text[], %s::text[], %s::timestamptz[], %s::timestamptz[], %s::text[]) AS r(sch, nam, s, e, who)"
        ).format(log),
        (*owner, ctx.now, [a.partition.schema for a, _ in made], [a.partition.name for a, _ in made], starts, ends,
         [_MAKERS[a.kind] for a, _ in made]),
    )


# record_made's pieces, each a data-modifying CTE of one statement (named parameters: record_made).
# A live row for a range whose partition is gone (dropped by hand) is closed first, not left to clash.
_CLOSE = (
    "closed AS (UPDATE {log} l SET dropped_at = %(now)s FROM unnest(%(s)s::timestamptz[], %(e)s::timestamptz[]) AS r(s, e)"
    " WHERE l.parent_schema = %(ps)s AND l.parent_name = %(pn)s AND l.range_start = " + _START + " AND l.dropped_at IS NULL"
    " RETURNING 1)"
)
# The CTEs of one statement run in no set order: the count of closed rows makes the close run before any insert,
# so the range a closed row held is free in the live-range index (a row updated by this transaction clashes with
# nothing there).
_OPEN = (
    "opened AS (INSERT INTO {log} (parent_schema, parent_name, partition_schema, partition_name, range_start, range_end,"
    " created_at, created_by) SELECT %(ps)s, %(pn)s, r.sch, r.nam, " + _START + ", " + _END + ", %(now)s, r.who"
    " FROM unnest(%(sch)s::text[], %(nam)s::text[], %(s)s::timestamptz[], %(e)s::timestamptz[], %(who)s::text[])"
    " AS r(sch, nam, s, e, who) WHERE (SELECT count(*) FROM closed) >= 0)"
)
_UPSERT = (
    "configured AS (INSERT INTO {config} AS c (parent_schema, parent_name, interval_months, premake, retention, retention_grace,"
    " timezone, updated_at, updated_by) VALUES (%(ps)s, %(pn)s, %(months)s, %(premake)s::interval, %(retention)s::interval,"
    " %(grace)s::interval, %(zone)s, now(), 'partman')"
    " ON CONFLICT (parent_schema, parent_name) DO UPDATE SET interval_months = EXCLUDED.interval_months,"
    " premake = EXCLUDED.premake, retention = EXCLUDED.retention, retention_grace = EXCLUDED.retention_grace,"
    " timezone = EXCLUDED.timezone, updated_at = now(), updated_by = 'partman')"
)
_AUDIT_ROWS = (
    "INSERT INTO {audit} (action, partition_name, partition_schema, start_date, end_date, table_name, reason,"
    " environment, plan_id, partman_version, rows_estimate)"
    " SELECT r.act, r.nam, r.sch, r.s, r.e, %(table)s, r.why, %(env)s, %(plan)s, %(version)s, r.n"
    " FROM unnest(%(acts)s::text[], %(anams)s::text[], %(aschs)s::text[], %(astarts)s::timestamptz[], %(aends)s::timestamptz[],"
    " %(whys)s::text[], %(rows)s::bigint[]) WITH ORDINALITY AS r(act, nam, sch, s, e, why, n, i) ORDER BY r.i"
)


def record_made(conn: Connection, ctx: Context, parent: TableRef, actions: list[Action], space: Optional[KeySpace],
                *, created_parent: bool = False, config: Optional[ConfigRow] = None) -> None:
    """Live log rows for created, adopted and converted partitions and their audit rows, in the caller's transaction
    and in one statement; with created_parent and config (a table's first create batch), the parent's creation and
    its partition_config row (write_config) go in the same statement. Audit rows in that order: parent, actions, config."""
    bounds = [(space.to_log(a.bounds.start), space.to_log(a.bounds.end)) for a in actions] if actions else []
    audited = [(a.kind.value, a.partition, s, e, a.reason.value, a.rows) for a, (s, e) in zip(actions, bounds)]
    if created_parent:
        audited.insert(0, ("create_table", parent, None, None, "spec", None))
    if config is not None:
        audited.append(("config", parent, None, None, "spec", None))
    if not audited:
        return
    params: dict = {
        "now": ctx.now, "ps": parent.schema, "pn": parent.name, "table": str(parent), "env": ctx.env, "plan": ctx.plan_id,
        "version": __version__, "acts": [r[0] for r in audited], "anams": [r[1].name for r in audited],
        "aschs": [r[1].schema for r in audited], "astarts": [r[2] for r in audited], "aends": [r[3] for r in audited],
        "whys": [r[4] for r in audited], "rows": [r[5] for r in audited],  # the estimate, else the count observe took
    }
    ctes = []
    if actions:
        ctes += [_CLOSE, _OPEN]
        params.update(s=[s for s, _ in bounds], e=[e for _, e in bounds], sch=[a.partition.schema for a in actions],
                      nam=[a.partition.name for a in actions], who=[_MAKERS[a.kind] for a in actions])
    if config is not None:
        ctes.append(_UPSERT)
        row = config.to_dict()
        params.update(months=row["interval_months"], premake=row["premake"], retention=row["retention"],
                      grace=row["retention_grace"], zone=row["timezone"])
    names = {"log": sql.Identifier(ctx.schema, "partition_log"), "config": sql.Identifier(ctx.schema, "partition_config"),
             "audit": sql.Identifier(ctx.schema, "partition_audit_log")}
    head = sql.SQL("WITH {} ").format(sql.SQL(", ").join(sql.SQL(c).format(**names) for c in ctes)) if ctes else sql.SQL("")
    conn.execute(head + sql.SQL(_AUDIT_ROWS).format(**names), params)


def write_config(conn: Connection, ctx: Context, parent: TableRef, config: ConfigRow) -> None:
    """Upsert the table's partition_config row, so manage_partitions() follows the spec between deploys."""
    record_made(conn, ctx, parent, [], None, config=config)


def intend(conn: Connection, ctx: Context, parent: TableRef, space: KeySpace, ranges: list, intent: str) -> None:
    """Record, before it starts, the step each partition of these ranges is about to take ('detach' or 'drop'),
    so that an interrupted run is finished by the next one (retire.recover)."""
    conn.execute(
        sql.SQL(
            "UPDATE {} l SET pending_action = %s, pending_since = %s"
            " FROM unnest(%s::timestamptz[], %s::timestamptz[]) AS r(s, e)"
            " WHERE l.parent_schema = %s AND l.parent_name = %s AND " + _SAME_RANGE + " AND l.dropped_at IS NULL"
        ).format(sql.Identifier(ctx.schema, "partition_log")),
        (intent, ctx.now, [space.to_log(b.start) for b in ranges], [space.to_log(b.end) for b in ranges],
         parent.schema, parent.name),
    )


def clear_intent(conn: Connection, ctx: Context, parent: TableRef, space: KeySpace, start: Optional[KeyValue]) -> None:
    """The recorded step is done (or was never begun): the partition has no pending action any more."""
    conn.execute(
        sql.SQL(
            "UPDATE {} SET pending_action = NULL, pending_since = NULL WHERE parent_schema = %s AND parent_name = %s"
            " AND range_start = coalesce(%s::timestamptz, '-infinity'::timestamptz) AND dropped_at IS NULL"
        ).format(sql.Identifier(ctx.schema, "partition_log")),
        (parent.schema, parent.name, space.to_log(start)),
    )
