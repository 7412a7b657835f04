"""A large read's companion connection (companion.py), on PostgreSQL 15 and 18: a snapshot read with one is the
snapshot read without, it sees exactly the caller's snapshot whatever commits meanwhile, and a companion that cannot
be had, or fails, changes nothing but where the questions are asked."""

from __future__ import annotations

import threading
import time
from datetime import datetime, timezone

import psycopg
import pytest

from dbtools import run_cli
from helpers import spec_data, write_spec
from partman import catalog, companion, planner
from partman.errors import LockBusy
from partman.lock import Ladder
from partman.model import TableRef
from partman.spec import load_specs

NOW = datetime(2027, 4, 15, tzinfo=timezone.utc)


@pytest.fixture
def tables(capsys, workdir, db_url, conn):
    """Three tables with something for every question: a detached partition in grace, a grant made by hand on one
    partition, a foreign key into one parent, partition_config rows; then the specs, loaded."""
    specs = workdir / "specs"
    for name in ("alpha", "beta", "gamma"):
        write_spec(specs, spec_data(table=f"public.{name}", retention="2 months", retention_grace="30 days"),
                   name=f"{name}.yaml")
    assert run_cli(capsys, "apply", "specs", "--env", "test", "--database-url", db_url, "--now", "2027-01-10T00:00Z",
                   "--auto-approve").code == 0
    assert run_cli(capsys, "apply", "specs", "--env", "test", "--database-url", db_url, "--now", NOW.isoformat(),
                   "--auto-approve").code == 0
    conn.execute("CREATE ROLE companion_reader")
    conn.execute("GRANT SELECT ON alpha_2027_04 TO companion_reader")
    conn.execute("CREATE TABLE visits (id bigint, at timestamptz, FOREIGN KEY (id, at) REFERENCES beta (id, start_time))")
    yield load_specs([specs], "test")
    conn.execute("DROP TABLE visits")
    conn.execute("DROP OWNED BY companion_reader")
    conn.execute("DROP ROLE companion_reader")


@pytest.fixture
def always(monkeypatch):
    """A companion for every read, however few partitions; and it answers every question: the caller waits for it
    to finish before it would take any (on a few partitions the caller would otherwise take them all while the
    companion connects, and nothing would be tested)."""
    monkeypatch.setattr(catalog, "COMPANION_FROM", 0)
    real = companion.Companion.results

    def after_the_companion(self, cur):
        if self._thread is not None:
            self._thread.join()
        return real(self, cur)
    monkeypatch.setattr(companion.Companion, "results", after_the_companion)


def read(conn, specs, another=None, ladder=None):
    return catalog.snapshot(conn, specs, now=NOW, to_probe=planner.presence_needed, another=another, ladder=ladder)


def opener(db_url, before=None, opened=None):
    """Opens the companion's connection; runs before() first (in the companion's thread, after the caller exported
    its snapshot and before the companion imports it) and records each connection in opened."""
    def connect():
        if before is not None:
            before()
        c = psycopg.connect(db_url, autocommit=True, application_name="partman-companion-test")
        if opened is not None:
            opened.append(c)
        return c
    return connect


def test_a_read_with_a_companion_is_the_read_without_one(tables, always, conn, db_url):
    opened = []
    beside = read(conn, tables, opener(db_url, opened=opened))
    assert opened, "the companion was used"
    alone = read(conn, tables)
    assert beside == alone
    alpha = alone.tables[TableRef("public", "alpha")]
    assert alpha.detached and alpha.drifted and alone.tables[TableRef("public", "beta")].references, \
        "every question had something to answer"


def test_what_commits_after_the_caller_read_its_first_answers_is_not_seen_by_the_companion(tables, always, conn, db_url):
    def meanwhile():
        with psycopg.connect(db_url, autocommit=True) as side:
            side.execute("CREATE TABLE alpha_2099_01 (id int)")  # a name a new partition might have wanted
            side.execute("GRANT SELECT ON beta_2027_04 TO companion_reader")
    before = read(conn, tables, opener(db_url, before=meanwhile))
    assert TableRef("public", "alpha_2099_01") not in before.taken_names
    assert not before.tables[TableRef("public", "beta")].drifted
    after = read(conn, tables)
    assert TableRef("public", "alpha_2099_01") in after.taken_names
    assert after.tables[TableRef("public", "beta")].drifted, "the next read sees both"
    conn.execute("DROP TABLE alpha_2099_01")


class _Reading(psycopg.Cursor):
    """Records which connection (by backend pid) ran each statement reading partman's state tables (named as
    identifiers, as every read of them is composed; the catalog's question whether they exist names them as text)."""
    seen: list = []

    def execute(self, query, *args, **kwargs):
        text = query.as_string(self) if isinstance(query, psycopg.sql.Composable) else str(query)
        if '"partition_log"' in text or '"partition_config"' in text:
            _Reading.seen.append(self.connection.info.backend_pid)
        return super().execute(query, *args, **kwargs)


def test_the_state_tables_are_read_by_one_session_of_the_view_the_companion_when_it_takes_them(tables, always, db_url):
    # Two sessions holding locks on one table in one view could queue behind each other through a third session's
    # ACCESS EXCLUSIVE request; reading them on one session only rules that out.
    _Reading.seen = []
    with psycopg.connect(db_url, autocommit=True, cursor_factory=_Reading) as caller:
        def connect():
            return psycopg.connect(db_url, autocommit=True, cursor_factory=_Reading)
        read(caller, tables, connect)
        mine = caller.info.backend_pid
    assert _Reading.seen and len(set(_Reading.seen)) == 1, _Reading.seen
    assert mine not in _Reading.seen, "the companion, which takes the state tables first, read them"


def test_a_companion_that_cannot_connect_leaves_every_question_to_the_caller(tables, always, conn, db_url):
    def refused():
        raise psycopg.OperationalError("sorry, too many clients already")
    assert read(conn, tables, opener(db_url, before=refused)) == read(conn, tables)


def test_a_role_with_one_connection_gets_the_same_read(tables, always, conn, db_url):
    conn.execute("CREATE ROLE single LOGIN CONNECTION LIMIT 1 SUPERUSER")
    try:
        url = psycopg.conninfo.make_conninfo(db_url, user="single")
        with psycopg.connect(url, autocommit=True) as only:
            assert read(only, tables, opener(url)) == read(conn, tables)
    finally:
        conn.execute("DROP ROLE single")


def test_a_state_table_locked_while_a_companion_reads_ends_the_read_as_it_would_alone(tables, always, conn, db_url):
    # partition_log is read by whichever session takes the state tables' job: either way the read retries along the
    # ladder and gives up the same way.
    with psycopg.connect(db_url) as holder:
        holder.execute("LOCK TABLE partition_log IN ACCESS EXCLUSIVE MODE")
        short = Ladder(step_ms=20, max_pause_ms=20, budget_s=0.3)
        with pytest.raises(LockBusy):
            read(conn, tables, opener(db_url), ladder=short)
        with pytest.raises(LockBusy):
            read(conn, tables, ladder=short)


def test_a_failing_read_stops_its_companion_and_closes_its_connection(tables, conn, db_url):
    def slow(cur):
        cur.execute("SELECT pg_sleep(60)")

    def fails(cur):
        raise RuntimeError("the caller's own question failed")
    with psycopg.connect(db_url, autocommit=True) as watcher, catalog.consistent_view(conn) as cur:
        beside = companion.Companion.start(cur, opener(db_url), psycopg.sql.SQL("SELECT 1"), [slow, fails])
        _until(lambda: _backends(watcher, "active"), "the companion is asleep in its question")
        with pytest.raises(RuntimeError):
            beside.results(cur)
        # well before the sleep would end by itself
        _until(lambda: not _backends(watcher, None), "the companion's connection is closed: its sleep was cancelled")


def _until(condition, what: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.01)


def test_a_snapshot_that_cannot_be_exported_says_so_and_the_caller_transaction_is_done(conn):
    with pytest.raises(companion.Unexported):
        with conn.transaction(), conn.transaction():  # a savepoint: no snapshot can be exported from it
            companion.Companion.start(conn.cursor(), lambda: None, psycopg.sql.SQL("SELECT 1"), [])


def test_plan_over_enough_partitions_uses_a_companion_and_prints_what_it_prints_alone(capsys, workdir, db_url, monkeypatch):
    write_spec(workdir / "specs", spec_data(interval="daily", premake="30 days"))
    assert run_cli(capsys, "apply", "specs", "--env", "test", "--database-url", db_url, "--now", "2027-01-01T00:00Z",
                   "--auto-approve").code == 0
    args = ("plan", "specs", "--env", "test", "--database-url", db_url, "--now", "2027-01-20T00:00Z")
    alone = run_cli(capsys, *args)
    opened = []
    real = companion.Companion.start
    monkeypatch.setattr(catalog, "COMPANION_FROM", 30)
    monkeypatch.setattr(companion.Companion, "start", classmethod(
        lambda cls, *a: opened.append(1) or real.__func__(cls, *a)))
    beside = run_cli(capsys, *args)
    assert opened
    assert (beside.code, _steady(beside.out), beside.err) == (alone.code, _steady(alone.out), alone.err)


def _steady(out: str) -> str:
    """The plan without the line quoting the database's clock, which moves between two runs."""
    return "\n".join(line for line in out.splitlines() if "the database's clock says" not in line)


def _backends(conn, state):
    return conn.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'partman-companion-test'"
                        " AND (%s::text IS NULL OR state = %s)", (state, state)).fetchone()[0]


def test_a_companion_whose_connection_breaks_hands_its_question_back_to_the_caller(conn, db_url):
    took = threading.Event()

    def ends_its_own_session(cur):
        if threading.current_thread().name != "partman-companion":
            return "answered by the caller"
        took.set()
        with psycopg.connect(db_url, autocommit=True) as side:
            side.execute("SELECT pg_terminate_backend(%s)", (cur.connection.info.backend_pid,))
        cur.execute("SELECT 1")  # the connection is gone: this raises
    with catalog.consistent_view(conn) as cur:
        beside = companion.Companion.start(cur, opener(db_url), psycopg.sql.SQL("SELECT 1"),
                                           [ends_its_own_session, lambda cur: "the caller's own"])
        assert took.wait(30), "the companion took the first question"
        assert beside.results(cur) == ["answered by the caller", "the caller's own"]


def test_a_caller_that_gives_up_before_asking_for_results_stops_its_companion(tables, conn, db_url):
    def slow(cur):
        cur.execute("SELECT pg_sleep(60)")
    with psycopg.connect(db_url, autocommit=True) as watcher, catalog.consistent_view(conn) as cur:
        with pytest.raises(KeyboardInterrupt):
            with companion.Companion.start(cur, opener(db_url), psycopg.sql.SQL("SELECT 1"), [slow, slow]):
                _until(lambda: _backends(watcher, "active"), "the companion is asleep in its question")
                raise KeyboardInterrupt  # Ctrl-C while the caller reads its own answers
        _until(lambda: not _backends(watcher, None), "the companion's connection is closed: its sleep was cancelled")
