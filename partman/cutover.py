"""Carrying out a conversion (conversion.py plans it): the CHECK that proves the cutover, its validation, the swap
transaction, and the validation of the foreign keys re-pointed at the new parent. Each step first looks at the
catalog and skips what is already done, so an interrupted run is finished by the next one."""

from __future__ import annotations

from typing import Callable

import psycopg
from psycopg import Connection, sql

from . import audit, survey as surveys
from .conversion import Conversion, check_bound, refusals
from .ddl import ident, literal
from .errors import Blocked, LockBusy, PartmanError, StalePlan
from .failures import first_line
from .lock import Ladder, with_retries
from .model import TableRef, iso
from .naming import fit
from .plan import Action
from .spec import TableSpec
from .survey import Survey
from .timeline import KeySpace, space_for

_POLICY_COMMANDS = {"r": "SELECT", "a": "INSERT", "w": "UPDATE", "d": "DELETE", "*": "ALL"}
_RELATIONS = "SELECT relname FROM pg_class WHERE relnamespace = (SELECT oid FROM pg_namespace WHERE nspname = %s)"
_STATE = """
SELECT c.oid, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = %s AND c.relname = %s AND c.relkind IN ('r', 'p')
"""


class _Moved(Exception):
    """What hangs on the table changed between locking the others and locking the table: lock again."""


def carry_out(conn: Connection, spec: TableSpec, conversion: Conversion, action: Action, ctx: audit.Context,
              ladder: Ladder, space: KeySpace, on_swapped: Callable[[], None]) -> None:
    """Every step still to do, each under the ladder; on_swapped is told once the swap has committed."""
    table = spec.table
    oid, kind = with_retries(conn, ladder, f"{table}: conversion", lambda: conn.execute(_STATE, (table.schema, table.name)).fetchone() or (None, None))
    if kind == "r":
        seen = _check(conn, spec, conversion, ladder)
        try:
            _swap_with_retries(conn, spec, conversion, action, ctx, ladder, space, seen)
        except LockBusy as exc:
            raise LockBusy(f"{exc.message}; constraint {conversion.check} stays (it refuses rows from"
                           f" {iso(conversion.cutover)} on): the next apply finishes the conversion") from None
        except (PartmanError, psycopg.Error) as exc:
            why = exc.message if isinstance(exc, PartmanError) else f"{table}: {first_line(exc)}"
            _withdraw(conn, table, conversion, ladder)
            raise PartmanError(f"{why}; constraint {conversion.check} was removed again, so nothing of the conversion"
                               " remains") from None
        on_swapped()
        validate_foreign_keys(conn, table, ladder)
    elif kind == "p":  # swapped by an earlier run: what is left is proving the re-pointed foreign keys
        validate_foreign_keys(conn, table, ladder)
        on_swapped()
    else:
        raise StalePlan(f"{table}: the table to convert is gone; run plan again")


def _look(conn: Connection, spec: TableSpec, rows: bool = True) -> Survey:
    oid = conn.execute(_STATE, (spec.table.schema, spec.table.name)).fetchone()[0]
    return surveys.read(conn.cursor(), spec.table, oid, spec.partition_key, rows=rows)


def _check(conn: Connection, spec: TableSpec, c: Conversion, ladder: Ladder) -> Survey:
    """The CHECK, added NOT VALID (an instant of ACCESS EXCLUSIVE), then validated (SHARE UPDATE EXCLUSIVE);
    returns the survey read before it, whose other relations the swap locks first."""
    table, key = spec.table, sql.Identifier(spec.partition_key)
    now = with_retries(conn, ladder, f"{table}: conversion", lambda: _look(conn, spec, rows=False))
    errors = refusals(spec, now)
    if errors:  # what appeared since the plan: refused before anything changes
        raise PartmanError("; ".join(errors) + " (found at apply time; nothing changed)")
    found = now.check(c.check)
    if found is not None and check_bound(found.definition, spec.partition_key, now.key_type) != c.cutover:
        raise StalePlan(f"{table}: constraint {c.check} proves another cutover than the plan's; run plan again")
    if spec.width is not None:  # an id table's: past once its sequence has given the cutover's id
        past = now.sequence_value is not None and now.sequence_value >= c.cutover
    else:  # a time, or the instant an epoch number or UUIDv7 stands for
        instant = space_for(now.key_type, spec.timezone, spec.key_encoding).instant(c.cutover)
        past = with_retries(conn, ladder, f"{table}: clock", lambda: conn.execute("SELECT now() >= %s", (instant,)).fetchone()[0])
    if found is None and past:
        raise StalePlan(f"{table}: the plan's cutover {iso(c.cutover)} is already past: rows of today could not be"
                        " inserted; run plan again")
    if found is None:
        bound = sql.SQL("{} < {}").format(key, literal(c.cutover, end=True))
        if not now.key_not_null:  # the partition constraint says IS NOT NULL too: the CHECK must prove it
            bound = sql.SQL("{} IS NOT NULL AND {}").format(key, bound)
        with_retries(conn, ladder, f"{table}: add {c.check}", lambda: conn.execute(sql.SQL(
            "ALTER TABLE {} ADD CONSTRAINT {} CHECK ({}) NOT VALID").format(ident(table), sql.Identifier(c.check), bound)))
    elif found.validated:
        return now
    try:
        with_retries(conn, ladder, f"{table}: validate {c.check}", lambda: _unbounded(conn, sql.SQL(
            "ALTER TABLE {} VALIDATE CONSTRAINT {}").format(ident(table), sql.Identifier(c.check))))
    except psycopg.errors.CheckViolation:
        _withdraw(conn, table, c, ladder)
        raise Blocked(f"{table}: a row at or after the cutover {iso(c.cutover)} (or without a key) arrived after the"
                      f" plan was made; constraint {c.check} was removed again and nothing else changed: run plan"
                      " again for a later cutover") from None
    return now


def _withdraw(conn: Connection, table: TableRef, c: Conversion, ladder: Ladder) -> None:
    """The CHECK cannot be proven: it goes, so that it stops refusing the application's inserts."""
    with_retries(conn, ladder, f"{table}: drop {c.check}", lambda: conn.execute(sql.SQL(
        "ALTER TABLE {} DROP CONSTRAINT IF EXISTS {}").format(ident(table), sql.Identifier(c.check))))


def _unbounded(conn: Connection, statement: sql.Composable) -> None:
    """A statement that reads a whole table under a lock that lets writers go on: its lock waits one ladder step
    (lock_timeout), its reading is not cut short (statement_timeout 0 for this transaction only)."""
    conn.execute("SELECT set_config('statement_timeout', '0', true)")
    conn.execute(statement)


def _swap_with_retries(conn: Connection, spec: TableSpec, c: Conversion, action: Action, ctx: audit.Context,
                       ladder: Ladder, space: KeySpace, seen: Survey) -> None:
    """The swap, locking first what the last survey named; a survey under the lock that names more (a view or a
    foreign key made meanwhile) rolls back and locks again, at most a few times."""
    for _ in range(5):
        try:
            with_retries(conn, ladder, f"{spec.table}: swap", lambda: _swap(conn, spec, c, action, ctx, space, seen))
            return
        except _Moved as moved:
            seen = moved.args[0]
    raise PartmanError(f"{spec.table}: the objects that depend on it kept changing during the swap; run again")


def _swap(conn: Connection, spec: TableSpec, c: Conversion, action: Action, ctx: audit.Context, space: KeySpace,
          seen: Survey) -> None:
    """One transaction: lock what the swap alters (the others first, so the table's writers wait at most one
    step), read what hangs on the table under the lock, and carry it all over to the new parent."""
    owners = {v.ref: v.owner for v in seen.views}
    others = seen.others_locked()
    for ref, mode in others:
        if mode == surveys.VIEW_LOCK:
            conn.execute(sql.SQL("ALTER VIEW {} OWNER TO {}").format(ident(ref), sql.Identifier(owners[ref])))
        else:
            conn.execute(sql.SQL("LOCK TABLE {} IN {} MODE").format(ident(ref), sql.SQL(mode)))
    conn.execute(sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(ident(spec.table)))
    s = _look(conn, spec, rows=False)
    if not set(s.others_locked()) <= set(others):
        raise _Moved(s)
    errors = refusals(spec, s)
    if errors:
        raise PartmanError("; ".join(errors) + " (found under the lock; nothing changed)")
    found = s.check(c.check)
    if found is None or not found.validated:
        raise StalePlan(f"{spec.table}: constraint {c.check} is missing or not validated; run plan again")
    statements = swap_statements(conn, spec, c, s)
    with conn.pipeline():  # one round trip for the lot: the table's writers wait for the server's work alone
        for statement in statements:
            conn.execute(statement)
        audit.record_all(conn, ctx, spec.table, [action], space)


def swap_statements(conn: Connection, spec: TableSpec, c: Conversion, s: Survey) -> list[sql.Composable]:
    """The swap's DDL, in order, from what was read under the lock (definitions name the table as it was)."""
    t, legacy = spec.table, c.legacy
    free = _names(conn, t.schema)
    out: list[sql.Composable] = [sql.SQL("ALTER TABLE {} RENAME TO {}").format(ident(t), sql.Identifier(legacy.name))]
    out += _free_index_names(legacy, s, free)
    out.append(sql.SQL(
        "CREATE TABLE {} (LIKE {} INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING GENERATED INCLUDING IDENTITY"
        " INCLUDING STORAGE INCLUDING COMMENTS INCLUDING STATISTICS INCLUDING COMPRESSION) PARTITION BY RANGE ({})"
    ).format(ident(t), ident(legacy), sql.Identifier(spec.partition_key)))
    out.append(sql.SQL("ALTER TABLE {} DROP CONSTRAINT {}").format(ident(t), sql.Identifier(c.check)))
    for ix in s.indexes:  # the parent's indexes under their old names; the ATTACH adopts the legacy ones
        if ix.constraint:
            out.append(sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} {}").format(ident(t), sql.Identifier(ix.name), sql.SQL(ix.definition)))
        else:
            out.append(sql.SQL(ix.definition))
    for fk in s.outgoing:
        out.append(sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} {}").format(ident(t), sql.Identifier(fk.name), sql.SQL(_valid_form(fk.definition))))
    out += _sequences(conn, t, legacy, s)
    out.append(sql.SQL("ALTER TABLE {} ATTACH PARTITION {} FOR VALUES FROM (MINVALUE) TO ({})").format(
        ident(t), ident(legacy), literal(c.cutover, end=True)))
    out.append(sql.SQL("ALTER TABLE {} DROP CONSTRAINT {}").format(ident(legacy), sql.Identifier(c.check)))
    for fk in s.incoming:  # re-pointed at the new parent, NOT VALID: proven afterwards, without blocking writers
        out.append(sql.SQL("ALTER TABLE {} DROP CONSTRAINT {}").format(ident(fk.table), sql.Identifier(fk.name)))
        out.append(sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} {} NOT VALID").format(
            ident(fk.table), sql.Identifier(fk.name), sql.SQL(_valid_form(fk.definition))))
    out += _dependents(legacy, s)
    out += _access(t, s)
    return out


def _valid_form(definition: str) -> str:
    return definition.removesuffix(" NOT VALID")


def _names(conn: Connection, schema: str) -> set[str]:
    return {r[0] for r in conn.execute(_RELATIONS, (schema,)).fetchall()}


def _free_index_names(legacy: TableRef, s: Survey, taken: set[str]) -> list[sql.Composable]:
    """The legacy table's indexes (and the constraints they back) step aside, so the parent's take their names."""
    out = []
    for ix in s.indexes:
        new, n = fit(ix.name, LEGACY_INDEX), 1
        while new in taken:
            n += 1
            new = fit(ix.name, f"{LEGACY_INDEX}_{n}")
        taken.add(new)
        if ix.constraint:
            out.append(sql.SQL("ALTER TABLE {} RENAME CONSTRAINT {} TO {}").format(ident(legacy), sql.Identifier(ix.name), sql.Identifier(new)))
        else:
            out.append(sql.SQL("ALTER INDEX {} RENAME TO {}").format(sql.Identifier(legacy.schema, ix.name), sql.Identifier(new)))
    return out


LEGACY_INDEX = "_legacy"


def _sequences(conn: Connection, t: TableRef, legacy: TableRef, s: Survey) -> list[sql.Composable]:
    """An identity continues on the parent where the table's left off; a serial's sequence moves to the parent,
    so that retiring the legacy partition one day does not drop it."""
    out = []
    for seq in s.sequences:
        column = sql.Identifier(seq.column)
        if seq.identity:
            last, called, step = conn.execute(sql.SQL(
                "SELECT last_value, is_called, (SELECT seqincrement FROM pg_sequence WHERE seqrelid = {}) FROM {}"
            ).format(sql.Literal(seq.oid), ident(seq.ref))).fetchone()
            restart = last + step if called else last
            out.append(sql.SQL("ALTER TABLE {} ALTER COLUMN {} RESTART WITH {}").format(ident(t), column, sql.Literal(restart)))
            out.append(sql.SQL("ALTER TABLE {} ALTER COLUMN {} DROP IDENTITY").format(ident(legacy), column))
        else:
            out.append(sql.SQL("ALTER SEQUENCE {} OWNED BY {}").format(ident(seq.ref), sql.Identifier(t.schema, t.name, seq.column)))
    return out


def _dependents(legacy: TableRef, s: Survey) -> list[sql.Composable]:
    """Views re-created over the parent (same columns, same options), triggers moved to it."""
    out: list[sql.Composable] = []
    for v in s.views:
        options = sql.SQL(" WITH ({})").format(sql.SQL(", ").join(map(sql.SQL, v.options))) if v.options else sql.SQL("")
        out.append(sql.SQL("CREATE OR REPLACE VIEW {}{} AS {}").format(ident(v.ref), options, sql.SQL(v.definition.rstrip().rstrip(";"))))
    for tr in s.triggers:
        out.append(sql.SQL("DROP TRIGGER {} ON {}").format(sql.Identifier(tr.name), ident(legacy)))
        out.append(sql.SQL(tr.definition))
    return out


def _access(t: TableRef, s: Survey) -> list[sql.Composable]:
    """Row-level security, grants, owner, comment and replica identity, as the table had them."""
    out: list[sql.Composable] = []
    for p in s.policies:
        roles = sql.SQL(", ").join(sql.SQL("PUBLIC") if r == "public" else sql.Identifier(r) for r in p.roles)
        parts = [sql.SQL("CREATE POLICY {} ON {} AS {} FOR {} TO {}").format(
            sql.Identifier(p.name), ident(t), sql.SQL("PERMISSIVE" if p.permissive else "RESTRICTIVE"),
            sql.SQL(_POLICY_COMMANDS[p.command]), roles)]
        if p.using:
            parts.append(sql.SQL("USING ({})").format(sql.SQL(p.using)))
        if p.check:
            parts.append(sql.SQL("WITH CHECK ({})").format(sql.SQL(p.check)))
        out.append(sql.SQL(" ").join(parts))
    if s.row_security:
        out.append(sql.SQL("ALTER TABLE {} ENABLE ROW LEVEL SECURITY").format(ident(t)))
    if s.force_row_security:
        out.append(sql.SQL("ALTER TABLE {} FORCE ROW LEVEL SECURITY").format(ident(t)))
    for g in s.grants:
        grantee = sql.SQL("PUBLIC") if g.grantee == "public" else sql.Identifier(g.grantee)
        column = sql.SQL(" ({})").format(sql.Identifier(g.column)) if g.column else sql.SQL("")
        option = sql.SQL(" WITH GRANT OPTION") if g.grantable else sql.SQL("")
        out.append(sql.SQL("GRANT {}{} ON {} TO {}{}").format(sql.SQL(g.privilege), column, ident(t), grantee, option))
    out.append(sql.SQL("ALTER TABLE {} OWNER TO {}").format(ident(t), sql.Identifier(s.owner)))
    if s.comment is not None:
        out.append(sql.SQL("COMMENT ON TABLE {} IS {}").format(ident(t), sql.Literal(s.comment)))
    if s.replica_identity in ("f", "n"):
        out.append(sql.SQL("ALTER TABLE {} REPLICA IDENTITY {}").format(ident(t), sql.SQL("FULL" if s.replica_identity == "f" else "NOTHING")))
    return out


_UNVALIDATED = """
SELECT n.nspname, r.relname, co.conname
  FROM pg_constraint co JOIN pg_class r ON r.oid = co.conrelid JOIN pg_namespace n ON n.oid = r.relnamespace
 WHERE co.confrelid = %s::regclass AND co.contype = 'f' AND NOT co.convalidated AND co.conparentid = 0
 ORDER BY 1, 2, 3
"""


def validate_foreign_keys(conn: Connection, table: TableRef, ladder: Ladder) -> None:
    """Prove each foreign key into the table that is NOT VALID (re-pointed by a swap): SHARE UPDATE EXCLUSIVE on
    the referencing table, so its writers go on while its rows are read."""
    name = ident(table).as_string(conn)
    pending = with_retries(conn, ladder, f"{table}: foreign keys", lambda: conn.execute(_UNVALIDATED, (name,)).fetchall())
    for schema, relname, conname in pending:
        ref = TableRef(schema, relname)
        with_retries(conn, ladder, f"{ref}: validate {conname}", lambda: _unbounded(conn, sql.SQL(
            "ALTER TABLE {} VALIDATE CONSTRAINT {}").format(ident(ref), sql.Identifier(conname))))
