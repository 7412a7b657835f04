"""Taking over partitions partman did not make (`adopt: existing`), on PostgreSQL 15 and 18: every attached
partition is adopted as it is, with a log row and no DDL; the grid fills around it; the default partition and
gaps are reported; retention treats adopted partitions as its own from the next apply. And
`retention_keep_table`: retention detaches and never drops."""

from __future__ import annotations

import json

from dbtools import count, ranges, run_cli
from helpers import spec_data, write_spec

HAND_MADE = """
CREATE TABLE bookings (id bigint GENERATED ALWAYS AS IDENTITY, start_time timestamptz NOT NULL, note text,
                       PRIMARY KEY (id, start_time)) PARTITION BY RANGE (start_time);
CREATE TABLE bookings_jan PARTITION OF bookings FOR VALUES FROM ('2026-01-01Z') TO ('2026-02-01Z');
CREATE TABLE bookings_feb PARTITION OF bookings FOR VALUES FROM ('2026-02-01Z') TO ('2026-03-01Z');
CREATE TABLE bookings_odd PARTITION OF bookings FOR VALUES FROM ('2026-03-01Z') TO ('2026-03-20Z');
CREATE TABLE bookings_future PARTITION OF bookings FOR VALUES FROM ('2026-09-01Z') TO ('2026-10-01Z');
CREATE TABLE bookings_default PARTITION OF bookings DEFAULT;
INSERT INTO bookings (start_time, note) VALUES ('2026-01-05Z', 'a'), ('2026-03-10Z', 'b'), ('2026-09-10Z', 'future'),
                                               ('2027-05-01Z', 'in the default');
"""

NOW = "2026-03-10T00:00Z"


def cli(capsys, db_url, command, now, *extra):
    return run_cli(capsys, command, "specs", "--env", "test", "--database-url", db_url, "--now", now, *extra)


def structure(conn) -> list[tuple]:
    """Every relation of the schema with its OID, kind and bound: what any DDL would change."""
    return conn.execute(
        "SELECT c.oid, c.relname, c.relkind, pg_get_expr(c.relpartbound, c.oid) FROM pg_class c"
        " WHERE c.relnamespace = 'public'::regnamespace AND c.relname LIKE 'bookings%' ORDER BY c.relname"
    ).fetchall()


def checksum(conn) -> tuple:
    return conn.execute("SELECT count(*), md5(string_agg(id || start_time::text || note, ',' ORDER BY id))"
                        " FROM bookings").fetchone()


def log_rows(conn) -> list[tuple]:
    return conn.execute(
        "SELECT partition_name, range_start::text, range_end::text, created_by FROM partition_log"
        " WHERE dropped_at IS NULL ORDER BY range_start"
    ).fetchall()


def test_without_adopt_hand_made_partitions_stay_unmanaged(capsys, workdir, db_url, conn):
    conn.execute(HAND_MADE)
    write_spec(workdir / "specs", spec_data(premake="2 months"))
    plan = cli(capsys, db_url, "plan", NOW)
    assert "~ adopt" not in plan.out
    assert plan.out.count("! unmanaged") == 4 and "PM201" in plan.out


def test_adopt_existing_plans_an_adopt_line_for_every_attached_partition(capsys, workdir, db_url, conn):
    conn.execute(HAND_MADE)
    write_spec(workdir / "specs", spec_data(premake="2 months", adopt="existing"))
    plan = cli(capsys, db_url, "plan", NOW)
    assert plan.code == 0, plan.err
    for name in ("bookings_jan", "bookings_feb", "bookings_odd", "bookings_future"):
        assert f"~ adopt    public.{name}" in plan.out
    assert "! unmanaged" not in plan.out
    assert "PM212" in plan.out, "the default partition is reported, not adopted"
    assert "4 to adopt" in plan.out
    doc = json.loads(cli(capsys, db_url, "plan", NOW, "--format", "json").out)
    assert doc["summary"]["adopt"] == 4


def test_adoption_writes_the_log_and_changes_no_partition(capsys, workdir, db_url, conn):
    conn.execute(HAND_MADE)
    write_spec(workdir / "specs", spec_data(premake="2 months", adopt="existing"))
    before, rows_before = structure(conn), checksum(conn)
    result = cli(capsys, db_url, "apply", NOW, "--auto-approve", "--table", "public.bookings")
    assert result.code == 0, result.err
    after = structure(conn)
    assert [r for r in before] == [r for r in after if r in before], "no partition was renamed, moved or re-bound"
    assert checksum(conn) == rows_before
    adopted = [r for r in log_rows(conn) if r[3] == "adopted"]
    assert [r[0] for r in adopted] == ["bookings_jan", "bookings_feb", "bookings_odd", "bookings_future"]
    audit = conn.execute("SELECT action, reason FROM partition_audit_log WHERE action = 'adopt'").fetchall()
    assert audit == [("adopt", "adopt_existing")] * 4


def test_the_grid_fills_around_adopted_partitions(capsys, workdir, db_url, conn):
    conn.execute(HAND_MADE)
    write_spec(workdir / "specs", spec_data(premake="2 months", adopt="existing"))
    assert cli(capsys, db_url, "apply", NOW, "--auto-approve").code == 0
    covered = ranges(conn, "bookings")
    assert ("2026-03-01 00:00:00+00", "2026-03-20 00:00:00+00") in covered, "the misaligned one is kept as it is"
    assert ("2026-03-20 00:00:00+00", "2026-04-01 00:00:00+00") in covered, "a bridge fills the rest of March"
    assert ("2026-04-01 00:00:00+00", "2026-05-01 00:00:00+00") in covered
    again = cli(capsys, db_url, "plan", NOW, "--detailed-exitcode")
    assert again.code == 0, again.out


def test_adopted_partitions_are_retired_from_the_next_apply(capsys, workdir, db_url, conn):
    conn.execute(HAND_MADE)
    write_spec(workdir / "specs", spec_data(premake="2 months", adopt="existing", retention="1 month",
                                            retention_grace="0 days"))
    plan = cli(capsys, db_url, "plan", NOW)
    assert "~ adopt    public.bookings_jan" in plan.out and "PM211" in plan.out
    assert "- detach" not in plan.out, "taking over and retiring are two reviewed steps"
    assert cli(capsys, db_url, "apply", NOW, "--auto-approve").code == 0
    assert count(conn, "bookings") == 4
    plan = cli(capsys, db_url, "plan", NOW)
    assert "- detach   public.bookings_jan" in plan.out and "- drop     public.bookings_jan" in plan.out
    assert cli(capsys, db_url, "apply", NOW, "--auto-approve").code == 0
    assert conn.execute("SELECT to_regclass('bookings_jan')").fetchone()[0] is None
    assert count(conn, "bookings") == 3


def test_a_gap_behind_the_window_is_reported(capsys, workdir, db_url, conn):
    conn.execute("""
        CREATE TABLE bookings (id bigint GENERATED ALWAYS AS IDENTITY, start_time timestamptz NOT NULL, note text)
               PARTITION BY RANGE (start_time);
        CREATE TABLE bookings_a PARTITION OF bookings FOR VALUES FROM ('2025-06-01Z') TO ('2025-07-01Z');
        CREATE TABLE bookings_b PARTITION OF bookings FOR VALUES FROM ('2025-09-01Z') TO ('2025-10-01Z');""")
    write_spec(workdir / "specs", spec_data(premake="2 months", adopt="existing"))
    plan = cli(capsys, db_url, "plan", NOW)
    assert "PM213" in plan.out and "[2025-07-01T00:00:00+00:00, 2025-09-01T00:00:00+00:00)" in plan.out
    assert "[2025-10-01T00:00:00+00:00, 2026-03-01T00:00:00+00:00)" in plan.out, "up to the window's start too"
    assert plan.out.count("PM213") == 2


def test_a_minvalue_partition_is_adopted_and_retired_once_its_whole_range_expired(capsys, workdir, db_url, conn):
    conn.execute("""
        CREATE TABLE bookings (id bigint GENERATED ALWAYS AS IDENTITY, start_time timestamptz NOT NULL, note text)
               PARTITION BY RANGE (start_time);
        CREATE TABLE bookings_legacy PARTITION OF bookings FOR VALUES FROM (MINVALUE) TO ('2026-04-01Z');
        INSERT INTO bookings (start_time, note) VALUES ('1999-01-01Z', 'old'), ('2026-03-30Z', 'recent');""")
    write_spec(workdir / "specs", spec_data(premake="2 months", adopt="existing", retention="3 months",
                                            retention_grace="0 days"))
    plan = cli(capsys, db_url, "plan", NOW)
    assert "~ adopt    public.bookings_legacy  [MINVALUE, 2026-04-01T00:00:00+00:00)" in plan.out
    assert cli(capsys, db_url, "apply", NOW, "--auto-approve").code == 0
    assert log_rows(conn)[0][:3] == ("bookings_legacy", "-infinity", "2026-04-01 00:00:00+00")
    assert cli(capsys, db_url, "plan", "2026-06-15T00:00Z", "--detailed-exitcode").code == 2
    assert "- detach" not in cli(capsys, db_url, "plan", "2026-06-15T00:00Z").out, "April's rows are not 3 months old"
    later = cli(capsys, db_url, "plan", "2026-07-15T00:00Z")
    assert "- detach   public.bookings_legacy  [MINVALUE, 2026-04-01T00:00:00+00:00)" in later.out
    assert cli(capsys, db_url, "apply", "2026-07-15T00:00Z", "--auto-approve").code == 0
    assert count(conn, "bookings") == 0


def test_retention_keep_table_detaches_and_never_drops(capsys, workdir, db_url, conn):
    write_spec(workdir / "specs", spec_data(premake="2 months", retention="2 months", retention_grace="0 days",
                                            retention_keep_table=True))
    assert cli(capsys, db_url, "apply", "2026-01-15T00:00Z", "--auto-approve").code == 0
    conn.execute("INSERT INTO bookings (start_time, note) VALUES ('2026-01-20Z', 'keep me')")
    plan = cli(capsys, db_url, "plan", "2026-05-15T00:00Z")
    assert "- detach   public.bookings_2026_01" in plan.out and "- drop" not in plan.out
    assert cli(capsys, db_url, "apply", "2026-05-15T00:00Z", "--auto-approve").code == 0
    assert cli(capsys, db_url, "apply", "2027-05-15T00:00Z", "--auto-approve").code == 0
    assert conn.execute("SELECT count(*) FROM bookings_2026_01").fetchone()[0] == 1, "a year on, still there"
    assert "- drop" not in cli(capsys, db_url, "plan", "2027-05-16T00:00Z").out


def test_drift_counts_partitions_awaiting_adoption_as_unmanaged(capsys, workdir, db_url, conn):
    conn.execute(HAND_MADE)
    write_spec(workdir / "specs", spec_data(premake="2 months", adopt="existing"))
    drift = cli(capsys, db_url, "drift", NOW, "--format", "json")
    assert drift.code == 2
    (table,) = json.loads(drift.out)["tables"]
    assert table["unmanaged_partitions"] == 4
    assert cli(capsys, db_url, "apply", NOW, "--auto-approve").code == 0
    (table,) = json.loads(cli(capsys, db_url, "drift", NOW, "--format", "json").out)["tables"]
    assert table["unmanaged_partitions"] == 0
