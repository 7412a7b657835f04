"""The applier: per table, under its advisory lock: finish what an interrupted run began, decide on the catalog as
it is, create, detach concurrently, drop after the future-data check, and record every action."""

from __future__ import annotations

import threading
from dataclasses import dataclass, replace
from enum import Enum
from typing import Callable, Iterable, Optional

import psycopg
from psycopg import Connection, sql

from . import audit, batches, catalog, conformance, ddl, moves, planner, pool, retention, retire, statistics
from .console import plural
from .errors import Blocked, LockBusy, PartmanError, StalePlan, worst
from .failures import first_line
from .lock import Ladder, advisory_lock, session_lock, with_retries
from .model import TableRef
from .naming import Taken
from .plan import APPLY_ORDER, DESTRUCTIVE, Action, ActionKind, Plan, TablePlan
from .planfile import what_moved
from .spec import TableSpec
from .timeline import KeySpace, space_for

STATE_LOCK = TableRef("partman", "state")  # the advisory key that serializes creating the state tables


class Status(str, Enum):
    APPLIED = "applied"
    UNCHANGED = "unchanged"
    BLOCKED = "blocked"
    STALE = "stale"
    LOCK_BUSY = "lock_busy"
    ERROR = "error"


@dataclass(frozen=True)
class Outcome:
    table: TableRef
    status: Status
    message: str = ""
    actions: tuple[Action, ...] = ()

    @property
    def code(self) -> str:
        """The diagnostic of a table that ended short; empty when it did not."""
        return _FAILURE[self.status].code if self.status in _FAILURE else ""


# The error each failed status stands for: its class carries the exit code and the precedence (errors.worst).
_FAILURE = {Status.ERROR: PartmanError, Status.STALE: StalePlan, Status.BLOCKED: Blocked, Status.LOCK_BUSY: LockBusy}
_STATUS = {kind: status for status, kind in _FAILURE.items()}


def exit_code(outcomes: Iterable[Outcome]) -> int:
    return worst(_FAILURE[o.status] for o in outcomes if o.status in _FAILURE)


def apply_plan(
    conn: Connection,
    plan: Plan,
    specs: Iterable[TableSpec],
    *,
    ctx: audit.Context,
    ladder: Ladder = Ladder(),
    exact: bool = False,
    protected: bool = False,
    move_default_rows: bool = False,
    on_table: Optional[Callable[[Outcome], None]] = None,
    on_done: Optional[Callable[[TableRef, int], None]] = None,
    connect: Optional[Callable[[], Connection]] = None,
    parallelism: Optional[int] = None,
) -> list[Outcome]:
    """Apply every table's part of the plan; one table's failure does not stop the others. With connect, tables run
    in parallel over up to parallelism connections (pool.size caps it); outcomes come in the plan's order.

    Under the table's lock the catalog is read again (see _under_lock): a concurrent apply that already did
    the work leaves nothing to do, and a row that appeared in a partition planned for drop blocks the table.
    exact=True (a saved plan) applies exactly the plan or refuses the table, naming what moved; protected=True
    (an ad-hoc apply in a protected environment) never adds a detach or drop when re-planning."""
    by_table = {s.table: s for s in specs}
    audit.check_writable(conn, ctx.schema)
    if audit.state_missing(conn, ctx.schema):
        with_retries(conn, ladder, "creating partman's state tables", lambda: _ensure_state(conn, ctx.schema))
    if on_done is not None:  # told from every worker: one at a time
        told, guard = on_done, threading.Lock()

        def on_done(table: TableRef, steps: int) -> None:
            with guard:
                told(table, steps)

    refused: list[str] = []  # why a connection made in place of a lost one was not had

    def one(c: Connection, table_plan: TablePlan) -> Outcome:
        if table_plan.errors:
            return Outcome(table_plan.table, Status.ERROR, "; ".join(table_plan.errors))
        if not table_plan.changes:
            return Outcome(table_plan.table, Status.UNCHANGED)
        if table_plan.refused:
            return Outcome(table_plan.table, Status.ERROR, f"{table_plan.refused}; nothing changed")
        if refused and c.closed:
            return Outcome(table_plan.table, Status.ERROR, f"{table_plan.table}: the connection was lost and a new one"
                                                           f" was refused: {refused[0]}; nothing changed for this table")
        return _apply_table(c, table_plan, by_table[table_plan.table], plan, ctx, ladder, exact, protected,
                            move_default_rows, on_done)

    busy = sum(1 for t in plan.tables if t.changes and not t.errors and not t.refused)
    workers = pool.size(conn, parallelism, busy) if connect is not None and busy > 1 else 1  # one: no question asked
    extra: list[Connection] = []
    for _ in range(workers - 1):
        try:
            extra.append(connect())
        except PartmanError:  # the server has no more connections to give (too many clients): fewer workers
            break
    # psycopg prepares nothing on these connections: its DEALLOCATE ALL after each ALTER would also drop the
    # statement the lock's question is prepared as (catalog._ask), which is planned once per connection.
    threshold, conn.prepare_threshold = conn.prepare_threshold, None
    for c in extra:
        c.prepare_threshold = None

    def renewed() -> Connection:  # in place of a connection whose session ended: the next tables run on it
        try:
            c = connect()
        except PartmanError as exc:
            refused.append(exc.message)
            raise
        c.prepare_threshold = None
        return c

    try:
        return pool.run(plan.tables, one, [conn, *extra], on_table, renew=renewed if connect is not None else None)
    finally:
        conn.prepare_threshold = threshold
        for c in extra:
            c.close()


class _Done(list):
    """The actions of a table completed so far, each told to on_done as its transaction commits (the
    progress of a long apply); everything else reads it as the list it is."""

    def __init__(self, table: TableRef, on_done: Optional[Callable[[TableRef, int], None]]):
        super().__init__()
        self.table, self.on_done = table, on_done
        self.not_analyzed: Optional[str] = None  # why the parent's ANALYZE did not run (its budget, its lock)

    def append(self, action: Action) -> None:
        super().append(action)
        if self.on_done:
            self.on_done(self.table, 1)

    def extend(self, actions) -> None:
        actions = list(actions)
        super().extend(actions)
        if self.on_done and actions:
            self.on_done(self.table, len(actions))


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
    move_default_rows: bool = False,
    on_done: Optional[Callable[[TableRef, int], None]] = None,
) -> Outcome:
    """One table, under its advisory lock held for the whole (a concurrent detach spans transactions):
    finish an interrupted run, decide on the catalog as it is, then creates that need no drop, each detach or
    drop, and the creates that needed them. Each partition is either done or untouched at any exit."""
    done: list[Action] = _Done(spec.table, on_done)
    space = space_for(shown.key_type, spec.timezone, spec.key_encoding) if shown.key_type else None
    try:
        with session_lock(conn, spec.table, ladder):
            view = _look(conn, ladder, spec, ctx, shown)
            if view.pending and space is not None:
                done.extend(retire.recover(conn, spec.table, ctx, ladder, space, concurrent=view.default is None))
                view = _look(conn, ladder, spec, ctx, shown)
            todo = _decide(conn, shown, spec, plan, ctx, exact, protected, view, ladder)
            try:
                _carry_out(conn, todo, spec, ctx, ladder, view, move_default_rows, done)
            except (psycopg.errors.DuplicateTable, psycopg.errors.DuplicateObject) as exc:
                # A relation took a planned name after the plan was read. Names are cosmetic: read again,
                # under the lock, and carry on with fresh names (a saved plan is exact: it is stale).
                if exact:
                    raise StalePlan(f"{spec.table}: {first_line(exc)} (made since the plan was); run plan again") from None
                view = _look(conn, ladder, spec, ctx, shown)
                todo = _decide(conn, shown, spec, plan, ctx, exact, protected, view, ladder, reread=True)
                _carry_out(conn, todo, spec, ctx, ladder, view, move_default_rows, done)
    except (Blocked, StalePlan, LockBusy, PartmanError) as exc:
        return Outcome(spec.table, _STATUS.get(type(exc), Status.ERROR), _progress(exc.message, done), tuple(done))
    except psycopg.Error as exc:
        return Outcome(spec.table, Status.ERROR, _progress(f"{spec.table}: {first_line(exc)}", done), tuple(done))
    if not todo.changes and not done:
        return Outcome(spec.table, Status.UNCHANGED, "already in shape (another run did the work)")
    note = f"the parent's statistics were not refreshed: {done.not_analyzed}" if done.not_analyzed else ""
    return Outcome(spec.table, Status.APPLIED, note, actions=tuple(done))


def _carry_out(conn: Connection, todo: TablePlan, spec: TableSpec, ctx: audit.Context, ladder: Ladder,
               view: catalog.LockView, move_default_rows: bool, done: list[Action]) -> None:
    """The decided plan: creates that need no drop, re-attaches, each detach or drop, then the creates that
    needed them. done grows as each transaction commits, so a failure reports what was completed."""
    space = space_for(todo.key_type, spec.timezone, spec.key_encoding)
    converting = [a for a in todo.actions if a.kind is ActionKind.CONVERT]
    if converting and todo.converting:
        _convert(conn, todo, spec, ctx, ladder, space, converting[0], done)
    leaving = [a for a in todo.actions if a.kind in DESTRUCTIVE]
    returning = [a for a in todo.actions if a.kind is ActionKind.REATTACH]
    creates = [a for a in todo.actions if a.kind is ActionKind.CREATE]
    adopted = [a for a in todo.actions if a.kind is ActionKind.ADOPT]
    if adopted:  # log rows only: the partitions stay exactly as they are
        with_retries(conn, ladder, f"{spec.table}: adopt", lambda: audit.record_all(conn, ctx, spec.table, adopted, space))
        done.extend(adopted)
    # Creates over a range a drop frees must wait for it; the rest go first, so a blocked drop never costs the
    # table its runway.
    dependent = [c for c in creates if any(c.bounds.overlaps(a.bounds) for a in leaving if a.attached)]
    independent = [c for c in creates if c not in dependent]
    # A step with nothing to ask costs no transaction: no drops to check, no default partition to mind.
    if leaving:
        with_retries(conn, ladder, f"{spec.table}: future-data check", lambda: retire.check_empty(conn, leaving))
    beside = None if todo.create_parent or view.default is None else with_retries(
        conn, ladder, str(spec.table), lambda: moves.to_mind(conn, view.default))
    allowed = spec.move_default_rows or move_default_rows
    if beside is not None:
        moves.clear_checks(conn, beside[0], ladder)
        with_retries(conn, ladder, str(spec.table), lambda: moves.refuse_unless_allowed(
            conn, beside[0], spec.partition_key, creates, allowed))
    made = None
    if creates and view.making is not None:
        made = conformance.making_from(spec, todo.create_parent, view.making)
    elif creates:
        made = with_retries(conn, ladder, str(spec.table), lambda: conformance.making_for(conn, spec, todo.create_parent))
    filled = _creates(conn, todo, spec, ctx, independent, space, ladder, beside, allowed, done, made, view.batch,
                      first=True)
    for action in sorted(returning, key=_order):
        retire.reattach(conn, spec.table, action, ctx, ladder, space)
        done.append(action)
    concurrent = view.default is None
    retiring = sorted([a for a in leaving if retention.is_retention(a)], key=_order)
    if retiring:
        retention.retire_all(conn, spec.table, retiring, ctx, ladder, space, done, concurrent=concurrent)
    for action in sorted([a for a in leaving if not retention.is_retention(a)], key=_order):
        retire.retire(conn, spec.table, action, ctx, ladder, space, concurrent=concurrent)
        done.append(action)
    if dependent:
        filled += _creates(conn, todo, spec, ctx, dependent, space, ladder, beside, allowed, done, made, view.batch,
                           first=False)
    for partition in filled:
        moves.analyze(conn, partition, ladder)
    if converting and not todo.converting:  # proving foreign keys an earlier swap re-pointed: after the rest,
        _convert(conn, todo, spec, ctx, ladder, space, converting[0], done)  # so a failure there costs nothing else
    if todo.analyze:
        done.not_analyzed = statistics.analyze(conn, spec.table, ladder)
    # Last: a partition whose conform fails costs the table nothing else of this run.
    for action in sorted([a for a in todo.actions if a.kind is ActionKind.CONFORM], key=_order):
        if with_retries(conn, ladder, f"{action.partition}: conform", lambda: conformance.conform(conn, action)):
            done.append(action)


def _convert(conn: Connection, todo: TablePlan, spec: TableSpec, ctx: audit.Context, ladder: Ladder, space: KeySpace,
             action: Action, done: list[Action]) -> None:
    from . import cutover

    cutover.carry_out(conn, spec, todo.conversion, action, ctx, ladder, space, on_swapped=lambda: done.append(action))


def _progress(message: str, done: list[Action]) -> str:
    """The failure, and what had been completed before it (every partition is done or untouched)."""
    if not done:
        return message if "nothing changed" in message else f"{message}; nothing changed for this table"
    return f"{message}; {plural(len(done), 'action was', 'actions were')} completed first (each partition is either done or untouched)"


def _order(a: Action) -> tuple:
    return (APPLY_ORDER[a.kind], a.bounds.start is not None, a.bounds.start)


def _look(conn: Connection, ladder: Ladder, spec: TableSpec, ctx: audit.Context, shown: TablePlan) -> catalog.LockView:
    """The one question asked under the lock; for a plan with creates, it asks what making them needs too."""
    creating = spec if any(a.kind is ActionKind.CREATE for a in shown.actions) else None
    return with_retries(conn, ladder, str(spec.table),
                        lambda: catalog.under_lock(conn, spec.table, ctx.schema, creating), settings=_PIN)


def _decide(
    conn: Connection, shown: TablePlan, spec: TableSpec, plan: Plan, ctx: audit.Context, exact: bool, protected: bool,
    view: catalog.LockView, ladder: Ladder, reread: bool = False,
) -> TablePlan:
    """What to do, decided on what was read under the lock: the shown plan while the structure digest (of the
    very rows the plan was computed from) is unchanged, else a plan made from a fresh consistent read.
    reread: plan afresh even so (a name the plan chose was taken meanwhile)."""
    if not exact and not reread and shown.observed_digest and view.digest == shown.observed_digest:
        return shown  # nothing moved: one question answered it, no need to read everything again
    snap = catalog.snapshot(conn, [spec], now=plan.now, to_probe=planner.presence_needed, state_schema=ctx.schema,
                            ladder=ladder)
    return _under_lock(shown, spec, snap, plan, exact, protected, reread)


# What is read and written under the lock never depends on the session's settings (set with the lock_timeout); the
# question asked under it is planned once per connection (catalog._ask). That plan is made at the connection's first
# table and kept while every create adds five relations: made on a small catalog, it would scan all of pg_class for
# each later table (2 ms a table after 1,200 creates, growing with the database). A question about one table wants
# its index lookups, whatever the catalog's size when it was planned.
_PIN = (("TimeZone", "UTC"), ("DateStyle", "ISO, YMD"), ("plan_cache_mode", "force_generic_plan"),
        ("enable_seqscan", "off"))


def _signature(a: Action) -> tuple:
    return (a.kind, a.bounds, a.reason)


def _under_lock(shown: TablePlan, spec: TableSpec, snap, plan: Plan, exact: bool, protected: bool,
                reread: bool = False) -> TablePlan:
    """What to execute, decided on the catalog as it is under the lock.

    A saved plan runs only on exactly the state it was made from (structure, log, row presence, config).
    An ad-hoc plan runs as shown while the structure is unchanged (rows that appeared since are the
    future-data check's business, right before each drop); otherwise it is re-planned and applied only if
    it does no more than what was shown."""
    state = snap.tables[spec.table]
    if exact:
        now = planner.observed_state(spec, state, snap.has_rows, plan.now, snap.surveys.get(spec.table))
        moved = what_moved(str(shown.table), shown.observed, now)
        if moved:
            # One finding per line, each naming its object: a refusal over 15 partitions stays readable.
            raise StalePlan("\n".join([f"{shown.table}: the saved plan is stale; run plan again:"] + moved))
        return shown
    if not reread and state.fingerprint() == shown.observed_fingerprint:
        return shown
    fresh = planner.plan_table(spec, state, snap.has_rows, plan.now, Taken(snap.taken_names), busy=snap.busy,
                               survey=snap.surveys.get(spec.table), unproven=snap.unproven.get(spec.table, ()))
    if protected:
        fresh = fresh.without_destructive()
    if fresh.errors or fresh.refused:
        raise PartmanError("; ".join(fresh.errors or (fresh.refused,)))
    extra = set(map(_signature, fresh.actions)) - set(map(_signature, shown.actions))
    if extra or (fresh.create_parent and not shown.create_parent) or (fresh.config and fresh.config != shown.config):
        raise StalePlan(f"{shown.table} changed since the plan was shown ({len(extra)} new actions); run plan again")
    # What the shell added to the shown plan (rows a cascade deletes, a conform's changes) holds for the same action.
    added = {_signature(a): a for a in shown.actions if a.cascade or a.changes}
    return replace(fresh, actions=tuple(
        replace(a, cascade=added[_signature(a)].cascade, changes=added[_signature(a)].changes or a.changes)
        if _signature(a) in added else a for a in fresh.actions))


def _creates(conn: Connection, tp: TablePlan, spec: TableSpec, ctx: audit.Context, creates: list[Action], space: KeySpace,
             ladder: Ladder, beside, allowed: bool, done: list[Action], made, batch: Optional[int], *,
             first: bool) -> list[TableRef]:
    """Creates in batches of a bounded size, one transaction each, or one at a time beside a default partition
    (moving its rows in their range when allowed); returns the partitions that received rows."""
    ordered = sorted(creates, key=_order)
    if beside is None:
        size = batch or batches.size(conn, spec.table)
        parts = [ordered[i:i + size] for i in range(0, len(ordered), size)] or [[]]
        for n, part in enumerate(parts):
            with_retries(conn, ladder, str(spec.table),
                         lambda: _create(conn, tp, spec, ctx, part, space, made, first=first and n == 0))
            done.extend(part)
        return []
    if first and tp.config is not None:
        with_retries(conn, ladder, str(spec.table), lambda: audit.write_config(conn, ctx, spec.table, tp.config))
    default, size = beside
    filled = []
    for action in ordered:
        if moves.create_next_to_default(conn, spec.table, default, size, spec.partition_key, action, ctx, space, ladder, allowed,
                                        made):
            filled.append(action.partition)
        done.append(action)
    return filled


_LOCAL = sql.SQL("SET LOCAL default_tablespace = ''")  # what ddl.create_partition sets for its transaction


def _create(conn: Connection, tp: TablePlan, spec: TableSpec, ctx: audit.Context, creates: list[Action],
            space: KeySpace, made, *, first: bool) -> None:
    """Creates in one transaction and one pipeline: the statements run one after another, but the client
    does not wait a round trip for each; the parent and the config row go with the first batch."""
    with conn.pipeline():
        if first and tp.create_parent:
            conn.execute(ddl.create_parent(spec))
        local: list = []  # a SET LOCAL holds for the whole transaction: sent once, not once per partition
        for action in creates:
            for statement in ddl.create_partition(spec.table, action.partition, action.bounds, made):
                if statement == _LOCAL:
                    if local:
                        continue
                    local.append(statement)
                conn.execute(statement)
            conformance.after_attach(conn, action.partition, made)
        # The log, the parent's creation and the config row: one statement, in this transaction.
        audit.record_made(conn, ctx, spec.table, creates, space, created_parent=first and tp.create_parent,
                          config=tp.config if first else None)

