"""One consistent view, on PostgreSQL 15 and 18: a change committed while partman reads the catalog can never
yield a plan of the old state carrying a digest of the new one, and a partition that vanishes while partman waits
for it makes partman read again, not fail. Each race is forced by a lock held at a chosen statement, not hoped for."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import psycopg

from dbtools import count, run_cli
from helpers import spec_data, write_spec


def cli(capsys, db_url, command, now, *extra):
    return run_cli(capsys, command, "specs", "--env", "test", "--database-url", db_url, "--now", now, *extra)


def spawn(workdir, db_url, command, now, *extra) -> subprocess.Popen:
    args = [sys.executable, "-m", "partman", command, "specs", "--env", "test", "--database-url", db_url, "--now", now, *extra]
    return subprocess.Popen(args, cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PGAPPNAME": "partman"})


def wait_until_waiting(conn, relation: str, proc: subprocess.Popen, timeout: float = 60) -> None:
    """Until partman's backend has asked for a lock on relation and is waiting for it (or has given up once)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        row = conn.execute(
            "SELECT 1 FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
            " WHERE a.application_name = 'partman' AND NOT l.granted AND l.relation = %s::regclass",
            (relation,),
        ).fetchone()
        if row:
            return
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.005)
    raise AssertionError(f"partman never waited for {relation}")


def test_a_reattach_committed_while_the_plan_is_read_never_gets_the_partition_dropped(capsys, workdir, db_url, conn):
    write_spec(workdir / "specs", spec_data(interval="monthly", premake="1 month", retention="3 months",
                                            retention_grace="7 days"))
    assert cli(capsys, db_url, "apply", "2027-01-15T00:00Z", "--auto-approve").code == 0
    conn.execute("INSERT INTO bookings (start_time) SELECT '2027-01-10Z' FROM generate_series(1, 10)")
    assert cli(capsys, db_url, "apply", "2027-05-15T00:00Z", "--auto-approve").code == 0, "January retires"
    assert count(conn, "bookings_2027_01") == 10
    # The grace has passed: the next plan drops January. Pause that plan between its read of the partitions
    # and its read of partition_config (the structure digest reads it), re-attach January meanwhile.
    with psycopg.connect(db_url) as pauser:
        pauser.execute("LOCK TABLE partition_config IN ACCESS EXCLUSIVE MODE")
        proc = spawn(workdir, db_url, "apply", "2027-05-25T00:00Z", "--auto-approve", "--lock-timeout-ms", "60000")
        wait_until_waiting(conn, "partition_config", proc)
        conn.execute("ALTER TABLE bookings ATTACH PARTITION bookings_2027_01"
                     " FOR VALUES FROM ('2027-01-01Z') TO ('2027-02-01Z')")
        pauser.rollback()
    out, err = proc.communicate(timeout=120)
    assert proc.returncode in (0, 1), err
    assert "Traceback" not in err
    assert count(conn, "bookings_2027_01") == 10, "the re-attached partition and its rows are still there"


def test_a_partition_dropped_while_partman_waits_for_it_makes_partman_read_again(capsys, workdir, db_url, conn):
    write_spec(workdir / "specs", spec_data(interval="quarterly", premake="9 months"))
    assert cli(capsys, db_url, "apply", "2027-02-15T12:00Z", "--auto-approve").code == 0
    write_spec(workdir / "specs", spec_data(interval="monthly", premake="9 months"))
    with psycopg.connect(db_url) as dropper:
        dropper.execute("LOCK TABLE bookings_2027_q4 IN ACCESS EXCLUSIVE MODE")
        proc = spawn(workdir, db_url, "plan", "2027-02-15T12:00Z", "--lock-timeout-ms", "50", "--lock-budget", "60")
        wait_until_waiting(conn, "bookings_2027_q4", proc)
        dropper.execute("DROP TABLE bookings_2027_q4")
        dropper.commit()
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert "Traceback" not in err and "PM208" not in out
    assert "bookings_2027_q4" not in out, "planned from a fresh read, in which the quarter is gone"
    assert "+ create   public.bookings_2027_10" in out
