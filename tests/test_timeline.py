from datetime import date, datetime, timedelta, timezone

from helpers import utc

from partman.intervals import Interval, Span
from partman.model import Bounds, KeyType
from partman.timeline import Grid, KeySpace, retention_cutoff, window

TZ = KeySpace(KeyType.TIMESTAMPTZ)


def test_default_premake_reaches_the_end_of_next_calendar_year():
    w = window(Grid(Interval.QUARTERLY, TZ), utc(2026, 11, 24, 10), None)
    assert w == Bounds(utc(2026, 10, 1), utc(2028, 1, 1))


def test_premake_counts_from_now_and_rounds_up_to_a_boundary():
    w = window(Grid(Interval.MONTHLY, TZ), utc(2026, 11, 24, 10), Span.parse("3 months"))
    assert w == Bounds(utc(2026, 11, 1), utc(2027, 3, 1))


def test_window_always_holds_the_current_slot():
    w = window(Grid(Interval.YEARLY, TZ), utc(2026, 1, 1), Span.parse("0 days"))
    assert w == Bounds(utc(2026, 1, 1), utc(2027, 1, 1))


def test_boundaries_of_a_timestamptz_key_fall_on_local_midnight():
    berlin = Grid(Interval.MONTHLY, KeySpace(KeyType.TIMESTAMPTZ, "Europe/Berlin"))
    assert berlin.slot(date(2027, 1, 1)) == Bounds(utc(2026, 12, 31, 23), utc(2027, 1, 31, 23))
    summer = berlin.slot(date(2027, 4, 1))
    assert summer.start == utc(2027, 3, 31, 22)


def test_a_midnight_skipped_by_dst_still_gives_increasing_boundaries():
    # Havana moves clocks at midnight: 2027-03-14 00:00 does not exist there.
    grid = Grid(Interval.DAILY, KeySpace(KeyType.TIMESTAMPTZ, "America/Havana"))
    slots = [grid.slot(date(2027, 3, 13) + timedelta(days=i)) for i in range(3)]
    assert all(s.start < s.end for s in slots)
    assert all(a.end == b.start for a, b in zip(slots, slots[1:]))


def test_date_and_timestamp_keys_use_wall_clock_dates():
    assert KeySpace(KeyType.DATE).at_midnight(date(2027, 1, 1)) == date(2027, 1, 1)
    assert KeySpace(KeyType.TIMESTAMP, "Asia/Tokyo").at_midnight(date(2027, 1, 1)) == datetime(2027, 1, 1)
    # 20:00 UTC is already the next day in Tokyo
    assert KeySpace(KeyType.DATE, "Asia/Tokyo").key_of(utc(2026, 12, 31, 20)) == date(2027, 1, 1)


def test_pieces_cut_a_gap_into_slots_and_bridges():
    grid = Grid(Interval.QUARTERLY, TZ)
    pieces = list(grid.pieces(Bounds(utc(2026, 12, 1), utc(2027, 7, 1))))
    assert pieces == [
        Bounds(utc(2026, 12, 1), utc(2027, 1, 1)),
        Bounds(utc(2027, 1, 1), utc(2027, 4, 1)),
        Bounds(utc(2027, 4, 1), utc(2027, 7, 1)),
    ]
    assert not grid.is_slot(pieces[0]) and grid.is_slot(pieces[1])


def test_retention_cutoff_is_now_minus_retention_in_local_time():
    assert retention_cutoff(TZ, utc(2027, 3, 15, 12), Span.parse("3 months")) == utc(2026, 12, 15, 12)
    assert retention_cutoff(TZ, utc(2027, 3, 15), None) is None


def test_log_space_keeps_order_for_every_key_type():
    for space in (KeySpace(KeyType.DATE), KeySpace(KeyType.TIMESTAMP), TZ):
        a, b = space.at_midnight(date(2027, 1, 1)), space.at_midnight(date(2027, 1, 2))
        assert space.to_log(a) < space.to_log(b)
        assert space.to_log(a).tzinfo is not None
    assert KeySpace(KeyType.DATE).to_log(date(2027, 1, 1)) == datetime(2027, 1, 1, tzinfo=timezone.utc)


def test_stepping_now_through_a_year_always_covers_now_and_the_premake():
    grid = Grid(Interval.WEEKLY, KeySpace(KeyType.TIMESTAMPTZ, "America/New_York"))
    now = utc(2027, 1, 1, 3)
    while now < utc(2028, 1, 1):
        w = window(grid, now, Span.parse("30 days"))
        assert w.start <= now < w.end
        assert w.end >= now + timedelta(days=30)
        assert w.end - (now + timedelta(days=30)) <= timedelta(days=7, hours=1)
        now += timedelta(hours=37)
