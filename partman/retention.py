"""Retention at scale: many detaches, and the drops of partitions whose grace has passed, in a bounded number
of transactions instead of several per partition.

Per chunk of partitions (sized like creates, from the shared lock table): one transaction locks them (each lock
request waiting at most one ladder step), checks they are the very relations the plan saw, and records a
'detach' intent for each; each is then detached concurrently (a statement of its own: it cannot run in a
transaction block); one transaction then records the detaches and drops those the plan drops in the same run
(a zero grace) together with those detached by an earlier run. A run killed anywhere leaves each partition
either done or with its intent recorded, which the next run finishes (retire.recover) before planning."""

from __future__ import annotations

import psycopg
from psycopg import Connection, sql

from . import audit, batches, ddl, references
from .errors import Blocked, LockBusy, StalePlan
from .lock import Ladder, with_retries
from .model import TableRef
from .plan import Action, ActionKind, Reason
from .timeline import KeySpace


def is_retention(action: Action) -> bool:
    """A detach by retention, or the drop of a partition retention detached: no future-data check applies."""
    return action.reason in (Reason.RETENTION, Reason.RETENTION_GRACE_ELAPSED)


def retire_all(conn: Connection, parent: TableRef, actions: list[Action], ctx: audit.Context, ladder: Ladder,
               space: KeySpace, done: list[Action], *, concurrent: bool) -> None:
    """Carry out retention's actions; done grows as each transaction commits."""
    from .retire import detach

    detaches = [a for a in actions if a.kind is ActionKind.DETACH]
    leaving = {a.partition for a in detaches}
    drops = [a for a in actions if a.kind is ActionKind.DROP]
    size = batches.size(conn, parent)
    for i in range(0, max(len(detaches), len(drops)), size):
        chunk = detaches[i:i + size]
        if chunk:
            with_retries(conn, ladder, f"{parent}: retention", lambda: _intend(conn, parent, chunk, ctx, space))
            for action in chunk:
                try:
                    detach(conn, parent, action.partition, ladder, concurrent=concurrent)
                except LockBusy as exc:
                    raise LockBusy(f"{exc.message}; the detach of {action.partition} is recorded as pending:"
                                   " the next apply finishes it") from None
                except psycopg.errors.ForeignKeyViolation:
                    # A row of another table came to reference the partition after the check: it stays attached.
                    _abandon(conn, parent, action, ctx, ladder, space)
                    raise Blocked(f"{action.partition} came to be referenced by another table's rows during its detach;"
                                  " it stays attached and its intent was cleared: run plan again") from None
        # The drops of this chunk's partitions, and as many of the partitions detached earlier.
        dropping = [a for a in drops if a.partition in {c.partition for c in chunk}]
        dropping += [a for a in drops if a.partition not in leaving][i:i + size]
        with_retries(conn, ladder, f"{parent}: retention", lambda: _finish(conn, parent, chunk, dropping, ctx, space))
        done.extend(chunk + dropping)


def _abandon(conn: Connection, parent: TableRef, action: Action, ctx: audit.Context, ladder: Ladder, space: KeySpace) -> None:
    """A detach that the database refused: the partition is still attached, so its recorded intent goes (a pending
    concurrent detach is cancelled by FINALIZE failing the same way; the next plan sees it as it is)."""
    if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
        conn.rollback()
    with_retries(conn, ladder, f"{action.partition}: clear", lambda: audit.clear_intent(conn, ctx, parent, space, action.bounds.start))


def _intend(conn: Connection, parent: TableRef, chunk: list[Action], ctx: audit.Context, space: KeySpace) -> None:
    # ACCESS EXCLUSIVE on the partitions alone (never the parent) meets any reader that holds one, under the
    # ladder's lock_timeout, before anything is recorded; only writers to those old partitions wait, briefly.
    conn.execute(sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(
        sql.SQL(", ").join(ddl.ident(a.partition) for a in chunk)))
    _still(conn, chunk, attached=True)
    references.check(conn, parent, chunk)
    audit.intend(conn, ctx, parent, space, [a.bounds for a in chunk], "detach")


def _finish(conn: Connection, parent: TableRef, detached: list[Action], dropping: list[Action], ctx: audit.Context,
            space: KeySpace) -> None:
    if dropping:
        conn.execute(sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(
            sql.SQL(", ").join(ddl.ident(a.partition) for a in dropping)))
        _still(conn, dropping, attached=False)  # never a partition someone attached again
        # RESTRICT: a view or foreign key that depends on a partition stops the drop instead of vanishing with it.
        conn.execute(sql.SQL("DROP TABLE {} RESTRICT").format(sql.SQL(", ").join(ddl.ident(a.partition) for a in dropping)))
    audit.record_all(conn, ctx, parent, detached + dropping, space)


_STILL = """
SELECT w.schema, w.name, c.oid, c.relispartition
  FROM unnest(%s::text[], %s::text[]) WITH ORDINALITY AS w(schema, name, i)
  LEFT JOIN pg_namespace n ON n.nspname = w.schema
  LEFT JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = w.name AND c.relkind IN ('r', 'p')
 ORDER BY w.i
"""


def _still(conn: Connection, actions: list[Action], *, attached: bool) -> None:
    """Under the lock: each relation is the very one the plan was made from (same OID), attached or not as
    the plan saw it; anything else means the plan is stale, and nothing of this chunk is done."""
    rows = conn.execute(_STILL, ([a.partition.schema for a in actions], [a.partition.name for a in actions])).fetchall()
    for action, (_, _, oid, is_partition) in zip(actions, rows):
        if oid is None or (action.oid is not None and oid != action.oid) or bool(is_partition) != attached:
            now = "gone" if oid is None else ("replaced" if action.oid is not None and oid != action.oid
                                              else ("attached" if is_partition else "detached"))
            raise StalePlan(f"{action.partition} is {now} since the plan was made; left as it is: run plan again")
