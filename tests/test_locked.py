"""Nothing waits on a lock without a bound, on PostgreSQL 15 and 18: plan, drift and apply meet tables and state
tables held in ACCESS EXCLUSIVE by another session (a migration, a VACUUM FULL), give up after the ladder's
budget, say what was busy, and never hang; catalog-only reads take no table locks at all."""

from __future__ import annotations

import json
from contextlib import contextmanager

import psycopg

from dbtools import run_cli
from helpers import spec_data, write_spec

from partman.lock import Ladder, attempts

NOW = "2027-02-15T12:00:00Z"
BUDGET = ("--lock-timeout-ms", "50", "--lock-budget", "0.5")


def cli(capsys, db_url, command, *extra):
    return run_cli(capsys, command, "specs", "--env", "test", "--database-url", db_url, "--now", NOW, *extra)


@contextmanager
def held(db_url: str, *relations: str):
    """Another session holding ACCESS EXCLUSIVE on relations (LOCK TABLE on a parent locks its partitions too)."""
    with psycopg.connect(db_url) as other:
        other.execute(f"LOCK TABLE {', '.join(relations)} IN ACCESS EXCLUSIVE MODE")
        yield other
        other.rollback()


def quarterly_then_monthly(capsys, workdir, db_url):
    """A quarterly table whose spec turns monthly: the plan needs to know whether next year's quarters hold rows."""
    write_spec(workdir / "specs", spec_data(interval="quarterly", premake="9 months"))
    assert cli(capsys, db_url, "apply", "--auto-approve").code == 0
    write_spec(workdir / "specs", spec_data(interval="monthly", premake="9 months"))


def test_every_attempt_waits_one_step_and_the_pauses_between_them_grow():
    ladder = Ladder(step_ms=100, max_pause_ms=800, budget_s=30)
    steps = []
    for step in attempts(Ladder(step_ms=100, budget_s=0.3), "x"):
        steps.append(step)
        if len(steps) == 3:
            break
    assert steps == [95, 95, 95], "every attempt waits the same, a little under the step"
    pauses = [ladder.pause(n) for n in range(1, 8)]
    assert all(0.05 <= p <= 0.1 for p in pauses[:1])
    assert max(pauses) <= 0.8 and pauses[-1] >= 0.4


def test_plan_behind_a_locked_table_reports_it_busy_instead_of_waiting(capsys, workdir, db_url, conn):
    quarterly_then_monthly(capsys, workdir, db_url)
    with held(db_url, "bookings"):
        result = cli(capsys, db_url, "plan", *BUDGET)
    assert result.code == 0, result.err
    assert "! busy" in result.out and "PM208" in result.out
    assert "- drop" not in result.out, "a quarter whose rows could not be checked is kept, never dropped"


def test_plan_json_marks_the_partitions_it_could_not_check(capsys, workdir, db_url, conn):
    quarterly_then_monthly(capsys, workdir, db_url)
    with held(db_url, "bookings_2027_q3"):
        doc = json.loads(cli(capsys, db_url, "plan", "--format", "json", *BUDGET).out)
    busy = [n["partition"] for n in doc["tables"][0]["kept"] if n["code"] == "PM208"]
    assert busy == ["public.bookings_2027_q3"]
    dropped = [a["partition"] for a in doc["tables"][0]["actions"] if a["action"] == "drop"]
    assert "public.bookings_2027_q4" in dropped, "the partitions that were not locked are planned as usual"


def test_a_lock_released_within_the_budget_is_waited_out_between_attempts(capsys, workdir, db_url, conn):
    quarterly_then_monthly(capsys, workdir, db_url)
    other = psycopg.connect(db_url)
    other.execute("LOCK TABLE bookings IN ACCESS EXCLUSIVE MODE")
    import threading

    threading.Timer(0.4, other.rollback).start()
    try:
        result = cli(capsys, db_url, "plan", "--lock-timeout-ms", "50", "--lock-budget", "20")
    finally:
        other.close()
    assert result.code == 0 and "PM208" not in result.out
    assert "- drop" in result.out


def test_a_locked_partition_log_ends_plan_with_exit_4_and_one_line(capsys, workdir, db_url, conn):
    quarterly_then_monthly(capsys, workdir, db_url)
    with held(db_url, "partition_log"):
        result = cli(capsys, db_url, "plan", *BUDGET)
    assert result.code == 4
    assert len(result.err.splitlines()) == 1 and "partition_log" in result.err and "safe to retry" in result.err


def test_catalog_only_reads_take_no_table_locks(capsys, workdir, db_url, conn):
    """A plan that needs no row counts reads only the catalog: it is not delayed by a table held in ACCESS
    EXCLUSIVE, even with a budget far longer than the test (it would hang here if it waited)."""
    write_spec(workdir / "specs", spec_data(interval="monthly", premake="3 months"))
    assert cli(capsys, db_url, "apply", "--auto-approve").code == 0
    write_spec(workdir / "specs", spec_data(interval="monthly", premake="6 months"))
    with held(db_url, "bookings"):
        result = cli(capsys, db_url, "plan", "--lock-budget", "3600")
    assert result.code == 0 and "PM208" not in result.out and "+ create" in result.out


def test_drift_behind_a_locked_default_partition_reports_it_busy(capsys, workdir, db_url, conn):
    write_spec(workdir / "specs", spec_data(interval="monthly", premake="3 months"))
    assert cli(capsys, db_url, "apply", "--auto-approve").code == 0
    conn.execute("CREATE TABLE bookings_default PARTITION OF bookings DEFAULT")
    with held(db_url, "bookings_default"):
        result = cli(capsys, db_url, "drift", "--format", "json", *BUDGET)
    assert result.code == 2
    findings = json.loads(result.out)["tables"][0]["findings"]
    assert {"kind": "busy", "partition": "public.bookings_default"} in [
        {k: f[k] for k in ("kind", "partition")} for f in findings
    ]


def test_apply_plans_around_a_locked_partition_and_the_next_run_finishes(capsys, workdir, db_url, conn):
    quarterly_then_monthly(capsys, workdir, db_url)
    with held(db_url, "bookings_2027_q4"):
        result = cli(capsys, db_url, "apply", "--auto-approve", *BUDGET)
        assert result.code == 0, result.err
        assert "PM208" in result.out and "Traceback" not in result.err
    assert conn.execute("SELECT to_regclass('bookings_2027_q4') IS NOT NULL").fetchone()[0], "kept, never dropped unseen"
    assert cli(capsys, db_url, "apply", "--auto-approve").code == 0
    assert conn.execute("SELECT to_regclass('bookings_2027_q4') IS NULL").fetchone()[0]
    assert cli(capsys, db_url, "plan", "--detailed-exitcode").code == 0
