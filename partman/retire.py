"""Detaching and dropping without queueing writers: intent first, DETACH … CONCURRENTLY, the future-data check,
DROP; and finishing what an interrupted run left recorded.

A concurrent detach spans transactions, so each step is recorded in partition_log before it starts
(`pending_action`); the next run reads that intent and completes it."""

from __future__ import annotations

from typing import Optional

from psycopg import Connection, sql

from . import audit, catalog, ddl
from .errors import Blocked, LockBusy
from .lock import Ladder, statement_with_retries, with_retries
from .model import Bounds, TableRef
from .plan import Action, ActionKind, Reason
from .planner import from_log
from .timeline import KeySpace

_PENDING = """
SELECT l.partition_schema, l.partition_name, l.pending_action, nullif(l.range_start, '-infinity'), nullif(l.range_end, 'infinity'),
       c.oid IS NOT NULL, coalesce(c.relispartition, false), coalesce(i.inhdetachpending, false)
  FROM {log} l
  LEFT JOIN pg_namespace n ON n.nspname = l.partition_schema
  LEFT JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = l.partition_name AND c.relkind IN ('r', 'p')
  LEFT JOIN pg_inherits i ON i.inhrelid = c.oid
 WHERE l.parent_schema = %s AND l.parent_name = %s AND l.dropped_at IS NULL AND l.pending_action IS NOT NULL
 ORDER BY l.range_start
"""


def check_empty(conn: Connection, actions: list[Action]) -> None:
    """The future-data check for every partition an interval change would drop, before anything changes."""
    targets = {a.oid: a.partition for a in actions if a.kind is ActionKind.DROP and a.reason is Reason.INTERVAL_CHANGE}
    busy = [targets[oid] for oid, rows in catalog.row_presence(conn.cursor(), targets).items() if rows]
    if busy:
        raise Blocked(
            f"{busy[0]} holds rows (future-data check under lock, before anything changed); the table was left"
            " unchanged: run plan again to see the layout that keeps them"
        )


def retire(conn: Connection, parent: TableRef, action: Action, ctx: audit.Context, ladder: Ladder, space: KeySpace,
           *, concurrent: bool) -> None:
    """One detach or drop, gently. Raises Blocked if rows appeared (the partition is attached again first).
    concurrent: the parent has no default partition, so DETACH … CONCURRENTLY is allowed."""
    if action.kind is ActionKind.DROP and not action.attached:
        _drop(conn, parent, action, ctx, ladder, space)
        return
    intent = "detach" if action.kind is ActionKind.DETACH else "drop"
    with_retries(conn, ladder, f"{action.partition}: {intent}",
                 lambda: _intend(conn, parent, action.partition, space, action.bounds, intent, ctx, action))
    try:
        detach(conn, parent, action.partition, ladder, concurrent=concurrent)
    except LockBusy as exc:
        raise LockBusy(f"{exc.message}; the detach of {action.partition} is recorded as pending: the next apply finishes it") from None
    if action.kind is ActionKind.DETACH:
        with_retries(conn, ladder, f"{action.partition}: record", lambda: audit.record_all(conn, ctx, parent, [action], space))
    else:
        _drop(conn, parent, action, ctx, ladder, space)


def _drop(conn: Connection, parent: TableRef, action: Action, ctx: audit.Context, ladder: Ladder, space: KeySpace) -> None:
    if not with_retries(conn, ladder, f"{action.partition}: drop", lambda: _drop_detached(conn, parent, action, ctx, space)):
        raise Blocked(
            f"{action.partition} holds rows (future-data check under lock, just before the drop); it is attached"
            " again and was not dropped: run plan again to see the layout that keeps them"
        )


def _intend(conn: Connection, parent: TableRef, partition: TableRef, space: KeySpace, bounds: Bounds, intent: str,
            ctx: audit.Context, action: Optional[Action] = None) -> None:
    # The ACCESS EXCLUSIVE probe on the partition alone (never the parent) meets any reader that holds it, under
    # the ladder's lock_timeout, before anything is recorded; only writers to that one partition wait, briefly.
    conn.execute(ddl.lock_table(partition))
    if action is not None:
        _still(conn, action, attached=True)
    audit.intend(conn, ctx, parent, space, [bounds], intent)


def reattach(conn: Connection, parent: TableRef, action: Action, ctx: audit.Context, ladder: Ladder, space: KeySpace) -> None:
    """Attach again, with its rows and its bounds, a partition retention detached whose range is wanted again
    (retention was lengthened, or a pinned clock ran ahead). ATTACH takes SHARE UPDATE EXCLUSIVE on the
    parent, so writers go on; it validates the rows against the bounds while the detached table is locked."""
    def work() -> None:
        conn.execute(ddl.lock_table(action.partition))
        _still(conn, action, attached=False)
        conn.execute(sql.SQL("ALTER TABLE {} ATTACH PARTITION {} {}").format(
            ddl.ident(parent), ddl.ident(action.partition), ddl.for_values(action.bounds)))
        audit.record_all(conn, ctx, parent, [action], space)

    with_retries(conn, ladder, f"{action.partition}: reattach", work)


def _still(conn: Connection, action: Action, *, attached: bool) -> None:
    """Under the lock, before anything destructive or re-attaching: the very relation the plan saw."""
    from .retention import _still as still_all

    still_all(conn, [action], attached=attached)


def detach(conn: Connection, parent: TableRef, partition: TableRef, ladder: Ladder, *, concurrent: bool) -> None:
    """DETACH … CONCURRENTLY (SHARE UPDATE EXCLUSIVE on the parent: writers never queue), finishing with
    FINALIZE if an attempt's wait timed out after its first transaction committed. A parent with a default
    partition cannot detach concurrently (concurrent=False); then a plain DETACH runs under the ladder."""
    if not concurrent and not _detach_pending(conn, partition):
        with_retries(conn, ladder, f"{partition}: detach", lambda: conn.execute(ddl.detach_partition(parent, partition)))
        return

    def attempt(_: int) -> None:
        how = "FINALIZE" if _detach_pending(conn, partition) else "CONCURRENTLY"
        conn.execute(sql.SQL("ALTER TABLE {} DETACH PARTITION {} {}").format(ddl.ident(parent), ddl.ident(partition), sql.SQL(how)))

    statement_with_retries(conn, ladder, f"{partition}: detach", attempt)


def _detach_pending(conn: Connection, partition: TableRef) -> bool:
    row = conn.execute(
        "SELECT inhdetachpending FROM pg_inherits WHERE inhrelid = to_regclass(format('%%I.%%I', %s::text, %s::text))",
        (partition.schema, partition.name),
    ).fetchone()
    return bool(row and row[0])


def _drop_detached(conn: Connection, parent: TableRef, action: Action, ctx: audit.Context, space: KeySpace) -> bool:
    """Drop a detached partition: no lock on the parent. An interval change's drop checks for rows once more,
    with the partition locked; found rows put it back (attached, committed) and it returns False."""
    conn.execute(ddl.lock_table(action.partition))
    if not action.attached:
        _still(conn, action, attached=False)  # a retention drop: never of a partition someone attached again
    if action.reason is Reason.INTERVAL_CHANGE and conn.execute(ddl.has_rows(action.partition)).fetchone()[0]:
        conn.execute(
            sql.SQL("ALTER TABLE {} ATTACH PARTITION {} {}").format(
                ddl.ident(parent), ddl.ident(action.partition), ddl.for_values(action.bounds)
            )
        )
        _clear(conn, parent, action, ctx, space)
        return False
    conn.execute(ddl.drop_table(action.partition))
    audit.record_all(conn, ctx, parent, [action], space)
    return True


def _clear(conn: Connection, parent: TableRef, action: Action, ctx: audit.Context, space: KeySpace) -> None:
    audit.clear_intent(conn, ctx, parent, space, action.bounds.start)


def recover(conn: Connection, parent: TableRef, ctx: audit.Context, ladder: Ladder, space: KeySpace,
            *, concurrent: bool) -> list[Action]:
    """Finish the detaches and drops an interrupted run recorded as pending; returns what was done."""
    rows = conn.execute(sql.SQL(_PENDING).format(log=sql.Identifier(ctx.schema, "partition_log")), (parent.schema, parent.name)).fetchall()
    done: list[Action] = []
    for schema, name, intent, start, end, exists, is_partition, detach_pending in rows:
        partition = TableRef(schema, name)
        kind = ActionKind.DETACH if intent == "detach" else ActionKind.DROP
        reason = Reason.RETENTION if intent == "detach" else Reason.INTERVAL_CHANGE
        bounds = Bounds(from_log(start, space), from_log(end, space))
        action = Action(kind, partition, bounds, reason, attached=False)
        if exists and detach_pending:
            detach(conn, parent, partition, ladder, concurrent=concurrent)  # FINALIZE
        elif not exists or is_partition:
            # Never started (still attached) or already gone: the intent is all that is left; the plan redoes it.
            with_retries(conn, ladder, f"{partition}: clear", lambda: _clear(conn, parent, action, ctx, space))
            continue
        if kind is ActionKind.DETACH:
            with_retries(conn, ladder, f"{partition}: record", lambda: audit.record_all(conn, ctx, parent, [action], space))
        else:
            _drop(conn, parent, action, ctx, ladder, space)
        done.append(action)
    return done


