"""The SQL face: the rendered migration run by the real psql client on PostgreSQL 15 and 18, its functions,
and the agreement of both faces on the same tables."""

from __future__ import annotations

import subprocess
import threading
import time
import uuid
from datetime import date, datetime

import psycopg
import pytest

from dbtools import assert_contiguous, count, partitions, ranges, run_cli
from helpers import write_spec

from partman import migration
from partman.errors import SpecError

TABLE = "amenity_booking"


def render(**values: str) -> str:
    return migration.render({"partitioning.prefix": TABLE, **{f"partitioning.{k}": v for k, v in values.items()}})


def psql(server, db_url: str, script: str) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [server.psql, db_url, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-f", "-"], input=script, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    return proc


def migrate(server, db_url: str, **values: str) -> subprocess.CompletedProcess:
    return psql(server, db_url, render(**values))


def db_now(conn) -> datetime:
    return conn.execute("SELECT now()").fetchone()[0]


def state(conn) -> tuple:
    """Everything the migration can change: partitions, log rows, audit rows, config."""
    return (
        partitions(conn, TABLE),
        conn.execute("SELECT partition_name, range_start, range_end, detached_at, dropped_at FROM partition_log ORDER BY id").fetchall(),
        count(conn, "partition_audit_log"),
        conn.execute("SELECT * FROM partition_config ORDER BY 1, 2").fetchall(),
    )


def notices(conn) -> list[str]:
    got: list[str] = []
    conn.add_notice_handler(lambda d: got.append(d.message_primary))
    return got


# Rendering by Flyway's rules

def test_render_fills_every_placeholder_with_defaults_for_the_optional_ones():
    text = render()
    assert "${" not in text
    assert "CREATE TABLE IF NOT EXISTS public.amenity_booking (" in text
    assert "VALUES ('public', 'amenity_booking', 1," in text


def test_render_refuses_a_placeholder_left_without_a_value():
    with pytest.raises(SpecError, match=r"placeholder \$\{partitioning.prefix\} has no value"):
        migration.render({})


def test_render_refuses_an_unknown_placeholder():
    with pytest.raises(SpecError, match="unknown placeholder 'partitioning.prefx'"):
        migration.render({"partitioning.prefix": TABLE, "partitioning.prefx": "x"})


@pytest.mark.parametrize(
    "key, value",
    [("prefix", "Bookings"), ("prefix", "a'b"), ("prefix", "x; DROP TABLE y"), ("interval_months", "2"),
     ("retention_months", "-1"), ("timezone", "Mars/Base"), ("schema", "a.b")],
)
def test_render_refuses_values_that_would_change_the_sql_around_them(key, value):
    with pytest.raises(SpecError, match=f"placeholder partitioning.{key}="):
        migration.render({"partitioning.prefix": TABLE, f"partitioning.{key}": value})


def test_the_cli_renders_the_same_text(capsys):
    result = run_cli(capsys, "sql", "render", "--set", f"partitioning.prefix={TABLE}", "--set", "partitioning.interval_months=3")
    assert result.code == 0
    assert result.out == render(interval_months="3")


# The migration under psql

def test_a_fresh_database_gets_this_and_next_year_at_the_configured_interval(server, db_url, conn):
    migrate(server, db_url, interval_months="3")
    now = db_now(conn)
    quarter_start = date(now.year, 3 * ((now.month - 1) // 3) + 1, 1)
    rs = ranges(conn, TABLE)
    assert rs[0][0] == f"{quarter_start} 00:00:00+00"
    assert rs[-1][1] == f"{now.year + 2}-01-01 00:00:00+00"
    assert_contiguous(rs)
    assert all(name.startswith(f"{TABLE}_") and "_q" in name for name, _ in partitions(conn, TABLE))
    logged = conn.execute("SELECT count(*) FROM partition_log WHERE created_by = 'sql' AND dropped_at IS NULL").fetchone()[0]
    audited = conn.execute("SELECT count(*) FROM partition_audit_log WHERE action = 'create' AND source = 'sql'").fetchone()[0]
    assert logged == audited == len(rs)


def test_running_the_migration_twice_changes_nothing(server, db_url, conn):
    migrate(server, db_url, interval_months="1", retention_months="6")
    before = state(conn)
    migrate(server, db_url, interval_months="1", retention_months="6")
    assert state(conn) == before


def test_the_rendered_file_also_runs_with_backslash_i(server, db_url, conn, tmp_path):
    path = tmp_path / "V1.sql"
    path.write_text(render())
    psql(server, db_url, f"\\i {path}\n")
    assert len(partitions(conn, TABLE)) >= 13


def test_quarterly_to_monthly_keeps_the_populated_future_quarter_and_loses_no_row(server, db_url, conn):
    migrate(server, db_url, interval_months="3")
    year = db_now(conn).year + 1
    conn.execute(
        f"INSERT INTO {TABLE} (amenity_id, user_id, start_time, end_time)"
        " SELECT 1, 1, t, t + interval '1 hour' FROM unnest(%s::timestamptz[]) t",
        ([f"{year}-05-05T10:00Z", f"{year}-06-30T23:00Z"],),
    )
    conn.execute("SELECT create_or_update_partitions(%s, 12, 1)", (year - 1,))
    conn.execute("SELECT create_or_update_partitions(%s, 12, 1)", (year,))
    names = dict(partitions(conn, TABLE))
    assert names[f"{TABLE}_{year}_q2"] == f"FOR VALUES FROM ('{year}-04-01 00:00:00+00') TO ('{year}-07-01 00:00:00+00')"
    for month in (1, 2, 3, 7, 8, 9, 10, 11, 12):
        assert f"{TABLE}_{year}_{month:02d}" in names
    assert f"{TABLE}_{year}_q1" not in names and f"{TABLE}_{year}_q3" not in names
    assert_contiguous(ranges(conn, TABLE))
    assert count(conn, TABLE) == 2
    assert conn.execute("SELECT interval_months FROM partition_config").fetchone()[0] == 1
    dropped = conn.execute("SELECT count(*) FROM partition_audit_log WHERE action = 'drop' AND reason = 'interval_change'").fetchone()[0]
    assert dropped == 3  # Q1, Q3 and Q4 of next year


def test_frequency_must_match_interval_months(server, db_url, conn):
    migrate(server, db_url)
    with pytest.raises(psycopg.errors.RaiseException, match="frequency 4 does not match interval_months 1"):
        conn.execute("SELECT create_or_update_partitions(2030, 4, 1)")


def test_check_future_partition_data_sees_rows_in_later_partitions_and_in_the_default(server, db_url, conn):
    migrate(server, db_url, interval_months="1")
    year = db_now(conn).year + 1
    assert conn.execute("SELECT check_future_partition_data(%s, %s)", (TABLE, date(year, 1, 1))).fetchone()[0] is False
    conn.execute(f"INSERT INTO {TABLE} (amenity_id, user_id, start_time, end_time) VALUES (1, 1, %s, %s)",
                 (f"{year}-03-03T00:00Z", f"{year}-03-03T01:00Z"))
    assert conn.execute("SELECT check_future_partition_data(%s, %s)", (TABLE, date(year, 3, 1))).fetchone()[0] is True
    assert conn.execute("SELECT check_future_partition_data(%s, %s)", (f"public.{TABLE}", date(year, 4, 1))).fetchone()[0] is False
    conn.execute(f"CREATE TABLE {TABLE}_default PARTITION OF {TABLE} DEFAULT")
    conn.execute(f"INSERT INTO {TABLE} (amenity_id, user_id, start_time, end_time) VALUES (1, 1, '2099-01-01Z', '2099-01-02Z')")
    assert conn.execute("SELECT check_future_partition_data(%s, %s)", (TABLE, date(2090, 1, 1))).fetchone()[0] is True


def test_drop_future_partitions_never_drops_a_populated_or_unmanaged_partition(server, db_url, conn):
    migrate(server, db_url, interval_months="3")
    year = db_now(conn).year + 1
    conn.execute(f"INSERT INTO {TABLE} (amenity_id, user_id, start_time, end_time) VALUES (1, 1, %s, %s)",
                 (f"{year}-08-08T00:00Z", f"{year}-08-08T01:00Z"))
    conn.execute(f"CREATE TABLE stranger PARTITION OF {TABLE} FOR VALUES FROM ('{year + 1}-01-01Z') TO ('{year + 1}-02-01Z')")
    said = notices(conn)
    dropped = conn.execute("SELECT drop_future_partitions(%s, %s, %s)", (TABLE, year, date(year, 1, 1))).fetchone()[0]
    assert dropped == 3
    names = [n for n, _ in partitions(conn, TABLE)]
    assert f"{TABLE}_{year}_q3" in names and "stranger" in names
    assert not any(n.startswith(f"{TABLE}_{year}_q") and n != f"{TABLE}_{year}_q3" for n in names)
    assert any("kept public.amenity_booking_" in m and "holds rows" in m for m in said)
    assert any("stranger is not in partition_log" in m for m in said)
    assert count(conn, TABLE) == 1
    logged = conn.execute("SELECT count(*) FROM partition_log WHERE dropped_at IS NOT NULL").fetchone()[0]
    audited = conn.execute("SELECT count(*) FROM partition_audit_log WHERE action = 'drop' AND source = 'sql'").fetchone()[0]
    assert logged == audited == 3


def test_the_cascade_notice_names_what_it_removed(server, db_url, conn):
    migrate(server, db_url, interval_months="12")
    year = db_now(conn).year + 1
    conn.execute(f"CREATE VIEW next_year AS SELECT * FROM {TABLE}_{year}")
    said = notices(conn)
    assert conn.execute("SELECT drop_future_partitions(%s, %s, %s)", (TABLE, year, date(year, 1, 1))).fetchone()[0] == 1
    assert any(f"dropped public.{TABLE}_{year}" in m and "the cascade also removed: rule _RETURN on view next_year" in m for m in said)
    assert conn.execute("SELECT to_regclass('next_year')").fetchone()[0] is None


def test_a_row_arriving_in_a_partition_being_dropped_fails_the_call_and_changes_nothing(server, db_url, conn):
    migrate(server, db_url, interval_months="3")
    year = db_now(conn).year + 1
    before = state(conn)
    # A trigger stands in for a writer that slips a row in between the planning scan and the drop.
    conn.execute(
        f"""CREATE FUNCTION sneak() RETURNS event_trigger LANGUAGE plpgsql AS $$
            BEGIN INSERT INTO {TABLE}_{year}_q1 (booking_id, amenity_id, user_id, start_time, end_time)
                  OVERRIDING SYSTEM VALUE VALUES (1, 1, 1, '{year}-02-02Z', '{year}-02-02 01:00Z'); END $$"""
    )
    conn.execute("CREATE EVENT TRIGGER sneak ON ddl_command_end WHEN TAG IN ('ALTER TABLE') EXECUTE FUNCTION sneak()")
    with pytest.raises(psycopg.errors.ObjectInUse, match="holds rows"):
        conn.execute("SELECT drop_future_partitions(%s, %s, %s)", (TABLE, year, date(year, 1, 1)))
    conn.execute("DROP EVENT TRIGGER sneak")
    assert state(conn) == before
    assert count(conn, TABLE) == 0


def test_retention_detaches_then_drops_after_the_grace(server, db_url, conn):
    migrate(server, db_url, interval_months="1", retention_months="3")
    conn.execute("UPDATE partition_config SET retention_grace = '7 days'")
    conn.execute("SELECT manage_partitions(%s, %s)", (TABLE, "2027-01-15T00:00Z"))
    conn.execute(f"INSERT INTO {TABLE} (amenity_id, user_id, start_time, end_time) VALUES (1, 1, '2027-01-20Z', '2027-01-20 01:00Z')")
    conn.execute("SELECT manage_partitions(%s, %s)", (TABLE, "2027-05-10T00:00Z"))
    names = [n for n, _ in partitions(conn, TABLE)]
    assert f"{TABLE}_2027_01" not in names and f"{TABLE}_2027_02" in names
    assert count(conn, f"{TABLE}_2027_01") == 1
    conn.execute("SELECT manage_partitions(%s, %s)", (TABLE, "2027-05-14T00:00Z"))
    assert conn.execute(f"SELECT to_regclass('{TABLE}_2027_01')").fetchone()[0] is not None
    conn.execute("SELECT manage_partitions(%s, %s)", (TABLE, "2027-05-18T00:00Z"))
    assert conn.execute(f"SELECT to_regclass('{TABLE}_2027_01')").fetchone()[0] is None
    reasons = conn.execute("SELECT action, reason FROM partition_audit_log WHERE partition_name = %s ORDER BY id",
                           (f"{TABLE}_2027_01",)).fetchall()
    assert reasons == [("create", "premake"), ("detach", "retention"), ("drop", "retention_grace_elapsed")]


def test_two_sessions_calling_manage_partitions_at_once_are_serialized(server, db_url, conn):
    migrate(server, db_url, interval_months="3")
    conn.execute("UPDATE partition_config SET interval_months = 1")
    errors: list = []
    started = threading.Event()

    def session(hold: float):
        try:
            with psycopg.connect(db_url) as c:
                c.execute("SELECT manage_partitions()")
                started.set()
                time.sleep(hold)
                c.commit()
        except Exception as exc:  # collected: the assertion below names it
            errors.append(exc)

    first = threading.Thread(target=session, args=(1.0,))
    first.start()
    started.wait(10)
    t0 = time.monotonic()
    second = threading.Thread(target=session, args=(0,))
    second.start()
    second.join()
    first.join()
    assert not errors
    assert time.monotonic() - t0 >= 0.8, "the second call should have waited for the first one's lock"
    rs = ranges(conn, TABLE)
    assert_contiguous(rs)
    live = conn.execute("SELECT count(*) FROM partition_log WHERE dropped_at IS NULL").fetchone()[0]
    assert live == len(rs)


# Both faces on the same tables

def equivalent_spec(**overrides):
    data = {"table": f"public.{TABLE}", "partition_key": "start_time", "interval": "quarterly", "environments": {"test": {}}}
    data.update(overrides)
    return data


def test_after_manage_partitions_partman_plan_has_no_changes(server, db_url, conn, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    migrate(server, db_url, interval_months="3")
    write_spec(tmp_path / "specs", equivalent_spec())
    result = run_cli(capsys, "plan", "specs", "--env", "test", "--database-url", db_url, "--detailed-exitcode")
    assert result.code == 0, result.out
    assert result.out.rstrip().endswith("No changes.")


def test_after_partman_apply_manage_partitions_changes_nothing(server, db_url, conn, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    migrate(server, db_url, interval_months="3")
    write_spec(tmp_path / "specs", equivalent_spec(interval="monthly", premake="9 months", retention="2 months",
                                                    retention_grace="0 days", timezone="Europe/Berlin"))
    now = db_now(conn).isoformat()
    assert run_cli(capsys, "apply", "specs", "--env", "test", "--database-url", db_url, "--now", now, "--auto-approve").code == 0
    config = conn.execute("SELECT interval_months, premake::text, retention::text, retention_grace::text, timezone FROM partition_config").fetchone()
    assert config == (1, "9 mons", "2 mons", "00:00:00", "Europe/Berlin")
    before = state(conn)
    conn.execute("SELECT manage_partitions(%s, %s)", (TABLE, now))
    assert state(conn) == before


def test_partitions_the_sql_face_makes_match_their_parent_as_partmans_do(server, db_url, conn, tmp_path, monkeypatch,
                                                                         capsys):
    tag = uuid.uuid4().hex[:8]
    owner, reader = f"owner_{tag}", f"reader_{tag}"
    conn.execute(f'CREATE ROLE "{owner}"; CREATE ROLE "{reader}"')
    try:
        conn.execute(f"CREATE TABLE {TABLE} (id bigint GENERATED ALWAYS AS IDENTITY, start_time timestamptz NOT NULL,"
                     " note text, PRIMARY KEY (id, start_time)) PARTITION BY RANGE (start_time)")
        conn.execute(f'ALTER TABLE {TABLE} OWNER TO "{owner}"')
        conn.execute(f'GRANT SELECT ON {TABLE} TO "{reader}" WITH GRANT OPTION')
        conn.execute(f'GRANT UPDATE (note) ON {TABLE} TO "{reader}"')
        conn.execute(f"CREATE UNIQUE INDEX ident ON {TABLE} (start_time, id)")
        conn.execute(f"ALTER TABLE {TABLE} REPLICA IDENTITY USING INDEX ident")
        migrate(server, db_url, interval_months="3")
        looked = conn.execute(
            """SELECT pg_get_userbyid(c.relowner), c.relacl::text[], c.relreplident,
                      (SELECT array_agg(attname || ' ' || attacl::text) FROM pg_attribute WHERE attrelid = c.oid AND attacl IS NOT NULL)
                 FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = %s::regclass""", (TABLE,)).fetchall()
        assert looked and {row[0] for row in looked} == {owner}
        assert all(f"{reader}=r*/{owner}" in row[1] and row[2] == "i" for row in looked), looked
        assert all(row[3] == [f"note {{{reader}=w/{owner}}}"] for row in looked), looked
        monkeypatch.chdir(tmp_path)
        write_spec(tmp_path / "specs", equivalent_spec())
        result = run_cli(capsys, "plan", "specs", "--env", "test", "--database-url", db_url, "--detailed-exitcode")
        assert result.code == 0, result.out
    finally:
        conn.execute(f'DROP TABLE IF EXISTS {TABLE}; DROP OWNED BY "{owner}", "{reader}"; DROP ROLE "{owner}"; DROP ROLE "{reader}"')


def column_definitions(conn, schema: str) -> list:
    return conn.execute(
        """SELECT c.relname, a.attnum, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull, a.attidentity,
                  pg_get_expr(d.adbin, d.adrelid)
             FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
             LEFT JOIN pg_attrdef d ON d.adrelid = c.oid AND d.adnum = a.attnum
            WHERE c.relnamespace = %s::regnamespace AND c.relkind = 'r' ORDER BY 1, 2""",
        (schema,),
    ).fetchall()


def index_and_constraint_definitions(conn, schema: str) -> list:
    rows = conn.execute(
        """SELECT pg_get_indexdef(i.indexrelid) FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid
            WHERE c.relnamespace = %s::regnamespace
           UNION ALL
           SELECT pg_get_constraintdef(k.oid) FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid
            WHERE c.relnamespace = %s::regnamespace ORDER BY 1""",
        (schema, schema),
    ).fetchall()
    return [r[0].replace(f"{schema}.", "SCHEMA.") for r in rows]


def test_both_faces_create_identical_state_tables(server, db_url, conn):
    from partman.audit import ensure_state

    conn.execute("CREATE SCHEMA by_sql; CREATE SCHEMA by_python")
    migrate(server, db_url, state_schema="by_sql")
    ensure_state(conn, "by_python")
    assert column_definitions(conn, "by_sql") == column_definitions(conn, "by_python")
    assert index_and_constraint_definitions(conn, "by_sql") == index_and_constraint_definitions(conn, "by_python")
    assert {r[0] for r in column_definitions(conn, "by_python")} == {"partition_log", "partition_audit_log", "partition_config"}


def test_manage_partitions_waits_for_the_lock_partman_apply_takes(server, db_url, conn):
    from partman.lock import advisory_lock
    from partman.model import TableRef

    migrate(server, db_url, interval_months="3")
    conn.execute("UPDATE partition_config SET interval_months = 1")
    held = threading.Event()

    def partman_holds_the_lock():
        with psycopg.connect(db_url) as c:
            advisory_lock(c, TableRef("public", TABLE))
            held.set()
            time.sleep(1.0)
            c.commit()

    holder = threading.Thread(target=partman_holds_the_lock)
    holder.start()
    held.wait(10)
    t0 = time.monotonic()
    conn.execute("SELECT manage_partitions()")
    waited = time.monotonic() - t0
    holder.join()
    assert waited >= 0.8
    assert_contiguous(ranges(conn, TABLE))


def test_a_partition_dropped_by_hand_is_made_again(server, db_url, conn):
    migrate(server, db_url, interval_months="3")
    year = db_now(conn).year + 1
    conn.execute(f"DROP TABLE {TABLE}_{year}_q2")
    conn.execute("SELECT manage_partitions()")
    assert f"{TABLE}_{year}_q2" in dict(partitions(conn, TABLE))
    live = conn.execute("SELECT count(*) FROM partition_log WHERE partition_name = %s AND dropped_at IS NULL",
                        (f"{TABLE}_{year}_q2",)).fetchone()[0]
    assert live == 1


def test_an_id_table_is_refused_by_the_functions_in_one_line_and_left_alone_by_manage_partitions(server, db_url, conn):
    migrate(server, db_url, interval_months="1")
    conn.execute("CREATE TABLE events (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY) PARTITION BY RANGE (id)")
    conn.execute("CREATE TABLE events_p0 PARTITION OF events FOR VALUES FROM (0) TO (1000)")
    before = state(conn)
    with pytest.raises(psycopg.errors.RaiseException) as refused:
        conn.execute("SELECT create_or_update_partitions(2027, 12, 1, 'public.events')")
    assert str(refused.value).splitlines()[0] == ("partman: events is partitioned by a bigint column; partman manages"
                                                  " timestamptz, timestamp and date keys")
    conn.rollback()
    conn.execute("SELECT manage_partitions()")  # no partition_config row for it: the SQL face leaves it alone
    assert state(conn) == before and [name for name, _ in partitions(conn, "events")] == ["events_p0"]
