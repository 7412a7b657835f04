"""Retention and foreign keys, on PostgreSQL 15 and 18: a partition that another table's rows reference is kept
with its reason (on_reference: block), found at plan time and again under the lock right before the detach (exit
3 when a reference appeared meanwhile); an unreferenced one retires as before; foreign keys from the partitioned
table to other tables never block retention."""

from __future__ import annotations

import json

from dbtools import partitions, run_cli
from helpers import spec_data, write_spec

MADE = "2026-01-15T00:00Z"
LATER = "2026-06-15T00:00Z"


def cli(capsys, db_url, command, now, *extra):
    return run_cli(capsys, command, "specs", "--env", "test", "--database-url", db_url, "--now", now, *extra)


def bookings_with_orders(capsys, workdir, db_url, conn, *, index: bool = True, **extra):
    """Monthly bookings from January 2026 (retention 3 months, no grace), and orders referencing them."""
    write_spec(workdir / "specs", spec_data(premake="2 months"))
    assert cli(capsys, db_url, "apply", MADE, "--auto-approve").code == 0
    conn.execute("INSERT INTO bookings (start_time, note) VALUES ('2026-01-10Z', 'jan'), ('2026-02-10Z', 'feb')")
    conn.execute("CREATE TABLE orders (id int, booking_id bigint, booking_at timestamptz,"
                 " FOREIGN KEY (booking_id, booking_at) REFERENCES bookings (id, start_time))")
    if index:
        conn.execute("CREATE INDEX ON orders (booking_at, booking_id)")
    conn.execute("INSERT INTO orders SELECT 1, id, start_time FROM bookings WHERE note = 'jan'")
    write_spec(workdir / "specs", spec_data(premake="2 months", retention="3 months", retention_grace="0 days", **extra))


def test_a_referenced_partition_is_kept_with_its_reason_and_an_unreferenced_one_retires(capsys, workdir, db_url, conn):
    bookings_with_orders(capsys, workdir, db_url, conn)
    plan = cli(capsys, db_url, "plan", LATER)
    assert plan.code == 0, plan.err
    assert "~ kept     public.bookings_2026_01" in plan.out
    assert "PM102 referenced by 1 row of public.orders (orders_booking_id_booking_at_fkey)" in plan.out
    assert "- detach   public.bookings_2026_02" in plan.out and "- drop     public.bookings_2026_02" in plan.out
    assert "- detach   public.bookings_2026_01" not in plan.out and "PM214" not in plan.out
    result = cli(capsys, db_url, "apply", LATER, "--auto-approve")
    assert result.code == 0, result.err
    names = [n for n, _ in partitions(conn, "bookings")]
    assert "bookings_2026_01" in names and "bookings_2026_02" not in names
    assert conn.execute("SELECT count(*) FROM orders JOIN bookings ON bookings.id = orders.booking_id").fetchone()[0] == 1


def test_once_the_references_go_the_partition_retires(capsys, workdir, db_url, conn):
    bookings_with_orders(capsys, workdir, db_url, conn)
    assert cli(capsys, db_url, "apply", LATER, "--auto-approve").code == 0
    conn.execute("DELETE FROM orders")
    result = cli(capsys, db_url, "apply", LATER, "--auto-approve")
    assert result.code == 0, result.err
    assert "bookings_2026_01" not in [n for n, _ in partitions(conn, "bookings")]


def test_a_referencing_column_without_an_index_is_named_because_the_check_scans(capsys, workdir, db_url, conn):
    bookings_with_orders(capsys, workdir, db_url, conn, index=False)
    plan = cli(capsys, db_url, "plan", LATER)
    assert "PM214 no index on public.orders (booking_at)" in plan.out
    doc = json.loads(cli(capsys, db_url, "plan", LATER, "--format", "json").out)
    assert [n["code"] for n in doc["tables"][0]["kept"]] == ["PM102"]


def test_a_reference_that_appears_between_plan_and_apply_exits_3_and_retires_nothing(capsys, workdir, db_url, conn):
    bookings_with_orders(capsys, workdir, db_url, conn)
    assert cli(capsys, db_url, "plan", LATER, "--out", "plan.json").code == 0
    conn.execute("INSERT INTO orders SELECT 2, id, start_time FROM bookings WHERE note = 'feb'")
    before = partitions(conn, "bookings")
    result = run_cli(capsys, "apply", "plan.json", "--database-url", db_url)
    assert result.code == 3, result.err
    assert "public.bookings_2026_02 is referenced by rows of public.orders" in result.err
    # Retention changed nothing (the creates that need no drop went first, as always: the runway never waits).
    assert set(before) <= set(partitions(conn, "bookings")), "no partition left"
    assert conn.execute("SELECT count(*) FROM partition_log WHERE pending_action IS NOT NULL").fetchone()[0] == 0


def test_foreign_keys_from_the_partitioned_table_never_block_retention(capsys, workdir, db_url, conn):
    conn.execute("CREATE TABLE notes (note text PRIMARY KEY); INSERT INTO notes VALUES ('jan'), ('feb')")
    write_spec(workdir / "specs", spec_data(premake="2 months"))
    assert cli(capsys, db_url, "apply", MADE, "--auto-approve").code == 0
    conn.execute("ALTER TABLE bookings ADD FOREIGN KEY (note) REFERENCES notes")
    conn.execute("INSERT INTO bookings (start_time, note) VALUES ('2026-01-10Z', 'jan')")
    write_spec(workdir / "specs", spec_data(premake="2 months", retention="3 months", retention_grace="0 days"))
    result = cli(capsys, db_url, "apply", LATER, "--auto-approve")
    assert result.code == 0, result.err
    assert "bookings_2026_01" not in [n for n, _ in partitions(conn, "bookings")], "detached and dropped"
    assert conn.execute("SELECT count(*) FROM notes").fetchone()[0] == 2


def test_cascade_deletes_exactly_the_referencing_rows_it_showed(capsys, workdir, db_url, conn):
    bookings_with_orders(capsys, workdir, db_url, conn, on_reference="cascade")
    conn.execute("INSERT INTO orders VALUES (9, NULL, NULL)")  # references nothing: stays
    plan = cli(capsys, db_url, "plan", LATER)
    assert plan.code == 0, plan.err
    assert ("- detach   public.bookings_2026_01  [2026-01-01T00:00:00+00:00, 2026-02-01T00:00:00+00:00)  retention"
            in plan.out)
    assert "deletes 1 row of public.orders (orders_booking_id_booking_at_fkey)" in plan.out
    assert "PM102" not in plan.out
    doc = json.loads(cli(capsys, db_url, "plan", LATER, "--format", "json").out)
    detach = next(a for a in doc["tables"][0]["actions"] if a["action"] == "detach" and a["partition"].endswith("2026_01"))
    assert detach["cascade"] == [{"table": "public.orders", "constraint": "orders_booking_id_booking_at_fkey", "rows": 1,
                                  "capped": False}]
    result = cli(capsys, db_url, "apply", LATER, "--auto-approve")
    assert result.code == 0, result.err
    assert "bookings_2026_01" not in [n for n, _ in partitions(conn, "bookings")]
    assert conn.execute("SELECT id FROM orders ORDER BY id").fetchall() == [(9,)]


def test_cascade_deletes_nothing_when_more_rows_reference_the_partition_than_the_plan_showed(capsys, workdir, db_url, conn):
    bookings_with_orders(capsys, workdir, db_url, conn, on_reference="cascade")
    assert cli(capsys, db_url, "plan", LATER, "--out", "plan.json").code == 0
    conn.execute("INSERT INTO orders SELECT 3, id, start_time FROM bookings WHERE note = 'jan'")
    result = run_cli(capsys, "apply", "plan.json", "--database-url", db_url)
    assert result.code == 3, result.err
    assert "2 rows of public.orders (orders_booking_id_booking_at_fkey) reference it now, more than the 1" in result.err
    assert conn.execute("SELECT count(*) FROM orders").fetchone()[0] == 2
    assert "bookings_2026_01" in [n for n, _ in partitions(conn, "bookings")]


def test_drift_reports_an_expired_partition_kept_for_its_references(capsys, workdir, db_url, conn):
    bookings_with_orders(capsys, workdir, db_url, conn)
    assert cli(capsys, db_url, "apply", LATER, "--auto-approve").code == 0
    doc = json.loads(cli(capsys, db_url, "drift", LATER, "--format", "json").out)
    found = [f for t in doc["tables"] for f in t["findings"] if f["kind"] == "expired"]
    assert [f["partition"] for f in found] == ["public.bookings_2026_01"]
    assert "referenced by 1 row of public.orders" in found[0]["detail"] and "PM102" in found[0]["detail"]


def test_cascade_tells_apart_two_tables_whose_foreign_keys_share_a_name_and_spares_rows_with_a_null_key(
        capsys, workdir, db_url, conn):
    write_spec(workdir / "specs", spec_data(premake="2 months"))
    assert cli(capsys, db_url, "apply", MADE, "--auto-approve").code == 0
    conn.execute("INSERT INTO bookings (start_time, note) VALUES ('2026-01-10Z', 'jan'), ('2026-01-11Z', 'jan')")
    for table in ("orders", "invoices"):
        conn.execute(f"CREATE TABLE {table} (id int, booking_id bigint, booking_at timestamptz, CONSTRAINT booking_fk"
                     " FOREIGN KEY (booking_id, booking_at) REFERENCES bookings (id, start_time))")
    conn.execute("INSERT INTO orders SELECT 1, id, start_time FROM bookings")
    conn.execute("INSERT INTO orders VALUES (2, NULL, '2026-01-12Z')")  # a NULL in the key: references nothing
    write_spec(workdir / "specs", spec_data(premake="2 months", retention="3 months", retention_grace="0 days",
                                            on_reference="cascade"))
    assert cli(capsys, db_url, "plan", LATER, "--out", "plan.json").code == 0
    shown = cli(capsys, db_url, "plan", LATER).out
    assert "deletes 2 rows of public.orders (booking_fk))" in shown and "rows of public.invoices" not in shown
    conn.execute("INSERT INTO invoices SELECT 1, id, start_time FROM bookings LIMIT 1")
    result = run_cli(capsys, "apply", "plan.json", "--database-url", db_url)
    assert result.code == 3, result.err
    assert "referenced by rows of public.invoices (booking_fk)" in result.err
    assert conn.execute("SELECT count(*) FROM orders").fetchone()[0] == 3, "nothing deleted"
    conn.execute("DELETE FROM invoices")
    assert cli(capsys, db_url, "apply", LATER, "--auto-approve").code == 0
    assert conn.execute("SELECT id FROM orders").fetchall() == [(2,)]
