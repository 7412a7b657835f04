"""Scenarios against real PostgreSQL 15 and 18: the catalog and the row counts after each apply."""

from __future__ import annotations

import threading
import time
from datetime import datetime

import psycopg
import pytest

from dbtools import assert_contiguous, count, partitions, ranges, run_cli
from helpers import spec_data, write_spec

from partman import catalog, planner
from partman.apply import Status, apply_plan, exit_code
from partman.audit import Context
from partman.lock import LOCK_CLASS, Ladder
from partman.spec import load_specs


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


def apply(capsys, db_url, spec_dir, now, *extra):
    return run_cli(capsys, "apply", str(spec_dir), "--env", "test", "--database-url", db_url, "--now", now, "--auto-approve", *extra)


def plan(capsys, db_url, spec_dir, now, *extra):
    return run_cli(capsys, "plan", str(spec_dir), "--env", "test", "--database-url", db_url, "--now", now, *extra)


def test_a_fresh_table_gets_full_coverage_and_the_next_plan_is_empty(capsys, workdir, db_url, conn):
    write_spec(workdir / "specs", spec_data(interval="monthly", premake="6 months"))
    result = apply(capsys, db_url, workdir / "specs", "2027-02-15T12:00:00Z")
    assert result.code == 0, result.err
    rs = ranges(conn, "public.bookings")
    assert rs[0][0] == "2027-02-01 00:00:00+00" and rs[-1][1] == "2027-09-01 00:00:00+00"
    assert len(rs) == 7
    assert_contiguous(rs)
    again = plan(capsys, db_url, workdir / "specs", "2027-02-15T12:00:00Z", "--detailed-exitcode")
    assert again.code == 0 and again.out.rstrip().endswith("No changes.")
    logged = conn.execute("SELECT count(*) FROM partition_log WHERE dropped_at IS NULL").fetchone()[0]
    audited = conn.execute("SELECT count(*) FROM partition_audit_log WHERE action = 'create'").fetchone()[0]
    assert logged == audited == 7


def test_monthly_to_quarterly_keeps_rows_and_bridges_without_gaps(capsys, workdir, db_url, conn):
    specs = workdir / "specs"
    now = "2027-02-15T12:00:00Z"
    write_spec(specs, spec_data(interval="monthly", premake="6 months"))
    assert apply(capsys, db_url, specs, now).code == 0
    conn.execute(
        "INSERT INTO bookings (start_time, note) SELECT t, 'x' FROM unnest(%s::timestamptz[]) t",
        (["2027-02-20T10:00Z", "2027-02-21T10:00Z", "2027-02-22T10:00Z", "2027-05-10T08:00Z", "2027-05-11T08:00Z"],),
    )
    before = dict(partitions(conn, "public.bookings"))

    write_spec(specs, spec_data(interval="quarterly", premake="6 months"))
    shown = plan(capsys, db_url, specs, now)
    assert "PM101" in shown.out and "bookings_2027_05" in shown.out
    result = apply(capsys, db_url, specs, now)
    assert result.code == 0, result.err

    after = dict(partitions(conn, "public.bookings"))
    for kept in ("bookings_2027_02", "bookings_2027_05", "bookings_2027_03", "bookings_2027_04", "bookings_2027_06"):
        assert after[kept] == before[kept]
    assert "bookings_2027_07" not in after and "bookings_2027_08" not in after
    assert after["bookings_2027_q3"] == "FOR VALUES FROM ('2027-07-01 00:00:00+00') TO ('2027-10-01 00:00:00+00')"
    rs = ranges(conn, "public.bookings")
    assert rs[0][0] == "2027-01-01 00:00:00+00" and rs[-1][1] == "2027-10-01 00:00:00+00"
    assert_contiguous(rs)
    assert count(conn, "bookings") == 5
    assert plan(capsys, db_url, specs, now, "--detailed-exitcode").code == 0
    drops = conn.execute("SELECT partition_name, reason FROM partition_audit_log WHERE action = 'drop' ORDER BY 1").fetchall()
    assert drops == [("bookings_2027_07", "interval_change"), ("bookings_2027_08", "interval_change")]


def test_retention_detaches_expired_partitions_and_drops_them_after_the_grace(capsys, workdir, db_url, conn):
    specs = workdir / "specs"
    write_spec(specs, spec_data(interval="monthly", premake="2 months", retention="3 months", retention_grace="7 days"))
    assert apply(capsys, db_url, specs, "2026-01-15T00:00:00Z").code == 0
    conn.execute("INSERT INTO bookings (start_time) VALUES ('2026-01-20Z'), ('2026-02-20Z'), ('2026-03-20Z')")

    # 2026-06-10: the cutoff is 2026-03-10; January and February have ended before it, March has not.
    result = apply(capsys, db_url, specs, "2026-06-10T00:00:00Z")
    assert result.code == 0, result.err
    names = [n for n, _ in partitions(conn, "public.bookings")]
    assert "bookings_2026_01" not in names and "bookings_2026_02" not in names and "bookings_2026_03" in names
    assert count(conn, "bookings_2026_01") == 1, "a detached partition keeps its rows during the grace period"
    detached = conn.execute("SELECT partition_name FROM partition_log WHERE detached_at IS NOT NULL ORDER BY 1").fetchall()
    assert detached == [("bookings_2026_01",), ("bookings_2026_02",)]

    assert plan(capsys, db_url, specs, "2026-06-14T00:00:00Z", "--detailed-exitcode").code == 0
    result = apply(capsys, db_url, specs, "2026-06-18T00:00:00Z")
    assert result.code == 0, result.err
    assert conn.execute("SELECT to_regclass('bookings_2026_01'), to_regclass('bookings_2026_02')").fetchone() == (None, None)
    dropped = conn.execute("SELECT count(*) FROM partition_log WHERE dropped_at IS NOT NULL").fetchone()[0]
    assert dropped == 2
    reasons = conn.execute("SELECT DISTINCT reason FROM partition_audit_log WHERE action = 'drop'").fetchall()
    assert reasons == [("retention_grace_elapsed",)]
    assert count(conn, "bookings") == 1


def test_a_row_that_arrives_between_plan_and_apply_blocks_the_drop(workdir, db_url, conn, capsys):
    specs = workdir / "specs"
    now = datetime.fromisoformat("2027-02-15T12:00:00+00:00")
    write_spec(specs, spec_data(interval="quarterly", premake="6 months"))
    assert apply(capsys, db_url, specs, now.isoformat()).code == 0
    before = partitions(conn, "public.bookings")

    write_spec(specs, spec_data(interval="monthly", premake="6 months"))
    loaded = load_specs([specs], "test")
    snap = catalog.snapshot(conn, loaded, now=now, to_probe=planner.presence_needed)
    the_plan = planner.plan(loaded, snap, now=now, env="test")
    assert any(a.partition.name == "bookings_2027_q2" and a.kind.value == "drop" for a in the_plan.tables[0].actions)

    conn.execute("INSERT INTO bookings (start_time) VALUES ('2027-05-05T00:00Z')")
    outcomes = apply_plan(conn, the_plan, loaded, ctx=Context("public", "test", "p1", now))
    assert [o.status for o in outcomes] == [Status.BLOCKED]
    assert exit_code(outcomes) == 3
    assert "bookings_2027_q2 holds rows" in outcomes[0].message
    assert partitions(conn, "public.bookings") == before
    assert count(conn, "bookings") == 1
    assert conn.execute("SELECT count(*) FROM partition_audit_log WHERE action = 'drop'").fetchone()[0] == 0


def _hold_table_lock(db_url, table, seconds, ready):
    with psycopg.connect(db_url) as other:
        other.execute(
            "SELECT pg_advisory_xact_lock(%s, ('x' || left(md5(format('%%I.%%I', 'public', %s::text)), 8))::bit(32)::int)",
            (LOCK_CLASS, table),
        )
        ready.set()
        time.sleep(seconds)


def test_two_applies_at_once_serialize_and_converge(capsys, workdir, db_url, conn):
    specs = workdir / "specs"
    write_spec(specs, spec_data(interval="monthly", premake="6 months"))
    assert apply(capsys, db_url, specs, "2027-02-15T12:00:00Z").code == 0  # parent exists, state tables too
    write_spec(specs, spec_data(interval="monthly", premake="12 months"))
    ready = threading.Event()
    holder = threading.Thread(target=_hold_table_lock, args=(db_url, "bookings", 1.0, ready))
    holder.start()
    ready.wait()
    loaded = load_specs([specs], "test")
    now = datetime.fromisoformat("2027-02-15T12:00:00+00:00")
    results: list = []

    def one_apply():
        with psycopg.connect(db_url, autocommit=True) as c:
            snap = catalog.snapshot(c, loaded, now=now, to_probe=planner.presence_needed)
            p = planner.plan(loaded, snap, now=now, env="test")
            results.append(apply_plan(c, p, loaded, ctx=Context("public", "test", "x", now), ladder=Ladder(budget_s=10)))

    workers = [threading.Thread(target=one_apply) for _ in range(2)]
    for w in workers:
        w.start()
    for w in workers + [holder]:
        w.join()
    statuses = sorted(o[0].status.value for o in results)
    assert statuses == ["applied", "unchanged"], results
    rs = ranges(conn, "public.bookings")
    assert len(rs) == 13 and rs[-1][1] == "2028-03-01 00:00:00+00"
    assert_contiguous(rs)
    assert conn.execute("SELECT count(*) FROM partition_audit_log WHERE action = 'create'").fetchone()[0] == 13


def test_a_lock_held_past_the_ladder_exits_4_with_nothing_changed(capsys, workdir, db_url, conn):
    specs = workdir / "specs"
    write_spec(specs, spec_data(interval="monthly", premake="1 month"))
    assert apply(capsys, db_url, specs, "2027-02-15T12:00:00Z").code == 0
    before = partitions(conn, "public.bookings")
    write_spec(specs, spec_data(interval="monthly", premake="6 months"))
    ready = threading.Event()
    holder = threading.Thread(target=_hold_table_lock, args=(db_url, "bookings", 3.0, ready))
    holder.start()
    ready.wait()
    result = apply(capsys, db_url, specs, "2027-02-15T12:00:00Z", "--lock-budget", "0.8")
    holder.join()
    assert result.code == 4
    assert "public.bookings: partman's lock: lock not obtained" in result.err
    assert "safe to retry; nothing changed for this table" in result.err
    assert partitions(conn, "public.bookings") == before


def test_a_table_name_with_quotes_spaces_and_a_semicolon_is_an_identifier(capsys, workdir, db_url, conn):
    name = 'we"ird; DROP TABLE x; --'
    specs = workdir / "specs"
    write_spec(specs, spec_data(table=f"public.{name}", interval="monthly", premake="2 months"))
    result = apply(capsys, db_url, specs, "2027-02-15T12:00:00Z")
    assert result.code == 0, result.err
    table = '"we""ird; DROP TABLE x; --"'
    rs = ranges(conn, f"public.{table}")
    assert len(rs) == 3
    assert_contiguous(rs)
    conn.execute(f"INSERT INTO public.{table} (start_time) VALUES ('2027-03-03Z')")
    assert count(conn, f"public.{table}") == 1
    assert plan(capsys, db_url, specs, "2027-02-15T12:00:00Z", "--detailed-exitcode").code == 0


def test_a_partition_not_in_the_log_is_shown_and_never_dropped(capsys, workdir, db_url, conn):
    specs = workdir / "specs"
    write_spec(specs, spec_data(interval="monthly", premake="1 month"))
    assert apply(capsys, db_url, specs, "2027-02-15T12:00:00Z").code == 0
    conn.execute("CREATE TABLE manual_q3 PARTITION OF bookings FOR VALUES FROM ('2027-07-01Z') TO ('2027-10-01Z')")
    write_spec(specs, spec_data(interval="monthly", premake="12 months"))
    result = apply(capsys, db_url, specs, "2027-02-15T12:00:00Z")
    assert result.code == 0, result.err
    assert "! unmanaged public.manual_q3" in result.out and "PM201" in result.out
    names = [n for n, _ in partitions(conn, "public.bookings")]
    assert "manual_q3" in names and "bookings_2027_07" not in names
    assert_contiguous(ranges(conn, "public.bookings"))


def test_date_and_timestamp_keys_are_partitioned_by_local_dates(capsys, workdir, db_url, conn):
    specs = workdir / "specs"
    for table, key_type in (("by_date", "date"), ("by_ts", "timestamp")):
        data = spec_data(table=table, interval="quarterly", premake="3 months", timezone="Asia/Tokyo")
        data["columns"][1]["type"] = key_type
        write_spec(specs, data, f"{table}.yaml")
    result = apply(capsys, db_url, specs, "2026-12-31T20:00:00Z")  # already 2027-01-01 in Tokyo
    assert result.code == 0, result.err
    assert ranges(conn, "by_date") == [("2027-01-01", "2027-04-01"), ("2027-04-01", "2027-07-01")]
    assert ranges(conn, "by_ts") == [("2027-01-01 00:00:00", "2027-04-01 00:00:00"), ("2027-04-01 00:00:00", "2027-07-01 00:00:00")]


def test_timestamptz_boundaries_do_not_depend_on_the_session_time_zone(capsys, workdir, db_url, conn):
    specs = workdir / "specs"
    write_spec(specs, spec_data(interval="monthly", premake="1 month", timezone="Europe/Berlin"))
    url = psycopg.conninfo.make_conninfo(db_url, options="-c TimeZone=Pacific/Auckland")
    result = run_cli(capsys, "apply", str(specs), "--env", "test", "--database-url", url, "--now", "2027-02-15T12:00:00Z", "--auto-approve")
    assert result.code == 0, result.err
    assert ranges(conn, "bookings")[0] == ("2027-01-31 23:00:00+00", "2027-02-28 23:00:00+00")


def test_one_table_failing_does_not_stop_the_others_and_the_exit_code_is_the_worst(capsys, workdir, db_url, conn):
    specs = workdir / "specs"
    write_spec(specs, spec_data(table="held", interval="monthly", premake="1 month"), "held.yaml")
    write_spec(specs, spec_data(table="free", interval="monthly", premake="1 month"), "free.yaml")
    assert apply(capsys, db_url, specs, "2027-02-15T12:00:00Z").code == 0
    write_spec(specs, spec_data(table="held", interval="monthly", premake="3 months"), "held.yaml")
    write_spec(specs, spec_data(table="free", interval="monthly", premake="3 months"), "free.yaml")
    ready = threading.Event()
    holder = threading.Thread(target=_hold_table_lock, args=(db_url, "held", 2.0, ready))
    holder.start()
    ready.wait()
    result = apply(capsys, db_url, specs, "2027-02-15T12:00:00Z", "--lock-budget", "0.5")
    holder.join()
    assert result.code == 4
    assert len(ranges(conn, "free")) == 4 and len(ranges(conn, "held")) == 2
    assert "public.free: applied 2 actions" in result.out
