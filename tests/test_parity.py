"""Parity: the Python planner (partman apply) and the migration's PL/pgSQL (manage_partitions) given the same
table, rows, settings and clock end with the same partition bounds, rows, and retention state."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import pytest

from dbtools import assert_contiguous, count, ranges, run_cli
from helpers import spec_data, write_spec

from partman.planner import desired_config
from partman.spec import load_specs

from test_sql_face import migrate


@dataclass(frozen=True)
class Scenario:
    before: str  # interval the table was laid out with at `start`
    after: str  # interval (and settings) both faces then apply at `now`
    start: str
    now: str
    rows: tuple[str, ...] = ()
    premake: Optional[str] = None
    retention: Optional[str] = None
    grace: str = "7 days"
    tz: str = "UTC"
    before_premake: Optional[str] = None  # the layout at `start`; none: through the end of next year
    extra: dict = field(default_factory=dict)


SCENARIOS = {
    "monthly to quarterly, rows now and ahead": Scenario(
        "monthly", "quarterly", "2027-02-10T00:00Z", "2027-02-15T12:00Z", ("2027-02-20T00:00Z", "2027-05-10T00:00Z")),
    "quarterly to monthly, a populated future quarter": Scenario(
        "quarterly", "monthly", "2027-02-10T00:00Z", "2027-02-15T12:00Z", ("2027-08-01T00:00Z",)),
    "monthly to yearly, rows next year": Scenario(
        "monthly", "yearly", "2027-02-10T00:00Z", "2027-03-01T00:00Z", ("2028-06-15T00:00Z",)),
    "yearly to monthly, months later": Scenario("yearly", "monthly", "2027-02-10T00:00Z", "2027-07-04T08:00Z"),
    "quarterly to yearly with retention and no grace": Scenario(
        "quarterly", "yearly", "2026-01-10T00:00Z", "2027-11-20T00:00Z", ("2026-02-01T00:00Z",), retention="12 months",
        grace="0 days"),
    "monthly kept, time moves on, retention with grace": Scenario(
        "monthly", "monthly", "2027-01-05T00:00Z", "2027-06-05T00:00Z", ("2027-01-06T00:00Z", "2027-03-03T00:00Z"),
        retention="3 months"),
    "Berlin quarters to months": Scenario(
        "quarterly", "monthly", "2027-02-10T00:00Z", "2027-03-31T22:30Z", ("2027-04-01T00:30+02:00",), tz="Europe/Berlin"),
    "premake of 6 months, monthly to quarterly": Scenario(
        "monthly", "quarterly", "2027-05-10T00:00Z", "2027-05-20T00:00Z", ("2027-09-09T00:00Z",), premake="6 months"),
    "rows in the past stay where they are": Scenario(
        "monthly", "quarterly", "2026-11-10T00:00Z", "2027-02-01T00:00Z", ("2026-11-11T00:00Z", "2026-12-30T00:00Z")),
    "now exactly on a boundary": Scenario("quarterly", "monthly", "2027-01-01T00:00Z", "2027-04-01T00:00Z"),
    # Havana changes clocks at midnight: 2026-11-01 00:00 happens twice (04:00Z and 05:00Z; PostgreSQL reads it
    # as the second), 2026-03-08 00:00 never (PostgreSQL reads it as 05:00Z, the instant of the change).
    "Havana months across the repeated midnight": Scenario(
        "monthly", "monthly", "2026-10-10T12:00Z", "2026-10-20T12:00Z", ("2026-10-31T12:00Z",), tz="America/Havana"),
    "Havana months to quarters, a row in the first pass of the repeated hour": Scenario(
        "monthly", "quarterly", "2026-09-10T12:00Z", "2026-09-20T12:00Z", ("2026-11-01T00:30-04:00",), tz="America/Havana"),
    "Havana quarters to months, rows in both passes of the repeated hour": Scenario(
        "quarterly", "monthly", "2026-09-10T12:00Z", "2026-09-20T12:00Z",
        ("2026-11-01T00:30-04:00", "2026-11-01T00:30-05:00"), tz="America/Havana"),
    "Havana days to months around the repeated midnight": Scenario(
        "daily", "monthly", "2026-10-25T12:00Z", "2026-10-28T12:00Z",
        ("2026-11-01T00:30-04:00", "2026-11-01T00:30-05:00"), tz="America/Havana", before_premake="20 days"),
    "Havana days to months around the skipped midnight": Scenario(
        "daily", "monthly", "2026-03-01T12:00Z", "2026-03-04T12:00Z", ("2026-03-08T01:30-04:00", "2026-03-07T23:30-05:00"),
        tz="America/Havana", before_premake="20 days"),
    "Havana months to quarters, now at the skipped midnight": Scenario(
        "monthly", "quarterly", "2026-02-10T12:00Z", "2026-03-08T05:00Z", ("2026-05-01T00:30-04:00",), tz="America/Havana"),
    "Havana months, retention cutoff in the repeated hour": Scenario(
        "monthly", "monthly", "2026-10-10T12:00Z", "2026-12-01T05:30Z", ("2026-10-31T12:00Z", "2026-11-01T00:30-04:00"),
        tz="America/Havana", retention="30 days", grace="0 days"),
}


def _spec(table: str, interval: str, sc: Scenario, *, final: bool) -> dict:
    data = spec_data(table=table, interval=interval, timezone=sc.tz)
    data.pop("premake")
    if not final and sc.before_premake:
        data["premake"] = sc.before_premake
    if final:
        data["retention_grace"] = sc.grace
        if sc.premake:
            data["premake"] = sc.premake
        if sc.retention:
            data["retention"] = sc.retention
    return data


def _retention_state(conn, table: str) -> list:
    return conn.execute(
        "SELECT range_start, range_end, detached_at IS NOT NULL, dropped_at IS NOT NULL FROM partition_log"
        " WHERE parent_name = %s ORDER BY range_start, range_end, dropped_at IS NOT NULL", (table,)
    ).fetchall()


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_both_faces_end_with_the_same_partitions(name, server, db_url, conn, tmp_path, monkeypatch, capsys):
    sc = SCENARIOS[name]
    monkeypatch.chdir(tmp_path)
    migrate(server, db_url)  # installs the SQL functions
    for table in ("t_py", "t_sql"):
        write_spec(tmp_path / table, _spec(table, sc.before, sc, final=False))
        result = run_cli(capsys, "apply", table, "--env", "test", "--database-url", db_url, "--now", sc.start, "--auto-approve")
        assert result.code == 0, result.err
        for at in sc.rows:
            conn.execute(f"INSERT INTO {table} (start_time) VALUES (%s)", (at,))

    write_spec(tmp_path / "t_py", _spec("t_py", sc.after, sc, final=True))
    result = run_cli(capsys, "apply", "t_py", "--env", "test", "--database-url", db_url, "--now", sc.now, "--auto-approve")
    assert result.code == 0, result.err

    write_spec(tmp_path / "t_sql", _spec("t_sql", sc.after, sc, final=True))
    wanted = desired_config(load_specs([tmp_path / "t_sql"], "test")[0]).to_dict()
    conn.execute(
        "UPDATE partition_config SET interval_months = %s, premake = %s::interval, retention = %s::interval,"
        " retention_grace = %s::interval, timezone = %s WHERE parent_name = 't_sql'",
        (wanted["interval_months"], wanted["premake"], wanted["retention"], wanted["retention_grace"], wanted["timezone"]),
    )
    conn.execute("SELECT manage_partitions('public.t_sql', %s)", (sc.now,))

    assert ranges(conn, "t_sql") == ranges(conn, "t_py")
    assert count(conn, "t_sql") == count(conn, "t_py")
    if sc.retention is None:
        assert count(conn, "t_py") == len(sc.rows)  # no row lost; with retention, detached rows leave the parent
    assert _retention_state(conn, "t_sql") == _retention_state(conn, "t_py")
    # and each face finds the other's result in shape
    again = run_cli(capsys, "plan", "t_sql", "--env", "test", "--database-url", db_url, "--now", sc.now, "--detailed-exitcode")
    assert again.code == 0, again.out
    py_before = (ranges(conn, "t_py"), _retention_state(conn, "t_py"), count(conn, "t_py"))
    conn.execute("SELECT manage_partitions('public.t_py', %s)", (sc.now,))
    assert (ranges(conn, "t_py"), _retention_state(conn, "t_py"), count(conn, "t_py")) == py_before


# Where a local midnight that a DST change repeats or skips falls: PostgreSQL's reading of the local time
# (`timestamp AT TIME ZONE tz`, the SQL face's partman_to_log) in both faces, since rows are routed by it.

MIDNIGHT_ZONES = ["America/Havana", "Atlantic/Azores", "America/Santiago", "America/Asuncion", "Asia/Beirut",
                  "Africa/Cairo", "Pacific/Chatham", "Australia/Lord_Howe", "Europe/Berlin"]


def test_every_local_midnight_and_repeated_hour_is_where_the_sql_face_puts_it(server, db_url, conn):
    from datetime import date, datetime, timedelta, timezone

    from partman.model import KeyType
    from partman.timeline import KeySpace

    migrate(server, db_url)
    days = [date(2026, 1, 1) + timedelta(days=i) for i in range(3 * 366)]
    for tz in MIDNIGHT_ZONES:
        space = KeySpace(KeyType.TIMESTAMPTZ, tz)
        with conn.transaction():
            conn.execute(f"SET LOCAL TimeZone = '{tz}'")  # a literal typed there reads the same as AT TIME ZONE
            rows = conn.execute(
                "SELECT d::date, partman_to_log(d, 'timestamp with time zone', %s), d::text::timestamptz,"
                "       partman_to_log(d + interval '30 minutes', 'timestamp with time zone', %s)"
                "  FROM unnest(%s::date[]) AS d", (tz, tz, days), prepare=False).fetchall()
        for d, *instants in rows:
            # read in UTC: an aware datetime in a repeated hour never equals one of another zone (PEP 495)
            midnight, literal, half_past = (v.astimezone(timezone.utc) for v in instants)
            assert space.at_midnight(d) == midnight == literal, (tz, d)
            assert space.from_local_moment(datetime(d.year, d.month, d.day, 0, 30)) == half_past, (tz, d)


def _through_next_year(**overrides) -> dict:
    """A spec without a premake, like a partition_config row without one: through the end of next year."""
    data = spec_data(**overrides)
    data.pop("premake")
    return data


def _layout_by_sql(conn, table: str, tz: str, at: str) -> None:
    """A parent and its partitions made by the SQL face alone: partition_config, then manage_partitions()."""
    conn.execute(f"CREATE TABLE {table} (id bigint GENERATED ALWAYS AS IDENTITY, start_time timestamptz NOT NULL,"
                 f" note text, PRIMARY KEY (id, start_time)) PARTITION BY RANGE (start_time)")
    conn.execute("INSERT INTO partition_config (parent_schema, parent_name, interval_months, timezone)"
                 " VALUES ('public', %s, 1, %s)", (table, tz))
    conn.execute("SELECT manage_partitions(%s, %s)", (f"public.{table}", at))


def _holder(conn, table: str, at: str, session_tz: str = "UTC") -> tuple[str, str]:
    """The (from, to) bounds of the partition a row inserted with start_time `at` lands in."""
    with conn.transaction():
        conn.execute(f"SET LOCAL TimeZone = '{session_tz}'")
        oid = conn.execute(f"INSERT INTO {table} (start_time) VALUES (%s::text::timestamptz) RETURNING tableoid",
                           (at,), prepare=False).fetchone()[0]
    with conn.transaction():
        conn.execute("SET LOCAL TimeZone = 'UTC'")
        expr = conn.execute("SELECT pg_get_expr(relpartbound, oid) FROM pg_class WHERE oid = %s", (oid,)).fetchone()[0]
    start, end = expr.removeprefix("FOR VALUES FROM (").removesuffix(")").split(") TO (")
    return start.strip("'"), end.strip("'")


def test_a_row_in_the_first_hour_of_a_repeated_midnight_lands_in_the_same_partition_under_both_faces(
        server, db_url, conn, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    migrate(server, db_url)
    now = "2026-10-15T12:00Z"
    write_spec(tmp_path / "t_py", _through_next_year(table="t_py", interval="monthly", timezone="America/Havana"))
    result = run_cli(capsys, "apply", "t_py", "--env", "test", "--database-url", db_url, "--now", now, "--auto-approve")
    assert result.code == 0, result.err
    _layout_by_sql(conn, "t_sql", "America/Havana", now)
    assert ranges(conn, "t_py") == ranges(conn, "t_sql")

    october = ("2026-10-01 04:00:00+00", "2026-11-01 05:00:00+00")
    november = ("2026-11-01 05:00:00+00", "2026-12-01 05:00:00+00")
    # 00:30 of 2026-11-01 in its first pass (CDT, UTC-4): before PostgreSQL's midnight, so October's
    assert _holder(conn, "t_py", "2026-11-01 00:30-04") == _holder(conn, "t_sql", "2026-11-01 00:30-04") == october
    assert _holder(conn, "t_py", "2026-11-01 00:30-05") == _holder(conn, "t_sql", "2026-11-01 00:30-05") == november
    # typed as local time, PostgreSQL reads 00:30 as the second pass: November's in both layouts
    for table in ("t_py", "t_sql"):
        assert _holder(conn, table, "2026-11-01 00:30", session_tz="America/Havana") == november

    # each face then finds the other's layout in shape
    write_spec(tmp_path / "t_sql", _through_next_year(table="t_sql", interval="monthly", timezone="America/Havana"))
    again = run_cli(capsys, "plan", "t_sql", "--env", "test", "--database-url", db_url, "--now", now, "--detailed-exitcode")
    assert again.code == 0, again.out
    before = ranges(conn, "t_py")
    conn.execute("SELECT manage_partitions('public.t_py', %s)", (now,))
    assert ranges(conn, "t_py") == before


def test_a_layout_with_the_first_pass_boundary_is_repaired_alike_by_both_faces(
        server, db_url, conn, tmp_path, monkeypatch, capsys):
    # partman used to put Havana's 2026-11-01 boundary at the first 00:00 (04:00Z): such a layout, made before
    # the fix, leaves a gap [04:00Z, 05:00Z) that both faces fill with the same bridge.
    monkeypatch.chdir(tmp_path)
    migrate(server, db_url)
    now = "2026-10-20T12:00Z"
    legacy = [("2026-10-01 04:00Z", "2026-11-01 04:00Z"), ("2026-11-01 04:00Z", "2026-12-01 05:00Z"),
              ("2026-12-01 05:00Z", "2027-01-01 05:00Z")]
    for table in ("t_py", "t_sql"):
        conn.execute(f"CREATE TABLE {table} (id bigint GENERATED ALWAYS AS IDENTITY, start_time timestamptz NOT NULL,"
                     f" note text, PRIMARY KEY (id, start_time)) PARTITION BY RANGE (start_time)")
        for i, (start, end) in enumerate(legacy):
            conn.execute(f"CREATE TABLE {table}_{i} PARTITION OF {table} FOR VALUES FROM ('{start}') TO ('{end}')")
            conn.execute("INSERT INTO partition_log (parent_schema, parent_name, partition_schema, partition_name,"
                         " range_start, range_end) VALUES ('public', %s, 'public', %s, %s, %s)",
                         (table, f"{table}_{i}", start, end))
        conn.execute(f"INSERT INTO {table} (start_time) VALUES ('2026-10-15T00:00Z')")
    conn.execute("INSERT INTO partition_config (parent_schema, parent_name, interval_months, timezone)"
                 " VALUES ('public', 't_sql', 1, 'America/Havana')")

    write_spec(tmp_path / "t_py", _through_next_year(table="t_py", interval="monthly", timezone="America/Havana"))
    result = run_cli(capsys, "apply", "t_py", "--env", "test", "--database-url", db_url, "--now", now, "--auto-approve")
    assert result.code == 0, result.err
    conn.execute("SELECT manage_partitions('public.t_sql', %s)", (now,))

    rs = ranges(conn, "t_py")
    assert rs == ranges(conn, "t_sql")
    assert_contiguous(rs)
    assert rs[:3] == [("2026-10-01 04:00:00+00", "2026-11-01 04:00:00+00"),  # current: kept as it is
                      ("2026-11-01 04:00:00+00", "2026-11-01 05:00:00+00"),  # the bridge over the first pass
                      ("2026-11-01 05:00:00+00", "2026-12-01 05:00:00+00")]
    assert _holder(conn, "t_py", "2026-11-01 00:30-04") == _holder(conn, "t_sql", "2026-11-01 00:30-04") == rs[1]
    write_spec(tmp_path / "t_sql", _through_next_year(table="t_sql", interval="monthly", timezone="America/Havana"))
    again = run_cli(capsys, "plan", "t_sql", "--env", "test", "--database-url", db_url, "--now", now, "--detailed-exitcode")
    assert again.code == 0, again.out
    conn.execute("SELECT manage_partitions('public.t_py', %s)", (now,))
    assert ranges(conn, "t_py") == rs
