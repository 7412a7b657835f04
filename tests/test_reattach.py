"""Undoing a retention mistake, on PostgreSQL 15 and 18: a partition retention detached, still there in its
grace period, is attached again with its rows when its range is wanted again, never replaced by an empty twin;
and a name taken by any relation or type of the schema is never planned for a create."""

from __future__ import annotations

import json

import pytest

from dbtools import count, run_cli
from helpers import spec_data, write_spec


def cli(capsys, db_url, command, now, *extra):
    return run_cli(capsys, command, "specs", "--env", "test", "--database-url", db_url, "--now", now, *extra)


def monthly_with_old_rows(capsys, workdir, db_url, conn):
    """Rows in 2025-03, 2025-09 and 2026-05 of a monthly table laid out from 2025-03 on."""
    write_spec(workdir / "specs", spec_data(interval="monthly", premake="2 months"))
    for now in ("2025-03-15T00:00Z", "2025-09-15T00:00Z", "2026-05-15T00:00Z"):
        assert cli(capsys, db_url, "apply", now, "--auto-approve").code == 0
    conn.execute("INSERT INTO bookings (start_time, note) VALUES ('2025-03-05Z', 'a'), ('2025-09-05Z', 'b'),"
                 " ('2026-05-05Z', 'c')")


def test_lengthening_retention_in_the_grace_period_reattaches_with_rows(capsys, workdir, db_url, conn):
    monthly_with_old_rows(capsys, workdir, db_url, conn)
    write_spec(workdir / "specs", spec_data(interval="monthly", premake="2 months", retention="3 months",
                                            retention_grace="30 days"))
    assert cli(capsys, db_url, "apply", "2026-05-15T00:00Z", "--auto-approve").code == 0
    assert count(conn, "bookings") == 1, "2025's rows left with their detached partitions"
    write_spec(workdir / "specs", spec_data(interval="monthly", premake="2 months", retention="24 months",
                                            retention_grace="30 days"))
    plan = cli(capsys, db_url, "plan", "2026-05-16T00:00Z")
    assert "+ reattach public.bookings_2025_03" in plan.out and "retention_lengthened" in plan.out
    assert "+ create   public.bookings_2025_03" not in plan.out
    result = cli(capsys, db_url, "apply", "2026-05-16T00:00Z", "--auto-approve")
    assert result.code == 0, result.err
    assert count(conn, "bookings") == 3
    assert conn.execute("SELECT count(*) FROM partition_log WHERE detached_at IS NOT NULL AND dropped_at IS NULL").fetchone()[0] == 0
    audit = conn.execute("SELECT action, reason FROM partition_audit_log WHERE action = 'reattach'").fetchall()
    assert len(audit) >= 2 and set(audit) == {("reattach", "retention_lengthened")}
    assert cli(capsys, db_url, "plan", "2026-05-16T00:00Z", "--detailed-exitcode").code == 0


def test_a_clock_pinned_ahead_then_moved_back_leaves_a_partition_for_today(capsys, workdir, db_url, conn):
    write_spec(workdir / "specs", spec_data(interval="monthly", premake="2 months", retention="3 months",
                                            retention_grace="30 days"))
    assert cli(capsys, db_url, "apply", "2027-02-15T00:00Z", "--auto-approve").code == 0
    conn.execute("INSERT INTO bookings (start_time, note) VALUES ('2027-02-20Z', 'today')")
    assert cli(capsys, db_url, "apply", "2027-09-15T00:00Z", "--auto-approve").code == 0, "February retires"
    result = cli(capsys, db_url, "apply", "2027-02-16T00:00Z", "--auto-approve")
    assert result.code == 0, result.err
    conn.execute("INSERT INTO bookings (start_time, note) VALUES ('2027-02-21Z', 'still today')")
    assert count(conn, "bookings") == 2
    doc = json.loads(cli(capsys, db_url, "plan", "2027-02-16T00:00Z", "--format", "json").out)
    assert doc["summary"]["create"] == 0 and doc["summary"].get("reattach", 0) == 0


@pytest.mark.parametrize("relation", [
    "TABLE public.bookings_2027_03 (x int)",
    "VIEW public.bookings_2027_03 AS SELECT 1 AS x",
    "SEQUENCE public.bookings_2027_03",
    "TYPE public.bookings_2027_03 AS (x int)",
    "TYPE public.bookings_2027_03 AS ENUM ('a')",
    "DOMAIN public.bookings_2027_03 AS int",
])
def test_a_name_taken_by_any_relation_or_type_gets_a_suffix(capsys, workdir, db_url, conn, relation):
    conn.execute(f"CREATE {relation}")
    write_spec(workdir / "specs", spec_data(interval="monthly", premake="2 months"))
    result = cli(capsys, db_url, "apply", "2027-02-15T00:00Z", "--auto-approve")
    assert result.code == 0, result.err
    assert "public.bookings_2027_03_2" in result.out
    conn.execute("INSERT INTO bookings (start_time) VALUES ('2027-03-10Z')")
    assert cli(capsys, db_url, "plan", "2027-02-15T00:00Z", "--detailed-exitcode").code == 0


def test_an_index_holding_the_name_is_avoided_too(capsys, workdir, db_url, conn):
    conn.execute("CREATE TABLE other (x int)")
    conn.execute("CREATE INDEX bookings_2027_03 ON other (x)")
    write_spec(workdir / "specs", spec_data(interval="monthly", premake="2 months"))
    result = cli(capsys, db_url, "apply", "2027-02-15T00:00Z", "--auto-approve")
    assert result.code == 0 and "public.bookings_2027_03_2" in result.out


def test_a_partition_of_another_table_holding_the_name_is_avoided(capsys, workdir, db_url, conn):
    # The read leaves out the partitions of the tables it asks about (it has their names already): not those of others.
    conn.execute("CREATE TABLE other (at timestamptz) PARTITION BY RANGE (at)")
    conn.execute("CREATE TABLE bookings_2027_03 PARTITION OF other FOR VALUES FROM ('2027-03-01Z') TO ('2027-04-01Z')")
    write_spec(workdir / "specs", spec_data(interval="monthly", premake="2 months"))
    result = cli(capsys, db_url, "apply", "2027-02-15T00:00Z", "--auto-approve")
    assert result.code == 0 and "public.bookings_2027_03_2" in result.out


def test_a_name_under_a_longer_table_name_is_found_when_a_shorter_one_covers_it(capsys, workdir, db_url, conn):
    # bookings and bookings_archive: one range of names is read for both, the shorter's.
    conn.execute("CREATE TABLE bookings_archive_2027_03 (x int)")
    write_spec(workdir / "specs", spec_data(interval="monthly", premake="2 months"))
    write_spec(workdir / "specs", spec_data(table="public.bookings_archive", interval="monthly", premake="2 months"),
               name="archive.yaml")
    result = cli(capsys, db_url, "apply", "2027-02-15T00:00Z", "--auto-approve")
    assert result.code == 0, result.err
    assert "public.bookings_archive_2027_03_2" in result.out and "public.bookings_2027_03 " in result.out


def test_plan_reads_the_names_in_use_only_when_it_has_a_create_and_still_avoids_them(capsys, workdir, db_url, conn,
                                                                                    monkeypatch):
    from partman import catalog

    asked = []
    real = catalog._names
    monkeypatch.setattr(catalog, "_names", lambda cur, question: asked.append(1) or real(cur, question))
    conn.execute("CREATE TABLE public.bookings_2027_05 (x int)")
    write_spec(workdir / "specs", spec_data(interval="monthly", premake="2 months"))
    assert cli(capsys, db_url, "apply", "2027-02-15T00:00Z", "--auto-approve").code == 0
    asked.clear()
    assert cli(capsys, db_url, "plan", "2027-02-15T00:00Z", "--detailed-exitcode").code == 0
    assert asked == [], "nothing to create: no name was wanted"
    plan = cli(capsys, db_url, "plan", "2027-03-15T00:00Z")
    assert "+ create   public.bookings_2027_05_2" in plan.out, plan.out
    assert asked == [1]
