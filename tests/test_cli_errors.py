"""Every command, fed broken input, answers as the README promises: one line on stderr, a documented exit code,
no traceback, no password; run as a real process, the way a user runs partman."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from helpers import spec_data, write_spec

NOW = "2027-02-15T12:00:00Z"
SECRET = "Zq7-horsebattery"


def partman(cwd: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "partman", *args], capture_output=True, text=True, cwd=cwd,
                          env={**os.environ, **(env or {})}, timeout=120)


def assert_one_line(proc: subprocess.CompletedProcess, codes=(1, 3, 4, 64)) -> None:
    assert proc.returncode in codes, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert SECRET not in proc.stderr + proc.stdout


@pytest.fixture
def project(tmp_path):
    write_spec(tmp_path / "specs", spec_data())
    return tmp_path


OFFLINE = {
    "a spec path that does not exist": ["plan", "nope", "--env", "test", "--database-url", "postgresql://x@127.0.0.1:1/x"],
    "validate of a missing path": ["validate", "nope"],
    "an unknown option": ["plan", "specs", "--env", "test", "--no-such-option"],
    "an option after the specs with a bad value": ["plan", "specs", "--env", "test", "--lock-timeout-ms", "99999999999999"],
    "a --now without an offset": ["plan", "specs", "--env", "test", "--now", "2027-01-01T00:00:00"],
    "a --now in year 9999": ["plan", "specs", "--env", "test", "--now", "9999-12-15T00:00:00Z"],
    "a --now in year 1": ["plan", "specs", "--env", "test", "--now", "0001-01-01T00:00:00Z"],
    "a refused connection": ["plan", "specs", "--env", "test", "--database-url", f"postgresql://u:{SECRET}@127.0.0.1:1/db"],
    "an unparsable connection string quoting the password": ["plan", "specs", "--env", "test", "--database-url",
                                                              f"host=127.0.0.1 {SECRET}"],
    "an unparsable URI query": ["plan", "specs", "--env", "test", "--database-url", f"postgresql://u@h/d?{SECRET}"],
    "an unknown host": ["drift", "specs", "--env", "test", "--database-url", "postgresql://u@nonexistent.invalid/db"],
    "a plan file that is not one": ["apply", "specs/bookings.yaml.json"],
    "a system state schema": ["plan", "specs", "--env", "test", "--state-schema", "pg_catalog"],
    "a NUL in the state schema": ["plan", "specs", "--env", "test", "--state-schema", "a\x01b"],
    "sql render with an unknown placeholder": ["sql", "render", "--set", "partitioning.nope=1"],
}


@pytest.mark.parametrize("case", sorted(OFFLINE))
def test_broken_input_without_a_database_is_one_line(project, case):
    (project / "specs" / "bookings.yaml.json").write_text("{}")
    assert_one_line(partman(project, *OFFLINE[case]))


def test_a_refused_connection_keeps_libpqs_reason(project):
    proc = partman(project, "plan", "specs", "--env", "test", "--database-url", "postgresql://u@127.0.0.1:1/db")
    assert_one_line(proc)
    assert proc.stderr.strip().endswith("Connection refused")


def test_an_unparsable_connection_string_echoes_none_of_it(project):
    proc = partman(project, "plan", "specs", "--env", "test", "--database-url", f"password={SECRET} {SECRET}x")
    assert_one_line(proc)
    assert "cannot be parsed" in proc.stderr and "x" + SECRET[:4] not in proc.stderr


def test_an_unwritable_prometheus_file_is_one_line_naming_it(project, db_url):
    proc = partman(project, "drift", "specs", "--env", "test", "--database-url", db_url, "--now", NOW,
                   "--prometheus-file", "/nonexistent/dir/x.prom")
    assert_one_line(proc)
    assert "/nonexistent/dir/x.prom" in proc.stderr


def test_an_unwritable_plan_file_is_one_line_naming_it(project, db_url):
    proc = partman(project, "plan", "specs", "--env", "test", "--database-url", db_url, "--now", NOW,
                   "--out", "/nonexistent/dir/plan.json")
    assert_one_line(proc)
    assert "/nonexistent/dir/plan.json" in proc.stderr


def test_a_table_level_error_is_said_on_stderr_too(project, db_url, conn):
    conn.execute("CREATE TABLE bookings (id bigint, start_time timestamptz)")
    proc = partman(project, "plan", "specs", "--env", "test", "--database-url", db_url, "--now", NOW)
    assert proc.returncode == 1
    assert "public.bookings is not partitioned" in proc.stderr


def test_a_role_that_may_not_log_in_is_one_line(project, db_url, conn):
    conn.execute("CREATE ROLE shut NOLOGIN")
    url = psycopg.conninfo.make_conninfo(db_url, user="shut", password=SECRET)
    assert_one_line(partman(project, "plan", "specs", "--env", "test", "--database-url", url))


def test_a_role_without_select_on_partition_log_is_one_line_naming_it(project, db_url, conn):
    assert partman(project, "apply", "specs", "--env", "test", "--database-url", db_url, "--now", NOW,
                   "--auto-approve").returncode == 0
    conn.execute("CREATE ROLE peeker LOGIN")
    conn.execute("GRANT SELECT ON partition_config TO peeker")
    url = psycopg.conninfo.make_conninfo(db_url, user="peeker")
    proc = partman(project, "plan", "specs", "--env", "test", "--database-url", url, "--now", NOW)
    assert_one_line(proc)
    assert "public.partition_log" in proc.stderr and "needs SELECT" in proc.stderr


def test_a_statement_timeout_is_one_line(project, db_url, conn):
    # The role's statement_timeout (20 ms) ends a read that waits on a lock before partman's lock_timeout would
    # (a ladder step of 95 ms): a statement_timeout for certain, whatever the machine's speed.
    assert partman(project, "apply", "specs", "--env", "test", "--database-url", db_url, "--now", NOW,
                   "--auto-approve").returncode == 0
    conn.execute("CREATE ROLE hasty LOGIN; GRANT SELECT ON partition_log, partition_config TO hasty")
    conn.execute("ALTER ROLE hasty SET statement_timeout = '20ms'")
    url = psycopg.conninfo.make_conninfo(db_url, user="hasty")
    with psycopg.connect(db_url) as holder:
        holder.execute("LOCK TABLE partition_log IN ACCESS EXCLUSIVE MODE")
        proc = partman(project, "plan", "specs", "--env", "test", "--database-url", url, "--now", NOW)
    assert_one_line(proc)
    assert "statement_timeout" in proc.stderr or "cancel" in proc.stderr, proc.stderr


def test_apply_on_a_read_only_database_is_one_line(project, db_url, conn):
    dbname = psycopg.conninfo.conninfo_to_dict(db_url)["dbname"]
    conn.execute(f'ALTER DATABASE "{dbname}" SET default_transaction_read_only = on')
    plan = partman(project, "plan", "specs", "--env", "test", "--database-url", db_url, "--now", NOW)
    assert plan.returncode == 0, plan.stderr
    proc = partman(project, "apply", "specs", "--env", "test", "--database-url", db_url, "--now", NOW, "--auto-approve")
    assert_one_line(proc)
    assert "read-only" in proc.stderr


def test_apply_with_a_missing_state_schema_is_one_line(project, db_url):
    proc = partman(project, "apply", "specs", "--env", "test", "--database-url", db_url, "--now", NOW,
                   "--auto-approve", "--state-schema", "nowhere")
    assert_one_line(proc)
    assert "nowhere" in proc.stderr


def test_a_state_schema_that_needs_quoting_works(project, db_url, conn):
    conn.execute('CREATE SCHEMA "Partman State"')
    args = ("specs", "--env", "test", "--database-url", db_url, "--now", NOW, "--state-schema", "Partman State")
    assert partman(project, "apply", *args, "--auto-approve").returncode == 0
    assert partman(project, "plan", *args, "--detailed-exitcode").returncode == 0
    assert conn.execute("""SELECT count(*) FROM "Partman State".partition_log""").fetchone()[0] > 0


def test_a_role_with_only_dml_on_existing_state_tables_can_apply(project, db_url, conn):
    assert partman(project, "apply", "specs", "--env", "test", "--database-url", db_url, "--now", NOW,
                   "--auto-approve").returncode == 0
    conn.execute("CREATE ROLE operator LOGIN")
    conn.execute("ALTER TABLE bookings OWNER TO operator")
    for part, in conn.execute("SELECT inhrelid::regclass::text FROM pg_inherits WHERE inhparent = 'bookings'::regclass").fetchall():
        conn.execute(f"ALTER TABLE {part} OWNER TO operator")
    conn.execute("GRANT CREATE ON SCHEMA public TO operator")
    conn.execute("GRANT SELECT, INSERT, UPDATE ON partition_log, partition_config TO operator")
    conn.execute("GRANT INSERT ON partition_audit_log TO operator")
    conn.execute("REVOKE CREATE ON SCHEMA public FROM PUBLIC")
    write_spec(project / "specs", spec_data(premake="6 months"))
    url = psycopg.conninfo.make_conninfo(db_url, user="operator")
    proc = partman(project, "apply", "specs", "--env", "test", "--database-url", url, "--now", NOW, "--auto-approve")
    assert proc.returncode == 0, proc.stderr
