"""Converting a plain table online (`convert: attach`), on PostgreSQL 15 and 18: the table becomes the first
partition [MINVALUE, cutover) of a new parent that takes its name, no row is copied, and everything that hangs on
it keeps working; what cannot follow is refused at plan time, naming the object and the fix, with nothing
changed."""

from __future__ import annotations

import json

import psycopg
import pytest

from dbtools import partitions, run_cli
from helpers import write_spec

NOW = "2026-12-03T10:00Z"

SCHEMA = """
CREATE ROLE {app} LOGIN;
CREATE TABLE users (id int PRIMARY KEY);
INSERT INTO users SELECT generate_series(1, 10);
CREATE TABLE events (id bigint GENERATED ALWAYS AS IDENTITY, at timestamptz NOT NULL, user_id int REFERENCES users,
                     note text DEFAULT 'x', PRIMARY KEY (id, at));
CREATE INDEX events_note ON events (note);
COMMENT ON TABLE events IS 'what happened';
GRANT SELECT, INSERT ON events TO {app};
GRANT UPDATE (note) ON events TO {app};
INSERT INTO events (at, user_id) SELECT '2026-12-01Z'::timestamptz - g * interval '1 minute', 1 + g % 10
  FROM generate_series(1, 5000) g;
CREATE TABLE replies (event_id bigint, event_at timestamptz, FOREIGN KEY (event_id, event_at) REFERENCES events ON DELETE CASCADE);
INSERT INTO replies SELECT id, at FROM events WHERE id % 100 = 0;
CREATE VIEW recent AS SELECT id, at, note FROM events WHERE at > '2026-11-30Z';
GRANT SELECT ON recent TO {app};
"""


def spec(**extra):
    return {"table": "public.events", "partition_key": "at", "interval": "monthly", "premake": "2 months",
            "convert": "attach", **extra}


def cli(capsys, db_url, command, *extra, now=NOW):
    return run_cli(capsys, command, "specs", "--database-url", db_url, "--now", now, *extra)


def fingerprint(conn) -> tuple:
    return conn.execute("SELECT count(*), md5(string_agg(id || '|' || at || '|' || user_id || '|' || note, ',' ORDER BY id))"
                        " FROM events").fetchone()


@pytest.fixture
def events(conn, workdir):
    app = f"app_{conn.info.dbname}"
    conn.execute(SCHEMA.format(app=app))
    write_spec(workdir / "specs", spec(), "events.yaml")
    yield app
    conn.execute(f'DROP OWNED BY "{app}"; DROP ROLE "{app}"')


def test_a_plain_table_without_convert_is_refused_with_the_way_to_convert_it(capsys, workdir, db_url, conn, events):
    write_spec(workdir / "specs", {k: v for k, v in spec().items() if k != "convert"}, "events.yaml")
    result = cli(capsys, db_url, "plan")
    assert result.code == 1
    assert "public.events is not partitioned; add `convert: attach` to its spec" in result.err


def test_the_plan_shows_each_step_with_what_it_locks(capsys, workdir, db_url, conn, events):
    result = cli(capsys, db_url, "plan", "--detailed-exitcode")
    assert result.code == 2, result.err
    out = result.out
    assert "~ convert  public.events into a partitioned table, without copying a row" in out
    for step in ("1/4 check", "2/4 validate", "3/4 swap", "4/4 validate_fk"):
        assert step in out
    assert "CHECK (at < 2027-03-01T00:00:00+00:00) NOT VALID" in out, "the cutover is the premake horizon"
    assert out.count("locks:") == 4 and "SHARE UPDATE EXCLUSIVE on public.events: writers and readers go on" in out
    assert "1 to convert" in out
    doc = json.loads(cli(capsys, db_url, "plan", "--format", "json").out)
    (table,) = doc["tables"]
    assert [s["step"] for s in table["conversion"]["steps"]] == ["check", "validate", "swap", "validate_fk"]
    assert table["conversion"]["cutover"] == "2027-03-01T00:00:00+00:00" and table["conversion"]["legacy"] == "public.events_legacy"


def test_conversion_keeps_every_row_and_everything_that_hangs_on_the_table(capsys, workdir, db_url, conn, events):
    before = fingerprint(conn)
    oid = conn.execute("SELECT 'events'::regclass::oid").fetchone()[0]
    result = cli(capsys, db_url, "apply", "--auto-approve")
    assert result.code == 0, result.err
    assert "1 converted" in result.out
    assert fingerprint(conn) == before
    assert partitions(conn, "events") == [("events_legacy", "FOR VALUES FROM (MINVALUE) TO ('2027-03-01 00:00:00+00')")]
    assert conn.execute("SELECT 'events_legacy'::regclass::oid").fetchone()[0] == oid, "the same table: no row copied"
    assert conn.execute("SELECT count(*) FROM recent").fetchone()[0] > 0
    assert conn.execute("SELECT pg_get_viewdef('recent')").fetchone()[0].count("events_legacy") == 0
    new_id = conn.execute("INSERT INTO events (at, user_id) VALUES ('2026-12-03Z', 1) RETURNING id").fetchone()[0]
    assert new_id == 5001, "the identity continues where it left off"
    with pytest.raises(psycopg.errors.ForeignKeyViolation):
        conn.execute("INSERT INTO events (at, user_id) VALUES ('2026-12-03Z', 99)")
    with pytest.raises(psycopg.errors.ForeignKeyViolation):
        conn.execute("INSERT INTO replies VALUES (424242, '2026-12-03Z')")
    conn.execute("DELETE FROM events WHERE id = 100")
    assert conn.execute("SELECT count(*) FROM replies WHERE event_id = 100").fetchone()[0] == 0, "ON DELETE CASCADE kept"
    described = conn.execute("SELECT obj_description('events'::regclass, 'pg_class'), relacl::text FROM pg_class"
                             " WHERE oid = 'events'::regclass").fetchone()
    assert described[0] == "what happened" and f"{events}=ar/" in described[1]
    assert conn.execute("SELECT has_column_privilege(%s, 'events', 'note', 'UPDATE')", (events,)).fetchone()[0]
    names = {r[0] for r in conn.execute("SELECT conname FROM pg_constraint WHERE conrelid = 'events'::regclass")}
    assert {"events_pkey", "events_user_id_fkey"} <= names, "the parent keeps the constraint names"
    # (PostgreSQL 15 leaves the internal clone of a validated foreign key on each referenced partition marked
    # not validated; only the constraints users made are checked.)
    assert conn.execute("SELECT count(*) FROM pg_constraint WHERE NOT convalidated AND conparentid = 0").fetchone()[0] == 0


def test_after_the_conversion_the_next_plan_has_only_premakes(capsys, workdir, db_url, conn, events):
    assert cli(capsys, db_url, "apply", "--auto-approve").code == 0
    assert cli(capsys, db_url, "plan", "--detailed-exitcode").code == 0, "same clock: in shape"
    later = cli(capsys, db_url, "plan", now="2027-01-10T00:00Z")
    assert "+ create   public.events_2027_03" in later.out
    assert "convert" not in later.out and "- " not in later.out
    assert cli(capsys, db_url, "apply", "--auto-approve", now="2027-01-10T00:00Z").code == 0
    conn.execute("INSERT INTO events (at, user_id) VALUES ('2027-03-05Z', 1)")
    assert conn.execute("SELECT tableoid::regclass::text FROM events WHERE at = '2027-03-05Z'").fetchone()[0] == "events_2027_03"


def test_retention_detaches_the_legacy_partition_only_once_its_whole_range_expired(capsys, workdir, db_url, conn, events):
    write_spec(workdir / "specs", spec(retention="3 months", retention_grace="0 days"), "events.yaml")
    assert cli(capsys, db_url, "apply", "--auto-approve").code == 0
    assert "events_legacy" not in cli(capsys, db_url, "plan", now="2027-05-15T00:00Z").out.split("- detach")[-1]
    plan = cli(capsys, db_url, "plan", now="2027-06-02T00:00Z")
    assert "PM102 referenced by 50 rows of public.replies" in plan.out, "kept while replies point into it"
    conn.execute("DELETE FROM replies")
    plan = cli(capsys, db_url, "plan", now="2027-06-02T00:00Z")
    assert "- detach   public.events_legacy  [MINVALUE, 2027-03-01T00:00:00+00:00)" in plan.out


def test_a_key_running_ahead_of_the_horizon_moves_the_cutover_past_it(capsys, workdir, db_url, conn, events):
    conn.execute("INSERT INTO events (at, user_id) VALUES ('2027-08-17Z', 1)")
    doc = json.loads(cli(capsys, db_url, "plan", "--format", "json").out)
    assert doc["tables"][0]["conversion"]["cutover"] == "2027-09-01T00:00:00+00:00"


@pytest.mark.parametrize("change, names", [
    ("ALTER TABLE replies DROP CONSTRAINT replies_event_id_event_at_fkey;"
     " ALTER TABLE events DROP CONSTRAINT events_pkey; ALTER TABLE events ADD PRIMARY KEY (id)",
     ["primary key events_pkey does not include the partition key at", "fix: add at to it"]),
    ("ALTER TABLE replies DROP CONSTRAINT replies_event_id_event_at_fkey; ALTER TABLE events DROP CONSTRAINT events_pkey;"
     " ALTER TABLE events ALTER COLUMN at DROP NOT NULL; INSERT INTO events (at, user_id) VALUES (NULL, 1)",
     ["partition key at is nullable and holds NULLs", "fix: UPDATE or DELETE the rows WHERE at IS NULL"]),
    ("CREATE MATERIALIZED VIEW totals AS SELECT count(*) FROM events",
     ["materialized view public.totals selects from it", "fix: DROP it before the conversion"]),
    ("CREATE FUNCTION newest() RETURNS timestamptz LANGUAGE sql BEGIN ATOMIC SELECT max(at) FROM events; END",
     ["function public.newest() depends on it", "fix: drop it before"]),
])
def test_what_cannot_follow_the_table_is_refused_at_plan_time_and_nothing_changes(
        capsys, workdir, db_url, conn, events, change, names):
    conn.execute(change)
    before = conn.execute("SELECT relkind, (SELECT count(*) FROM pg_constraint WHERE conrelid = 'events'::regclass)"
                          " FROM pg_class WHERE oid = 'events'::regclass").fetchone()
    for command in ("plan", "apply"):
        result = cli(capsys, db_url, command, *(["--auto-approve"] if command == "apply" else []))
        assert result.code == 1, result.out
        errors = [line for line in result.err.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and all(n in errors[0] for n in names), result.err
        assert "public.events" in errors[0]
    after = conn.execute("SELECT relkind, (SELECT count(*) FROM pg_constraint WHERE conrelid = 'events'::regclass)"
                         " FROM pg_class WHERE oid = 'events'::regclass").fetchone()
    assert after == before and after[0] == "r"


def test_an_interrupted_conversion_keeps_its_cutover(capsys, workdir, db_url, conn, events):
    conn.execute("ALTER TABLE events ADD CONSTRAINT events_partman_cutover CHECK (at < '2027-02-01Z') NOT VALID")
    plan = cli(capsys, db_url, "plan", now="2027-01-20T00:00Z")
    assert "1/3 validate" in plan.out and "TO (2027-02-01T00:00:00+00:00)" in plan.out
    assert cli(capsys, db_url, "apply", "--auto-approve", now="2027-01-20T00:00Z").code == 0
    assert partitions(conn, "events")[0] == ("events_legacy", "FOR VALUES FROM (MINVALUE) TO ('2027-02-01 00:00:00+00')")


def test_foreign_keys_left_not_valid_by_an_interrupted_swap_are_proven_by_the_next_run(capsys, workdir, db_url, conn, events):
    assert cli(capsys, db_url, "apply", "--auto-approve").code == 0
    conn.execute("ALTER TABLE replies DROP CONSTRAINT replies_event_id_event_at_fkey;"
                 " ALTER TABLE replies ADD CONSTRAINT replies_event_id_event_at_fkey FOREIGN KEY (event_id, event_at)"
                 " REFERENCES events ON DELETE CASCADE NOT VALID")
    plan = cli(capsys, db_url, "plan")
    assert "~ convert  public.events: finish the conversion" in plan.out
    assert "1/1 validate_fk ALTER TABLE public.replies VALIDATE CONSTRAINT replies_event_id_event_at_fkey" in plan.out
    assert cli(capsys, db_url, "apply", "--auto-approve").code == 0
    assert conn.execute("SELECT convalidated FROM pg_constraint WHERE conname = 'replies_event_id_event_at_fkey'"
                        " AND conparentid = 0").fetchone()[0]
    assert cli(capsys, db_url, "plan", "--detailed-exitcode").code == 0


def test_a_row_past_the_cutover_arriving_after_the_plan_blocks_the_conversion_and_leaves_no_check(
        capsys, workdir, db_url, conn, events):
    assert cli(capsys, db_url, "plan", "--out", "plan.json").code == 0
    conn.execute("INSERT INTO events (at, user_id) VALUES ('2027-07-01Z', 1)")  # after the plan, before the CHECK
    result = run_cli(capsys, "apply", "plan.json", "--database-url", db_url)
    assert result.code == 3, result.err
    assert "a row at or after the cutover 2027-03-01T00:00:00+00:00" in result.err
    assert conn.execute("SELECT count(*) FROM pg_constraint WHERE conname = 'events_partman_cutover'").fetchone()[0] == 0
    conn.execute("INSERT INTO events (at, user_id) VALUES ('2027-08-01Z', 1)")  # the application is not refused
    doc = json.loads(cli(capsys, db_url, "plan", "--format", "json").out)
    assert doc["tables"][0]["conversion"]["cutover"] == "2027-09-01T00:00:00+00:00"


def test_the_sql_face_retires_the_legacy_partition_like_partman(capsys, server, workdir, db_url, conn, events):
    from test_sql_face import migrate

    write_spec(workdir / "specs", spec(retention="3 months", retention_grace="0 days"), "events.yaml")
    assert cli(capsys, db_url, "apply", "--auto-approve").code == 0
    migrate(server, db_url, prefix="events", interval_months="1", retention_months="3")
    conn.execute("DROP TABLE replies")  # references into a retiring partition block any detach (retention and foreign keys: issue 11)
    conn.execute("SELECT manage_partitions('events', '2027-06-02T00:00Z')")
    assert conn.execute("SELECT to_regclass('events_legacy')").fetchone()[0] is None, "detached and dropped (grace 0)"
    assert conn.execute("SELECT dropped_at IS NOT NULL FROM partition_log WHERE partition_name = 'events_legacy'").fetchone()[0]


def test_a_protected_environment_converts_only_from_a_reviewed_plan_file(capsys, workdir, db_url, conn, events):
    (workdir / "partman.yaml").write_text("environments:\n  prod: {protected: true}\n")
    write_spec(workdir / "specs", spec(environments={"prod": {}}), "events.yaml")
    ad_hoc = cli(capsys, db_url, "apply", "--env", "prod", "--auto-approve")
    assert ad_hoc.code == 1 and "prod is protected: 1 detach/drop/convert action withheld" in ad_hoc.err
    assert conn.execute("SELECT relkind FROM pg_class WHERE oid = 'events'::regclass").fetchone()[0] == "r"
    assert conn.execute("SELECT count(*) FROM pg_constraint WHERE conname = 'events_partman_cutover'").fetchone()[0] == 0
    assert cli(capsys, db_url, "plan", "--env", "prod", "--out", "plan.json").code == 0
    reviewed = run_cli(capsys, "apply", "plan.json", "--database-url", db_url)
    assert reviewed.code == 0, reviewed.err
    assert conn.execute("SELECT relkind FROM pg_class WHERE oid = 'events'::regclass").fetchone()[0] == "p"


def test_a_key_of_infinity_is_refused_by_name(capsys, workdir, db_url, conn, events):
    conn.execute("INSERT INTO events (at, user_id) VALUES ('infinity', 1)")
    result = cli(capsys, db_url, "plan")
    assert result.code == 1 and "a row's at is 'infinity', past any partition bound" in result.err
    assert "Traceback" not in result.err


def test_a_referencing_table_the_role_does_not_own_is_refused_at_plan_time(capsys, workdir, db_url, conn, events):
    role = f"conv_{conn.info.dbname}"
    conn.execute(f'CREATE ROLE "{role}" LOGIN; GRANT CREATE, USAGE ON SCHEMA public TO "{role}";'
                 f' ALTER TABLE events OWNER TO "{role}"; ALTER VIEW recent OWNER TO "{role}";'
                 f' GRANT REFERENCES ON users TO "{role}"')
    try:
        as_role = psycopg.conninfo.make_conninfo(db_url, user=role)
        result = cli(capsys, as_role, "plan")
        assert result.code == 1
        assert "the conversion alters public.replies, which the connected role does not own" in result.err
        assert "public.recent" not in result.err
    finally:
        conn.execute(f'ALTER TABLE events OWNER TO CURRENT_USER; ALTER VIEW recent OWNER TO CURRENT_USER;'
                     f' DROP OWNED BY "{role}"; DROP ROLE "{role}"')


def test_a_check_left_by_an_interrupted_conversion_is_named_when_the_spec_no_longer_converts(
        capsys, workdir, db_url, conn, events):
    conn.execute("ALTER TABLE events ADD CONSTRAINT events_partman_cutover CHECK (at < '2027-03-01Z') NOT VALID")
    write_spec(workdir / "specs", {k: v for k, v in spec().items() if k != "convert"}, "events.yaml")
    result = cli(capsys, db_url, "plan")
    assert result.code == 1
    assert "an interrupted conversion left constraint events_partman_cutover" in result.err
    assert "ALTER TABLE public.events DROP CONSTRAINT events_partman_cutover to undo it" in result.err


# What a second pair of eyes found (each once a defect)

def test_a_swap_that_cannot_get_its_lock_keeps_the_check_says_so_and_the_next_run_finishes(
        capsys, workdir, db_url, conn, events):
    with psycopg.connect(db_url) as holder:
        holder.execute("LOCK TABLE replies IN ROW EXCLUSIVE MODE")
        busy = cli(capsys, db_url, "apply", "--auto-approve", "--lock-budget", "1")
        assert busy.code == 4, busy.err
        assert "constraint events_partman_cutover stays" in busy.err and "the next apply finishes" in busy.err
    assert cli(capsys, db_url, "apply", "--auto-approve").code == 0
    assert conn.execute("SELECT relkind FROM pg_class WHERE oid = 'events'::regclass").fetchone()[0] == "p"


def test_a_mixed_case_table_with_an_identity_of_its_own_increment_is_converted(capsys, workdir, db_url, conn):
    conn.execute('CREATE TABLE "Events" (id bigint GENERATED ALWAYS AS IDENTITY (INCREMENT 5), "Event At" timestamptz'
                 ' NOT NULL, PRIMARY KEY (id, "Event At")); INSERT INTO "Events" ("Event At") VALUES (\'2026-11-01Z\'), (\'2026-11-02Z\')')
    write_spec(workdir / "specs", {**spec(), "table": "public.Events", "partition_key": "Event At"}, "events.yaml")
    result = cli(capsys, db_url, "apply", "--auto-approve")
    assert result.code == 0, result.err
    assert conn.execute('INSERT INTO "Events" ("Event At") VALUES (\'2026-12-01Z\') RETURNING id').fetchone()[0] == 11


def test_an_interrupted_conversion_of_a_quoted_key_column_resumes(capsys, workdir, db_url, conn):
    conn.execute('CREATE TABLE events (id int, "Event At" timestamptz NOT NULL);'
                 ' ALTER TABLE events ADD CONSTRAINT events_partman_cutover CHECK ("Event At" < \'2027-03-01Z\') NOT VALID')
    write_spec(workdir / "specs", {**spec(), "partition_key": "Event At"}, "events.yaml")
    plan = cli(capsys, db_url, "plan")
    assert plan.code == 0, plan.err
    assert "1/2 validate" in plan.out


def test_generated_columns_policies_on_columns_and_conditional_triggers_are_carried_over(capsys, workdir, db_url, conn):
    conn.execute("""
        CREATE TABLE events (id int, at timestamptz NOT NULL, a int, b int GENERATED ALWAYS AS (a * 2) STORED);
        CREATE POLICY positive ON events USING (a > 0);
        ALTER TABLE events ENABLE ROW LEVEL SECURITY;
        CREATE FUNCTION bump() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN NEW.a := NEW.a + 1; RETURN NEW; END$$;
        CREATE TRIGGER bump BEFORE UPDATE OF a ON events FOR EACH ROW WHEN (NEW.a > 0) EXECUTE FUNCTION bump();
        INSERT INTO events (id, at, a) VALUES (1, '2026-11-01Z', 1);""")
    write_spec(workdir / "specs", spec(), "events.yaml")
    result = cli(capsys, db_url, "apply", "--auto-approve")
    assert result.code == 0, result.err
    conn.execute("UPDATE events SET a = 5 WHERE id = 1")
    assert conn.execute("SELECT a, b FROM events").fetchone() == (6, 12)
    assert conn.execute("SELECT count(*) FROM pg_policy WHERE polrelid = 'events'::regclass").fetchone()[0] == 1


@pytest.mark.parametrize("change, names", [
    ("ALTER TABLE events ADD CONSTRAINT positive CHECK (user_id > 0) NOT VALID",
     ["constraint positive is NOT VALID", "VALIDATE CONSTRAINT positive"]),
    ("ALTER TABLE events DROP CONSTRAINT events_user_id_fkey;"
     " ALTER TABLE events ADD CONSTRAINT events_user_id_fkey FOREIGN KEY (user_id) REFERENCES users NOT VALID",
     ["constraint events_user_id_fkey is NOT VALID"]),
    ("CREATE TABLE borrower (n bigint DEFAULT nextval('events_id_seq'))",
     ["the identity sequence public.events_id_seq of column id is also used by", "a sequence of its own"]),
    ("CREATE PUBLICATION everything FOR ALL TABLES",
     ["is published by everything", "publish_via_partition_root = true"]),
])
def test_what_the_swap_could_not_carry_is_refused_at_plan_time(capsys, workdir, db_url, conn, events, change, names):
    conn.execute(change)
    try:
        result = cli(capsys, db_url, "plan")
        assert result.code == 1
        assert all(n in result.err for n in names), result.err
    finally:
        conn.execute("DROP PUBLICATION IF EXISTS everything")


def test_a_key_type_partman_cannot_partition_by_is_refused_and_the_other_tables_are_planned(capsys, workdir, db_url, conn):
    conn.execute("CREATE TABLE counters (id int PRIMARY KEY, at int)")
    write_spec(workdir / "specs", {**spec(), "table": "public.counters"}, "counters.yaml")
    write_spec(workdir / "specs", {"table": "public.fine", "partition_key": "at", "interval": "monthly",
                                   "columns": [{"name": "at", "type": "timestamptz"}]}, "fine.yaml")
    result = cli(capsys, db_url, "plan")
    assert result.code == 1
    assert "partition key at has type integer" in result.err
    assert "+ create table public.fine" in result.out


def test_a_view_joining_another_table_does_not_lock_that_table(capsys, workdir, db_url, conn, events):
    conn.execute("CREATE TABLE kinds (id int PRIMARY KEY); CREATE VIEW named AS SELECT e.id, k.id AS kind"
                 " FROM events e JOIN kinds k ON k.id = e.user_id")
    with psycopg.connect(db_url) as reader:
        reader.execute("SELECT count(*) FROM kinds")  # holds ACCESS SHARE on kinds in an open transaction
        result = cli(capsys, db_url, "apply", "--auto-approve", "--lock-budget", "2")
        assert result.code == 0, result.err
    assert conn.execute("SELECT count(*) FROM named").fetchone()[0] == 0
