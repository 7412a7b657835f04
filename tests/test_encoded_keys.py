"""Keys that hold a time (encoded.py), on PostgreSQL 15 and 18: epoch numbers in a bigint column and UUIDv7 in a
uuid column get the partitions a timestamptz key would, in the spec's zone, written as the values they encode;
rows inserted through the parent land where their time says."""

from __future__ import annotations

import json
import random
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from dbtools import count, run_cli
from helpers import write_spec
from partman.encoded import uuid7

BERLIN = ZoneInfo("Europe/Berlin")


def events(**overrides):
    data = {
        "table": "public.events", "partition_key": "at_ms", "key_encoding": "epoch_ms", "interval": "monthly",
        "premake": "2 months", "timezone": "Europe/Berlin",
        "columns": [{"name": "id", "type": "bigint", "not_null": True}, {"name": "at_ms", "type": "bigint", "not_null": True}],
        "primary_key": ["id", "at_ms"], "environments": {"test": {}},
    }
    return {**data, **overrides}


def things(**overrides):
    data = {
        "table": "public.things", "partition_key": "id", "interval": "daily", "premake": "2 days",
        "columns": [{"name": "id", "type": "uuid", "not_null": True}, {"name": "note", "type": "text"}],
        "primary_key": ["id"], "environments": {"test": {}},
    }
    return {**data, **overrides}


def cli(capsys, db_url, command, *extra):
    return run_cli(capsys, command, "specs", "--env", "test", "--database-url", db_url, *extra)


def ms(local: datetime) -> int:
    return (local.replace(tzinfo=BERLIN) - datetime(1970, 1, 1, tzinfo=timezone.utc)) // timedelta(milliseconds=1)


def where(conn, table: str, column: str, value) -> str:
    return conn.execute(f"SELECT tableoid::regclass::text FROM {table} WHERE {column} = %s", (value,)).fetchone()[0]


def test_an_epoch_ms_table_across_berlins_dst_change_gets_local_months_and_routes_every_row(capsys, workdir, db_url, conn):
    write_spec(workdir / "specs", events())
    result = cli(capsys, db_url, "apply", "--now", "2027-03-20T12:00:00Z", "--auto-approve", "--allow-clock-skew")
    assert result.code == 0, result.err
    bounds = dict(conn.execute(
        "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
        " WHERE i.inhparent = 'events'::regclass").fetchall())
    # March begins at CET (+01), April after the change to CEST (+02): each bound is its local midnight in ms.
    assert bounds["events_2027_03"] == f"FOR VALUES FROM ('{ms(datetime(2027, 3, 1))}') TO ('{ms(datetime(2027, 4, 1))}')"
    assert bounds["events_2027_04"] == f"FOR VALUES FROM ('{ms(datetime(2027, 4, 1))}') TO ('{ms(datetime(2027, 5, 1))}')"
    moments = {1: datetime(2027, 3, 28, 1, 30), 2: datetime(2027, 3, 28, 3, 30), 3: datetime(2027, 4, 1) - timedelta(milliseconds=1),
               4: datetime(2027, 4, 1)}
    for i, local in moments.items():
        conn.execute("INSERT INTO events (id, at_ms) VALUES (%s, %s)", (i, ms(local)))
    assert [where(conn, "events", "id", i) for i in moments] == ["events_2027_03"] * 3 + ["events_2027_04"]
    assert "+ create   public.events_2027_03  [" in result.out and "= [2027-02-28T23:00:00+00:00, 2027-03-31T22:00:00+00:00)" in result.out
    again = cli(capsys, db_url, "plan", "--now", "2027-03-20T12:00:00Z", "--detailed-exitcode")
    assert again.code == 0 and "in shape" in again.out, again.out
    assert conn.execute("SELECT count(*) FROM partition_config WHERE parent_name = 'events'").fetchone()[0] == 0, \
        "no partition_config row: the SQL face computes time bounds, which a bigint column refuses"


def test_retention_and_an_interval_change_keep_every_row_of_an_epoch_table(capsys, workdir, db_url, conn):
    write_spec(workdir / "specs", events(premake="3 months"))
    assert cli(capsys, db_url, "apply", "--now", "2027-01-10T12:00:00Z", "--auto-approve", "--allow-clock-skew").code == 0
    conn.execute("INSERT INTO events (id, at_ms) VALUES (1, %s), (2, %s)", (ms(datetime(2027, 1, 5)), ms(datetime(2027, 3, 15))))
    write_spec(workdir / "specs", events(interval="weekly", premake="10 weeks", retention="2 months", retention_grace="7 days"))
    result = cli(capsys, db_url, "apply", "--now", "2027-04-10T12:00:00Z", "--auto-approve", "--allow-clock-skew")
    assert result.code == 0, result.err
    assert "- detach   public.events_2027_01" in result.out, result.out
    assert count(conn, "events") == 1 and count(conn, "events_2027_01") == 1, "January left the table with its row"
    assert where(conn, "events", "id", 2) == "events_2027_03", "March holds a row: kept, the weeks fill around it"
    assert "+ create   public.events_20270501_20270503" in result.out, "after April (today: kept), a bridge to the weeks"
    assert cli(capsys, db_url, "plan", "--now", "2027-04-10T12:00:00Z", "--detailed-exitcode").code == 0


def test_a_saved_plan_of_an_epoch_table_carries_its_bounds_as_strings_and_applies(capsys, workdir, db_url, conn):
    write_spec(workdir / "specs", events())
    saved = cli(capsys, db_url, "plan", "--now", "2027-03-20T12:00:00Z", "--out", "plan.json")
    assert saved.code == 0, saved.err
    doc = json.loads((workdir / "plan.json").read_text())
    (table,) = [t for t in doc["plan"]["tables"] if t["table"] == "public.events"]
    assert table["key_encoding"] == "epoch_ms" and table["actions"][0]["from"] == str(ms(datetime(2027, 3, 1)))
    result = run_cli(capsys, "apply", "plan.json", "--database-url", db_url, "--auto-approve", "--allow-clock-skew")
    assert result.code == 0, result.err
    assert count(conn, "events_2027_05") == 0


def test_a_uuidv7_table_places_rows_made_now_by_the_server_or_by_python(capsys, workdir, db_url, conn):
    server_made = conn.info.server_version >= 180000  # uuidv7() is built in from PostgreSQL 18
    columns = [{"name": "id", "type": "uuid", "not_null": True, **({"default": "uuidv7()"} if server_made else {})},
               {"name": "note", "type": "text"}]
    write_spec(workdir / "specs", things(columns=columns))
    result = cli(capsys, db_url, "apply", "--auto-approve")  # the database's clock: rows made now land today
    assert result.code == 0, result.err
    today = conn.execute("SELECT to_char(now() AT TIME ZONE 'UTC', 'YYYY_MM_DD')").fetchone()[0]
    if server_made:
        conn.execute("INSERT INTO things (note) SELECT 'row ' || g FROM generate_series(1, 50) g")
    else:
        now = conn.execute("SELECT now()").fetchone()[0]
        rows = [(uuid7(now, random.getrandbits(74)), f"row {n}") for n in range(50)]
        conn.cursor().executemany("INSERT INTO things (id, note) VALUES (%s, %s)", rows)
    assert conn.execute("SELECT array_agg(DISTINCT tableoid::regclass::text) FROM things").fetchone()[0] == [f"things_{today}"]
    assert f"+ create   public.things_{today}  [" in result.out and "-7000-8000-000000000000" in result.out
    assert cli(capsys, db_url, "plan", "--detailed-exitcode").code == 0


def test_a_uuid_of_another_version_has_no_partition_and_goes_to_the_default_if_there_is_one(capsys, workdir, db_url, conn):
    write_spec(workdir / "specs", things())
    assert cli(capsys, db_url, "apply", "--auto-approve").code == 0
    random_v4 = "b8d4a3c2-6f1e-4d2b-9a7c-5e3f1d2c4b6a"  # version 4: its first bits are no time
    failed = None
    try:
        conn.execute("INSERT INTO things (id) VALUES (%s)", (random_v4,))
    except Exception as exc:  # no partition of relation "things" found for row
        failed = exc
    assert failed is not None and "no partition" in str(failed)
    conn.execute("CREATE TABLE things_default PARTITION OF things DEFAULT")
    conn.execute("INSERT INTO things (id) VALUES (%s)", (random_v4,))
    assert where(conn, "things", "id", random_v4) == "things_default"
    assert cli(capsys, db_url, "plan", "--detailed-exitcode").code == 0, "the row in the default is outside every range"


def test_a_bigint_table_whose_spec_names_no_encoding_is_refused_in_one_line(capsys, workdir, db_url, conn):
    conn.execute("CREATE TABLE ids (id bigint NOT NULL) PARTITION BY RANGE (id)")
    write_spec(workdir / "specs", {"table": "public.ids", "partition_key": "id", "interval": "monthly",
                                   "environments": {"test": {}}})
    result = cli(capsys, db_url, "plan")
    assert result.code == 1
    assert "public.ids: a bigint partition key needs a width (ids: `width: 1000000`) or a key_encoding (a time: epoch_s, epoch_ms or epoch_us)" in result.out + result.err
    assert "Traceback" not in result.err


def test_a_bound_that_stands_for_no_calendar_time_is_left_alone_and_the_other_tables_are_planned(capsys, workdir, db_url, conn):
    conn.execute("CREATE TABLE far (ts bigint NOT NULL) PARTITION BY RANGE (ts)")
    conn.execute("CREATE TABLE far_out PARTITION OF far FOR VALUES FROM (300000000000000) TO (300000086400000)")  # year 11476
    write_spec(workdir / "specs", {"table": "public.far", "partition_key": "ts", "key_encoding": "epoch_ms",
                                   "interval": "daily", "premake": "3 days", "adopt": "existing",
                                   "environments": {"test": {}}}, name="far.yaml")
    write_spec(workdir / "specs", events())
    for command in ("plan", "drift"):
        result = cli(capsys, db_url, command, "--now", "2027-03-20T12:00:00Z")
        assert "Traceback" not in result.err and "internal error" not in result.err, result.err
    result = cli(capsys, db_url, "plan", "--now", "2027-03-20T12:00:00Z")
    assert result.code == 0, result.err
    assert "public.far_out  PM205" in result.out and "+ create   public.events_2027_03" in result.out
    assert "+ create   public.far_" not in result.out, "a table with a bound partman cannot place gets no creates"


def test_epoch_seconds_in_an_integer_column_stop_before_2038_and_the_plan_says_where(capsys, workdir, db_url, conn):
    write_spec(workdir / "specs", {
        "table": "public.ev", "partition_key": "ts", "key_encoding": "epoch_s", "interval": "yearly", "premake": "20 years",
        "columns": [{"name": "ts", "type": "integer", "not_null": True}], "environments": {"test": {}}})
    result = cli(capsys, db_url, "apply", "--now", "2026-12-01T00:00:00Z", "--auto-approve", "--allow-clock-skew")
    assert result.code == 0, result.err
    assert ("PM217 an integer key in epoch_s holds times from 1901-12-13T20:45:52+00:00 to 2038-01-19T03:14:07+00:00"
            " only: 9 partitions outside them are not made") in result.out, result.out
    assert "+ create   public.ev_2037" in result.out and "public.ev_2038" not in result.out
    assert conn.execute("SELECT count(*) FROM pg_inherits WHERE inhparent = 'ev'::regclass").fetchone()[0] == 12


def test_a_plain_epoch_table_is_converted_online_with_a_cutover_that_stands_for_a_local_midnight(capsys, workdir, db_url, conn):
    conn.execute("CREATE TABLE events (id bigint NOT NULL, at_ms bigint NOT NULL, PRIMARY KEY (id, at_ms))")
    conn.execute("INSERT INTO events SELECT g, %s FROM generate_series(1, 100) g", (ms(datetime(2027, 3, 10)),))
    write_spec(workdir / "specs", {k: v for k, v in events(convert="attach").items() if k not in ("columns", "primary_key")})
    result = cli(capsys, db_url, "apply", "--now", "2027-03-20T12:00:00Z", "--auto-approve", "--allow-clock-skew")
    assert result.code == 0, result.err + result.out
    cutover = ms(datetime(2027, 6, 1))  # premake 2 months past 20 March: the first Berlin midnight at or after it
    assert f"attach events_legacy FOR VALUES FROM (MINVALUE) TO ({cutover})" in result.out, result.out
    assert count(conn, "events") == 100
    again = cli(capsys, db_url, "plan", "--now", "2027-03-20T12:00:00Z", "--detailed-exitcode")
    assert again.code == 0 and "in shape" in again.out, again.out


def test_a_plain_uuidv7_table_is_converted_online_past_its_largest_uuid(capsys, workdir, db_url, conn):
    conn.execute("CREATE TABLE things (id uuid PRIMARY KEY, note text)")
    ahead = uuid7(datetime(2027, 9, 15, tzinfo=timezone.utc), 12345)  # a row made far ahead of the horizon
    conn.execute("INSERT INTO things VALUES (%s, 'now'), (%s, 'ahead')",
                 (uuid7(datetime(2027, 3, 20, tzinfo=timezone.utc)), ahead))
    write_spec(workdir / "specs", {k: v for k, v in things(convert="attach").items() if k not in ("columns", "primary_key")})
    result = cli(capsys, db_url, "apply", "--now", "2027-03-20T12:00:00Z", "--auto-approve", "--allow-clock-skew")
    assert result.code == 0, result.err + result.out
    bound = conn.execute("SELECT pg_get_expr(c.relpartbound, c.oid) FROM pg_class c WHERE relname = 'things_legacy'").fetchone()[0]
    assert bound == f"FOR VALUES FROM (MINVALUE) TO ('{uuid7(datetime(2027, 9, 16, tzinfo=timezone.utc))}')", bound
    assert conn.execute("SELECT count(*) FROM things").fetchone()[0] == 2
