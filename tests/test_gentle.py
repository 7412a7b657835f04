"""Online applies on PostgreSQL 15 and 18: readers holding the parent, detaches that span transactions, and
runs interrupted at each step and finished by the next one."""

from __future__ import annotations

import threading
import time

import psycopg
import pytest

from dbtools import assert_contiguous, count, partitions, ranges, run_cli
from helpers import spec_data, write_spec

NOW = "2027-02-15T12:00:00Z"


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


def apply(capsys, db_url, *extra, now=NOW):
    return run_cli(capsys, "apply", "specs", "--env", "test", "--database-url", db_url, "--now", now, "--auto-approve", *extra)


def plan_is_empty(capsys, db_url, now=NOW) -> bool:
    return run_cli(capsys, "plan", "specs", "--env", "test", "--database-url", db_url, "--now", now, "--detailed-exitcode").code == 0


class Reader(threading.Thread):
    """An open transaction that has read the whole parent (ACCESS SHARE on it and every partition), or with
    parent_only the parent alone (what a concurrent detach waits for, but partman's probe does not see)."""

    def __init__(self, db_url: str, seconds: float, parent_only: bool = False):
        super().__init__(daemon=True)
        self.db_url, self.seconds, self.ready = db_url, seconds, threading.Event()
        self.query = "SELECT count(*) FROM ONLY bookings" if parent_only else "SELECT count(*) FROM bookings"

    def run(self) -> None:
        with psycopg.connect(self.db_url) as c:
            c.execute(self.query)
            self.ready.set()
            time.sleep(self.seconds)
            c.rollback()

    def __enter__(self):
        self.start()
        self.ready.wait(10)
        return self

    def __exit__(self, *exc):
        self.join()


def quarterly_to_monthly(capsys, workdir, db_url):
    """A quarterly table; the spec then says monthly, so next year's empty quarters are to be dropped."""
    write_spec(workdir / "specs", spec_data(interval="quarterly", premake="9 months"))
    assert apply(capsys, db_url).code == 0
    write_spec(workdir / "specs", spec_data(interval="monthly", premake="9 months"))


def pending(conn) -> list:
    return conn.execute("SELECT partition_name, pending_action FROM partition_log WHERE pending_action IS NOT NULL").fetchall()


def detach_pending(conn) -> list:
    return [r[0] for r in conn.execute("SELECT inhrelid::regclass::text FROM pg_inherits WHERE inhdetachpending").fetchall()]


def half_detach(db_url: str, partition: str) -> None:
    """Leave a DETACH … CONCURRENTLY pending: its first transaction commits, its wait for a reader times out."""
    with Reader(db_url, 2.0):
        with psycopg.connect(db_url, autocommit=True) as c:
            c.execute("SET lock_timeout = '200ms'")
            with pytest.raises(psycopg.errors.LockNotAvailable):
                c.execute(f"ALTER TABLE bookings DETACH PARTITION {partition} CONCURRENTLY")


def test_with_a_reader_holding_the_parent_creates_do_not_wait(capsys, workdir, db_url, conn):
    write_spec(workdir / "specs", spec_data(interval="monthly", premake="1 month"))
    assert apply(capsys, db_url).code == 0
    write_spec(workdir / "specs", spec_data(interval="monthly", premake="8 months"))
    with Reader(db_url, 3.0):
        t0 = time.monotonic()
        result = apply(capsys, db_url, "--lock-budget", "1")
        took = time.monotonic() - t0
    assert result.code == 0, result.err
    assert took < 2.5, f"creates waited behind the reader ({took:.1f} s)"
    assert len(ranges(conn, "bookings")) == 9


def test_a_drop_blocked_by_a_reader_gives_up_with_exit_4_and_nothing_half_done(capsys, workdir, db_url, conn):
    quarterly_to_monthly(capsys, workdir, db_url)
    before = partitions(conn, "bookings")
    with Reader(db_url, 3.0):
        result = apply(capsys, db_url, "--lock-budget", "0.8")
    assert result.code == 4
    assert "bookings_2027_q2: drop: lock not obtained" in result.err
    after = partitions(conn, "bookings")
    assert [p for p in before if p in after] == before, "every partition that was there is there, attached"
    assert pending(conn) == [] and detach_pending(conn) == []
    assert_contiguous(ranges(conn, "bookings"))
    assert apply(capsys, db_url).code == 0  # with the reader gone, the next run does the rest
    assert plan_is_empty(capsys, db_url)


def test_an_intent_recorded_before_the_detach_began_is_cleared_and_redone(capsys, workdir, db_url, conn):
    quarterly_to_monthly(capsys, workdir, db_url)
    conn.execute("UPDATE partition_log SET pending_action = 'drop', pending_since = now() WHERE partition_name = 'bookings_2027_q2'")
    shown = run_cli(capsys, "plan", "specs", "--env", "test", "--database-url", db_url, "--now", NOW)
    assert "PM207" in shown.out and "interrupted drop that never began" in shown.out
    assert apply(capsys, db_url).code == 0
    assert pending(conn) == []
    assert "bookings_2027_q2" not in dict(partitions(conn, "bookings"))
    assert plan_is_empty(capsys, db_url)


def test_a_detach_left_pending_is_finalized_and_the_drop_finished(capsys, workdir, db_url, conn):
    quarterly_to_monthly(capsys, workdir, db_url)
    conn.execute("UPDATE partition_log SET pending_action = 'drop', pending_since = now() WHERE partition_name = 'bookings_2027_q2'")
    half_detach(db_url, "bookings_2027_q2")
    assert detach_pending(conn) == ["bookings_2027_q2"]
    result = apply(capsys, db_url)
    assert result.code == 0, result.err
    assert detach_pending(conn) == [] and pending(conn) == []
    assert conn.execute("SELECT to_regclass('bookings_2027_q2')").fetchone()[0] is None
    assert conn.execute("SELECT count(*) FROM partition_audit_log WHERE partition_name = 'bookings_2027_q2' AND action = 'drop'").fetchone()[0] == 1
    assert_contiguous(ranges(conn, "bookings"))
    assert plan_is_empty(capsys, db_url)


def test_a_partition_detached_but_not_dropped_is_dropped(capsys, workdir, db_url, conn):
    quarterly_to_monthly(capsys, workdir, db_url)
    conn.execute("UPDATE partition_log SET pending_action = 'drop', pending_since = now() WHERE partition_name = 'bookings_2027_q2'")
    conn.execute("ALTER TABLE bookings DETACH PARTITION bookings_2027_q2 CONCURRENTLY")
    assert apply(capsys, db_url).code == 0
    assert conn.execute("SELECT to_regclass('bookings_2027_q2')").fetchone()[0] is None
    assert pending(conn) == []
    assert plan_is_empty(capsys, db_url)


def test_a_pending_drop_whose_partition_gained_rows_is_attached_again(capsys, workdir, db_url, conn):
    quarterly_to_monthly(capsys, workdir, db_url)
    conn.execute("UPDATE partition_log SET pending_action = 'drop', pending_since = now() WHERE partition_name = 'bookings_2027_q2'")
    conn.execute("ALTER TABLE bookings DETACH PARTITION bookings_2027_q2 CONCURRENTLY")
    conn.execute("INSERT INTO bookings_2027_q2 (id, start_time) VALUES (7, '2027-05-05Z')")
    result = apply(capsys, db_url)
    assert result.code == 3
    assert "bookings_2027_q2 holds rows" in result.err and "attached again" in result.err
    assert "bookings_2027_q2" in dict(partitions(conn, "bookings"))
    assert count(conn, "bookings") == 1 and pending(conn) == []


def test_a_retention_detach_left_pending_is_finished_as_a_detach(capsys, workdir, db_url, conn):
    write_spec(workdir / "specs", spec_data(interval="monthly", premake="1 month", retention="2 months"))
    assert apply(capsys, db_url, now="2027-01-10T00:00:00Z").code == 0
    conn.execute("UPDATE partition_log SET pending_action = 'detach', pending_since = now() WHERE partition_name = 'bookings_2027_01'")
    half_detach(db_url, "bookings_2027_01")
    result = apply(capsys, db_url, now="2027-04-10T00:00:00Z")
    assert result.code == 0, result.err
    row = conn.execute("SELECT detached_at IS NOT NULL, dropped_at IS NULL, pending_action FROM partition_log"
                       " WHERE partition_name = 'bookings_2027_01'").fetchone()
    assert row == (True, True, None)
    assert conn.execute("SELECT relispartition FROM pg_class WHERE relname = 'bookings_2027_01'").fetchone()[0] is False
    assert plan_is_empty(capsys, db_url, now="2027-04-10T00:00:00Z")


def test_a_run_killed_while_its_concurrent_detach_waits_is_finished_by_the_next(capsys, workdir, db_url, conn):
    quarterly_to_monthly(capsys, workdir, db_url)
    outcome: list = []
    with Reader(db_url, 4.0, parent_only=True):
        runner = threading.Thread(target=lambda: outcome.append(apply(capsys, db_url, "--lock-budget", "20")))
        runner.start()
        for _ in range(100):  # until partman's DETACH … CONCURRENTLY is waiting for the reader
            waiting = conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE query LIKE 'ALTER TABLE%%DETACH PARTITION%%' AND wait_event_type = 'Lock'"
            ).fetchall()
            if waiting:
                break
            time.sleep(0.05)
        assert waiting, "partman never reached its detach"
        conn.execute("SELECT pg_terminate_backend(%s)", (waiting[0][0],))
        runner.join()
    assert outcome[0].code == 1
    assert pending(conn) == [("bookings_2027_q2", "drop")]
    assert detach_pending(conn) == ["bookings_2027_q2"]
    result = apply(capsys, db_url)
    assert result.code == 0, result.err
    assert pending(conn) == [] and detach_pending(conn) == []
    assert_contiguous(ranges(conn, "bookings"))
    assert plan_is_empty(capsys, db_url)
