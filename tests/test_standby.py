"""partman against a real hot standby (pg_basebackup -R from the test server, started on a port of its own), on
PostgreSQL 15 and 18: apply and drift say in one line that the server is a standby and exit 0, changing nothing,
so that the same cron job runs on every node; plan reads the replicated state and says where it was read."""

from __future__ import annotations

import time

import psycopg
import pytest

from conftest import EXTERNAL
from dbtools import run_cli
from helpers import spec_data, write_spec
from pgcluster import Replica, debian_bindir, embedded_bindir

NOW = "2027-02-15T12:00:00Z"


def cli(capsys, url, command, *extra):
    return run_cli(capsys, command, "specs", "--env", "test", "--database-url", url, "--now", NOW, *extra)


@pytest.fixture
def standby(capsys, server, workdir, db_url, conn):
    """The test database with a managed table, then a standby of the whole server; yields the standby's URL."""
    if EXTERNAL:
        pytest.skip("a standby is made from the test's own server (PARTMAN_TEST_DATABASE_URL names another)")
    write_spec(workdir / "specs", spec_data(premake="2 months"))
    assert cli(capsys, db_url, "apply", "--auto-approve").code == 0
    write_spec(workdir / "specs", spec_data(premake="6 months"))  # the primary has work to do now
    bindir = embedded_bindir() if server.label == "pg18" else debian_bindir()
    replica = Replica(bindir, f"standby-{server.label}").start_from(psycopg.conninfo.conninfo_to_dict(server.admin_url)["port"])
    url = replica.url(conn.info.dbname)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with psycopg.connect(url, connect_timeout=2) as c:
                    assert c.execute("SELECT pg_is_in_recovery()").fetchone()[0]
                    break
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        yield url
    finally:
        replica.stop()


def test_apply_on_a_standby_says_so_in_one_line_and_exits_0(capsys, standby, conn):
    result = cli(capsys, standby, "apply", "--auto-approve")
    assert result.code == 0, result.err
    assert result.err.count("\n") == 1 and "is a standby in recovery: nothing to apply here, nothing changed" in result.err
    assert "Traceback" not in result.err


def test_a_saved_plan_applied_on_a_standby_changes_nothing_and_exits_0(capsys, standby, db_url):
    assert cli(capsys, db_url, "plan", "--out", "plan.json").code == 0
    result = run_cli(capsys, "apply", "plan.json", "--database-url", standby)
    assert result.code == 0, result.err
    assert "is a standby in recovery: nothing to apply here" in result.err


def test_drift_on_a_standby_leaves_the_report_to_the_primary(capsys, standby):
    result = cli(capsys, standby, "drift")
    assert result.code == 0 and result.out == ""
    assert "is a standby in recovery: nothing to report here; the primary's drift reports" in result.err


def test_plan_on_a_standby_reads_the_replicated_state_and_says_where_it_was_read(capsys, standby, db_url):
    on_standby = cli(capsys, standby, "plan", "--detailed-exitcode")
    on_primary = cli(capsys, db_url, "plan", "--detailed-exitcode")
    assert on_standby.code == on_primary.code == 2
    def plan_lines(out: str) -> list[str]:
        return [line for line in out.splitlines() if "the database's clock says" not in line]

    assert plan_lines(on_standby.out) == plan_lines(on_primary.out), "the same plan: the standby holds the primary's state"
    assert "is a standby in recovery: this plan was read from it (replicated state); apply runs on the primary" in on_standby.err
