"""Table specs: YAML files validated by JSON Schema and the checks it cannot express (identifier bytes,
type syntax, span limits), overlaid for one environment, frozen into TableSpec values."""

from __future__ import annotations

import hashlib
import json
import os
import re
import unicodedata
from dataclasses import dataclass, fields
from datetime import date, datetime
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Optional, Union
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .errors import SpecError
from .intervals import Interval, Span
from .encoded import encoding_problem
from .widths import Reach
from .model import KeyType, TableRef
from .yamldoc import Document, JsonPath, load, schema_errors, shown, validator_for

SPEC_SUFFIXES = (".yaml", ".yml")
MAX_IDENTIFIER_BYTES = 63  # NAMEDATALEN - 1: the server silently cuts longer names, and plans never converge
DEFAULT_GRACE = "7 days"
# How far ahead partitions are made when a spec says no premake, per interval. None: through the end of next
# calendar year, the original requirement's rule (and the SQL face's, whose partition_config premake NULL means
# it). A daily table kept that far ahead would be 367 to 731 tables; pg_partman's 4 intervals would be too
# little warning for a monthly one. README: Specs.
DEFAULT_PREMAKE: dict[Interval, Optional[str]] = {
    Interval.DAILY: "30 days",
    Interval.WEEKLY: "12 weeks",
    Interval.MONTHLY: None,
    Interval.QUARTERLY: None,
    Interval.YEARLY: None,
}
# The environment of a database used without a project file: only the base spec applies.
DEFAULT_ENV = "default"
SPAN_KEYS = ("premake", "retention", "retention_grace")
_OPTIONAL_FLAGS = ("adopt", "convert", "retention_keep_table")
DEFAULT_ANALYZE = "after_changes"
_DEFAULTS = {"tablespace": None, "storage_parameters": (), "unlogged": None, "conform": True, "on_reference": "block",
             "key_encoding": None, "history_from": None}
# Storage parameters of a table (and, prefixed toast., of its TOAST table) a spec may give its partitions, with the
# values the server takes: (low, high) for numbers (an int where both are ints), "bool", or the words allowed.
# The last two in the list are PostgreSQL 18's; an older server refuses them at apply.
_BIG = 2**31 - 1
STORAGE_PARAMETERS: dict[str, Any] = {
    "fillfactor": (10, 100), "toast_tuple_target": (128, 8160), "parallel_workers": (0, 1024),
    "autovacuum_enabled": "bool", "autovacuum_vacuum_threshold": (0, _BIG), "autovacuum_vacuum_scale_factor": (0.0, 100.0),
    "autovacuum_vacuum_insert_threshold": (-1, _BIG), "autovacuum_vacuum_insert_scale_factor": (0.0, 100.0),
    "autovacuum_analyze_threshold": (0, _BIG), "autovacuum_analyze_scale_factor": (0.0, 100.0),
    "autovacuum_vacuum_cost_delay": (-1.0, 100.0), "autovacuum_vacuum_cost_limit": (-1, 10000),
    "autovacuum_freeze_min_age": (0, 1_000_000_000), "autovacuum_freeze_max_age": (100_000, 2_000_000_000),
    "autovacuum_freeze_table_age": (0, 2_000_000_000), "autovacuum_multixact_freeze_min_age": (0, 1_000_000_000),
    "autovacuum_multixact_freeze_max_age": (10_000, 2_000_000_000),
    "autovacuum_multixact_freeze_table_age": (0, 2_000_000_000), "log_autovacuum_min_duration": (-1, _BIG),
    "user_catalog_table": "bool", "vacuum_index_cleanup": ("auto", "on", "off", "true", "false"),
    "vacuum_truncate": "bool",
    "autovacuum_vacuum_max_threshold": (-1, _BIG), "vacuum_max_eager_freeze_failure_rate": (0.0, 1.0),
}
TOAST_PARAMETERS = frozenset(p for p in STORAGE_PARAMETERS if p.startswith(("autovacuum_", "vacuum_", "log_"))
                             and "analyze" not in p)


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    not_null: bool = False
    default: Optional[str] = None
    identity: Optional[str] = None  # "always" | "by default"


@dataclass(frozen=True)
class TableSpec:
    """One partitioned table as declared for one environment."""

    table: TableRef
    partition_key: str
    interval: Optional[Interval]  # None for an id table, which has a width instead
    premake: Optional[Union[Span, Reach]]  # None: through the end of next calendar year (see DEFAULT_PREMAKE)
    retention: Optional[Union[Span, Reach]]  # a Reach (ids, partitions) for an id table, a Span for the rest
    retention_grace: Span
    timezone: str
    columns: tuple[Column, ...]
    primary_key: tuple[str, ...]
    env: str
    source: str  # file:line of the table key, for messages
    move_default_rows: bool = False
    adopt: bool = False  # adopt: existing: attached partitions partman did not make become its own
    convert: bool = False  # convert: attach: a plain table becomes the first partition of a new parent
    retention_keep_table: bool = False  # retention detaches and keeps; never drops
    analyze: str = "after_changes"  # 'after_changes', 'never', or an age ('7 days'): when apply analyzes the parent
    # What partitions get beyond the parent's shape (conformance.py): a tablespace (None: the parent's), storage
    # parameters (a partitioned parent cannot hold them), UNLOGGED (None: as the parent).
    tablespace: Optional[str] = None
    storage_parameters: tuple[tuple[str, str], ...] = ()
    unlogged: Optional[bool] = None
    conform: bool = True  # plan conforms existing partitions that drifted from the parent; drift reports them
    on_reference: str = "block"  # retention of a partition other tables' rows reference: 'block' or 'cascade'
    key_encoding: Optional[str] = None  # an integer or uuid key holding a time (encoded.ENCODINGS)
    history_from: Optional[Union[date, int]] = None  # the plan covers the past from this local date's (id's) slot on
    width: Optional[int] = None  # an id table (widths.py): key values per partition
    origin: int = 0  # an id table's grid: slots start at origin + k * width

    @property
    def analyze_age(self) -> Optional[Span]:
        """The age past which the parent's statistics are stale, when the spec gives one."""
        return None if self.analyze in ("after_changes", "never") else Span.parse(self.analyze)

    @property
    def declared_key_type(self) -> Optional[KeyType]:
        for column in self.columns:
            if column.name == self.partition_key:
                return KeyType.from_spec(column.type)
        return None

    def to_dict(self, *, with_source: bool = False) -> dict[str, Any]:
        """The spec as planned, in a stable JSON-able form (for fingerprints and plan files)."""
        # Field by field, not asdict: asdict deep-copies every value, and a plan fingerprints every spec.
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data["columns"] = tuple(dict(vars(c)) for c in self.columns)
        data["table"] = str(self.table)
        data["interval"] = self.interval.value if self.interval else None
        for key in ("premake", "retention", "retention_grace"):
            span = getattr(self, key)
            data[key] = str(span) if span else None
        if not with_source:
            data.pop("source")
        for key in _OPTIONAL_FLAGS:  # absent when off: a spec that does not use them keeps its fingerprint
            if not data[key]:
                data.pop(key)
        if data["analyze"] == DEFAULT_ANALYZE:
            data.pop("analyze")
        for key, default in _DEFAULTS.items():  # absent when default, as above
            if data[key] == default:
                data.pop(key)
        if "storage_parameters" in data:
            data["storage_parameters"] = dict(self.storage_parameters)
        if "history_from" in data and isinstance(self.history_from, date):
            data["history_from"] = self.history_from.isoformat()
        if self.width is None:  # absent for a time table: its fingerprint stays as it was
            del data["width"], data["origin"]
        else:
            del data["interval"]
        return data

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TableSpec":
        return cls(
            table=TableRef.parse(d["table"]),
            partition_key=d["partition_key"],
            interval=Interval(d["interval"]) if d.get("interval") else None,
            premake=_reach(d, "premake"),
            retention=_reach(d, "retention"),
            retention_grace=Span.parse(d["retention_grace"]),
            timezone=d["timezone"],
            columns=tuple(Column(**c) for c in d["columns"]),
            primary_key=tuple(d["primary_key"]),
            env=d["env"],
            source=d.get("source", "(plan file)"),
            move_default_rows=d.get("move_default_rows", False),
            **{key: bool(d.get(key, False)) for key in _OPTIONAL_FLAGS},
            analyze=d.get("analyze", DEFAULT_ANALYZE),
            tablespace=d.get("tablespace"),
            storage_parameters=tuple(sorted((d.get("storage_parameters") or {}).items())),
            unlogged=d.get("unlogged"),
            conform=d.get("conform", True),
            on_reference=d.get("on_reference", "block"),
            key_encoding=d.get("key_encoding"),
            history_from=_history(d.get("history_from")),
            width=d.get("width"),
            origin=d.get("origin", 0),
        )

    def fingerprint(self) -> str:
        """The spec's identity in a saved plan; worked out once per spec value (a plan asks it of every table)."""
        known = self.__dict__.get("_fingerprint")
        if known is None:
            known = hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:16]
            object.__setattr__(self, "_fingerprint", known)  # a cache beside the fields: eq and repr never see it
        return known


def _reach(d: dict, key: str) -> Optional[Union[Span, Reach]]:
    """A premake or retention from a plan file: in ids or partitions for an id table, a duration for the rest."""
    if not d.get(key):
        return None
    return Reach.parse(d[key]) if d.get("width") else Span.parse(d[key])


def _history(value: Any) -> Optional[Union[date, int]]:
    if value is None or isinstance(value, int):
        return value
    return date.fromisoformat(value)


def default_premake(interval: Interval) -> Optional[Span]:
    """The premake of a spec that gives none (after its environment's overrides: an override of interval
    alone gets that interval's default)."""
    text = DEFAULT_PREMAKE[interval]
    return Span.parse(text) if text else None


@lru_cache(maxsize=None)
def schema() -> dict:
    return json.loads(resources.files("partman").joinpath("schema/partman.schema.json").read_text())


@lru_cache(maxsize=None)
def _validator() -> Any:
    # jsonschema only for invalid files: it reports every error; the generated check is faster to load
    return validator_for(schema())


def quick_valid(data: Any) -> bool:
    """The generated validator (partman/schema/_spec_validator.py): the answer without loading jsonschema."""
    from fastjsonschema import JsonSchemaException

    from .schema._spec_validator import validate

    try:
        validate(data)
    except JsonSchemaException:
        return False
    return True


def spec_files(paths: Iterable[Path]) -> list[Path]:
    """Spec files named directly, and those found under named directories, in a stable order."""
    files: list[Path] = []
    for path in paths:
        try:
            files.extend(_files_at(path))
        except (OSError, ValueError) as exc:  # a name too long, a NUL in it, a directory that cannot be listed
            raise SpecError(f"{path}: cannot read: {getattr(exc, 'strerror', None) or exc}") from None
    return files


def _files_at(path: Path) -> list[Path]:
    if path.is_dir():
        found = sorted(_walk(path))
        if not found:
            raise SpecError(f"{path}: no spec files (*.yaml, *.yml) in this directory")
        return found
    if path.exists():
        return [path]
    raise SpecError(f"{path}: no such file or directory")


def _walk(directory: Path) -> Iterator[Path]:
    """Spec files below a directory; one that cannot be listed is an error, not silently empty (rglob skips it)."""
    def fail(exc: OSError) -> None:
        raise exc

    for root, _, names in os.walk(directory, onerror=fail):
        for name in names:
            if os.path.splitext(name)[1] in SPEC_SUFFIXES:  # as Path.suffix reads it, without a Path per name
                file = Path(root) / name
                if file.is_file():
                    yield file


def load_specs(paths: Iterable[Path], env: str, known_envs: Optional[Iterable[str]] = None) -> list[TableSpec]:
    """Load, validate and overlay every spec; raise one SpecError listing every problem found."""
    docs: list[Document] = []
    problems: list[str] = []
    for file in spec_files(paths):
        try:
            doc = load(file)
        except SpecError as exc:
            problems.append(exc.message)
            continue
        if not quick_valid(doc.data):
            errors = schema_errors(doc, _validator())
            problems.extend(errors or [f"{file}:1: does not match the schema"])
            continue
        found = beyond_schema(doc)
        problems.extend(found)
        if not found:
            docs.append(doc)
    if problems:
        raise SpecError("\n".join(problems))

    declared = set(known_envs) if known_envs is not None else None
    mentioned = {name for doc in docs for name in doc.data.get("environments", {})}
    if declared is not None:
        for doc in docs:
            for name in doc.data.get("environments", {}):
                if name not in declared:
                    problems.append(
                        f"{doc.where(('environments', name))}: environment {shown(name)} is not in the project file"
                        f" (known: {', '.join(sorted(declared))})"
                    )
    known = declared if declared is not None else mentioned | {DEFAULT_ENV}
    if env not in known:
        listing = ", ".join(sorted(known)) or "none declared"
        raise SpecError(f"unknown environment {shown(env)} (known: {listing})")

    specs: list[TableSpec] = []
    seen: dict[TableRef, str] = {}
    for doc in docs:
        try:
            spec = _build(doc, env)
        except SpecError as exc:
            problems.append(exc.message)
            continue
        if spec.table in seen:
            problems.append(f"{spec.source}: table {spec.table} is already declared at {seen[spec.table]}")
            continue
        seen[spec.table] = spec.source
        specs.append(spec)
    if problems:
        raise SpecError("\n".join(problems))
    return specs


# --- What the schema cannot say: checked on every value as written, top level and every environment's. ---


def beyond_schema(doc: Document) -> list[str]:
    """Problems of a schema-valid spec that JSON Schema cannot express, one 'file:line: ...' each, in file order."""
    found: list[tuple[int, str]] = []
    for at, settings in _settings(doc.data):
        for key, value in settings.items():
            check = _CHECKS.get(key)
            for rel, message in check(value) if check else ():
                found.append((doc.line(at + (key,) + rel), doc.problem(at + (key,) + rel, message)))
    return [message for _, message in sorted(found, key=lambda item: item[0])]


def _settings(data: dict) -> Iterator[tuple[JsonPath, dict]]:
    yield (), data
    for name, overrides in data.get("environments", {}).items():
        yield ("environments", name), overrides


Problems = Iterator[tuple[JsonPath, str]]  # (path below the key, message)


def _table_problems(text: str) -> Problems:
    table = TableRef.parse(text)
    for part in (table.schema, table.name):
        problem = identifier_problem(part)
        if problem:
            yield (), problem


def _identifier_problems(name: str) -> Problems:
    problem = identifier_problem(name)
    if problem:
        yield (), problem


def _column_problems(columns: list) -> Problems:
    for i, column in enumerate(columns):
        problem = identifier_problem(column["name"])
        if problem:
            yield (i, "name"), problem
        if not is_type_name(column["type"]):
            yield (i, "type"), f"{shown(column['type'])} is not a type name: {TYPE_NAMES}"


def _primary_key_problems(names: list) -> Problems:
    for i, name in enumerate(names):
        problem = identifier_problem(name)
        if problem:
            yield (i,), problem


def _span_problems(text: Optional[str]) -> Problems:
    if text is None:  # retention: null, kept forever
        return
    try:
        Span.parse(text)
    except ValueError as exc:
        yield (), str(exc)


def _reach_problems(value: Any) -> Problems:
    """premake and retention: a duration, or (for an id table, which _build holds to it) ids or partitions."""
    if value is None or isinstance(value, int):
        return
    problems = list(_span_problems(value))
    if not problems:
        return
    try:
        Reach.parse(value)
    except ValueError as exc:
        # A value counting ids or partitions gets the reach's reason (too long), any other the duration's.
        yield from ([((), str(exc))] if re.search(r"\d\s*(ids?|partitions?)\s*$", str(value)) else problems)


_CHECKS = {
    "table": _table_problems,
    "partition_key": _identifier_problems,
    "columns": _column_problems,
    "primary_key": _primary_key_problems,
    **{key: _span_problems for key in SPAN_KEYS},
    "premake": _reach_problems,
    "retention": _reach_problems,
    "analyze": lambda v: _span_problems(None if v in ("after_changes", "never") else v),
    "tablespace": _identifier_problems,
    "storage_parameters": lambda v: _storage_problems(v),
}


def _storage_problems(parameters: dict) -> Problems:
    for name, value in parameters.items():
        head, dot, tail = name.partition(".")
        known = (tail in TOAST_PARAMETERS) if dot and head == "toast" else (not dot and name in STORAGE_PARAMETERS)
        if not known:
            import difflib  # only for a spec that needs the suggestion

            close = difflib.get_close_matches(name, sorted(set(STORAGE_PARAMETERS) | {f"toast.{p}" for p in TOAST_PARAMETERS}), 1)
            yield (name,), f"{shown(name)} is not a storage parameter of a table{f' (did you mean {close[0]}?)' if close else ''}"
        else:
            problem = _value_problem(STORAGE_PARAMETERS[tail if dot else name], value)
            if problem:
                yield (name,), problem


def _value_problem(kind: Any, value: Any) -> Optional[str]:
    """Why the server would refuse this value for a parameter of this kind, or None."""
    text = parameter_text(value)
    if kind == "bool":
        ok = isinstance(value, bool) or text.lower() in ("on", "off", "true", "false", "yes", "no", "1", "0")
        return None if ok else f"{shown(text)} is not a boolean"
    if isinstance(kind, tuple) and isinstance(kind[0], str):
        return None if text.lower() in kind else f"{shown(text)} is not one of {', '.join(kind)}"
    low, high = kind
    whole = isinstance(low, int)
    try:
        number = int(text) if whole else float(text)
    except ValueError:
        return f"{shown(text)} is not {'a whole number' if whole else 'a number'}"
    if isinstance(value, bool) or not low <= number <= high:
        return f"{shown(text)} is outside {low} to {high}"
    return None



def parameter_text(value: Any) -> str:
    """A storage parameter's value as the server is given it: YAML's true is 'true', 0.05 is '0.05'."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def identifier_problem(name: str) -> Optional[str]:
    """Why the server would not keep this name exactly as written, or None."""
    if not name:
        return "an identifier cannot be empty"
    if any(unicodedata.category(c) == "Cc" for c in name):  # NUL cannot be stored; the rest is never meant
        return f"{shown(name)} holds a control character; identifiers may not"
    if len(name.encode()) > MAX_IDENTIFIER_BYTES:
        return f"{shown(name)} is longer than {MAX_IDENTIFIER_BYTES} bytes (PostgreSQL would cut it)"
    return None


# Column types are SQL that reaches CREATE TABLE as written, so only type names pass: a name (schema.name,
# or "quoted") with an optional modifier and array suffixes, or one of SQL's multi-word type names.
# Nothing else can follow, so no clause (REFERENCES, DEFAULT, COLLATE, ...) rides along.
_TYPE = re.compile(
    r"""
    (?:
        double \s+ precision
      | (?:character | char) \s+ varying {p}
      | national \s+ (?:character | char) (?:\s+ varying)? {p}
      | nchar \s+ varying {p}
      | bit \s+ varying {p}
      | (?:timestamp | time) {p} (?:\s+ (?:with | without) \s+ time \s+ zone)?
      | interval (?:\s+ (?:year \s+ to \s+ month | day \s+ to \s+ (?:hour | minute) | hour \s+ to \s+ minute
                         | (?:day | hour | minute) \s+ to \s+ second {p} | second {p} | year | month | day | hour
                         | minute) | {p})
      | {name} (?: \. {name})? (?: \s* \( \s* {arg} (?: \s* , \s* {arg})? \s* \) )?
    )
    (?: \s* \[ \s* \d* \s* \] )*
    """.format(
        p=r"(?: \s* \( \s* \d+ \s* \) )?",  # (precision)
        name=r'(?: [a-z_][a-z0-9_$]* | "(?:[^"\x00-\x1f\x7f]|"")+" )',
        arg=r"(?: -?\d+ | [a-z_][a-z0-9_]* )",  # numeric(10, 2), numeric(5, -2), PostGIS geometry(Point, 4326)
    ),
    re.IGNORECASE | re.VERBOSE,
)
TYPE_NAMES = (
    "a type may be a name such as 'bigint' or 'myschema.mytype', with an optional (n) or (n, m) and [] suffixes,"
    " or a standard multi-word name such as 'double precision', 'character varying(n)', 'bit varying(n)',"
    " 'timestamp(p) with time zone', 'time without time zone' or 'interval year to month'"
)


def is_type_name(text: str) -> bool:
    return _TYPE.fullmatch(text) is not None


def _columns(merged: dict) -> tuple[Column, ...]:
    return tuple(
        Column(
            name=c["name"],
            type=c["type"],
            not_null=bool(c.get("not_null", False)),
            default=None if c.get("default") is None else str(c["default"]),
            identity=c.get("identity"),
        )
        for c in merged.get("columns", ())
    )


def _build(doc: Document, env: str) -> TableSpec:
    data = doc.data
    overrides = data.get("environments", {}).get(env, {})
    merged = {**data, **overrides}

    def where(key: str) -> str:
        at = ("environments", env, key) if key in overrides else (key,)
        return doc.where(at)

    table = TableRef.parse(merged["table"])
    tz = merged.get("timezone", "UTC")
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise SpecError(f"{where('timezone')}: unknown time zone {shown(tz)}") from None

    columns = _columns(merged)
    key = merged["partition_key"]
    primary_key = tuple(merged.get("primary_key", ()))
    if columns:
        names = [c.name for c in columns]
        if len(set(names)) != len(names):
            raise SpecError(f"{where('columns')}: a column is declared twice")
        if key not in names:
            raise SpecError(f"{where('partition_key')}: partition key {shown(key)} is not among the columns")
        key_column = columns[names.index(key)]
        key_type = KeyType.from_spec(key_column.type)
        if key_type is None:
            raise SpecError(
                f"{where('columns')}: partition key {shown(key)} has type {shown(key_column.type)};"
                " partman manages timestamptz, timestamp and date keys, and integer, bigint and uuid keys that hold"
                " a time (key_encoding)"
            )
        problem = encoding_problem(merged.get("key_encoding"), key_type, merged.get("width") is not None)
        if problem:
            raise SpecError(f"{where(_problem_key(merged))}: {problem}")
        missing = [c for c in primary_key if c not in names]
        if missing:
            raise SpecError(f"{where('primary_key')}: primary key column {shown(missing[0])} is not among the columns")
    if primary_key and key not in primary_key:
        raise SpecError(
            f"{where('primary_key')}: the primary key must include the partition key {shown(key)}"
            " (PostgreSQL requires it on partitioned tables)"
        )

    ids = _layout_kind(merged, where)
    interval = None if ids else Interval(merged["interval"])
    premake, retention = (_reach_of(merged, key, where, ids) for key in ("premake", "retention"))
    return TableSpec(
        table=table,
        partition_key=key,
        interval=interval,
        premake=default_premake(interval) if premake is None and not ids else premake,
        retention=retention,
        retention_grace=Span.parse(merged.get("retention_grace", DEFAULT_GRACE)),
        timezone=tz,
        columns=columns,
        primary_key=primary_key,
        env=env,
        source=doc.where(("table",)),
        move_default_rows=bool(merged.get("move_default_rows", False)),
        adopt=merged.get("adopt", "none") == "existing",
        convert=merged.get("convert") == "attach",
        retention_keep_table=bool(merged.get("retention_keep_table", False)),
        analyze=str(merged.get("analyze", DEFAULT_ANALYZE)),
        tablespace=merged.get("tablespace"),
        storage_parameters=tuple(sorted((k, parameter_text(v)) for k, v in (merged.get("storage_parameters") or {}).items())),
        unlogged=merged.get("unlogged"),
        conform=bool(merged.get("conform", True)),
        on_reference=str(merged.get("on_reference", "block")),
        key_encoding=merged.get("key_encoding"),
        history_from=_history_from(merged.get("history_from"), where, ids),
        width=merged.get("width"),
        origin=merged.get("origin", 0) if ids else 0,
    )


def _problem_key(merged: dict) -> str:
    return "key_encoding" if merged.get("key_encoding") else "width" if merged.get("width") is not None else "columns"


def _layout_kind(merged: dict, where: Callable[[str], str]) -> bool:
    """True for an id table (width), False for a time table (interval); an environment may not mix the two."""
    if merged.get("width") is not None and merged.get("interval") is not None:
        return _fail(f"{where('width')}: a table has an interval (a time key) or a width (an id key), not both")
    if merged.get("width") is None and merged.get("origin") is not None:
        return _fail(f"{where('origin')}: origin aligns the partitions of an id table; it needs a width")
    return merged.get("width") is not None


def _reach_of(merged: dict, key: str, where: Callable[[str], str], ids: bool) -> Optional[Union[Span, Reach]]:
    """premake or retention: ids or partitions for an id table, a duration for a time table."""
    value = merged.get(key)
    if value is None:
        return None
    if ids:
        try:
            return Reach.parse(value)
        except ValueError:
            return _fail(f"{where(key)}: {key} of an id table (width) is a number of ids or partitions, such as"
                         f" '4 partitions' or 5000000, not {shown(value)}")
    if isinstance(value, int) or (list(_span_problems(value)) and _is_reach(value)):
        return _fail(f"{where(key)}: {key} {shown(value)} counts ids or partitions, which only an id table (width)"
                     " has; a time table's is a duration such as '18 months'")
    return Span.parse(value)


def _is_reach(value: Any) -> bool:
    try:
        Reach.parse(value)
    except ValueError:
        return False
    return True


def _fail(message: str):
    raise SpecError(message)


def _history_from(value: Any, where: Callable[[str], str], ids: bool = False) -> Optional[Union[date, int]]:
    """A date as YAML reads one (2024-01-01), or the same written as a string; an id for an id table."""
    if ids:
        if value is None or (isinstance(value, int) and not isinstance(value, bool)):
            return value
        raise SpecError(f"{where('history_from')}: history_from of an id table (width) is an id, not"
                        f" {shown(value.isoformat() if isinstance(value, date) else value)}")
    if value is None or (isinstance(value, date) and not isinstance(value, datetime)):
        return value
    try:
        if isinstance(value, str) and re.fullmatch(r"\d{4}-\d{2}-\d{2}", value.strip()):
            return date.fromisoformat(value.strip())
    except ValueError:
        pass
    written = value.isoformat() if isinstance(value, (date, datetime)) else value
    raise SpecError(f"{where('history_from')}: history_from {shown(written)} is not a date (YYYY-MM-DD)")
