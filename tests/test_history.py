"""`partman history`: the audit log read back, on PostgreSQL 15 and 18, from rows that real applies (and the SQL
face) wrote; its filters, its one-line errors and what a role with SELECT on the audit log alone can read."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import uuid
from datetime import datetime, timedelta, timezone

import psycopg
import pytest

from conftest import fresh_database
from dbtools import run_cli
from helpers import spec_data, utc, write_spec

from partman import __version__, history, migration
from partman.errors import CatalogError, LockBusy, UsageError
from partman.model import TableRef

NOW = "2027-02-15T12:00:00Z"
LATER = "2027-04-15T12:00:00Z"
BOOKINGS, ROOMS = TableRef("public", "bookings"), TableRef("public", "Rooms")


def apply(capsys, db_url, now=NOW, *extra):
    result = run_cli(capsys, "apply", "specs", "--env", "test", "--database-url", db_url, "--now", now, "--auto-approve", *extra)
    assert result.code == 0, result.err
    return result


def cli(capsys, db_url, *args):
    return run_cli(capsys, "history", "--database-url", db_url, *args)


@pytest.fixture(scope="module")
def applied_template(server, tmp_path_factory):
    """A database where bookings was made at NOW (create_table, partitions, config), then its runway extended at
    LATER: two plans. Applied once per module by the real CLI, in a subprocess so that no connection stays on it,
    and cloned for each test (CREATE DATABASE … TEMPLATE): every test still has a database of its own."""
    name = f"h_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server.admin_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    project = tmp_path_factory.mktemp("history")
    write_spec(project / "specs", spec_data(premake="2 months"))
    for now in (NOW, LATER):
        proc = subprocess.run([sys.executable, "-m", "partman", "apply", "specs", "--env", "test", "--database-url",
                               server.url_for(name), "--now", now, "--auto-approve"], cwd=project, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
    yield name
    with psycopg.connect(server.admin_url, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


@pytest.fixture
def applied_url(server, applied_template, workdir):
    yield from fresh_database(server, applied_template)


@pytest.fixture
def applied_conn(applied_url):
    with psycopg.connect(applied_url, autocommit=True) as c:
        yield c


@pytest.fixture
def two_tables(capsys, workdir, db_url):
    """bookings and "Rooms" (a name that needs quoting), applied together."""
    write_spec(workdir / "specs", spec_data(premake="2 months"))
    write_spec(workdir / "specs", spec_data(table="public.Rooms", premake="2 months"), name="rooms.yaml")
    apply(capsys, db_url, NOW)


def plan_ids(conn) -> list[str]:
    """The plans in the order they were applied."""
    return [r[0] for r in conn.execute("SELECT plan_id FROM partition_audit_log GROUP BY plan_id ORDER BY min(id)")]


# Reading

def test_entries_come_newest_first_with_every_column(applied_conn):
    entries = history.read(applied_conn, "public")
    assert len(entries) == applied_conn.execute("SELECT count(*) FROM partition_audit_log").fetchone()[0]
    assert [(e.at, e.id) for e in entries] == sorted(((e.at, e.id) for e in entries), reverse=True)
    first, second = plan_ids(applied_conn)
    assert entries[0].plan_id == second and entries[-1].plan_id == first
    made = entries[-1]
    assert (made.action, made.table, made.partition, made.reason) == ("create_table", BOOKINGS, BOOKINGS, "spec")
    create = next(e for e in entries if e.action == "create" and e.partition.name == "bookings_2027_02")
    assert (create.start, create.end) == (utc(2027, 2, 1), utc(2027, 3, 1))
    assert (create.environment, create.source, create.version) == ("test", "partman", __version__)
    assert create.user == applied_conn.execute("SELECT current_user").fetchone()[0]


def test_the_cli_prints_one_aligned_line_per_action_newest_first(capsys, applied_url, applied_conn):
    result = cli(capsys, applied_url)
    assert result.code == 0, result.err
    header, *lines = result.out.splitlines()
    assert header.split() == ["WHEN", "ACTION", "PARTITION", "RANGE", "WHO", "ENV", "PLAN", "WHY"], "no row counts: no ROWS"
    rows = lines[: lines.index("")]
    assert len(rows) == applied_conn.execute("SELECT count(*) FROM partition_audit_log").fetchone()[0]
    assert lines[-1] == f"{len(rows)} actions."
    user = applied_conn.execute("SELECT current_user").fetchone()[0]
    assert all(len(line) <= 120 + max(0, len(user) - len("postgres")) for line in [header, *rows])
    starts = {line.index("public.bookings") for line in rows}
    assert len(starts) == 1, "the partition column is aligned"
    first, second = plan_ids(applied_conn)
    assert second[:8] in rows[0] and first[:8] in rows[-1]
    assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ  create ", rows[0])
    assert "[2027-05-01, 2027-06-01)" in result.out
    assert rows[-1].split()[1:3] == ["create_table", "public.bookings"]


def test_the_table_filter_matches_both_faces_spelling_of_a_quoted_name(server, db_url, conn, two_tables):
    migrate(server, db_url)
    conn.execute("""SELECT partman_audit('config', 'public', 'Rooms', NULL, NULL, '"Rooms"'::regclass, 'by hand')""")
    spelled = {r[0] for r in conn.execute("""SELECT table_name FROM partition_audit_log WHERE table_name LIKE '%Rooms%'""")}
    assert spelled == {"public.Rooms", 'public."Rooms"'}
    entries = history.read(conn, "public", tables=[ROOMS])
    assert {e.table for e in entries} == {ROOMS}
    assert len(entries) == conn.execute("SELECT count(*) FROM partition_audit_log WHERE table_name LIKE '%Rooms%'").fetchone()[0]
    assert entries[0].source == "sql" and entries[0].reason == "by hand"


def test_the_cli_table_filter_shows_only_that_table(capsys, db_url, conn, two_tables):
    result = cli(capsys, db_url, "--table", "bookings")
    assert result.code == 0, result.err
    rows = result.out.splitlines()[1:-2]
    assert rows and all("public.bookings" in r for r in rows) and "Rooms" not in result.out
    both = cli(capsys, db_url, "--table", "public.Rooms", "--table", "bookings").out.splitlines()[1:-2]
    assert len(both) == 2 * len(rows) and sum("public.Rooms_2027_02" in r for r in both) == 1


def test_since_leaves_out_older_actions(capsys, applied_url, applied_conn):
    first, second = plan_ids(applied_conn)
    applied_conn.execute("UPDATE partition_audit_log SET created_at = now() - interval '40 days' WHERE plan_id = %s", (first,))
    since = history.parse_since("30d", applied_conn.execute("SELECT now()").fetchone()[0])
    assert {e.plan_id for e in history.read(applied_conn, "public", since=since)} == {second}
    result = cli(capsys, applied_url, "--since", "30d")
    assert result.code == 0, result.err
    assert second[:8] in result.out and first[:8] not in result.out
    assert first[:8] in cli(capsys, applied_url, "--since", "6 weeks").out


def test_action_filters_combine_with_a_limit(capsys, applied_url, applied_conn):
    entries = history.read(applied_conn, "public", actions=["config", "create_table"])
    assert sorted(e.action for e in entries) == ["config", "create_table"], "the second apply left the config as it was"
    newest = history.read(applied_conn, "public", actions=["create"], limit=2)
    assert [e.partition.name for e in newest] == ["bookings_2027_06", "bookings_2027_05"]
    result = cli(capsys, applied_url, "--action", "create", "--limit", "2")
    assert result.code == 0, result.err
    assert "bookings_2027_06" in result.out and "bookings_2027_04" not in result.out
    assert "the newest 2; raise --limit" in result.out


def test_json_has_a_format_version_and_iso_timestamps_with_offsets(capsys, applied_url, applied_conn):
    result = cli(capsys, applied_url, "--format", "json", "--action", "create")
    assert result.code == 0, result.err
    doc = json.loads(result.out)
    assert doc["format_version"] == 1 and doc["entries"]
    entry = doc["entries"][-1]
    assert set(entry) >= {"at", "action", "table", "partition", "start", "end", "rows", "user", "environment",
                          "plan_id", "reason", "source", "partman_version"}
    assert entry["table"] == "public.bookings" and entry["start"] == "2027-02-01T00:00:00+00:00"
    assert datetime.fromisoformat(entry["at"]).utcoffset() == timedelta(0)
    assert json.loads(history.as_json([]))["entries"] == []


def test_nothing_matching_says_so_with_the_filters_and_exits_0(capsys, applied_url, applied_conn):
    result = cli(capsys, applied_url, "--action", "drop", "--table", "bookings", "--since", "2027-01-01")
    assert (result.code, result.out) == (0, "No actions recorded (table public.bookings; since 2027-01-01T00:00:00Z;"
                                            " action drop).\n")
    assert history.text([]) == "No actions recorded.\n"


def test_sql_face_rows_are_shown_with_their_source(capsys, workdir, server, db_url, conn):
    migrate(server, db_url)
    entries = history.read(conn, "public")
    assert entries and {e.source for e in entries} == {"sql"}
    assert {e.table for e in entries} == {TableRef("public", "amenity_booking")}
    result = cli(capsys, db_url, "--action", "create", "--limit", "1")
    assert result.code == 0, result.err
    assert "(sql)" in result.out.splitlines()[1]


def test_retirement_shows_detaches_and_drops_with_their_reasons(capsys, workdir, db_url, conn):
    write_spec(workdir / "specs", spec_data(premake="2 months", retention="3 months", retention_grace="0 days"))
    apply(capsys, db_url, NOW)
    apply(capsys, db_url, "2027-09-15T12:00:00Z")
    retired = history.read(conn, "public", actions=["detach", "drop"])
    assert {(e.action, e.reason) for e in retired} == {("detach", "retention"), ("drop", "retention_grace_elapsed")}
    assert sorted(e.partition.name for e in retired if e.action == "drop") == [f"bookings_2027_0{m}" for m in (2, 3, 4)]
    line = next(l for l in history.text(retired).splitlines() if "drop" in l and "bookings_2027_02" in l)
    assert "[2027-02-01, 2027-03-01)" in line and line.endswith("retention_grace_elapsed")


# Privileges and errors

@pytest.fixture
def reader(server, applied_url, applied_conn):
    """A login role with CONNECT, USAGE on public, and nothing else (PUBLIC's grants revoked)."""
    role = f"reader_{uuid.uuid4().hex[:8]}"
    dbname = applied_conn.info.dbname
    applied_conn.execute(f"CREATE ROLE {role} LOGIN")
    applied_conn.execute(f'REVOKE ALL ON DATABASE "{dbname}" FROM PUBLIC')
    applied_conn.execute(f'GRANT CONNECT ON DATABASE "{dbname}" TO {role}')
    applied_conn.execute("REVOKE ALL ON SCHEMA public FROM PUBLIC")
    applied_conn.execute(f"GRANT USAGE ON SCHEMA public TO {role}")
    yield role, psycopg.conninfo.make_conninfo(applied_url, user=role)
    applied_conn.execute(f"DROP OWNED BY {role}")
    with psycopg.connect(server.admin_url, autocommit=True) as admin:
        admin.execute(f"DROP ROLE {role}")


def test_a_role_with_only_select_on_the_audit_log_reads_it(capsys, applied_url, applied_conn, reader):
    role, url = reader
    applied_conn.execute(f"GRANT SELECT ON partition_audit_log TO {role}")
    with psycopg.connect(url, autocommit=True) as mine:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            mine.execute("SELECT 1 FROM partition_log")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            mine.execute("SELECT 1 FROM bookings")
        assert history.read(mine, "public") == history.read(applied_conn, "public")
    result = cli(capsys, url, "--since", "1 day")
    assert result.code == 0, result.err
    assert "public.bookings_2027_06" in result.out


def test_a_role_without_select_is_told_the_grant(capsys, applied_url, applied_conn, reader):
    role, url = reader
    with psycopg.connect(url, autocommit=True) as mine, pytest.raises(CatalogError) as refused:
        history.read(mine, "public")
    assert str(refused.value) == ("permission denied for table public.partition_audit_log: reading the audit log needs"
                                  f" GRANT SELECT ON public.partition_audit_log TO {role}")
    result = cli(capsys, url)
    assert (result.code, result.err) == (1, f"error: {refused.value}\n")


def test_a_role_without_usage_on_the_state_schema_is_told_that_grant(applied_url, applied_conn, reader):
    role, url = reader
    applied_conn.execute(f"GRANT SELECT ON partition_audit_log TO {role}")
    applied_conn.execute(f"REVOKE USAGE ON SCHEMA public FROM {role}")
    with psycopg.connect(url, autocommit=True) as mine, pytest.raises(CatalogError) as refused:
        history.read(mine, "public")
    assert str(refused.value) == f"permission denied for schema public: reading the audit log needs GRANT USAGE ON SCHEMA public TO {role}"


def test_a_state_schema_that_does_not_exist_gets_the_same_message(conn):
    with pytest.raises(CatalogError, match=r"^no partition_audit_log in schema nowhere: nothing was applied"):
        history.read(conn, "nowhere")


def test_a_missing_audit_log_is_named_with_the_state_schema(capsys, workdir, db_url, conn):
    conn.execute('CREATE SCHEMA "Partman State"')
    with pytest.raises(CatalogError) as missing:
        history.read(conn, "Partman State")
    assert str(missing.value) == ('no partition_audit_log in schema "Partman State": nothing was applied with this'
                                  " state schema yet (or pass --state-schema)")
    result = cli(capsys, db_url)
    assert (result.code, result.out) == (1, "")
    assert result.err == ("error: no partition_audit_log in schema public: nothing was applied with this state schema"
                          " yet (or pass --state-schema)\n")


def test_the_state_schema_option_reads_another_schema(capsys, workdir, db_url, conn):
    conn.execute("CREATE SCHEMA partman")
    write_spec(workdir / "specs", spec_data(premake="2 months"))
    apply(capsys, db_url, NOW, "--state-schema", "partman")
    result = cli(capsys, db_url, "--state-schema", "partman", "--action", "create_table")
    assert result.code == 0, result.err
    assert "create_table  public.bookings" in result.out


def test_a_held_lock_gives_lock_busy_within_the_step(applied_url, applied_conn):
    held, release = threading.Event(), threading.Event()

    def hold():
        with psycopg.connect(applied_url) as other:
            other.execute("LOCK TABLE partition_audit_log IN ACCESS EXCLUSIVE MODE")
            held.set()
            release.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert held.wait(10)
        started = datetime.now()
        with pytest.raises(LockBusy, match=r"public.partition_audit_log: lock not granted within 50 ms"):
            history.read(applied_conn, "public", lock_timeout_ms=50)
        assert datetime.now() - started < timedelta(seconds=5), "one step, not a wait"
    finally:
        release.set()
        holder.join()
    assert applied_conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE


def test_an_audit_log_from_an_older_partman_reads_its_missing_columns_as_none(conn):
    conn.execute("""CREATE TABLE partition_audit_log (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, action text NOT NULL, partition_name text NOT NULL,
        start_date timestamptz, end_date timestamptz, created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
        table_name text NOT NULL, reason text)""")
    conn.execute("INSERT INTO partition_audit_log (action, partition_name, start_date, end_date, table_name, reason)"
                 " VALUES ('create', 'bookings_2020_01', '2020-01-01Z', '2020-02-01Z', 'public.bookings', 'premake')")
    [entry] = history.read(conn, "public")
    assert (entry.partition, entry.reason, entry.start) == (TableRef("public", "bookings_2020_01"), "premake", utc(2020, 1, 1))
    assert (entry.source, entry.plan_id, entry.rows, entry.user, entry.environment, entry.version) == (None,) * 6
    assert "bookings_2020_01" in history.text([entry])


@pytest.mark.parametrize("argv, message", [
    (["--since", "yesterday"], "error: --since 'yesterday' is not a duration or an ISO 8601 date (e.g. --since 30d,"),
    (["--since", "2027-01-01T00:00"], "error: --since '2027-01-01T00:00' needs an offset"),
    (["--action", "truncate"], "error: --action 'truncate' is not an audited action (valid: create_table, create,"
                               " detach, drop, config, reattach, adopt, convert)"),
])
def test_a_bad_since_or_action_exits_64_in_one_line(capsys, workdir, db_url, argv, message):
    result = cli(capsys, db_url, *argv)
    assert result.code == 64
    assert result.err.startswith(message) and len(result.err.splitlines()) == 1


# Pure pieces: no database

CLOCK = datetime(2027, 3, 31, 12, 30, tzinfo=timezone.utc)


@pytest.mark.parametrize("text, expected", [
    ("30d", CLOCK - timedelta(days=30)),
    ("30 days", CLOCK - timedelta(days=30)),
    ("1 day", CLOCK - timedelta(days=1)),
    ("12h", CLOCK - timedelta(hours=12)),
    ("90m", CLOCK - timedelta(minutes=90)),
    ("90 Minutes", CLOCK - timedelta(minutes=90)),
    ("2w", CLOCK - timedelta(weeks=2)),
    (" 2 weeks ", CLOCK - timedelta(weeks=2)),
    ("1 month", datetime(2027, 2, 28, 12, 30, tzinfo=timezone.utc)),
    ("13 months", datetime(2026, 2, 28, 12, 30, tzinfo=timezone.utc)),
    ("1 year", datetime(2026, 3, 31, 12, 30, tzinfo=timezone.utc)),
    ("2027-01-01", datetime(2027, 1, 1, tzinfo=timezone.utc)),
    ("2027-01-01T06:00Z", datetime(2027, 1, 1, 6, tzinfo=timezone.utc)),
    ("2027-01-01 06:00+02:00", datetime(2027, 1, 1, 4, tzinfo=timezone.utc)),
])
def test_since_accepts_durations_and_iso_dates(text, expected):
    assert history.parse_since(text, CLOCK) == expected


@pytest.mark.parametrize("text", ["", "30", "d", "-3d", "30 fortnights", "3 mo", "1.5h", "9999999d", "999999 years",
                                  "2027-13-01", "next tuesday", "30d ago"])
def test_since_refuses_anything_else_naming_the_option(text):
    with pytest.raises(UsageError) as refused:
        history.parse_since(text, CLOCK)
    assert str(refused.value).startswith("--since ") and "e.g. --since 30d" in str(refused.value)
    assert "\n" not in str(refused.value)


def test_unknown_actions_are_refused_before_any_query():
    with pytest.raises(UsageError, match=r"valid: create_table, create, detach, drop, config, reattach"):
        history.read(None, "public", actions=["drop", "vacuum"])


def test_the_action_list_is_the_audit_logs_check():
    check = re.search(r"action\s+text\s+NOT NULL CHECK \(action IN \(([^)]*)\)\)", migration.state_section()).group(1)
    assert tuple(a.strip(" '") for a in check.split(",")) == history.ACTIONS


@pytest.mark.parametrize("stored, ref", [
    ("public.bookings", TableRef("public", "bookings")),
    ("public.Rooms", TableRef("public", "Rooms")),
    ('public."Rooms"', TableRef("public", "Rooms")),
    ('"My Schema"."a.b ""x"""', TableRef("My Schema", 'a.b "x"')),
])
def test_stored_table_names_parse_from_either_face(stored, ref):
    assert history.stored_table(stored) == ref


def test_text_escapes_control_characters_to_keep_one_line_per_action():
    entry = history.Entry(1, CLOCK, "config", BOOKINGS, BOOKINGS, None, None, "line one\nline two", None, None, None,
                          None, "sql", None)
    body = history.text([entry])
    assert "line one\\nline two" in body and len(body.splitlines()) == 4


# The SQL face's migration, run by the real psql client (as tests/test_sql_face.py does)

def migrate(server, db_url: str) -> None:
    script = migration.render({"partitioning.prefix": "amenity_booking"})
    proc = subprocess.run([server.psql, db_url, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-f", "-"], input=script,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
