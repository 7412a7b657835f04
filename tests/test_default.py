"""Rows in the default partition, on PostgreSQL 15 and 18: shown in the plan, refused unless allowed, moved
with counts verified, and ATTACH spared its scan of a large default."""

from __future__ import annotations

import json
from datetime import datetime

import psycopg
import pytest

from dbtools import count, partitions, ranges, run_cli
from helpers import spec_data, write_spec

from partman import catalog, moves, planner
from partman.apply import Status, apply_plan
from partman.audit import Context
from partman.spec import load_specs

NOW = "2027-02-15T12:00:00Z"


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


def cli(capsys, db_url, command, *extra):
    return run_cli(capsys, command, "specs", "--env", "test", "--database-url", db_url, "--now", NOW, *extra)


def with_default_rows(capsys, workdir, db_url, conn, **spec):
    """A table with February only, a default partition, and rows in it for March (3) and far away (2)."""
    write_spec(workdir / "specs", spec_data(interval="monthly", premake="0 days"))
    assert cli(capsys, db_url, "apply", "--auto-approve").code == 0
    conn.execute("CREATE TABLE bookings_default PARTITION OF bookings DEFAULT")
    conn.execute("INSERT INTO bookings (start_time, note) VALUES ('2027-03-03Z', 'a'), ('2027-03-09Z', 'b'),"
                 " ('2027-03-31 23:59Z', 'c'), ('2031-01-01Z', 'far'), ('2032-01-01Z', 'farther')")
    write_spec(workdir / "specs", spec_data(interval="monthly", premake="2 months", **spec))


def test_the_plan_shows_rows_waiting_in_the_default(capsys, workdir, db_url, conn):
    with_default_rows(capsys, workdir, db_url, conn)
    text = cli(capsys, db_url, "plan")
    assert "+ create   public.bookings_2027_03" in text.out and "(moves 3 rows from the default partition)" in text.out
    assert "PM204" in text.out
    doc = json.loads(cli(capsys, db_url, "plan", "--format", "json").out)
    moved = {a["partition"]: a.get("default_rows", 0) for a in doc["tables"][0]["actions"]}
    assert moved == {"public.bookings_2027_03": 3, "public.bookings_2027_04": 0}


def test_apply_refuses_to_move_rows_unless_allowed(capsys, workdir, db_url, conn):
    with_default_rows(capsys, workdir, db_url, conn)
    before = partitions(conn, "bookings")
    result = cli(capsys, db_url, "apply", "--auto-approve")
    assert result.code == 3
    assert "public.bookings_default holds 3 rows in the range of public.bookings_2027_03" in result.err
    assert "--move-default-rows" in result.err and "nothing changed" in result.err
    assert partitions(conn, "bookings") == before
    assert count(conn, "bookings_default") == 5


@pytest.mark.parametrize("allow", ["flag", "spec"])
def test_allowed_moves_keep_every_row_and_analyze_the_new_partition(capsys, workdir, db_url, conn, allow):
    with_default_rows(capsys, workdir, db_url, conn, **({"move_default_rows": True} if allow == "spec" else {}))
    before = sorted(conn.execute("SELECT id, start_time, note FROM bookings").fetchall())
    result = cli(capsys, db_url, "apply", "--auto-approve", *(["--move-default-rows"] if allow == "flag" else []))
    assert result.code == 0, result.err
    assert sorted(conn.execute("SELECT id, start_time, note FROM bookings").fetchall()) == before
    assert count(conn, "bookings_2027_03") == 3 and count(conn, "bookings_default") == 2
    assert [r[0] for r in conn.execute("SELECT note FROM bookings_2027_03 ORDER BY start_time").fetchall()] == ["a", "b", "c"]
    analyzed = conn.execute("SELECT reltuples FROM pg_class WHERE relname = 'bookings_2027_03'").fetchone()[0]
    assert analyzed == 3
    assert ranges(conn, "bookings")[-1] == ("2027-04-01 00:00:00+00", "2027-05-01 00:00:00+00")
    assert cli(capsys, db_url, "plan", "--detailed-exitcode").code == 0


def test_attach_beside_a_large_default_skips_its_scan_and_leaves_no_constraint(capsys, workdir, db_url, conn, monkeypatch):
    write_spec(workdir / "specs", spec_data(interval="monthly", premake="0 days"))
    assert cli(capsys, db_url, "apply", "--auto-approve").code == 0
    conn.execute("CREATE TABLE bookings_default PARTITION OF bookings DEFAULT")
    conn.execute("INSERT INTO bookings (start_time) SELECT '2031-01-01Z'::timestamptz + g * interval '1 minute' FROM generate_series(1, 2000) g")
    monkeypatch.setattr(moves, "LARGE_DEFAULT_BYTES", 0)  # any default counts as large here
    write_spec(workdir / "specs", spec_data(interval="monthly", premake="2 months"))
    specs = load_specs([workdir / "specs"], "test")
    now = datetime.fromisoformat(NOW)
    with psycopg.connect(db_url, autocommit=True) as c:
        said: list[str] = []
        c.add_notice_handler(lambda d: said.append(d.message_primary or ""))
        c.execute("SET client_min_messages = debug1")
        the_plan = planner.plan(specs, catalog.snapshot(c, specs, now=now, to_probe=planner.presence_needed), now=now, env="test")
        outcomes = apply_plan(c, the_plan, specs, ctx=Context("public", "test", "p", now))
    assert [o.status for o in outcomes] == [Status.APPLIED]
    implied = [m for m in said if "is implied by existing constraints" in m]
    assert len(implied) == 2, said  # one per ATTACH: the default was not scanned under the ATTACH's lock
    leftover = conn.execute("SELECT conname FROM pg_constraint WHERE conname LIKE 'partman_attach_%'").fetchall()
    assert leftover == []
    assert count(conn, "bookings_default") == 2000


def test_a_transient_constraint_left_by_an_interrupted_run_is_removed(capsys, workdir, db_url, conn):
    with_default_rows(capsys, workdir, db_url, conn)
    conn.execute("DELETE FROM bookings_default WHERE start_time < '2030-01-01Z'")
    conn.execute("ALTER TABLE bookings_default ADD CONSTRAINT partman_attach_0123456789ab"
                 " CHECK (NOT (start_time >= '2027-03-01Z' AND start_time < '2027-04-01Z')) NOT VALID")
    assert cli(capsys, db_url, "apply", "--auto-approve").code == 0
    assert conn.execute("SELECT count(*) FROM pg_constraint WHERE conname LIKE 'partman_attach_%'").fetchone()[0] == 0
