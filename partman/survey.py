"""What hangs on a plain table that a conversion must carry over or refuse: its key column, indexes, constraints in
both directions, views, triggers, policies, grants, sequences, publications and anything else that depends on it,
read in a fixed number of statements, with every definition deparsed fully qualified (search_path '')."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Optional

from psycopg import Cursor, sql

from .model import KeyType, KeyValue, TableRef


@dataclass(frozen=True)
class Index:
    name: str
    definition: str  # CREATE [UNIQUE] INDEX … ON schema.table …, or the constraint's definition
    constraint: Optional[str] = None  # 'p' | 'u' | 'x' when the index backs a constraint
    unique: bool = False
    covers_key: bool = False  # the partition key is one of its key columns
    valid: bool = True
    expression: bool = False


@dataclass(frozen=True)
class Constraint:
    name: str
    kind: str  # 'c' check, 'f' foreign key, 'n' not null (PostgreSQL 18), 't' trigger
    definition: str
    table: TableRef  # the table it is on (the referencing one, for a foreign key into the table)
    incoming: bool = False  # a foreign key of another table that references this one
    validated: bool = True
    covers_key: bool = True  # a foreign key into the table: the referenced columns include the partition key
    references: Optional[TableRef] = None  # a foreign key: the referenced table
    from_partitioned: bool = False  # a foreign key into the table, from a partitioned table


# A view is locked in ACCESS EXCLUSIVE by a statement that locks the view alone (ALTER VIEW … OWNER TO its owner,
# a no-op): LOCK TABLE on a view would lock every table it reads, recursively, in the same mode.
VIEW_LOCK = "ACCESS EXCLUSIVE (view)"


@dataclass(frozen=True)
class View:
    ref: TableRef
    definition: str  # pg_get_viewdef, fully qualified
    options: tuple[str, ...] = ()  # reloptions: check_option, security_barrier, security_invoker
    owner: str = ""


@dataclass(frozen=True)
class Trigger:
    name: str
    definition: str
    enabled: str  # pg_trigger.tgenabled: 'O' fires normally
    constraint: bool = False
    transition: bool = False  # REFERENCING OLD/NEW TABLE


@dataclass(frozen=True)
class Policy:
    name: str
    permissive: bool
    command: str  # pg_policy.polcmd: r a w d *
    roles: tuple[str, ...]  # role names; 'public' for PUBLIC
    using: Optional[str]
    check: Optional[str]


@dataclass(frozen=True)
class Grant:
    grantee: str  # a role name, or 'public'
    privilege: str
    grantable: bool
    column: Optional[str] = None


@dataclass(frozen=True)
class Sequence:
    ref: TableRef
    column: str
    identity: bool  # an identity column's sequence (dropped with it); else a serial's, OWNED BY the column
    oid: int = 0
    used_by: tuple[str, ...] = ()  # other objects that use it (another table's default): an identity's cannot go


@dataclass(frozen=True)
class Survey:
    """One plain table as a conversion sees it. Definitions name the table as it is now."""

    oid: int
    key_attnum: Optional[int]  # None: the spec's key column does not exist
    key_type: Optional[KeyType]
    key_type_name: Optional[str]
    key_not_null: bool
    owner: str
    persistence: str  # 'p' permanent, 'u' unlogged
    typed: bool  # CREATE TABLE … OF type
    inherits: bool  # in an inheritance tree (parents or children)
    replica_identity: str
    comment: Optional[str]
    row_security: bool
    force_row_security: bool
    rows_estimate: Optional[int]
    indexes: tuple[Index, ...] = ()
    constraints: tuple[Constraint, ...] = ()
    views: tuple[View, ...] = ()
    matviews: tuple[TableRef, ...] = ()
    rules: tuple[str, ...] = ()
    triggers: tuple[Trigger, ...] = ()
    policies: tuple[Policy, ...] = ()
    grants: tuple[Grant, ...] = ()
    sequences: tuple[Sequence, ...] = ()
    publications: tuple[str, ...] = ()
    others: tuple[str, ...] = ()  # every other dependent object, described by the server
    max_key: Optional[KeyValue] = None
    sequence_value: Optional[int] = None  # an id key's: the value of the sequence that feeds it (None: none, or unused)
    key_has_nulls: bool = False
    key_infinite: bool = False  # some row's key is 'infinity' (or past year 9999), which no bound can exceed
    owner_may_create: bool = True  # the owner has CREATE on the schema (the new parent is given to it)
    server_version: int = 0
    not_owned: tuple[TableRef, ...] = ()  # other relations the swap alters that the connected role does not own

    def fingerprint(self) -> str:
        """What the swap carries over or refuses, not the rows: a saved plan applies only to exactly this."""
        import hashlib
        import json
        from dataclasses import asdict

        data = {k: v for k, v in asdict(self).items()
                if k not in ("rows_estimate", "max_key", "key_has_nulls", "key_infinite", "sequence_value")}
        return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]

    def check(self, name: str) -> Optional[Constraint]:
        return next((c for c in self.constraints if c.name == name and c.kind == "c" and not c.incoming), None)

    @property
    def incoming(self) -> tuple[Constraint, ...]:
        return tuple(c for c in self.constraints if c.incoming)

    @property
    def outgoing(self) -> tuple[Constraint, ...]:
        return tuple(c for c in self.constraints if c.kind == "f" and not c.incoming)

    def others_locked(self) -> tuple[tuple[TableRef, str], ...]:
        """The other relations the swap alters, each with the lock mode it needs, in a fixed order (locked before
        the table): referencing tables whose foreign key is replaced (ACCESS EXCLUSIVE), referenced tables that
        gain the parent's foreign key (SHARE ROW EXCLUSIVE, which lets readers go on), and first the views it
        re-creates (VIEW_LOCK), in the order their readers lock them: view, then table."""
        strong = {c.table for c in self.incoming}
        weak = {c.references for c in self.outgoing if c.references is not None} - strong
        views = [(v.ref, VIEW_LOCK) for v in self.views]
        return tuple(views + sorted([(r, "ACCESS EXCLUSIVE") for r in strong] + [(r, "SHARE ROW EXCLUSIVE") for r in weak]))


_BASICS = """
SELECT a.attnum, format_type(a.atttypid, a.atttypmod), coalesce(a.attnotnull, false), pg_get_userbyid(c.relowner),
       c.relpersistence, c.reloftype <> 0,
       c.relhassubclass OR EXISTS (SELECT 1 FROM pg_inherits i WHERE i.inhrelid = c.oid),
       c.relreplident, obj_description(c.oid, 'pg_class'), c.relrowsecurity, c.relforcerowsecurity, c.reltuples,
       has_schema_privilege(c.relowner, c.relnamespace, 'CREATE'), current_setting('server_version_num')::int
  FROM pg_class c
  LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = %(key)s AND NOT a.attisdropped
 WHERE c.oid = %(oid)s
"""

_INDEXES = """
SELECT ic.relname, coalesce(pg_get_constraintdef(co.oid), pg_get_indexdef(x.indexrelid)), co.contype, x.indisunique,
       %(attnum)s = ANY ((x.indkey::int2[])[0:x.indnkeyatts - 1]), x.indisvalid, x.indexprs IS NOT NULL
  FROM pg_index x
  JOIN pg_class ic ON ic.oid = x.indexrelid
  LEFT JOIN pg_constraint co ON co.conindid = x.indexrelid AND co.conrelid = x.indrelid AND co.contype IN ('p', 'u', 'x')
 WHERE x.indrelid = %(oid)s
 ORDER BY ic.relname
"""

_CONSTRAINTS = """
SELECT co.conname, co.contype, pg_get_constraintdef(co.oid), n.nspname, r.relname, co.conrelid <> %(oid)s,
       co.convalidated, co.confrelid <> %(oid)s OR %(attnum)s = ANY (co.confkey), fn.nspname, f.relname,
       r.relkind = 'p'
  FROM pg_constraint co
  JOIN pg_class r ON r.oid = co.conrelid
  JOIN pg_namespace n ON n.oid = r.relnamespace
  LEFT JOIN pg_class f ON f.oid = co.confrelid
  LEFT JOIN pg_namespace fn ON fn.oid = f.relnamespace
 WHERE (co.conrelid = %(oid)s AND co.contype IN ('c', 'f', 'n', 't'))
    OR (co.confrelid = %(oid)s AND co.contype = 'f' AND co.conparentid = 0)
 ORDER BY co.conrelid <> %(oid)s, co.conname
"""

_REWRITES = """
SELECT DISTINCT n.nspname, c.relname, c.relkind, r.rulename, c.oid = %(oid)s,
       CASE WHEN c.relkind = 'v' THEN pg_get_viewdef(c.oid) END, coalesce(c.reloptions, '{}'), pg_get_userbyid(c.relowner)
  FROM pg_depend d
  JOIN pg_rewrite r ON r.oid = d.objid
  JOIN pg_class c ON c.oid = r.ev_class
  JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE d.classid = 'pg_rewrite'::regclass AND d.refclassid = 'pg_class'::regclass AND d.refobjid = %(oid)s
"""

_TRIGGERS = """
SELECT t.tgname, pg_get_triggerdef(t.oid), t.tgenabled, t.tgconstraint <> 0, t.tgoldtable IS NOT NULL OR t.tgnewtable IS NOT NULL
  FROM pg_trigger t WHERE t.tgrelid = %(oid)s AND NOT t.tgisinternal ORDER BY t.tgname
"""

_POLICIES = """
SELECT p.polname, p.polpermissive, p.polcmd,
       ARRAY(SELECT CASE WHEN r = 0 THEN 'public' ELSE pg_get_userbyid(r) END FROM unnest(p.polroles) AS r ORDER BY 1),
       pg_get_expr(p.polqual, p.polrelid), pg_get_expr(p.polwithcheck, p.polrelid)
  FROM pg_policy p WHERE p.polrelid = %(oid)s ORDER BY p.polname
"""

_GRANTS = """
SELECT CASE WHEN g.grantee = 0 THEN 'public' ELSE pg_get_userbyid(g.grantee) END, g.privilege_type, g.is_grantable, NULL
  FROM pg_class c, aclexplode(c.relacl) g WHERE c.oid = %(oid)s AND g.grantee <> c.relowner
UNION ALL
SELECT CASE WHEN g.grantee = 0 THEN 'public' ELSE pg_get_userbyid(g.grantee) END, g.privilege_type, g.is_grantable, a.attname
  FROM pg_attribute a, aclexplode(a.attacl) g WHERE a.attrelid = %(oid)s AND a.attacl IS NOT NULL AND NOT a.attisdropped
ORDER BY 4 NULLS FIRST, 1, 2
"""

_SEQUENCES = """
SELECT sn.nspname, s.relname, a.attname, d.deptype = 'i', s.oid,
       ARRAY(SELECT pg_describe_object(u.classid, u.objid, u.objsubid) FROM pg_depend u
              WHERE u.refclassid = 'pg_class'::regclass AND u.refobjid = s.oid AND u.deptype = 'n'
                AND NOT (u.classid = 'pg_attrdef'::regclass
                         AND EXISTS (SELECT 1 FROM pg_attrdef x WHERE x.oid = u.objid AND x.adrelid = %(oid)s))
              ORDER BY 1)
  FROM pg_depend d
  JOIN pg_class s ON s.oid = d.objid AND s.relkind = 'S'
  JOIN pg_namespace sn ON sn.oid = s.relnamespace
  JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
 WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass AND d.refobjid = %(oid)s
   AND d.deptype IN ('a', 'i')
"""

# Every publication that publishes the table (FOR TABLE, FOR ALL TABLES, FOR TABLES IN SCHEMA): after the swap it
# would publish the legacy partition under its new name, unless it publishes through the partition root.
_PUBLICATIONS = """
SELECT p.pubname, EXISTS (SELECT 1 FROM pg_publication_rel pr WHERE pr.prpubid = p.oid AND pr.prrelid = %(oid)s),
       p.pubviaroot
  FROM pg_publication p
 WHERE EXISTS (SELECT 1 FROM pg_publication_tables t JOIN pg_class c ON c.relname = t.tablename
                 JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = t.schemaname
                WHERE t.pubname = p.pubname AND c.oid = %(oid)s)
 ORDER BY 1
"""

# Everything else that depends on the table, or on its row type, by a normal dependency: what a conversion does
# not know how to carry over is refused by name rather than left pointing at the old table.
_OTHERS = """
SELECT pg_describe_object(d.classid, d.objid, d.objsubid)
  FROM pg_depend d
 WHERE d.refclassid = 'pg_class'::regclass AND d.refobjid = %(oid)s AND d.deptype = 'n'
   AND d.classid NOT IN ('pg_constraint'::regclass, 'pg_rewrite'::regclass)
   AND NOT (d.classid = 'pg_attrdef'::regclass AND EXISTS (SELECT 1 FROM pg_attrdef x WHERE x.oid = d.objid AND x.adrelid = %(oid)s))
   AND NOT (d.classid = 'pg_policy'::regclass AND EXISTS (SELECT 1 FROM pg_policy x WHERE x.oid = d.objid AND x.polrelid = %(oid)s))
   AND NOT (d.classid = 'pg_trigger'::regclass AND EXISTS (SELECT 1 FROM pg_trigger x WHERE x.oid = d.objid AND x.tgrelid = %(oid)s))
   AND NOT (d.classid = 'pg_statistic_ext'::regclass
            AND EXISTS (SELECT 1 FROM pg_statistic_ext x WHERE x.oid = d.objid AND x.stxrelid = %(oid)s))
UNION
SELECT pg_describe_object(d.classid, d.objid, d.objsubid)
  FROM pg_class c JOIN pg_depend d ON d.refclassid = 'pg_type'::regclass AND d.refobjid = c.reltype AND d.deptype = 'n'
 WHERE c.oid = %(oid)s
ORDER BY 1
"""


def read(cur: Cursor, table: TableRef, oid: int, key: str, *, rows: bool = True) -> Survey:
    """The survey of one plain table, in the caller's transaction (which sets search_path '' so that every
    definition is deparsed fully qualified). rows=False leaves out the two questions about the rows (largest key,
    NULL keys): under the swap's lock the validated CHECK answers them, and the lock is held for less."""
    cur.execute("SELECT set_config('search_path', '', true)")
    cur.execute(_BASICS, {"oid": oid, "key": key})
    (attnum, type_name, not_null, owner, persistence, typed, inherits, replident, comment, rls, force_rls,
     reltuples, owner_may_create, version) = cur.fetchone()
    params = {"oid": oid, "attnum": attnum or 0}
    key_type = KeyType.from_catalog(type_name) if type_name else None
    survey = Survey(
        oid=oid, key_attnum=attnum, key_type=key_type, key_type_name=type_name, key_not_null=bool(not_null),
        owner=owner, persistence=persistence, typed=typed, inherits=inherits, replica_identity=replident,
        comment=comment, row_security=rls, force_row_security=force_rls, owner_may_create=owner_may_create,
        server_version=version,
        rows_estimate=None if reltuples is None or reltuples < 0 else int(reltuples),
        indexes=tuple(Index(n, d, k, u, cov, v, e) for n, d, k, u, cov, v, e in _rows(cur, _INDEXES, params)),
        constraints=tuple(Constraint(n, k, d, TableRef(s, r), inc, v, cov, TableRef(fs, fr) if fr else None, part)
                          for n, k, d, s, r, inc, v, cov, fs, fr, part in _rows(cur, _CONSTRAINTS, params)),
        triggers=tuple(Trigger(*row) for row in _rows(cur, _TRIGGERS, params)),
        policies=tuple(Policy(n, p, c, tuple(r), u, w) for n, p, c, r, u, w in _rows(cur, _POLICIES, params)),
        grants=tuple(Grant(*row) for row in _rows(cur, _GRANTS, params)),
        sequences=tuple(Sequence(TableRef(s, n), a, i, o, tuple(u)) for s, n, a, i, o, u in _rows(cur, _SEQUENCES, params)),
        publications=tuple(n for n, listed, root in _rows(cur, _PUBLICATIONS, params) if listed or not root),
        others=tuple(r[0] for r in _rows(cur, _OTHERS, params)),
        **_rewrites(cur, params),
    )
    survey = replace(survey, not_owned=_not_owned(cur, survey))
    if key_type in _IDS or key_type is KeyType.UUID:
        return _with_ids(cur, survey, table, key, rows)
    if key_type is None or not key_type.is_time or not rows:
        return survey
    return _with_keys(cur, survey, table, key)


_IDS = (KeyType.SMALLINT, KeyType.INTEGER, KeyType.BIGINT)


def _with_ids(cur: Cursor, survey: Survey, table: TableRef, key: str, rows: bool) -> Survey:
    """An integer or uuid key's facts: the value of the sequence that feeds it (an id table's mark, widths.py), read
    without a lock on the table, and with rows, the largest key (ORDER BY, which uuid has where it has no max())."""
    fed = [s for s in survey.sequences if s.column == key]
    value = None
    if fed and cur.execute("SELECT has_sequence_privilege(%s, 'SELECT')", (fed[0].oid,)).fetchone()[0]:
        # The next value it gives: last_value once called, else last_value itself (fresh, RESTARTed, setval false).
        cur.execute(sql.SQL("SELECT CASE WHEN is_called THEN last_value::numeric + (SELECT seqincrement FROM"
                            " pg_sequence WHERE seqrelid = {}) ELSE last_value END FROM {}").format(
            sql.Literal(fed[0].oid), sql.Identifier(fed[0].ref.schema, fed[0].ref.name)))
        found = cur.fetchone()[0]
        value = None if found is None else int(found)
    if rows:
        column, rel = sql.Identifier(key), sql.Identifier(table.schema, table.name)
        nulls = sql.SQL("false") if survey.key_not_null else sql.SQL("EXISTS (SELECT 1 FROM {} WHERE {} IS NULL)").format(rel, column)
        cur.execute(sql.SQL("SELECT (SELECT {} FROM {} WHERE {} IS NOT NULL ORDER BY 1 DESC LIMIT 1), {}").format(
            column, rel, column, nulls))
        max_key, has_nulls = cur.fetchone()
        survey = replace(survey, max_key=max_key, key_has_nulls=bool(has_nulls))
    return replace(survey, sequence_value=value)


def _rows(cur: Cursor, query: str, params: dict) -> list[tuple]:
    cur.execute(query, params)
    return cur.fetchall()


def _not_owned(cur: Cursor, survey: Survey) -> tuple[TableRef, ...]:
    """The swap alters views and referencing tables, which only their owners (or members of them) may do."""
    others = [ref for ref, mode in survey.others_locked() if mode != "SHARE ROW EXCLUSIVE"]
    if not others:
        return ()
    cur.execute("SELECT r.s, r.n FROM unnest(%s::text[], %s::text[]) AS r(s, n)"
                " JOIN pg_namespace n ON n.nspname = r.s JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = r.n"
                " WHERE NOT pg_has_role(c.relowner, 'USAGE') ORDER BY 1, 2",
                ([r.schema for r in others], [r.name for r in others]))
    return tuple(TableRef(s, n) for s, n in cur.fetchall())


def _rewrites(cur: Cursor, params: dict) -> dict:
    views, matviews, rules = [], [], []
    for schema, name, kind, rule, own, definition, options, owner in _rows(cur, _REWRITES, params):
        if own:
            rules.append(rule)
        elif kind == "v":
            views.append(View(TableRef(schema, name), definition, tuple(options), owner))
        else:
            matviews.append(TableRef(schema, name))
    return {"views": tuple(sorted(views, key=lambda v: v.ref)), "matviews": tuple(sorted(matviews)),
            "rules": tuple(sorted(rules))}


def _with_keys(cur: Cursor, survey: Survey, table: TableRef, key: str) -> Survey:
    """The largest key (through an index on it, when there is one) and, for a nullable key, whether any row
    lacks one: the two facts about the rows that the cutover and the refusal rest on."""
    column, rel = sql.Identifier(key), sql.Identifier(table.schema, table.name)
    nulls = sql.SQL("false") if survey.key_not_null else sql.SQL("EXISTS (SELECT 1 FROM {} WHERE {} IS NULL)").format(rel, column)
    # 'infinity' is larger than any bound and cannot be read as a Python value: it is told apart, not read.
    cur.execute(sql.SQL("SELECT CASE WHEN isfinite(m) AND m < '10000-01-01' THEN m END,"
                        " m IS NOT NULL AND (NOT isfinite(m) OR m >= '10000-01-01'), {}"
                        " FROM (SELECT max({}) AS m FROM {}) AS k").format(nulls, column, rel))
    max_key, infinite, has_nulls = cur.fetchone()
    return replace(survey, max_key=max_key, key_has_nulls=bool(has_nulls), key_infinite=bool(infinite))
