"""The applier: per table, one transaction under lock: re-observe, re-plan, re-check rows, DDL, audit, commit."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Callable, Iterable, Optional

import psycopg
from psycopg import Connection

from . import audit, catalog, ddl, planner
from .errors import Blocked, LockBusy, PartmanError, StalePlan
from .lock import Ladder, advisory_lock, with_retries
from .model import TableRef
from .plan import APPLY_ORDER, Action, ActionKind, Plan, TablePlan
from .planfile import what_moved
from .spec import TableSpec
from .timeline import KeySpace

STATE_LOCK = TableRef("partman", "state")  # the advisory key that serializes creating the state tables


class Status(str, Enum):
    APPLIED = "applied"
    UNCHANGED = "unchanged"
    BLOCKED = "blocked"
    STALE = "stale"
    LOCK_BUSY = "lock_busy"
    ERROR = "error"


# Worst first: what the exit code of a run reports when tables end differently.
_SEVERITY = [Status.ERROR, Status.STALE, Status.BLOCKED, Status.LOCK_BUSY]
_EXIT = {Status.ERROR: 1, Status.STALE: 1, Status.BLOCKED: 3, Status.LOCK_BUSY: 4}


@dataclass(frozen=True)
class Outcome:
    table: TableRef
    status: Status
    message: str = ""
    actions: tuple[Action, ...] = ()


def exit_code(outcomes: Iterable[Outcome]) -> int:
    statuses = {o.status for o in outcomes}
    for status in _SEVERITY:
        if status in statuses:
            return _EXIT[status]
    return 0


def apply_plan(
    conn: Connection,
    plan: Plan,
    specs: Iterable[TableSpec],
    *,
    ctx: audit.Context,
    ladder: Ladder = Ladder(),
    exact: bool = False,
    protected: bool = False,
    on_table: Optional[Callable[[Outcome], None]] = None,
) -> list[Outcome]:
    """Apply every table's part of the plan; one table's failure does not stop the others.

    Under the table's lock the catalog is read again (see _under_lock): a concurrent apply that already did
    the work leaves nothing to do, and a row that appeared in a partition planned for drop blocks the table.
    exact=True (a saved plan) applies exactly the plan or refuses the table, naming what moved; protected=True
    (an ad-hoc apply in a protected environment) never adds a detach or drop when re-planning."""
    by_table = {s.table: s for s in specs}
    with_retries(conn, ladder, "creating partman's state tables", lambda: _ensure_state(conn, ctx.schema))
    outcomes = []
    for table_plan in plan.tables:
        if table_plan.errors:
            outcome = Outcome(table_plan.table, Status.ERROR, "; ".join(table_plan.errors))
        elif not table_plan.changes:
            outcome = Outcome(table_plan.table, Status.UNCHANGED)
        else:
            outcome = _apply_table(conn, table_plan, by_table[table_plan.table], plan, ctx, ladder, exact, protected)
        outcomes.append(outcome)
        if on_table:
            on_table(outcome)
    return outcomes


def _ensure_state(conn: Connection, schema: str) -> None:
    advisory_lock(conn, STATE_LOCK)
    audit.ensure_state(conn, schema)


def _apply_table(
    conn: Connection,
    shown: TablePlan,
    spec: TableSpec,
    plan: Plan,
    ctx: audit.Context,
    ladder: Ladder,
    exact: bool,
    protected: bool,
) -> Outcome:
    def work() -> TablePlan:
        advisory_lock(conn, spec.table)
        if not exact and shown.catalog_digest and catalog.digest(conn, spec.table, ctx.schema) == shown.catalog_digest:
            todo = shown  # nothing moved: one question answered it, no need to read everything again
        else:
            snap = catalog.snapshot(conn, [spec], now=plan.now, state_schema=ctx.schema)
            todo = _under_lock(shown, spec, snap, plan, exact, protected)
        _execute(conn, todo, spec, ctx)
        return todo

    try:
        done = with_retries(conn, ladder, str(spec.table), work)
    except Blocked as exc:
        return Outcome(spec.table, Status.BLOCKED, exc.message)
    except StalePlan as exc:
        return Outcome(spec.table, Status.STALE, exc.message)
    except LockBusy as exc:
        return Outcome(spec.table, Status.LOCK_BUSY, exc.message)
    except PartmanError as exc:
        return Outcome(spec.table, Status.ERROR, exc.message)
    except psycopg.Error as exc:
        return Outcome(spec.table, Status.ERROR, f"{spec.table}: {_first_line(exc)}; nothing changed for this table")
    if not done.changes:
        return Outcome(spec.table, Status.UNCHANGED, "already in shape (another run did the work)")
    return Outcome(spec.table, Status.APPLIED, actions=done.actions)


def _signature(a: Action) -> tuple:
    return (a.kind, a.bounds, a.reason)


def _under_lock(shown: TablePlan, spec: TableSpec, snap, plan: Plan, exact: bool, protected: bool) -> TablePlan:
    """What to execute, decided on the catalog as it is under the lock.

    A saved plan runs only on exactly the state it was made from (structure, log, row presence, config).
    An ad-hoc plan runs as shown while the structure is unchanged (rows that appeared since are the
    future-data check's business, right before each drop); otherwise it is re-planned and applied only if
    it does no more than what was shown."""
    state = snap.tables[spec.table]
    if exact:
        now = planner.observed_state(spec, state, snap.has_rows, plan.now)
        moved = what_moved(str(shown.table), shown.observed, now)
        if moved:
            raise StalePlan("; ".join(moved) + "; run plan again")
        return shown
    if state.fingerprint() == shown.observed_fingerprint:
        return shown
    fresh = planner.plan_table(spec, state, snap.has_rows, plan.now, set(snap.taken_names))
    if protected:
        fresh = fresh.without_destructive()
    if fresh.errors:
        raise PartmanError("; ".join(fresh.errors))
    extra = set(map(_signature, fresh.actions)) - set(map(_signature, shown.actions))
    if extra or (fresh.create_parent and not shown.create_parent) or (fresh.config and fresh.config != shown.config):
        raise StalePlan(f"{shown.table} changed since the plan was shown ({len(extra)} new actions); run plan again")
    return fresh


def _execute(conn: Connection, tp: TablePlan, spec: TableSpec, ctx: audit.Context) -> None:
    assert tp.key_type is not None
    space = KeySpace(tp.key_type, spec.timezone)
    ordered = sorted(tp.actions, key=lambda a: (APPLY_ORDER[a.kind], a.bounds.start is not None, a.bounds.start))
    # One pipeline per table: the statements still run one after another, in this transaction, but the client
    # stops waiting a round trip for each; an error still aborts the transaction at the first failure.
    with conn.pipeline():
        if tp.create_parent:
            conn.execute(ddl.create_parent(spec))
            audit.record_parent(conn, ctx, spec.table)
        for action in ordered:
            if action.kind is ActionKind.CREATE:
                for statement in ddl.create_partition(spec.table, action.partition, action.bounds):
                    conn.execute(statement)
            elif action.kind is ActionKind.DETACH:
                conn.execute(ddl.detach_partition(spec.table, action.partition))
            else:
                _drop(conn, spec.table, action)
        audit.record_all(conn, ctx, spec.table, ordered, space)
        if tp.config is not None:
            audit.write_config(conn, ctx, spec.table, tp.config)


def _drop(conn: Connection, parent: TableRef, action: Action) -> None:
    if action.attached:
        # Detaching first takes the parent before the partition, the order inserts take them in, and stops new
        # rows from being routed into it; then the future-data check runs with nothing able to add a row.
        conn.execute(ddl.detach_partition(parent, action.partition))
        if conn.execute(ddl.has_rows(action.partition)).fetchone()[0]:
            raise Blocked(
                f"{action.partition} holds rows (future-data check under lock, just before the drop);"
                f" {parent} left unchanged: run plan again to see the layout that keeps them"
            )
    else:
        conn.execute(ddl.lock_table(action.partition))
    conn.execute(ddl.drop_table(action.partition))


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
