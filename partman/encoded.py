"""Keys that hold a time in another type: epoch numbers (seconds, milliseconds or microseconds since 1970 in an
integer or bigint column) and UUIDv7 (RFC 9562: a uuid whose first 48 bits are milliseconds since 1970). Each
encoding maps an instant to the key value that stands for it, and a key value back to its instant; the grid is
the calendar's (timeline.py), computed as instants in the spec's time zone and written as the values they encode.

A UUIDv7 bound is the smallest UUID of its millisecond: version 7, variant 10, every other bit 0. Rows are placed
by their UUID's order, which is its timestamp's first: a UUIDv7 made at an instant sorts at or after that instant's
bound. A UUID of another version carries no time; where its bits put it is not where its row was made, so such a
row is refused by a range partition of its own (the default partition takes it, if the table has one)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Optional
from uuid import UUID

from .model import Bounds, KeyType, iso

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_INT_RANGE = {KeyType.SMALLINT: 2 ** 15, KeyType.INTEGER: 2 ** 31, KeyType.BIGINT: 2 ** 63}
_V7 = (0x7 << 76) | (0b10 << 62)  # version and variant bits of a UUIDv7
_MS = (1 << 48) - 1


@dataclass(frozen=True)
class Epoch:
    """Whole units since 1970-01-01 00:00 UTC: 1 for seconds, 1,000 for milliseconds, 1,000,000 for microseconds."""

    per_second: int
    key_type: KeyType

    def encode(self, instant: datetime) -> int:
        # Integer arithmetic on the timedelta, never float timestamp(): exact at every unit.
        return (instant - EPOCH) // (timedelta(seconds=1) / self.per_second)

    def decode(self, value: int) -> datetime:
        return EPOCH + timedelta(microseconds=value * (1_000_000 // self.per_second))

    def fits(self, value: int) -> bool:
        limit = _INT_RANGE[self.key_type]
        return -limit <= value < limit

    @property
    def first(self) -> int:
        """The smallest value of the column's type."""
        return -_INT_RANGE[self.key_type]

    @property
    def last(self) -> int:
        """The largest value of the column's type."""
        return _INT_RANGE[self.key_type] - 1


@dataclass(frozen=True)
class Uuid7:
    """The smallest UUIDv7 of each millisecond."""

    key_type: KeyType = KeyType.UUID

    def encode(self, instant: datetime) -> UUID:
        ms = (instant - EPOCH) // timedelta(milliseconds=1)
        return UUID(int=(ms << 80) | _V7)

    def decode(self, value: UUID) -> datetime:
        return EPOCH + timedelta(milliseconds=value.int >> 80)

    def fits(self, value: UUID) -> bool:
        """Only the bounds partman reads as times: the smallest UUIDv7 of a millisecond since 1970."""
        return value.int & ~(_MS << 80) == _V7


# key_encoding: the name a spec gives, and the key types it may be used with.
ENCODINGS = {
    "epoch_s": (1, (KeyType.INTEGER, KeyType.BIGINT)),
    "epoch_ms": (1_000, (KeyType.BIGINT,)),
    "epoch_us": (1_000_000, (KeyType.BIGINT,)),
    "uuidv7": (None, (KeyType.UUID,)),
}


def codec(encoding: str, key_type: KeyType):
    per_second, _ = ENCODINGS[encoding]
    return Uuid7() if per_second is None else Epoch(per_second, key_type)


def encoding_problem(encoding: Optional[str], key_type: KeyType, width: bool = False) -> Optional[str]:
    """Why a key of this type cannot be laid out so: in this encoding, or by width (None: it can). A time key takes
    neither; an integer key takes one of the two; a uuid key is UUIDv7."""
    if key_type.is_time:
        if width:
            return f"width is for integer keys holding ids; a {key_type.value} key takes an interval"
        return f"key_encoding {encoding} is for integer, bigint and uuid keys; a {key_type.value} key is a time already" \
            if encoding else None
    if width:
        if key_type is KeyType.UUID:
            return "width is for integer keys holding ids; a uuid key is partitioned by the time of its UUIDv7"
        return f"key_encoding {encoding} lays out a time, width lays out ids: a table has one or the other" \
            if encoding else None
    if encoding is None:
        if key_type is KeyType.UUID:
            return None  # uuidv7, the only encoding a uuid has
        return (f"a {key_type.value} partition key needs a width (ids: `width: 1000000`) or a key_encoding (a time:"
                " epoch_s, epoch_ms or epoch_us) with its interval")
    if key_type not in ENCODINGS[encoding][1]:
        kinds = " or ".join(k.value for k in ENCODINGS[encoding][1])
        return f"key_encoding {encoding} needs {'an' if kinds[0] in 'aeio' else 'a'} {kinds} key, not {key_type.value}"
    return None


def default_encoding(key_type: KeyType, encoding: Optional[str]) -> Optional[str]:
    return "uuidv7" if encoding is None and key_type is KeyType.UUID else encoding


def uuid7(instant: datetime, random_bits: int = 0) -> UUID:
    """A UUIDv7 of an instant, with these 74 random bits (tests make rows with it where the server has no uuidv7())."""
    ms = (instant - EPOCH) // timedelta(milliseconds=1)
    rand_a, rand_b = (random_bits >> 62) & 0xFFF, random_bits & ((1 << 62) - 1)
    return UUID(int=(ms << 80) | (0x7 << 76) | (rand_a << 64) | (0b10 << 62) | rand_b)


def shown(b: Bounds, key_type: Optional[KeyType] = None, encoding: Optional[str] = None) -> str:
    """A range as the key's values; for a key that encodes a time, the instants they stand for beside them."""
    values = f"[{iso(b.start) or 'MINVALUE'}, {iso(b.end) or 'MAXVALUE'})"
    if not encoding or key_type is None:
        return values
    decode = codec(encoding, key_type).decode
    start, end = (iso(decode(v)) if v is not None else edge for v, edge in ((b.start, "MINVALUE"), (b.end, "MAXVALUE")))
    return f"{values} = [{start}, {end})"
