"""The only module that knows calendars and time zones: key values ↔ local dates, windows, cutoffs. A key that
encodes a time (encoded.py: epoch numbers, UUIDv7) is laid out as timestamptz would be, and written as it encodes."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from functools import cached_property, lru_cache
from typing import Iterator, Optional
from zoneinfo import ZoneInfo

from .intervals import Interval, Span
from .model import Bounds, KeyType, KeyValue


@dataclass(frozen=True)
class KeySpace:
    """How a table's key values map onto local calendar dates in the spec's time zone."""

    key_type: KeyType
    tz: str = "UTC"
    encoding: Optional[str] = None  # encoded.ENCODINGS: the key holds an instant in this encoding

    @cached_property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.tz)

    @cached_property
    def codec(self):
        from .encoded import codec

        return codec(self.encoding, self.key_type) if self.encoding else None

    def instant(self, value: KeyValue) -> KeyValue:
        """An encoded value as the instant it stands for; any other value as it is."""
        return self.codec.decode(value) if self.codec is not None else value

    def at_midnight(self, d: date) -> KeyValue:
        """The key value where local date d begins: local 00:00 as PostgreSQL reads it (see _instant).

        A midnight that a DST change repeats (America/Havana, 2026-11-01) is its second occurrence; one that
        a change skips (Havana, 2026-03-08) is the instant of the change. Boundaries stay strictly increasing."""
        if self.key_type is KeyType.DATE:
            return d
        if self.key_type is KeyType.TIMESTAMP:
            return datetime.combine(d, time())
        if self.codec is not None:
            return _encoded(self.codec, datetime.combine(d, time()), self.tz)
        return _instant(datetime.combine(d, time()), self.tz)

    def local_date(self, value: KeyValue) -> date:
        """The local date that a key value falls on."""
        value = self.instant(value)
        if isinstance(value, datetime):
            if value.tzinfo is not None:
                return value.astimezone(self.zone).date()
            return value.date()
        return value

    def local_moment(self, now: datetime) -> datetime:
        """An aware instant as a naive local wall-clock moment, for calendar arithmetic."""
        return now.astimezone(self.zone).replace(tzinfo=None)

    def from_local_moment(self, moment: datetime) -> KeyValue:
        """A naive local wall-clock moment as a key value (dates keep only their day).

        Read as PostgreSQL reads it, whatever its fold, as the SQL face's partman_to_log does: a repeated
        moment is its second occurrence, so in the first pass of a repeated hour key_of(now) is an hour on."""
        if self.key_type is KeyType.DATE:
            return moment.date()
        if self.key_type is KeyType.TIMESTAMP:
            return moment
        if self.codec is not None:
            return _encoded(self.codec, moment, self.tz)
        return _instant(moment, self.tz)

    def key_of(self, now: datetime) -> KeyValue:
        return self.from_local_moment(self.local_moment(now))

    def to_log(self, value: Optional[KeyValue]) -> Optional[datetime]:
        """The timestamptz that partition_log stores for a bound: dates and timestamps read as UTC. None
        (MINVALUE, MAXVALUE) stays None here; the log stores it as -infinity or infinity (audit.py).

        The map is order-preserving and injective per key type, and the SQL face computes the same
        (`(v::timestamp) AT TIME ZONE 'UTC'`), so both faces match log rows to partitions by bounds."""
        return None if value is None else _to_log(self.instant(value))

    @cached_property
    def logs_as_is(self) -> bool:
        """Whether a bound is its own log value (timestamptz: aware datetimes compare and hash as instants)."""
        return self.key_type is KeyType.TIMESTAMPTZ and self.codec is None

    def log_range(self, bounds: Bounds) -> tuple[Optional[datetime], Optional[datetime]]:
        """(to_log(start), to_log(end)): a range as partition_log holds it, for matching log rows to partitions."""
        if self.logs_as_is:
            return bounds.start, bounds.end
        return self.to_log(bounds.start), self.to_log(bounds.end)

    def from_log(self, value: Optional[datetime]) -> Optional[KeyValue]:
        """The inverse of to_log."""
        if value is None:
            return None
        if self.key_type is KeyType.DATE:
            return value.date()
        if self.key_type is KeyType.TIMESTAMP:
            return value.replace(tzinfo=None)
        if self.codec is not None:
            return self.codec.encode(value)
        return value


def space_for(key_type: KeyType, tz: str, encoding: Optional[str] = None, mark: Optional[int] = None):
    """The key space of a key of this type in a spec's zone and key_encoding (a uuid key is UUIDv7 unless told); an
    integer key without an encoding holds ids (widths.py), whose "now" is the table's id mark."""
    from .encoded import default_encoding

    if key_type.is_time:
        return KeySpace(key_type, tz)
    encoding = default_encoding(key_type, encoding)
    if encoding is None:
        from .widths import IdSpace

        return IdSpace(key_type, tz, mark)
    return KeySpace(key_type, tz, encoding)


@lru_cache(maxsize=1 << 16)
def _encoded(codec, local: datetime, tz: str) -> KeyValue:
    return codec.encode(_instant(local, tz))


@lru_cache(maxsize=1 << 16)
def _instant(local: datetime, tz: str) -> datetime:
    """A naive local wall-clock time in zone tz as an instant, as PostgreSQL reads it (`local AT TIME ZONE tz`,
    or a literal typed under `SET TimeZone = tz`), since rows are routed by that reading.

    Where a DST change makes the time ambiguous or non-existent, PostgreSQL takes whichever of the offsets in
    force just before and just after the change gives the later instant: a repeated time is its second
    occurrence (zoneinfo's fold=1), a skipped one is read with the offset from before the change (fold=0).
    Both are the later of the two fold readings. Cached: the same midnights recur in every pass of a plan."""
    zone = ZoneInfo(tz)
    first = local.replace(tzinfo=zone, fold=0).astimezone(timezone.utc)
    second = local.replace(tzinfo=zone, fold=1).astimezone(timezone.utc)
    return max(first, second)


@lru_cache(maxsize=1 << 16)
def _to_log(value: KeyValue) -> datetime:
    # Cached: the same bounds recur across tables and across each plan's several passes over a table.
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc) if value.tzinfo else value.replace(tzinfo=timezone.utc)
    return datetime.combine(value, time(), tzinfo=timezone.utc)


@dataclass(frozen=True)
class Grid:
    """Partition boundaries of one interval in one key space."""

    interval: Interval
    space: KeySpace

    def floor(self, value: KeyValue) -> date:
        """The boundary date of the slot holding a key value.

        A value in the first pass of an hour repeated at midnight (Havana, 2026-11-01 00:30 CDT) is already
        on its local date but still before that date's boundary (the second 00:00): it is in the slot before."""
        boundary = self.interval.floor(self.space.local_date(value))
        if value < self.space.at_midnight(boundary):
            boundary = self.interval.floor(boundary - timedelta(days=1))
        return boundary

    def slot(self, boundary: date) -> Bounds:
        return Bounds(self.space.at_midnight(boundary), self.space.at_midnight(self.interval.next(boundary)))

    def is_slot(self, bounds: Bounds) -> bool:
        """True when bounds are exactly one aligned slot of this grid."""
        if bounds.start is None or bounds.end is None:
            return False
        return _is_slot(self, bounds)

    def pieces(self, gap: Bounds) -> Iterator[Bounds]:
        """Cut a bounded gap at the grid's boundaries: aligned slots, with shorter bridges at the edges."""
        assert gap.start is not None and gap.end is not None
        boundary = self.floor(gap.start)
        while True:
            slot = self.slot(boundary)
            assert slot.start is not None and slot.end is not None
            if slot.start >= gap.end:
                return
            yield Bounds(max(slot.start, gap.start), min(slot.end, gap.end))
            boundary = self.interval.next(boundary)


@lru_cache(maxsize=1 << 16)
def _is_slot(grid: Grid, bounds: Bounds) -> bool:
    # Cached: every table of an interval and zone asks it of the same future partitions, in each pass of a plan.
    return grid.slot(grid.floor(bounds.start)) == bounds


def window(grid, now: datetime, premake, history_from=None) -> Bounds:
    """[start of the slot containing now, first boundary at or after the premake horizon).

    Without a premake the horizon is the end of next calendar year, the original requirement's rule (a spec
    gets it only for the month-based intervals: spec.DEFAULT_PREMAKE). The window always holds at least the
    current slot. history_from (a local date) reaches back: the window starts at its slot if that is earlier.
    An id table's grid reaches from its id mark instead (widths.WidthGrid.window)."""
    if not isinstance(grid, Grid):
        return grid.window(premake, history_from)  # an id table's (widths.WidthGrid): from its id mark
    local_now = grid.space.local_moment(now)
    first = grid.interval.floor(local_now.date())
    if history_from is not None:
        first = min(first, grid.interval.floor(history_from))
    if premake is None:
        horizon = datetime(local_now.year + 2, 1, 1)
    else:
        horizon = premake.add(local_now)
    last = grid.interval.ceil(horizon.date())
    if horizon.time() != time() and last == horizon.date():
        last = grid.interval.next(last)
    last = max(last, grid.interval.next(first))
    return Bounds(grid.space.at_midnight(first), grid.space.at_midnight(last))


def retention_cutoff(space: KeySpace, now: datetime, retention: Optional[Span]) -> Optional[KeyValue]:
    """Partitions whose upper bound is at or before this key value have expired."""
    if retention is None:
        return None
    return space.from_local_moment(retention.add(space.local_moment(now), sign=-1))


def cutoff(grid, now: datetime, retention) -> Optional[KeyValue]:
    """retention_cutoff for a table's grid: an id table's counts back from its id mark."""
    if not isinstance(grid, Grid):
        return grid.cutoff(retention)
    return retention_cutoff(grid.space, now, retention)
