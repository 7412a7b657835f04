"""Observe, then plan: the one home of reading the catalog, probing rows and calling the planner, shared by
plan, apply, drift and saved plans. Every read runs under the lock_timeout ladder; what stays locked by
another session is planned around and named in the plan (PM208), never waited on without a bound."""

from __future__ import annotations

from datetime import datetime
from typing import Callable, Iterable, Optional

from psycopg import Connection

from . import catalog, planner, references
from .catalog import Moved
from .errors import CatalogError
from .lock import Ladder
from .moves import in_range_count
from .naming import NamesUnread
from .plan import ROW_FIGURED, ActionKind, Plan, Reason
from .snapshot import Snapshot
from .spec import TableSpec


def observe(
    conn: Connection, specs: Iterable[TableSpec], *, now: datetime, env: str, state_schema: str = "public",
    ladder: Optional[Ladder] = None, digests: bool = False, another: Optional[Callable[[], Connection]] = None,
) -> tuple[Snapshot, Plan]:
    """The snapshot and the plan computed from it, with the rows a create would have to move out of a
    default partition counted (one more question, asked only if some default holds rows), and the rows of
    each partition leaving or returning without a statistics estimate (one more, asked only if there is one).
    Without digests (plan, drift), the names a create may not take are read only if the plan has a create."""
    specs = list(specs)
    ladder = ladder or Ladder()
    for _ in range(catalog.MAX_REREADS):
        try:
            snap = catalog.snapshot(conn, specs, now=now, to_probe=planner.presence_needed, state_schema=state_schema,
                                    digests=digests, ladder=ladder, another=another, names_later=not digests)
            try:
                the_plan = planner.plan(specs, snap, now=now, env=env)
            except NamesUnread:  # a create wants a name: the names in use are read, and the plan made again
                snap = catalog.with_names_in_use(conn, snap, ladder)
                the_plan = planner.plan(specs, snap, now=now, env=env)
            the_plan = _count_default_rows(conn, specs, snap, the_plan, ladder)
            the_plan = _count_references(conn, snap, the_plan, ladder,
                                         frozenset(s.table for s in specs if s.on_reference == "cascade"))
            return snap, _count_rows(conn, the_plan, ladder)
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


def _count_references(conn: Connection, snap: Snapshot, the_plan: Plan, ladder: Ladder, cascading: frozenset) -> Plan:
    """For each partition retention would detach, the rows of each table whose foreign key points into it, counted
    up to a cap; one settle for them all, asked only where a table has foreign keys into it."""
    questions = {}
    for t in the_plan.tables:
        for ref in snap.tables[t.table].references if t.table in snap.tables else ():
            for a in t.actions:
                if a.kind is ActionKind.DETACH and a.reason is Reason.RETENTION:
                    questions[(t.table, a.partition, ref.table, ref.constraint)] = (
                        ref.table_oid, references.capped_count(ref, a.bounds, catalog.ROW_COUNT_CAP + 1))
    if not questions:
        return the_plan
    counts, locked = catalog.settle(conn, questions, ladder)
    return planner.with_references(the_plan, {t: snap.tables[t].references for t in snap.tables}, counts,
                                   frozenset(locked), cap=catalog.ROW_COUNT_CAP, cascading=cascading)


def _count_rows(conn: Connection, the_plan: Plan, ladder: Ladder) -> Plan:
    """Exact counts, up to catalog.ROW_COUNT_CAP, of the partitions a detach, drop or re-attach is about that
    were never analyzed (no reltuples estimate), so a reviewer sees a figure for each. Every candidate in
    one settle (chunked, under the ladder); a partition the role may not read, or that stays locked, is
    named as not counted. A partition that vanished meanwhile raises Moved: the caller reads again."""
    relations = {
        a.oid: a.partition
        for t in the_plan.tables for a in t.actions
        if a.kind in ROW_FIGURED and a.rows_estimate is None and a.oid is not None
    }
    if not relations:
        return the_plan
    counts, locked = catalog.settle(conn, catalog.row_count_questions(relations), ladder, skip_unreadable=True)
    unread = frozenset(relations) - counts.keys() - locked
    return planner.with_row_counts(the_plan, counts, frozenset(locked), unread, cap=catalog.ROW_COUNT_CAP)
