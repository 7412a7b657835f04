"""Thousands of partitions in one apply, on PostgreSQL 15 and 18 with the default max_locks_per_transaction (64):
creates go in batches the shared lock table can hold, and so do retention's detaches and drops."""

from __future__ import annotations

from dbtools import run_cli
from helpers import spec_data, write_spec


def partition_count(conn) -> int:
    return conn.execute("SELECT count(*) FROM pg_inherits WHERE inhparent = 'bookings'::regclass").fetchone()[0]


def test_three_thousand_creates_and_three_thousand_retention_drops_in_one_apply_each(capsys, tmp_path, monkeypatch,
                                                                                     db_url, conn):
    monkeypatch.chdir(tmp_path)
    assert conn.execute("SHOW max_locks_per_transaction").fetchone()[0] == "64"

    def cli(command, now, *extra):
        return run_cli(capsys, command, "specs", "--env", "test", "--database-url", db_url, "--now", now, *extra)

    write_spec(tmp_path / "specs", spec_data(interval="daily", premake="3000 days"))
    created = cli("apply", "2027-01-01T12:00Z", "--auto-approve")
    assert created.code == 0, created.err
    assert partition_count(conn) == 3001
    assert cli("plan", "2027-01-01T12:00Z", "--detailed-exitcode").code == 0

    write_spec(tmp_path / "specs", spec_data(interval="daily", premake="1 day", retention="1 day", retention_grace="0 days"))
    retired = cli("apply", "2035-03-21T12:00Z", "--auto-approve")
    assert retired.code == 0, retired.err
    dropped = conn.execute("SELECT count(*) FROM partition_log WHERE dropped_at IS NOT NULL").fetchone()[0]
    assert dropped == 3000
    assert cli("plan", "2035-03-21T12:00Z", "--detailed-exitcode").code == 0
