"""Creating partitions next to a default partition: counting its rows per range, moving them into the new
partition, and attaching without a long scan of the default under an ACCESS EXCLUSIVE lock.

PostgreSQL refuses to attach a partition over a range the default partition holds rows for, and otherwise
scans the whole default (holding ACCESS EXCLUSIVE on it) to prove it holds none.
- Rows in the range: one transaction creates the partition, moves the rows (DELETE … RETURNING into INSERT,
  counts verified before commit) and attaches; the default's scan then finds nothing to refuse.
- No rows in the range and a large default: a CHECK constraint excluding the range is added NOT VALID (brief
  lock), validated under SHARE UPDATE EXCLUSIVE (the scan, writers unaffected), and ATTACH, which the
  constraint spares its own scan, runs in a short transaction that drops the constraint again."""

from __future__ import annotations

import hashlib
from typing import Optional

from psycopg import Connection, sql

from . import audit, conformance, ddl
from .errors import Blocked, PartmanError
from .lock import Ladder, statement_with_retries, with_retries
from .model import Bounds, TableRef
from .plan import Action
from .timeline import KeySpace

# Above this size the default is validated against a CHECK first, so ATTACH does not scan it under lock.
LARGE_DEFAULT_BYTES = 8 * 1024 * 1024
CHECK_PREFIX = "partman_attach_"  # transient constraints; one left by an interrupted run is removed by the next


def to_mind(conn: Connection, default: Optional[tuple[TableRef, int]]) -> Optional[tuple[TableRef, int]]:
    """The default partition (and its size) when creates must mind it: it holds rows or is large. An empty,
    small default costs ATTACH nothing, and creates go in one batch as if it were not there."""
    if default is None:
        return None
    ref, size = default
    if size <= LARGE_DEFAULT_BYTES and not conn.execute(ddl.has_rows(ref)).fetchone()[0]:
        return None
    return default


def _in_range(key: str, bounds: Bounds) -> sql.Composed:
    return sql.SQL("{k} >= {a} AND {k} < {b}").format(
        k=sql.Identifier(key), a=ddl.literal(bounds.start, end=False), b=ddl.literal(bounds.end, end=True)
    )


def in_range_count(table: TableRef, key: str, bounds: Bounds) -> sql.Composed:
    """The scalar subquery counting a table's rows in a range."""
    return sql.SQL("(SELECT count(*) FROM {} WHERE {})").format(ddl.ident(table), _in_range(key, bounds))


def rows_in_ranges(conn: Connection, requests: list[tuple[TableRef, str, Bounds]]) -> list[int]:
    """Rows of each (default partition, key column, range), in one statement."""
    if not requests:
        return []
    probes = [
        sql.SQL("SELECT {i}, count(*) FROM {t} WHERE {w}").format(i=sql.Literal(i), t=ddl.ident(t), w=_in_range(key, b))
        for i, (t, key, b) in enumerate(requests)
    ]
    counts = dict(conn.execute(sql.SQL(" UNION ALL ").join(probes)).fetchall())
    return [counts[i] for i in range(len(requests))]


def refuse_unless_allowed(conn: Connection, default: TableRef, key: str, creates: list[Action], allowed: bool) -> None:
    """Exit 3 before anything changes when rows would have to move and the spec does not allow it."""
    if allowed or not creates:
        return
    counts = rows_in_ranges(conn, [(default, key, a.bounds) for a in creates])
    for action, n in zip(creates, counts):
        if n:
            raise Blocked(
                f"{default} holds {n:,} rows in the range of {action.partition} [{action.bounds.start}, {action.bounds.end});"
                " allow moving them with move_default_rows: true in the spec or --move-default-rows; nothing changed"
            )


def create_next_to_default(
    conn: Connection,
    parent: TableRef,
    default: TableRef,
    default_bytes: int,
    key: str,
    action: Action,
    ctx: audit.Context,
    space: KeySpace,
    ladder: Ladder,
    allowed: bool,
    made=None,
) -> int:
    """Create one partition beside a default partition; returns how many rows moved into it."""
    what = f"{action.partition}: create"
    check = sql.Identifier(CHECK_PREFIX + hashlib.md5(str(action.partition).encode()).hexdigest()[:12])
    if default_bytes > LARGE_DEFAULT_BYTES and not rows_in_ranges(conn, [(default, key, action.bounds)])[0]:
        with_retries(conn, ladder, what, lambda: conn.execute(
            sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} CHECK (NOT ({} IS NOT NULL AND {})) NOT VALID").format(
                ddl.ident(default), check, sql.Identifier(key), _in_range(key, action.bounds))))
        try:
            with_retries(conn, ladder, what, lambda: conn.execute(
                sql.SQL("ALTER TABLE {} VALIDATE CONSTRAINT {}").format(ddl.ident(default), check)))
        except Exception:
            with_retries(conn, ladder, what, lambda: _drop_check(conn, default, check))
            raise
    else:
        check = None
    return with_retries(conn, ladder, what, lambda: _create_and_move(conn, parent, default, key, action, ctx, space, allowed, check,
                                                                   made))


def clear_checks(conn: Connection, default: TableRef, ladder: Ladder) -> None:
    """Remove transient CHECK constraints an interrupted run left on the default: while one stands, rows in
    its range could not be inserted at all."""
    names = [r[0] for r in conn.execute(
        "SELECT conname FROM pg_constraint WHERE conrelid = to_regclass(format('%%I.%%I', %s::text, %s::text))"
        " AND contype = 'c' AND starts_with(conname, %s)",
        (default.schema, default.name, CHECK_PREFIX),
    ).fetchall()]
    for name in names:
        with_retries(conn, ladder, f"{default}: cleanup", lambda: _drop_check(conn, default, sql.Identifier(name)))


def _drop_check(conn: Connection, default: TableRef, check: sql.Identifier) -> None:
    conn.execute(sql.SQL("ALTER TABLE {} DROP CONSTRAINT IF EXISTS {}").format(ddl.ident(default), check))


def _create_and_move(conn, parent, default, key, action, ctx, space, allowed, check, made=None) -> int:
    *make, attach = ddl.create_partition(parent, action.partition, action.bounds, made)
    for statement in make:
        conn.execute(statement)
    expected = conn.execute(sql.SQL("SELECT count(*) FROM {} WHERE {}").format(ddl.ident(default), _in_range(key, action.bounds))).fetchone()[0]
    moved = 0
    if expected:
        if not allowed:
            raise Blocked(
                f"{default} holds {expected:,} rows in the range of {action.partition};"
                " allow moving them with move_default_rows: true in the spec or --move-default-rows; nothing changed"
            )
        columns = _insertable_columns(conn, parent)
        cur = conn.execute(
            sql.SQL("WITH moved AS (DELETE FROM {d} WHERE {w} RETURNING {c}) INSERT INTO {p} ({c}) SELECT {c} FROM moved").format(
                d=ddl.ident(default), w=_in_range(key, action.bounds), p=ddl.ident(action.partition),
                c=sql.SQL(", ").join(map(sql.Identifier, columns)),
            )
        )
        moved = cur.rowcount
        landed = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(ddl.ident(action.partition))).fetchone()[0]
        left = conn.execute(sql.SQL("SELECT count(*) FROM {} WHERE {}").format(ddl.ident(default), _in_range(key, action.bounds))).fetchone()[0]
        if not (moved == landed == expected and left == 0):
            raise PartmanError(
                f"{action.partition}: moving rows from {default} did not add up (expected {expected}, moved {moved},"
                f" landed {landed}, left {left}); rolled back, nothing changed"
            )
    conn.execute(attach)
    conformance.after_attach(conn, action.partition, made)
    if check is not None:
        _drop_check(conn, default, check)
    audit.record_all(conn, ctx, parent, [action], space)
    return moved


def _insertable_columns(conn: Connection, parent: TableRef) -> list[str]:
    """The parent's columns a row can be inserted with: not dropped, not generated."""
    rows = conn.execute(
        """SELECT attname FROM pg_attribute
            WHERE attrelid = to_regclass(format('%%I.%%I', %s::text, %s::text)) AND attnum > 0
              AND NOT attisdropped AND attgenerated = '' ORDER BY attnum""",
        (parent.schema, parent.name),
    ).fetchall()
    return [r[0] for r in rows]


def analyze(conn: Connection, partition: TableRef, ladder: Ladder) -> None:
    """Statistics for a partition that was created with rows; SHARE UPDATE EXCLUSIVE, so writers go on."""
    statement_with_retries(conn, ladder, f"{partition}: analyze", lambda _: conn.execute(sql.SQL("ANALYZE {}").format(ddl.ident(partition))))
