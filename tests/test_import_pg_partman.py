"""`partman import pg-partman`: pg_partman's settings in partman's terms (no database), and on PostgreSQL 15 with
the real pg_partman 4.7.2 (Debian's postgresql-15-partman): the specs written for the sets create_parent made,
a plan after import that only adopts, an apply that moves no bound and no row, later plans that premake and
retire on their own; and the one line for each set partman cannot express or for a missing part_config."""

from __future__ import annotations

import json
import uuid
from datetime import date, datetime, timedelta, timezone

import psycopg
import pytest
import yaml

from conftest import SERVERS, fresh_database
from dbtools import partitions, run_cli

from partman.intervals import Interval, Span
from partman.model import KeyType
from partman.pgpartman import default_datetime_strings, interval_of, premake_span, retention_span
from partman.timeline import Grid, KeySpace, window


# Four sets as pg_partman users make them: the extension in schema partman, create_parent with its defaults
# (premake 4), retention set afterwards in part_config as pg_partman's docs say; rows around now in each.
SETS = """
CREATE SCHEMA partman;
CREATE EXTENSION pg_partman SCHEMA partman;
CREATE TABLE public.events (id bigint GENERATED ALWAYS AS IDENTITY, created_at timestamptz NOT NULL, note text)
       PARTITION BY RANGE (created_at);
SELECT partman.create_parent('public.events', 'created_at', 'native', 'monthly');
CREATE TABLE public.visits (id bigint GENERATED ALWAYS AS IDENTITY, day date NOT NULL, note text)
       PARTITION BY RANGE (day);
SELECT partman.create_parent('public.visits', 'day', 'native', 'daily');
CREATE TABLE public.audit (id bigint GENERATED ALWAYS AS IDENTITY, at timestamptz NOT NULL, note text)
       PARTITION BY RANGE (at);
SELECT partman.create_parent('public.audit', 'at', 'native', 'monthly');
UPDATE partman.part_config SET retention = '2 months', retention_keep_table = false WHERE parent_table = 'public.audit';
CREATE TABLE public.archive (id bigint GENERATED ALWAYS AS IDENTITY, at timestamp NOT NULL, note text)
       PARTITION BY RANGE (at);
SELECT partman.create_parent('public.archive', 'at', 'native', 'weekly');
UPDATE partman.part_config SET retention = '4 weeks', retention_keep_table = true WHERE parent_table = 'public.archive';
INSERT INTO events (created_at, note) SELECT t, 'e' FROM generate_series(now() - interval '3 months', now() + interval '3 months', interval '1 day') t;
INSERT INTO visits (day, note) SELECT d::date, 'v' FROM generate_series(current_date - 3, current_date + 3, interval '1 day') d;
INSERT INTO audit (at, note) SELECT t, 'a' FROM generate_series(now() - interval '3 months', now() + interval '3 months', interval '1 day') t;
INSERT INTO archive (at, note) SELECT t, 'r' FROM generate_series(localtimestamp - interval '3 weeks', localtimestamp + interval '3 weeks', interval '6 hours') t;
"""
TABLES = {"public.events": "created_at", "public.visits": "day", "public.audit": "at", "public.archive": "at"}


# --- pg_partman's settings in partman's terms: no database ---

@pytest.mark.parametrize(("text", "interval"), [
    ("1 day", Interval.DAILY), ("7 days", Interval.WEEKLY), ("1 mon", Interval.MONTHLY),
    ("3 mons", Interval.QUARTERLY), ("1 year", Interval.YEARLY),
    ("01:00:00", None), ("14 days", None), ("6 mons", None), ("1 day 01:00:00", None), ("2 years", None), ("10", None),
])
def test_partition_intervals_map_onto_partmans_five_and_nothing_else(text, interval):
    assert interval_of(text) is interval


@pytest.mark.parametrize(("premake", "interval", "span"), [
    (4, Interval.DAILY, "4 days"), (4, Interval.WEEKLY, "4 weeks"), (4, Interval.MONTHLY, "4 months"),
    (4, Interval.QUARTERLY, "12 months"), (2, Interval.YEARLY, "2 years"), (30, Interval.MONTHLY, "30 months"),
])
def test_premake_counts_partitions_ahead_and_becomes_that_many_intervals(premake, interval, span):
    assert premake_span(premake, interval) == Span.parse(span)


def test_a_premake_beyond_partmans_limits_is_refused():
    with pytest.raises(ValueError, match="longer than partman allows"):
        premake_span(500, Interval.YEARLY)


@pytest.mark.parametrize(("text", "span"), [
    ("3 mons", "3 months"), ("1 year", "1 year"), ("2 years", "2 years"), ("1 year 6 mons", "18 months"),
    ("30 days", "30 days"), ("14 days", "14 days"), ("1 day", "1 day"),
])
def test_retention_becomes_whole_months_years_or_days(text, span):
    assert retention_span(text) == Span.parse(span)
    assert str(retention_span(text)) == span


@pytest.mark.parametrize("text", ["1 mon 15 days", "36:00:00", "1 day 12:00:00", "00:00:00"])
def test_retention_partman_cannot_say_is_refused_with_the_reason(text):
    with pytest.raises(ValueError, match="retention"):
        retention_span(text)


def test_the_default_datetime_strings_are_pg_partmans_own():
    # create_parent(p_date_trunc_interval := …) writes YYYY_MM_DD whatever the interval: pg_partman's own too.
    assert default_datetime_strings(Interval.MONTHLY, 4) == ("YYYY_MM", "YYYY_MM_DD")
    assert default_datetime_strings(Interval.WEEKLY, 4) == ('IYYY"w"IW', "YYYY_MM_DD")
    assert default_datetime_strings(Interval.QUARTERLY, 4) == ('YYYY"q"Q', "YYYY_MM", "YYYY_MM_DD")
    assert default_datetime_strings(Interval.DAILY, 4) == ("YYYY_MM_DD",)
    assert default_datetime_strings(Interval.YEARLY, 4) == ("YYYY", "YYYY_MM_DD")
    for interval in Interval:
        assert default_datetime_strings(interval, 5)[0] == "YYYYMMDD", "5.x: one string; upgraded sets keep 4.x's"


def pg_partman_last_end(interval: Interval, now: datetime, premake: int) -> date:
    """Where create_parent's partitions end (sql/functions/create_parent.sql, v4.7.2): from the boundary at or
    before now - premake intervals, every boundary b with b < now + premake intervals starts a partition."""
    ahead = premake_span(premake, interval).add(now)
    start = interval.floor(now.date())
    while datetime.combine(interval.next(start), datetime.min.time()) < ahead:
        start = interval.next(start)
    return interval.next(start)


@pytest.mark.parametrize("interval", list(Interval))
def test_partmans_window_for_the_converted_premake_ends_where_pg_partmans_partitions_end(interval):
    grid = Grid(interval, KeySpace(KeyType.TIMESTAMPTZ, "UTC"))
    moment = datetime(2026, 1, 1, 0, 0)
    while moment < datetime(2028, 1, 1):
        for premake in (1, 4):
            made = pg_partman_last_end(interval, moment, premake)
            wanted = window(grid, moment.replace(tzinfo=timezone.utc), premake_span(premake, interval)).end
            on_boundary = moment.time() == datetime.min.time() and interval.is_boundary(moment.date())
            if on_boundary:
                assert wanted.date() <= made, (moment, premake)  # never more than pg_partman made
            else:
                assert wanted.date() == made, (moment, premake)
        moment += timedelta(days=3, hours=7)


# --- Against pg_partman 4.7.2 on PostgreSQL 15 ---

# pg_partman is Debian's PostgreSQL 15 package: these tests run on the PostgreSQL 15 server whatever the run's other
# servers (tests/prepare.py installs the package); only a run that leaves PostgreSQL 15 out skips them.
ON_PG15 = pytest.mark.parametrize("server", [pytest.param("pg15", marks=pytest.mark.skipif(
    "pg15" not in SERVERS, reason="PostgreSQL 15 not selected (PARTMAN_TEST_SERVERS); pg_partman 4.7.2 needs it"))],
    indirect=True)


@pytest.fixture(scope="module")
def made_by_pg_partman(server):
    """A database where create_parent made the four sets of SETS, built once and cloned for each test."""
    name = f"pgp_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server.admin_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    with psycopg.connect(server.url_for(name), autocommit=True) as conn:
        conn.execute(SETS)
    yield name
    with psycopg.connect(server.admin_url, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


@pytest.fixture
def url(server, made_by_pg_partman):
    yield from fresh_database(server, made_by_pg_partman)


@pytest.fixture
def db(url):
    with psycopg.connect(url, autocommit=True) as c:
        yield c


def import_(capsys, url, *extra):
    return run_cli(capsys, "import", "pg-partman", "--out", "specs", "--database-url", url, *extra)


def cli(capsys, url, command, *extra):
    return run_cli(capsys, command, "specs", "--database-url", url, *extra)


def pg_partman_partitions(conn) -> dict[str, list[tuple[str, str]]]:
    return {table: [p for p in partitions(conn, table) if p[1] != "DEFAULT"] for table in TABLES}


def checksums(conn) -> dict[str, tuple]:
    return {table: conn.execute(f"SELECT count(*), md5(string_agg(id || ':' || {key}::text, ',' ORDER BY id))"
                                f" FROM {table}").fetchone() for table, key in TABLES.items()}


def plan_kinds(result) -> dict[str, set[str]]:
    """The kinds of action a JSON plan has for each table that has any."""
    assert result.code == 0, result.err
    tables = json.loads(result.out)["tables"]
    return {t["table"]: {a["action"] for a in t["actions"]} for t in tables if t["actions"]}


@ON_PG15
def test_each_time_based_set_is_written_as_one_spec_saying_where_each_key_came_from(capsys, workdir, url, db):
    result = import_(capsys, url)
    assert result.code == 0, result.err
    names = sorted(f"{t}.yaml" for t in TABLES)
    assert sorted(p.name for p in (workdir / "specs").iterdir()) == names
    assert sorted(result.out.splitlines()) == [f"wrote specs/{n}" for n in names]
    zone = db.execute("SELECT current_setting('TimeZone')").fetchone()[0]
    text = (workdir / "specs" / "public.audit.yaml").read_text()
    assert text.startswith("# Imported from partman.part_config (pg_partman 4.7.2) on ")
    for said in ("`partman plan specs`", "`~ adopt`", "`partman apply specs`",
                 "DELETE FROM partman.part_config WHERE parent_table = 'public.audit';",
                 "SET automatic_maintenance = 'off'", "# partition key: at timestamptz\n",
                 "# pg_partman premake 4 (partitions ahead of the current one) = 4 months\n",
                 "# pg_partman retention '2 months', retention_keep_table false"):
        assert said in text
    assert "columns:" not in text
    assert yaml.safe_load(text) == {"table": "public.audit", "partition_key": "at", "interval": "monthly",
                                    "premake": "4 months", "retention": "2 months", "retention_grace": "0 days",
                                    "timezone": zone, "adopt": "existing"}
    archive = yaml.safe_load((workdir / "specs" / "public.archive.yaml").read_text())
    assert archive == {"table": "public.archive", "partition_key": "at", "interval": "weekly", "premake": "4 weeks",
                       "retention": "28 days", "retention_keep_table": True, "adopt": "existing"}, "no zone: a timestamp key"
    assert yaml.safe_load((workdir / "specs" / "public.visits.yaml").read_text())["interval"] == "daily"
    assert run_cli(capsys, "validate", "specs").code == 0


@ON_PG15
def test_the_plan_right_after_import_only_adopts_what_pg_partman_made(capsys, workdir, url, db):
    assert import_(capsys, url).code == 0
    made = pg_partman_partitions(db)
    plan = cli(capsys, url, "plan")
    assert plan.code == 0, plan.err
    for table, parts in made.items():
        for name, _ in parts:
            assert f"~ adopt    public.{name}  " in plan.out, name
    total = sum(map(len, made.values()))
    assert f"Plan: 0 to create, 0 to detach, 0 to drop, {total} to adopt" in plan.out
    assert "+ create" not in plan.out and "- detach" not in plan.out and "- drop" not in plan.out


@ON_PG15
def test_apply_after_import_keeps_every_bound_and_every_row(capsys, workdir, url, db):
    assert import_(capsys, url).code == 0
    bounds, rows = {t: partitions(db, t) for t in TABLES}, checksums(db)
    applied = cli(capsys, url, "apply", "--auto-approve")
    assert applied.code == 0, applied.err
    assert "0 created, 0 detached, 0 dropped" in applied.out
    assert {t: partitions(db, t) for t in TABLES} == bounds
    assert checksums(db) == rows
    adopted = db.execute("SELECT count(*) FROM partition_log WHERE created_by = 'adopted' AND dropped_at IS NULL").fetchone()[0]
    assert adopted == sum(map(len, pg_partman_partitions(db).values()))
    retiring = plan_kinds(cli(capsys, url, "plan", "--format", "json"))
    assert retiring == {"public.audit": {"detach", "drop"}}, "only what pg_partman's own retention has left behind"


@ON_PG15
def test_later_plans_premake_and_retire_on_their_own(capsys, workdir, url, db):
    assert import_(capsys, url).code == 0
    assert cli(capsys, url, "apply", "--auto-approve").code == 0
    assert cli(capsys, url, "apply", "--auto-approve").code == 0, "the retention pg_partman had not run yet"
    later = db.execute("SELECT now() + interval '100 days'").fetchone()[0].isoformat()
    kinds = plan_kinds(cli(capsys, url, "plan", "--now", later, "--format", "json"))
    assert kinds["public.events"] == {"create"}, "no retention: premade, nothing retired"
    assert kinds["public.visits"] == {"create"}
    assert kinds["public.audit"] == {"create", "detach", "drop"}, "retention_keep_table false: dropped at once"
    assert kinds["public.archive"] == {"create", "detach"}, "retention_keep_table true: detached, never dropped"


@ON_PG15
def test_an_id_set_is_imported_as_an_id_table_whose_partitions_are_adopted_and_followed(capsys, workdir, url, db):
    db.execute("CREATE TABLE public.ids (id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, note text)"
               " PARTITION BY RANGE (id);"
               " SELECT partman.create_parent('public.ids', 'id', 'native', '10');"
               " INSERT INTO public.ids (note) SELECT 'r' FROM generate_series(1, 25);"
               " UPDATE partman.part_config SET retention = '20', retention_keep_table = false"
               "  WHERE parent_table = 'public.ids';"
               " SELECT partman.run_maintenance('public.ids')")
    made = partitions(db, "ids")
    result = import_(capsys, url)
    assert result.code == 0, result.err
    spec = yaml.safe_load((workdir / "specs" / "public.ids.yaml").read_text())
    assert {k: spec[k] for k in ("partition_key", "width", "premake", "retention", "retention_grace", "adopt")} == {
        "partition_key": "id", "width": 10, "premake": "4 partitions", "retention": "20 ids",
        "retention_grace": "0 days", "adopt": "existing"}
    first = cli(capsys, url, "plan", "--format", "json")
    (ids,) = [t for t in json.loads(first.out)["tables"] if t["table"] == "public.ids"]
    assert {a["action"] for a in ids["actions"]} <= {"adopt", "create"}, ids["actions"]
    assert cli(capsys, url, "apply", "--auto-approve").code == 0
    assert set(made) <= set(partitions(db, "ids")), "every partition pg_partman made is kept as it was"
    db.execute("INSERT INTO public.ids (note) SELECT 'r' FROM generate_series(1, 60)")  # ids 26 to 85
    later = plan_kinds(cli(capsys, url, "plan", "--format", "json"))
    assert later["public.ids"] >= {"create", "detach", "drop"}, "premake follows the ids; retention retires behind them"


@ON_PG15
def test_an_epoch_set_is_imported_with_its_key_encoding_and_only_adopted(capsys, workdir, url, db):
    db.execute("CREATE TABLE public.metrics (at bigint NOT NULL, v int) PARTITION BY RANGE (at);"
               " SELECT partman.create_parent('public.metrics', 'at', 'native', 'daily', p_epoch := 'milliseconds');"
               " INSERT INTO public.metrics SELECT (extract(epoch FROM now()) * 1000)::bigint, 1")
    result = import_(capsys, url)
    assert result.code == 0, result.err
    spec = yaml.safe_load((workdir / "specs" / "public.metrics.yaml").read_text())
    assert {k: spec[k] for k in ("partition_key", "key_encoding", "interval", "premake", "adopt")} == {
        "partition_key": "at", "key_encoding": "epoch_ms", "interval": "daily", "premake": "4 days", "adopt": "existing"}
    first = cli(capsys, url, "plan", "--format", "json")
    (metrics,) = [t for t in json.loads(first.out)["tables"] if t["table"] == "public.metrics"]
    assert metrics["actions"] and {a["action"] for a in metrics["actions"]} == {"adopt"}, metrics["actions"]
    assert cli(capsys, url, "apply", "--auto-approve").code == 0
    assert "public.metrics" not in plan_kinds(cli(capsys, url, "plan", "--format", "json")), "in shape after the adoption"


@ON_PG15
def test_a_nanosecond_epoch_set_is_named_on_one_line_and_not_written(capsys, workdir, url, db):
    db.execute("UPDATE partman.part_config SET epoch = 'nanoseconds' WHERE parent_table = 'public.events'")
    result = import_(capsys, url)
    assert "warning: public.events: not imported: an epoch set (control created_at timestamp with time zone, epoch" \
           " nanoseconds)" in result.err, result.err


@ON_PG15
def test_a_custom_datetime_string_is_named_on_one_line_and_not_written(capsys, workdir, url, db):
    db.execute("UPDATE partman.part_config SET datetime_string = 'YYYYMM' WHERE parent_table = 'public.events'")
    result = import_(capsys, url)
    assert result.code == 0, result.err
    assert result.err.splitlines()[0] == (
        "warning: public.events: not imported: custom datetime_string 'YYYYMM' (pg_partman 4.x writes 'YYYY_MM'"
        " or 'YYYY_MM_DD' for a monthly set); partman names partitions its own way")
    assert not (workdir / "specs" / "public.events.yaml").exists()


@pytest.mark.parametrize(("retention", "why"), [
    ("36 hours", "retention '36 hours': not whole months or whole days, which partman's retention needs"),
    ("bogus", "retention 'bogus' is not an interval"),
])
@ON_PG15
def test_a_retention_partman_cannot_say_is_named_on_one_line(capsys, workdir, url, db, retention, why):
    db.execute("UPDATE partman.part_config SET retention = %s WHERE parent_table = 'public.visits'", (retention,))
    result = import_(capsys, url)
    assert result.code == 0, result.err
    assert result.err.splitlines()[0] == f"warning: public.visits: not imported: {why}"
    assert not (workdir / "specs" / "public.visits.yaml").exists()


@ON_PG15
def test_a_sub_partitioned_set_and_its_sub_sets_are_each_named_and_not_written(capsys, workdir, url, db):
    db.execute("CREATE TABLE public.years (at timestamptz NOT NULL) PARTITION BY RANGE (at);"
               " SELECT partman.create_parent('public.years', 'at', 'native', 'yearly', p_premake => 1);"
               " SELECT partman.create_sub_parent('public.years', 'at', 'native', 'monthly', p_premake => 1,"
               " p_native_check => 'yes')")
    result = import_(capsys, url)
    assert result.code == 0, result.err
    warnings = [line for line in result.err.splitlines() if line.startswith("warning:")]
    assert "warning: public.years: not imported: sub-partitioned (a parent in part_config_sub); partman does not" \
           " sub-partition" in warnings
    subs = db.execute("SELECT count(*) FROM partman.part_config WHERE parent_table LIKE 'public.years_p%'").fetchone()[0]
    assert subs > 0
    assert sum("a sub-partition of public.years (sub-partitioning)" in w for w in warnings) == subs
    assert not any(p.name.startswith("public.years") for p in (workdir / "specs").iterdir())


@ON_PG15
def test_boundaries_made_in_the_databases_time_zone_are_kept_there(capsys, workdir, server, url, db):
    database = db.execute("SELECT current_database()").fetchone()[0]
    db.execute(f"ALTER DATABASE \"{database}\" SET TimeZone = 'America/New_York'")
    with psycopg.connect(url, autocommit=True) as ny:
        ny.execute("CREATE TABLE public.trips (at timestamptz NOT NULL) PARTITION BY RANGE (at);"
                   " SELECT partman.create_parent('public.trips', 'at', 'native', 'daily')")
    assert import_(capsys, url).code == 0
    assert yaml.safe_load((workdir / "specs" / "public.trips.yaml").read_text())["timezone"] == "America/New_York"
    plan = cli(capsys, url, "plan", "--table", "public.trips")
    assert plan.code == 0, plan.err
    assert "+ create" not in plan.out and "~ adopt    public.trips_p" in plan.out


@ON_PG15
def test_a_session_in_another_time_zone_than_the_sets_is_named_not_guessed(capsys, workdir, url, db):
    database = db.execute("SELECT current_database()").fetchone()[0]
    db.execute(f"ALTER DATABASE \"{database}\" SET TimeZone = 'America/New_York'")
    with psycopg.connect(url, autocommit=True) as ny:
        ny.execute("CREATE TABLE public.trips (at timestamptz NOT NULL) PARTITION BY RANGE (at);"
                   " SELECT partman.create_parent('public.trips', 'at', 'native', 'daily')")
    in_utc = psycopg.conninfo.make_conninfo(url, options="-c TimeZone=UTC")
    result = import_(capsys, in_utc)
    assert result.code == 0, result.err
    line = next(w for w in result.err.splitlines() if w.startswith("warning: public.trips:"))
    assert "is not on partman's daily grid in UTC (days start at midnight); its bounds cannot be kept" in line
    assert not (workdir / "specs" / "public.trips.yaml").exists()


@ON_PG15
def test_an_existing_spec_file_is_refused_naming_it_and_nothing_is_written(capsys, workdir, url):
    (workdir / "specs").mkdir()
    (workdir / "specs" / "public.visits.yaml").write_text("# mine\n")
    refused = import_(capsys, url)
    assert (refused.code, refused.out) == (1, "")
    assert refused.err == ("error: specs/public.visits.yaml exists; nothing written (pass --force to overwrite it)\n")
    assert [p.name for p in (workdir / "specs").iterdir()] == ["public.visits.yaml"]
    assert (workdir / "specs" / "public.visits.yaml").read_text() == "# mine\n"
    forced = import_(capsys, url, "--force")
    assert forced.code == 0, forced.err
    assert "interval: daily" in (workdir / "specs" / "public.visits.yaml").read_text()


# --- Without pg_partman: on every server ---

def test_a_missing_part_config_is_one_error_line_naming_it(capsys, workdir, db_url):
    result = run_cli(capsys, "import", "pg-partman", "--out", "specs", "--database-url", db_url)
    assert result.code == 1
    assert result.err == ("error: no table partman.part_config: pg_partman is not installed in schema partman"
                          " (pass --schema, the schema of CREATE EXTENSION pg_partman)\n")
    assert not (workdir / "specs").exists()
    other = run_cli(capsys, "import", "pg-partman", "--schema", "pgp", "--out", "specs", "--database-url", db_url)
    assert other.err.startswith("error: no table pgp.part_config: ") and len(other.err.splitlines()) == 1


# pg_partman 5.x's part_config columns (sql/tables/tables.sql at v5.1.0), made by hand: 5.x is not packaged here.
PART_CONFIG_5 = """
CREATE SCHEMA p5;
CREATE TABLE p5.part_config (parent_table text PRIMARY KEY, control text NOT NULL, partition_interval text NOT NULL,
  partition_type text NOT NULL, premake int NOT NULL DEFAULT 4, automatic_maintenance text NOT NULL DEFAULT 'on',
  template_table text, retention text, retention_schema text, retention_keep_index boolean NOT NULL DEFAULT true,
  retention_keep_table boolean NOT NULL DEFAULT true, epoch text NOT NULL DEFAULT 'none', constraint_cols text[],
  optimize_constraint int NOT NULL DEFAULT 30, infinite_time_partitions boolean NOT NULL DEFAULT false,
  datetime_string text, jobmon boolean NOT NULL DEFAULT true, sub_partition_set_full boolean NOT NULL DEFAULT false,
  undo_in_progress boolean NOT NULL DEFAULT false, inherit_privileges boolean DEFAULT false,
  constraint_valid boolean DEFAULT true NOT NULL, ignore_default_data boolean NOT NULL DEFAULT true,
  default_table boolean DEFAULT true, date_trunc_interval text, maintenance_order int,
  retention_keep_publication boolean NOT NULL DEFAULT false, maintenance_last_run timestamptz);
CREATE TABLE p5.part_config_sub (sub_parent text PRIMARY KEY);
CREATE TABLE public.m5 (at date NOT NULL) PARTITION BY RANGE (at);
CREATE TABLE public.m5_p20260101 PARTITION OF public.m5 FOR VALUES FROM ('2026-01-01') TO ('2026-02-01');
CREATE TABLE public.m5_p20260201 PARTITION OF public.m5 FOR VALUES FROM ('2026-02-01') TO ('2026-03-01');
CREATE TABLE public.w5 (at date NOT NULL) PARTITION BY RANGE (at);
CREATE TABLE public.w5_p20260107 PARTITION OF public.w5 FOR VALUES FROM ('2026-01-07') TO ('2026-01-14');
INSERT INTO p5.part_config (parent_table, control, partition_interval, partition_type, premake, datetime_string,
                            retention, retention_keep_table)
     VALUES ('public.m5', 'at', '1 mon', 'range', 6, 'YYYYMMDD', '1 year', false),
            ('public.w5', 'at', '7 days', 'range', 4, 'YYYYMMDD', NULL, true),
            ('public.l5', 'at', '1 mon', 'list', 4, 'YYYYMMDD', NULL, true);
CREATE TABLE public.l5 (at date NOT NULL) PARTITION BY LIST (at);
"""


def test_a_5x_part_config_is_read_by_its_columns(capsys, workdir, db_url, conn):
    conn.execute(PART_CONFIG_5)
    result = run_cli(capsys, "import", "pg-partman", "--schema", "p5", "--out", "specs", "--database-url", db_url)
    assert result.code == 0, result.err
    assert result.out == "wrote specs/public.m5.yaml\n"
    text = (workdir / "specs" / "public.m5.yaml").read_text()
    assert text.startswith("# Imported from p5.part_config (pg_partman 5.x by its columns; no extension in that schema) on ")
    assert yaml.safe_load(text) == {"table": "public.m5", "partition_key": "at", "interval": "monthly",
                                    "premake": "6 months", "retention": "1 year", "retention_grace": "0 days",
                                    "adopt": "existing"}
    warnings = [line for line in result.err.splitlines() if line.startswith("warning:")]
    assert warnings == [
        "warning: public.l5: not imported: partition_type list (list partitioning); partman manages declarative range"
        " partitions only",
        "warning: public.w5: not imported: partition public.w5_p20260107 (FROM (2026-01-07) TO (2026-01-14)) is not on"
        " partman's weekly grid in UTC (ISO weeks start on Monday at midnight); its bounds cannot be kept",
    ]


def test_the_import_command_explains_itself_with_examples(capsys):
    result = run_cli(capsys, "import", "pg-partman", "-h")
    assert result.code == 0
    assert "Usage: partman import pg-partman [OPTIONS]" in result.out and "Examples:" in result.out
    assert "--out DIR" in result.out and "--schema SCHEMA" in result.out


@ON_PG15
def test_a_set_made_with_date_trunc_interval_is_imported(capsys, workdir, url, db):
    db.execute("CREATE TABLE public.trunc (id bigint, at timestamptz NOT NULL) PARTITION BY RANGE (at);"
               " SELECT partman.create_parent('public.trunc', 'at', 'native', 'monthly', p_date_trunc_interval := 'month')")
    result = import_(capsys, url)
    assert result.code == 0, result.err
    assert (workdir / "specs" / "public.trunc.yaml").exists()
    assert "public.trunc" not in result.err


@ON_PG15
def test_a_precision_on_a_time_control_column_is_named_as_such_not_as_an_id_set(capsys, workdir, url, db):
    db.execute("CREATE TABLE public.precise (id bigint, at timestamptz(0) NOT NULL) PARTITION BY RANGE (at);"
               " SELECT partman.create_parent('public.precise', 'at', 'native', 'daily')")
    result = import_(capsys, url)
    line = next(line for line in result.err.splitlines() if "public.precise" in line)
    assert "control at is timestamp(0) with time zone" in line and "id-based" not in line


@ON_PG15
def test_what_partman_does_differently_is_said_for_a_set_it_imports(capsys, workdir, url, db):
    db.execute("""CREATE TABLE public.tpl (id bigint, at timestamptz NOT NULL) PARTITION BY RANGE (at);
                  CREATE TABLE public.tpl_template (LIKE public.tpl);
                  CREATE UNIQUE INDEX ON public.tpl_template (id);
                  SELECT partman.create_parent('public.tpl', 'at', 'native', 'daily', p_template_table := 'public.tpl_template');
                  UPDATE partman.part_config SET inherit_privileges = true WHERE parent_table = 'public.tpl'""")
    result = import_(capsys, url)
    lines = [line for line in result.err.splitlines() if line.startswith("warning: public.tpl: imported, but")]
    assert any("template table public.tpl_template" in line for line in lines), result.err
    assert any("inherit_privileges" in line for line in lines), result.err
    assert (workdir / "specs" / "public.tpl.yaml").exists()
