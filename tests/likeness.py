"""What a relation looks like in the catalog, attribute by attribute, in a form two relations can be compared in.

describe(conn, 'public.bookings_p2027_01') reads one relation (a partition, its parent, any table) and returns
{attribute: value}. Every value is normalized and independent of the relation's own name: no OIDs; the owner's
grants under OWNER; index, trigger and rule definitions with the relation (and the index or rule) named by a
placeholder; constraints and extended statistics by what they are, not what they are called; lists sorted. So a
partition made by CREATE TABLE … PARTITION OF can be compared with one made by CREATE TABLE (LIKE …) + ATTACH
PARTITION, or a partition with its parent, with ==.

This module owns that description only (tests compare, and say which differences they accept). It reads the
catalog through the connection as it is: on a connection that is not in autocommit, the reads open a
transaction the caller ends. PostgreSQL 14 or later; what a version lacks reads as its default.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional

from psycopg import Connection
from psycopg.rows import tuple_row

TABLE = "<table>"  # the described relation, in definitions
INDEX = "<index>"  # an index's own name, in its definition
OWNER = "OWNER"  # the grantee that is the relation's owner
PUBLIC = "PUBLIC"


@dataclass(frozen=True)
class Relation:
    """The described relation: its OID (for the queries only, never in a value) and the forms of its name that
    the server's pg_get_*def functions print."""

    oid: int
    qualified: str  # quote_ident(schema).quote_ident(name)
    name: str  # quote_ident(name)
    version: int  # server_version_num


def _rows(conn: Connection, query: str, params: tuple = ()) -> list[tuple]:
    with conn.cursor(row_factory=tuple_row) as cur:
        return cur.execute(query, params).fetchall()


def _value(conn: Connection, query: str, params: tuple = ()) -> Any:
    rows = _rows(conn, query, params)
    return rows[0][0] if rows else None


def _unname(text: Optional[str], rel: Relation, *own: tuple[str, str]) -> Optional[str]:
    """text with the relation's name (qualified first, then bare where printed as ON <name>) and the object's
    own names (pairs of printed form, placeholder) replaced."""
    if text is None:
        return None
    for printed, placeholder in own:
        text = text.replace(printed, placeholder, 1)
    text = text.replace(rel.qualified, TABLE)
    for prefix in (" ON ", " TO ", " ONLY "):
        text = text.replace(f"{prefix}{rel.name} ", f"{prefix}{TABLE} ")
    # A partitioned table's index reads ON ONLY: read as ON, so a partition's indexes compare with its parent's.
    return text.replace(f" ON ONLY {TABLE} ", f" ON {TABLE} ")


def _grantee(name: Optional[str], is_owner: bool) -> str:
    return OWNER if is_owner else (name or PUBLIC)


_GRANTEE = """CASE WHEN a.grantee = 0 THEN NULL ELSE pg_get_userbyid(a.grantee) END, a.grantee = c.relowner"""


def _index_def(conn: Connection, rel: Relation, index_oid: int) -> str:
    name, definition = _rows(conn, "SELECT quote_ident(relname), pg_get_indexdef(oid) FROM pg_class WHERE oid = %s",
                             (index_oid,))[0]
    return _unname(definition, rel, (f" INDEX {name} ON ", f" INDEX {INDEX} ON "))


def _columns_map(conn: Connection, rel: Relation, expression: str, joins: str = "") -> dict[str, Any]:
    """{column: expression} for every live user column, expression over pg_attribute a (and what joins adds)."""
    return dict(_rows(conn, f"""SELECT a.attname, {expression} FROM pg_attribute a {joins}
                                 WHERE a.attrelid = %s AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum""",
                      (rel.oid,)))


# --- the relation itself ---

def owner(conn: Connection, rel: Relation) -> str:
    return _value(conn, "SELECT pg_get_userbyid(relowner) FROM pg_class WHERE oid = %s", (rel.oid,))


def table_privileges(conn: Connection, rel: Relation) -> list[tuple[str, str, bool]]:
    """(grantee, privilege, grantable); a NULL relacl is the owner's defaults (acldefault)."""
    rows = _rows(conn, f"""SELECT {_GRANTEE}, a.privilege_type, a.is_grantable
                             FROM pg_class c, aclexplode(coalesce(c.relacl, acldefault('r', c.relowner))) a
                            WHERE c.oid = %s""", (rel.oid,))
    return sorted((_grantee(name, is_owner), privilege, grantable) for name, is_owner, privilege, grantable in rows)


def column_privileges(conn: Connection, rel: Relation) -> dict[str, list[tuple[str, str, bool]]]:
    """{column: [(grantee, privilege, grantable)]} for the columns with an attacl of their own."""
    rows = _rows(conn, f"""SELECT at.attname, {_GRANTEE}, a.privilege_type, a.is_grantable
                             FROM pg_class c JOIN pg_attribute at ON at.attrelid = c.oid, aclexplode(at.attacl) a
                            WHERE c.oid = %s AND at.attnum > 0 AND NOT at.attisdropped""", (rel.oid,))
    out: dict[str, list[tuple[str, str, bool]]] = {}
    for column, name, is_owner, privilege, grantable in rows:
        out.setdefault(column, []).append((_grantee(name, is_owner), privilege, grantable))
    return {column: sorted(grants) for column, grants in sorted(out.items())}


def tablespace(conn: Connection, rel: Relation) -> str:
    return _value(conn, """SELECT coalesce(s.spcname, 'default') FROM pg_class c
                             LEFT JOIN pg_tablespace s ON s.oid = c.reltablespace WHERE c.oid = %s""", (rel.oid,))


def reloptions(conn: Connection, rel: Relation) -> list[str]:
    return sorted(_value(conn, "SELECT reloptions FROM pg_class WHERE oid = %s", (rel.oid,)) or [])


def toast_reloptions(conn: Connection, rel: Relation) -> Optional[list[str]]:
    """None: no TOAST table (a partitioned table, or no column that needs one)."""
    rows = _rows(conn, """SELECT t.reloptions FROM pg_class c JOIN pg_class t ON t.oid = c.reltoastrelid
                           WHERE c.oid = %s""", (rel.oid,))
    return sorted(rows[0][0] or []) if rows else None


def replica_identity(conn: Connection, rel: Relation) -> tuple[str, Optional[str]]:
    """(relreplident, the identity index's definition for 'i')."""
    kind = _value(conn, "SELECT relreplident FROM pg_class WHERE oid = %s", (rel.oid,))
    index = _value(conn, "SELECT indexrelid FROM pg_index WHERE indrelid = %s AND indisreplident", (rel.oid,))
    return kind, _index_def(conn, rel, index) if index is not None else None


def persistence(conn: Connection, rel: Relation) -> str:
    return _value(conn, "SELECT relpersistence FROM pg_class WHERE oid = %s", (rel.oid,))


def access_method(conn: Connection, rel: Relation) -> Optional[str]:
    """None: a partitioned table without one (always before PostgreSQL 17)."""
    return _value(conn, "SELECT am.amname FROM pg_class c LEFT JOIN pg_am am ON am.oid = c.relam WHERE c.oid = %s",
                  (rel.oid,))


def parent(conn: Connection, rel: Relation) -> Optional[str]:
    """The relation this one is a partition (or inheritance child) of."""
    return _value(conn, "SELECT inhparent::regclass::text FROM pg_inherits WHERE inhrelid = %s", (rel.oid,))


def table_comment(conn: Connection, rel: Relation) -> Optional[str]:
    return _value(conn, "SELECT obj_description(%s, 'pg_class')", (rel.oid,))


# --- columns ---

def columns(conn: Connection, rel: Relation) -> list[tuple[str, str, Optional[str]]]:
    """(name, type, collation when not the type's default), in column order."""
    return [tuple(row) for row in _rows(conn, """
        SELECT a.attname, format_type(a.atttypid, a.atttypmod),
               CASE WHEN a.attcollation <> t.typcollation THEN a.attcollation::regcollation::text END
          FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
         WHERE a.attrelid = %s AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum""", (rel.oid,))]


def column_inheritance(conn: Connection, rel: Relation) -> dict[str, tuple[bool, int]]:
    """{column: (attislocal, attinhcount)}."""
    return {name: (local, count) for name, local, count in _rows(conn, """
        SELECT attname, attislocal, attinhcount::int FROM pg_attribute
         WHERE attrelid = %s AND attnum > 0 AND NOT attisdropped ORDER BY attnum""", (rel.oid,))}


def column_comments(conn: Connection, rel: Relation) -> dict[str, Optional[str]]:
    return _columns_map(conn, rel, "col_description(a.attrelid, a.attnum)")


def column_defaults(conn: Connection, rel: Relation) -> dict[str, Optional[str]]:
    return _columns_map(conn, rel, "CASE WHEN a.attgenerated = '' THEN pg_get_expr(d.adbin, d.adrelid) END",
                        "LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum")


def not_null(conn: Connection, rel: Relation) -> dict[str, bool]:
    return _columns_map(conn, rel, "a.attnotnull")


def generated(conn: Connection, rel: Relation) -> dict[str, Optional[tuple[str, str]]]:
    """{column: (attgenerated 's'tored or 'v'irtual, expression) or None}."""
    found = _columns_map(conn, rel, "CASE WHEN a.attgenerated <> '' THEN a.attgenerated::text || ' ' ||"
                         " pg_get_expr(d.adbin, d.adrelid) END",
                         "LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum")
    return {k: tuple(v.split(" ", 1)) if v else None for k, v in found.items()}


def identity(conn: Connection, rel: Relation) -> dict[str, Optional[str]]:
    """{column: attidentity, 'a'lways or 'd' by default, or None}."""
    return {k: v or None for k, v in _columns_map(conn, rel, "a.attidentity::text").items()}


def statistics_targets(conn: Connection, rel: Relation) -> dict[str, Optional[int]]:
    """{column: attstattarget, None for the default (NULL from PostgreSQL 17, -1 before)}."""
    return {k: None if v is None or v < 0 else v
            for k, v in _columns_map(conn, rel, "a.attstattarget::int").items()}


def storage(conn: Connection, rel: Relation) -> dict[str, str]:
    return _columns_map(conn, rel, "a.attstorage::text")


def compression(conn: Connection, rel: Relation) -> dict[str, Optional[str]]:
    """{column: attcompression, None for the default_toast_compression}."""
    return {k: v or None for k, v in _columns_map(conn, rel, "a.attcompression::text").items()}


# --- constraints and indexes ---

_CONSTRAINTS = """SELECT pg_get_constraintdef(oid), convalidated, conislocal, coninhcount, conparentid <> 0,
                         obj_description(oid, 'pg_constraint')
                    FROM pg_constraint WHERE conrelid = %s AND contype {}"""


def check_constraints(conn: Connection, rel: Relation) -> list[tuple[str, bool, bool, int, bool]]:
    """(definition, validated, conislocal, coninhcount, has a parent constraint (conparentid))."""
    return sorted(tuple(row[:5]) for row in _rows(conn, _CONSTRAINTS.format("= 'c'"), (rel.oid,)))


def other_constraints(conn: Connection, rel: Relation) -> list[tuple[str, bool, bool, int, bool]]:
    """Primary key, unique, exclusion, foreign key and (PostgreSQL 18) not-null constraints, as check_constraints."""
    return sorted(tuple(row[:5]) for row in _rows(conn, _CONSTRAINTS.format("<> 'c'"), (rel.oid,)))


def constraint_comments(conn: Connection, rel: Relation) -> dict[str, str]:
    """{constraint definition: comment} for the commented ones."""
    return dict(sorted((row[0], row[5]) for row in _rows(conn, _CONSTRAINTS.format("IS NOT NULL"), (rel.oid,))
                       if row[5] is not None))


def _indexes(conn: Connection, rel: Relation) -> list[tuple]:
    """(definition, tablespace, primary, clustered, valid, replica identity, attached to a parent index, comment)."""
    rows = _rows(conn, """
        SELECT x.indexrelid, coalesce(s.spcname, 'default'), x.indisprimary, x.indisclustered, x.indisvalid,
               x.indisreplident, EXISTS (SELECT 1 FROM pg_inherits i WHERE i.inhrelid = x.indexrelid),
               obj_description(x.indexrelid, 'pg_class')
          FROM pg_index x JOIN pg_class ic ON ic.oid = x.indexrelid
          LEFT JOIN pg_tablespace s ON s.oid = ic.reltablespace
         WHERE x.indrelid = %s""", (rel.oid,))
    return sorted((_index_def(conn, rel, row[0]), *row[1:]) for row in rows)


def indexes(conn: Connection, rel: Relation) -> dict[str, str]:
    """{normalized definition: tablespace}."""
    return {row[0]: row[1] for row in _indexes(conn, rel)}


def index_flags(conn: Connection, rel: Relation) -> dict[str, dict[str, bool]]:
    return {row[0]: dict(zip(("primary", "clustered", "valid", "replica identity", "attached"), row[2:7]))
            for row in _indexes(conn, rel)}


def index_comments(conn: Connection, rel: Relation) -> dict[str, str]:
    return {row[0]: row[7] for row in _indexes(conn, rel) if row[7] is not None}


def extended_statistics(conn: Connection, rel: Relation) -> list[tuple[tuple[str, ...], str, Optional[int]]]:
    """(kinds, columns and expressions, statistics target or None for the default)."""
    rows = _rows(conn, """SELECT stxkind::text[], pg_get_statisticsobjdef_columns(oid), stxstattarget::int
                            FROM pg_statistic_ext WHERE stxrelid = %s""", (rel.oid,))
    return sorted((tuple(sorted(kinds)), cols, None if target is None or target < 0 else target)
                  for kinds, cols, target in rows)


# --- triggers, row level security, rules, publications ---

def triggers(conn: Connection, rel: Relation) -> list[tuple[str, str, bool]]:
    """(definition, tgenabled, cloned from a parent's trigger) of the user's (non-internal) triggers."""
    rows = _rows(conn, """SELECT pg_get_triggerdef(oid), tgenabled::text, tgparentid <> 0 FROM pg_trigger
                           WHERE tgrelid = %s AND NOT tgisinternal""", (rel.oid,))
    return sorted((_unname(definition, rel), enabled, cloned) for definition, enabled, cloned in rows)


def row_security(conn: Connection, rel: Relation) -> tuple[bool, bool]:
    """(relrowsecurity, relforcerowsecurity)."""
    return tuple(_rows(conn, "SELECT relrowsecurity, relforcerowsecurity FROM pg_class WHERE oid = %s",
                       (rel.oid,))[0])


def policies(conn: Connection, rel: Relation) -> list[tuple]:
    """(name, command, permissive, roles, USING, WITH CHECK)."""
    rows = _rows(conn, """
        SELECT polname, polcmd::text, polpermissive,
               ARRAY(SELECT CASE WHEN r = 0 THEN %s ELSE pg_get_userbyid(r) END FROM unnest(polroles) r ORDER BY 1),
               pg_get_expr(polqual, polrelid), pg_get_expr(polwithcheck, polrelid)
          FROM pg_policy WHERE polrelid = %s""", (PUBLIC, rel.oid))
    return sorted((name, cmd, permissive, tuple(roles), qual, check) for name, cmd, permissive, roles, qual, check in rows)


def publications(conn: Connection, rel: Relation) -> list[tuple[str, Optional[str], Optional[tuple[str, ...]]]]:
    """(publication, row filter, column list) of the publications that name the relation itself."""
    if rel.version < 150000:
        return sorted((name, None, None) for (name,) in _rows(conn, """
            SELECT p.pubname FROM pg_publication_rel r JOIN pg_publication p ON p.oid = r.prpubid
             WHERE r.prrelid = %s""", (rel.oid,)))
    rows = _rows(conn, """
        SELECT p.pubname, pg_get_expr(r.prqual, r.prrelid),
               (SELECT array_agg(a.attname ORDER BY a.attname) FROM pg_attribute a
                 WHERE a.attrelid = r.prrelid AND a.attnum = ANY (r.prattrs))
          FROM pg_publication_rel r JOIN pg_publication p ON p.oid = r.prpubid WHERE r.prrelid = %s""", (rel.oid,))
    return sorted((name, qual, tuple(cols) if cols else None) for name, qual, cols in rows)


def published_in(conn: Connection, rel: Relation) -> list[str]:
    """The publications whose tables (pg_publication_tables: FOR ALL TABLES, a schema, an ancestor) include it."""
    return [name for (name,) in _rows(conn, """
        SELECT t.pubname FROM pg_publication_tables t JOIN pg_class c ON c.relname = t.tablename
          JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = t.schemaname
         WHERE c.oid = %s ORDER BY 1""", (rel.oid,))]


def rules(conn: Connection, rel: Relation) -> list[str]:
    """Rule definitions (the rule's name too replaced), the _RETURN rule of a view left out."""
    rows = _rows(conn, """SELECT quote_ident(rulename), pg_get_ruledef(oid) FROM pg_rewrite
                           WHERE ev_class = %s AND rulename <> '_RETURN'""", (rel.oid,))
    return sorted(_unname(definition, rel, (f"CREATE RULE {name} AS", "CREATE RULE <rule> AS"))
                  for name, definition in rows)


ATTRIBUTES: dict[str, Callable[[Connection, Relation], object]] = {
    "owner": owner,
    "table privileges": table_privileges,
    "column privileges": column_privileges,
    "tablespace": tablespace,
    "reloptions": reloptions,
    "toast reloptions": toast_reloptions,
    "replica identity": replica_identity,
    "persistence": persistence,
    "access method": access_method,
    "parent": parent,
    "table comment": table_comment,
    "columns": columns,
    "column inheritance": column_inheritance,
    "column comments": column_comments,
    "column defaults": column_defaults,
    "not null": not_null,
    "generated": generated,
    "identity": identity,
    "statistics targets": statistics_targets,
    "storage": storage,
    "compression": compression,
    "check constraints": check_constraints,
    "other constraints": other_constraints,
    "constraint comments": constraint_comments,
    "indexes": indexes,
    "index flags": index_flags,
    "index comments": index_comments,
    "extended statistics": extended_statistics,
    "triggers": triggers,
    "row security": row_security,
    "policies": policies,
    "publications": publications,
    "published in": published_in,
    "rules": rules,
}


def resolve(conn: Connection, name: str) -> Relation:
    row = _rows(conn, """SELECT c.oid, quote_ident(n.nspname) || '.' || quote_ident(c.relname), quote_ident(c.relname)
                           FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                          WHERE c.oid = %s::regclass""", (name,))[0]
    return Relation(row[0], row[1], row[2], conn.info.server_version)


def describe(conn: Connection, relation: str) -> dict[str, object]:
    """{attribute: normalized value} of the relation named (schema-qualified, as regclass reads it)."""
    rel = resolve(conn, relation)
    return {name: read(conn, rel) for name, read in ATTRIBUTES.items()}
