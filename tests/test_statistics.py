"""The parent's statistics, which autovacuum never collects for a partitioned table, on PostgreSQL 15 and 18: apply
analyzes the parent after it created, detached or dropped partitions (analyze: after_changes, the default), never
with analyze: never, and, with an age, whenever they are older or were never collected, which drift reports."""

from __future__ import annotations

import json

from dbtools import run_cli
from helpers import spec_data, write_spec

NOW = "2027-02-15T12:00:00Z"


def cli(capsys, db_url, command, *extra, now=NOW):
    return run_cli(capsys, command, "specs", "--env", "test", "--database-url", db_url, "--now", now, *extra)


def collected(conn) -> bool:
    """reltuples of a partitioned table is -1 until its first ANALYZE (transactional, unlike pg_stat's times)."""
    return conn.execute("SELECT reltuples >= 0 FROM pg_class WHERE oid = 'bookings'::regclass").fetchone()[0]


def test_apply_analyzes_the_parent_after_it_changed_partitions(capsys, workdir, db_url, conn):
    write_spec(workdir / "specs", spec_data(premake="2 months"))
    plan = cli(capsys, db_url, "plan")
    assert "~ analyze  ANALYZE public.bookings (after the changes above)" in plan.out
    assert cli(capsys, db_url, "apply", "--auto-approve").code == 0
    assert collected(conn)
    assert cli(capsys, db_url, "plan", "--detailed-exitcode").code == 0, "no age: nothing more to do"


def test_analyze_never_leaves_the_parent_alone(capsys, workdir, db_url, conn):
    write_spec(workdir / "specs", spec_data(premake="2 months", analyze="never"))
    assert "~ analyze" not in cli(capsys, db_url, "plan").out
    assert cli(capsys, db_url, "apply", "--auto-approve").code == 0
    assert not collected(conn)


def test_with_an_age_statistics_never_collected_are_drift_and_apply_collects_them(capsys, workdir, db_url, conn):
    conn.execute("CREATE TABLE bookings (id bigint GENERATED ALWAYS AS IDENTITY, start_time timestamptz NOT NULL, note text)"
                 " PARTITION BY RANGE (start_time);"
                 " CREATE TABLE bookings_feb PARTITION OF bookings FOR VALUES FROM ('2027-02-01Z') TO ('2027-06-01Z')")
    write_spec(workdir / "specs", spec_data(premake="2 months", analyze="7 days", adopt="existing"))
    drift = cli(capsys, db_url, "drift", "--format", "json")
    assert drift.code == 2
    (finding,) = [f for f in json.loads(drift.out)["tables"][0]["findings"] if f["kind"] == "statistics"]
    assert "never collected" in finding["detail"]
    plan = cli(capsys, db_url, "plan", "--detailed-exitcode")
    assert plan.code == 2 and "~ analyze  ANALYZE public.bookings (the parent's statistics were never collected)" in plan.out
    assert cli(capsys, db_url, "apply", "--auto-approve").code == 0
    assert collected(conn)


def test_with_an_age_statistics_older_than_it_are_due_again(capsys, workdir, db_url, conn):
    write_spec(workdir / "specs", spec_data(premake="2 months", analyze="7 days"))
    assert cli(capsys, db_url, "apply", "--auto-approve", now=None).code == 0
    assert cli(capsys, db_url, "plan", "--detailed-exitcode", now=None).code == 0, "just analyzed"
    later = conn.execute("SELECT (now() + interval '8 days')::text").fetchone()[0].replace(" ", "T")
    plan = cli(capsys, db_url, "plan", now=later)
    assert "the parent's statistics are older than 7 days" in plan.out


def test_an_age_that_is_not_a_span_is_refused_at_its_line(capsys, workdir):
    write_spec(workdir / "specs", spec_data(analyze="weekly"))
    result = run_cli(capsys, "validate", "specs")
    assert result.code == 1 and "analyze" in result.err
