"""partition_log, partition_audit_log and partition_config: their DDL (the migration's) and partman's writes to them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Optional

from psycopg import Connection, sql

from . import __version__
from .model import TableRef
from .plan import Action, ActionKind
from .snapshot import ConfigRow
from .timeline import KeySpace


def state_ddl(schema: str) -> sql.Composed:
    """The state section of the migration: one definition for both faces."""
    from .migration import state_ddl as from_migration

    return from_migration(schema)


def ensure_state(conn: Connection, schema: str) -> None:
    """Create the state tables if missing; the caller holds the state lock so concurrent runs do not race."""
    conn.execute(state_ddl(schema))


@dataclass(frozen=True)
class Context:
    """What every audit row of one apply shares."""

    schema: str
    env: str
    plan_id: str
    now: datetime  # the plan's clock: partition_log times follow it so grace periods are reproducible


def record(conn: Connection, ctx: Context, parent: TableRef, action: Action, space: KeySpace) -> None:
    """Write one action to partition_log and partition_audit_log, in the caller's transaction."""
    log = sql.Identifier(ctx.schema, "partition_log")
    start = space.to_log(action.bounds.start) if action.bounds.start is not None else None
    end = space.to_log(action.bounds.end) if action.bounds.end is not None else None
    if action.kind is ActionKind.CREATE:
        # A live row for this range whose partition is gone (dropped by hand) is closed, not left to clash.
        conn.execute(
            sql.SQL(
                "UPDATE {} SET dropped_at = %s WHERE parent_schema = %s AND parent_name = %s"
                " AND range_start = %s AND dropped_at IS NULL"
            ).format(log),
            (ctx.now, parent.schema, parent.name, start),
        )
        conn.execute(
            sql.SQL(
                "INSERT INTO {} (parent_schema, parent_name, partition_schema, partition_name, range_start, range_end,"
                " created_at) VALUES (%s, %s, %s, %s, %s, %s, %s)"
            ).format(log),
            (parent.schema, parent.name, action.partition.schema, action.partition.name, start, end, ctx.now),
        )
    else:
        column = "detached_at" if action.kind is ActionKind.DETACH else "dropped_at"
        conn.execute(
            sql.SQL(
                "UPDATE {} SET {} = %s WHERE parent_schema = %s AND parent_name = %s"
                " AND range_start = %s AND range_end = %s AND dropped_at IS NULL"
            ).format(log, sql.Identifier(column)),
            (ctx.now, parent.schema, parent.name, start, end),
        )
    _audit(conn, ctx, parent, action.kind.value, action.partition, start, end, action.reason.value, action.rows_estimate)


def write_config(conn: Connection, ctx: Context, parent: TableRef, config: ConfigRow) -> None:
    """Upsert the table's partition_config row, so manage_partitions() follows the spec between deploys."""
    row = config.to_dict()
    conn.execute(
        sql.SQL(
            "INSERT INTO {} AS c (parent_schema, parent_name, interval_months, premake, retention, retention_grace,"
            " timezone, updated_at, updated_by) VALUES (%s, %s, %s, %s::interval, %s::interval, %s::interval, %s, now(), 'partman')"
            " ON CONFLICT (parent_schema, parent_name) DO UPDATE SET interval_months = EXCLUDED.interval_months,"
            " premake = EXCLUDED.premake, retention = EXCLUDED.retention, retention_grace = EXCLUDED.retention_grace,"
            " timezone = EXCLUDED.timezone, updated_at = now(), updated_by = 'partman'"
        ).format(sql.Identifier(ctx.schema, "partition_config")),
        (parent.schema, parent.name, row["interval_months"], row["premake"], row["retention"], row["retention_grace"], row["timezone"]),
    )
    _audit(conn, ctx, parent, "config", parent, None, None, "spec", None)


def record_parent(conn: Connection, ctx: Context, parent: TableRef) -> None:
    _audit(conn, ctx, parent, "create_table", parent, None, None, "spec", None)


def _audit(
    conn: Connection,
    ctx: Context,
    parent: TableRef,
    action: str,
    partition: TableRef,
    start: Optional[datetime],
    end: Optional[datetime],
    reason: str,
    rows: Optional[int],
) -> None:
    conn.execute(
        sql.SQL(
            "INSERT INTO {} (action, partition_name, partition_schema, start_date, end_date, table_name, reason,"
            " environment, plan_id, partman_version, rows_estimate) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
        ).format(sql.Identifier(ctx.schema, "partition_audit_log")),
        (action, partition.name, partition.schema, start, end, str(parent), reason, ctx.env, ctx.plan_id, __version__, rows),
    )
