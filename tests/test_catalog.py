"""Reading the catalog: bounds parsed from pg_get_expr(relpartbound), and a fixed number of queries."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, datetime, timezone

import psycopg
import pytest
from hypothesis import given, strategies as st

from helpers import spec

from partman.widths import Reach
from partman import catalog, planner
from partman.model import Bounds, KeyType, TableRef

NOW = datetime(2027, 2, 15, tzinfo=timezone.utc)


@pytest.mark.parametrize(
    "expr, key_type, bounds",
    [
        ("FOR VALUES FROM ('2027-01-01 00:00:00+00') TO ('2027-02-01 00:00:00+00')", KeyType.TIMESTAMPTZ,
         Bounds(datetime(2027, 1, 1, tzinfo=timezone.utc), datetime(2027, 2, 1, tzinfo=timezone.utc))),
        ("FOR VALUES FROM ('2027-01-01 06:30:00.5+00') TO (MAXVALUE)", KeyType.TIMESTAMPTZ,
         Bounds(datetime(2027, 1, 1, 6, 30, 0, 500000, tzinfo=timezone.utc), None)),
        ("FOR VALUES FROM (MINVALUE) TO ('2027-01-01')", KeyType.DATE, Bounds(None, date(2027, 1, 1))),
        ("FOR VALUES FROM ('2027-01-01 00:00:00') TO ('infinity')", KeyType.TIMESTAMP, Bounds(datetime(2027, 1, 1), None)),
    ],
)
def test_bounds_are_parsed_from_the_bound_expression(expr, key_type, bounds):
    assert catalog.parse_bound(expr, key_type) == bounds


@pytest.mark.parametrize("expr", ["DEFAULT", "FOR VALUES IN ('a')", "FOR VALUES FROM ('2027-01-01 BC') TO ('2027-02-01')"])
def test_bounds_partman_cannot_read_are_reported_not_guessed(expr):
    assert catalog.parse_bound(expr, KeyType.DATE) is None


class CountingCursor(psycopg.Cursor):
    statements = 0

    def execute(self, *args, **kwargs):
        CountingCursor.statements += 1
        return super().execute(*args, **kwargs)


def _count_snapshot(db_url, specs) -> tuple[int, catalog.Snapshot]:
    with psycopg.connect(db_url, autocommit=True, cursor_factory=CountingCursor) as c:
        CountingCursor.statements = 0
        snap = catalog.snapshot(c, specs, now=NOW, to_probe=planner.presence_needed)
        return CountingCursor.statements, snap


def _make_tables(conn, count: int, partitions: int, start: str = "2020-01-01 00:00+00") -> list:
    """count tables of partitions monthly partitions each, created server-side, one transaction per table."""
    conn.execute(
        """CREATE PROCEDURE make(n int, parts int, first timestamptz) LANGUAGE plpgsql AS $$
           BEGIN
             FOR t IN 1..n LOOP
               EXECUTE format('CREATE TABLE %I (id bigint, start_time timestamptz) PARTITION BY RANGE (start_time)', 't' || t);
               FOR p IN 0..parts - 1 LOOP
                 EXECUTE format('CREATE TABLE %I PARTITION OF %I FOR VALUES FROM (%L) TO (%L)', 't' || t || '_' || p, 't' || t,
                   first + make_interval(months => p), first + make_interval(months => p + 1));
               END LOOP;
               COMMIT;
             END LOOP;
           END $$"""
    )
    conn.execute("CALL make(%s, %s, %s)", (count, partitions, start))
    return [spec("monthly", table=TableRef("public", f"t{i}")) for i in range(1, count + 1)]


def test_the_snapshot_takes_the_same_number_of_queries_for_2_or_200_tables(db_url, conn):
    specs = _make_tables(conn, 200, 120)
    few, _ = _count_snapshot(db_url, specs[:2])
    many, snap = _count_snapshot(db_url, specs)
    assert few == many <= 7
    assert len(snap.tables) == 200
    assert sum(len(t.partitions) for t in snap.tables.values()) == 200 * 120
    t7 = snap.tables[TableRef("public", "t7")]
    assert t7.partitions[0].bounds.start == datetime(2020, 1, 1, tzinfo=timezone.utc)
    assert t7.partitions[-1].bounds.end == datetime(2030, 1, 1, tzinfo=timezone.utc)


def test_row_presence_is_one_query_however_many_partitions_need_it(db_url, conn):
    from partman.audit import state_ddl

    conn.execute(state_ddl("public"))
    specs = _make_tables(conn, 30, 2, start="2027-03-01 00:00+00")
    # Every partition is partman's and future, and none fits a quarterly grid: each needs its EXISTS probe.
    conn.execute(
        """INSERT INTO partition_log (parent_schema, parent_name, partition_schema, partition_name, range_start, range_end)
           SELECT 'public', 't' || t, 'public', 't' || t || '_' || p,
                  timestamptz '2027-03-01 00:00+00' + make_interval(months => p),
                  timestamptz '2027-03-01 00:00+00' + make_interval(months => p + 1)
             FROM generate_series(1, 30) t, generate_series(0, 1) p"""
    )
    conn.execute("INSERT INTO t3 VALUES (1, '2027-03-05Z')")
    quarterly = [spec("quarterly", table=s.table) for s in specs]
    few, _ = _count_snapshot(db_url, quarterly[:1])
    many, snap = _count_snapshot(db_url, quarterly)
    assert few == many
    assert len(snap.has_rows) == 60
    present = {oid for oid, rows in snap.has_rows.items() if rows}
    t3_march = snap.tables[TableRef("public", "t3")].partitions[0]
    assert present == {t3_march.oid}


def test_the_structure_digest_moves_with_every_change_a_plan_depends_on(db_url, conn):
    from partman.audit import state_ddl

    conn.execute(state_ddl("public"))
    conn.execute("CREATE TABLE d (id bigint, start_time timestamptz) PARTITION BY RANGE (start_time)")
    conn.execute("CREATE TABLE d_1 PARTITION OF d FOR VALUES FROM ('2027-01-01Z') TO ('2027-02-01Z')")
    ref = TableRef("public", "d")

    def now_digest():
        with conn.transaction():
            conn.execute("SELECT set_config('TimeZone', 'UTC', true)")
            return catalog.under_lock(conn, ref).digest

    def snapshot_digest():
        return catalog.snapshot(conn, [spec(table=ref)], now=NOW, to_probe=planner.presence_needed, digests=True).tables[ref].digest

    seen = [now_digest()]
    assert snapshot_digest() == seen[0], "snapshot and the check under lock compute the same digest"
    conn.execute("INSERT INTO d VALUES (1, '2027-01-05Z')")
    assert now_digest() == seen[0], "rows are not structure"
    for change in (
        "CREATE TABLE d_2 PARTITION OF d FOR VALUES FROM ('2027-02-01Z') TO ('2027-03-01Z')",
        "INSERT INTO partition_log (parent_schema, parent_name, partition_schema, partition_name, range_start, range_end)"
        " VALUES ('public', 'd', 'public', 'd_2', '2027-02-01Z', '2027-03-01Z')",
        "UPDATE partition_log SET detached_at = now()",
        "INSERT INTO partition_config (parent_schema, parent_name, interval_months) VALUES ('public', 'd', 1)",
        "UPDATE partition_config SET retention = '3 months'",
        "ALTER TABLE d DETACH PARTITION d_1",
    ):
        conn.execute(change)
        seen.append(now_digest())
        assert seen[-1] not in seen[:-1], change
        assert snapshot_digest() == seen[-1]


@given(st.text(min_size=1, max_size=20), st.text(max_size=20))
def test_every_name_that_starts_with_a_prefix_sorts_below_its_end_in_utf8_byte_order(name, tail):
    prefix = catalog.name_prefix(name)
    end = catalog.past_prefix(prefix, "UTF8")
    assert end is not None or set(prefix) == {"\U0010ffff"}
    inside, outside = (prefix + tail).encode(), (end or "").encode()
    assert prefix.encode() <= inside and (end is None or inside < outside)
    assert end is None or not end.startswith(prefix)


def test_a_database_in_another_encoding_gets_no_range():
    assert catalog.past_prefix("bookings", "LATIN1") is None


@given(st.lists(st.tuples(st.sampled_from(["public", "app"]), st.text("ab_", min_size=1, max_size=4)), min_size=1))
def test_the_outermost_prefixes_cover_every_prefix_and_none_covers_another(pairs):
    kept = catalog.outermost(pairs)
    for schema, prefix in pairs:
        assert any(s == schema and prefix.startswith(p) for s, p in kept), (schema, prefix)
    for i, (schema, prefix) in enumerate(kept):
        assert not any(s == schema and prefix.startswith(p) for j, (s, p) in enumerate(kept) if j != i)


def test_tables_of_every_key_kind_take_the_same_number_of_queries_as_a_few(db_url, conn):
    # 20 each of timestamptz, epoch milliseconds (bigint), UUIDv7 and id (bigint identity, width 1000) keys, 24
    # partitions each, made server-side: the ids' sequences and largest keys cost no statement per table either.
    conn.execute(
        """CREATE PROCEDURE make_kinds(n int, parts int) LANGUAGE plpgsql AS $$
           DECLARE lo timestamptz; hi timestamptz; ms_lo bigint; ms_hi bigint;
           BEGIN
             FOR t IN 1..n LOOP
               EXECUTE format('CREATE TABLE %I (k timestamptz) PARTITION BY RANGE (k)', 'k_time' || t);
               EXECUTE format('CREATE TABLE %I (k bigint) PARTITION BY RANGE (k)', 'k_epoch' || t);
               EXECUTE format('CREATE TABLE %I (k uuid) PARTITION BY RANGE (k)', 'k_uuid' || t);
               EXECUTE format('CREATE TABLE %I (k bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY) PARTITION BY RANGE (k)', 'k_id' || t);
               FOR p IN 0..parts - 1 LOOP
                 EXECUTE format('CREATE TABLE %I PARTITION OF %I FOR VALUES FROM (%s) TO (%s)', 'k_id' || t || '_' || p, 'k_id' || t, p * 1000, p * 1000 + 1000);
                 lo := timestamptz '2026-01-01 00:00+00' + make_interval(months => p);
                 hi := lo + interval '1 month';
                 ms_lo := (extract(epoch FROM lo) * 1000)::bigint; ms_hi := (extract(epoch FROM hi) * 1000)::bigint;
                 EXECUTE format('CREATE TABLE %I PARTITION OF %I FOR VALUES FROM (%L) TO (%L)', 'k_time' || t || '_' || p, 'k_time' || t, lo, hi);
                 EXECUTE format('CREATE TABLE %I PARTITION OF %I FOR VALUES FROM (%L) TO (%L)', 'k_epoch' || t || '_' || p, 'k_epoch' || t, ms_lo, ms_hi);
                 EXECUTE format('CREATE TABLE %I PARTITION OF %I FOR VALUES FROM (%L) TO (%L)', 'k_uuid' || t || '_' || p, 'k_uuid' || t,
                   regexp_replace(lpad(to_hex(ms_lo), 12, '0'), '(.{8})(.{4})', '\\1-\\2') || '-7000-8000-000000000000',
                   regexp_replace(lpad(to_hex(ms_hi), 12, '0'), '(.{8})(.{4})', '\\1-\\2') || '-7000-8000-000000000000');
               END LOOP;
               COMMIT;
             END LOOP;
           END $$"""
    )
    conn.execute("CALL make_kinds(20, 24)")

    def specs(n: int) -> list:
        out = []
        for i in range(1, n + 1):
            out += [replace(spec("monthly", table=TableRef("public", f"k_time{i}")), partition_key="k"),
                    replace(spec("monthly", table=TableRef("public", f"k_epoch{i}"), key_type="bigint", key_encoding="epoch_ms"),
                            partition_key="k"),
                    replace(spec("monthly", table=TableRef("public", f"k_uuid{i}"), key_type="uuid"), partition_key="k"),
                    replace(spec("monthly", table=TableRef("public", f"k_id{i}"), key_type="bigint"), partition_key="k",
                            interval=None, width=1000, premake=Reach.parse("3 partitions"))]
        return out
    few, _ = _count_snapshot(db_url, specs(1))
    many, snap = _count_snapshot(db_url, specs(20))
    assert few == many
    assert all(len(t.partitions) == 24 and not t.unparsed for t in snap.tables.values()), "every kind's bounds read"
    first = snap.tables[TableRef("public", "k_uuid3")].partitions[0].bounds.start
    assert str(first) == "019b76da-a800-7000-8000-000000000000"  # 2026-01-01T00:00Z, its smallest UUIDv7
    conn.execute("INSERT INTO k_id7 (k) SELECT g FROM generate_series(1, 1234) g")
    _, snap = _count_snapshot(db_url, specs(20))
    mark = snap.tables[TableRef("public", "k_id7")].id_mark
    assert (mark.sequence, mark.sequence_value, mark.indexed) == (TableRef("public", "k_id7_k_seq"), 1, True)
    assert (mark.largest, mark.largest_known) == (1234, True), "rows past the sequence's next value are found"


def test_a_parent_reads_its_key_columns_in_order_an_expression_as_such_and_when_it_was_analyzed(db_url, conn):
    conn.execute("CREATE TABLE by_two (a timestamptz, b int) PARTITION BY RANGE (b, a)")
    conn.execute("CREATE TABLE by_expression (a timestamptz, b text) PARTITION BY RANGE (lower(b))")
    conn.execute("CREATE TABLE by_one (a timestamptz) PARTITION BY RANGE (a)")
    conn.execute("CREATE TABLE by_one_2027 PARTITION OF by_one FOR VALUES FROM ('2027-01-01Z') TO ('2028-01-01Z')")
    conn.execute("INSERT INTO by_one VALUES ('2027-02-01Z')")
    conn.execute("ANALYZE by_one")
    specs = [spec("monthly", table=TableRef("public", name)) for name in ("by_two", "by_expression", "by_one")]
    _, snap = _count_snapshot(db_url, specs)
    tables = {ref.name: t for ref, t in snap.tables.items()}
    assert tables["by_two"].key_columns == ("b", "a")
    assert tables["by_expression"].key_columns == ("(expression)",)
    assert tables["by_one"].key_columns == ("a",) and tables["by_one"].key_type_name == "timestamp with time zone"
    assert tables["by_one"].statistics.at is not None and tables["by_two"].statistics.at is None


def test_the_log_reads_each_range_to_the_microsecond_and_a_high_water_mark_counting_dropped_rows(db_url, conn):
    from partman.audit import state_ddl

    conn.execute(state_ddl("public"))
    specs = _make_tables(conn, 2, 1, start="2027-01-01 00:00+00")
    insert = """INSERT INTO partition_log (parent_schema, parent_name, partition_schema, partition_name, range_start,
                                           range_end, dropped_at)
                VALUES ('public', 't1', 'public', %s, %s, %s, %s) RETURNING id"""
    conn.execute(insert, ("t1_0", "2027-01-01Z", "2027-02-01Z", None))
    conn.execute(insert, ("t1_first", "-infinity", "1999-12-31 23:59:59.999999Z", None))
    conn.execute(insert, ("t1_last", "2027-02-01 00:00:00.000001+05", "infinity", None))
    dropped = conn.execute(insert, ("t1_old", "2026-01-01Z", "2026-02-01Z", "2026-06-01Z")).fetchone()[0]
    _, snap = _count_snapshot(db_url, specs)
    t1, t2 = snap.tables[TableRef("public", "t1")], snap.tables[TableRef("public", "t2")]
    assert t1.log_high_water == dropped
    utc = timezone.utc
    assert t1.managed == frozenset({
        (datetime(2027, 1, 1, tzinfo=utc), datetime(2027, 2, 1, tzinfo=utc)),
        (None, datetime(1999, 12, 31, 23, 59, 59, 999999, tzinfo=utc)),
        (datetime(2027, 1, 31, 19, 0, 0, 1, tzinfo=utc), None),
    }), "instants before and after 2000, to the microsecond, and the infinities as None"
    assert t2.log_high_water is None and t2.managed == frozenset()


def test_a_log_range_past_the_calendar_is_one_error_naming_the_log(db_url, conn):
    from partman.audit import state_ddl
    from partman.errors import CatalogError

    conn.execute(state_ddl("public"))
    specs = _make_tables(conn, 1, 1, start="2027-01-01 00:00+00")
    conn.execute("""INSERT INTO partition_log (parent_schema, parent_name, partition_schema, partition_name, range_start,
                                               range_end) VALUES ('public', 't1', 'public', 'far', '2027-01-01Z', '12000-01-01Z')""")
    with pytest.raises(CatalogError, match="public.partition_log holds a range bound past the year 9999"):
        _count_snapshot(db_url, specs)
