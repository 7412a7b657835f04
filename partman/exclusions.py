"""`partman exclusions`: the partitions partman manages and the names it will give new ones, as the patterns schema
tools are told to leave alone (a regex per line, Atlas' exclude globs, pg_dump's --exclude-table, JSON)."""

from __future__ import annotations

import hashlib
import json
import re
import shlex
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from functools import lru_cache
from typing import Sequence

import psycopg
from psycopg import Connection, sql

from .errors import CatalogError
from .failures import read_failure
from .intervals import Interval
from .model import Bounds, KeyType, TableRef
from .naming import MAX_BYTES, partition_name
from .timeline import Grid, KeySpace

FORMATS = ("regex", "atlas", "pg_dump", "json")

# --- The names naming.py generates, as shapes ---


def _shape(label: str) -> str:
    """A label with each run of digits as \\d{n}: '2027_q1' → '\\d{4}_q\\d'."""
    return re.sub(r"\d+", lambda m: r"\d" if len(m.group()) == 1 else rf"\d{{{len(m.group())}}}", label)


@lru_cache(maxsize=None)
def label_shapes() -> tuple[str, ...]:
    """Every shape of suffix naming.partition_name gives (after '<parent>_'), taken from the code that makes them:
    Interval.label over a few years of boundaries for each interval, then the bridges between unaligned bounds
    (dates, or timestamps off midnight)."""
    shapes: dict[str, None] = {}
    for interval in Interval:
        boundary = interval.floor(date(2026, 1, 1))
        while boundary < date(2029, 1, 1):
            shapes[_shape(interval.label(boundary))] = None
            boundary = interval.next(boundary)
    grid = Grid(Interval.MONTHLY, KeySpace(KeyType.TIMESTAMPTZ, "UTC"))
    parent = TableRef("s", "p")
    day, moment = datetime(2027, 1, 5, tzinfo=timezone.utc), datetime(2027, 1, 5, 6, 30, tzinfo=timezone.utc)
    for start in (day, moment):
        for end in (day + timedelta(days=3), moment + timedelta(days=3)):
            name = partition_name(parent, grid, Bounds(start, end), set()).name
            shapes[_shape(name.removeprefix("p_"))] = None
    return tuple(shapes)


_LONGEST_SUFFIX = "_20270105_063000_20270108_063000_99"  # the longest label a bridge gets, and a _N


def shortened(parent: str) -> bool:
    """Whether some name partman generates for this parent is cut to 63 bytes with an md5 of the stem (naming.fit)."""
    return len((parent + _LONGEST_SUFFIX).encode()) > MAX_BYTES


def stem_digest(parent: str) -> str:
    """The '_<md5>' naming.fit puts after a cut stem (tests/test_exclusions.py holds the two in step)."""
    return "_" + hashlib.md5(parent.encode()).hexdigest()[:6]


def _stem_prefix(parent: str) -> str:
    """The part of a long parent's name every cut stem keeps (naming.fit keeps more than catalog.NAME_PREFIX_BYTES)."""
    from .catalog import name_prefix

    return name_prefix(parent)


# --- Patterns per table, in each syntax ---


def _re_escape(text: str) -> str:
    """Metacharacters escaped for any regex dialect (Python, JavaScript, Go, POSIX ERE)."""
    return "".join("\\" + c if c in "\\.^$*+?()[]{}|/" else c for c in text)


LEGACY = "legacy"  # conversion.LEGACY_SUFFIX without its '_': the name a converted table takes as a partition


# An id table's labels (widths.WidthGrid.label): p<start>, m<minus start>, and a bridge's two ends. Their digits
# run to any length, so their globs end in [0-9]* (the only globs here that do).
ID_SHAPES = (r"[pm]\d+", r"[pm]\d+_[pm]\d+", r"[pm]\d+_max")


def shapes_of(converting: bool, ids: bool = False) -> tuple[str, ...]:
    return (ID_SHAPES if ids else label_shapes()) + ((LEGACY,) if converting else ())


def name_regex(table: TableRef, converting: bool = False, ids: bool = False) -> str:
    """One anchored regex for every name partman generates for table's partitions: `<parent>_<label>`, a `_N`
    when taken, and the md5-shortened stem of a long parent (and `<parent>_legacy` when the spec converts it)."""
    labels = "(" + "|".join(shapes_of(converting, ids)) + r")(_\d+)?"
    parent = _re_escape(table.name)
    if shortened(table.name):
        cut = f"{_re_escape(_stem_prefix(table.name))}.*{stem_digest(table.name)}"
        parent = f"({parent}|{cut})"
    return rf"^{_re_escape(table.schema)}\.{parent}_{labels}$"


def exact_regex(ref: TableRef) -> str:
    return rf"^{_re_escape(ref.schema)}\.{_re_escape(ref.name)}$"


def _glob_escape(text: str) -> str:
    """Glob metacharacters as one-character classes: the same in Go's filepath.Match (Atlas) and fnmatch."""
    return "".join(f"[{c}]" if c in "*?[" else ("[\\\\]" if c == "\\" else c) for c in text)


def _glob_shape(shape: str) -> str:
    """A label shape as a glob: each digit one [0-9], nothing looser."""
    shape = shape.replace(r"\d+", "[0-9]*")
    return re.sub(r"\\d(?:\{(\d+)\})?", lambda m: "[0-9]" * int(m.group(1) or 1), shape)


def name_globs(parent: str, converting: bool = False, ids: bool = False) -> list[str]:
    """Globs (unqualified) for the names generated for parent: one per label shape, bare and with a `_N` of one
    or two digits. Globs have no alternation, so each shape is its own glob; none ends in a bare '*', which would
    also match `<parent>_2027_backup`."""
    stems = [_glob_escape(parent)]
    if shortened(parent):
        stems.append(f"{_glob_escape(_stem_prefix(parent))}*{stem_digest(parent)}")
    return [f"{stem}_{_glob_shape(shape)}{n}" for stem in stems for shape in shapes_of(converting, ids)
            for n in ("", "_[0-9]", "_[0-9][0-9]")]


def _psql_quoted(text: str) -> str:
    """A psql pattern part matching text exactly: in double quotes no regex character is special."""
    return '"' + text.replace('"', '""') + '"'


def name_psql(table: TableRef, converting: bool = False, ids: bool = False) -> list[str]:
    """psql patterns (pg_dump --exclude-table) for the generated names: quoted names, then the label shapes as
    psql's regular expression (alternation and {n} work there; '?' means one character, so an optional `_N` is
    written `(_[0-9]+|)`)."""
    labels = "(" + "|".join(s.replace("\\d", "[0-9]") for s in shapes_of(converting, ids)) + ")(_[0-9]+|)"
    patterns = [f"{_psql_quoted(table.schema)}.{_psql_quoted(table.name)}_{labels}"]
    if shortened(table.name):
        patterns.append(f"{_psql_quoted(table.schema)}.{_psql_quoted(_stem_prefix(table.name))}*"
                        f"{_psql_quoted(stem_digest(table.name))}_{labels}")
    return patterns


@dataclass(frozen=True)
class TableExclusion:
    """One spec's table: the pattern of its generated names, its managed partitions, and those the pattern misses."""

    table: TableRef
    pattern: str  # name_regex
    partitions: tuple[TableRef, ...]  # live partition_log rows whose table exists, by range
    converting: bool = False  # the spec converts the table: its legacy partition's name is generated too
    ids: bool = False  # an id table (width): its names are p<start> (ID_SHAPES)

    @property
    def unmatched(self) -> tuple[TableRef, ...]:
        """Managed partitions whose names are not generated ones (adopted partitions keep their names)."""
        regex = re.compile(self.pattern)
        return tuple(p for p in self.partitions if not regex.match(str(p)))


def build(tables: Sequence[TableRef], managed: dict[TableRef, list[TableRef]],
          converting: frozenset[TableRef] = frozenset(), ids: frozenset[TableRef] = frozenset()) -> list[TableExclusion]:
    return [TableExclusion(t, name_regex(t, t in converting, t in ids), tuple(managed.get(t, ())), t in converting,
                           t in ids) for t in sorted(set(tables))]


# --- Reading partition_log ---

_START = """
SELECT set_config('statement_timeout', %(timeout)s, true), set_config('lock_timeout', %(lock_timeout)s, true),
       log.oid IS NOT NULL, coalesce(has_table_privilege(log.oid, 'SELECT'), true)
  FROM (SELECT 1) AS one
  LEFT JOIN pg_namespace n ON n.nspname = %(schema)s
  LEFT JOIN pg_class log ON log.relnamespace = n.oid AND log.relname = 'partition_log' AND log.relkind IN ('r', 'p')
"""
# Live rows (not dropped) whose table exists: attached partitions, and detached ones kept (grace, keep_table).
_MANAGED = """
SELECT l.parent_schema, l.parent_name, l.partition_schema, l.partition_name
  FROM {log} AS l
  JOIN pg_namespace n ON n.nspname = l.partition_schema
  JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = l.partition_name AND c.relkind IN ('r', 'p')
 WHERE l.dropped_at IS NULL
   AND (l.parent_schema, l.parent_name) IN (SELECT * FROM unnest(%(schemas)s::text[], %(names)s::text[]))
 ORDER BY l.parent_schema, l.parent_name, l.range_start, l.partition_name
"""


def read(conn: Connection, state_schema: str, tables: Sequence[TableRef], *, timeout_ms: int = 10_000,
         lock_timeout_ms: int = 100) -> dict[TableRef, list[TableRef]]:
    """The managed partitions of these tables, in one query on partition_log (none when it does not exist yet),
    READ ONLY and bounded by statement_timeout and lock_timeout."""
    from .catalog import consistent_view

    refs = sorted(set(tables))
    found: dict[TableRef, list[TableRef]] = {}
    try:
        with consistent_view(conn) as cur:
            *_, exists, readable = cur.execute(_START, {"timeout": f"{timeout_ms}ms", "lock_timeout": f"{lock_timeout_ms}ms",
                                                        "schema": state_schema}).fetchone()
            if not exists:
                return found
            if not readable:
                raise CatalogError(f"permission denied for table {state_schema}.partition_log: exclusions need SELECT on it")
            query = sql.SQL(_MANAGED).format(log=sql.Identifier(state_schema, "partition_log"))
            rows = cur.execute(query, {"schemas": [r.schema for r in refs], "names": [r.name for r in refs]}).fetchall()
    except (psycopg.errors.LockNotAvailable, psycopg.errors.QueryCanceled) as exc:
        raise read_failure(exc, f"{state_schema}.partition_log", timeout_ms, lock_timeout_ms) from None
    for parent_schema, parent_name, schema, name in rows:
        found.setdefault(TableRef(parent_schema, parent_name), []).append(TableRef(schema, name))
    return found


# --- Rendering ---


def render(found: Sequence[TableExclusion], fmt: str, env: str) -> str:
    if fmt == "atlas":
        return atlas_text(found, env)
    if fmt == "pg_dump":
        return pg_dump_text(found)
    if fmt == "json":
        return json_text(found, env)
    return regex_text(found)


def regex_text(found: Sequence[TableExclusion]) -> str:
    """One anchored regex per line: each table's generated names, then the managed partitions they miss."""
    lines = []
    for t in found:
        lines.append(t.pattern)
        lines.extend(exact_regex(p) for p in t.unmatched)
    return "".join(line + "\n" for line in lines)


def _csv_part(text: str) -> str:
    """A part of an Atlas pattern: Atlas splits patterns at dots as CSV does, so a part holding '.' or '"' is quoted."""
    return '"' + text.replace('"', '""') + '"' if any(c in text for c in '."\r\n') else text


def _hcl(text: str) -> str:
    """An HCL string literal (no template sequences)."""
    body = text.replace("\\", "\\\\").replace('"', '\\"').replace("${", "$${").replace("%{", "%%{")
    return '"' + body.replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t") + '"'


def atlas_globs(t: TableExclusion) -> list[tuple[str, str]]:
    """(qualified, unqualified) Atlas patterns for a table: its generated names, then the partitions they miss."""
    pairs = [(f"{_csv_part(t.table.schema)}.{_csv_part(g)}", _csv_part(g)) for g in name_globs(t.table.name, t.converting, t.ids)]
    pairs += [(f"{_csv_part(p.schema)}.{_csv_part(_glob_escape(p.name))}", _csv_part(_glob_escape(p.name)))
              for p in t.unmatched]
    return pairs


def atlas_text(found: Sequence[TableExclusion], env: str) -> str:
    """An `exclude` attribute for an env block of atlas.hcl (or values for --exclude)."""
    lines = [f"# partman exclusions (env {env}): the partitions partman manages and the names it gives new ones.",
             "# Schema-qualified patterns apply when Atlas inspects a database (a URL without search_path), the bare",
             "# ones when it inspects one schema (search_path=...): both are listed, each harmless in the other scope.",
             "exclude = ["]
    for t in found:
        for qualified, bare in atlas_globs(t):
            lines += [f"  {_hcl(qualified)},", f"  {_hcl(bare)},"]
    lines.append("]")
    return "\n".join(lines) + "\n"


def pg_dump_patterns(t: TableExclusion) -> list[str]:
    return name_psql(t.table, t.converting, t.ids) + [f"{_psql_quoted(p.schema)}.{_psql_quoted(p.name)}" for p in t.unmatched]


def pg_dump_text(found: Sequence[TableExclusion]) -> str:
    """One pg_dump option per line, shell-quoted: paste into a command line, or `| xargs pg_dump …`."""
    return "".join(shlex.quote(f"--exclude-table={p}") + "\n" for t in found for p in pg_dump_patterns(t))


def json_text(found: Sequence[TableExclusion], env: str) -> str:
    body = {"format_version": 1, "env": env, "tables": [
        {"table": str(t.table), "pattern": t.pattern, "partitions": [str(p) for p in t.partitions],
         "unmatched": [str(p) for p in t.unmatched]} for t in found]}
    return json.dumps(body, indent=2) + "\n"
