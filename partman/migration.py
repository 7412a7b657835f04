"""The SQL face's migration (sql/V1__…): Flyway placeholders, rendering by Flyway's rules, and its state section.

The state tables are defined once, in the migration's `partman:state` section; partman runs that section itself
(composed with psycopg.sql), so both faces create identical tables."""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from typing import Callable, Mapping, Optional
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from psycopg import sql

from .errors import SpecError

MIGRATION = "V1__create_or_manage_partitions.sql"
STATE_PLACEHOLDER = "${partitioning.state_schema}"
_PLACEHOLDER = re.compile(r"\$\{([^}]*)\}")
_IDENT = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def _zone(value: str) -> bool:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return "'" not in value


@dataclass(frozen=True)
class Placeholder:
    default: Optional[str]
    valid: Callable[[str], object]
    expected: str


# Flyway substitutes text, so every value is held to a form that means the same as an identifier and
# inside a literal: no quoting is ever needed, and nothing a value holds can change the SQL around it.
PLACEHOLDERS: dict[str, Placeholder] = {
    "partitioning.prefix": Placeholder(None, _IDENT.match, "a lower-case identifier ([a-z_][a-z0-9_]*)"),
    "partitioning.schema": Placeholder("public", _IDENT.match, "a lower-case identifier"),
    "partitioning.interval_months": Placeholder("1", lambda v: v in ("1", "3", "6", "12"), "1, 3, 6 or 12"),
    "partitioning.retention_months": Placeholder(
        "0", lambda v: v.isdigit() and int(v) < 100000, "a whole number of months (0: never)"
    ),
    "partitioning.timezone": Placeholder("UTC", _zone, "an IANA time zone"),
    "partitioning.state_schema": Placeholder("public", _IDENT.match, "a lower-case identifier"),
}


def source() -> str:
    return resources.files("partman").joinpath(f"sql/{MIGRATION}").read_text()


def render(values: Mapping[str, str], text: Optional[str] = None) -> str:
    """The migration with its placeholders replaced: defaults for what is not set, every value checked, and
    (Flyway's rule) an error for a placeholder that has no value; also for a --set that names none."""
    text = source() if text is None else text
    unknown = sorted(set(values) - set(PLACEHOLDERS))
    if unknown:
        raise SpecError(f"unknown placeholder '{unknown[0]}' (known: {', '.join(sorted(PLACEHOLDERS))})")
    merged = {k: v.default for k, v in PLACEHOLDERS.items() if v.default is not None} | dict(values)
    for key, value in merged.items():
        rule = PLACEHOLDERS[key]
        if not rule.valid(value):
            raise SpecError(f"placeholder {key}={value!r} is not {rule.expected}")

    def fill(match: re.Match) -> str:
        key = match.group(1)
        if key not in merged:
            line = text.count("\n", 0, match.start()) + 1
            raise SpecError(f"{MIGRATION}:{line}: placeholder ${{{key}}} has no value; pass --set {key}=…")
        return merged[key]

    return _PLACEHOLDER.sub(fill, text)


def state_section(text: Optional[str] = None) -> str:
    text = source() if text is None else text
    begin, end = "-- partman:state:begin\n", "-- partman:state:end\n"
    return text[text.index(begin) + len(begin) : text.index(end)]


def state_ddl(schema: str) -> sql.Composed:
    """The state tables' DDL, for partman's own use, with the schema composed as an identifier."""
    parts = state_section().split(STATE_PLACEHOLDER)
    assert not any(_PLACEHOLDER.search(p) for p in parts), "the state section may use only the state schema placeholder"
    pieces: list[sql.Composable] = [sql.SQL(parts[0])]
    for part in parts[1:]:
        pieces += [sql.Identifier(schema), sql.SQL(part)]
    return sql.Composed(pieces)
