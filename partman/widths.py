"""Integer ranges by width: the key space of an id table (smallint, integer or bigint holding plain numbers), its
grid of fixed-width slots aligned at an origin, and how far ahead and behind a plan reaches, in ids or partitions.

An id table has no clock. Its "now" is its id mark (IdMark, read by catalog.py): the value of the
sequence that feeds the key when there is one, else the largest key in the table. Premake reaches ahead of it and
retention behind it. What can move the mark far, a sequence that jumped, an id inserted by hand past the sequence,
a sequence that other tables draw from too, is reported by the planner; the window itself stays premake wide, so a
jump never makes thousands of partitions.

partition_log keeps its bounds in timestamptz columns (shared with the SQL face, whose V1 is immutable): an id v is
stored as the instant v microseconds after 1970, the map epoch_us uses, exact and order-preserving. It holds ids
between about -6.2 * 10**16 and 2.5 * 10**17 (Python's years 1 to 9999); a bound beyond is not understood (PM205)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Iterator, Optional, Union
from zoneinfo import ZoneInfo

from .model import Bounds, KeyType, TableRef

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
TYPE_RANGE = {KeyType.SMALLINT: 2 ** 15, KeyType.INTEGER: 2 ** 31, KeyType.BIGINT: 2 ** 63}
# The ids partition_log can hold: microseconds from 1970 to Python's datetime.min and datetime.max.
LOG_FIRST = (datetime(1, 1, 1, tzinfo=timezone.utc) - EPOCH) // timedelta(microseconds=1)
LOG_LAST = (datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=timezone.utc) - EPOCH) // timedelta(microseconds=1)
DEFAULT_PREMAKE = "4 partitions"  # pg_partman's premake: four partitions ahead of the one holding the mark

_REACH = re.compile(r"^\s*(\d+)\s*(ids?|partitions?)?\s*$", re.IGNORECASE)


@dataclass(frozen=True, order=True)
class Reach:
    """How far a plan reaches from the id mark in an id table: a number of ids, or of partitions."""

    amount: int
    unit: str  # "ids" | "partitions"

    @classmethod
    def parse(cls, text: Union[str, int]) -> "Reach":
        if isinstance(text, bool):
            raise ValueError(f"not a reach: {text!r} (expected e.g. '4 partitions' or 5000000 ids)")
        m = _REACH.match(str(text))
        if m and len(m.group(1).lstrip("0")) > 18:
            raise ValueError(f"{str(text)[:60]!r} is longer than partman allows (at most 18 digits)")
        if not m:
            raise ValueError(f"not a reach in ids or partitions: {str(text)[:60]!r} (expected e.g. '4 partitions',"
                             " '5000000 ids' or 5000000)")
        unit = (m.group(2) or "ids").lower()
        return cls(int(m.group(1)), "partitions" if unit.startswith("partition") else "ids")

    def ids(self, width: int) -> int:
        return self.amount * width if self.unit == "partitions" else self.amount

    def __str__(self) -> str:
        return f"{self.amount} {self.unit if self.amount != 1 else self.unit[:-1]}"


@dataclass(frozen=True)
class IdMark:
    """Where an id table's keys have reached, as the catalog read it.

    sequence: the sequence that gives the key its values (its identity, or the one its default is nextval() of), and
    the next value it gives (None: not read: the role may not, or another session kept it locked); largest: the table's
    largest key among the partitions that may hold it (largest_known false: not read, e.g. no index leads with the
    key); sharing: the other tables' columns that draw from the same sequence."""

    sequence: Optional[TableRef] = None
    sequence_value: Optional[int] = None  # the next value nextval() gives
    sequence_oid: Optional[int] = None
    sequence_readable: bool = True
    sequence_locked: bool = False
    increment: int = 1
    indexed: bool = False  # a btree index leads with the key: the largest key costs one descent per partition
    largest: Optional[int] = None
    largest_known: bool = False  # the largest key was read (None then means an empty table), not merely absent
    sharing: tuple[str, ...] = ()

    @property
    def value(self) -> Optional[int]:
        """The mark: the sequence's next value, else the largest key; None when neither is known."""
        if self.sequence is not None and self.sequence_value is not None:
            return self.sequence_value
        return self.largest

    @property
    def source(self) -> str:
        if self.sequence is not None and self.sequence_value is not None:
            return f"the next value of sequence {self.sequence}"
        return "the largest key"

    def to_dict(self) -> dict:
        return {"sequence": str(self.sequence) if self.sequence else None, "sequence_value": self.sequence_value, "increment": self.increment,
                "sequence_readable": self.sequence_readable, "indexed": self.indexed, "largest": self.largest,
                "largest_known": self.largest_known, "sharing": list(self.sharing)}


@dataclass(frozen=True)
class IdSpace:
    """The key space of an id table: values are plain integers; key_of(now) is the id mark, whatever the
    clock says (the clock still times retention's grace, which counts days since a detach)."""

    key_type: KeyType
    tz: str = "UTC"
    mark: Optional[int] = None
    encoding: None = None
    codec: None = None
    logs_as_is = False  # an id is logged as the instant that many microseconds after EPOCH

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.tz)

    def instant(self, value):
        return value

    def key_of(self, now: datetime) -> int:  # noqa: ARG002 - the clock is not an id table's now
        if self.mark is None:
            raise ValueError("an id table's key space needs its id mark")
        return self.mark

    def local_moment(self, now: datetime) -> datetime:
        return now.astimezone(self.zone).replace(tzinfo=None)

    def to_log(self, value: Optional[int]) -> Optional[datetime]:
        return None if value is None else EPOCH + timedelta(microseconds=value)

    def from_log(self, value: Optional[datetime]) -> Optional[int]:
        return None if value is None else (value - EPOCH) // timedelta(microseconds=1)

    def log_range(self, bounds: Bounds) -> tuple[Optional[datetime], Optional[datetime]]:
        return self.to_log(bounds.start), self.to_log(bounds.end)

    def fits(self, value: int) -> bool:
        """A bound the column's type and partition_log can both hold."""
        limit = TYPE_RANGE[self.key_type]
        return -limit <= value < limit and LOG_FIRST <= value <= LOG_LAST

    @property
    def first(self) -> int:
        return max(-TYPE_RANGE[self.key_type], LOG_FIRST)

    @property
    def last(self) -> int:
        return min(TYPE_RANGE[self.key_type] - 1, LOG_LAST)


@dataclass(frozen=True)
class WidthGrid:
    """Slots of a fixed width, starting at origin + k * width for every whole k."""

    width: int
    origin: int
    space: IdSpace
    step: int = 1  # the sequence's increment: its next two values must both have a partition

    @property
    def mark(self) -> int:
        return self.space.key_of(datetime.min)

    def floor(self, value: int) -> int:
        return self.origin + (value - self.origin) // self.width * self.width

    def ceil(self, value: int) -> int:
        f = self.floor(value)
        return f if f == value else f + self.width

    def next(self, boundary: int) -> int:
        return boundary + self.width

    def slot(self, boundary: int) -> Bounds:
        return Bounds(boundary, boundary + self.width)

    def is_slot(self, bounds: Bounds) -> bool:
        if bounds.start is None or bounds.end is None:
            return False
        return self.slot(self.floor(bounds.start)) == bounds

    def pieces(self, gap: Bounds) -> Iterator[Bounds]:
        """A bounded gap cut at the grid's boundaries: aligned slots, with shorter bridges at the edges."""
        assert gap.start is not None and gap.end is not None
        boundary = self.floor(gap.start)
        while boundary < gap.end:
            yield Bounds(max(boundary, gap.start), min(boundary + self.width, gap.end))
            boundary += self.width

    def label(self, bounds: Bounds) -> str:
        """A slot is named for its start (events_p2000000, events_m1000 below zero), a bridge for both ends, the slot
        where the key's type ends for its start and MAXVALUE (events_p32000_max)."""
        if self.is_slot(bounds):
            return _tag(bounds.start)
        return f"{_tag(bounds.start)}_{'max' if bounds.end is None else _tag(bounds.end)}"  # the type's last slot

    def window(self, premake: Optional[Reach], history_from: Optional[int] = None) -> Bounds:
        """[start of the slot holding the mark, first boundary at or after mark + premake); history_from (an id)
        reaches back to its slot. At least the mark's slot; premake None is DEFAULT_PREMAKE."""
        mark = self.mark
        first = self.floor(mark)
        if history_from is not None:
            first = min(first, self.floor(history_from))
        premake = premake or Reach.parse(DEFAULT_PREMAKE)
        if premake.unit == "partitions":  # N whole partitions after the one holding the mark, as pg_partman's premake
            last = self.floor(mark) + (premake.amount + 1) * self.width
        else:
            last = max(self.ceil(mark + premake.amount), self.floor(mark) + self.width)
        last = max(last, self.floor(mark + self.step) + self.width)  # an increment wider than premake reaches
        return Bounds(first, last)

    def cutoff(self, retention: Optional[Reach]) -> Optional[int]:
        """Partitions ending at or before this id have expired: N partitions behind the mark's slot are kept whole,
        or every id within N below the mark."""
        if retention is None:
            return None
        mark = self.mark
        if retention.unit == "partitions":
            return self.floor(mark) - retention.ids(self.width)
        return mark - retention.amount


def _tag(value: int) -> str:
    return f"p{value}" if value >= 0 else f"m{-value}"
