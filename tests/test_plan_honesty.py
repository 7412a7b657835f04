"""A plan that says it will work must work, on PostgreSQL 15 and 18: what apply would fail on (a missing schema, a
privilege the role lacks, a key of another type than the spec says) is known at plan time, and a pinned clock
is said plainly and refused by apply when it is far from the database's."""

from __future__ import annotations

import json

import psycopg

from dbtools import run_cli
from helpers import spec_data, write_spec

NOW = "2027-02-15T12:00:00Z"


def cli(capsys, url, command, *extra, now=NOW):
    pinned = ("--now", now) if now else ()
    return run_cli(capsys, command, "specs", "--env", "test", "--database-url", url, *pinned, *extra)


def role(conn, db_url, name: str, *grants: str) -> str:
    conn.execute(f"CREATE ROLE {name} LOGIN")
    for grant in grants:
        conn.execute(grant)
    return psycopg.conninfo.make_conninfo(db_url, user=name)


def test_a_table_in_a_schema_that_does_not_exist_is_an_error_at_plan_time(capsys, workdir, db_url, conn):
    write_spec(workdir / "specs", spec_data(table="app.events"))
    result = cli(capsys, db_url, "plan")
    assert result.code == 1
    assert "schema app does not exist" in result.out and "schema app does not exist" in result.err
    assert "+ create table" not in result.out
    assert cli(capsys, db_url, "apply", "--auto-approve").code == 1
    assert conn.execute("SELECT to_regnamespace('app')").fetchone()[0] is None


def test_a_role_without_create_on_the_schema_plans_and_is_refused_by_apply_at_plan_time(capsys, workdir, db_url, conn):
    conn.execute("CREATE SCHEMA app")
    url = role(conn, db_url, "reader", "GRANT USAGE ON SCHEMA app TO reader")
    write_spec(workdir / "specs", spec_data(table="app.events"))
    result = cli(capsys, url, "plan", "--detailed-exitcode")
    assert result.code == 2, result.err
    assert "+ create table app.events" in result.out, "the plan is a read: it is made and shown"
    assert "! refused  apply will refuse this table: app.events: the connected role has no CREATE privilege" in result.out
    assert result.err.splitlines() == [
        "warning: app.events: the connected role has no CREATE privilege on schema app, so it cannot create the table;"
        " apply will refuse this table"]
    applied = cli(capsys, url, "apply", "--auto-approve")
    assert applied.code == 1 and "no CREATE privilege on schema app" in applied.err
    assert conn.execute("SELECT to_regclass('app.events')").fetchone()[0] is None


def test_a_role_that_does_not_own_the_parent_plans_and_watches_drift_but_apply_refuses(capsys, workdir, db_url, conn):
    write_spec(workdir / "specs", spec_data(interval="monthly", premake="2 months"))
    assert cli(capsys, db_url, "apply", "--auto-approve").code == 0
    url = role(conn, db_url, "stranger", "GRANT CREATE ON SCHEMA public TO stranger",
               "GRANT SELECT ON partition_log, partition_config TO stranger")
    write_spec(workdir / "specs", spec_data(interval="monthly", premake="6 months"))
    result = cli(capsys, url, "plan", "--detailed-exitcode")
    assert result.code == 2 and "+ create   public.bookings_2027_05" in result.out
    assert "needs the table's owner (postgres)" in result.out and "needs the table's owner (postgres)" in result.err
    drift = cli(capsys, url, "drift", "--format", "json")
    assert drift.code == 2
    kinds = {f["kind"] for f in json.loads(drift.out)["tables"][0]["findings"]}
    assert "missing" in kinds and "parent" not in kinds, "drift reports the partitions, not the role"
    before = conn.execute("SELECT count(*) FROM pg_inherits WHERE inhparent = 'bookings'::regclass").fetchone()[0]
    applied = cli(capsys, url, "apply", "--auto-approve")
    assert applied.code == 1 and "needs the table's owner (postgres)" in applied.err
    assert conn.execute("SELECT count(*) FROM pg_inherits WHERE inhparent = 'bookings'::regclass").fetchone()[0] == before


def test_a_partition_key_of_another_type_than_the_spec_says_is_an_error(capsys, workdir, db_url, conn):
    conn.execute("CREATE TABLE bookings (id bigint, start_time date) PARTITION BY RANGE (start_time)")
    write_spec(workdir / "specs", spec_data())
    result = cli(capsys, db_url, "plan")
    assert result.code == 1
    assert "start_time is date in the database, but the spec's columns say timestamp with time zone" in result.err


def test_a_timezone_on_a_date_key_is_said_to_decide_only_what_today_is(capsys, workdir, db_url, conn):
    conn.execute("CREATE TABLE bookings (id bigint, start_time date) PARTITION BY RANGE (start_time)")
    data = spec_data(timezone="Pacific/Auckland")
    data.pop("columns"), data.pop("primary_key")
    write_spec(workdir / "specs", data)
    result = cli(capsys, db_url, "plan")
    assert result.code == 0 and "PM209" in result.out


def test_plan_says_plainly_that_the_clock_is_pinned(capsys, workdir, db_url, conn):
    write_spec(workdir / "specs", spec_data())
    text = cli(capsys, db_url, "plan")
    assert "clock pinned by --now" in text.out and "the database's clock says" in text.out
    doc = json.loads(cli(capsys, db_url, "plan", "--format", "json").out)
    assert doc["clock"]["pinned"] is True and doc["now"] == "2027-02-15T12:00:00+00:00"
    markdown = cli(capsys, db_url, "plan", "--format", "markdown").out
    assert "The clock is pinned by --now to 2027-02-15T12:00:00+00:00" in markdown
    unpinned = json.loads(cli(capsys, db_url, "plan", "--format", "json", now=None).out)
    assert unpinned["clock"] == {"pinned": False, "database_now": None}


def test_apply_refuses_a_clock_more_than_one_interval_from_the_databases(capsys, workdir, db_url, conn, monkeypatch):
    monkeypatch.delenv("PARTMAN_ALLOW_CLOCK_SKEW", raising=False)
    write_spec(workdir / "specs", spec_data(retention="1 month", retention_grace="0 days"))
    result = cli(capsys, db_url, "apply", "--auto-approve", now="2029-01-01T00:00:00Z")
    assert result.code == 64 and "--allow-clock-skew" in result.err
    assert len(result.err.splitlines()) == 1
    assert conn.execute("SELECT to_regclass('bookings')").fetchone()[0] is None, "nothing changed"
    allowed = cli(capsys, db_url, "apply", "--auto-approve", "--allow-clock-skew", now="2029-01-01T00:00:00Z")
    assert allowed.code == 0, allowed.err


def test_apply_accepts_a_clock_pinned_within_one_interval(capsys, workdir, db_url, conn, monkeypatch):
    monkeypatch.delenv("PARTMAN_ALLOW_CLOCK_SKEW", raising=False)
    db_now = conn.execute("SELECT now()").fetchone()[0]
    write_spec(workdir / "specs", spec_data())
    result = cli(capsys, db_url, "apply", "--auto-approve", now=db_now.isoformat())
    assert result.code == 0, result.err


def test_a_column_type_the_server_does_not_know_is_an_error_at_plan_time(capsys, workdir, db_url, conn):
    data = spec_data()
    data["columns"].append({"name": "shape", "type": "no_such_type"})
    write_spec(workdir / "specs", data)
    result = cli(capsys, db_url, "plan")
    assert result.code == 1 and "'no_such_type' does not exist in the database" in result.err
