"""Foreign keys into a partitioned table, and the rows of other tables that point into one of its partitions:
what keeps a partition that retention would retire (on_reference: block) or goes with it (on_reference: cascade),
found at plan time and again under the lock right before the detach."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Optional

from psycopg import Connection, Cursor, sql

from .errors import Blocked
from .model import Bounds, TableRef

REFERENCED = "PM102"
UNINDEXED = "PM214"


@dataclass(frozen=True)
class Reference:
    """A foreign key of another table into the partitioned one, by the referencing column that holds the key."""

    constraint: str
    table: TableRef  # the referencing table
    column: str  # its column that references the partition key
    indexed: bool  # an index of the referencing table leads with that column: the check reads no more than it needs
    table_oid: int = 0
    columns: tuple[str, ...] = ()  # every referencing column: a row with any of them NULL references nothing (MATCH SIMPLE)


# Only top-level constraints (conparentid = 0): a foreign key into a partitioned table is cloned onto each of its
# partitions, and the clones say nothing more. The referencing column is the one whose referenced column is the
# partition key (a foreign key into a partitioned table references a unique key, which includes the key).
_REFERENCES = """
SELECT co.confrelid, co.conname, n.nspname, r.relname, a.attname,
       EXISTS (SELECT 1 FROM pg_index x WHERE x.indrelid = co.conrelid AND x.indkey[0] = co.conkey[k.i]), co.conrelid,
       (SELECT array_agg(ca.attname ORDER BY ca.attnum) FROM pg_attribute ca
         WHERE ca.attrelid = co.conrelid AND ca.attnum = ANY(co.conkey))
  FROM pg_constraint co
  JOIN pg_partitioned_table pt ON pt.partrelid = co.confrelid
  JOIN LATERAL generate_subscripts(co.confkey, 1) AS k(i) ON co.confkey[k.i] = pt.partattrs[0]
  JOIN pg_class r ON r.oid = co.conrelid
  JOIN pg_namespace n ON n.oid = r.relnamespace
  JOIN pg_attribute a ON a.attrelid = co.conrelid AND a.attnum = co.conkey[k.i]
 WHERE co.contype = 'f' AND co.conparentid = 0 AND co.confrelid = ANY(%s::oid[])
 ORDER BY 1, 3, 4, 2
"""


def read(cur: Cursor, parents: Iterable[int]) -> dict[int, tuple[Reference, ...]]:
    """The foreign keys into each of these parents (by OID), in one statement."""
    found: dict[int, list[Reference]] = {}
    oids = [o for o in parents if o is not None]
    if not oids:
        return {}
    for oid, name, schema, table, column, indexed, table_oid, columns in cur.execute(_REFERENCES, (oids,)).fetchall():
        found.setdefault(oid, []).append(Reference(name, TableRef(schema, table), column, bool(indexed), table_oid,
                                                   tuple(columns or (column,))))
    return {k: tuple(v) for k, v in found.items()}


def in_range(ref: Reference, bounds: Bounds) -> sql.Composable:
    """The referencing rows whose key lies in bounds (a None end is unbounded)."""
    return sql.SQL("SELECT 1 FROM {} WHERE {}").format(sql.Identifier(ref.table.schema, ref.table.name), _where(ref, bounds))


def _where(ref: Reference, bounds: Bounds) -> sql.Composable:
    column = sql.Identifier(ref.column)
    conditions = [sql.SQL("{} IS NOT NULL").format(sql.Identifier(c)) for c in ref.columns or (ref.column,)]
    if bounds.start is not None:
        conditions.append(sql.SQL("{} >= {}").format(column, sql.Literal(bounds.start)))
    if bounds.end is not None:
        conditions.append(sql.SQL("{} < {}").format(column, sql.Literal(bounds.end)))
    return sql.SQL(" AND ").join(conditions)


def capped_count(ref: Reference, bounds: Bounds, limit: int) -> sql.Composable:
    return sql.SQL("(SELECT count(*) FROM ({} LIMIT {}) AS capped)").format(in_range(ref, bounds), sql.Literal(limit))


def check(conn: Connection, parent: TableRef, actions: list) -> None:
    """Under the table's lock, right before the detach: a partition that another table's rows reference now is
    not retired, and nothing of this step is done (exit 3, like the future-data check); unless its detach carries
    a cascade for that foreign key (on_reference: cascade), whose referencing rows are deleted here, in the
    transaction that records the detach, and never more of them than the plan showed."""
    oid = conn.execute("SELECT to_regclass(%s)::oid", (sql.Identifier(parent.schema, parent.name).as_string(conn),)).fetchone()[0]
    refs = read(conn.cursor(), [oid]).get(oid, ())
    for action in actions:
        shown = {(c.table, c.constraint): c for c in action.cascade}
        for ref in refs:
            allowed = shown.get((ref.table, ref.constraint))
            if allowed is not None:
                _cascade(conn, ref, action, allowed)
            elif conn.execute(sql.SQL("SELECT EXISTS ({})").format(in_range(ref, action.bounds))).fetchone()[0]:
                raise Blocked(f"{action.partition} is referenced by rows of {ref.table} ({ref.constraint}) that appeared"
                              " since the plan was made; it was kept and nothing of its retention changed: run plan again")


def _cascade(conn: Connection, ref: Reference, action, allowed) -> None:
    deleted = conn.execute(sql.SQL("DELETE FROM {} WHERE {}").format(
        sql.Identifier(ref.table.schema, ref.table.name), _where(ref, action.bounds))).rowcount
    if deleted > allowed.rows:
        raise Blocked(f"{action.partition}: {deleted:,} rows of {ref.table} ({ref.constraint}) reference it now, more than"
                      f" the {allowed.rows:,} the plan showed; none deleted and nothing of its retention changed:"
                      " run plan again")


def reason(ref: Reference, rows: int, capped: bool, *, cascading: bool = False) -> str:
    counted = f"≥ {rows:,}" if capped else f"{rows:,}"
    why = ("; too many for on_reference: cascade to delete with the partition: delete them yourself" if cascading
           else "; kept until they go (on_reference: block)")
    return f"referenced by {counted} row{'s' if rows != 1 or capped else ''} of {ref.table} ({ref.constraint}){why}"


def unindexed(ref: Reference) -> Optional[str]:
    if ref.indexed:
        return None
    return (f"no index on {ref.table} ({ref.column}): checking it for rows that reference a retiring partition reads"
            " the whole table")
