"""What every partition shares with its parent, as a careful DBA would make it: owner, privileges (table and
column, MAINTAIN included where the server has it), tablespace, storage parameters, replica identity, persistence
and access method. Read for a whole set of tables in one statement (only partitions that differ come back),
compared purely, and made so with statements composed with psycopg.sql: when a partition is created, and by a
plan's `~ conform` line for one that drifted.

Ownership, privileges, storage parameters and replica identity are fixed in place (catalog updates under the
ladder). Tablespace, persistence and access method are only reported: changing them rewrites the partition
under ACCESS EXCLUSIVE, which is a migration, not upkeep."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Optional

from psycopg import Connection, Cursor, sql

from .model import TableRef

UNFIXED = "PM215"  # a difference apply does not fix (a rewrite, another grantor, another owner): reported only
OWNER = ""  # the grantee that stands for the relation's own owner (a role name is never empty)


@dataclass(frozen=True, order=True)
class Grant:
    """One privilege of one grantee (None: PUBLIC; OWNER: the relation's owner) on the table or one column."""

    column: str  # '' for the table itself
    grantee: Optional[str]
    privilege: str
    grantable: bool = False
    by_owner: bool = field(default=True, compare=False)  # granted by the owner (so the owner can revoke it)
    order: int = field(default=0, compare=False)  # its place in the relation's ACL: grants follow the parent's order

    @property
    def key(self) -> tuple:
        return (self.column, self.grantee or "", self.grantee is None, self.privilege)


@dataclass(frozen=True)
class Shape:
    """A relation's attributes that partitions share with their parent, as the catalog holds them."""

    owner: str
    grants: frozenset[Grant] = frozenset()
    tablespace: Optional[str] = None  # None: the database's default
    options: tuple[tuple[str, str], ...] = ()  # storage parameters; the TOAST table's prefixed 'toast.'
    replica_identity: str = "d"  # pg_class.relreplident: d(efault), n(othing), f(ull), i(ndex)
    identity_index: Optional[int] = None  # a parent: its replica identity index; a partition: the parent index its one is attached to
    matching_index: Optional[str] = None  # a partition: its index attached to the parent's replica identity index
    unlogged: bool = False
    access_method: Optional[str] = None  # None: a partitioned table without one (PostgreSQL 16 and earlier)
    # Row-level security on the parent: its policies do not apply to a partition read directly, so a partition gets
    # the owner's privileges only (a grant on it would let its grantee read past the policies).
    row_security: bool = False
    has_toast: bool = True  # a partition: it has a TOAST table (toast.* parameters mean nothing without one)
    alterable: bool = True  # a partition: the connected role owns it or is a member of its owner
    # A parent: the tablespace its partitions go to (the spec's, else its own; None: the database's default),
    # and why that cannot be (the spec names one that does not exist, or the role may not create in it).
    wanted_tablespace: Optional[str] = None
    tablespace_problem: Optional[str] = None


@dataclass(frozen=True)
class Wanted:
    """What the spec adds to the parent's shape for its partitions."""

    tablespace: Optional[str] = None  # None: the parent's
    options: tuple[tuple[str, str], ...] = ()
    unlogged: Optional[bool] = None  # None: the parent's persistence


@dataclass(frozen=True)
class Change:
    """One difference of a partition from its parent, and what makes it match (verb and args, so a saved plan
    carries it). Verbs: owner, grant, revoke, revoke_option, set, replica; and tablespace, persistence, access_method,
    which are only reported."""

    verb: str
    args: tuple[str, ...]

    @property
    def fixable(self) -> bool:
        return self.verb in ("owner", "grant", "revoke", "revoke_option", "set", "replica")

    @property
    def attribute(self) -> str:
        return {"owner": "owner", "grant": "privileges", "revoke": "privileges", "revoke_option": "privileges",
                "foreign": "privileges", "unowned": "owner", "set": "storage parameters",
                "replica": "replica identity"}.get(self.verb, self.verb.replace("_", " "))

    def text(self) -> str:
        a = self.args
        if self.verb == "owner":
            return f"owner {a[0]} (is {a[1]})"
        if self.verb in ("grant", "revoke", "revoke_option"):
            what = f"{a[2]} ({a[0]})" if a[0] else a[2]
            who = "PUBLIC" if a[1] == "" and a[3] == "public" else a[1]
            if self.verb == "grant":
                return f"grant {what} to {who}{' with grant option' if a[4] == 'true' else ''}"
            if self.verb == "revoke":
                return f"revoke {what} from {who}"
            return f"revoke grant option for {what} from {who}"
        if self.verb == "set":
            return f"set {a[0]} = {a[1]} (is {a[2] or 'unset'})"
        if self.verb == "replica":
            return f"replica identity {_IDENTITY[a[0]]}{' ' + a[1] if a[1] else ''} (is {_IDENTITY[a[2]]})"
        if self.verb == "foreign":
            what = f"{a[2]} ({a[0]})" if a[0] else a[2]
            return (f"{what} of {'PUBLIC' if a[3] == 'public' else a[1]} was granted by another role than the owner:"
                    " only that role can revoke it")
        if self.verb == "unowned":
            return f"owned by {a[0]}, which the connected role is not a member of: {a[1]} is left to its owner"
        return f"{self.attribute} {a[0]}, the parent's partitions want {a[1]} (apply does not rewrite it)"

    def statement(self, partition: TableRef) -> sql.Composed:
        table = sql.Identifier(partition.schema, partition.name)
        a = self.args
        if self.verb == "owner":
            return sql.SQL("ALTER TABLE {} OWNER TO {}").format(table, sql.Identifier(a[0]))
        if self.verb in ("grant", "revoke", "revoke_option"):
            privilege = sql.SQL(a[2]) if a[2] in PRIVILEGES else None
            if privilege is None:
                raise ValueError(f"unknown privilege {a[2]!r}")
            if a[0]:
                privilege = sql.SQL("{} ({})").format(privilege, sql.Identifier(a[0]))
            who = sql.SQL("PUBLIC") if a[3] == "public" else sql.Identifier(a[1])
            if self.verb == "grant":
                option = sql.SQL(" WITH GRANT OPTION") if a[4] == "true" else sql.SQL("")
                return sql.SQL("GRANT {} ON TABLE {} TO {}{}").format(privilege, table, who, option)
            head = sql.SQL("REVOKE ") if self.verb == "revoke" else sql.SQL("REVOKE GRANT OPTION FOR ")
            # CASCADE: what the grantee passed on with a grant option the partition should not have goes with it.
            return sql.SQL("{}{} ON TABLE {} FROM {} CASCADE").format(head, privilege, table, who)
        if self.verb == "set":
            return sql.SQL("ALTER TABLE {} SET ({} = {})").format(table, option_name(a[0]), sql.Literal(a[1]))
        if self.verb == "replica":
            return sql.SQL("ALTER TABLE {} REPLICA IDENTITY {}").format(table, identity_clause(a[0], a[1]))
        raise ValueError(f"{self.verb}: reported only")

    def to_dict(self) -> dict[str, Any]:
        return {"verb": self.verb, "args": list(self.args), "text": self.text()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Change":
        return cls(d["verb"], tuple(d["args"]))


# The privileges GRANT takes, as aclexplode() names them; only these reach SQL, as keywords.
PRIVILEGES = frozenset({"SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER", "MAINTAIN"})
_IDENTITY = {"d": "DEFAULT", "n": "NOTHING", "f": "FULL", "i": "USING INDEX"}


def option_name(name: str) -> sql.Composable:
    """A storage parameter's name as SQL: 'toast.autovacuum_enabled' is two identifiers."""
    return sql.SQL(".").join(sql.Identifier(part) for part in name.split(".", 1))


def identity_clause(kind: str, index: str = "") -> sql.Composable:
    if kind == "i":
        return sql.SQL("USING INDEX {}").format(sql.Identifier(index))
    return sql.SQL({"d": "DEFAULT", "n": "NOTHING", "f": "FULL"}[kind])


def _grant_args(g: Grant, owner: str) -> tuple[str, ...]:
    who = owner if g.grantee == OWNER else (g.grantee or "")
    return (g.column, who, g.privilege, "public" if g.grantee is None else "role", "true" if g.grantable else "false")


def _privileges(want: frozenset[Grant], have: frozenset[Grant], owner: str) -> list[Change]:
    """Grants in the parent's order (so a partition's ACL comes out as the parent's, entry for entry), then revokes;
    a privilege someone other than the owner granted is reported, since only its grantor can revoke it."""
    wanted = {g.key: g for g in want}
    held = {g.key: g for g in have}
    grants, revokes = [], []
    for key in sorted(wanted.keys() | held.keys()):
        w, h = wanted.get(key), held.get(key)
        if w is not None and (h is None or (w.grantable and not h.grantable)):
            grants.append((w.order, Change("grant", _grant_args(w, owner))))
        elif h is not None and (w is None or (h.grantable and not w.grantable)):
            verb = ("revoke" if w is None else "revoke_option") if h.by_owner else "foreign"
            revokes.append(Change(verb, _grant_args(h, owner)))
    return [c for _, c in sorted(grants, key=lambda item: item[0])] + revokes


def merged(grants: Iterable[Grant]) -> frozenset[Grant]:
    """One entry per column, grantee and privilege: a privilege held from two grantors is held (with the grant
    option if either gave it), and the owner can revoke it only if the owner gave it."""
    by_key: dict[tuple, Grant] = {}
    for g in grants:
        seen = by_key.get(g.key)
        by_key[g.key] = g if seen is None else Grant(
            g.column, g.grantee, g.privilege, seen.grantable or g.grantable, seen.by_owner and g.by_owner,
            min(seen.order, g.order))
    return frozenset(by_key.values())


def _as_owner(grants: frozenset[Grant], owner: str) -> frozenset[Grant]:
    """A relation's grants once owner owns it: what owner held as a grantee is the owner's own (the server merges them)."""
    return merged(Grant(g.column, OWNER, g.privilege, g.grantable, True, g.order) if g.grantee == owner else g
                  for g in grants)


def _same_value(a: Optional[str], b: str) -> bool:
    """Storage parameters as the server reads them: on/true/1 alike, 0.10 and 0.1 alike."""
    if a is None:
        return False
    if a.lower() == b.lower():
        return True
    truth = {"on": "1", "true": "1", "yes": "1", "1": "1", "off": "0", "false": "0", "no": "0", "0": "0"}
    if a.lower() in truth and b.lower() in truth:
        return truth[a.lower()] == truth[b.lower()]
    try:
        return float(a) == float(b)
    except ValueError:
        return False


def differences(parent: Shape, partition: Shape, wanted: Wanted) -> list[Change]:
    """What makes partition match: owner first (privileges name the owner), then privileges, storage parameters
    and replica identity; then what apply does not fix, reported: a rewrite, a grant only its grantor can revoke."""
    changes: list[Change] = []
    if partition.owner != parent.owner:
        changes.append(Change("owner", (parent.owner, partition.owner)))
    want = parent.grants if not parent.row_security else frozenset(g for g in parent.grants if g.grantee == OWNER)
    have = _as_owner(partition.grants, parent.owner) if partition.owner != parent.owner else partition.grants
    changes += _privileges(want, have, parent.owner)
    held = dict(partition.options)
    for name, value in wanted.options:
        if name.startswith("toast.") and not partition.has_toast:
            continue  # no TOAST table: the server keeps no toast.* parameter, and none is needed
        if not _same_value(held.get(name), value):
            changes.append(Change("set", (name, value, held.get(name) or "")))
    identity_ok = partition.replica_identity == parent.replica_identity and (
        parent.replica_identity != "i" or partition.identity_index == parent.identity_index)
    if not identity_ok and (parent.replica_identity != "i" or partition.matching_index):
        index = partition.matching_index or "" if parent.replica_identity == "i" else ""
        changes.append(Change("replica", (parent.replica_identity, index, partition.replica_identity)))
    if partition.tablespace != parent.wanted_tablespace:
        changes.append(Change("tablespace", (partition.tablespace or "the default", parent.wanted_tablespace or "the default")))
    unlogged = parent.unlogged if wanted.unlogged is None else wanted.unlogged
    if partition.unlogged != unlogged:
        changes.append(Change("persistence", (_persistence(partition.unlogged), _persistence(unlogged))))
    if parent.access_method and partition.access_method != parent.access_method:
        changes.append(Change("access_method", (partition.access_method or "", parent.access_method)))
    if not partition.alterable and any(c.fixable for c in changes):
        fixes = ", ".join(sorted({c.attribute for c in changes if c.fixable}))
        changes = [c for c in changes if not c.fixable] + [Change("unowned", (partition.owner, fixes))]
    return changes


def _persistence(unlogged: bool) -> str:
    return "UNLOGGED" if unlogged else "LOGGED"


@dataclass(frozen=True)
class Making:
    """How a new partition is made to match: the clauses of its CREATE TABLE, the statements between it and the
    ATTACH (owner, privileges, replica identity), and, for a replica identity index, which index of the parent
    the partition's own must be attached to (known only once ATTACH matched the indexes)."""

    unlogged: bool = False
    access_method: Optional[str] = None
    options: tuple[tuple[str, str], ...] = ()
    tablespace: Optional[str] = None
    after: tuple[Change, ...] = ()
    identity_index: Optional[int] = None  # the parent's replica identity index


def wanted(spec) -> Wanted:
    return Wanted(spec.tablespace, spec.storage_parameters, spec.unlogged)


def making(parent: Shape, wanted: Wanted, creator: str, starting: frozenset[Grant]) -> Making:
    """creator: the role that runs CREATE TABLE; starting: the privileges a table it creates in the schema starts with
    (its defaults, with its ALTER DEFAULT PRIVILEGES), its own under OWNER."""
    fresh = Shape(owner=creator, grants=starting, tablespace=parent.wanted_tablespace, unlogged=parent.unlogged)
    after = [c for c in differences(parent, fresh, Wanted(unlogged=parent.unlogged)) if c.fixable and c.verb != "replica"]
    if parent.replica_identity in ("n", "f"):
        after.append(Change("replica", (parent.replica_identity, "", "d")))
    return Making(
        unlogged=parent.unlogged if wanted.unlogged is None else wanted.unlogged,
        access_method=parent.access_method,
        options=wanted.options,
        tablespace=parent.wanted_tablespace,
        after=tuple(after),
        identity_index=parent.identity_index if parent.replica_identity == "i" else None,
    )


def _grantee(r: str) -> str:
    return f"CASE WHEN a.grantee = 0 THEN NULL WHEN a.grantee = {r}.relowner THEN '' ELSE pg_get_userbyid(a.grantee) END"


# A relation's privileges: the owner's own entries under OWNER (''), PUBLIC as NULL, a NULL relacl as the owner's
# defaults, whether the owner granted each, in the ACL's order (new partitions get the parent's in its order, so their
# relacl comes out equal to the parent's and the cheap test below holds). _CANON: the same set, for comparing.
_GRANTS = """(SELECT coalesce(json_agg(json_build_array('', {grantee}, a.privilege_type, a.is_grantable,
                                                  a.grantor = {r}.relowner) ORDER BY a.n), '[]')
         FROM aclexplode(coalesce({r}.relacl, acldefault('r', {r}.relowner))) WITH ORDINALITY AS a(grantor, grantee, privilege_type, is_grantable, n))"""
_CANON = """(SELECT array_agg(DISTINCT concat_ws(' ', {grantee}, a.privilege_type, a.is_grantable))
         FROM aclexplode(coalesce({r}.relacl, acldefault('r', {r}.relowner))) a)"""
_COLUMN_GRANTS = """(SELECT coalesce(json_agg(json_build_array(at.attname, {grantee}, a.privilege_type, a.is_grantable,
                                                  a.grantor = {r}.relowner)), '[]')
         FROM pg_attribute at, aclexplode(at.attacl) a
        WHERE at.attrelid = {r}.oid AND at.attacl IS NOT NULL AND NOT at.attisdropped)"""
_OPTIONS = """coalesce({r}.reloptions, '{{}}') || coalesce((SELECT array_agg('toast.' || o) FROM pg_class t, unnest(t.reloptions) o
                                                   WHERE t.oid = {r}.reltoastrelid), '{{}}')"""
_IDENTITY_INDEX = "(SELECT x.indexrelid FROM pg_index x WHERE x.indrelid = {r}.oid AND x.indisreplident)"
# A tablespace as a relation records it: 0 for the database's default, whatever its name.
_SPACE = "(SELECT CASE WHEN {oid} = d.dattablespace THEN 0 ELSE {oid} END FROM pg_database d WHERE d.datname = current_database())"


def _columns(r: str, parent: str) -> str:
    grantee = _grantee(r)
    return f""", pg_get_userbyid({r}.relowner), {_GRANTS.format(r=r, grantee=grantee)},
       {_COLUMN_GRANTS.format(r=r, grantee=grantee)},
       (SELECT s.spcname FROM pg_tablespace s WHERE s.oid = nullif({_SPACE.format(oid=r + '.reltablespace')}, 0)),
       {_OPTIONS.format(r=r)}, {r}.relreplident,
       CASE WHEN {r}.oid = {parent}.oid THEN {_IDENTITY_INDEX.format(r=r)}
            ELSE (SELECT ii.inhparent FROM pg_index x JOIN pg_inherits ii ON ii.inhrelid = x.indexrelid
                   WHERE x.indrelid = {r}.oid AND x.indisreplident) END,
       (SELECT ic.relname FROM pg_index x JOIN pg_inherits ii ON ii.inhrelid = x.indexrelid
          JOIN pg_class ic ON ic.oid = x.indexrelid
         WHERE x.indrelid = {r}.oid AND ii.inhparent = {_IDENTITY_INDEX.format(r=parent)}),
       {r}.relpersistence = 'u', (SELECT am.amname FROM pg_am am WHERE am.oid = {r}.relam), {r}.relrowsecurity,
       {r}.reltoastrelid <> 0, pg_has_role({r}.relowner, 'USAGE')"""


# The parents, and only the partitions that may differ: cheap tests of the raw catalog values first (a partition
# partman made has the very relacl of its parent), the normalised comparison only where one fails, against the
# parent's computed once. Column privileges come from one pass over pg_attribute (attacl is rarely set), not a
# lookup per partition. 300 tables of 100 partitions: 0.10 s (bench/plan_scale.py).
_WANT = f"""want AS (
  SELECT w.parent, w.options, p.relowner, p.relacl, p.relreplident, p.relam, p.relrowsecurity,
         CASE WHEN w.tablespace IS NULL THEN {_SPACE.format(oid='p.reltablespace')}
              ELSE (SELECT {_SPACE.format(oid='s.oid')} FROM pg_tablespace s WHERE s.spcname = w.tablespace) END AS space,
         w.tablespace IS NOT NULL AND NOT EXISTS (SELECT 1 FROM pg_tablespace s WHERE s.spcname = w.tablespace) AS no_space,
         coalesce(w.unlogged, p.relpersistence = 'u') AS unlogged, {_IDENTITY_INDEX.format(r='p')} AS ident,
         {_CANON.format(r='p', grantee=_grantee('p'))} AS canon
    FROM unnest(%(parents)s::oid[], %(tablespaces)s::text[], %(unlogged)s::bool[], %(options)s::text[])
         AS w(parent, tablespace, unlogged, options)
    JOIN pg_class p ON p.oid = w.parent
)"""
_COLUMN_ACL = """column_acl AS MATERIALIZED (
  SELECT at.attrelid, array_agg(at.attname || ' ' || at.attacl::text ORDER BY at.attname) AS acl
    FROM pg_attribute at
   WHERE at.attacl IS NOT NULL AND NOT at.attisdropped
     AND (at.attrelid = ANY(%(parents)s::oid[])
          OR at.attrelid IN (SELECT i.inhrelid FROM pg_inherits i WHERE i.inhparent = ANY(%(parents)s::oid[])))
   GROUP BY 1
)"""
_PARENT_ARM = f"""SELECT w.parent, p.oid{_columns('p', 'p')},
       (SELECT s.spcname FROM pg_tablespace s WHERE s.oid = nullif(w.space, 0)),
       CASE WHEN w.no_space THEN 'does not exist'
            WHEN w.space <> 0 AND NOT has_tablespace_privilege(w.space, 'CREATE')
            THEN 'the connected role has no CREATE privilege on it' END
  FROM want w JOIN pg_class p ON p.oid = w.parent"""
_PARTITION_ARM = f"""SELECT w.parent, c.oid{_columns('c', 'p')}, NULL, NULL
  FROM pg_inherits i
  JOIN pg_class c ON c.oid = i.inhrelid AND c.relkind = 'r'
  JOIN want w ON w.parent = i.inhparent
  JOIN pg_class p ON p.oid = w.parent
  LEFT JOIN column_acl ca ON ca.attrelid = c.oid
  LEFT JOIN column_acl pa ON pa.attrelid = w.parent
 WHERE i.inhparent = ANY(%(parents)s::oid[]) AND NOT i.inhdetachpending
   AND (c.relowner <> w.relowner
    OR (c.relacl IS DISTINCT FROM w.relacl
        AND (w.relrowsecurity OR {_CANON.format(r='c', grantee=_grantee('c'))} IS DISTINCT FROM w.canon))
    OR (w.relrowsecurity AND EXISTS (SELECT 1 FROM aclexplode(c.relacl) a WHERE a.grantee <> c.relowner))
    OR ca.acl IS DISTINCT FROM pa.acl
    OR c.reltablespace <> coalesce(w.space, -1)
    OR (c.relpersistence = 'u') <> w.unlogged
    OR CASE WHEN w.options IS NULL THEN false
            ELSE NOT ARRAY(SELECT o FROM unnest(string_to_array(w.options, ',')) o
                            WHERE c.reltoastrelid <> 0 OR NOT starts_with(o, 'toast.')) <@ ({_OPTIONS.format(r='c')}) END
    OR c.relreplident <> w.relreplident
    OR (w.relreplident = 'i' AND NOT EXISTS (
          SELECT 1 FROM pg_index x JOIN pg_inherits ii ON ii.inhrelid = x.indexrelid
           WHERE x.indrelid = c.oid AND x.indisreplident AND ii.inhparent = w.ident))
    OR (w.relam <> 0 AND c.relam <> w.relam))"""
_SHAPES = f"WITH {_WANT}, {_COLUMN_ACL}\n{_PARENT_ARM}\nUNION ALL\n{_PARTITION_ARM}"
# The parents alone: apply, under a table's lock, needs its parent's shape only (and this plans in a fraction).
_PARENT_SHAPES = f"WITH {_WANT}\n{_PARENT_ARM}"


def _shape(row: tuple) -> Shape:
    (owner, grants, column_grants, tablespace, options, ident, ident_index, matching, unlogged, am, rls, toast,
     alterable, wanted_space, space_problem) = row
    return Shape(
        owner=owner, grants=as_grants(grants) | as_grants(column_grants, first=len(grants)), tablespace=tablespace,
        options=tuple(sorted(tuple(o.split("=", 1)) for o in options if "=" in o)),
        replica_identity=ident, identity_index=ident_index, matching_index=matching, unlogged=bool(unlogged),
        access_method=am, row_security=bool(rls), has_toast=bool(toast), alterable=bool(alterable),
        wanted_tablespace=wanted_space, tablespace_problem=space_problem,
    )


def as_grants(items, first: int = 0) -> frozenset[Grant]:
    return merged(Grant(c, g, p, bool(o), bool(by), n) for n, (c, g, p, o, by) in enumerate(items, first))


@dataclass(frozen=True)
class Shapes:
    """The parents' shapes and those of the partitions that may differ from them, by OID."""

    parents: dict[int, Shape] = field(default_factory=dict)
    partitions: dict[int, dict[int, Shape]] = field(default_factory=dict)  # parent OID -> partition OID -> shape


def read(cur: Cursor, wanted: Iterable[tuple[int, Wanted]], partitions: bool = True) -> Shapes:
    """One statement for every parent; with partitions, those that may differ from it too."""
    wanted = [(oid, w) for oid, w in wanted if oid is not None]
    if not wanted:
        return Shapes()
    params = {
        "parents": [oid for oid, _ in wanted],
        "tablespaces": [w.tablespace for _, w in wanted],
        "unlogged": [w.unlogged for _, w in wanted],
        "options": [",".join(f"{k}={v}" for k, v in w.options) if w.options else None for _, w in wanted],
    }
    shapes = Shapes()
    for parent, oid, *rest in cur.execute(_SHAPES if partitions else _PARENT_SHAPES, params).fetchall():
        if parent == oid:
            shapes.parents[oid] = _shape(tuple(rest))
        else:
            shapes.partitions.setdefault(parent, {})[oid] = _shape(tuple(rest))
    return shapes


# What a table the connected role creates in a schema starts with: its default privileges (ALTER DEFAULT PRIVILEGES
# FOR ROLE it, globally: instead of the built-in ones; IN SCHEMA: added to them), its own entries under OWNER.
_STARTING = """
SELECT u.rolname, coalesce(json_agg(json_build_array('', CASE WHEN a.grantee = 0 THEN NULL WHEN a.grantee = u.oid THEN ''
                                                ELSE pg_get_userbyid(a.grantee) END, a.privilege_type, a.is_grantable,
                                                true) ORDER BY a.n), '[]')
  FROM pg_roles u,
       LATERAL aclexplode(coalesce((SELECT d.defaclacl FROM pg_default_acl d WHERE d.defaclrole = u.oid
                                       AND d.defaclnamespace = 0 AND d.defaclobjtype = 'r'), acldefault('r', u.oid))
                          || coalesce((SELECT d.defaclacl FROM pg_default_acl d JOIN pg_namespace n ON n.oid = d.defaclnamespace
                                        WHERE d.defaclrole = u.oid AND n.nspname = %(schema)s AND d.defaclobjtype = 'r'), '{}'))
               WITH ORDINALITY AS a(grantor, grantee, privilege_type, is_grantable, n)
 WHERE u.rolname = current_user
 GROUP BY u.rolname
"""


def identity_index_of(conn: Connection, partition: TableRef, parent_index: int) -> Optional[str]:
    """The partition's index that ATTACH attached to the parent's replica identity index."""
    row = conn.execute(
        """SELECT ic.relname FROM pg_index x JOIN pg_inherits ii ON ii.inhrelid = x.indexrelid
             JOIN pg_class ic ON ic.oid = x.indexrelid
            WHERE x.indrelid = to_regclass(%s) AND ii.inhparent = %s""",
        (sql.Identifier(partition.schema, partition.name).as_string(conn), parent_index),
    ).fetchone()
    return row[0] if row else None


# The parent's shape found by its name (no row when there is no such relation), so that one statement asks it.
_PARENT_SHAPE_OF = _PARENT_SHAPES.replace(
    "unnest(%(parents)s::oid[],", "unnest(ARRAY[to_regclass(format('%%I.%%I', %(parent_schema)s::text, %(parent_name)s::text))::oid],", 1)
assert _PARENT_SHAPE_OF != _PARENT_SHAPES
# What making_for asks, in one statement and one row: the creator and what a table it creates starts with, then the
# parent's shape (NULLs when there is no parent). Its parameters: making_params.
MAKING = f"SELECT st.*, sh.* FROM ({_STARTING}) AS st LEFT JOIN ({_PARENT_SHAPE_OF}) AS sh ON true"


def making_params(spec) -> dict[str, Any]:
    w = wanted(spec)
    return {"schema": spec.table.schema, "parent_schema": spec.table.schema, "parent_name": spec.table.name,
            "tablespaces": [w.tablespace], "unlogged": [w.unlogged],
            "options": [",".join(f"{k}={v}" for k, v in w.options) if w.options else None]}


def making_for(conn: Connection, spec, new_parent: bool) -> Making:
    """How apply makes this table's new partitions, from the parent as it is under the table's lock (a parent this
    apply creates has only the spec's additions, and whatever the creator's default privileges give it)."""
    return making_from(spec, new_parent, conn.execute(MAKING, making_params(spec)).fetchone())


def making_from(spec, new_parent: bool, row: tuple) -> Making:
    """making_for, from the row MAKING answered (alone, or inside another statement: catalog.under_lock)."""
    creator, starting, _, oid, *shape = row
    starting = as_grants(starting)
    parent = None if new_parent or oid is None else _shape(tuple(shape))
    if parent is None:
        space = wanted(spec).tablespace
        parent = Shape(owner=creator, grants=starting, wanted_tablespace=space if space != "pg_default" else None)
    return making(parent, wanted(spec), creator, starting)


def after_attach(conn: Connection, partition: TableRef, made: Optional[Making]) -> None:
    """A replica identity USING INDEX: the partition's index that ATTACH matched to the parent's one."""
    if made is None or made.identity_index is None:
        return
    index = identity_index_of(conn, partition, made.identity_index)
    if index is not None:
        conn.execute(Change("replica", ("i", index, "d")).statement(partition))


def conform(conn: Connection, action) -> bool:
    """A plan's conform, in one transaction: only if the partition is still the relation planned (False if not:
    nothing to do). The statements are idempotent, so what another run did meanwhile costs nothing."""
    oid = conn.execute("SELECT to_regclass(%s)::oid", (sql.Identifier(action.partition.schema, action.partition.name)
                                                      .as_string(conn),)).fetchone()[0]
    if oid != action.oid:
        return False
    for change in action.changes:
        conn.execute(change.statement(action.partition))
    return True
