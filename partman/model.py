"""Small frozen values shared by every layer: table references, key types, bounds."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timezone
from enum import Enum
from typing import Optional, Union
from uuid import UUID

# A key value: a date or timestamp for time keys, an int for epoch numbers, a UUID for UUIDv7 (encoded.py).
KeyValue = Union[date, datetime, int, UUID]


@dataclass(frozen=True, order=True, slots=True)
class TableRef:
    """A relation by schema and name; both are raw identifiers, quoted only when SQL is composed."""

    schema: str
    name: str

    @classmethod
    def parse(cls, text: str, default_schema: str = "public") -> "TableRef":
        """'name' or 'schema.name'; a name that itself holds a dot is written with the schema: 'public.a.b'."""
        schema, dot, name = text.partition(".")
        if not dot:
            return cls(default_schema, text)
        return cls(schema, name)

    def __str__(self) -> str:
        return f"{self.schema}.{self.name}"


class KeyType(str, Enum):
    """The partition key types partman manages, spelled as format_type() spells them. The integer types and uuid
    hold times in an encoding (encoded.py: epoch numbers, UUIDv7), which the spec's key_encoding names."""

    TIMESTAMPTZ = "timestamp with time zone"
    TIMESTAMP = "timestamp without time zone"
    DATE = "date"
    SMALLINT = "smallint"
    INTEGER = "integer"
    BIGINT = "bigint"
    UUID = "uuid"

    @property
    def is_time(self) -> bool:
        return self in (KeyType.TIMESTAMPTZ, KeyType.TIMESTAMP, KeyType.DATE)

    @classmethod
    def from_catalog(cls, type_name: str) -> Optional["KeyType"]:
        return cls._value2member_map_.get(type_name)  # type: ignore[return-value]

    @classmethod
    def from_spec(cls, type_name: str) -> Optional["KeyType"]:
        aliases = {
            "timestamptz": cls.TIMESTAMPTZ,
            "timestamp with time zone": cls.TIMESTAMPTZ,
            "timestamp": cls.TIMESTAMP,
            "timestamp without time zone": cls.TIMESTAMP,
            "date": cls.DATE,
            "smallint": cls.SMALLINT,
            "int2": cls.SMALLINT,
            "integer": cls.INTEGER,
            "int": cls.INTEGER,
            "int4": cls.INTEGER,
            "bigint": cls.BIGINT,
            "int8": cls.BIGINT,
            "uuid": cls.UUID,
        }
        return aliases.get(" ".join(type_name.lower().split()))


@dataclass(frozen=True, order=True)
class Bounds:
    """A half-open range [start, end) of key values; None means MINVALUE (start) or MAXVALUE (end)."""

    start: Optional[KeyValue]
    end: Optional[KeyValue]

    def overlaps(self, other: "Bounds") -> bool:
        return _lt(self.start, other.end) and _lt(other.start, self.end)

    def contains(self, value: KeyValue) -> bool:
        return (self.start is None or self.start <= value) and (self.end is None or value < self.end)


def _lt(start: Optional[KeyValue], end: Optional[KeyValue]) -> bool:
    """start < end where a None start is -inf and a None end is +inf."""
    return start is None or end is None or start < end


def iso(value: Optional[KeyValue]) -> Optional[str]:
    """ISO-8601; timestamps with their offset, always shown in UTC for timestamptz keys. An epoch number or a UUID
    as its own text (a string in JSON too: a bigint does not fit a JSON number's exact range)."""
    if value is None:
        return None
    if isinstance(value, (int, UUID)):
        return str(value)
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value.astimezone(timezone.utc).isoformat()
    return value.isoformat()
