"""Integer ranges by width (widths.py), on PostgreSQL 15 and 18: an id table's partitions follow its mark (the
sequence behind its key, else its largest key), premake and retention count ids or partitions from it, and what
moves the mark far, a sequence jump, an id inserted past the sequence, a sequence shared with another table, is
shown in the plan and never makes more than premake asks."""

from __future__ import annotations

import json

import psycopg
import pytest

from dbtools import count, run_cli
from helpers import write_spec


def events(**overrides):
    data = {
        "table": "public.events", "partition_key": "id", "width": 1000, "premake": "3 partitions",
        "columns": [{"name": "id", "type": "bigint", "identity": "by default"}, {"name": "body", "type": "text"}],
        "primary_key": ["id"], "environments": {"test": {}},
    }
    data = {**data, **overrides}
    return {k: v for k, v in data.items() if v is not None}  # None: the key left out


def cli(capsys, db_url, command, *extra):
    return run_cli(capsys, command, "specs", "--env", "test", "--database-url", db_url, *extra)


def partitions(conn, table: str = "events") -> dict[str, str]:
    return dict(conn.execute(
        "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
        " WHERE i.inhparent = %s::regclass ORDER BY 1", (table,)).fetchall())


def insert(conn, n: int) -> None:
    conn.execute("INSERT INTO events (body) SELECT 'r' FROM generate_series(1, %s)", (n,))


def test_ids_past_the_premake_horizon_are_refused_until_apply_follows_the_sequence(capsys, workdir, db_url, conn):
    write_spec(workdir / "specs", events(retention="2 partitions", retention_grace="0 days"))
    assert cli(capsys, db_url, "apply", "--auto-approve").code == 0
    insert(conn, 3500)
    plan = cli(capsys, db_url, "plan")
    assert "= ids      at 3501 (the next value of sequence public.events_id_seq); slots of 1,000 from 0" in plan.out, plan.out
    assert "+ create   public.events_p4000  [4000, 5000)" in plan.out and "public.events_p7000" not in plan.out
    # 2 partitions are kept behind the mark's slot [3000, 4000): [0, 1000) has expired.
    assert "- detach   public.events_p0  [0, 1000)  retention" in plan.out, plan.out
    result = cli(capsys, db_url, "apply", "--auto-approve")
    assert result.code == 0, result.err
    assert sorted(partitions(conn)) == ["events_p1000", "events_p2000", "events_p3000", "events_p4000", "events_p5000",
                                        "events_p6000"]
    assert count(conn, "events") == 3500 - 999, "the rows of [0, 1000) left with their partition"
    insert(conn, 100)  # ids 3501 to 3600 land in their partitions
    assert conn.execute("SELECT tableoid::regclass::text FROM events WHERE id = 3600").fetchone()[0] == "events_p3000"
    again = cli(capsys, db_url, "plan", "--detailed-exitcode")
    assert again.code == 0 and "in shape" in again.out, again.out


def test_a_sequence_jump_is_shown_and_makes_only_premake_partitions(capsys, workdir, db_url, conn):
    write_spec(workdir / "specs", events())
    assert cli(capsys, db_url, "apply", "--auto-approve").code == 0
    conn.execute("SELECT setval('events_id_seq', 5000000000)")
    plan = cli(capsys, db_url, "plan")
    creates = [line for line in plan.out.splitlines() if "+ create" in line]
    assert len(creates) == 4, plan.out  # the mark's slot and 3 ahead, not the 5 million between
    assert "PM218 ids jumped: the mark (5000000001, the next value of sequence public.events_id_seq) is 4,999,996" \
           " partitions past the end of the partitions below it (4000)" in plan.out, plan.out
    assert cli(capsys, db_url, "apply", "--auto-approve").code == 0
    insert(conn, 1)
    assert conn.execute("SELECT tableoid::regclass::text FROM events").fetchone()[0] == "events_p5000000000"
    assert cli(capsys, db_url, "plan", "--detailed-exitcode").code == 0


def test_an_id_inserted_by_hand_past_the_sequence_is_shown_and_not_followed(capsys, workdir, db_url, conn):
    write_spec(workdir / "specs", events())
    assert cli(capsys, db_url, "apply", "--auto-approve").code == 0
    insert(conn, 10)
    with pytest.raises(psycopg.errors.CheckViolation, match="no partition of relation"):
        conn.execute("INSERT INTO events (id, body) VALUES (9000000000000, 'by hand')")
    conn.execute("CREATE TABLE events_default PARTITION OF events DEFAULT")
    conn.execute("INSERT INTO events (id, body) VALUES (9000000000000, 'by hand')")
    plan = cli(capsys, db_url, "plan", "--detailed-exitcode")
    assert plan.code == 0, plan.out  # nothing to do: partitions follow the sequence
    assert "PM219 a row holds id 9000000000000, at or past the next value of sequence public.events_id_seq (11):" \
           " partitions follow the sequence, not that row (in the default partition public.events_default)" in plan.out, plan.out
    drift = cli(capsys, db_url, "drift", "--format", "json")
    (table,) = json.loads(drift.out)["tables"]
    assert table["runway_ids"] == 3989 and table["min_runway_ids"] == 1500 and table["runway_seconds"] is None
    metrics = cli(capsys, db_url, "drift", "--format", "prometheus").out
    assert 'partman_runway_ids{env="test",table="public.events"} 3989' in metrics
    assert 'partman_runway_seconds{env="test",table="public.events"}' not in metrics, "an id table has no runway in time"


def test_a_sequence_shared_with_another_table_is_named(capsys, workdir, db_url, conn):
    conn.execute("CREATE SEQUENCE shared_ids")
    conn.execute("CREATE TABLE events (id bigint NOT NULL DEFAULT nextval('shared_ids'), body text, PRIMARY KEY (id))"
                 " PARTITION BY RANGE (id)")
    conn.execute("CREATE TABLE audit (id bigint DEFAULT nextval('shared_ids'))")
    write_spec(workdir / "specs", events(columns=None, primary_key=None))
    plan = cli(capsys, db_url, "apply", "--auto-approve")
    assert plan.code == 0, plan.err
    assert "= ids      at 1 (the next value of sequence public.shared_ids)" in plan.out, plan.out
    assert "PM220 sequence public.shared_ids also feeds public.audit.id" in plan.out, plan.out
    insert(conn, 5)
    assert [r[0] for r in conn.execute("SELECT id FROM events ORDER BY id")] == [1, 2, 3, 4, 5]


def test_without_a_sequence_the_largest_key_is_the_mark(capsys, workdir, db_url, conn):
    conn.execute("CREATE TABLE events (id bigint NOT NULL, body text, PRIMARY KEY (id)) PARTITION BY RANGE (id)")
    conn.execute("CREATE TABLE events_old PARTITION OF events FOR VALUES FROM (0) TO (5000)")
    conn.execute("INSERT INTO events SELECT g, 'r' FROM generate_series(1, 4321) g")
    write_spec(workdir / "specs", events(columns=None, primary_key=None))
    result = cli(capsys, db_url, "apply", "--auto-approve")
    assert result.code == 0, result.err
    assert "= ids      at 4321 (the largest key)" in result.out, result.out
    assert sorted(partitions(conn)) == ["events_old", "events_p5000", "events_p6000", "events_p7000"], result.out


def test_a_key_with_no_sequence_and_no_index_is_refused_in_one_line(capsys, workdir, db_url, conn):
    conn.execute("CREATE TABLE events (id bigint NOT NULL, body text) PARTITION BY RANGE (id)")
    write_spec(workdir / "specs", events(columns=None, primary_key=None))
    result = cli(capsys, db_url, "plan")
    assert result.code == 1
    assert "public.events: cannot tell how far its ids reach: id has no sequence (identity, or a default that is" \
           " nextval() of one) and no btree index that leads with it; give it one (CREATE INDEX ON public.events (id))" \
           in result.out
    assert "Traceback" not in result.out + result.err


def test_history_from_an_id_backfills_and_moves_the_default_rows(capsys, workdir, db_url, conn):
    conn.execute("CREATE TABLE events (id bigint GENERATED BY DEFAULT AS IDENTITY, body text, PRIMARY KEY (id))"
                 " PARTITION BY RANGE (id)")
    conn.execute("CREATE TABLE events_default PARTITION OF events DEFAULT")
    conn.execute("INSERT INTO events (body) SELECT 'old' FROM generate_series(1, 2500)")  # all in the default
    write_spec(workdir / "specs", events(columns=None, primary_key=None, history_from=0, move_default_rows=True))
    result = cli(capsys, db_url, "apply", "--auto-approve")
    assert result.code == 0, result.err
    assert sorted(partitions(conn)) == ["events_default"] + [f"events_p{k}" for k in range(0, 6000, 1000)]
    assert count(conn, "events_default") == 0 and count(conn, "events") == 2500


def test_a_width_change_keeps_every_row_and_replaces_only_empty_future_partitions(capsys, workdir, db_url, conn):
    write_spec(workdir / "specs", events(premake="5000 ids"))
    assert cli(capsys, db_url, "apply", "--auto-approve").code == 0
    insert(conn, 1500)
    write_spec(workdir / "specs", events(width=500, premake="5000 ids"))
    result = cli(capsys, db_url, "apply", "--auto-approve")
    assert result.code == 0, result.err
    bounds = sorted(conn.execute(
        "SELECT (regexp_match(pg_get_expr(c.relpartbound, c.oid), '\\d+'))[1]::int, c.relname FROM pg_inherits i"
        " JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'events'::regclass").fetchall())
    starts = [start for start, _ in bounds]
    assert bounds[:2] == [(0, "events_p0"), (1000, "events_p1000")], "populated partitions stay as they are"
    assert starts == [0, 1000] + list(range(2000, 7000, 500)), bounds  # the empty ones are now 500 wide, to 1501 + 5000
    assert count(conn, "events") == 1500
    assert cli(capsys, db_url, "plan", "--detailed-exitcode").code == 0


def test_a_saved_plan_of_an_id_table_applies_and_carries_its_mark(capsys, workdir, db_url, conn):
    write_spec(workdir / "specs", events())
    saved = cli(capsys, db_url, "plan", "--out", "ids.json")
    assert saved.code == 0, saved.err
    data = json.loads((workdir / "ids.json").read_text())
    (table,) = data["plan"]["tables"]
    assert table["id_mark"] == "from 0 (the origin: a new table); slots of 1,000 from 0"
    result = run_cli(capsys, "apply", "ids.json", "--database-url", db_url, "--auto-approve")
    assert result.code == 0, result.err + result.out
    assert len(partitions(conn)) == 4


def test_a_plain_id_table_is_converted_online_with_its_cutover_ahead_of_the_sequence(capsys, workdir, db_url, conn):
    conn.execute("CREATE TABLE events (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, body text)")
    conn.execute("INSERT INTO events (body) SELECT 'old' FROM generate_series(1, 2500)")
    write_spec(workdir / "specs", events(columns=None, primary_key=None, convert="attach"))
    plan = cli(capsys, db_url, "plan")
    assert plan.code == 0, plan.err
    assert "CHECK (id < 6000) NOT VALID" in plan.out and "attach events_legacy FOR VALUES FROM (MINVALUE) TO (6000)" in plan.out, \
        plan.out  # the mark 2500, and 3 partitions after its slot
    result = cli(capsys, db_url, "apply", "--auto-approve")
    assert result.code == 0, result.err + result.out
    assert partitions(conn) == {"events_legacy": "FOR VALUES FROM (MINVALUE) TO ('6000')"}
    assert count(conn, "events") == 2500
    insert(conn, 1)
    assert conn.execute("SELECT max(id) FROM events").fetchone()[0] == 2501, "the identity carries on"
    conn.execute("SELECT setval(pg_get_serial_sequence('events', 'id'), 5500)")
    after = cli(capsys, db_url, "apply", "--auto-approve")
    assert after.code == 0, after.err
    assert sorted(partitions(conn)) == ["events_legacy", "events_p6000", "events_p7000", "events_p8000"], after.out
    again = cli(capsys, db_url, "plan", "--detailed-exitcode")
    assert again.code == 0, again.out


@pytest.mark.parametrize("bound", [6000, 5_000_000_000])  # printed bare, and as '5000000000'::bigint
def test_an_interrupted_id_conversion_keeps_the_cutover_its_check_proves(capsys, workdir, db_url, conn, bound):
    conn.execute("CREATE TABLE events (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, body text)")
    conn.execute("INSERT INTO events (body) SELECT 'old' FROM generate_series(1, 10)")
    conn.execute(f"ALTER TABLE events ADD CONSTRAINT events_partman_cutover CHECK (id < {bound}) NOT VALID")
    write_spec(workdir / "specs", events(columns=None, primary_key=None, convert="attach"))
    plan = cli(capsys, db_url, "plan")
    assert plan.code == 0, plan.err
    assert f"attach events_legacy FOR VALUES FROM (MINVALUE) TO ({bound})" in plan.out and "1/2 validate" in plan.out, plan.out
    assert cli(capsys, db_url, "apply", "--auto-approve").code == 0
    assert partitions(conn) == {"events_legacy": f"FOR VALUES FROM (MINVALUE) TO ('{bound}')"}


def test_a_jump_of_the_sequence_holds_retention_instead_of_retiring_every_row(capsys, workdir, db_url, conn):
    write_spec(workdir / "specs", events(width=100, retention="3 partitions", retention_grace="0 days"))
    assert cli(capsys, db_url, "apply", "--auto-approve").code == 0
    insert(conn, 250)
    conn.execute("SELECT setval('events_id_seq', 1000000)")
    for _ in range(2):  # and again once partitions exist at the new mark: the ids below it still have none
        result = cli(capsys, db_url, "apply", "--auto-approve")
        assert result.code == 0, result.err
        assert "- detach" not in result.out and count(conn, "events") == 250, result.out
    assert "Retention is held while they have none" in cli(capsys, db_url, "plan").out


def test_a_restarted_sequence_is_followed_from_the_value_it_gives_next(capsys, workdir, db_url, conn):
    write_spec(workdir / "specs", events())
    assert cli(capsys, db_url, "apply", "--auto-approve").code == 0
    conn.execute("ALTER TABLE events ALTER COLUMN id RESTART WITH 20000")  # is_called false: last_value is next
    plan = cli(capsys, db_url, "apply", "--auto-approve")
    assert "= ids      at 20000 (the next value of sequence public.events_id_seq)" in plan.out, plan.out
    insert(conn, 1)
    assert conn.execute("SELECT tableoid::regclass::text FROM events").fetchone()[0] == "events_p20000"


def test_a_default_that_computes_more_than_nextval_is_not_read_as_the_mark(capsys, workdir, db_url, conn):
    conn.execute("CREATE SEQUENCE old_ids OWNED BY NONE; CREATE SEQUENCE xs")
    conn.execute("CREATE TABLE events (id bigint NOT NULL DEFAULT nextval('xs') * 10 + 1000000, body text,"
                 " PRIMARY KEY (id)) PARTITION BY RANGE (id)")
    conn.execute("ALTER SEQUENCE old_ids OWNED BY events.id")  # owned by the column, but its default calls another
    conn.execute("CREATE TABLE events_p1000000 PARTITION OF events FOR VALUES FROM (1000000) TO (1001000)")
    insert(conn, 5)
    write_spec(workdir / "specs", events(columns=None, primary_key=None))
    plan = cli(capsys, db_url, "plan")
    assert "= ids      at 1000050 (the largest key)" in plan.out, plan.out


def test_a_saved_plan_is_stale_once_the_ids_moved_to_another_slot(capsys, workdir, db_url, conn):
    write_spec(workdir / "specs", events(retention="1 partition", retention_grace="0 days"))
    assert cli(capsys, db_url, "apply", "--auto-approve").code == 0
    insert(conn, 2100)
    assert cli(capsys, db_url, "plan", "--out", "p.json").code == 0  # retires [0, 1000) behind the mark's slot
    conn.execute("SELECT setval('events_id_seq', 1)")  # the mark goes back: retention no longer wants it
    result = run_cli(capsys, "apply", "p.json", "--database-url", db_url, "--auto-approve")
    assert result.code == 1 and "the saved plan is stale" in result.err + result.out, result.err + result.out
    assert "the ids of public.events moved from the slot at 2000 to the one at 0" in result.err + result.out
    assert count(conn, "events") == 2100


def test_the_slot_where_a_smallint_ends_runs_to_maxvalue_so_its_last_ids_have_a_partition(capsys, workdir, db_url, conn):
    conn.execute("CREATE TABLE events (id smallint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, body text)"
                 " PARTITION BY RANGE (id)")
    conn.execute("SELECT setval('events_id_seq', 31500)")
    write_spec(workdir / "specs", events(columns=None, primary_key=None))
    result = cli(capsys, db_url, "apply", "--auto-approve")
    assert result.code == 0, result.err
    assert partitions(conn) == {"events_p31000": "FOR VALUES FROM ('31000') TO ('32000')",
                                "events_p32000_max": "FOR VALUES FROM ('32000') TO (MAXVALUE)"}
    conn.execute("INSERT INTO events (id, body) VALUES (32767, 'the last smallint')")
    assert cli(capsys, db_url, "plan", "--detailed-exitcode").code == 0


def test_ids_past_what_partition_log_holds_are_refused_in_one_line(capsys, workdir, db_url, conn):
    conn.execute("CREATE TABLE events (id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY) PARTITION BY RANGE (id)")
    conn.execute("SELECT setval('events_id_seq', 300000000000000000)")  # a snowflake-sized id
    write_spec(workdir / "specs", events(columns=None, primary_key=None))
    result = cli(capsys, db_url, "plan")
    assert result.code == 1
    assert "public.events: no partition of width 1,000 from origin 0 around its mark (300000000000000001) fits a bigint" \
           " key (-62135596800000000 to 253402300799999999)" in result.out, result.out


def test_an_increment_wider_than_premake_still_has_a_partition_for_the_next_id(capsys, workdir, db_url, conn):
    conn.execute("CREATE TABLE events (id bigint GENERATED BY DEFAULT AS IDENTITY (INCREMENT 5000) PRIMARY KEY)"
                 " PARTITION BY RANGE (id)")
    write_spec(workdir / "specs", events(columns=None, primary_key=None, premake="100 ids"))
    assert cli(capsys, db_url, "apply", "--auto-approve").code == 0
    for _ in range(2):
        conn.execute("INSERT INTO events DEFAULT VALUES")  # 1, then 5001
        assert cli(capsys, db_url, "apply", "--auto-approve").code == 0
    assert conn.execute("SELECT count(*) FROM events").fetchone()[0] == 2


def test_a_descending_sequence_is_refused_in_one_line(capsys, workdir, db_url, conn):
    conn.execute("CREATE TABLE events (id bigint GENERATED BY DEFAULT AS IDENTITY (INCREMENT -1 MINVALUE -1000000"
                 " START -1) PRIMARY KEY) PARTITION BY RANGE (id)")
    write_spec(workdir / "specs", events(columns=None, primary_key=None))
    result = cli(capsys, db_url, "plan")
    assert result.code == 1 and "public.events: sequence public.events_id_seq counts down (INCREMENT -1)" in result.out
