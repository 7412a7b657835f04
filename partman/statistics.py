"""The partitioned parent's own statistics, which autovacuum never collects: when the spec's `analyze` setting
makes them due (pure), and ANALYZE under the ladder within a time budget."""

from __future__ import annotations

from datetime import datetime
from typing import Optional

import psycopg
from psycopg import Connection, sql

from .lock import Ladder, with_retries
from .model import TableRef
from .snapshot import TableState
from .spec import TableSpec
from .timeline import space_for

# An ANALYZE samples a fixed number of rows, so it is short; a budget keeps a huge partition set from holding
# apply (its lock, SHARE UPDATE EXCLUSIVE, lets writers go on).
BUDGET_MS = 300_000
AFTER_CHANGES = "after the changes above"


def due(spec: TableSpec, state: TableState, changed: bool, now: datetime) -> Optional[str]:
    """Why apply should analyze the parent now, or None: after partitions were created, detached or dropped
    (unless analyze: never), and, with an age, when the statistics are older or were never collected."""
    if spec.analyze == "never":
        return None
    if changed:
        return AFTER_CHANGES
    return stale(spec, state, now)


def stale(spec: TableSpec, state: TableState, now: datetime) -> Optional[str]:
    """With an age in the spec: how the parent's statistics fall short of it (drift reports it too)."""
    age = spec.analyze_age
    if age is None or state.oid is None or not state.partitions:
        return None
    if not state.statistics.collected:
        return "the parent's statistics were never collected"
    at = state.statistics.at
    space = space_for(state.key_type, spec.timezone, spec.key_encoding) if state.key_type else None
    if at is None or space is None or age.add(space.local_moment(at)) <= space.local_moment(now):
        return f"the parent's statistics are older than {age}"
    return None


def analyze(conn: Connection, parent: TableRef, ladder: Ladder) -> Optional[str]:
    """ANALYZE the parent (ONLY the parent on PostgreSQL 18, whose partitions autovacuum analyzes itself); returns
    why it was not done when it ran out of budget or of lock attempts, for the outcome to say."""
    only = sql.SQL("ONLY ") if conn.info.server_version >= 180000 else sql.SQL("")

    def work() -> None:
        conn.execute(sql.SQL("ANALYZE {}{}").format(only, sql.Identifier(parent.schema, parent.name)))

    from .errors import LockBusy

    try:
        with_retries(conn, ladder, f"{parent}: analyze", work, settings=(("statement_timeout", f"{BUDGET_MS}ms"),))
    except psycopg.errors.QueryCanceled:
        return f"ANALYZE took longer than {BUDGET_MS // 1000} s"
    except LockBusy as exc:
        return exc.message
    return None
