from datetime import date, datetime, timedelta, timezone

from hypothesis import given
from hypothesis import strategies as st

from helpers import utc

from partman.intervals import Interval, Span
from partman.model import Bounds, KeyType
from partman.timeline import Grid, KeySpace, retention_cutoff, space_for, window

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


# How a local midnight that a DST change repeats or skips becomes an instant: as PostgreSQL reads it
# (`timestamp AT TIME ZONE tz`, and a literal typed under SET TimeZone), by which the rows are routed.
# The instants below are what PostgreSQL 15 and 18 give; test_parity checks them against the server.

HAVANA = KeySpace(KeyType.TIMESTAMPTZ, "America/Havana")


def test_a_repeated_midnight_is_its_second_occurrence_as_postgresql_reads_it():
    # Havana falls back from 01:00 CDT to 00:00 CST on 2026-11-01: 00:00 is both 04:00Z and 05:00Z.
    assert HAVANA.at_midnight(date(2026, 11, 1)) == utc(2026, 11, 1, 5)
    monthly = Grid(Interval.MONTHLY, HAVANA)
    assert monthly.slot(date(2026, 10, 1)) == Bounds(utc(2026, 10, 1, 4), utc(2026, 11, 1, 5))
    assert monthly.slot(date(2026, 11, 1)) == Bounds(utc(2026, 11, 1, 5), utc(2026, 12, 1, 5))
    daily = Grid(Interval.DAILY, HAVANA)
    assert daily.slot(date(2026, 10, 31)) == Bounds(utc(2026, 10, 31, 4), utc(2026, 11, 1, 5))
    assert daily.slot(date(2026, 11, 1)) == Bounds(utc(2026, 11, 1, 5), utc(2026, 11, 2, 5))
    # the Azores fall back from 01:00 to 00:00 too (UTC+0 to UTC-1)
    assert KeySpace(KeyType.TIMESTAMPTZ, "Atlantic/Azores").at_midnight(date(2026, 10, 25)) == utc(2026, 10, 25, 1)


def test_a_skipped_midnight_is_the_instant_of_the_change_as_postgresql_reads_it():
    # Havana springs forward from 00:00 CST to 01:00 CDT on 2026-03-08: 00:00 never happens there.
    assert HAVANA.at_midnight(date(2026, 3, 8)) == utc(2026, 3, 8, 5)
    daily = Grid(Interval.DAILY, HAVANA)
    assert daily.slot(date(2026, 3, 7)) == Bounds(utc(2026, 3, 7, 5), utc(2026, 3, 8, 5))
    assert daily.slot(date(2026, 3, 8)) == Bounds(utc(2026, 3, 8, 5), utc(2026, 3, 9, 4))
    assert HAVANA.at_midnight(date(2027, 3, 14)) == utc(2027, 3, 14, 5)
    assert KeySpace(KeyType.TIMESTAMPTZ, "America/Santiago").at_midnight(date(2026, 9, 6)) == utc(2026, 9, 6, 4)
    assert KeySpace(KeyType.TIMESTAMPTZ, "Asia/Beirut").at_midnight(date(2026, 3, 29)) == utc(2026, 3, 28, 22)
    assert KeySpace(KeyType.TIMESTAMPTZ, "Africa/Cairo").at_midnight(date(2026, 4, 24)) == utc(2026, 4, 23, 22)


def test_a_local_wall_clock_moment_is_read_as_postgresql_reads_it_whatever_its_fold():
    # PostgreSQL's timestamp has no fold: a repeated 00:30 is always the second one, as in manage_partitions().
    for fold in (0, 1):
        assert HAVANA.from_local_moment(datetime(2026, 11, 1, 0, 30, fold=fold)) == utc(2026, 11, 1, 5, 30)
        assert HAVANA.from_local_moment(datetime(2026, 3, 8, 0, 30, fold=fold)) == utc(2026, 3, 8, 5, 30)
    # so a retention cutoff that lands on the repeated hour is where the SQL face puts it (local_now - retention)
    for span in ("30 days", "1 month"):
        assert retention_cutoff(HAVANA, utc(2026, 12, 1, 5, 30), Span.parse(span)) == utc(2026, 11, 1, 5, 30)


def test_the_first_pass_of_a_repeated_midnight_hour_belongs_to_the_slot_before():
    monthly = Grid(Interval.MONTHLY, HAVANA)
    # 2026-11-01 00:30-04 is local November, but before the boundary: October's partition holds it.
    assert monthly.floor(utc(2026, 11, 1, 4, 30)) == date(2026, 10, 1)
    assert monthly.floor(utc(2026, 11, 1, 5)) == date(2026, 11, 1)
    # a gap that starts there (left by a layout from before the boundary moved) is covered, with a bridge
    pieces = list(monthly.pieces(Bounds(utc(2026, 11, 1, 4), utc(2027, 1, 1, 5))))
    assert pieces == [
        Bounds(utc(2026, 11, 1, 4), utc(2026, 11, 1, 5)),
        Bounds(utc(2026, 11, 1, 5), utc(2026, 12, 1, 5)),
        Bounds(utc(2026, 12, 1, 5), utc(2027, 1, 1, 5)),
    ]
    assert not monthly.is_slot(pieces[0]) and monthly.is_slot(pieces[1])


def test_midnights_stay_strictly_increasing_in_zones_whose_clocks_change_at_midnight():
    zones = ["America/Havana", "Atlantic/Azores", "America/Santiago", "America/Asuncion", "Asia/Beirut",
             "Africa/Cairo", "Pacific/Chatham", "Australia/Lord_Howe", "America/New_York"]
    for tz in zones:
        space = KeySpace(KeyType.TIMESTAMPTZ, tz)
        days = [date(2024, 1, 1) + timedelta(days=i) for i in range(366 * 8)]
        midnights = [space.at_midnight(d) for d in days]
        assert all(a < b for a, b in zip(midnights, midnights[1:])), tz
        assert all(space.local_date(m) == d for m, d in zip(midnights, days)), tz


@given(st.sampled_from(["epoch_s", "epoch_ms", "epoch_us", "uuidv7"]), st.sampled_from(list(Interval)),
       st.sampled_from(["UTC", "Europe/Berlin", "America/Havana", "Pacific/Chatham"]),
       st.integers(0, 4 * 365 * 24 * 60), st.sampled_from([None, "0 days", "10 days", "3 months"]))
def test_an_encoded_key_is_laid_out_as_timestamptz_and_written_as_it_encodes(encoding, interval, tz, minutes, premake):
    key_type = {"epoch_s": KeyType.BIGINT, "uuidv7": KeyType.UUID}.get(encoding, KeyType.BIGINT)
    encoded, plain = space_for(key_type, tz, encoding), KeySpace(KeyType.TIMESTAMPTZ, tz)
    now = datetime(2026, 1, 1, tzinfo=timezone.utc) + timedelta(minutes=minutes)
    span = Span.parse(premake) if premake else None
    w, t = window(Grid(interval, encoded), now, span), window(Grid(interval, plain), now, span)
    assert (w.start, w.end) == (encoded.codec.encode(t.start), encoded.codec.encode(t.end))
    for a, b in zip(Grid(interval, encoded).pieces(w), Grid(interval, plain).pieces(t)):
        assert (encoded.instant(a.start), encoded.instant(a.end)) == (b.start, b.end)
        assert encoded.to_log(a.start) == plain.to_log(b.start) and encoded.from_log(encoded.to_log(a.start)) == a.start
    assert encoded.key_of(now) <= encoded.codec.encode(now + timedelta(milliseconds=1))


@given(st.integers(0, 2 ** 47), st.integers(0, 2 ** 74 - 1))
def test_a_uuidv7_sorts_within_its_millisecond_bounds(ms, random_bits):
    from partman.encoded import EPOCH, Uuid7, uuid7

    instant = EPOCH + timedelta(milliseconds=ms)
    u = uuid7(instant, random_bits)
    assert u.version == 7 and u.variant == "specified in RFC 4122"
    assert Uuid7().encode(instant) <= u < Uuid7().encode(instant + timedelta(milliseconds=1))
    assert Uuid7().decode(u) == instant and Uuid7().fits(Uuid7().encode(instant))
    assert Uuid7().fits(u) == (random_bits == 0)
