"""history_from on PostgreSQL 15 and 18: a spec that reaches into the past gets its partitions made there, and the
rows already waiting in the default partition for those ranges are moved into them, none lost."""

from __future__ import annotations

from dbtools import count, run_cli
from helpers import spec_data, write_spec


def cli(capsys, db_url, command, now, *extra):
    return run_cli(capsys, command, "specs", "--env", "test", "--database-url", db_url, "--now", now, *extra)


def test_history_from_backfills_a_year_and_moves_the_rows_waiting_in_the_default(capsys, workdir, db_url, conn):
    write_spec(workdir / "specs", spec_data(interval="monthly", premake="2 months"))
    assert cli(capsys, db_url, "apply", "2027-03-15T00:00Z", "--auto-approve").code == 0
    conn.execute("CREATE TABLE bookings_default PARTITION OF bookings DEFAULT")
    conn.execute("INSERT INTO bookings (start_time, note) SELECT timestamptz '2026-03-01 00:00Z' + make_interval(days => g * 7),"
                 " 'historic' FROM generate_series(0, 51) g")  # a row a week, March 2026 to February 2027
    assert count(conn, "bookings_default") == 52
    write_spec(workdir / "specs", spec_data(interval="monthly", premake="2 months", history_from="2026-03-10",
                                            move_default_rows=True))
    result = cli(capsys, db_url, "apply", "2027-03-15T00:00Z", "--auto-approve")
    assert result.code == 0, result.err
    assert "+ create   public.bookings_2026_03" in result.out and "+ create   public.bookings_2027_02" in result.out
    assert count(conn, "bookings_default") == 0 and count(conn, "bookings") == 52
    placed = conn.execute("SELECT count(*) FROM bookings WHERE tableoid::regclass::text"
                          " <> 'bookings_' || to_char(start_time AT TIME ZONE 'UTC', 'YYYY_MM')").fetchone()[0]
    assert placed == 0, "every row is in its own month"
    assert cli(capsys, db_url, "plan", "2027-03-15T00:00Z", "--detailed-exitcode").code == 0


def test_without_move_default_rows_the_backfill_stops_at_the_rows_and_says_why(capsys, workdir, db_url, conn):
    write_spec(workdir / "specs", spec_data(interval="monthly", premake="2 months"))
    assert cli(capsys, db_url, "apply", "2027-03-15T00:00Z", "--auto-approve").code == 0
    conn.execute("CREATE TABLE bookings_default PARTITION OF bookings DEFAULT")
    conn.execute("INSERT INTO bookings (start_time) VALUES ('2026-11-20Z')")
    write_spec(workdir / "specs", spec_data(interval="monthly", premake="2 months", history_from="2026-10-01"))
    result = cli(capsys, db_url, "apply", "2027-03-15T00:00Z", "--auto-approve")
    assert result.code != 0
    assert "move_default_rows" in result.out + result.err
    assert count(conn, "bookings_default") == 1, "the row stays where it is"


def test_retention_shorter_than_history_from_wins_and_the_plan_says_so(capsys, workdir, db_url, conn):
    write_spec(workdir / "specs", spec_data(interval="monthly", premake="1 month", retention="3 months",
                                            history_from="2026-01-01"))
    result = cli(capsys, db_url, "plan", "2027-03-15T00:00Z")
    assert result.code == 0, result.err
    assert "PM216 history_from 2026-01-01 reaches before retention's cutoff" in result.out
    assert "public.bookings_2026_12" in result.out and "public.bookings_2026_11" not in result.out
