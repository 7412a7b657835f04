"""Observe, then plan: the one home of reading the catalog, probing rows and calling the planner, shared by
plan, apply, drift and saved plans. Every read runs under the lock_timeout ladder; what stays locked by
another session is planned around and named in the plan (PM208), never waited on without a bound."""

from __future__ import annotations

from datetime import datetime
from typing import Iterable, Optional

from psycopg import Connection

from . import catalog, planner
from .catalog import Moved
from .errors import CatalogError
from .lock import Ladder
from .moves import in_range_count
from .plan import ActionKind, Plan
from .snapshot import Snapshot
from .spec import TableSpec


def observe(
    conn: Connection, specs: Iterable[TableSpec], *, now: datetime, env: str, state_schema: str = "public",
    ladder: Optional[Ladder] = None, digests: bool = False,
) -> tuple[Snapshot, Plan]:
    """The snapshot and the plan computed from it, with the rows a create would have to move out of a
    default partition counted (one more question, asked only if some default holds rows)."""
    specs = list(specs)
    ladder = ladder or Ladder()
    for _ in range(catalog.MAX_REREADS):
        try:
            snap = catalog.snapshot(conn, specs, now=now, state_schema=state_schema, digests=digests, ladder=ladder)
            the_plan = planner.plan(specs, snap, now=now, env=env)
            return snap, _count_default_rows(conn, specs, snap, the_plan, ladder)
        except Moved:
            continue  # a partition vanished while it was locked and waited for: read it all again
    raise CatalogError("the catalog kept changing while partman read it; run again")


def _count_default_rows(conn: Connection, specs: list[TableSpec], snap: Snapshot, the_plan: Plan, ladder: Ladder) -> Plan:
    keys = {s.table: s.partition_key for s in specs}
    questions = {}
    for t in the_plan.tables:
        default = snap.tables[t.table].default
        if default is None or not snap.has_rows.get(default.oid):
            continue
        for a in t.actions:
            if a.kind is ActionKind.CREATE:
                questions[(t.table, a.bounds)] = (default.oid, in_range_count(default.ref, keys[t.table], a.bounds))
    if not questions:
        return the_plan
    counts, locked = catalog.settle(conn, questions, ladder)
    return planner.with_default_rows(the_plan, counts, frozenset(table for table, _ in locked))
