"""What apply sends per table (issue 13: as fast as replaying its DDL with psql): the statements besides the DDL,
the one question under the lock asked as a prepared statement, and the bookkeeping written in one statement."""

from __future__ import annotations

import psycopg
import pytest

import faults
from dbtools import run_cli
from helpers import spec, spec_data, write_spec

from partman import catalog, conformance
from partman.audit import state_ddl
from partman.model import TableRef

NOW = "2027-02-15T12:00:00Z"


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _statements_besides_ddl(boundaries) -> list[str]:
    ddl = ("CREATE TABLE", "ALTER TABLE", "CREATE UNLOGGED TABLE")
    return [b.text for b in boundaries if b.kind == "statement" and not b.text.startswith(ddl)]


def test_each_table_with_creates_costs_a_fixed_handful_of_statements_besides_its_ddl(workdir, db_url, conn):
    """Per table: the lock; the transaction asking under it; the creates' transaction (one SET LOCAL, one statement of
    bookkeeping); the parent's ANALYZE; the unlock. Per extra table, never more than that."""
    conn.execute(state_ddl("public"))
    counted = {}
    for tables in (2, 4):
        specs = workdir / f"specs{tables}"
        for t in range(tables):
            write_spec(specs, spec_data(table=f"public.s{tables}_{t}"), name=f"t{t}.yaml")
        run, boundaries = faults.count_boundaries(
            ["apply", str(specs), "--env", "test", "--now", NOW, "--auto-approve", "--parallelism", "1"],
            cwd=workdir, database_url=db_url, env={"PARTMAN_ALLOW_CLOCK_SKEW": "1"})
        assert run.code == 0, run.err
        counted[tables] = _statements_besides_ddl(boundaries)
    per_table = (len(counted[4]) - len(counted[2])) / 2
    # lock; settings, is-it-prepared, the question; settings, SET LOCAL, bookkeeping; settings, ANALYZE; unlock
    assert per_table <= 11, "\n".join(counted[4])
    assert sum("pg_settings" in s for s in counted[4]) == 0, "the unlock resets lock_timeout without reading pg_settings"


def test_the_prepared_question_under_the_lock_answers_what_the_plain_one_does(db_url, conn):
    conn.execute(state_ddl("public"))
    conn.execute("CREATE TABLE q (id bigint, start_time timestamptz) PARTITION BY RANGE (start_time)")
    conn.execute("CREATE INDEX ON q (id)")
    conn.execute("CREATE TABLE q_1 PARTITION OF q FOR VALUES FROM ('2027-01-01Z') TO ('2027-02-01Z')")
    ref, missing = TableRef("public", "q"), TableRef("public", "nowhere")
    prepared = psycopg.connect(db_url, autocommit=True, prepare_threshold=None)

    def ask(c, table, with_spec):
        with c.transaction():
            c.execute("SELECT set_config('TimeZone', 'UTC', true), set_config('plan_cache_mode', 'force_generic_plan', true)")
            return catalog.under_lock(c, table, "public", spec(table=table) if with_spec else None)

    try:
        for change in ("SELECT 1", "CREATE TABLE q_default PARTITION OF q DEFAULT", "GRANT SELECT ON q TO PUBLIC",
                       "INSERT INTO partition_config (parent_schema, parent_name, interval_months) VALUES ('public', 'q', 1)"):
            conn.execute(change)
            for table in (ref, missing):
                for with_spec in (False, True):
                    assert ask(prepared, table, with_spec) == ask(conn, table, with_spec), (change, table, with_spec)
        view = ask(prepared, ref, True)
        assert view.default == (TableRef("public", "q_default"), 0) and view.batch is not None
        made = conformance.making_from(spec(table=ref), False, view.making)
        with conn.transaction():
            assert made == conformance.making_for(conn, spec(table=ref), False)
        assert ask(prepared, missing, True).making[3] is None, "no parent: no shape"
        names = prepared.execute("SELECT count(*) FROM pg_prepared_statements WHERE name LIKE 'partman_%'").fetchone()[0]
        assert names == 2, "one prepared statement per question, however often it is asked"
    finally:
        prepared.close()


def test_a_partition_dropped_by_hand_is_made_again_and_its_old_log_row_closed(capsys, workdir, db_url, conn):
    """The bookkeeping is one statement: the stale live row is closed before the new one takes its range."""
    specs = workdir / "specs"
    write_spec(specs, spec_data(interval="monthly", premake="3 months"))
    args = ["apply", str(specs), "--env", "test", "--database-url", db_url, "--now", NOW, "--auto-approve"]
    assert run_cli(capsys, *args).code == 0
    actions = [r[0] for r in conn.execute("SELECT action FROM partition_audit_log ORDER BY id").fetchall()]
    assert actions == ["create_table"] + ["create"] * 4 + ["config"], "the parent, its partitions, its config, in order"
    conn.execute("DROP TABLE bookings_2027_03")
    result = run_cli(capsys, *args)
    assert result.code == 0, result.err
    rows = conn.execute("SELECT dropped_at IS NULL, created_by FROM partition_log WHERE partition_name = 'bookings_2027_03'"
                        " ORDER BY id").fetchall()
    assert rows == [(False, "partman"), (True, "partman")]


def test_the_question_under_the_lock_looks_its_table_up_by_index_even_when_first_asked_on_a_small_catalog(db_url, conn):
    """Its plan is made once per connection, at the first table, and kept while every create adds five relations:
    a plan that scans pg_class would cost each later table a scan of the whole, grown catalog."""
    from partman.apply import _PIN

    conn.execute(state_ddl("public"))
    conn.execute("CREATE TABLE q (id bigint, start_time timestamptz) PARTITION BY RANGE (start_time)")
    prepared = psycopg.connect(db_url, autocommit=True, prepare_threshold=None)
    try:
        with prepared.transaction():
            for name, value in _PIN:
                prepared.execute("SELECT set_config(%s, %s, true)", (name, value))
            catalog.under_lock(prepared, TableRef("public", "q"), "public", spec(table=TableRef("public", "q")))
            name, params = prepared.execute("SELECT name, cardinality(parameter_types) FROM pg_prepared_statements"
                                            " WHERE name LIKE 'partman_%'").fetchone()
            nulls = psycopg.sql.SQL(", ").join([psycopg.sql.NULL] * params)
            plan = "\n".join(r[0] for r in prepared.execute(
                psycopg.sql.SQL("EXPLAIN EXECUTE {}({})").format(psycopg.sql.Identifier(name), nulls)).fetchall())
    finally:
        prepared.close()
    assert "Seq Scan on pg_class" not in plan, plan
