"""Table specs: YAML files validated by JSON Schema, overlaid for one environment, frozen into TableSpec values."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, Iterable, Optional
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .errors import SpecError
from .intervals import Interval, Span
from .model import KeyType, TableRef
from .yamldoc import Document, load, schema_errors

SPEC_SUFFIXES = (".yaml", ".yml")
MAX_IDENTIFIER_BYTES = 63
DEFAULT_GRACE = "7 days"


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
    interval: Interval
    premake: Optional[Span]
    retention: Optional[Span]
    retention_grace: Span
    timezone: str
    columns: tuple[Column, ...]
    primary_key: tuple[str, ...]
    env: str
    source: str  # file:line of the table key, for messages
    move_default_rows: bool = False

    @property
    def declared_key_type(self) -> Optional[KeyType]:
        for column in self.columns:
            if column.name == self.partition_key:
                return KeyType.from_spec(column.type)
        return None

    def to_dict(self, *, with_source: bool = False) -> dict[str, Any]:
        """The spec as planned, in a stable JSON-able form (for fingerprints and plan files)."""
        data = asdict(self)
        data["table"] = str(self.table)
        data["interval"] = self.interval.value
        for key in ("premake", "retention", "retention_grace"):
            span = getattr(self, key)
            data[key] = str(span) if span else None
        if not with_source:
            data.pop("source")
        return data

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TableSpec":
        return cls(
            table=TableRef.parse(d["table"]),
            partition_key=d["partition_key"],
            interval=Interval(d["interval"]),
            premake=Span.parse(d["premake"]) if d["premake"] else None,
            retention=Span.parse(d["retention"]) if d["retention"] else None,
            retention_grace=Span.parse(d["retention_grace"]),
            timezone=d["timezone"],
            columns=tuple(Column(**c) for c in d["columns"]),
            primary_key=tuple(d["primary_key"]),
            env=d["env"],
            source=d.get("source", "(plan file)"),
            move_default_rows=d.get("move_default_rows", False),
        )

    def fingerprint(self) -> str:
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:16]


@lru_cache(maxsize=None)
def schema() -> dict:
    return json.loads(resources.files("partman").joinpath("schema/partman.schema.json").read_text())


@lru_cache(maxsize=None)
def _validator() -> Any:
    import jsonschema  # only for invalid files: it reports every error; the generated check is faster to load

    return jsonschema.Draft202012Validator(schema())


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
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.suffix in SPEC_SUFFIXES and p.is_file())
            if not found:
                raise SpecError(f"{path}: no spec files (*.yaml, *.yml) in this directory")
            files.extend(found)
        elif path.exists():
            files.append(path)
        else:
            raise SpecError(f"{path}: no such file or directory")
    return files


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
        if quick_valid(doc.data):
            docs.append(doc)
            continue
        errors = schema_errors(doc, _validator())
        problems.extend(errors or [f"{file}:1: does not match the schema"])
    if problems:
        raise SpecError("\n".join(problems))

    declared = set(known_envs) if known_envs is not None else None
    mentioned = {name for doc in docs for name in doc.data.get("environments", {})}
    if declared is not None:
        for doc in docs:
            for name in doc.data.get("environments", {}):
                if name not in declared:
                    problems.append(
                        f"{doc.where(('environments', name))}: environment '{name}' is not in the project file"
                        f" (known: {', '.join(sorted(declared))})"
                    )
    known = declared if declared is not None else mentioned
    if env not in known:
        listing = ", ".join(sorted(known)) or "none declared"
        raise SpecError(f"unknown environment '{env}' (known: {listing})")

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


def _build(doc: Document, env: str) -> TableSpec:
    data = doc.data
    overrides = data.get("environments", {}).get(env, {})
    merged = {**data, **overrides}

    def where(key: str) -> str:
        at = ("environments", env, key) if key in overrides else (key,)
        return doc.where(at)

    table = TableRef.parse(merged["table"])
    for part in (table.schema, table.name):
        if len(part.encode()) > MAX_IDENTIFIER_BYTES:
            raise SpecError(f"{where('table')}: '{part}' is longer than {MAX_IDENTIFIER_BYTES} bytes")
    tz = merged.get("timezone", "UTC")
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise SpecError(f"{where('timezone')}: unknown time zone '{tz}'") from None

    columns = tuple(
        Column(
            name=c["name"],
            type=c["type"],
            not_null=bool(c.get("not_null", False)),
            default=None if c.get("default") is None else str(c["default"]),
            identity=c.get("identity"),
        )
        for c in merged.get("columns", ())
    )
    key = merged["partition_key"]
    primary_key = tuple(merged.get("primary_key", ()))
    if columns:
        names = [c.name for c in columns]
        if len(set(names)) != len(names):
            raise SpecError(f"{where('columns')}: a column is declared twice")
        if key not in names:
            raise SpecError(f"{where('partition_key')}: partition key '{key}' is not among the columns")
        key_column = columns[names.index(key)]
        if KeyType.from_spec(key_column.type) is None:
            raise SpecError(
                f"{where('columns')}: partition key '{key}' has type '{key_column.type}';"
                " partman manages timestamptz, timestamp and date keys"
            )
        missing = [c for c in primary_key if c not in names]
        if missing:
            raise SpecError(f"{where('primary_key')}: primary key column '{missing[0]}' is not among the columns")
    if primary_key and key not in primary_key:
        raise SpecError(
            f"{where('primary_key')}: the primary key must include the partition key '{key}'"
            " (PostgreSQL requires it on partitioned tables)"
        )

    return TableSpec(
        table=table,
        partition_key=key,
        interval=Interval(merged["interval"]),
        premake=Span.parse(merged["premake"]) if merged.get("premake") else None,
        retention=Span.parse(merged["retention"]) if merged.get("retention") else None,
        retention_grace=Span.parse(merged.get("retention_grace", DEFAULT_GRACE)),
        timezone=tz,
        columns=columns,
        primary_key=primary_key,
        env=env,
        source=doc.where(("table",)),
        move_default_rows=bool(merged.get("move_default_rows", False)),
    )
